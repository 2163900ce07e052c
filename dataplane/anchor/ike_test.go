package anchor

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func testFunction(t *testing.T, l int) (Function, SPICodec) {
	t.Helper()
	var hk HashKey
	for i := range hk {
		hk[i] = byte(i * 7)
	}
	f, err := NewFunction(hk, l)
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.Codec()
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

// LogicalFirst is SipHash-2-4 of the 40 bytes anchor key ‖ SPI, which the
// general SipHash24 computes from its definition.
func TestLogicalFirstIsSipHashOf40Bytes(t *testing.T) {
	f, _ := testFunction(t, 256)
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		var a, b [16]byte
		binary.LittleEndian.PutUint64(a[:], r.Uint64())
		binary.LittleEndian.PutUint64(b[8:], r.Uint64())
		la, lb := netip.AddrFrom16(a), netip.AddrFrom16(b)
		spi := r.Uint64()
		k := NewKey(la, lb)
		msg := binary.BigEndian.AppendUint64(bytes.Clone(k[:]), spi)
		hk := f.HashKey()
		if got, want := f.LogicalFirst(la, lb, spi), uint16(SipHash24(&hk, msg)%256); got != want {
			t.Fatalf("LogicalFirst(%s, %s, %x) = %d, want %d", la, lb, spi, got, want)
		}
		if f.LogicalFirst(lb, la, spi) != f.LogicalFirst(la, lb, spi) {
			t.Fatalf("LogicalFirst depends on the order of %s and %s", la, lb)
		}
	}
}

// Many IKE SAs between the same two addresses spread over every logical
// SPU: the point of anchoring per IKE SA.
func TestLogicalFirstSpreadsOnePeer(t *testing.T) {
	f, _ := testFunction(t, 16)
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.1.1")
	r := rand.New(rand.NewPCG(3, 4))
	var n [16]int
	for range 16000 {
		n[f.LogicalFirst(a, b, r.Uint64())]++
	}
	for lg, c := range n {
		if c < 800 || c > 1200 {
			t.Errorf("logical SPU %d got %d of 16000 IKE SAs, want about 1000", lg, c)
		}
	}
}

func TestIKESPICodec(t *testing.T) {
	for _, l := range []int{1, 2, 256, 4096} {
		_, c := testFunction(t, l)
		r := rand.New(rand.NewPCG(uint64(l), 5))
		for range 2000 {
			lg := uint16(r.IntN(l))
			spi, err := c.AllocateIKE(lg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.LogicalIKE(spi); got != lg {
				t.Fatalf("L=%d: spi %016x encodes %d, want %d", l, spi, got, lg)
			}
			if spi>>32 == 0 {
				t.Fatalf("L=%d: spi %016x has its top 32 bits zero", l, spi)
			}
			// The ESP codec reads the same logical SPU from the top 32 bits.
			if got := c.Logical(uint32(spi >> 32)); got != lg {
				t.Fatalf("L=%d: top half of %016x gives %d, want %d", l, spi, got, lg)
			}
		}
		if _, err := c.EncodeIKE(uint16(l), 1<<40); err == nil {
			t.Errorf("L=%d: logical SPU %d accepted", l, l)
		}
	}
	_, c := testFunction(t, 256)
	if _, err := c.EncodeIKE(0, 0xffffffff); err == nil {
		t.Error("an IKE SPI with its top 32 bits zero was accepted")
	}
}

func ikeHeader(spiI, spiR uint64, flags byte) []byte {
	h := make([]byte, ikeHeaderLen)
	binary.BigEndian.PutUint64(h[0:], spiI)
	binary.BigEndian.PutUint64(h[8:], spiR)
	h[17] = 0x20 // version 2.0
	h[18] = 34   // IKE_SA_INIT
	h[19] = flags
	binary.BigEndian.PutUint32(h[24:], ikeHeaderLen)
	return h
}

func TestIKELogicalRules(t *testing.T) {
	f, c := testFunction(t, 256)
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.1.1")
	ours, err := c.EncodeIKE(77, 0x1234_5678_9abc_def0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := uint64(0x0102_0304_0506_0708)
	byAddr := f.Logical(local, remote)
	marker := []byte{0, 0, 0, 0}
	for _, tc := range []struct {
		name    string
		payload []byte
		natt    bool
		want    uint16
		by      int
	}{
		{"IKE_SA_INIT request", ikeHeader(theirs, 0, 0x08), false, f.LogicalFirst(local, remote, theirs), ByFirstContact},
		{"IKE_SA_INIT request on NAT-T", append(marker, ikeHeader(theirs, 0, 0x08)...), true, f.LogicalFirst(local, remote, theirs), ByFirstContact},
		{"from the initiator", ikeHeader(theirs, ours, 0x08), false, 77, ByResponderSPI},
		{"from the initiator on NAT-T", append(marker, ikeHeader(theirs, ours, 0x08)...), true, 77, ByResponderSPI},
		{"from the responder", ikeHeader(ours, theirs, 0x20), false, 77, ByInitiatorSPI},
		{"responder's cookie request", ikeHeader(ours, 0, 0x20), false, 77, ByInitiatorSPI},
		{"zero SPIs", ikeHeader(0, 0, 0x08), false, byAddr, ByAddresses},
		{"short", ikeHeader(theirs, ours, 0x08)[:27], false, byAddr, ByAddresses},
		{"ESP in UDP", ikeHeader(theirs, ours, 0x08), true, byAddr, ByAddresses},
		{"NAT keepalive", []byte{0xff}, true, byAddr, ByAddresses},
		{"marker only", marker, true, byAddr, ByAddresses},
	} {
		got, by := f.IKELogical(c, local, remote, tc.payload, tc.natt)
		if got != tc.want || by != tc.by {
			t.Errorf("%s: logical %d by %d, want %d by %d", tc.name, got, by, tc.want, tc.by)
		}
		if swapped, _ := f.IKELogical(c, remote, local, tc.payload, tc.natt); swapped != got {
			t.Errorf("%s: depends on the order of the addresses", tc.name)
		}
	}
}

func TestIKELogicalAllocs(t *testing.T) {
	f, c := testFunction(t, 256)
	local, remote := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	p := ikeHeader(0x0102_0304_0506_0708, 0, 0x08)
	if n := testing.AllocsPerRun(100, func() { f.IKELogical(c, local, remote, p, false) }); n != 0 {
		t.Errorf("IKELogical allocates %v times", n)
	}
}
