package main

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// The -json listings write each entry with an appender of their own
// rather than encoding/json's Encoder, which costs 4 to 6 µs an SA through
// reflection (seconds for a million). Their output is json.Marshal's, byte
// for byte (TestSAJSONAsMarshal): field order, omitempty, addresses and
// suites by their text, keys as base64, maps by sorted key, strings
// escaped as encoding/json escapes them (HTML characters included).

// appendSAJSON appends s as json.Marshal writes it. An SA that Marshal
// would refuse (a suite without a name) goes through Marshal, for its
// error.
func appendSAJSON(b []byte, s *api.SAState) ([]byte, error) {
	if !s.Suite.Valid() {
		return appendMarshal(b, s)
	}
	b = append(b, `{"spi":`...)
	b = strconv.AppendUint(b, uint64(s.SPI), 10)
	b = append(b, `,"dir":`...)
	b = appendJSONString(b, string(s.Dir))
	b = append(b, `,"local":`...)
	b = appendJSONAddr(b, s.Local)
	b = append(b, `,"remote":`...)
	b = appendJSONAddr(b, s.Remote)
	if s.Logical != nil {
		b = append(b, `,"logical":`...)
		b = strconv.AppendInt(b, int64(*s.Logical), 10)
	}
	b = append(b, `,"mode":`...)
	b = appendJSONString(b, string(s.Mode))
	b = append(b, `,"suite":`...)
	b = appendJSONString(b, s.Suite.String())
	b = append(b, `,"enc_key":`...)
	b = appendJSONBytes(b, s.EncKey)
	if len(s.IntegKey) > 0 {
		b = append(b, `,"integ_key":`...)
		b = appendJSONBytes(b, s.IntegKey)
	}
	if s.ESN {
		b = append(b, `,"esn":true`...)
	}
	if s.ReplayWindow != 0 {
		b = append(b, `,"replay_window":`...)
		b = strconv.AppendInt(b, int64(s.ReplayWindow), 10)
	}
	if s.Encap != nil {
		b = append(b, `,"encap":{"local_port":`...)
		b = strconv.AppendUint(b, uint64(s.Encap.LocalPort), 10)
		b = append(b, `,"remote_port":`...)
		b = strconv.AppendUint(b, uint64(s.Encap.RemotePort), 10)
		b = append(b, '}')
	}
	b = append(b, `,"reqid":`...)
	b = strconv.AppendUint(b, uint64(s.ReqID), 10)
	if len(s.LocalTS) > 0 {
		b = append(b, `,"local_ts":`...)
		b = appendJSONSelectors(b, s.LocalTS)
	}
	if len(s.RemoteTS) > 0 {
		b = append(b, `,"remote_ts":`...)
		b = appendJSONSelectors(b, s.RemoteTS)
	}
	// omitempty leaves a struct in: Lifetime is always there.
	b = append(b, `,"lifetime":{`...)
	n := len(b)
	b = appendJSONUintField(b, n, "soft_bytes", s.Lifetime.SoftBytes)
	b = appendJSONUintField(b, n, "hard_bytes", s.Lifetime.HardBytes)
	b = appendJSONUintField(b, n, "soft_packets", s.Lifetime.SoftPackets)
	b = appendJSONUintField(b, n, "hard_packets", s.Lifetime.HardPackets)
	b = append(b, '}')
	if s.Name != "" {
		b = append(b, `,"name":`...)
		b = appendJSONString(b, s.Name)
	}
	b = append(b, `,"spu":`...)
	b = strconv.AppendInt(b, int64(s.SPU), 10)
	b = append(b, `,"active":`...)
	b = strconv.AppendBool(b, s.Active)
	b = append(b, `,"stats":{"packets":`...)
	b = strconv.AppendUint(b, s.Stats.Packets, 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendUint(b, s.Stats.Bytes, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, s.Stats.Seq, 10)
	if len(s.Stats.Drops) > 0 {
		b = append(b, `,"drops":{`...)
		keys := make([]string, 0, len(s.Stats.Drops))
		for k := range s.Stats.Drops {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = strconv.AppendUint(b, s.Stats.Drops[k], 10)
		}
		b = append(b, '}')
	}
	return append(b, "}}"...), nil
}

// appendJSONUintField appends an omitempty number field of an object
// whose fields start at start.
func appendJSONUintField(b []byte, start int, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	if len(b) > start {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, name...)
	b = append(b, `":`...)
	return strconv.AppendUint(b, v, 10)
}

func appendJSONSelectors(b []byte, ts []ipsec.Selector) []byte {
	b = append(b, '[')
	for i, t := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '{')
		if t.Proto != 0 {
			b = append(b, `"proto":`...)
			b = strconv.AppendUint(b, uint64(t.Proto), 10)
			b = append(b, ',')
		}
		b = append(b, `"from":`...)
		b = appendJSONAddr(b, t.From)
		b = append(b, `,"to":`...)
		b = appendJSONAddr(b, t.To)
		if t.FromPort != 0 {
			b = append(b, `,"from_port":`...)
			b = strconv.AppendUint(b, uint64(t.FromPort), 10)
		}
		if t.ToPort != 0 {
			b = append(b, `,"to_port":`...)
			b = strconv.AppendUint(b, uint64(t.ToPort), 10)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendJSONAddr appends an address as its MarshalText, quoted: "" for
// the zero address; a zone goes through the string escaping.
func appendJSONAddr(b []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(b, `""`...)
	}
	if a.Zone() != "" {
		return appendJSONString(b, a.String())
	}
	b = append(b, '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

// appendJSONBytes appends a byte string as base64, null for nil.
func appendJSONBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

// appendMarshal appends v through json.Marshal.
func appendMarshal(b []byte, v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, j...), nil
}

const jsonHex = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes a string with
// HTML escaping on (Marshal's and the Encoder's default): ", \ and the
// control characters escaped (\b \f \n \r \t by name), <, > and & as
// \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029 as \u2028 and
// \u2029.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', jsonHex[c>>4], jsonHex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', jsonHex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
