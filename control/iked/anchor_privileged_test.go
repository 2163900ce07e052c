package iked_test

import (
	"strings"
	"testing"

	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedOnePeerEveryWorker: with ike_anchor ike-sa, the IKE SAs
// one peer sets up from one address spread over every IKE worker of the
// responder, each with its Child SA, each worker's tunnels carry traffic,
// and terminating leaves nothing behind.
func TestPrivilegedOnePeerEveryWorker(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	tb.startPSK(t, func(a, b *conf) {
		loadResponder(a, b)
		b.global += "ike_anchor: ike-sa\n"
	})
	const n = 40
	out := tb.a.spuctl(t, "load-initiate", "tun", "-count", "40", "-window", "8")
	if !strings.Contains(out, "40 established, 0 failed") {
		t.Fatalf("load-initiate: %s", out)
	}
	workers := map[int]int{}
	logical := map[int]bool{}
	for _, s := range tb.b.sas(t) {
		if s.State != "ESTABLISHED" || len(s.Children) != 1 || s.Children[0].State != "INSTALLED" {
			t.Errorf("gw-b: IKE SA %d is %s with %d Child SAs", s.UniqueID, s.State, len(s.Children))
		}
		workers[s.Worker]++
		logical[s.Logical] = true
	}
	t.Logf("gw-b: IKE SAs by worker %v, on %d logical SPUs", workers, len(logical))
	h, err := tb.b.iked.Client.Hello()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Workers) < 2 {
		t.Skipf("gw-b runs %d IKE worker(s): nothing to spread over", len(h.Workers))
	}
	if len(workers) < 2 {
		t.Errorf("gw-b: %d IKE SAs of one peer all on worker(s) %v", n, workers)
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)

	tb.a.spuctl(t, "terminate", "tun", "-timeout", "60s")
	gone(t, tb.a, tb.b)
}
