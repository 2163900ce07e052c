// Package ts is traffic-selector arithmetic for IKEv2 (RFC 7296 section
// 2.9): turning configured selectors into wire selectors, the responder's
// narrowing of what the initiator proposed to what its own configuration
// allows, and the initiator's check that the responder only narrowed.
//
// A selector is an address range of one family, an IP protocol (0 for any)
// and a port range (0-65535 for any), as message.Selector holds it.
package ts

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/dataplane/api"
)

// FromConfig resolves configured selectors: "dynamic" becomes the tunnel
// endpoint dyn (our address for local_ts, the peer's for remote_ts).
func FromConfig(sels []config.Selector, dyn netip.Addr) []message.Selector {
	out := make([]message.Selector, 0, len(sels))
	for _, s := range sels {
		s = s.Resolve(dyn.Unmap())
		out = append(out, message.Selector{IPProtocol: s.Proto, StartPort: s.FromPort, EndPort: s.ToPort,
			Start: s.From.Unmap(), End: s.To.Unmap()})
	}
	return out
}

// ToAPI converts wire selectors into the data plane's.
func ToAPI(sels []message.Selector) []api.TS {
	out := make([]api.TS, 0, len(sels))
	for _, s := range sels {
		out = append(out, api.TS{Proto: s.IPProtocol, From: s.Start, To: s.End, FromPort: s.StartPort, ToPort: s.EndPort})
	}
	return out
}

// FromAPI converts the data plane's selectors into wire selectors.
func FromAPI(sels []api.TS) []message.Selector {
	out := make([]message.Selector, 0, len(sels))
	for _, s := range sels {
		out = append(out, message.Selector{IPProtocol: s.Proto, Start: s.From, End: s.To, StartPort: s.FromPort, EndPort: s.ToPort})
	}
	return out
}

// Valid reports whether s is a well-formed selector: one family, ordered
// ranges.
func Valid(s message.Selector) bool {
	return s.Start.IsValid() && s.End.IsValid() && s.Start.Is4() == s.End.Is4() &&
		!s.End.Less(s.Start) && s.StartPort <= s.EndPort
}

// Intersect returns the selector both a and b cover, if any.
func Intersect(a, b message.Selector) (message.Selector, bool) {
	if !Valid(a) || !Valid(b) || a.Start.Is4() != b.Start.Is4() {
		return message.Selector{}, false
	}
	var r message.Selector
	switch {
	case a.IPProtocol == 0:
		r.IPProtocol = b.IPProtocol
	case b.IPProtocol == 0 || a.IPProtocol == b.IPProtocol:
		r.IPProtocol = a.IPProtocol
	default:
		return r, false
	}
	r.Start, r.End = maxAddr(a.Start, b.Start), minAddr(a.End, b.End)
	if r.End.Less(r.Start) {
		return r, false
	}
	r.StartPort, r.EndPort = max(a.StartPort, b.StartPort), min(a.EndPort, b.EndPort)
	if r.StartPort > r.EndPort {
		return r, false
	}
	return r, true
}

func maxAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}

func minAddr(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return a
	}
	return b
}

// Contains reports whether outer covers all of inner.
func Contains(outer, inner message.Selector) bool {
	r, ok := Intersect(outer, inner)
	return ok && r == inner
}

// Narrow is the responder's narrowing of the selectors the initiator
// proposed for one side to those its configuration allows for that side:
// every non-empty intersection of one of ours with one of theirs, in our
// configured order (strongSwan's choice too), without duplicates. An empty
// result means TS_UNACCEPTABLE.
func Narrow(proposed, ours []message.Selector) []message.Selector {
	var out []message.Selector
	for _, o := range ours {
		for _, p := range proposed {
			r, ok := Intersect(o, p)
			if !ok {
				continue
			}
			dup := false
			for _, x := range out {
				if Contains(x, r) {
					dup = true
					break
				}
			}
			if !dup {
				out = append(out, r)
			}
		}
	}
	return out
}

// Subset reports whether every selector of got lies within one of those
// proposed: the initiator's check of the responder's TSi and TSr (a
// responder may narrow, never widen).
func Subset(got, proposed []message.Selector) bool {
	if len(got) == 0 {
		return false
	}
	for _, g := range got {
		ok := false
		for _, p := range proposed {
			if Contains(p, g) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// Equal reports whether a and b list the same selectors in the same order.
func Equal(a, b []message.Selector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// String formats one selector the way swanctl.conf writes it:
// 198.18.1.0/24, 198.18.1.1-198.18.1.9, 0.0.0.0/0[udp/53].
func String(s message.Selector) string {
	var b strings.Builder
	if p, ok := prefixOf(s.Start, s.End); ok {
		if p.IsSingleIP() {
			b.WriteString(p.Addr().String())
		} else {
			b.WriteString(p.String())
		}
	} else {
		b.WriteString(s.Start.String() + "-" + s.End.String())
	}
	if s.IPProtocol != 0 || s.StartPort != 0 || s.EndPort != 65535 {
		fmt.Fprintf(&b, "[%s", protoName(s.IPProtocol))
		if s.StartPort != 0 || s.EndPort != 65535 {
			if s.StartPort == s.EndPort {
				fmt.Fprintf(&b, "/%d", s.StartPort)
			} else {
				fmt.Fprintf(&b, "/%d-%d", s.StartPort, s.EndPort)
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

// Strings formats a list of selectors, comma-separated.
func Strings(sels []message.Selector) string {
	p := make([]string, len(sels))
	for i, s := range sels {
		p[i] = String(s)
	}
	return strings.Join(p, ",")
}

func protoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 58:
		return "ipv6-icmp"
	}
	return fmt.Sprint(p)
}

// prefixOf reports whether [start, end] is exactly one prefix.
func prefixOf(start, end netip.Addr) (netip.Prefix, bool) {
	if start.Is4() != end.Is4() {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= start.BitLen(); bits++ {
		p, err := start.Prefix(bits)
		if err != nil || p.Addr() != start {
			continue
		}
		if last(p) == end {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func last(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
