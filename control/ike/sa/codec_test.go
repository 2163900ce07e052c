package sa

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/ipsec"
)

// filler sets every persisted field of a value by reflection: all of them
// (full) or a random choice, with random values. Fields tagged json:"-"
// are not persisted and stay zero. A kind or an unexported field it does
// not know fails the test: the codec would not know it either.
type filler struct {
	t    testing.TB
	rnd  *rand.Rand
	full bool
}

var (
	timeType     = reflect.TypeFor[time.Time]()
	addrType     = reflect.TypeFor[netip.Addr]()
	addrPortType = reflect.TypeFor[netip.AddrPort]()
	ikeKeysType  = reflect.TypeFor[suite.IKEKeys]()
	childKeyType = reflect.TypeFor[suite.ChildKeys]()
)

// keyParts fills the parts of keys of the type t (IKEKeys: Alg and the
// seven keys; ChildKeys: Alg and four) and returns them, Alg first. Its
// Alg and the keys are all the persisted state of the type: a field added
// to it fails the test, which then needs to know it.
func (f *filler) keyParts(t reflect.Type, path string, keys int) (suite.Algorithms, [][]byte) {
	if t.NumField() != 3 || t.Field(0).Name != "Alg" || t.Field(2).Type.Len() != keys {
		f.t.Fatalf("%s: %s has fields the codec test does not know", path, t)
	}
	var a suite.Algorithms
	f.fill(reflect.ValueOf(&a).Elem(), path+".Alg")
	parts := make([][]byte, keys)
	for i := range parts {
		if f.skip() {
			continue
		}
		f.fill(reflect.ValueOf(&parts[i]).Elem(), fmt.Sprintf("%s.key%d", path, i))
	}
	return a, parts
}

func (f *filler) skip() bool { return !f.full && f.rnd.IntN(3) == 0 }

func (f *filler) addr() netip.Addr {
	var b [16]byte
	for i := range b {
		b[i] = byte(f.rnd.Uint32())
	}
	switch f.rnd.IntN(4) {
	case 0:
		return netip.AddrFrom4([4]byte(b[:4]))
	case 1:
		return netip.AddrFrom16(b)
	case 2:
		return netip.AddrFrom16(b).WithZone("eth" + fmt.Sprint(f.rnd.IntN(100)))
	default:
		return netip.AddrFrom4([4]byte(b[:4])).Unmap()
	}
}

func (f *filler) fill(v reflect.Value, path string) {
	switch v.Type() {
	case timeType:
		// Years 1 to 9999, which JSON can write.
		sec := f.rnd.Int64N(253402300799+62135596800) - 62135596800
		v.Set(reflect.ValueOf(time.Unix(sec, f.rnd.Int64N(1e9))))
		return
	case addrType:
		v.Set(reflect.ValueOf(f.addr()))
		return
	case addrPortType:
		// JSON writes an AddrPort without an address as "": no port.
		v.Set(reflect.ValueOf(netip.AddrPortFrom(f.addr(), uint16(f.rnd.Uint32()|1))))
		return
	case ikeKeysType:
		a, p := f.keyParts(v.Type(), path, 7)
		k, err := suite.NewIKEKeys(a, p[0], p[1], p[2], p[3], p[4], p[5], p[6])
		if err != nil {
			f.t.Fatal(err)
		}
		v.Set(reflect.ValueOf(k).Elem())
		return
	case childKeyType:
		a, p := f.keyParts(v.Type(), path, 4)
		k, err := suite.NewChildKeys(a, p[0], p[1], p[2], p[3])
		if err != nil {
			f.t.Fatal(err)
		}
		v.Set(reflect.ValueOf(k).Elem())
		return
	}
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(f.full || f.rnd.IntN(2) == 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x := f.rnd.Int64() >> f.rnd.IntN(64)
		if f.rnd.IntN(2) == 0 {
			x = -x
		}
		if x == 0 {
			x = 1
		}
		v.SetInt(x)
		v.SetInt(v.Int() | 1) // nonzero in its own width
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(f.rnd.Uint64()>>f.rnd.IntN(64) | 1)
	case reflect.String:
		v.SetString(fmt.Sprintf("%s-%d-é", path, f.rnd.IntN(1000)))
	case reflect.Pointer:
		if !f.full && f.rnd.IntN(4) == 0 {
			return
		}
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), path)
		v.Set(p)
	case reflect.Slice:
		n := 1 + f.rnd.IntN(3)
		if !f.full {
			n--
		}
		if n == 0 {
			return
		}
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := range n {
			f.fill(s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			f.fill(v.Index(i), path)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			sf := v.Type().Field(i)
			name := path + "." + sf.Name
			if !sf.IsExported() {
				f.t.Fatalf("%s: an unexported field the codec test does not know", name)
			}
			if sf.Tag.Get("json") == "-" || f.skip() {
				continue
			}
			f.fill(v.Field(i), name)
		}
	default:
		f.t.Fatalf("%s: kind %s the codec test does not know", path, v.Kind())
	}
}

// normalize makes what means the same compare equal: an instant whatever
// its location, and an empty slice as none. Neither form is kept by JSON
// either.
func normalize(v reflect.Value) {
	switch v.Type() {
	case timeType:
		v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
		return
	case addrType, addrPortType:
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			normalize(v.Elem())
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.Set(reflect.Zero(v.Type()))
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Array:
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	}
}

// persisted is the IKE SA with only what its JSON carries, normalized.
func persisted(t *testing.T, s *IKESA) *IKESA {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var r IKESA
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	normalize(reflect.ValueOf(&r))
	return &r
}

func binaryRoundTrip(t *testing.T, s *IKESA) *IKESA {
	t.Helper()
	b, err := s.AppendBinary([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	var r IKESA
	if err := r.UnmarshalBinary(b[len("prefix"):]); err != nil {
		t.Fatal(err)
	}
	// The decoded state is its own: this changes nothing of it.
	for i := range b {
		b[i] = 0xee
	}
	normalize(reflect.ValueOf(&r))
	return &r
}

// diff names the first field where a and b differ.
func diff(a, b reflect.Value, path string) string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return ""
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return fmt.Sprintf("%s: nil %v, %v", path, a.IsNil(), b.IsNil())
		}
		return diff(a.Elem(), b.Elem(), path)
	case reflect.Struct:
		if a.Type() != timeType && a.Type() != addrType && a.Type() != addrPortType {
			for i := range a.NumField() {
				if d := diff(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); d != "" {
					return d
				}
			}
		}
	case reflect.Slice:
		if a.Len() == b.Len() {
			for i := range a.Len() {
				if d := diff(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); d != "" {
					return d
				}
			}
		}
	}
	return fmt.Sprintf("%s: %v, %v", path, a.Interface(), b.Interface())
}

func checkSame(t *testing.T, what string, want, got *IKESA) {
	t.Helper()
	if d := diff(reflect.ValueOf(want), reflect.ValueOf(got), "IKESA"); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// TestStateCodecComplete fills every persisted field of an IKE SA, its
// Child SAs, keys, proposals, selectors, request in flight... by
// reflection: the binary state must bring each back, and the same as its
// JSON. A field added to any of these structs without its encoding fails
// here, rather than being silently lost at a restart.
func TestStateCodecComplete(t *testing.T) {
	f := &filler{t: t, rnd: rand.New(rand.NewPCG(1, 2)), full: true}
	var s IKESA
	f.fill(reflect.ValueOf(&s).Elem(), "IKESA")
	want := persisted(t, &s)
	orig := s
	normalize(reflect.ValueOf(&orig))
	// JSON drops only the json:"-" fields, which the filler left zero.
	checkSame(t, "JSON round trip of a full IKE SA", &orig, want)
	checkSame(t, "binary round trip of a full IKE SA", want, binaryRoundTrip(t, &s))
}

// TestStateCodecRandom: IKE SAs with a random choice of fields set (nil
// keys, no Child SA, zero times, addresses of each family...) decode from
// binary as from JSON.
func TestStateCodecRandom(t *testing.T) {
	f := &filler{t: t, rnd: rand.New(rand.NewPCG(3, 4))}
	for i := range 2000 {
		var s IKESA
		f.fill(reflect.ValueOf(&s).Elem(), "IKESA")
		want := persisted(t, &s)
		checkSame(t, fmt.Sprintf("IKE SA %d", i), want, binaryRoundTrip(t, &s))
	}
}

// tunnelState is an established IKE SA of a PSK tunnel with one Child SA
// (AES-GCM-16, X25519, two policies), resp its cached response if any.
func tunnelState(t testing.TB, resp int) *IKESA {
	alg := suite.Algorithms{Protocol: suite.ProtocolIKE, Encr: suite.EncrAESGCM16, EncrKeyBits: 128, PRF: suite.PRFHMACSHA256, Group: suite.GroupCurve25519}
	keys, err := suite.DeriveIKEKeys(alg, make([]byte, 32), make([]byte, 32), make([]byte, 32), 0x1122334455667788, 0x99aabbccddeeff00)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := suite.ParseIKE("aes128gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := &IKESA{UniqueID: 123456, ConnName: "site-b", Initiator: false, SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, State: Established,
		Local: netip.MustParseAddrPort("198.18.0.1:4500"), Remote: netip.MustParseAddrPort("198.19.12.34:4500"), Logical: 17, Anchored: true,
		Proposal: ps[0], NATRemote: true, FragSend: true, FragAccept: true,
		LocalID:   config.Identity{Type: 2, Data: []byte("gw.example.net"), Text: "gw.example.net"},
		RemoteID:  config.Identity{Type: 2, Data: []byte("branch-123456.example.net"), Text: "branch-123456.example.net"},
		AuthLocal: "psk", AuthRemote: "psk", MsgIDOut: 0, MsgIDIn: 2,
		Created: now, Established: now, RekeyAt: now.Add(3 * time.Hour), ExpireAt: now.Add(4 * time.Hour)}
	if err := s.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	if resp > 0 {
		r := make([]byte, resp)
		for i := range r {
			r[i] = byte(i * 7)
		}
		s.LastResponse = [][]byte{r}
	}
	ca := suite.Algorithms{Protocol: suite.ProtocolESP, Encr: suite.EncrAESGCM16, EncrKeyBits: 128}
	ck, err := suite.DeriveChildKeys(suite.PRFHMACSHA256, keys.SKd(), ca, nil, make([]byte, 32), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	s.Children = []*ChildSA{{UniqueID: 234567, Name: "lan", State: ChildInstalled, ReqID: 3, SPIIn: 0xc1234567, SPIOut: 0xc7654321, Alg: ca, Keys: ck,
		LocalTS:   []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("10.0.0.0/8"), 0)},
		RemoteTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("10.200.12.0/24"), 0)},
		Encap:     true,
		PolicyIDs: []uint32{1200001, 1200002}, RekeyBytes: 900_000_000, RekeyPackets: 0,
		Installed: now, RekeyAt: now.Add(50 * time.Minute), ExpireAt: now.Add(time.Hour)}}
	return s
}

// rekeyState is a tunnel in the middle of a Child SA rekey we initiated:
// the request in flight with its nonce, key exchange and proposal.
func rekeyState(t testing.TB) *IKESA {
	s := tunnelState(t, 80)
	ps, err := suite.ParseESP("aes128gcm16-x25519")
	if err != nil {
		t.Fatal(err)
	}
	c := s.Children[0]
	s.InFlight = &InFlight{MsgID: 7, Exchange: message.CreateChildSA, Packets: [][]byte{bytes.Repeat([]byte{0xab}, 220)}, Task: "child-rekey", Reason: "time",
		Child: c.Name, ReqID: c.ReqID, OldSPI: c.SPIIn, SPI: 0xc2345678, Nonce: bytes.Repeat([]byte{1}, 32), Group: suite.GroupCurve25519,
		KEPriv: bytes.Repeat([]byte{2}, 32), Props: ps, TSi: c.LocalTS, TSr: c.RemoteTS}
	s.Draining = []DrainingSA{{SPI: 0xc0000001, Name: "lan", Until: time.Now().Add(time.Minute)}}
	return s
}

// TestStateCodecTunnel: a tunnel's state is as its JSON and within its
// budget of bytes (issue 16: 4 KiB a tunnel in all).
func TestStateCodecTunnel(t *testing.T) {
	for _, c := range []struct {
		name string
		s    *IKESA
		max  int
	}{
		{"no cached response", tunnelState(t, 0), 420},
		{"cached IKE_AUTH response", tunnelState(t, 260), 700},
		{"rekey in flight", rekeyState(t), 1000},
	} {
		b, _ := c.s.MarshalBinary()
		js, _ := json.Marshal(c.s)
		t.Logf("%s: %d bytes binary, %d JSON", c.name, len(b), len(js))
		if len(b) > c.max {
			t.Errorf("%s: %d bytes, want at most %d", c.name, len(b), c.max)
		}
		checkSame(t, c.name, persisted(t, c.s), binaryRoundTrip(t, c.s))
		var r IKESA
		r.UnmarshalBinary(b)
		for _, k := range [][]byte{r.Keys.SKd(), r.Keys.SKei(), r.Keys.SKpr(), r.Children[0].Keys.EncrI(), r.RemoteID.Data} {
			if cap(k) != len(k) {
				t.Errorf("%s: a decoded byte string has room for %d more bytes: an append would run into the next", c.name, cap(k)-len(k))
			}
		}
		if err := r.RestoreCiphers(); err != nil {
			t.Fatal(err)
		}
		sealed, err := c.s.Out.Seal([]byte("hdr"), []byte("inner"))
		if err != nil {
			t.Fatal(err)
		}
		peer := r
		peer.Initiator = !r.Initiator
		if err := peer.RestoreCiphers(); err != nil {
			t.Fatal(err)
		}
		if p, err := peer.In.Open([]byte("hdr"), sealed[3:]); err != nil || string(p) != "inner" {
			t.Errorf("%s: the restored keys do not open what the original sealed: %v", c.name, err)
		}
	}
}

// TestStateCodecMalformed: every truncation of a state, a byte after it,
// an unknown version and flags are errors that say where.
func TestStateCodecMalformed(t *testing.T) {
	b, _ := rekeyState(t).MarshalBinary()
	for n := range len(b) {
		var s IKESA
		if err := s.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("truncated to %d bytes of %d: no error", n, len(b))
		} else if !strings.HasPrefix(err.Error(), "ike sa state: ") {
			t.Fatalf("truncated to %d: %v", n, err)
		}
	}
	var s IKESA
	if err := s.UnmarshalBinary(append(b[:len(b):len(b)], 0)); err == nil || !strings.Contains(err.Error(), "1 bytes after the state") {
		t.Errorf("a byte after the state: %v", err)
	}
	if err := s.UnmarshalBinary(append([]byte{2}, b[1:]...)); !errors.Is(err, ErrStateVersion) {
		t.Errorf("version 2: %v", err)
	}
	if err := s.UnmarshalBinary([]byte(`{"spi_i":"1"}`)); !errors.Is(err, ErrStateVersion) {
		t.Errorf("JSON: %v", err)
	}
	fl, n := binary.Uvarint(b[1:])
	bad := binary.AppendUvarint([]byte{b[0]}, fl|1<<20)
	bad = append(bad, b[1+n:]...)
	if err := s.UnmarshalBinary(bad); err == nil || !strings.Contains(err.Error(), "flags: unknown flags") {
		t.Errorf("unknown flags: %v", err)
	}
	// A huge count is refused before anything is allocated for it.
	none, _ := (&IKESA{}).MarshalBinary()
	one, _ := (&IKESA{Children: []*ChildSA{nil}}).MarshalBinary()
	at := 0
	for none[at] == one[at] {
		at++
	}
	huge := append(binary.AppendUvarint(append([]byte(nil), one[:at]...), 1<<40), one[at+1:]...)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	err := s.UnmarshalBinary(huge)
	runtime.ReadMemStats(&m1)
	if err == nil || !strings.Contains(err.Error(), "Child SAs: 1099511627776 elements, more than the") {
		t.Errorf("a huge count: %v", err)
	}
	if n := m1.TotalAlloc - m0.TotalAlloc; n > 4096 {
		t.Errorf("a huge count: %d bytes allocated", n)
	}
}

// FuzzDecodeState: whatever the bytes, decoding is an error or a state that
// encodes back to the same bytes; never a panic.
func FuzzDecodeState(f *testing.F) {
	for _, s := range []*IKESA{tunnelState(f, 0), tunnelState(f, 260), rekeyState(f), {}} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	full := &IKESA{}
	(&filler{t: f, rnd: rand.New(rand.NewPCG(5, 6)), full: true}).fill(reflect.ValueOf(full).Elem(), "IKESA")
	b, _ := full.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var s IKESA
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, _ := s.MarshalBinary()
		var r IKESA
		if err := r.UnmarshalBinary(again); err != nil {
			t.Fatalf("a decoded state does not decode again: %v", err)
		}
		if again2, _ := r.MarshalBinary(); !bytes.Equal(again, again2) {
			t.Fatalf("encoding is not stable")
		}
	})
}

func BenchmarkStateEncode(b *testing.B) {
	s := tunnelState(b, 260)
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = s.AppendBinary(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

func BenchmarkStateDecode(b *testing.B) {
	enc, _ := tunnelState(b, 260).MarshalBinary()
	b.ReportAllocs()
	for b.Loop() {
		var s IKESA
		if err := s.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStateEncodeJSON(b *testing.B) {
	s := tunnelState(b, 260)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		buf, _ := json.Marshal(s)
		n = len(buf)
	}
	b.ReportMetric(float64(n), "bytes")
}

func BenchmarkStateDecodeJSON(b *testing.B) {
	enc, _ := json.Marshal(tunnelState(b, 260))
	b.ReportAllocs()
	for b.Loop() {
		var s IKESA
		if err := json.Unmarshal(enc, &s); err != nil {
			b.Fatal(err)
		}
	}
}
