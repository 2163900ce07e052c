package ipsec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Selector is a traffic selector (RFC 7296 section 3.13.1, RFC 4301
// section 4.4.1): an IP protocol (0 for any), an address range, both ends
// of one family, and a port range (0-65535 for any; for ICMP, type and
// code as one 16-bit value). The same type travels from iked's
// configuration through the IKE messages and the SA API to the ESP engine.
type Selector struct {
	Proto    uint8      `json:"proto,omitempty"`
	From     netip.Addr `json:"from"`
	To       netip.Addr `json:"to"`
	FromPort uint16     `json:"from_port,omitempty"`
	ToPort   uint16     `json:"to_port,omitempty"`
}

// PrefixSelector is the selector of every address of p, protocol proto (0
// for any) and every port.
func PrefixSelector(p netip.Prefix, proto uint8) Selector {
	p = p.Masked()
	return Selector{Proto: proto, From: p.Addr(), To: LastAddr(p), FromPort: 0, ToPort: 65535}
}

// LastAddr is the highest address of p.
func LastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Validate checks that the ends are valid addresses of one family, in
// order, and that the port range is in order.
func (s Selector) Validate() error {
	switch {
	case !s.From.IsValid() || !s.To.IsValid():
		return errors.New("selector without addresses")
	case s.From.Is4() != s.To.Is4():
		return fmt.Errorf("selector %s: mixed address families", s)
	case s.To.Less(s.From):
		return fmt.Errorf("selector %s: address range is reversed", s)
	case s.ToPort < s.FromPort:
		return fmt.Errorf("selector %s: port range is reversed", s)
	}
	return nil
}

// AnyPort reports whether the selector covers every port, which is what a
// packet without ports (a later fragment: RFC 4301 section 4.4.1.1's
// OPAQUE) can only match.
func (s Selector) AnyPort() bool { return s.FromPort == 0 && s.ToPort == 65535 }

// Matches reports whether a packet's address, protocol and port (hasPort
// false for a packet whose ports are unknown) fall inside the selector.
func (s Selector) Matches(a netip.Addr, proto uint8, port uint16, hasPort bool) bool {
	if a.Less(s.From) || s.To.Less(a) || (s.Proto != 0 && s.Proto != proto) {
		return false
	}
	if !hasPort {
		return s.AnyPort()
	}
	return port >= s.FromPort && port <= s.ToPort
}

// Prefixes returns the shortest list of prefixes covering the address
// range exactly.
func (s Selector) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	// A zone means nothing to a selector, and would keep every prefix's
	// last address from ever equalling to.
	from, to := s.From.WithZone(""), s.To.WithZone("")
	if !from.IsValid() || !to.IsValid() || from.Is4() != to.Is4() || to.Less(from) {
		return nil
	}
	for {
		// The widest prefix starting at from that stays within to.
		bits := from.BitLen()
		for bits > 0 {
			p, _ := from.Prefix(bits - 1)
			if p.Addr() != from || to.Less(LastAddr(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(from, bits)
		out = append(out, p)
		last := LastAddr(p)
		if last == to {
			return out
		}
		from = last.Next()
	}
}

// prefix reports whether the range is exactly one prefix.
func (s Selector) prefix() (netip.Prefix, bool) {
	if ps := s.Prefixes(); len(ps) == 1 {
		return ps[0], true
	}
	return netip.Prefix{}, false
}

// String writes the selector as swanctl.conf does: 198.18.1.0/24, a single
// address without a length, a range as 198.18.1.1-198.18.1.9, and a
// protocol and ports in brackets: 0.0.0.0/0[udp/53], [tcp/1024-2048].
func (s Selector) String() string {
	var b strings.Builder
	switch p, ok := s.prefix(); {
	case ok && p.IsSingleIP():
		b.WriteString(p.Addr().String())
	case ok:
		b.WriteString(p.String())
	default:
		b.WriteString(s.From.String() + "-" + s.To.String())
	}
	if s.Proto != 0 || !s.AnyPort() {
		b.WriteString("[" + ProtoName(s.Proto))
		if !s.AnyPort() {
			if s.FromPort == s.ToPort {
				fmt.Fprintf(&b, "/%d", s.FromPort)
			} else {
				fmt.Fprintf(&b, "/%d-%d", s.FromPort, s.ToPort)
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

// Selectors writes a list of selectors comma-separated.
func Selectors(sels []Selector) string {
	p := make([]string, len(sels))
	for i, s := range sels {
		p[i] = s.String()
	}
	return strings.Join(p, ",")
}

var protoNames = map[string]uint8{"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "ipv6-icmp": 58, "icmp6": 58, "icmpv6": 58, "sctp": 132}

// ProtoName is the name swanctl.conf gives an IP protocol ("any" for 0), or
// its number.
func ProtoName(p uint8) string {
	switch p {
	case 0:
		return "any"
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 47:
		return "gre"
	case 58:
		return "ipv6-icmp"
	case 132:
		return "sctp"
	}
	return strconv.Itoa(int(p))
}

// ParseSelector reads a selector as swanctl.conf writes it (and String
// does): an address, a prefix or a range "a-b", then optionally "[proto]",
// "[proto/port]" or "[proto/from-to]", the protocol by name or number
// ("%any", "any" or nothing for all), the port "%any" or nothing for all.
func ParseSelector(s string) (Selector, error) {
	addr, pp, err := splitSelector(s)
	if err != nil {
		return Selector{}, err
	}
	sel := Selector{ToPort: 65535}
	if err := sel.parseProtoPort(pp); err != nil {
		return Selector{}, fmt.Errorf("selector %q: %v", s, err)
	}
	switch {
	case strings.Contains(addr, "/"):
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return Selector{}, fmt.Errorf("selector %q: not a prefix", s)
		}
		p = p.Masked()
		sel.From, sel.To = p.Addr(), LastAddr(p)
	case strings.Contains(addr, "-"):
		a, b, _ := strings.Cut(addr, "-")
		from, err1 := netip.ParseAddr(strings.TrimSpace(a))
		to, err2 := netip.ParseAddr(strings.TrimSpace(b))
		if err1 != nil || err2 != nil || from.Is4() != to.Is4() || to.Less(from) {
			return Selector{}, fmt.Errorf("selector %q: not an address range", s)
		}
		sel.From, sel.To = from, to
	default:
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return Selector{}, fmt.Errorf("selector %q: not an address, prefix or range", s)
		}
		sel.From, sel.To = a, a
	}
	return sel, nil
}

// ParseProtoPort reads the part of a selector in brackets, "tcp/80", into
// a selector's protocol and ports (with any address); "" is any.
func ParseProtoPort(s string) (Selector, error) {
	sel := Selector{ToPort: 65535}
	err := sel.parseProtoPort(s)
	return sel, err
}

// splitSelector separates "addr[proto/port]" into its two parts.
func splitSelector(s string) (addr, protoPort string, err error) {
	s = strings.TrimSpace(s)
	i := strings.IndexByte(s, '[')
	if i < 0 {
		return s, "", nil
	}
	if !strings.HasSuffix(s, "]") {
		return "", "", fmt.Errorf("selector %q: missing ']'", s)
	}
	return strings.TrimSpace(s[:i]), s[i+1 : len(s)-1], nil
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

// UnmarshalJSON reads a selector as MarshalJSON writes it, and also as iked
// before this type existed persisted its IKE SAs' selectors (the field
// names of its own copy: IPProtocol, StartPort, EndPort, Start, End), so
// that an iked upgraded in place restores the tunnels it had. Unknown
// fields are an error, as everywhere in the SA API.
func (s *Selector) UnmarshalJSON(b []byte) error {
	type plain Selector
	var v struct {
		plain
		IPProtocol *uint8      `json:"IPProtocol"`
		StartPort  *uint16     `json:"StartPort"`
		EndPort    *uint16     `json:"EndPort"`
		Start      *netip.Addr `json:"Start"`
		End        *netip.Addr `json:"End"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&v); err != nil {
		return err
	}
	*s = Selector(v.plain)
	if v.Start != nil || v.End != nil {
		s.From, s.To = deref(v.Start), deref(v.End)
		s.Proto, s.FromPort, s.ToPort = deref(v.IPProtocol), deref(v.StartPort), deref(v.EndPort)
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
