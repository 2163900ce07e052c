// Package xfrmargs reads SAs and policies written the way `ip xfrm state
// add` and `ip xfrm policy add` take them, so that an operator builds a
// static (manually keyed) tunnel with spuctl from the same facts:
//
//	sa add src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x1000 reqid 1 mode tunnel \
//	       aead 'rfc4106(gcm(aes))' 0x<key and 4-byte salt> 128 \
//	       [encap espinudp 4500 4500 0.0.0.0] [replay-window 1024] [flag esn] \
//	       [sel src 198.18.2.0/24 dst 198.18.1.0/24] [dir in|out]
//	policy add src 198.18.1.0/24 dst 198.18.2.0/24 dir out \
//	       tmpl src 198.18.0.1 dst 198.18.0.2 proto esp reqid 1 mode tunnel
//
// Other algorithms: aead 'rfc7539esp(chacha20,poly1305)' KEY 128;
// enc 'cbc(aes)' KEY auth-trunc 'hmac(sha256)' KEY 128.
package xfrmargs

import (
	"encoding/hex"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spugate/spugate/dataplane/api"
)

type scanner struct {
	args []string
	i    int
}

func (s *scanner) more() bool { return s.i < len(s.args) }
func (s *scanner) next(what string) (string, error) {
	if s.i >= len(s.args) {
		return "", fmt.Errorf("%s: missing value", what)
	}
	s.i++
	return s.args[s.i-1], nil
}

// IsLocal tells whether an address belongs to this host; SA parses use it
// to infer the direction when "dir" is not given.
type IsLocal func(netip.Addr) bool

// ParseSA reads `sa add` arguments (after "add").
func ParseSA(args []string, isLocal IsLocal) (*api.SA, error) {
	sa := &api.SA{Mode: api.Tunnel}
	s := &scanner{args: args}
	var src, dst netip.Addr
	var encap *[2]uint16
	var enc, auth []byte
	var encName, authName, aeadName string
	var selSrc, selDst *ipsec.Selector
	var dir api.Dir
	for s.more() {
		kw, _ := s.next("")
		var err error
		switch kw {
		case "src", "dst":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			a, e := netip.ParseAddr(v)
			if e != nil {
				return nil, fmt.Errorf("%s %q: not an IP address", kw, v)
			}
			if kw == "src" {
				src = a
			} else {
				dst = a
			}
		case "proto":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			if v != "esp" {
				return nil, fmt.Errorf("proto %q: only esp", v)
			}
		case "spi":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			n, e := strconv.ParseUint(v, 0, 32)
			if e != nil {
				return nil, fmt.Errorf("spi %q: not a 32-bit number", v)
			}
			sa.SPI = uint32(n)
		case "reqid":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			n, e := strconv.ParseUint(v, 0, 32)
			if e != nil {
				return nil, fmt.Errorf("reqid %q: not a number", v)
			}
			sa.ReqID = uint32(n)
		case "mode":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			switch v {
			case "tunnel":
				sa.Mode = api.Tunnel
			case "transport":
				sa.Mode = api.Transport
			default:
				return nil, fmt.Errorf("mode %q: tunnel or transport", v)
			}
		case "aead":
			if aeadName, err = s.next(kw); err != nil {
				return nil, err
			}
			if enc, err = keyArg(s, "aead key"); err != nil {
				return nil, err
			}
			icv, e := s.next("aead icv length")
			if e != nil {
				return nil, e
			}
			if icv != "128" {
				return nil, fmt.Errorf("aead icv length %s: only 128 bits", icv)
			}
		case "enc":
			if encName, err = s.next(kw); err != nil {
				return nil, err
			}
			if enc, err = keyArg(s, "enc key"); err != nil {
				return nil, err
			}
		case "auth-trunc":
			if authName, err = s.next(kw); err != nil {
				return nil, err
			}
			if auth, err = keyArg(s, "auth key"); err != nil {
				return nil, err
			}
			tl, e := s.next("auth-trunc length")
			if e != nil {
				return nil, e
			}
			if tl != "128" {
				return nil, fmt.Errorf("auth-trunc length %s: only 128 bits (HMAC-SHA2-256-128)", tl)
			}
		case "encap":
			t, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			if t != "espinudp" {
				return nil, fmt.Errorf("encap %q: only espinudp", t)
			}
			var ports [2]uint16
			for i, what := range []string{"encap source port", "encap destination port"} {
				v, e := s.next(what)
				if e != nil {
					return nil, e
				}
				n, e := strconv.ParseUint(v, 10, 16)
				if e != nil || n == 0 {
					return nil, fmt.Errorf("%s %q: not a port", what, v)
				}
				ports[i] = uint16(n)
			}
			if _, e := s.next("encap original address"); e != nil {
				return nil, e
			}
			encap = &ports
		case "replay-window":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			n, e := strconv.Atoi(v)
			if e != nil || n < 0 {
				return nil, fmt.Errorf("replay-window %q: not a count", v)
			}
			sa.ReplayWindow = n
			if n == 0 {
				sa.ReplayWindow = -1 // ip xfrm's 0 means off
			}
		case "flag":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			if v != "esn" {
				return nil, fmt.Errorf("flag %q: only esn", v)
			}
			sa.ESN = true
		case "sel":
			for s.more() && (s.args[s.i] == "src" || s.args[s.i] == "dst" || s.args[s.i] == "proto" || s.args[s.i] == "sport" || s.args[s.i] == "dport") {
				k, _ := s.next("")
				v, e := s.next("sel " + k)
				if e != nil {
					return nil, e
				}
				switch k {
				case "src", "dst":
					ts, e := prefixTS(v)
					if e != nil {
						return nil, fmt.Errorf("sel %s: %v", k, e)
					}
					if k == "src" {
						selSrc = &ts
					} else {
						selDst = &ts
					}
				default:
					return nil, fmt.Errorf("sel %s: only src and dst selectors are supported here", k)
				}
			}
		case "dir":
			v, e := s.next(kw)
			if e != nil {
				return nil, e
			}
			if v != "in" && v != "out" {
				return nil, fmt.Errorf("dir %q: in or out", v)
			}
			dir = api.Dir(v)
		case "name":
			if sa.Name, err = s.next(kw); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown keyword %q", kw)
		}
	}
	if !src.IsValid() || !dst.IsValid() {
		return nil, fmt.Errorf("src and dst are required")
	}
	if dir == "" {
		switch {
		case isLocal != nil && isLocal(src):
			dir = api.Out
		case isLocal != nil && isLocal(dst):
			dir = api.In
		default:
			return nil, fmt.Errorf("neither %s nor %s is local: say dir in or dir out", src, dst)
		}
	}
	sa.Dir = dir
	if dir == api.Out {
		sa.Local, sa.Remote = src, dst
	} else {
		sa.Local, sa.Remote = dst, src
	}
	if encap != nil {
		if dir == api.Out {
			sa.Encap = &api.Encap{LocalPort: encap[0], RemotePort: encap[1]}
		} else {
			sa.Encap = &api.Encap{LocalPort: encap[1], RemotePort: encap[0]}
		}
	}
	var err error
	if sa.Suite, err = suite(aeadName, encName, authName, len(enc)); err != nil {
		return nil, err
	}
	sa.EncKey, sa.IntegKey = enc, auth
	// The selector is from the packet's point of view: src is the sender.
	if selSrc != nil || selDst != nil {
		var from, to []ipsec.Selector
		if selSrc != nil {
			from = []ipsec.Selector{*selSrc}
		}
		if selDst != nil {
			to = []ipsec.Selector{*selDst}
		}
		if dir == api.Out {
			sa.LocalTS, sa.RemoteTS = from, to
		} else {
			sa.LocalTS, sa.RemoteTS = to, from
		}
	}
	if err := sa.Validate(); err != nil {
		return nil, err
	}
	return sa, nil
}

func suite(aead, enc, auth string, encLen int) (ipsec.Suite, error) {
	switch {
	case aead == "rfc4106(gcm(aes))" && encLen == 20:
		return ipsec.AES128GCM16, nil
	case aead == "rfc4106(gcm(aes))" && encLen == 28:
		return ipsec.AES192GCM16, nil
	case aead == "rfc4106(gcm(aes))" && encLen == 36:
		return ipsec.AES256GCM16, nil
	case aead == "rfc4106(gcm(aes))":
		return 0, fmt.Errorf("aead rfc4106(gcm(aes)): key of %d bytes, want 20, 28 or 36 (key and 4-byte salt)", encLen)
	case aead == "rfc7539esp(chacha20,poly1305)":
		return ipsec.ChaCha20Poly1305, nil
	case aead != "":
		return 0, fmt.Errorf("aead %q: want rfc4106(gcm(aes)) or rfc7539esp(chacha20,poly1305)", aead)
	case enc == "cbc(aes)" && auth == "hmac(sha256)" && encLen == 16:
		return ipsec.AES128SHA256, nil
	case enc == "cbc(aes)" && auth == "hmac(sha256)" && encLen == 32:
		return ipsec.AES256SHA256, nil
	case enc != "" || auth != "":
		return 0, fmt.Errorf("enc %q auth-trunc %q: want cbc(aes) with a 16 or 32-byte key and hmac(sha256)", enc, auth)
	}
	return 0, fmt.Errorf("no algorithm: give aead, or enc and auth-trunc")
}

func keyArg(s *scanner, what string) ([]byte, error) {
	v, err := s.next(what)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(v, "0x") {
		return nil, fmt.Errorf("%s: want 0x followed by hex", what)
	}
	b, err := hex.DecodeString(v[2:])
	if err != nil {
		return nil, fmt.Errorf("%s: not hex", what)
	}
	return b, nil
}

func prefixTS(v string) (ipsec.Selector, error) {
	if !strings.Contains(v, "/") {
		a, err := netip.ParseAddr(v)
		if err != nil {
			return ipsec.Selector{}, fmt.Errorf("%q is not an address or prefix", v)
		}
		return ipsec.PrefixSelector(netip.PrefixFrom(a, a.BitLen()), 0), nil
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return ipsec.Selector{}, fmt.Errorf("%q is not an address or prefix", v)
	}
	return ipsec.PrefixSelector(p, 0), nil
}

// ParsePolicy reads `policy add` arguments (after "add").
func ParsePolicy(args []string) (*api.Policy, error) {
	p := &api.Policy{Action: api.Bypass}
	s := &scanner{args: args}
	var tmpl bool
	for s.more() {
		kw, _ := s.next("")
		switch kw {
		case "src", "dst":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			if tmpl {
				a, err := netip.ParseAddr(v)
				if err != nil {
					return nil, fmt.Errorf("tmpl %s %q: not an IP address", kw, v)
				}
				if kw == "src" {
					p.Local = a
				} else {
					p.Remote = a
				}
				continue
			}
			ts, err := prefixTS(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", kw, err)
			}
			if kw == "src" {
				p.LocalTS = append(p.LocalTS, ts)
			} else {
				p.RemoteTS = append(p.RemoteTS, ts)
			}
		case "dir":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			if v != "out" {
				return nil, fmt.Errorf("dir %s: spud installs outbound policies only; inbound traffic is checked against each SA's selectors (sa add ... sel)", v)
			}
		case "tmpl":
			tmpl = true
			p.Action = api.Protect
		case "proto":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			if !tmpl {
				n, ok := map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "ipv6-icmp": 58}[v]
				if !ok {
					x, err := strconv.ParseUint(v, 10, 8)
					if err != nil {
						return nil, fmt.Errorf("proto %q: unknown", v)
					}
					n = uint8(x)
				}
				for i := range p.LocalTS {
					p.LocalTS[i].Proto = n
				}
				for i := range p.RemoteTS {
					p.RemoteTS[i].Proto = n
				}
			} else if v != "esp" {
				return nil, fmt.Errorf("tmpl proto %q: only esp", v)
			}
		case "reqid":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("reqid %q: not a number", v)
			}
			p.ReqID = uint32(n)
		case "mode":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			if v != "tunnel" && v != "transport" {
				return nil, fmt.Errorf("mode %q: tunnel or transport", v)
			}
		case "action":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			switch v {
			case "allow":
				if !tmpl {
					p.Action = api.Bypass
				}
			case "block":
				p.Action = api.Discard
			default:
				return nil, fmt.Errorf("action %q: allow or block", v)
			}
		case "index":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			n, err := strconv.ParseUint(v, 0, 32)
			if err != nil {
				return nil, fmt.Errorf("index %q: not a number", v)
			}
			p.ID = uint32(n)
		case "dev":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			p.Interfaces = append(p.Interfaces, v)
		case "name":
			v, err := s.next(kw)
			if err != nil {
				return nil, err
			}
			p.Name = v
		default:
			return nil, fmt.Errorf("unknown keyword %q", kw)
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}
