package iked

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// In front of a spud older than child.add (it answers "unknown
// operation"), the data plane answers task.ErrNoChildOps, so that Install
// and Uninstall make the separate calls, and remembers it for the
// connection: no child.add is sent on it again. A new connection (spud
// restarted, perhaps upgraded) asks again. A refusal of a spud that knows
// child.add is the Child SA's, not a reason to fall back.
func TestSpudChildOpsFallback(t *testing.T) {
	srv, path := serveSpud(t, "", nil)
	dp := connectDP(t, path)
	c := dp.c.Load()
	// spud's validation is not the test's: a request that encodes.
	req := &api.ChildAdd{In: api.SA{SPI: 0x1001, Dir: api.In, Suite: ipsec.AES128GCM16}}

	if _, err := dp.AddChild(req); !errors.Is(err, task.ErrNoChildOps) {
		t.Fatalf("child.add to an older spud: %v", err)
	}
	if err := dp.DelChild(&api.ChildDel{}); !errors.Is(err, task.ErrNoChildOps) {
		t.Fatalf("child.del to an older spud: %v", err)
	}
	// The same spud upgraded under the same connection cannot happen;
	// handlers registered now show that nothing more is asked on it.
	var adds, dels atomic.Int32
	refuse := atomic.Bool{}
	srv.Handle(api.OpChildAdd, func(json.RawMessage) (any, error) {
		adds.Add(1)
		if refuse.Load() {
			return nil, errors.New("child.add: outbound sa 0x00002002 to 198.18.0.2: exists")
		}
		return api.ChildAddReply{PolicyID: 77}, nil
	})
	srv.Handle(api.OpChildDel, func(json.RawMessage) (any, error) { dels.Add(1); return nil, nil })
	if _, err := dp.AddChild(req); !errors.Is(err, task.ErrNoChildOps) || adds.Load() != 0 {
		t.Errorf("child.add again on the connection: %v, %d sent", err, adds.Load())
	}
	if err := dp.DelChild(&api.ChildDel{}); !errors.Is(err, task.ErrNoChildOps) || dels.Load() != 0 {
		t.Errorf("child.del again on the connection: %v, %d sent", err, dels.Load())
	}

	c.Close()
	<-c.Done()
	if id, err := dp.AddChild(req); err != nil || id != 77 || adds.Load() != 1 {
		t.Errorf("child.add on a new connection: policy %d, %v, %d sent", id, err, adds.Load())
	}
	if err := dp.DelChild(&api.ChildDel{}); err != nil || dels.Load() != 1 {
		t.Errorf("child.del on a new connection: %v, %d sent", err, dels.Load())
	}
	refuse.Store(true)
	if _, err := dp.AddChild(req); err == nil || errors.Is(err, task.ErrNoChildOps) {
		t.Errorf("a refusal of child.add: %v, want it as it is", err)
	}
	if _, err := dp.AddChild(req); errors.Is(err, task.ErrNoChildOps) || adds.Load() != 3 {
		t.Errorf("child.add after a refusal: %v, %d sent", err, adds.Load())
	}
}
