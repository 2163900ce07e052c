package config

import (
	"net/netip"
	"strings"

	"github.com/spugate/spugate/ipsec"
)

// Selector is a traffic selector as configured: "dynamic" (the tunnel's own
// address, decided at negotiation), or an address range with an optional
// protocol and port range, as swanctl.conf writes it:
// "198.18.1.0/24", "198.18.1.10", "198.18.1.1-198.18.1.9", "0.0.0.0/0[udp/53]",
// "::/0[tcp/1000-2000]", "dynamic[udp]". Its addresses are meaningless
// while Dynamic is set.
type Selector struct {
	Dynamic bool
	ipsec.Selector
}

// ParseSelector reads a selector: "dynamic" with what may follow it, or an
// ipsec.Selector.
func ParseSelector(s string) (Selector, error) {
	t := strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(t, "dynamic"); ok && (rest == "" || strings.HasPrefix(rest, "[")) {
		// The protocol and ports, read as those of any address.
		sel, err := ipsec.ParseSelector("::" + rest)
		if err != nil {
			return Selector{}, err
		}
		sel.From, sel.To = netip.Addr{}, netip.Addr{}
		return Selector{Dynamic: true, Selector: sel}, nil
	}
	sel, err := ipsec.ParseSelector(t)
	if err != nil {
		return Selector{}, err
	}
	return Selector{Selector: sel}, nil
}

// Resolve turns a selector into the ipsec.Selector it stands for, a
// dynamic one into the given address (the tunnel endpoint) with its
// protocol and ports.
func (sel Selector) Resolve(a netip.Addr) ipsec.Selector {
	r := sel.Selector
	if sel.Dynamic {
		r.From, r.To = a, a
	}
	return r
}

// String writes the selector back in the notation ParseSelector reads:
// "dynamic" with the protocol and ports of a dynamic one, the
// ipsec.Selector text otherwise.
func (sel Selector) String() string {
	if !sel.Dynamic {
		return sel.Selector.String()
	}
	any := sel.Selector
	any.From, any.To = netip.IPv6Unspecified(), netip.IPv6Unspecified()
	s := any.String()
	return "dynamic" + s[strings.IndexByte(s+"[", '['):]
}
