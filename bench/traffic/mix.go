package traffic

import (
	"fmt"
	"strconv"
	"strings"
)

// Mix is a sequence of frame sizes (Ethernet frames without the FCS) the
// generator cycles through: one size, or a blend such as IMIX.
type Mix struct {
	Name  string
	Sizes []int
}

// Fixed is a mix of one frame size, named after the size on the wire (with
// the 4-byte FCS, as RFC 2544 counts it): Fixed(64) sends 60-byte frames.
func Fixed(wire int) Mix {
	return Mix{Name: strconv.Itoa(wire), Sizes: []int{wire - 4}}
}

// IMIX is the simple IMIX, 7:4:1 of 64, 576 and 1400-byte frames (wire
// sizes). The classic large packet is 1500 bytes; 1400 is used instead so
// that every packet fits a tunnel's MTU and no gateway has to fragment.
// The twelve sizes are interleaved so that a short run sees the blend.
func IMIX() Mix {
	s, m, l := 60, 572, 1396
	return Mix{Name: "imix", Sizes: []int{s, m, s, s, m, s, l, s, m, s, s, m}}
}

// ParseMix reads a mix name: a wire size in bytes (64..1518) or "imix".
func ParseMix(s string) (Mix, error) {
	if strings.EqualFold(s, "imix") {
		return IMIX(), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < MinFrame+4 || n > MaxFrame+4 {
		return Mix{}, fmt.Errorf("traffic: packet size %q: want %d..%d or imix", s, MinFrame+4, MaxFrame+4)
	}
	return Fixed(n), nil
}

// Mean is the mean frame size of the mix, without the FCS.
func (m Mix) Mean() float64 {
	if len(m.Sizes) == 0 {
		return 0
	}
	t := 0
	for _, s := range m.Sizes {
		t += s
	}
	return float64(t) / float64(len(m.Sizes))
}

// Max is the largest frame of the mix.
func (m Mix) Max() int {
	x := 0
	for _, s := range m.Sizes {
		x = max(x, s)
	}
	return x
}

func (m Mix) validate() error {
	if len(m.Sizes) == 0 {
		return fmt.Errorf("traffic: mix %q has no sizes", m.Name)
	}
	for _, s := range m.Sizes {
		if s < MinFrame || s > MaxFrame {
			return fmt.Errorf("traffic: mix %q: frame size %d outside %d..%d", m.Name, s, MinFrame, MaxFrame)
		}
	}
	return nil
}
