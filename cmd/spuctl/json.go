package main

import (
	"encoding/base64"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/spugate/spugate/control/iked/ikectl"
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

// appendIKESAJSON appends s as json.Marshal writes it. An IKE SA whose
// times Marshal would refuse or round (a year past 9999, an offset in
// seconds) goes through Marshal.
func appendIKESAJSON(b []byte, s *ikectl.IKESA) ([]byte, error) {
	if !jsonTimeOK(s.Established) {
		return appendMarshal(b, s)
	}
	for i := range s.Children {
		if !jsonTimeOK(s.Children[i].Installed) {
			return appendMarshal(b, s)
		}
	}
	b = append(b, `{"conn":`...)
	b = appendJSONString(b, s.Conn)
	b = append(b, `,"unique_id":`...)
	b = strconv.AppendUint(b, uint64(s.UniqueID), 10)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, s.State)
	b = append(b, `,"initiator":`...)
	b = strconv.AppendBool(b, s.Initiator)
	b = append(b, `,"spi_i":`...)
	b = appendJSONString(b, s.SPIi)
	b = append(b, `,"spi_r":`...)
	b = appendJSONString(b, s.SPIr)
	b = append(b, `,"local":`...)
	b = appendJSONAddrPort(b, s.Local)
	b = append(b, `,"remote":`...)
	b = appendJSONAddrPort(b, s.Remote)
	b = append(b, `,"local_id":`...)
	b = appendJSONString(b, s.LocalID)
	b = append(b, `,"remote_id":`...)
	b = appendJSONString(b, s.RemoteID)
	b = append(b, `,"proposal":`...)
	b = appendJSONString(b, s.Proposal)
	if s.NATLocal {
		b = append(b, `,"nat_local":true`...)
	}
	if s.NATRemote {
		b = append(b, `,"nat_remote":true`...)
	}
	if !s.Established.IsZero() {
		b = append(b, `,"established":`...)
		b = appendJSONTime(b, s.Established)
	}
	if s.RekeyIn != 0 {
		b = append(b, `,"rekey_in":`...)
		b = strconv.AppendInt(b, int64(s.RekeyIn), 10)
	}
	b = append(b, `,"worker":`...)
	b = strconv.AppendInt(b, int64(s.Worker), 10)
	b = append(b, `,"spu":`...)
	b = strconv.AppendInt(b, int64(s.SPU), 10)
	b = append(b, `,"logical":`...)
	b = strconv.AppendInt(b, int64(s.Logical), 10)
	if len(s.Children) > 0 {
		b = append(b, `,"children":[`...)
		for i := range s.Children {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendChildSAJSON(b, &s.Children[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"counters":{"msgid_out":`...)
	b = strconv.AppendUint(b, uint64(s.Counters.MsgIDOut), 10)
	b = append(b, `,"msgid_in":`...)
	b = strconv.AppendUint(b, uint64(s.Counters.MsgIDIn), 10)
	b = append(b, '}')
	if s.AuthLocal != "" {
		b = append(b, `,"auth_local":`...)
		b = appendJSONString(b, s.AuthLocal)
	}
	if s.AuthRemote != "" {
		b = append(b, `,"auth_remote":`...)
		b = appendJSONString(b, s.AuthRemote)
	}
	if s.Fragmentation {
		b = append(b, `,"fragmentation":true`...)
	}
	return append(b, '}'), nil
}

func appendChildSAJSON(b []byte, c *ikectl.ChildSA) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, c.Name)
	b = append(b, `,"unique_id":`...)
	b = strconv.AppendUint(b, uint64(c.UniqueID), 10)
	b = append(b, `,"state":`...)
	b = appendJSONString(b, c.State)
	b = append(b, `,"reqid":`...)
	b = strconv.AppendUint(b, uint64(c.ReqID), 10)
	b = append(b, `,"spi_in":`...)
	b = strconv.AppendUint(b, uint64(c.SPIIn), 10)
	b = append(b, `,"spi_out":`...)
	b = strconv.AppendUint(b, uint64(c.SPIOut), 10)
	b = append(b, `,"suite":`...)
	b = appendJSONString(b, c.Suite)
	b = append(b, `,"proposal":`...)
	b = appendJSONString(b, c.Proposal)
	if c.Encap {
		b = append(b, `,"encap":true`...)
	}
	b = append(b, `,"local_ts":`...)
	b = appendJSONStrings(b, c.LocalTS)
	b = append(b, `,"remote_ts":`...)
	b = appendJSONStrings(b, c.RemoteTS)
	if !c.Installed.IsZero() {
		b = append(b, `,"installed":`...)
		b = appendJSONTime(b, c.Installed)
	}
	if c.RekeyIn != 0 {
		b = append(b, `,"rekey_in":`...)
		b = strconv.AppendInt(b, int64(c.RekeyIn), 10)
	}
	if c.ExpireIn != 0 {
		b = append(b, `,"expire_in":`...)
		b = strconv.AppendInt(b, int64(c.ExpireIn), 10)
	}
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendUint(b, c.BytesIn, 10)
	b = append(b, `,"packets_in":`...)
	b = strconv.AppendUint(b, c.PacketsIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendUint(b, c.BytesOut, 10)
	b = append(b, `,"packets_out":`...)
	b = strconv.AppendUint(b, c.PktsOut, 10)
	b = append(b, `,"spu":`...)
	b = strconv.AppendInt(b, int64(c.SPU), 10)
	if len(c.Policies) > 0 {
		b = append(b, `,"policies":[`...)
		for i, p := range c.Policies {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(p), 10)
		}
		b = append(b, ']')
	}
	if c.Trap {
		b = append(b, `,"trap":true`...)
	}
	return append(b, '}')
}

// appendJSONStrings appends a list of strings, null for nil.
func appendJSONStrings(b []byte, l []string) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendJSONAddrPort appends an address and port as its MarshalText,
// quoted: "" for the zero one.
func appendJSONAddrPort(b []byte, a netip.AddrPort) []byte {
	if !a.Addr().IsValid() {
		return append(b, `""`...)
	}
	if a.Addr().Zone() != "" {
		return appendJSONString(b, a.String())
	}
	b = append(b, '"')
	b = a.AppendTo(b)
	return append(b, '"')
}

// jsonTimeOK reports whether t marshals as RFC 3339 with nanoseconds
// (time.Time.MarshalJSON refuses years outside 0..9999; an offset in
// seconds it would not write as it is).
func jsonTimeOK(t time.Time) bool {
	if t.IsZero() {
		return true
	}
	_, off := t.Zone()
	return t.Year() >= 0 && t.Year() <= 9999 && off%60 == 0 && off > -24*3600 && off < 24*3600
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}
