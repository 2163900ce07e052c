package scenario

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/unixrpc"
)

// fakeLoad is iked's control socket as driveIked sees it: each load run
// ends at once with fail[round] of its IKE SAs failed, the others up on
// the responder.
type fakeLoad struct {
	mu    sync.Mutex
	fail  []int
	up    int
	loads []int
	ids   []string
	last  ikectl.LoadResult
	// lose is a load run (1: the first) that sets up only 60 % of its
	// IKE SAs before iked loses track of it.
	lose int
}

func (f *fakeLoad) serve(t *testing.T) *ikectl.Client {
	t.Helper()
	srv := unixrpc.NewServer(slog.New(slog.DiscardHandler))
	srv.Handle(ikectl.OpLoad, func(body json.RawMessage) (any, error) {
		var l ikectl.Load
		if err := json.Unmarshal(body, &l); err != nil {
			return nil, err
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		failed := 0
		if n := len(f.loads); n < len(f.fail) {
			failed = min(f.fail[n], l.Count)
		}
		f.loads = append(f.loads, l.Count)
		f.ids = append(f.ids, l.Identity)
		if len(f.loads) == f.lose {
			f.up += l.Count * 6 / 10
			return ikectl.LoadResult{Conn: l.Conn, Count: l.Count}, nil
		}
		f.up += l.Count - failed
		f.last = ikectl.LoadResult{Conn: l.Conn, Count: l.Count, Started: l.Count, Established: l.Count - failed, Failed: failed, Done: true}
		if failed > 0 {
			f.last.FirstFailure = "AUTHENTICATION_FAILED"
		}
		return f.last, nil
	})
	srv.Handle(ikectl.OpLoadStatus, func(json.RawMessage) (any, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.loads) == f.lose {
			return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "no load run of connection %q", "site")
		}
		return f.last, nil
	})
	sock := filepath.Join(t.TempDir(), "iked.sock")
	if err := srv.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	t.Cleanup(func() { srv.Close() })
	k, err := ikectl.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func (f *fakeLoad) count() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.up, nil
}

// TestDriveIkedStartsFailedAgain checks that the IKE SAs a load run lost
// are started again and counted, and that a run whose every round loses
// some ends with an error that says so.
func TestDriveIkedStartsFailedAgain(t *testing.T) {
	f := &fakeLoad{fail: []int{3, 1}}
	up, lr, err := driveIked(f.serve(t), f.count, 100, 8, time.Minute, ikedLoadID, func(int) {})
	if err != nil || up != 100 || lr.Rounds != 3 || lr.Failed != 4 || lr.FirstFailure != "AUTHENTICATION_FAILED" || !slices.Equal(f.loads, []int{100, 3, 1}) {
		t.Errorf("%d up, %+v, loads %v: %v", up, lr, f.loads, err)
	}
	// Each round's IKE SAs are named apart from the earlier rounds'.
	if want := []string{"c%d.r0.load.gw-a.lab.example", "c%d.r1.load.gw-a.lab.example", "c%d.r2.load.gw-a.lab.example"}; !slices.Equal(f.ids, want) {
		t.Errorf("identities %q, want %q", f.ids, want)
	}

	f = &fakeLoad{fail: []int{5, 5, 5, 5, 5, 5, 5}}
	up, lr, err = driveIked(f.serve(t), f.count, 100, 8, time.Minute, "", func(int) {})
	if err == nil || !strings.Contains(err.Error(), "5 rounds, 25 IKE SAs failed") || up != 95 || lr.Rounds != ikedLoadRounds {
		t.Errorf("%d up, %+v, loads %v: %v", up, lr, f.loads, err)
	}
}

// TestDriveIkedLostRun checks that a load run iked lost track of (its
// connection moved to another worker) is followed by another one for the
// IKE SAs still missing.
func TestDriveIkedLostRun(t *testing.T) {
	f := &fakeLoad{lose: 1}
	up, lr, err := driveIked(f.serve(t), f.count, 100, 8, time.Minute, "", func(int) {})
	if err != nil || up != 100 || lr.Rounds != 2 || lr.Lost != 1 || !strings.Contains(lr.FirstFailure, "load run lost") || !slices.Equal(f.loads, []int{100, 40}) {
		t.Errorf("%d up, %+v, loads %v: %v", up, lr, f.loads, err)
	}
}
