package vici_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/control/vici"
)

// fakeIked is a Backend with n IKE SAs, recording what it was asked.
type fakeIked struct {
	mu    sync.Mutex
	sas   []ikectl.IKESA
	certs []vici.Cert
	calls []string
}

func newFake(n int) *fakeIked {
	f := &fakeIked{}
	for i := 1; i <= n; i++ {
		f.sas = append(f.sas, ikectl.IKESA{Conn: "site", UniqueID: uint32(i), State: "ESTABLISHED", Initiator: i%2 == 1,
			SPIi: fmt.Sprintf("%016x", i), SPIr: "00000000000000aa",
			Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.18.0.2:4500"),
			LocalID: "gw-a.example", RemoteID: "C=CH, O=x, CN=gw b", Proposal: "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384",
			Established: time.Now().Add(-5 * time.Second), RekeyIn: time.Hour, NATRemote: true,
			Children: []ikectl.ChildSA{{Name: "net", UniqueID: uint32(1000 + i), State: "INSTALLED", ReqID: 7, SPIIn: 0xc1a2b3c4, SPIOut: 0xabcd,
				Proposal: "ESP:AES_CBC_128/HMAC_SHA2_256_128/NO_EXT_SEQ", Encap: true, LocalTS: []string{"198.18.1.0/24"},
				RemoteTS: []string{"198.18.2.0/24"}, Installed: time.Now().Add(-3 * time.Second), BytesIn: 840, PacketsIn: 10, SPU: 1}}})
	}
	return f
}

func (f *fakeIked) rec(s string) {
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
}

func (f *fakeIked) Daemon() (string, time.Time) { return "iked", time.Now().Add(-time.Minute) }
func (f *fakeIked) Stats() (*ikectl.Stats, error) {
	return &ikectl.Stats{Counters: map[string]uint64{"ike_sa_setups": 3}, Failures: map[string]uint64{}, HalfOpen: 1, IKESAs: len(f.sas),
		Workers: []ikectl.WorkerStats{{ID: 0}, {ID: 1}}}, nil
}
func (f *fakeIked) Conns() (*ikectl.Conns, error) {
	return &ikectl.Conns{Conns: []ikectl.Conn{{Name: "site", LocalAddrs: []string{"198.18.0.1"}, RemoteAddrs: []string{"198.18.0.2"},
		LocalAuth: "psk", LocalID: "gw-a.example", RemoteAuth: "pubkey", DPDDelay: "30s", RekeyTime: 4 * time.Hour,
		Children: []ikectl.Child{{Name: "net", LocalTS: []string{"198.18.1.0/24"}, RemoteTS: []string{"198.18.2.0/24"}, RekeyTime: "1h0m0s", StartAction: "trap"}}}}}, nil
}
func (f *fakeIked) SAPage(after uint32, limit int) (*ikectl.SAs, error) {
	out := &ikectl.SAs{}
	for _, s := range f.sas {
		if s.UniqueID <= after {
			continue
		}
		if len(out.IKESAs) == limit {
			out.More = true
			break
		}
		out.IKESAs = append(out.IKESAs, s)
		out.Next = s.UniqueID
	}
	return out, nil
}
func (f *fakeIked) Initiate(r ikectl.Initiate) (*ikectl.Result, error) {
	f.rec(fmt.Sprintf("initiate %s/%s %v", r.Conn, r.Child, r.Timeout))
	if r.Conn == "down" {
		return nil, errors.New("peer did not answer")
	}
	return &ikectl.Result{Matched: 1, Message: "established"}, nil
}
func (f *fakeIked) Terminate(r ikectl.Terminate) (*ikectl.Result, error) {
	f.rec(fmt.Sprintf("terminate %s/%s %d/%d", r.Conn, r.Child, r.IKEID, r.ChildID))
	return &ikectl.Result{Matched: 1, Message: "terminated"}, nil
}
func (f *fakeIked) Rekey(r ikectl.Rekey) (*ikectl.Result, error) {
	f.rec(fmt.Sprintf("rekey %s/%s %d/%d ike=%v", r.Conn, r.Child, r.IKEID, r.ChildID, r.IKE))
	return &ikectl.Result{Matched: 1}, nil
}
func (f *fakeIked) Certs() ([]vici.Cert, error) { return f.certs, nil }
func (f *fakeIked) Reload() (*ikectl.ReloadResult, error) {
	f.rec("reload")
	return &ikectl.ReloadResult{Unchanged: []string{"site"}}, nil
}

// serve starts a server over b on a socket in a temporary folder.
func serve(t *testing.T, b vici.Backend) (*vici.Server, string) {
	t.Helper()
	s := vici.NewServer(nil)
	vici.Register(s, b)
	path := filepath.Join(t.TempDir(), "vici.sock")
	if err := s.Listen(path, ""); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

func session(t *testing.T, path string) *govici.Session {
	t.Helper()
	sess, err := govici.NewSession(govici.WithSocketPath(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func call(t *testing.T, s *govici.Session, cmd string, in map[string]any) *govici.Message {
	t.Helper()
	m := govici.NewMessage()
	for k, v := range in {
		m.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.Call(ctx, cmd, m)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

func TestGoviciCommands(t *testing.T) {
	f := newFake(3)
	_, path := serve(t, f)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", st.Mode(), err)
	}
	s := session(t, path)

	v := call(t, s, "version", nil)
	if v.Get("daemon") != "iked" || v.Get("version") == nil || v.Get("sysname") != "Linux" {
		t.Errorf("version: %s", v)
	}
	st := call(t, s, "stats", nil)
	ikes, _ := st.Get("ikesas").(*govici.Message)
	if ikes == nil || ikes.Get("total") != "3" || ikes.Get("half-open") != "1" {
		t.Errorf("stats: %s", st)
	}
	gc := call(t, s, "get-conns", nil)
	if l, _ := gc.Get("conns").([]string); len(l) != 1 || l[0] != "site" {
		t.Errorf("get-conns: %s", gc)
	}

	// list-sas streams list-sa events in charon's layout.
	events := stream(t, s, "list-sas", "list-sa", nil)
	if len(events) != 3 {
		t.Fatalf("list-sas: %d events", len(events))
	}
	ike, _ := events[0].Get("site").(*govici.Message)
	if ike == nil {
		t.Fatalf("list-sa: %s", events[0])
	}
	for k, want := range map[string]string{"uniqueid": "1", "version": "2", "state": "ESTABLISHED", "local-host": "198.18.0.1",
		"local-port": "500", "remote-port": "4500", "remote-id": "C=CH, O=x, CN=gw b", "initiator": "yes", "initiator-spi": "0000000000000001",
		"encr-alg": "AES_GCM_16", "encr-keysize": "256", "prf-alg": "PRF_HMAC_SHA2_384", "dh-group": "ECP_384", "established": "5",
		"rekey-time": "3600", "nat-remote": "yes"} {
		if got := ike.Get(k); got != want {
			t.Errorf("list-sa %s = %v, want %q", k, got, want)
		}
	}
	children, _ := ike.Get("child-sas").(*govici.Message)
	ch, _ := children.Get("net-1001").(*govici.Message)
	if ch == nil {
		t.Fatalf("child-sas: %s", children)
	}
	for k, want := range map[string]string{"name": "net", "uniqueid": "1001", "reqid": "7", "state": "INSTALLED", "mode": "TUNNEL",
		"protocol": "ESP", "encap": "yes", "spi-in": "c1a2b3c4", "spi-out": "0000abcd", "encr-alg": "AES_CBC", "encr-keysize": "128",
		"integ-alg": "HMAC_SHA2_256_128", "bytes-in": "840", "packets-in": "10", "install-time": "3"} {
		if got := ch.Get(k); got != want {
			t.Errorf("child %s = %v, want %q", k, got, want)
		}
	}
	if ts, _ := ch.Get("remote-ts").([]string); len(ts) != 1 || ts[0] != "198.18.2.0/24" {
		t.Errorf("remote-ts %v", ch.Get("remote-ts"))
	}
	// Filtered by ike-id.
	n := 0
	for _, m := range stream(t, s, "list-sas", "list-sa", map[string]any{"ike-id": "2"}) {
		if sa, _ := m.Get("site").(*govici.Message); sa == nil || sa.Get("uniqueid") != "2" {
			t.Errorf("ike-id 2: %s", m)
		}
		n++
	}
	if n != 1 {
		t.Errorf("ike-id 2: %d events", n)
	}

	n = 0
	for _, m := range stream(t, s, "list-conns", "list-conn", nil) {
		c, _ := m.Get("site").(*govici.Message)
		kids, _ := c.Get("children").(*govici.Message)
		net, _ := kids.Get("net").(*govici.Message)
		local, _ := c.Get("local-1").(*govici.Message)
		if net == nil || net.Get("rekey_time") != "3600" || local.Get("class") != "pre-shared key" || c.Get("dpd_delay") != "30" || c.Get("rekey_time") != "14400" || c.Get("reauth_time") != "0" {
			t.Errorf("list-conn: %s", m)
		}
		n++
	}
	if n != 1 {
		t.Errorf("list-conns: %d events", n)
	}

	if r := call(t, s, "initiate", map[string]any{"child": "net", "timeout": "5000"}); r.Get("success") != "yes" {
		t.Errorf("initiate: %s", r)
	}
	if e := fail(t, s, "initiate", map[string]any{"child": "nope"}); !strings.Contains(e, "'nope' not found") {
		t.Errorf("initiate nope: %s", e)
	}
	// A negative timeout answers at once; the operation goes on.
	if r := call(t, s, "initiate", map[string]any{"ike": "site", "timeout": "-1"}); r.Get("success") != "yes" {
		t.Errorf("initiate detached: %s", r)
	}
	waitCalls(t, f, 2)
	if r := call(t, s, "terminate", map[string]any{"ike": "site"}); r.Get("success") != "yes" || r.Get("matches") != "1" {
		t.Errorf("terminate: %s", r)
	}
	if r := call(t, s, "terminate", map[string]any{"child-id": "1002"}); r.Get("success") != "yes" {
		t.Errorf("terminate child-id: %s", r)
	}
	if e := fail(t, s, "terminate", nil); !strings.Contains(e, "name an IKE_SA") {
		t.Errorf("terminate nothing: %s", e)
	}
	if r := call(t, s, "rekey", map[string]any{"ike-id": "1"}); r.Get("success") != "yes" {
		t.Errorf("rekey: %s", r)
	}
	if e := fail(t, s, "rekey", map[string]any{"ike": "site", "reauth": "yes"}); !strings.Contains(e, "not supported by iked: reauth") {
		t.Errorf("rekey reauth: %s", e)
	}
	if r := call(t, s, "reload-settings", nil); r.Get("success") != "yes" {
		t.Errorf("reload-settings: %s", r)
	}
	want := []string{"initiate site/net 5s", "initiate site/ 0s", "terminate site/ 0/0", "terminate / 2/1002", "rekey / 1/0 ike=true", "reload"}
	if fmt.Sprint(f.calls) != fmt.Sprint(want) {
		t.Errorf("backend calls %q, want %q", f.calls, want)
	}

	// Refused commands fail with a reason; unknown ones are CMD_UNKNOWN.
	for cmd := range vici.Refused {
		if e := fail(t, s, cmd, map[string]any{"x": "y"}); !strings.Contains(e, cmd+": not supported by iked: ") {
			t.Errorf("%s: %s", cmd, e)
		}
	}
	if _, err := s.Call(context.Background(), "no-such-command", nil); err == nil {
		t.Error("unknown command: no error")
	}
	if err := s.Subscribe("no-such-event"); err == nil {
		t.Error("unknown event: no error")
	}
	// The session still works after those.
	if v := call(t, s, "version", nil); v.Get("daemon") != "iked" {
		t.Errorf("version after errors: %s", v)
	}
}

// waitCalls waits until the backend was called n times.
func waitCalls(t *testing.T, f *fakeIked, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		got := len(f.calls)
		f.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backend calls, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fail runs a command that must fail and returns its errmsg.
func fail(t *testing.T, s *govici.Session, cmd string, in map[string]any) string {
	t.Helper()
	m := govici.NewMessage()
	for k, v := range in {
		m.Set(k, v)
	}
	r, err := s.Call(context.Background(), cmd, m)
	if err == nil {
		t.Errorf("%s: succeeded: %s", cmd, r)
		return ""
	}
	return err.Error()
}

// stream runs a streaming command and returns its events. Not with
// govici's CallStreaming: v0.8.0's ends the stream at the response
// when events are still buffered (it selects between its event and
// response channels, both ready), and loses them about a third of the
// time against a server that answers at once. Events of a subscription
// are dispatched by govici's reader before it reads the response, so
// they are all in ch when Call returns.
func stream(t *testing.T, s *govici.Session, cmd, event string, in map[string]any) []*govici.Message {
	t.Helper()
	if err := s.Subscribe(event); err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe(event)
	ch := make(chan govici.Event, 4096)
	s.NotifyEvents(ch)
	defer s.StopEvents(ch)
	call(t, s, cmd, in)
	var out []*govici.Message
	for {
		select {
		case ev := <-ch:
			if ev.Name == event {
				out = append(out, ev.Message)
			}
		default:
			return out
		}
	}
}

// TestGoviciEvents registers for ike-updown and child-updown as swanctl
// --monitor-sa does and sees the events the daemon raises.
func TestGoviciEvents(t *testing.T) {
	f := newFake(1)
	srv, path := serve(t, f)
	s := session(t, path)
	if err := s.Subscribe(vici.EvIKEUpDown, vici.EvChildUpDown); err != nil {
		t.Fatal(err)
	}
	ch := make(chan govici.Event, 8)
	s.NotifyEvents(ch)
	if !srv.Subscribed(vici.EvIKEUpDown) || srv.Subscribed(vici.EvIKERekey) {
		t.Fatal("subscriptions not counted")
	}
	srv.IKEUpDown(&f.sas[0], true)
	srv.ChildUpDown(&f.sas[0], &f.sas[0].Children[0], false)
	for i, want := range []string{"ike-updown", "child-updown"} {
		select {
		case ev := <-ch:
			if ev.Name != want {
				t.Fatalf("event %d: %s, want %s", i, ev.Name, want)
			}
			up := ev.Message.Get("up")
			if (i == 0) != (up == "yes") {
				t.Errorf("%s: up = %v", want, up)
			}
			sa, _ := ev.Message.Get("site").(*govici.Message)
			if sa == nil || sa.Get("uniqueid") != "1" {
				t.Errorf("%s: %s", want, ev.Message)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	s.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.Subscribed(vici.EvIKEUpDown) {
		if time.Now().After(deadline) {
			t.Fatal("subscription outlived its client")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMalformedClient: a client that sends garbage is dropped; the
// server goes on serving others.
func TestMalformedClient(t *testing.T) {
	_, path := serve(t, newFake(0))
	for _, b := range [][]byte{
		{0, 0, 0, 0},                           // zero length
		{0xff, 0xff, 0xff, 0xff},               // 4 GiB
		{0, 0, 0, 2, byte(vici.CmdRequest), 9}, // name overruns
		{0, 0, 0, 1, byte(vici.CmdResponse)},   // a server's packet
	} {
		c, err := netDial(path)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var buf [1]byte
		if _, err := c.Read(buf[:]); err == nil {
			t.Errorf("%v: server answered", b)
		}
		c.Close()
	}
	s := session(t, path)
	if v := call(t, s, "version", nil); v.Get("daemon") != "iked" {
		t.Errorf("version: %s", v)
	}
}

// TestListenGroup: with a group the socket is 0660 and that group's; a
// folder the group cannot enter is refused, naming it.
func TestListenGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown to another group needs root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o711)
	s := vici.NewServer(nil)
	path := filepath.Join(dir, "v.sock")
	if err := s.Listen(path, "0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o660 {
		t.Errorf("socket: %v %v", st.Mode(), err)
	}
	closed := t.TempDir()
	os.Chmod(closed, 0o700)
	if err := vici.NewServer(nil).Listen(filepath.Join(closed, "v.sock"), "daemon"); err == nil || !strings.Contains(err.Error(), "cannot enter") {
		t.Errorf("closed folder: %v", err)
	}
	if err := vici.NewServer(nil).Listen(filepath.Join(dir, "w.sock"), "no-such-group-here"); err == nil || !strings.Contains(err.Error(), "no such group") {
		t.Errorf("unknown group: %v", err)
	}
	// A live server's socket is not taken over.
	if err := vici.NewServer(nil).Listen(path, ""); err == nil || !strings.Contains(err.Error(), "another server") {
		t.Errorf("live socket: %v", err)
	}
}

// TestLogEvent: iked's log lines at info and above reach a client
// registered for log, with charon's keys; debug lines do not.
func TestLogEvent(t *testing.T) {
	srv, path := serve(t, newFake(0))
	s := session(t, path)
	if err := s.Subscribe(vici.EvLog); err != nil {
		t.Fatal(err)
	}
	ch := make(chan govici.Event, 8)
	s.NotifyEvents(ch)
	log := slog.New(srv.LogHandler(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug}))).With("worker", 1)
	log.Debug("not for vici")
	log.Warn("iked: child sa rekeyed", "conn", "tun", "ike_id", 7)
	select {
	case ev := <-ch:
		m := ev.Message
		if m.Get("group") != "IKE" || m.Get("level") != "0" || m.Get("thread") != "1" || m.Get("ikesa-name") != "tun" ||
			m.Get("ikesa-uniqueid") != "7" || m.Get("msg") != "iked: child sa rekeyed worker=1 conn=tun ike_id=7" {
			t.Errorf("log event: %s", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no log event")
	}
	select {
	case ev := <-ch:
		t.Errorf("a second event: %s", ev.Message)
	case <-time.After(100 * time.Millisecond):
	}
}

// slowIked's initiate never ends on its own.
type slowIked struct {
	*fakeIked
	release chan struct{}
}

func (s slowIked) Initiate(ikectl.Initiate) (*ikectl.Result, error) {
	<-s.release
	return nil, errors.New("released")
}

// TestCloseWithCommandInFlight: Close returns while a command still
// runs, and the client sees its connection end.
func TestCloseWithCommandInFlight(t *testing.T) {
	b := slowIked{fakeIked: newFake(0), release: make(chan struct{})}
	defer close(b.release)
	s := vici.NewServer(nil)
	vici.Register(s, b)
	path := filepath.Join(t.TempDir(), "v.sock")
	if err := s.Listen(path, ""); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	sess := session(t, path)
	errc := make(chan error, 1)
	go func() {
		_, err := sess.Call(context.Background(), "initiate", mustMsg(map[string]any{"ike": "site"}))
		errc <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	s.Close()
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("Close took %v", el)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("initiate succeeded")
		}
	case <-time.After(10 * time.Second):
		t.Error("client still waiting after Close")
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("socket left behind")
	}
}

func mustMsg(in map[string]any) *govici.Message {
	m := govici.NewMessage()
	for k, v := range in {
		m.Set(k, v)
	}
	return m
}
