package task

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// The tests here drive tasks on their own: a fake Env (fixed clock,
// seeded randomness, a data plane in maps) and an IKE SA made by hand,
// with no worker, manager or network.

var (
	ourAddr  = netip.MustParseAddrPort("198.18.0.1:500")
	peerAddr = netip.MustParseAddrPort("198.18.0.2:500")
	epoch    = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
)

// fakeDP is a data plane in maps that can be told to fail.
type fakeDP struct {
	nextSPI  uint32
	nextPol  uint32
	SAs      map[api.SAID]api.SA
	Policies map[uint32]api.Policy
	allocs   int
	// failAlloc fails AllocSPI; failAdd fails AddSA of that direction;
	// failPolicy fails AddPolicy.
	failAlloc  error
	failAdd    map[api.Dir]error
	failPolicy error
}

func newFakeDP() *fakeDP {
	return &fakeDP{nextSPI: 0xc0000000, SAs: map[api.SAID]api.SA{}, Policies: map[uint32]api.Policy{}, failAdd: map[api.Dir]error{}}
}

func (d *fakeDP) AllocSPI(local, remote netip.Addr, _ *int) (uint32, error) {
	if d.failAlloc != nil {
		return 0, d.failAlloc
	}
	d.allocs++
	d.nextSPI++
	return d.nextSPI, nil
}

func (d *fakeDP) key(s *api.SA) api.SAID {
	id := api.SAID{SPI: s.SPI, Dir: s.Dir}
	if s.Dir == api.Out {
		id.Remote = s.Remote
	}
	return id
}

func (d *fakeDP) AddSA(s *api.SA) error {
	if err := d.failAdd[s.Dir]; err != nil {
		return err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	k := d.key(s)
	if _, ok := d.SAs[k]; ok {
		return fmt.Errorf("sa %08x %s exists", s.SPI, s.Dir)
	}
	d.SAs[k] = *s
	return nil
}

func (d *fakeDP) DelSA(id api.SAID) error {
	if _, ok := d.SAs[id]; !ok {
		return fmt.Errorf("sa %08x %s: not found", id.SPI, id.Dir)
	}
	delete(d.SAs, id)
	return nil
}

func (d *fakeDP) AddPolicy(p *api.Policy) (uint32, error) {
	if d.failPolicy != nil {
		return 0, d.failPolicy
	}
	d.nextPol++
	d.Policies[d.nextPol] = *p
	return d.nextPol, nil
}

func (d *fakeDP) DelPolicy(id uint32) error {
	if _, ok := d.Policies[id]; !ok {
		return fmt.Errorf("policy %d: not found", id)
	}
	delete(d.Policies, id)
	return nil
}

// fakeEnv is the Env of the tests.
type fakeEnv struct {
	rand  io.Reader
	cfg   *config.Config
	dp    *fakeDP
	stats *stats.Counters
	ids   uint32
	// keyPairs counts the key pairs made (KeyExchange).
	keyPairs int
	// dpOver, when set, is the data plane instead of dp (one in front of
	// dp: install_test.go's ChildDataPlane).
	dpOver DataPlane
}

type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(b []byte) (int, error) { return s.r.Read(b) }

func (e *fakeEnv) Now() time.Time  { return epoch }
func (e *fakeEnv) Rand() io.Reader { return e.rand }
func (e *fakeEnv) DataPlane() DataPlane {
	if e.dpOver != nil {
		return e.dpOver
	}
	return e.dp
}
func (e *fakeEnv) Config() *config.Config {
	return e.cfg
}
func (e *fakeEnv) KeyExchange(g suite.GroupID) (*suite.KeyExchange, error) {
	e.keyPairs++
	return suite.NewKeyExchange(g)
}
func (e *fakeEnv) NewReqID() uint32                 { e.ids++; return e.ids }
func (e *fakeEnv) NewID() uint32                    { e.ids++; return e.ids }
func (e *fakeEnv) Stats() *stats.Counters           { return e.stats }
func (e *fakeEnv) Trap(string, string) (Trap, bool) { return Trap{}, false }
func (e *fakeEnv) HasOtherIKESA(*sa.IKESA) bool     { return false }
func (e *fakeEnv) InitialContact(*sa.IKESA)         {}
func (e *fakeEnv) Predecessor(*sa.IKESA, *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) {
	return nil, nil
}

// confYAML is the configuration of the tests: one connection with the
// child "net" (PFS with x25519) and the child "host" (no PFS, one host
// of ours).
const confYAML = `connections:
  tun:
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.2
    proposals: aes128gcm16-prfsha256-x25519
    local:
      auth: psk
      id: gw-a.example
    remote:
      auth: psk
      id: gw-b.example
    children:
      net:
        local_ts: 198.18.1.0/24
        remote_ts: 198.18.2.0/24
        esp_proposals: aes128gcm16-x25519
      host:
        local_ts: 198.18.1.7/32
        remote_ts: 198.18.3.0/24
        esp_proposals: aes256gcm16
`

// harness is one IKE SA of ours (the responder, established) in a fake
// Env, and the Ctx a task step sees.
type harness struct {
	env *fakeEnv
	ike *sa.IKESA
	log bytes.Buffer
	// queued are the initiator tasks the steps queued.
	queued []Initiator
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessConf(t, confYAML)
}

func newHarnessConf(t *testing.T, yaml string) *harness {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(yaml), ConfigChecker{})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{env: &fakeEnv{rand: seeded{rand.NewChaCha8([32]byte{1})}, cfg: cfg, dp: newFakeDP(), stats: &stats.Counters{}}}
	ps, err := suite.ParseIKE("aes128gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	alg, err := ps[0].Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	h.ike = &sa.IKESA{UniqueID: 1, ConnName: "tun", SPIi: 0x1111, SPIr: 0x2222, Local: ourAddr, Remote: peerAddr,
		State: sa.Established, Proposal: ps[0], HS: &sa.Handshake{Ni: bytes.Repeat([]byte{0xa}, 32), Nr: bytes.Repeat([]byte{0xb}, 32)}}
	keys, err := suite.DeriveIKEKeys(alg, h.ike.Handshake().Ni, h.ike.Handshake().Nr, bytes.Repeat([]byte{0xc}, 32), h.ike.SPIi, h.ike.SPIr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ike.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	return h
}

// ctx is the Ctx of one step in exchange x.
func (h *harness) ctx(x message.ExchangeType) *Ctx {
	return &Ctx{Env: h.env, IKE: h.ike, Log: slog.New(slog.NewTextHandler(&h.log, nil)), Exchange: x, Tasks: h}
}

// Queue records a task a step queued.
func (h *harness) Queue(t Initiator) { h.queued = append(h.queued, t) }

// QueueAt records a task a step queued, whenever it is to start.
func (h *harness) QueueAt(t Initiator, _ time.Time) { h.queued = append(h.queued, t) }

// logHas fails the test unless a log line has every one of parts.
func (h *harness) logHas(t *testing.T, parts ...string) {
	t.Helper()
	for _, l := range strings.Split(h.log.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return
		}
	}
	t.Errorf("no log line with %q in:\n%s", parts, h.log.String())
}

func sels(t *testing.T, ss ...string) []ipsec.Selector {
	t.Helper()
	var out []ipsec.Selector
	for _, s := range ss {
		sel, err := ipsec.ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, sel)
	}
	return out
}

var errRefused = errors.New("refused by the test")
