package anchor

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
)

func seqKey() HashKey {
	var k HashKey
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

// TestSipHash24Vectors checks SipHash24 against the 64 vectors of the
// SipHash paper's reference implementation.
func TestSipHash24Vectors(t *testing.T) {
	f, err := os.Open("testdata/siphash24_vectors.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key := seqKey()
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		want, err := hex.DecodeString(line)
		if err != nil || len(want) != 8 {
			t.Fatalf("vector %d: bad line %q", n, line)
		}
		got := SipHash24(&key, msg[:n])
		if got != binary.LittleEndian.Uint64(want) {
			t.Errorf("SipHash24(len %d) = %016x, want %016x", n, got, binary.LittleEndian.Uint64(want))
		}
		n++
	}
	if n != 64 {
		t.Fatalf("read %d vectors, want 64", n)
	}
	// The paper's Appendix A example, spelled out.
	if got := SipHash24(&key, msg[:15]); got != 0xa129ca6149be45e5 {
		t.Errorf("paper example = %016x, want a129ca6149be45e5", got)
	}
}

// TestKeyHashMatchesSipHash24 checks the fixed 32-byte path against the
// general function.
func TestKeyHashMatchesSipHash24(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var hk HashKey
		var k Key
		fillRand(r, hk[:])
		fillRand(r, k[:])
		if got, want := k.Hash(&hk), SipHash24(&hk, k[:]); got != want {
			t.Fatalf("Key.Hash = %016x, SipHash24 = %016x", got, want)
		}
	}
}

func fillRand(r *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(r.Uint32())
	}
}

func TestNewKeyCanonical(t *testing.T) {
	a := netip.MustParseAddr("198.18.0.1")
	b := netip.MustParseAddr("198.18.0.2")
	k := NewKey(b, a)
	want := "00000000000000000000ffffc6120001" + "00000000000000000000ffffc6120002"
	if got := hex.EncodeToString(k[:]); got != want {
		t.Errorf("NewKey(198.18.0.2, 198.18.0.1) = %s, want %s", got, want)
	}
	if NewKey(a, b) != k {
		t.Error("NewKey depends on the order of its arguments")
	}
	// v4-mapped IPv6 is the same endpoint as IPv4.
	if NewKey(netip.MustParseAddr("::ffff:198.18.0.1"), b) != k {
		t.Error("v4-mapped and IPv4 give different keys")
	}
	// IPv6 sorts bytewise: 2001:db8::1 < 2001:db8:0:0:1:: because of byte 8.
	x := netip.MustParseAddr("2001:db8::ffff")
	y := netip.MustParseAddr("2001:db8::1:0:0:0")
	k6 := NewKey(x, y)
	if netip.AddrFrom16([16]byte(k6[:16])) != x {
		t.Errorf("IPv6 order: first is %v, want %v", netip.AddrFrom16([16]byte(k6[:16])), x)
	}
	// Equal endpoints are allowed (a test loop, not a real tunnel).
	if kk := NewKey(a, a); [16]byte(kk[:16]) != [16]byte(kk[16:]) {
		t.Error("key of equal endpoints has unequal halves")
	}
}

func TestLogicalSymmetricAndInRange(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, l := range []int{1, 2, 7, 256, 1000, MaxLogicalSPUs} {
		hk, _ := NewHashKey(r2reader{r})
		f, err := NewFunction(hk, l)
		if err != nil {
			t.Fatal(err)
		}
		for range 500 {
			a, b := randAddr(r), randAddr(r)
			x, y := f.Logical(a, b), f.Logical(b, a)
			if x != y {
				t.Fatalf("L=%d: Logical(%v,%v)=%d but reversed %d", l, a, b, x, y)
			}
			if int(x) >= l {
				t.Fatalf("L=%d: Logical=%d out of range", l, x)
			}
		}
	}
}

// TestLogicalKnownValue pins the function, so that a change of the Go or
// the C side (whose privileged test compares against this package) shows.
func TestLogicalKnownValue(t *testing.T) {
	f, err := NewFunction(seqKey(), 256)
	if err != nil {
		t.Fatal(err)
	}
	k := NewKey(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.255.254"))
	h := SipHash24(func() *HashKey { k := seqKey(); return &k }(), k[:])
	if got := f.Logical(netip.MustParseAddr("198.19.255.254"), netip.MustParseAddr("198.18.0.1")); uint64(got) != h%256 {
		t.Errorf("Logical = %d, want SipHash24 %% 256 = %d", got, h%256)
	}
}

func TestNewFunctionRange(t *testing.T) {
	for _, l := range []int{0, -1, MaxLogicalSPUs + 1} {
		if _, err := NewFunction(HashKey{}, l); err == nil {
			t.Errorf("NewFunction(L=%d) accepted", l)
		}
	}
}

func TestHashKeyRedacted(t *testing.T) {
	hk := seqKey()
	for _, s := range []string{fmt.Sprint(hk), fmt.Sprintf("%v %s %#v", hk, hk, hk)} {
		if strings.Contains(s, "0102") || strings.Contains(s, "[0 1 2") {
			t.Errorf("hash key printed: %s", s)
		}
	}
}

func TestLogicalAllocs(t *testing.T) {
	f, _ := NewFunction(seqKey(), 256)
	a := netip.MustParseAddr("198.18.0.1")
	b := netip.MustParseAddr("2001:db8::1")
	msg := make([]byte, 40)
	hk := seqKey()
	if n := testing.AllocsPerRun(100, func() { _ = f.Logical(a, b) }); n != 0 {
		t.Errorf("Logical allocates %v times per call", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = SipHash24(&hk, msg) }); n != 0 {
		t.Errorf("SipHash24 allocates %v times per call", n)
	}
}

type r2reader struct{ r *rand.Rand }

func (r r2reader) Read(b []byte) (int, error) {
	fillRand(r.r, b)
	return len(b), nil
}

func randAddr(r *rand.Rand) netip.Addr {
	if r.IntN(2) == 0 {
		var b [4]byte
		fillRand(r, b[:])
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	fillRand(r, b[:])
	return netip.AddrFrom16(b)
}

func BenchmarkLogical(b *testing.B) {
	f, _ := NewFunction(seqKey(), 256)
	x := netip.MustParseAddr("198.18.0.1")
	y := netip.MustParseAddr("198.19.0.1")
	b.ReportAllocs()
	for b.Loop() {
		_ = f.Logical(x, y)
	}
}
