package spu

import (
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/ipsec"
)

// TestSPUCoolsIdleSAs runs an engine's goroutines with a short
// CipherIdle: the outbound SA a packet warmed is cooled by its SPU's loop
// once idle, and the next packet warms it again and goes on from the
// sequence number where the SA was.
func TestSPUCoolsIdleSAs(t *testing.T) {
	fn := testFn(t)
	a := newGatewayWith(t, gwA, lanA, fn, Config{SPUs: 2, Spin: time.Millisecond, MaxSleep: 5 * time.Millisecond,
		CipherIdle: 20 * time.Millisecond})
	aOut, _, _, aIn := mirroredSAs(ipsec.AES128GCM16)
	for _, sa := range []*api.SA{aOut, aIn} {
		if _, _, err := a.e.AddSA(sa); err != nil {
			t.Fatal(err)
		}
	}
	pa, logical, _, err := a.e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB,
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	a.e.Start()
	defer a.e.Stop()
	anchor := a.e.physical(logical)
	warm := func() (n int) {
		if err := a.e.Do(anchor, func(s *SPU) { n = s.t.owner.Warm() }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	send := func() []byte {
		t.Helper()
		steerAs(a.lan[anchor], steer.ClassCleartext, logical, pa.ID)
		a.lan[anchor].Inject(udpFrame(hostA, hostB, []byte("x")))
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if out := a.takeWAN(); len(out) == 1 {
				return append([]byte(nil), out[0]...) // the frame goes back to the port
			}
		}
		t.Fatal("no ESP packet out")
		return nil
	}
	if n := warm(); n != 0 {
		t.Fatalf("%d warm SAs before any packet", n)
	}
	first := send()
	cooled := false
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if warm() == 0 {
			cooled = true
			break
		}
	}
	if !cooled {
		t.Fatal("the idle SA was never cooled")
	}
	second := send()
	if espSeq(second) != espSeq(first)+1 {
		t.Errorf("sequence number %d after cooling, %d before", espSeq(second), espSeq(first))
	}
	// Not Warm: a slow run may have cooled the SA again already.
	var warmed uint64
	if err := a.e.Do(anchor, func(s *SPU) { warmed = s.t.owner.Warmed() }); err != nil {
		t.Fatal(err)
	}
	if warmed != 2 {
		t.Errorf("the outbound SA was made warm %d times, want 2", warmed)
	}
}
