package strongswan

import (
	"fmt"

	"github.com/spugate/spugate/testbed/lab"
)

// Identities of the standard line's gateways (FQDN IDs). Certificates
// for them carry these names as subjectAltNames.
const (
	IDGwA = "gw-a.lab.example"
	IDGwB = "gw-b.lab.example"
)

// LineConnOptions shape LineConn.
type LineConnOptions struct {
	// Name of the connection, default "site"; its child is "net".
	Name string
	// IPv6 runs IKE (and so ESP) between the gateways' IPv6 WAN
	// addresses instead of IPv4.
	IPv6 bool
	// Families of the child's traffic selectors: "4", "6" or "46"
	// (default: both LANs of both families in one child SA).
	Families string
}

// LineConn returns the site-to-site connection of gateway gw (ln.GwA or
// ln.GwB) of the standard line: IKEv2 between the gateways' WAN
// addresses (gw-b accepts any address behind a NAT), one child "net"
// between LAN A and LAN B, identities IDGwA and IDGwB. Authentication,
// proposals and timers are the caller's: set Local.Auth and Remote.Auth
// ("psk" with LinePSK, or certificates).
func LineConn(ln *lab.Line, gw *lab.Host, o LineConnOptions) (Conn, error) {
	p := ln.Plan
	name := o.Name
	if name == "" {
		name = "site"
	}
	fam := o.Families
	if fam == "" {
		fam = "46"
	}
	lanA, lanB := []string{}, []string{}
	for _, f := range fam {
		switch f {
		case '4':
			lanA, lanB = append(lanA, p.LanA4.String()), append(lanB, p.LanB4.String())
		case '6':
			lanA, lanB = append(lanA, p.LanA6.String()), append(lanB, p.LanB6.String())
		default:
			return Conn{}, fmt.Errorf("strongswan: LineConn: families %q: want 4, 6 or 46", fam)
		}
	}
	wanA, wanB := p.GwAWan4, p.GwBWan4
	if o.IPv6 {
		wanA, wanB = p.GwAWan6, p.GwBWan6
	}
	c := Conn{Name: name, Version: 2}
	switch gw {
	case ln.GwA:
		c.LocalAddrs, c.RemoteAddrs = []string{wanA.String()}, []string{wanB.String()}
		c.Local.ID, c.Remote.ID = IDGwA, IDGwB
		c.Children = []Child{{Name: "net", LocalTS: lanA, RemoteTS: lanB}}
	case ln.GwB:
		remote := wanA.String()
		if ln.NAT != nil && !o.IPv6 {
			// gw-a's packets arrive from the NAT's address and a
			// port of its choosing.
			remote = "%any"
		}
		c.LocalAddrs, c.RemoteAddrs = []string{wanB.String()}, []string{remote}
		c.Local.ID, c.Remote.ID = IDGwB, IDGwA
		c.Children = []Child{{Name: "net", LocalTS: lanB, RemoteTS: lanA}}
	default:
		return Conn{}, fmt.Errorf("strongswan: LineConn: host %s is not a gateway of the line", gw.Name)
	}
	return c, nil
}

// LinePSK returns the secrets for a PSK between the line's gateways.
func LinePSK(secret []byte) Secrets {
	return Secrets{IKE: []PSK{{IDs: []string{IDGwA, IDGwB}, Secret: secret}}}
}
