package ipfrag

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/iphdr"
)

func pkt4(n int, opts []byte) []byte {
	hl := 20 + len(opts)
	p := make([]byte, hl+n)
	p[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0xbeef)
	p[8], p[9] = 64, iphdr.ProtoESP
	copy(p[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	copy(p[20:], opts)
	iphdr.SetIPv4Checksum(p[:hl])
	for i := hl; i < len(p); i++ {
		p[i] = byte(i * 7)
	}
	return p
}

func pkt6(n int, ext []byte) []byte {
	p := make([]byte, 40+len(ext)+n)
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(p)-40))
	p[6], p[7] = iphdr.ProtoESP, 64
	if len(ext) > 0 {
		p[6] = iphdr.ProtoHopByHop
	}
	p[8], p[9], p[23] = 0x20, 0x01, 1
	p[24], p[25], p[39] = 0x20, 0x01, 2
	copy(p[40:], ext)
	for i := 40 + len(ext); i < len(p); i++ {
		p[i] = byte(i * 13)
	}
	return p
}

func bufs(n, size int) [][]byte {
	b := make([][]byte, n)
	for i := range b {
		b[i] = make([]byte, size)
	}
	return b
}

func newR(t testing.TB, c Config) *Reassembler {
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestFragmentReassembleRoundTrip(t *testing.T) {
	hbh := []byte{iphdr.ProtoESP, 0, 1, 4, 0, 0, 0, 0}
	// Option 0x94 (router alert, copied) and 0x07 (record route, not copied).
	opts := []byte{0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 0}
	cases := []struct {
		name string
		p    []byte
		mtu  int
	}{
		{"v4", pkt4(3000, nil), 1500},
		{"v4 small mtu", pkt4(1000, nil), 576},
		{"v4 options", pkt4(2000, opts), 600},
		{"v6", pkt6(3000, nil), 1280},
		{"v6 hop-by-hop", pkt6(5000, hbh), 1500},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := bufs(16, c.mtu)
			n, err := Fragment(out, c.p, c.mtu, 0x1234)
			if err != nil {
				t.Fatal(err)
			}
			if n < 2 {
				t.Fatalf("%d fragments", n)
			}
			frags := out[:n]
			for i, f := range frags {
				if len(f) > c.mtu {
					t.Fatalf("fragment %d is %d bytes", i, len(f))
				}
				if f[0]>>4 == 4 && iphdr.Checksum(f[:int(f[0]&0xf)*4], 0) != 0 {
					t.Fatalf("fragment %d checksum", i)
				}
			}
			if c.name == "v4 options" && frags[1][0]&0xf != 6 {
				t.Fatalf("later fragment header length %d words, want 6 (router alert only)", frags[1][0]&0xf)
			}
			r := newR(t, Config{})
			order := rng.Perm(n)
			for k, i := range order {
				got, st, why := r.Add(frags[i], int64(k))
				if k < n-1 {
					if st != Held || why != None {
						t.Fatalf("fragment %d: %v %v", i, st, why)
					}
					continue
				}
				if st != Complete {
					t.Fatalf("last fragment: %v %v", st, why)
				}
				want := c.p
				if c.name == "v4 options" {
					// The reassembled header is the first fragment's.
					want = append([]byte(nil), c.p...)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("reassembled\n %x\nwant\n %x", got[:64], want[:64])
				}
			}
			if r.InProgress() != 0 || r.Stats().Reassembled != 1 {
				t.Fatalf("state after completion: %d in progress, %+v", r.InProgress(), r.Stats())
			}
		})
	}
}

func TestFragmentErrors(t *testing.T) {
	p := pkt4(3000, nil)
	p[6] = 0x40
	iphdr.SetIPv4Checksum(p[:20])
	if _, err := Fragment(bufs(8, 1500), p, 1500, 0); err != ErrDF {
		t.Fatalf("DF: %v", err)
	}
	if _, err := Fragment(bufs(1, 1500), pkt4(3000, nil), 1500, 0); err != ErrBuffers {
		t.Fatalf("buffers: %v", err)
	}
	if _, err := Fragment(bufs(8, 1500), pkt4(3000, nil), 24, 0); err != ErrMTU {
		t.Fatalf("mtu: %v", err)
	}
	if n, err := Fragment(bufs(1, 1500), pkt4(100, nil), 1500, 0); n != 1 || err != nil {
		t.Fatalf("small packet: %d %v", n, err)
	}
	if _, err := Fragment(bufs(1, 1500), []byte{0x45}, 1500, 0); err != ErrMalformed {
		t.Fatalf("garbage: %v", err)
	}
}

func fragsOf(t *testing.T, p []byte, mtu int) [][]byte {
	out := bufs(64, mtu)
	n, err := Fragment(out, p, mtu, 77)
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

func TestReassemblyAttacks(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		p := pkt4(4000, nil)
		if v6 {
			p = pkt6(4000, nil)
		}
		frags := fragsOf(t, p, 1280)

		// Exact duplicate: dropped alone, the datagram completes.
		r := newR(t, Config{})
		r.Add(frags[0], 0)
		if _, st, why := r.Add(frags[0], 0); st != Held || why != Duplicate {
			t.Fatalf("duplicate: %v %v", st, why)
		}
		var st Status
		for _, f := range frags[1:] {
			_, st, _ = r.Add(f, 0)
		}
		if st != Complete {
			t.Fatal("datagram with a duplicate did not complete")
		}

		// Overlap: the whole datagram goes (RFC 5722).
		r = newR(t, Config{})
		r.Add(frags[0], 0)
		ov := append([]byte(nil), frags[1]...)
		if v6 {
			fo := binary.BigEndian.Uint16(ov[42:])
			binary.BigEndian.PutUint16(ov[42:], fo-8)
		} else {
			fo := binary.BigEndian.Uint16(ov[6:])
			binary.BigEndian.PutUint16(ov[6:], fo-1)
			iphdr.SetIPv4Checksum(ov[:20])
		}
		if _, st, why := r.Add(ov, 0); st != Dropped || why != Overlap || r.InProgress() != 0 {
			t.Fatalf("overlap: %v %v", st, why)
		}

		// Timeout.
		r = newR(t, Config{Timeout: time.Second})
		r.Add(frags[0], 0)
		r.Expire(int64(2 * time.Second))
		if r.InProgress() != 0 || r.Stats().Drops[Timeout] != 1 {
			t.Fatal("no timeout")
		}
		r.Add(frags[0], 0)
		if _, st, _ := r.Add(frags[1], int64(3*time.Second)); st != Held || r.Stats().Drops[Timeout] != 2 {
			t.Fatal("stale datagram not expired on Add")
		}

		// Too big for the configured size.
		r = newR(t, Config{MaxDatagramSize: 2000})
		var why Reason
		for _, f := range frags {
			if _, st, why = r.Add(f, 0); st == Dropped {
				break
			}
		}
		if why != TooBig {
			t.Fatalf("too big: %v", why)
		}

		// Too many fragments.
		r = newR(t, Config{MaxFragments: 2})
		for _, f := range frags {
			if _, st, why = r.Add(f, 0); st == Dropped {
				break
			}
		}
		if why != TooManyFragments {
			t.Fatalf("too many fragments: %v", why)
		}
	}
}

// TestReassemblyFlood: a sender spraying first fragments of endless
// datagrams uses at most MaxDatagrams slots; the others are evicted and
// counted, and memory does not grow.
func TestReassemblyFlood(t *testing.T) {
	r := newR(t, Config{MaxDatagrams: 8})
	base := fragsOf(t, pkt4(3000, nil), 1500)
	f := append([]byte(nil), base[0]...)
	allocs := testing.AllocsPerRun(10, func() {
		for id := 0; id < 1000; id++ {
			binary.BigEndian.PutUint16(f[4:], uint16(id))
			iphdr.SetIPv4Checksum(f[:20])
			r.Add(f, int64(id))
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations", allocs)
	}
	if r.InProgress() != 8 || r.Stats().Drops[Evicted] < 990 {
		t.Fatalf("in progress %d, stats %+v", r.InProgress(), r.Stats())
	}
	// A legitimate datagram still gets through.
	var st Status
	for _, g := range fragsOf(t, pkt6(3000, nil), 1500) {
		_, st, _ = r.Add(g, 2000)
	}
	if st != Complete {
		t.Fatal("legitimate datagram lost under flood")
	}
}

func TestZeroAllocs(t *testing.T) {
	r := newR(t, Config{})
	p := pkt6(5000, nil)
	out := bufs(8, 1500)
	if n := testing.AllocsPerRun(100, func() {
		k, _ := Fragment(out, p, 1500, 9)
		for i := k - 1; i >= 0; i-- {
			r.Add(out[i], 0)
		}
	}); n != 0 {
		t.Fatalf("%.1f allocations", n)
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{MaxDatagrams: -1}, {MaxDatagramSize: 100}, {MaxFragments: 1}, {Timeout: -1}} {
		if _, err := New(c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	for r := None; r < NumReasons; r++ {
		if r.String() == "" {
			t.Fatal("unnamed reason")
		}
	}
}

// FuzzReassemble feeds arbitrary fragments (and mutations of real ones) to
// a small reassembler: no panic, nothing out of bounds, and every complete
// datagram is a well-formed packet within the size limit.
func FuzzReassemble(f *testing.F) {
	for _, p := range [][]byte{pkt4(3000, nil), pkt6(3000, nil), pkt6(2000, []byte{iphdr.ProtoESP, 0, 1, 4, 0, 0, 0, 0})} {
		out := bufs(8, 1280)
		n, _ := Fragment(out, p, 1280, 5)
		for i := 0; i < n; i++ {
			f.Add(out[i], uint16(i))
		}
	}
	r, _ := New(Config{MaxDatagrams: 4, MaxDatagramSize: 4096, MaxFragments: 8})
	f.Fuzz(func(t *testing.T, data []byte, tick uint16) {
		got, st, why := r.Add(data, int64(tick)*int64(time.Second))
		switch st {
		case Complete:
			if len(got) > 65535+40 || len(got) < 1 {
				t.Fatalf("complete datagram of %d bytes", len(got))
			}
		case Dropped:
			if why == None || why >= NumReasons {
				t.Fatalf("drop without reason")
			}
		}
		if r.InProgress() > 4 {
			t.Fatal("slot limit exceeded")
		}
	})
}
