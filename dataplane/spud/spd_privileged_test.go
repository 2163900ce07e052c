package spud_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedOverlappingPolicies: tunnels with the same selectors (as
// an IKE SA and its reauthentication, or a tunnel set up again by an iked
// that lost its state) share one steering entry in the XDP program. Added
// and removed in every order, the LANs reach each other through a tunnel
// while one is left, and not at all once none is (the line has no clear
// route: a policy lost from the steering shows as loss, a leak as a
// success).
func TestPrivilegedOverlappingPolicies(t *testing.T) {
	p := startPair(t, lab.LineOptions{NoClearRoutes: true}, daemons.SpudOptions{})
	pl := p.ln.Plan
	reqid := uint32(40)
	mk := func() *tunnel {
		reqid++
		return newTunnel(reqid, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	}
	// reach checks that the LANs reach each other exactly when up.
	reach := func(t *testing.T, step string, up bool) {
		t.Helper()
		ab := ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 3)
		ba := ping(t, p.ln.ClientB, netip.Addr{}, pl.ClientA4, 3)
		switch {
		case up && (ab != 3 || ba != 3):
			t.Errorf("%s: a tunnel is left, yet %d and %d of 3 pings came back", step, ab, ba)
		case !up && (ab != 0 || ba != 0):
			t.Errorf("%s: no tunnel is left, yet %d and %d of 3 pings came back", step, ab, ba)
		}
	}
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		t.Run(fmt.Sprint("remove", order), func(t *testing.T) {
			tns := []*tunnel{mk(), mk(), mk()}
			for _, tn := range tns {
				install(t, p, tn)
			}
			reach(t, "three tunnels", true)
			for k, i := range order {
				remove(t, p, tns[i])
				reach(t, fmt.Sprintf("tunnel %d removed", tns[i].ReqID), k < len(order)-1)
			}
		})
	}
	// Adds and removals interleaved: the newest added last, the oldest
	// outliving it.
	t.Run("interleaved", func(t *testing.T) {
		a, b := mk(), mk()
		install(t, p, a)
		install(t, p, b)
		remove(t, p, a)
		reach(t, "first removed, second left", true)
		c := mk()
		install(t, p, c)
		reach(t, "third added", true)
		remove(t, p, c)
		reach(t, "third removed, second left", true)
		remove(t, p, b)
		reach(t, "all removed", false)
	})
}
