package steer

import (
	"errors"
	"testing"
)

func TestMetaRoundTrip(t *testing.T) {
	m := Meta{LogicalSPU: 188, PhysicalSPU: 3, PolicyID: 0xdeadbeef, L3Offset: 18, L4Offset: 58,
		RxQueue: 2, Class: ClassCleartext, Flags: FlagVLAN | FlagIPv6}
	buf := make([]byte, 64)
	m.Put(buf[64-MetaSize:])
	got, err := ParseMeta(buf)
	if err != nil || got != m {
		t.Fatalf("ParseMeta = %+v, %v; want %+v", got, err, m)
	}
}

// TestMetaFromKernel parses the bytes this kernel's test run returned in
// front of a redirected ESP frame (see the privileged tests).
func TestMetaFromKernel(t *testing.T) {
	b := []byte{0x53, 0x50, 0x47, 0x31, 0xbc, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x0e, 0x00, 0x22, 0x00, 0x02, 0x00, 0x01, 0x00}
	m, err := ParseMeta(b)
	want := Meta{LogicalSPU: 188, L3Offset: 14, L4Offset: 34, RxQueue: 2, Class: ClassESP}
	if err != nil || m != want {
		t.Errorf("ParseMeta = %+v, %v; want %+v", m, err, want)
	}
}

func TestMetaErrors(t *testing.T) {
	good := Meta{L3Offset: 14, L4Offset: 34, Class: ClassESP}
	cases := []struct {
		name string
		mod  func(b []byte)
		size int
		want error
	}{
		{"short", nil, MetaSize - 1, ErrMetaShort},
		{"no magic", func(b []byte) { b[0] = 0 }, MetaSize, ErrNoMeta},
		{"class none", func(b []byte) { b[18] = 0 }, MetaSize, ErrBadMeta},
		{"class 5", func(b []byte) { b[18] = 5 }, MetaSize, ErrBadMeta},
		{"vlan flag, l3 14", func(b []byte) { b[19] = byte(FlagVLAN) }, MetaSize, ErrBadMeta},
		{"ipv6, l4 too close", func(b []byte) { b[19] = byte(FlagIPv6) }, MetaSize, ErrBadMeta},
		{"l3 offset 0", func(b []byte) { b[12] = 0 }, MetaSize, ErrBadMeta},
	}
	for _, c := range cases {
		b := make([]byte, MetaSize)
		good.Put(b)
		if c.mod != nil {
			c.mod(b)
		}
		if _, err := ParseMeta(b[:c.size]); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
}

func TestParseMetaAllocs(t *testing.T) {
	b := make([]byte, MetaSize)
	(&Meta{L3Offset: 14, L4Offset: 34, Class: ClassESP}).Put(b)
	bad := make([]byte, MetaSize)
	if n := testing.AllocsPerRun(100, func() {
		_, _ = ParseMeta(b)
		_, _ = ParseMeta(bad)
	}); n != 0 {
		t.Errorf("ParseMeta allocates %v times", n)
	}
}

func FuzzParseMeta(f *testing.F) {
	b := make([]byte, MetaSize)
	(&Meta{LogicalSPU: 7, L3Offset: 14, L4Offset: 34, Class: ClassUDPESP}).Put(b)
	f.Add(b)
	f.Add(append([]byte{1, 2, 3}, b...))
	f.Add(b[:10])
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseMeta(in)
		if err != nil {
			return
		}
		// What parses writes back to the same bytes.
		out := make([]byte, MetaSize)
		m.Put(out)
		if string(out) != string(in[len(in)-MetaSize:]) {
			t.Fatalf("Put(ParseMeta(%x)) = %x", in, out)
		}
	})
}

func BenchmarkParseMeta(b *testing.B) {
	buf := make([]byte, MetaSize)
	(&Meta{L3Offset: 14, L4Offset: 34, Class: ClassESP}).Put(buf)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = ParseMeta(buf)
	}
}
