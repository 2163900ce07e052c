package iked_test

import (
	"strings"
	"testing"
	"time"

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

// TestPrivilegedInitialContactSpansWorkers: with ike_anchor ike-sa, gw-b
// holds an IKE SA that gw-a set up on one worker and initiates to gw-a on
// another (its endpoints'): it must not send INITIAL_CONTACT, which would
// make gw-a drop the IKE SA it holds with gw-b.
func TestPrivilegedInitialContactSpansWorkers(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	tb.startPSK(t, func(a, b *conf) {
		loadResponder(a, b)
		b.global += "ike_anchor: ike-sa\n"
	})
	h, err := tb.b.iked.Client.Hello()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Workers) < 2 {
		t.Skipf("gw-b runs %d IKE worker(s)", len(h.Workers))
	}
	// The worker of gw-b's own IKE SAs with gw-a.
	tb.b.spuctl(t, "initiate", "tun")
	own := tb.b.sas(t)[0].Worker
	tb.b.spuctl(t, "terminate", "tun", "-timeout", "30s")
	gone(t, tb.a, tb.b)
	// gw-a sets up IKE SAs until gw-b holds one on another worker.
	for try := 0; ; try++ {
		if out := tb.a.spuctl(t, "load-initiate", "tun", "-count", "1"); !strings.Contains(out, "1 established, 0 failed") {
			t.Fatalf("load-initiate: %s", out)
		}
		if tb.b.sas(t)[0].Worker != own {
			break
		}
		if try == 12 {
			t.Skipf("gw-a's IKE SAs all landed on gw-b's worker %d", own)
		}
		tb.a.spuctl(t, "terminate", "tun", "-timeout", "30s")
		gone(t, tb.a, tb.b)
	}
	tb.b.spuctl(t, "initiate", "tun")
	st, err := tb.a.iked.Client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if n := st.Counters["initial_contacts"]; n != 0 {
		t.Errorf("gw-a dropped %d IKE SAs on gw-b's INITIAL_CONTACT", n)
	}
	if n := len(tb.a.sas(t)); n != 2 {
		t.Errorf("gw-a holds %d IKE SAs, want its own and gw-b's", n)
	}
	// gw-a's connection holds both: terminating it ends them.
	tb.a.spuctl(t, "terminate", "tun", "-timeout", "30s")
	gone(t, tb.a, tb.b)
}

// TestPrivilegedReauthAcrossWorkers: gw-a reauthenticates the tunnel
// every 6 s; gw-b, with ike_anchor ike-sa, puts each new IKE SA on the
// worker the hash with its SPI names, often not the one of the IKE SA it
// replaces. Those reauthentications too are make before break: gw-b's new
// Child SA sends once the old IKE SA is deleted, the old one's SAs and
// policy go after, and a numbered flow each way loses no packet.
func TestPrivilegedReauthAcrossWorkers(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	tb.startPSK(t, func(a, b *conf) {
		a.connExtra = "    rekey_time: 0s\n    reauth_time: 6s\n    over_time: 10s\n    rand_time: 0s\n"
		b.connExtra = "    rekey_time: 0s\n"
		a.childExtra, b.childExtra = "        rekey_time: 0s\n", "        rekey_time: 0s\n"
		b.global += "ike_anchor: ike-sa\n"
	})
	h, err := tb.b.iked.Client.Hello()
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Workers) < 2 {
		t.Skipf("gw-b runs %d IKE worker(s)", len(h.Workers))
	}
	tb.a.spuctl(t, "initiate", "tun")
	before := tb.a.counters(t)
	logB := len(tb.b.iked.Proc.Log())
	ab, ba := bothFlows(t, tb.ln, 45*time.Second)
	checkFlows(t, "reauth across workers", []*lab.Host{tb.ln.ClientB, tb.ln.ClientA}, ab, ba)
	n := delta(tb.a.counters(t), before, "ike_sas_reauthenticated")
	crossed := strings.Count(tb.b.iked.Proc.Log()[logB:], "child sa handed over to the reauthenticated IKE SA on another worker")
	t.Logf("%d reauthentications in 45 s, %d of them across gw-b's workers", n, crossed)
	if n < 5 {
		t.Errorf("%d reauthentications in 45 s with reauth_time 6s", n)
	}
	if crossed == 0 {
		t.Errorf("no reauthentication crossed gw-b's workers: the test tested nothing")
	}
	settled(t, tb.a)
	settled(t, tb.b)
	tb.a.spuctl(t, "terminate", "tun")
	gone(t, tb.a, tb.b)
}
