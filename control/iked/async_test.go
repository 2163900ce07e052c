package iked

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// asyncAnswer is one answer of workerDP.AddChildAsync as the worker's
// loop got it.
type asyncAnswer struct {
	id  uint32
	err error
}

// slowSpud serves child.add after delay, answering its policy id as the
// number of the request.
func slowSpud(t *testing.T, path string, delay time.Duration, n *atomic.Int32) *unixrpc.Server {
	t.Helper()
	srv, _ := serveSpud(t, path, map[string]unixrpc.HandlerFunc{api.OpChildAdd: func(json.RawMessage) (any, error) {
		k := n.Add(1)
		time.Sleep(delay)
		return api.ChildAddReply{PolicyID: uint32(k)}, nil
	}})
	return srv
}

// newAsyncDP is a worker's data plane on spud at path whose answers go to
// a channel, as they go to the worker's loop in the daemon.
func newAsyncDP(t *testing.T, path string) (*workerDP, chan func(), *sync.WaitGroup) {
	t.Helper()
	dp := connectDP(t, path)
	answers := make(chan func(), 64)
	wg := &sync.WaitGroup{}
	return &workerDP{spudDP: dp, post: func(f func()) { answers <- f }, wg: wg}, answers, wg
}

// A worker's child.add goes out without the worker waiting: the calls
// return at once, are in flight together on the connection, and their
// answers come back through post; the time counted as waited for spud is
// that of the calls waited for, not these.
func TestAsyncChildAddPipelined(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	var n atomic.Int32
	const delay = 40 * time.Millisecond
	slowSpud(t, path, delay, &n)
	dp, answers, wg := newAsyncDP(t, path)
	req := &api.ChildAdd{In: api.SA{SPI: 0x1001, Dir: api.In, Suite: ipsec.AES128GCM16}}

	const k = 5
	start := time.Now()
	got := make(chan asyncAnswer, k)
	for range k {
		dp.AddChildAsync(req, func(id uint32, err error) { got <- asyncAnswer{id, err} })
	}
	if took := time.Since(start); took > delay/2 {
		t.Errorf("%d asynchronous child.adds took %v to send", k, took)
	}
	if dp.inflight.Load() == 0 {
		t.Errorf("no install counted in flight")
	}
	ids := map[uint32]bool{}
	for range k {
		select {
		case f := <-answers:
			f()
		case <-time.After(5 * time.Second):
			t.Fatal("no answer")
		}
		a := <-got
		if a.err != nil {
			t.Fatalf("child.add: %v", a.err)
		}
		ids[a.id] = true
	}
	wg.Wait()
	if len(ids) != k || dp.inflight.Load() != 0 {
		t.Errorf("answers %v, %d in flight", ids, dp.inflight.Load())
	}
	if w := time.Duration(dp.waitedNS.Load()); w != 0 {
		t.Errorf("%v counted as waited for spud by calls nobody waited for", w)
	}
	if _, err := dp.AddChild(req); err != nil {
		t.Fatal(err)
	}
	if w := time.Duration(dp.waitedNS.Load()); w < delay {
		t.Errorf("a child.add waited for counts %v, want at least %v", w, delay)
	}
}

// spud lost while a child.add is in flight: the call runs again on the
// next connection (spud restarted empty, so the first attempt left
// nothing), as a child.add waited for does, and its answer is that one's.
func TestAsyncChildAddSpudLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	var first atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	srv := unixrpc.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv.Handle(api.OpChildAdd, func(json.RawMessage) (any, error) {
		first.Add(1)
		close(entered)
		<-release
		return api.ChildAddReply{PolicyID: 1}, nil
	})
	if err := srv.Listen(path); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	dp, answers, wg := newAsyncDP(t, path)
	req := &api.ChildAdd{In: api.SA{SPI: 0x1001, Dir: api.In, Suite: ipsec.AES128GCM16}}
	got := make(chan asyncAnswer, 1)
	dp.AddChildAsync(req, func(id uint32, err error) { got <- asyncAnswer{id, err} })
	<-entered
	// spud dies with the request in hand, and comes back.
	spudDies(srv, dp.spudDP, release)
	var again atomic.Int32
	slowSpud(t, path, 0, &again)
	select {
	case f := <-answers:
		f()
	case <-time.After(10 * time.Second):
		t.Fatal("no answer after spud came back")
	}
	wg.Wait()
	a := <-got
	if a.err != nil || a.id != 1 || again.Load() != 1 {
		t.Errorf("child.add across spud's restart: policy %d, %v; %d sent to the new spud", a.id, a.err, again.Load())
	}
}

// Between spud's answer and the worker taking it, a child.add's SAs and
// policy are in spud and in no IKE SA: the sweep after a resync counts
// them as owned until the worker has taken the answer.
func TestAsyncChildAddOwnedUntilTaken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	var n atomic.Int32
	slowSpud(t, path, 0, &n)
	dp, answers, wg := newAsyncDP(t, path)
	out := api.SA{SPI: 0x2002, Dir: api.Out, Suite: ipsec.AES128GCM16}
	req := &api.ChildAdd{In: api.SA{SPI: 0x1001, Dir: api.In, Suite: ipsec.AES128GCM16}, Out: &out}
	taken := false
	dp.AddChildAsync(req, func(uint32, error) { taken = true })
	var f func()
	select {
	case f = <-answers:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer")
	}
	wg.Wait()
	sas, pols := map[saKey]bool{}, map[uint32]bool{}
	dp.owned(sas, pols)
	if !sas[saKey{0x1001, api.In}] || !sas[saKey{0x2002, api.Out}] || !pols[1] {
		t.Errorf("owned while the answer waits for the worker: %v, policies %v", sas, pols)
	}
	f()
	sas, pols = map[saKey]bool{}, map[uint32]bool{}
	dp.owned(sas, pols)
	if !taken || len(sas) != 0 || len(pols) != 0 {
		t.Errorf("owned once the worker took the answer (%v): %v, policies %v", taken, sas, pols)
	}
}

// orderSpud serves sa.add, child.del, sa.update and child.add after delay
// each, recording the operations in the order spud applied them.
func orderSpud(t *testing.T, path string, delay time.Duration, mu *sync.Mutex, ops *[]string) *unixrpc.Server {
	t.Helper()
	rec := func(op string) unixrpc.HandlerFunc {
		return func(json.RawMessage) (any, error) {
			time.Sleep(delay)
			mu.Lock()
			*ops = append(*ops, op)
			mu.Unlock()
			if op == api.OpChildAdd {
				return api.ChildAddReply{PolicyID: 9}, nil
			}
			return nil, nil
		}
	}
	srv, _ := serveSpud(t, path, map[string]unixrpc.HandlerFunc{api.OpSAAdd: rec(api.OpSAAdd), api.OpChildDel: rec(api.OpChildDel),
		api.OpSAUpdate: rec(api.OpSAUpdate), api.OpChildAdd: rec(api.OpChildAdd)})
	return srv
}

// The calls nobody waits for (a release, a removal, a move) return at
// once, reach spud in the order made, and a call the worker waits for
// goes after them; only that wait counts as blocked on spud.
func TestLaterCallsOrdered(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	var mu sync.Mutex
	var ops []string
	const delay = 30 * time.Millisecond
	orderSpud(t, path, delay, &mu, &ops)
	dp, _, wg := newAsyncDP(t, path)
	var failed []string
	dp.fail = func(what string, err error) { failed = append(failed, what+": "+err.Error()) }
	out := &api.SA{SPI: 0x2002, Dir: api.Out, Suite: ipsec.AES128GCM16}
	start := time.Now()
	dp.AddSALater(out)
	dp.DelChildLater(&api.ChildDel{In: &api.SAID{SPI: 0x1001, Dir: api.In}, Out: &api.SAID{SPI: 0x2002, Dir: api.Out}})
	dp.UpdateSALater(&api.SAUpdate{SAID: api.SAID{SPI: 0x1003, Dir: api.In}})
	if took := time.Since(start); took > delay/2 {
		t.Errorf("three later calls took %v to make", took)
	}
	if w := dp.waitedNS.Load(); w != 0 {
		t.Errorf("later calls counted %v as waited for", time.Duration(w))
	}
	if _, err := dp.AddChild(&api.ChildAdd{In: api.SA{SPI: 0x1005, Dir: api.In, Suite: ipsec.AES128GCM16}}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	mu.Lock()
	got := strings.Join(ops, " ")
	mu.Unlock()
	if want := "sa.add child.del sa.update child.add"; got != want {
		t.Errorf("spud applied %q, want %q", got, want)
	}
	if w := time.Duration(dp.waitedNS.Load()); w < 3*delay {
		t.Errorf("the waited-for child.add counts %v blocked, want its wait for the three before it too (%v and more)", w, 3*delay)
	}
	if dp.inflight.Load() != 0 || len(failed) != 0 {
		t.Errorf("%d in flight, failures %v", dp.inflight.Load(), failed)
	}
}

// spud lost while later calls are queued: the one in hand runs again on
// the next connection and the rest follow there, in order; a failure is
// reported through fail, not to the worker.
func TestLaterCallsSpudLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spud.sock")
	entered := make(chan struct{})
	release := make(chan struct{})
	srv, _ := serveSpud(t, path, map[string]unixrpc.HandlerFunc{api.OpChildDel: func(json.RawMessage) (any, error) {
		close(entered)
		<-release
		return nil, nil
	}})
	dp, _, wg := newAsyncDP(t, path)
	var fmu sync.Mutex
	var failed []string
	dp.fail = func(what string, err error) {
		fmu.Lock()
		defer fmu.Unlock()
		failed = append(failed, what+": "+err.Error())
	}
	dp.DelChildLater(&api.ChildDel{In: &api.SAID{SPI: 0x1001, Dir: api.In}})
	dp.AddSALater(&api.SA{SPI: 0x2002, Dir: api.Out, Suite: ipsec.AES128GCM16})
	<-entered
	spudDies(srv, dp.spudDP, release)
	var mu sync.Mutex
	var ops []string
	srv = orderSpud(t, path, 0, &mu, &ops)
	wg.Wait()
	mu.Lock()
	got := strings.Join(ops, " ")
	mu.Unlock()
	if want := "child.del sa.add"; got != want || len(failed) != 0 {
		t.Errorf("after spud came back it applied %q (want %q); failures %v", got, want, failed)
	}
	// A refusal goes to fail, saying what the call was.
	srv.Handle(api.OpSAUpdate, func(json.RawMessage) (any, error) { return nil, errors.New("sa.update: in sa 0x00001003: not found") })
	dp.UpdateSALater(&api.SAUpdate{SAID: api.SAID{SPI: 0x1003, Dir: api.In}})
	wg.Wait()
	fmu.Lock()
	defer fmu.Unlock()
	if len(failed) != 1 || !strings.Contains(failed[0], "move in sa 0x00001003") || !strings.Contains(failed[0], "not found") {
		t.Errorf("failures %v, want the move's", failed)
	}
}

// spudDies closes srv with a request in hand, which release then lets
// go, and returns once dp has lost its connection and srv is closed.
func spudDies(srv *unixrpc.Server, dp *spudDP, release chan struct{}) {
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	<-dp.c.Load().Done()
	close(release)
	<-closed
}
