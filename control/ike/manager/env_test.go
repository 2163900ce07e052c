package manager

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/api"
)

// The manager's own tests run it against fakeEnv: no worker, no network,
// no real time. (iketest's simulation builds on package worker, which
// imports this one, so it serves the worker's tests, not these.)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fakeEnv is a manager's Env that records what the manager does to the
// world in events, so that a test can tell whether a Tick did anything.
type fakeEnv struct {
	now      time.Time
	set      Settings
	dp       task.DataPlane
	counters stats.Counters
	logBuf   bytes.Buffer
	log      *slog.Logger
	rnd      *rand.ChaCha8

	events    []string
	sent      []Datagram
	failure   *task.Failure
	destroyed int
}

func newFakeEnv(t *testing.T) *fakeEnv {
	e := &fakeEnv{now: epoch, set: DefaultSettings(), dp: &fakeDP{}, rnd: rand.NewChaCha8([32]byte{1})}
	e.log = slog.New(slog.NewTextHandler(&e.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", e.logBuf.String())
		}
	})
	return e
}

func (e *fakeEnv) event(format string, a ...any) {
	e.events = append(e.events, fmt.Sprintf(format, a...))
}

func (e *fakeEnv) Now() time.Time            { return e.now }
func (e *fakeEnv) Rand() io.Reader           { return e.rnd }
func (e *fakeEnv) DataPlane() task.DataPlane { return e.dp }
func (e *fakeEnv) Config() *config.Config    { return nil }
func (e *fakeEnv) NewReqID() uint32          { return 1 }
func (e *fakeEnv) NewID() uint32             { return 1 }
func (e *fakeEnv) Stats() *stats.Counters    { return &e.counters }
func (e *fakeEnv) Settings() Settings        { return e.set }
func (e *fakeEnv) Log() *slog.Logger         { return e.log }
func (e *fakeEnv) KeyExchange(g suite.GroupID) (*suite.KeyExchange, error) {
	return suite.NewKeyExchange(g)
}
func (e *fakeEnv) Trap(conn, child string) (task.Trap, bool)                   { return task.Trap{}, false }
func (e *fakeEnv) HasOtherIKESA(*sa.IKESA) bool                                { return false }
func (e *fakeEnv) InitialContact(*sa.IKESA)                                    {}
func (e *fakeEnv) Predecessor(*sa.IKESA, *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) { return nil, nil }

func (e *fakeEnv) Send(d Datagram) {
	e.sent = append(e.sent, d)
	e.event("send %d bytes", len(d.Data))
}
func (e *fakeEnv) Changed(*Manager)     { e.event("changed") }
func (e *fakeEnv) Established(*Manager) { e.event("established") }
func (e *fakeEnv) Destroyed(_ *Manager, f *task.Failure) {
	e.destroyed++
	e.failure = f
	e.event("destroyed")
}
func (e *fakeEnv) ChildRekeyDue(_ *Manager, ch *sa.ChildSA) { e.event("child rekey due %s", ch.Name) }
func (e *fakeEnv) ChildExpired(_ *Manager, ch *sa.ChildSA)  { e.event("child expired %s", ch.Name) }
func (e *fakeEnv) ReauthDue(*Manager)                       { e.event("reauth due") }
func (e *fakeEnv) NewIKESPI(*sa.IKESA) (uint64, error)      { return 0x77, nil }
func (e *fakeEnv) Adopt(ike *sa.IKESA) *Manager {
	e.event("adopt")
	return New(ike, e)
}
func (e *fakeEnv) Heir(*Manager, *sa.ChildSA) *sa.IKESA { return nil }
func (e *fakeEnv) Resume(_ *Manager, f func())          { f() }

var _ Env = (*fakeEnv)(nil)

// fakeDP is a data plane that accepts everything and counts nothing.
type fakeDP struct{ ops []string }

func (d *fakeDP) AllocSPI(local, remote netip.Addr, _ *int) (uint32, error) { return 0xc0000001, nil }
func (d *fakeDP) AddSA(s *api.SA) error {
	d.ops = append(d.ops, fmt.Sprintf("add %s %08x", s.Dir, s.SPI))
	return nil
}
func (d *fakeDP) DelSA(id api.SAID) error {
	d.ops = append(d.ops, fmt.Sprintf("del %s %08x", id.Dir, id.SPI))
	return nil
}
func (d *fakeDP) AddPolicy(p *api.Policy) (uint32, error) { return 1, nil }
func (d *fakeDP) DelPolicy(id uint32) error               { return nil }

// usageDP is a data plane that also reports inbound packets (UsageReader).
type usageDP struct {
	fakeDP
	in map[uint32]uint64
	// fail, when set, is the error InboundPackets returns (spud away).
	fail error
}

func (d *usageDP) InboundPackets(spis []uint32) (uint64, error) {
	if d.fail != nil {
		return 0, d.fail
	}
	var n uint64
	for _, spi := range spis {
		n += d.in[spi]
	}
	return n, nil
}

// established returns the manager of an established IKE SA with working
// SK keys (one key both ways, so that the test can answer our requests
// with a cipher of the same key), its ciphers not made yet, and no timer
// armed.
func established(t *testing.T, e *fakeEnv) *Manager {
	t.Helper()
	alg := suite.Algorithms{Protocol: suite.ProtocolIKE, Encr: suite.EncrAESGCM16, EncrKeyBits: 128}
	k := bytes.Repeat([]byte{7}, 20)
	keys, err := suite.NewIKEKeys(alg, nil, nil, nil, k, k, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ike := &sa.IKESA{UniqueID: 1, Initiator: true, SPIi: 0x1111, SPIr: 0x2222, State: sa.Established,
		Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.18.0.2:500"),
		MsgIDOut: 1, MsgIDIn: 1, Keys: keys, Created: e.now, Established: e.now}
	m := New(ike, e)
	if d := m.Deadline(); !d.IsZero() {
		t.Fatalf("fresh established IKE SA: Deadline %v, want none", d)
	}
	return m
}

// respond answers our outstanding request with an empty response.
func respond(t *testing.T, e *fakeEnv, m *Manager) {
	t.Helper()
	r := m.req
	if r == nil {
		t.Fatal("no request to answer")
	}
	ike := m.IKE
	resp := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: r.exchange, MessageID: r.id,
		Flags: message.FlagResponse}}
	// The peer's cipher: the same key, not the IKE SA's own instance.
	_, in, err := ike.Keys.Ciphers(ike.Initiator)
	if err != nil {
		t.Fatal(err)
	}
	b, err := resp.Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := message.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m.Receive(Datagram{Local: ike.Local, Remote: ike.Remote, Data: b}, msg)
}

// fakeTask is an initiator task that adds nothing to its request and is
// done with any response.
type fakeTask struct {
	kind             task.Kind
	built, processed int
	aborted          error
}

func (f *fakeTask) Kind() task.Kind { return f.kind }
func (f *fakeTask) Abort(err error) { f.aborted = err }
func (f *fakeTask) Build(*task.Ctx, *message.Message) error {
	f.built++
	return nil
}
func (f *fakeTask) Process(*task.Ctx, *message.Message) task.Status {
	f.processed++
	return task.Done
}
