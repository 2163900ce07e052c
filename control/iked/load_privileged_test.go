package iked_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedIkedLoad runs iked's load initiator against iked: every
// new IKE SA is established with its Child SA, traffic passes through the
// tunnel the load's Child SAs share, and terminating the connection
// leaves nothing behind.
func TestPrivilegedIkedLoad(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	cb.connExtra = "    unique: never\n"
	cb.global = "block_threshold: 100\ncookie_threshold_ip: 100\n"
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)

	out := tb.a.spuctl(t, "load-initiate", "tun", "-count", "30", "-window", "8")
	t.Logf("load-initiate: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "done, 30 of 30 started (window 8), 30 established, 0 failed") {
		t.Fatalf("load-initiate: %s", out)
	}
	if out := tb.a.spuctl(t, "load-status", "tun"); !strings.Contains(out, "30 established") {
		t.Errorf("load-status: %s", out)
	}
	for _, g := range []*gw{tb.a, tb.b} {
		sas := g.sas(t)
		withChild := 0
		for _, s := range sas {
			if s.State == "ESTABLISHED" && len(s.Children) == 1 && s.Children[0].State == "INSTALLED" {
				withChild++
			}
		}
		if len(sas) != 30 || withChild != 30 {
			t.Errorf("%s: %d IKE SAs, %d with their Child SA, want 30", g.name, len(sas), withChild)
		}
	}
	if _, pols := tb.a.dump(t); len(pols) != 1 {
		t.Errorf("gw-a: %d policies, want the tunnel's one", len(pols))
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)

	if out, err := tb.a.iked.Spuctl("load-initiate", "nope", "-count", "3"); err == nil || !strings.Contains(out, `no connection "nope"`) {
		t.Errorf("load of an unknown connection: %v: %s", err, out)
	}

	tb.a.spuctl(t, "terminate", "tun", "-timeout", "60s")
	gone(t, tb.a, tb.b)
	time.Sleep(200 * time.Millisecond)
	if l := tb.a.sas(t); len(l) != 0 {
		t.Errorf("gw-a: %d IKE SAs after terminate (re-initiated?)", len(l))
	}
}
