package lab

import (
	"fmt"
	"net/netip"
)

// Line is the standard topology:
//
//	client-a --lan-- gw-a --wan-- gw-b --lan-- client-b
//
// or, with a NAT box between the gateways (nftables masquerade of gw-a's
// side, as a home or carrier-grade NAT would):
//
//	client-a --lan-- gw-a --wan-- nat --wan-- gw-b --lan-- client-b
//
// or with a plain router there ("router", LineOptions.Router), where
// captures see the gateways' traffic with no XDP program in the way.
//
// gw-a and gw-b are the VPN gateways. Interface names: clients have eth0;
// gateways have lan0 (towards their client) and wan0 (towards the other
// gateway or the NAT); the NAT has in0 (gw-a's side) and out0 (gw-b's).
type Line struct {
	*Lab
	ClientA, GwA, GwB, ClientB *Host
	NAT                        *Host // nil without LineOptions.NAT
	Router                     *Host // nil without LineOptions.Router
	Plan                       Plan
}

// LineOptions shape the line.
type LineOptions struct {
	// NAT puts a masquerading router between the gateways.
	NAT bool
	// Router puts a plain router between the gateways (named "router"):
	// a place without XDP where captures see the traffic between them.
	Router bool
	// Links shapes every link (queues, MTU, threaded NAPI).
	Links LinkOptions
	// GatewayLinks, when its Queues is set, overrides Links for the links
	// that touch a gateway: multi-queue veths where the SPUs are.
	GatewayLinks LinkOptions
	// NoClearRoutes leaves out the gateways' routes to the far LAN, so that
	// nothing reaches it unless a VPN carries it (a leak shows as loss).
	NoClearRoutes bool
}

// Plan is the line's addressing: everything from 198.18.0.0/15 and
// 2001:db8::/32.
type Plan struct {
	LanA4, LanB4, Wan4, NatIn4 netip.Prefix
	LanA6, LanB6, Wan6, NatIn6 netip.Prefix
	ClientA4, GwALan4, GwAWan4 netip.Addr
	ClientB4, GwBLan4, GwBWan4 netip.Addr
	NatIn4Addr, NatOut4        netip.Addr // NAT box addresses, with LineOptions.NAT
	ClientA6, GwALan6, GwAWan6 netip.Addr
	ClientB6, GwBLan6, GwBWan6 netip.Addr
	NatIn6Addr, NatOut6        netip.Addr
}

// DefaultPlan numbers the line. Without NAT, gw-a's wan0 sits on Wan4 with
// gw-b; with NAT it sits on NatIn4 behind the NAT, whose out0 takes gw-a's
// place on Wan4.
func DefaultPlan() Plan {
	a := netip.MustParseAddr
	p := netip.MustParsePrefix
	return Plan{
		LanA4: p("198.18.1.0/24"), LanB4: p("198.18.2.0/24"), Wan4: p("198.18.0.0/24"), NatIn4: p("198.18.3.0/24"),
		LanA6: p("2001:db8:1::/64"), LanB6: p("2001:db8:2::/64"), Wan6: p("2001:db8::/64"), NatIn6: p("2001:db8:3::/64"),

		ClientA4: a("198.18.1.10"), GwALan4: a("198.18.1.1"), GwAWan4: a("198.18.0.1"),
		ClientB4: a("198.18.2.10"), GwBLan4: a("198.18.2.1"), GwBWan4: a("198.18.0.2"),
		NatIn4Addr: a("198.18.3.254"), NatOut4: a("198.18.0.254"),

		ClientA6: a("2001:db8:1::10"), GwALan6: a("2001:db8:1::1"), GwAWan6: a("2001:db8::1"),
		ClientB6: a("2001:db8:2::10"), GwBLan6: a("2001:db8:2::1"), GwBWan6: a("2001:db8::2"),
		NatIn6Addr: a("2001:db8:3::254"), NatOut6: a("2001:db8::254"),
	}
}

func pfx(a netip.Addr, in netip.Prefix) netip.Prefix { return netip.PrefixFrom(a, in.Bits()) }

// NewLine builds the line in a new lab. On error the partial lab is closed.
func NewLine(opts Options, lo LineOptions) (*Line, error) {
	l, err := New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := BuildLine(l, lo)
	if err != nil {
		l.Close()
		return nil, err
	}
	return ln, nil
}

// BuildLine builds the line's hosts in an existing lab.
func BuildLine(l *Lab, lo LineOptions) (*Line, error) {
	ln := &Line{Lab: l, Plan: DefaultPlan()}
	p := &ln.Plan
	if lo.NAT && lo.Router {
		return nil, fmt.Errorf("lab: a line has a NAT box or a router between its gateways, not both")
	}
	mid := lo.NAT || lo.Router
	if mid {
		// gw-a lives behind the box.
		p.GwAWan4, p.GwAWan6 = netip.MustParseAddr("198.18.3.1"), netip.MustParseAddr("2001:db8:3::1")
	}
	var err error
	add := func(name string, router bool) *Host {
		if err != nil {
			return nil
		}
		var h *Host
		h, err = l.AddHost(name, router)
		return h
	}
	ln.ClientA = add("client-a", false)
	ln.GwA = add("gw-a", true)
	ln.GwB = add("gw-b", true)
	ln.ClientB = add("client-b", false)
	var box *Host
	switch {
	case lo.NAT:
		ln.NAT = add("nat", true)
		box = ln.NAT
	case lo.Router:
		ln.Router = add("router", true)
		box = ln.Router
	}
	if err != nil {
		return nil, err
	}
	gwLinks := lo.Links
	if lo.GatewayLinks.Queues > 0 {
		gwLinks = lo.GatewayLinks
	}
	var steps []func() error
	if mid {
		steps = append(steps,
			func() error { return l.Link(ln.GwA, "wan0", box, "in0", gwLinks) },
			func() error { return l.Link(box, "out0", ln.GwB, "wan0", gwLinks) },
		)
	} else {
		steps = append(steps, func() error { return l.Link(ln.GwA, "wan0", ln.GwB, "wan0", gwLinks) })
	}
	steps = append(steps,
		func() error { return l.Link(ln.ClientA, "eth0", ln.GwA, "lan0", gwLinks) },
		func() error { return l.Link(ln.GwB, "lan0", ln.ClientB, "eth0", gwLinks) },
		func() error { return ln.ClientA.AddAddr("eth0", pfx(p.ClientA4, p.LanA4)) },
		func() error { return ln.ClientA.AddAddr("eth0", pfx(p.ClientA6, p.LanA6)) },
		func() error { return ln.GwA.AddAddr("lan0", pfx(p.GwALan4, p.LanA4)) },
		func() error { return ln.GwA.AddAddr("lan0", pfx(p.GwALan6, p.LanA6)) },
		func() error { return ln.ClientB.AddAddr("eth0", pfx(p.ClientB4, p.LanB4)) },
		func() error { return ln.ClientB.AddAddr("eth0", pfx(p.ClientB6, p.LanB6)) },
		func() error { return ln.GwB.AddAddr("lan0", pfx(p.GwBLan4, p.LanB4)) },
		func() error { return ln.GwB.AddAddr("lan0", pfx(p.GwBLan6, p.LanB6)) },
		func() error { return ln.GwB.AddAddr("wan0", pfx(p.GwBWan4, p.Wan4)) },
		func() error { return ln.GwB.AddAddr("wan0", pfx(p.GwBWan6, p.Wan6)) },
		func() error { return ln.ClientA.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), p.GwALan4) },
		func() error { return ln.ClientA.AddRoute(netip.MustParsePrefix("::/0"), p.GwALan6) },
		func() error { return ln.ClientB.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), p.GwBLan4) },
		func() error { return ln.ClientB.AddRoute(netip.MustParsePrefix("::/0"), p.GwBLan6) },
	)
	if mid {
		steps = append(steps,
			func() error { return ln.GwA.AddAddr("wan0", pfx(p.GwAWan4, p.NatIn4)) },
			func() error { return ln.GwA.AddAddr("wan0", pfx(p.GwAWan6, p.NatIn6)) },
			func() error { return box.AddAddr("in0", pfx(p.NatIn4Addr, p.NatIn4)) },
			func() error { return box.AddAddr("in0", pfx(p.NatIn6Addr, p.NatIn6)) },
			func() error { return box.AddAddr("out0", pfx(p.NatOut4, p.Wan4)) },
			func() error { return box.AddAddr("out0", pfx(p.NatOut6, p.Wan6)) },
			// gw-a reaches everything through the box, as a site behind
			// one would.
			func() error { return ln.GwA.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), p.NatIn4Addr) },
			func() error { return ln.GwA.AddRoute(netip.MustParsePrefix("::/0"), p.NatIn6Addr) },
			// IPv6 is routed, never translated: gw-b reaches gw-a's
			// address behind the box directly.
			func() error { return ln.GwB.AddRoute(p.NatIn6, p.NatOut6) },
			// The box routes the inside site (a NAT after translating
			// replies back) to gw-a.
			func() error { return box.AddRoute(p.LanA4, p.GwAWan4) },
			func() error { return box.AddRoute(p.LanA6, p.GwAWan6) },
		)
		if lo.NAT {
			steps = append(steps, func() error { return setupMasquerade(ln.NAT, "out0") })
		} else {
			// A plain router: gw-b reaches gw-a's IPv4 address too.
			steps = append(steps, func() error { return ln.GwB.AddRoute(p.NatIn4, p.NatOut4) })
		}
		if !lo.NoClearRoutes {
			steps = append(steps,
				func() error { return box.AddRoute(p.LanB4, p.GwBWan4) },
				func() error { return box.AddRoute(p.LanB6, p.GwBWan6) },
				func() error { return ln.GwB.AddRoute(p.LanA6, p.NatOut6) },
			)
			if lo.Router {
				steps = append(steps, func() error { return ln.GwB.AddRoute(p.LanA4, p.NatOut4) })
			}
		}
	} else {
		steps = append(steps,
			func() error { return ln.GwA.AddAddr("wan0", pfx(p.GwAWan4, p.Wan4)) },
			func() error { return ln.GwA.AddAddr("wan0", pfx(p.GwAWan6, p.Wan6)) },
		)
		if !lo.NoClearRoutes {
			steps = append(steps,
				func() error { return ln.GwA.AddRoute(p.LanB4, p.GwBWan4) },
				func() error { return ln.GwA.AddRoute(p.LanB6, p.GwBWan6) },
				func() error { return ln.GwB.AddRoute(p.LanA4, p.GwAWan4) },
				func() error { return ln.GwB.AddRoute(p.LanA6, p.GwAWan6) },
			)
		}
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	return ln, nil
}

// setupMasquerade makes h masquerade IPv4 leaving via ifname, with
// nftables, as a NAT router does.
func setupMasquerade(h *Host, ifname string) error {
	rules := fmt.Sprintf(`table ip spugate_nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "%s" masquerade
	}
}
`, ifname)
	_, err := h.Exec("sh", "-c", "printf '%s' \"$0\" | nft -f -", rules)
	return err
}

// FlushNAT forgets every NAT mapping of the line's NAT box, as a NAT that
// reboots or times a mapping out would: the next packet gets a new one.
func (ln *Line) FlushNAT() error {
	if ln.NAT == nil {
		return fmt.Errorf("lab: line has no NAT box")
	}
	_, err := ln.NAT.Exec("conntrack", "-F")
	return err
}
