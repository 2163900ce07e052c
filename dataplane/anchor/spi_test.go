package anchor

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func TestSPICodecRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, l := range []int{1, 2, 16, 256, MaxLogicalSPUs} {
		c, err := NewSPICodec(l)
		if err != nil {
			t.Fatal(err)
		}
		for range 1000 {
			lg := uint16(r.IntN(l))
			spi, err := c.Allocate(lg, r2reader{r}, nil)
			if err != nil {
				t.Fatalf("L=%d: Allocate(%d): %v", l, lg, err)
			}
			if spi < 256 {
				t.Fatalf("L=%d: reserved SPI 0x%08x", l, spi)
			}
			if got := c.Logical(spi); got != lg {
				t.Fatalf("L=%d: SPI 0x%08x decodes to %d, want %d", l, spi, got, lg)
			}
		}
	}
}

func TestSPICodecLayout(t *testing.T) {
	c, _ := NewSPICodec(256)
	spi, err := c.Encode(0xab, 0x12345678)
	if err != nil || spi != 0xab345678 {
		t.Errorf("Encode(0xab, 0x12345678) = 0x%08x, %v; want 0xab345678", spi, err)
	}
	if _, err := c.Encode(256, 1); err == nil {
		t.Error("Encode accepted logical 256 with L=256")
	}
	if _, err := c.Encode(0, 0xff); err == nil {
		t.Error("Encode accepted a reserved SPI")
	}
	for _, l := range []int{0, 3, 100, 2 * MaxLogicalSPUs} {
		if _, err := NewSPICodec(l); err == nil {
			t.Errorf("NewSPICodec(%d) accepted", l)
		}
	}
}

func TestSPIAllocateTakenAndReserved(t *testing.T) {
	c, _ := NewSPICodec(256)
	// Draws: a reserved value for logical 0 (0x000000ff), a taken one, then a free one.
	src := bytes.NewReader([]byte{
		0x00, 0x00, 0x00, 0xff,
		0x00, 0x00, 0x10, 0x00,
		0x00, 0x00, 0x20, 0x00,
	})
	taken := func(spi uint32) bool { return spi == 0x00001000 }
	spi, err := c.Allocate(0, src, taken)
	if err != nil || spi != 0x00002000 {
		t.Errorf("Allocate = 0x%08x, %v; want 0x00002000", spi, err)
	}
	if _, err := c.Allocate(0, bytes.NewReader(nil), nil); err == nil {
		t.Error("Allocate with an empty random source succeeded")
	}
	all := func(uint32) bool { return true }
	if _, err := c.Allocate(1, r2reader{rand.New(rand.NewPCG(1, 1))}, all); err == nil {
		t.Error("Allocate with every SPI taken succeeded")
	}
}
