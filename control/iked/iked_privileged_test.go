package iked_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/deploy/lab"
)

// TestPrivilegedTunnel brings a tunnel up with iked on gw-a as initiator,
// then as responder, carries ping and TCP both ways over IPv4 and IPv6
// inside, and deletes it from either side.
func TestPrivilegedTunnel(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)
	for _, c := range []struct {
		name       string
		init, resp *gw
	}{{"a-initiates", tb.a, tb.b}, {"b-initiates", tb.b, tb.a}} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out := c.init.spuctl(t, "initiate", "tun")
			t.Logf("initiate: %s (%v)", strings.TrimSpace(out), time.Since(start))
			mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
			mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
			mustPing(t, tb.ln.ClientA, pl.ClientA6, pl.ClientB6)
			tcpTransfer(t, tb.ln.ClientA, tb.ln.ClientB, pl.ClientB4, 1<<20)
			tcpTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA6, 1<<20)
			list := c.init.spuctl(t, "list-sas")
			t.Logf("list-sas on the initiator:\n%s", list)
			if !strings.Contains(list, "ESTABLISHED") || !strings.Contains(list, "AES_GCM_16_128") {
				t.Errorf("list-sas:\n%s", list)
			}
			// Delete from the other side.
			c.resp.spuctl(t, "terminate", "tun")
			for _, g := range []*gw{tb.a, tb.b} {
				if !waitFor(5*time.Second, func() bool {
					sas, pols := g.dump(t)
					return len(sas) == 0 && len(pols) == 0
				}) {
					sas, pols := g.dump(t)
					t.Errorf("%s: %d SAs, %d policies left in spud after the delete", g.name, len(sas), len(pols))
				}
				if l := g.sas(t); len(l) != 0 {
					t.Errorf("%s: IKE SAs left: %+v", g.name, l)
				}
			}
			if n := ping(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 2); n != 0 {
				t.Errorf("%d pings went through without a tunnel", n)
			}
		})
	}
}
