package ikectl

import (
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/spugate/spugate/internal/packed"
	"github.com/spugate/spugate/internal/unixrpc"
)

// randomIKESA fills every field of an IKE SA, some of them zero, nil or
// empty by chance.
func randomIKESA(rng *rand.Rand, full bool) IKESA {
	str := func() string {
		if !full && rng.IntN(4) == 0 {
			return ""
		}
		// Runes of one to three bytes, controls and quotes among them
		// (valid UTF-8, which JSON keeps as it is).
		r := make([]rune, rng.IntN(40))
		for i := range r {
			r[i] = rune(rng.IntN(0x900))
		}
		return string(r)
	}
	ap := func() netip.AddrPort {
		switch rng.IntN(4) {
		case 0:
			if !full {
				return netip.AddrPort{}
			}
			fallthrough
		case 1:
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
		case 2:
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 15: byte(rng.IntN(256))}), 4500)
		}
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte{0xfe, 0x80, 15: 1}).WithZone("eth0"), 500)
	}
	tm := func() time.Time {
		if !full && rng.IntN(3) == 0 {
			return time.Time{}
		}
		return time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
	}
	strs := func() []string {
		switch rng.IntN(3) {
		case 0:
			if !full {
				return nil
			}
		case 1:
			if !full {
				return []string{}
			}
		}
		l := make([]string, 1+rng.IntN(3))
		for i := range l {
			l[i] = str()
		}
		return l
	}
	b := func() bool { return full || rng.IntN(2) == 0 }
	s := IKESA{Conn: str(), UniqueID: rng.Uint32(), State: str(), Initiator: b(), SPIi: str(), SPIr: str(),
		Local: ap(), Remote: ap(), LocalID: str(), RemoteID: str(), Proposal: str(), NATLocal: b(), NATRemote: b(),
		Established: tm(), RekeyIn: time.Duration(rng.Int64() - 1<<62), Worker: rng.IntN(64) - 1, SPU: rng.IntN(64) - 1,
		Logical: rng.IntN(1 << 16), Counters: IKECounter{MsgIDOut: rng.Uint32(), MsgIDIn: rng.Uint32()},
		AuthLocal: str(), AuthRemote: str(), Fragmentation: b()}
	n := rng.IntN(4)
	if full {
		n = 1 + rng.IntN(3)
	}
	if n > 0 || rng.IntN(2) == 0 {
		s.Children = make([]ChildSA, n)
	}
	for i := range s.Children {
		c := ChildSA{Name: str(), UniqueID: rng.Uint32(), State: str(), ReqID: rng.Uint32(), SPIIn: rng.Uint32(), SPIOut: rng.Uint32(),
			Suite: str(), Proposal: str(), Encap: b(), LocalTS: strs(), RemoteTS: strs(), Installed: tm(),
			RekeyIn: time.Duration(rng.Int64N(1 << 40)), ExpireIn: -time.Duration(rng.Int64N(1 << 40)),
			BytesIn: rng.Uint64(), PacketsIn: rng.Uint64(), BytesOut: rng.Uint64(), PktsOut: rng.Uint64(), SPU: rng.IntN(8) - 1, Trap: b()}
		if full || rng.IntN(3) > 0 {
			c.Policies = make([]uint32, rng.IntN(4))
			if full {
				c.Policies = append(c.Policies, rng.Uint32())
			}
			for j := range c.Policies {
				c.Policies[j] = rng.Uint32()
			}
		}
		s.Children[i] = c
	}
	return s
}

// sameIKESA compares two IKE SAs field by field, times by their instant.
func sameIKESA(a, b IKESA) bool {
	if !a.Established.Equal(b.Established) || len(a.Children) != len(b.Children) {
		return false
	}
	a.Established, b.Established = time.Time{}, time.Time{}
	a.Children, b.Children = append([]ChildSA(nil), a.Children...), append([]ChildSA(nil), b.Children...)
	for i := range a.Children {
		if !a.Children[i].Installed.Equal(b.Children[i].Installed) {
			return false
		}
		a.Children[i].Installed, b.Children[i].Installed = time.Time{}, time.Time{}
	}
	return reflect.DeepEqual(a, b)
}

// A page of random IKE SAs comes back the same, nil slices as nil and
// empty ones empty; every prefix of it short of an entry's end is an
// error, not a panic or a wrong IKE SA.
func TestPackedIKESAs(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 1))
	for round := range 200 {
		var page []IKESA
		var b []byte
		for range 1 + rng.IntN(8) {
			s := randomIKESA(rng, round%4 == 0)
			page = append(page, s)
			b = AppendPackedIKESA(b, &s)
		}
		got, err := DecodePackedIKESAs(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(page) {
			t.Fatalf("%d IKE SAs back of %d", len(got), len(page))
		}
		for i := range page {
			if !sameIKESA(got[i], page[i]) {
				t.Fatalf("IKE SA %d:\n got %+v\nwant %+v", i, got[i], page[i])
			}
		}
		if round >= 20 {
			continue
		}
		for cut := range len(b) {
			if got, err := DecodePackedIKESAs(b[:cut], nil); err == nil && len(got) == len(page) {
				t.Fatalf("%d of %d bytes decode as the whole page", cut, len(b))
			}
		}
	}
}

// Every field of IKESA and ChildSA travels: an IKE SA with every field
// set (the random filling of TestPackedIKESAs with full) has no zero
// field, and comes back the same. A field added to either type without
// its place in the encoding fails here.
func TestPackedIKESACoversEveryField(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 2))
	s := randomIKESA(rng, true)
	for _, v := range []reflect.Value{reflect.ValueOf(s), reflect.ValueOf(s.Children[0])} {
		for i := range v.NumField() {
			if v.Field(i).IsZero() {
				t.Fatalf("%s.%s is zero in the full sample: fill it in randomIKESA and in the encoding", v.Type().Name(), v.Type().Field(i).Name)
			}
		}
	}
	got, err := DecodePackedIKESAs(AppendPackedIKESA(nil, &s), nil)
	if err != nil || len(got) != 1 || !sameIKESA(got[0], s) {
		t.Fatalf("%v\n got %+v\nwant %+v", err, got, s)
	}
}

// A newer iked's fields after those this build knows are skipped, in an
// IKE SA and in a Child SA.
func TestPackedIKESASkipsNewerFields(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 3))
	s := randomIKESA(rng, true)
	s.Children = s.Children[:1]
	c := appendPackedChild(nil, &s.Children[0])
	// Rebuild the IKE SA's entry by hand: its fields with the Child SA's
	// entry grown by three bytes, and three bytes after its own fields.
	one := AppendPackedIKESA(nil, &s)
	var d packedReader
	d.B = one
	body := d.Entry()
	child := packed.AppendEntry(nil, func(b []byte) []byte {
		r := packed.Reader{B: c}
		return append(append(b, r.Entry()...), 7, 7, 7)
	})
	i := indexOf(body, c)
	if i < 0 {
		t.Fatal("the Child SA's entry is not in its IKE SA's")
	}
	grown := append(append(append([]byte{}, body[:i]...), child...), body[i+len(c):]...)
	page := packed.AppendEntry(nil, func(b []byte) []byte { return append(append(b, grown...), 9, 9, 9) })
	page = AppendPackedIKESA(page, &s)
	got, err := DecodePackedIKESAs(page, nil)
	if err != nil || len(got) != 2 || !sameIKESA(got[0], s) || !sameIKESA(got[1], s) {
		t.Fatalf("%v: %d IKE SAs", err, len(got))
	}
}

func indexOf(b, sub []byte) int {
	for i := 0; i+len(sub) <= len(b); i++ {
		if string(b[i:i+len(sub)]) == string(sub) {
			return i
		}
	}
	return -1
}

// SAPage asks for packed pages as data; an iked that knows packed pages
// but not as data (it refuses the encoding) is asked again for packed
// pages, one that does not know the encoding field (its request decoding
// refuses it) in JSON, and the connection keeps to what worked.
func TestSAPageOlderIked(t *testing.T) {
	for _, knows := range []string{EncodingPackedData, EncodingPacked, ""} {
		t.Run("knows "+knows, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "iked.sock")
			srv := unixrpc.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
			asked := 0
			page := []IKESA{randomIKESA(rand.New(rand.NewPCG(16, 4)), true)}
			srv.Handle(OpSAs, func(body json.RawMessage) (any, error) {
				asked++
				if knows == "" {
					var req struct {
						After uint32 `json:"after,omitempty"`
						Limit int    `json:"limit,omitempty"`
					}
					if err := unixrpc.Decode(body, &req); err != nil {
						return nil, err
					}
					return SAs{IKESAs: page}, nil
				}
				var req SAsRequest
				if err := unixrpc.Decode(body, &req); err != nil {
					return nil, err
				}
				switch {
				case req.Encoding != knows:
					return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "unknown encoding %q (%q or none)", req.Encoding, knows)
				case knows == EncodingPackedData:
					return unixrpc.WithData{Body: SAs{}, Data: AppendPackedIKESA(nil, &page[0])}, nil
				}
				return SAs{Packed: AppendPackedIKESA(nil, &page[0])}, nil
			})
			if err := srv.Listen(path); err != nil {
				t.Fatal(err)
			}
			go srv.Serve()
			defer srv.Close()
			c, err := Dial(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 2 {
				got, err := c.SAs()
				if err != nil || len(got) != 1 || !sameIKESA(got[0], page[0]) {
					t.Fatalf("%v: %+v", err, got)
				}
			}
			if want := map[string]int{EncodingPackedData: 2, EncodingPacked: 3, "": 4}[knows]; asked != want {
				t.Errorf("asked %d times, want %d", asked, want)
			}
		})
	}
}

// A packed page of IKE SAs decodes with a few allocations for the page,
// none per IKE SA.
func TestDecodePackedIKESAsAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 6))
	var b []byte
	for range 1000 {
		s := randomIKESA(rng, true)
		s.Children = s.Children[:1]
		b = AppendPackedIKESA(b, &s)
	}
	out := make([]IKESA, 0, 1000)
	allocs := testing.AllocsPerRun(10, func() {
		var err error
		if out, err = DecodePackedIKESAs(b, out[:0]); err != nil || len(out) != 1000 {
			t.Fatal(err)
		}
	})
	if allocs > 20 {
		t.Errorf("%v allocations for a page of 1000 IKE SAs", allocs)
	}
}

// BenchmarkDecodePackedIKESAs against JSON, a page of IKE SAs with a
// Child SA each.
func BenchmarkDecodeIKESAs(b *testing.B) {
	rng := rand.New(rand.NewPCG(16, 5))
	page := make([]IKESA, 1024)
	var packed []byte
	for i := range page {
		page[i] = randomIKESA(rng, true)
		page[i].Children = page[i].Children[:1]
		packed = AppendPackedIKESA(packed, &page[i])
	}
	js, _ := json.Marshal(SAs{IKESAs: page})
	b.Run("packed", func(b *testing.B) {
		out := make([]IKESA, 0, len(page))
		for b.Loop() {
			out, _ = DecodePackedIKESAs(packed, out[:0])
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(page)), "ns/ike_sa")
	})
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			var r SAs
			json.Unmarshal(js, &r)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(page)), "ns/ike_sa")
	})
}

// appendAddrPort writes MarshalBinary's bytes behind their length.
func TestAppendAddrPort(t *testing.T) {
	for _, s := range []string{"198.18.0.1:500", "[2001:db8::1]:4500", "[::ffff:198.18.0.1]:1", "[fe80::1%eth0]:500"} {
		a := netip.MustParseAddrPort(s)
		v, _ := a.MarshalBinary()
		want := append([]byte{byte(len(v))}, v...)
		if got := appendAddrPort(nil, a); string(got) != string(want) {
			t.Errorf("%s: %x, want %x", s, got, want)
		}
	}
}
