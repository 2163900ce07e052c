package system

import (
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/bench/traffic"
	"github.com/spugate/spugate/testbed/lab"
)

// Address ranges of many-tunnel plans, inside lab.Prefix4: a peer
// endpoint and a one-address site behind it per tunnel. gw-a routes the
// peers' range to gw-b, and gw-b the sites' range to client-b, so that
// every tunnel's traffic and ESP crosses the same links.
var (
	PeerRange = netip.MustParsePrefix("198.19.0.0/18")
	SiteRange = netip.MustParsePrefix("198.19.128.0/18")
)

// MaxTunnels is the most tunnels a plan numbers (one address each in the
// ranges above, less the first).
const MaxTunnels = 1<<14 - 1

// Plan is the tunnels every system carries: between gw-a (the
// concentrator, one endpoint) and peers on gw-b's side.
//
// With one tunnel the peer is gw-b itself and the tunnel joins the two LANs,
// as a site-to-site VPN does. With more, tunnel i's peer is the i-th
// address of PeerRange (gw-b stands in for all of them) and it protects
// the i-th address of SiteRange, a host of that peer's site, to gw-a's LAN.
type Plan struct {
	Tunnels int
	Suite   string // an ESP suite's keyword (ipsec.Suite), for the systems that choose one
	Line    lab.Plan
}

// Valid checks the tunnel count.
func (p Plan) Valid() error {
	if p.Tunnels < 1 || p.Tunnels > MaxTunnels {
		return fmt.Errorf("system: %d tunnels: want 1..%d", p.Tunnels, MaxTunnels)
	}
	return nil
}

func nth(p netip.Prefix, i int) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Local is gw-a's tunnel endpoint.
func (p Plan) Local() netip.Addr { return p.Line.GwAWan4 }

// Peer is tunnel i's endpoint on gw-b's side.
func (p Plan) Peer(i int) netip.Addr {
	if p.Tunnels == 1 {
		return p.Line.GwBWan4
	}
	return nth(PeerRange, i+1)
}

// Site is what tunnel i protects on the peer's side.
func (p Plan) Site(i int) netip.Prefix {
	if p.Tunnels == 1 {
		return p.Line.LanB4
	}
	return netip.PrefixFrom(nth(SiteRange, i+1), 32)
}

// Source is the generator's source address for tunnel i.
func (p Plan) Source(i int) netip.Addr {
	if p.Tunnels == 1 {
		return p.Line.ClientB4
	}
	return p.Site(i).Addr()
}

// Flows returns n flows to the sink's port on client-a, spread round-robin
// over the tunnels, each flow with its own source port.
func (p Plan) Flows(n int, port uint16) []traffic.Flow {
	fs := make([]traffic.Flow, n)
	for i := range fs {
		fs[i] = traffic.Flow{Src: p.Source(i % p.Tunnels), Dst: p.Line.ClientA4, SrcPort: uint16(10000 + i%50000), DstPort: port}
	}
	return fs
}
