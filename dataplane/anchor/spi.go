package anchor

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
)

// SPICodec puts a logical SPU in the top log2(L) bits of an SPI, so that an
// inbound ESP packet names its anchor with no lookup: the XDP program
// anchors ESP and UDP-encapsulated ESP by their SPI (Function.LogicalSPI,
// which for a power-of-two L is Logical), and spud installs every inbound
// SA on the logical SPU its SPI encodes, a manually keyed one with an
// arbitrary SPI included.
type SPICodec struct {
	bits uint // log2(L)
}

// minSPI is the smallest SPI we hand out: RFC 4303 reserves 1..255, and 0
// means "no SA".
const minSPI = 256

// spiAttempts bounds Allocate: with any sane table the first draw succeeds.
const spiAttempts = 64

// NewSPICodec returns the codec for l logical SPUs, a power of two
// between 1 and MaxLogicalSPUs.
func NewSPICodec(l int) (SPICodec, error) {
	if l < 1 || l > MaxLogicalSPUs || l&(l-1) != 0 {
		return SPICodec{}, fmt.Errorf("anchor: SPI encoding needs a power of two logical SPUs in 1..%d, have %d", MaxLogicalSPUs, l)
	}
	return SPICodec{bits: uint(bits.TrailingZeros(uint(l)))}, nil
}

// Encode returns the SPI with logical in its top bits and the low bits of
// low below. It fails if logical is out of range or the SPI would be
// reserved (below 256).
func (c SPICodec) Encode(logical uint16, low uint32) (uint32, error) {
	if uint(logical) >= 1<<c.bits {
		return 0, fmt.Errorf("anchor: logical SPU %d out of range for %d logical SPUs", logical, 1<<c.bits)
	}
	var spi uint32
	if c.bits == 0 {
		spi = low
	} else {
		spi = uint32(logical)<<(32-c.bits) | low&(1<<(32-c.bits)-1)
	}
	if spi < minSPI {
		return 0, fmt.Errorf("anchor: spi 0x%08x is reserved (below 256)", spi)
	}
	return spi, nil
}

// Logical returns the logical SPU an SPI encodes.
func (c SPICodec) Logical(spi uint32) uint16 {
	if c.bits == 0 {
		return 0
	}
	return uint16(spi >> (32 - c.bits))
}

// Allocate draws a random SPI for logical from r (crypto/rand if nil) that
// taken (if not nil) reports free. It gives up after a bounded number of
// draws, which only a nearly full SPI space can cause.
func (c SPICodec) Allocate(logical uint16, r io.Reader, taken func(spi uint32) bool) (uint32, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [4]byte
	for range spiAttempts {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, fmt.Errorf("anchor: read random SPI: %w", err)
		}
		spi, err := c.Encode(logical, binary.BigEndian.Uint32(b[:]))
		if err != nil {
			if logical < 1<<c.bits {
				continue // a reserved value: draw again
			}
			return 0, err
		}
		if taken == nil || !taken(spi) {
			return spi, nil
		}
	}
	return 0, fmt.Errorf("anchor: no free SPI for logical SPU %d after %d draws", logical, spiAttempts)
}

// LogicalSPI returns the logical SPU an inbound ESP packet with SPI spi is
// anchored on: (spi * L) >> 32, the SPI's top bits scaled to L, as
// anchor_spi_logical in bpf/include/anchor.h computes it. For the
// power-of-two L that spud requires it is exactly SPICodec.Logical, so an
// SPI spud allocated for a logical SPU comes back to it; for any other L
// it is still in range. It does not allocate.
func (f *Function) LogicalSPI(spi uint32) uint16 {
	return uint16(uint64(spi) * f.l >> 32)
}
