package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Selector is a traffic selector as configured: "dynamic" (the tunnel's own
// address, decided at negotiation), or an address range with an optional
// protocol and port range, as swanctl.conf writes it:
// "198.18.1.0/24", "198.18.1.10", "198.18.1.1-198.18.1.9", "0.0.0.0/0[udp/53]",
// "::/0[tcp/1000-2000]", "dynamic[udp]".
type Selector struct {
	Dynamic  bool
	Proto    uint8
	From, To netip.Addr
	FromPort uint16
	ToPort   uint16
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "ipv6-icmp": 58, "icmp6": 58, "icmpv6": 58, "sctp": 132}

// ParseSelector reads a selector.
func ParseSelector(s string) (Selector, error) {
	orig := s
	sel := Selector{ToPort: 65535}
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '['); i >= 0 {
		if !strings.HasSuffix(s, "]") {
			return sel, fmt.Errorf("selector %q: missing ']'", orig)
		}
		if err := sel.parseProtoPort(s[i+1 : len(s)-1]); err != nil {
			return sel, fmt.Errorf("selector %q: %v", orig, err)
		}
		s = s[:i]
	}
	switch {
	case s == "dynamic":
		sel.Dynamic = true
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return sel, fmt.Errorf("selector %q: not a prefix", orig)
		}
		p = p.Masked()
		sel.From, sel.To = p.Addr(), lastAddr(p)
	case strings.Contains(s, "-"):
		a, b, _ := strings.Cut(s, "-")
		from, err1 := netip.ParseAddr(strings.TrimSpace(a))
		to, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || from.Is4() != to.Is4() || to.Less(from) {
			return sel, fmt.Errorf("selector %q: not an address range", orig)
		}
		sel.From, sel.To = from, to
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return sel, fmt.Errorf("selector %q: not an address, prefix, range or dynamic", orig)
		}
		sel.From, sel.To = a, a
	}
	return sel, nil
}

func (sel *Selector) parseProtoPort(s string) error {
	proto, port, hasPort := strings.Cut(s, "/")
	switch proto = strings.ToLower(strings.TrimSpace(proto)); {
	case proto == "" || proto == "%any" || proto == "any":
	default:
		if p, ok := protoNames[proto]; ok {
			sel.Proto = p
		} else if n, err := strconv.ParseUint(proto, 10, 8); err == nil {
			sel.Proto = uint8(n)
		} else {
			return fmt.Errorf("unknown protocol %q", proto)
		}
	}
	if !hasPort || port == "%any" || port == "" {
		return nil
	}
	if sel.Proto == 0 {
		return fmt.Errorf("a port needs a protocol")
	}
	a, b, isRange := strings.Cut(port, "-")
	from, err := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	if err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	to := from
	if isRange {
		to, err = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
		if err != nil || to < from {
			return fmt.Errorf("bad port range %q", port)
		}
	}
	sel.FromPort, sel.ToPort = uint16(from), uint16(to)
	return nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Resolve turns a dynamic selector into the given address (the tunnel
// endpoint), keeping its protocol and ports.
func (sel Selector) Resolve(a netip.Addr) Selector {
	if sel.Dynamic {
		sel.Dynamic = false
		sel.From, sel.To = a, a
	}
	return sel
}

func (sel Selector) String() string {
	var b strings.Builder
	if sel.Dynamic {
		b.WriteString("dynamic")
	} else if sel.From == sel.To {
		b.WriteString(sel.From.String())
	} else {
		b.WriteString(sel.From.String() + "-" + sel.To.String())
	}
	if sel.Proto != 0 {
		fmt.Fprintf(&b, "[%d", sel.Proto)
		if sel.FromPort != 0 || sel.ToPort != 65535 {
			if sel.FromPort == sel.ToPort {
				fmt.Fprintf(&b, "/%d", sel.FromPort)
			} else {
				fmt.Fprintf(&b, "/%d-%d", sel.FromPort, sel.ToPort)
			}
		}
		b.WriteString("]")
	}
	return b.String()
}
