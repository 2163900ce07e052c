package iked_test

import (
	"testing"

	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/dataplane/steer/steertest"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// TestPrivilegedIkedEveryCarrier brings an iked tunnel up over spuds on
// each steering carrier this kernel allows (one it refuses skips, saying
// why), and sends pings and TCP both ways, IPv4 and IPv6, through it: the
// IKE path (kernel sockets) and ESP (the SPUs) must not care how the
// anchor reaches the SPUs.
func TestPrivilegedIkedEveryCarrier(t *testing.T) {
	steertest.ForCarriers(t, func(t *testing.T, c steer.Carrier) {
		tb := newTestbedSpud(t, lab.LineOptions{}, nil, daemons.SpudOptions{SPUs: testbedSPUs, Carrier: c.String()})
		if h, err := tb.a.spud.Client.Hello("test"); err != nil || h.Steering.Carrier != c.String() {
			t.Fatalf("spud's carrier: %+v, %v", h, err)
		}
		pl := tb.ln.Plan
		ca, cb := tb.confs()
		sec := secrets(psk, "gw-a.example", "gw-b.example")
		tb.a.start(t, ca.yaml(), sec)
		tb.b.start(t, cb.yaml(), sec)
		tb.a.spuctl(t, "initiate", "tun")
		mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
		mustPing(t, tb.ln.ClientB, pl.ClientB6, pl.ClientA6)
		labtest.TCPTransfer(t, tb.ln.ClientA, tb.ln.ClientB, pl.ClientB4, 512<<10)
		labtest.TCPTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA6, 512<<10)
		st, err := tb.b.spud.Client.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Carrier != c.String() || st.Drops["no_meta"]+st.Drops["unsteered"] > 0 {
			t.Errorf("gw-b: carrier %s, drops %v", st.Carrier, st.Drops)
		}
	})
}
