// Package ts is traffic-selector arithmetic for IKEv2 (RFC 7296 section
// 2.9): turning configured selectors into wire selectors, the responder's
// narrowing of what the initiator proposed to what its own configuration
// allows, and the initiator's check that the responder only narrowed.
//
// A selector is an address range of one family, an IP protocol (0 for any)
// and a port range (0-65535 for any), as ipsec.Selector holds it.
package ts

import (
	"net/netip"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/ipsec"
)

// FromConfig resolves configured selectors: "dynamic" becomes the tunnel
// endpoint dyn (our address for local_ts, the peer's for remote_ts).
func FromConfig(sels []config.Selector, dyn netip.Addr) []ipsec.Selector {
	out := make([]ipsec.Selector, 0, len(sels))
	for _, s := range sels {
		r := s.Resolve(dyn.Unmap())
		r.From, r.To = r.From.Unmap(), r.To.Unmap()
		out = append(out, r)
	}
	return out
}

// Intersect returns the selector both a and b cover, if any.
func Intersect(a, b ipsec.Selector) (ipsec.Selector, bool) {
	if a.Validate() != nil || b.Validate() != nil || a.From.Is4() != b.From.Is4() {
		return ipsec.Selector{}, false
	}
	var r ipsec.Selector
	switch {
	case a.Proto == 0:
		r.Proto = b.Proto
	case b.Proto == 0 || a.Proto == b.Proto:
		r.Proto = a.Proto
	default:
		return r, false
	}
	r.From, r.To = maxAddr(a.From, b.From), minAddr(a.To, b.To)
	if r.To.Less(r.From) {
		return r, false
	}
	r.FromPort, r.ToPort = max(a.FromPort, b.FromPort), min(a.ToPort, b.ToPort)
	if r.FromPort > r.ToPort {
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
func Contains(outer, inner ipsec.Selector) bool {
	r, ok := Intersect(outer, inner)
	return ok && r == inner
}

// Narrow is the responder's narrowing of the selectors the initiator
// proposed for one side to those its configuration allows for that side:
// every non-empty intersection of one of ours with one of theirs, in our
// configured order (strongSwan's choice too), without duplicates. An empty
// result means TS_UNACCEPTABLE.
func Narrow(proposed, ours []ipsec.Selector) []ipsec.Selector {
	var out []ipsec.Selector
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
func Subset(got, proposed []ipsec.Selector) bool {
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
func Equal(a, b []ipsec.Selector) bool {
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
