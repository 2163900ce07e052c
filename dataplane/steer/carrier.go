package steer

import (
	"fmt"

	"github.com/spugate/spugate/bpf"
)

// Carrier is how the metadata of a redirected frame reaches userspace. One
// steering program exists per carrier (bpf/steer.c); Load picks the best
// one this kernel accepts, or the one asked for.
type Carrier uint8

const (
	// CarrierAuto asks Load for the best carrier the kernel allows, in the
	// order meta, shim, none. As a result of Load it is never returned.
	CarrierAuto Carrier = iota
	// CarrierMeta writes the metadata in the XDP metadata area just before
	// the frame (bpf_xdp_adjust_meta). The cheapest: nothing to move. A
	// driver that has no metadata room at run time gets a shim instead, per
	// frame (counted MetaToShim), so a reader must accept both.
	CarrierMeta
	// CarrierShim writes the metadata as a shim in front of the Ethernet
	// header (bpf_xdp_adjust_head), which the SPU trims before it parses
	// the frame: for kernels that refuse bpf_xdp_adjust_meta (hardened
	// builds do), at the cost of moving the frame's start twice.
	CarrierShim
	// CarrierNone redirects frames without metadata: the SPU classifies
	// each frame again (Program.Classify), which costs it a parse, a hash
	// and, for cleartext, two SPD map lookups through the bpf syscall.
	CarrierNone
)

// Carriers lists the carriers in Load's order of preference.
var Carriers = []Carrier{CarrierMeta, CarrierShim, CarrierNone}

var carrierNames = [...]string{"auto", "meta", "shim", "none"}

// String is the carrier's name, the one ParseCarrier reads and spud's
// -steer-carrier flag and status use ("shim"), or "carrier(N)" for a value
// that is none of them.
func (c Carrier) String() string {
	if int(c) < len(carrierNames) {
		return carrierNames[c]
	}
	return fmt.Sprintf("carrier(%d)", uint8(c))
}

// ParseCarrier reads a carrier's name: auto, meta, shim or none.
func ParseCarrier(s string) (Carrier, error) {
	for i, n := range carrierNames {
		if s == n {
			return Carrier(i), nil
		}
	}
	return 0, fmt.Errorf("steering carrier %q: want auto, meta, shim or none", s)
}

// programName is the kernel's name of the carrier's steering program.
func (c Carrier) programName() string {
	switch c {
	case CarrierMeta:
		return "spugate_meta"
	case CarrierShim:
		return "spugate_shim"
	case CarrierNone:
		return "spugate_none"
	}
	return ""
}

// isSteeringProgram tells spugate's steering programs, of any carrier and
// of spud versions before carriers ("spugate_steer"), from other XDP
// programs, so that Attach replaces only what a crashed spud left.
func isSteeringProgram(name string) bool {
	if name == "spugate_steer" {
		return true
	}
	for _, c := range Carriers {
		if name == c.programName() {
			return true
		}
	}
	return false
}

// ReadMeta finds the metadata of a frame that a steering program with
// carrier c redirected. buf is the frame's whole buffer (an AF_XDP UMEM
// chunk) and the frame is buf[off:off+n]. It returns the metadata and the
// length of the shim in front of the Ethernet header (0 or MetaSize), which
// the caller trims before it parses the frame. It allocates nothing.
//
// With CarrierMeta a frame carries a shim where its driver had no metadata
// room, so the shim is looked for first. That cannot mistake a frame
// without one for a shim: where the shim's L3 offset lies (bytes 12 and
// 13), a frame starts with its EtherType, and none that the program steers
// (IPv4, IPv6, 802.1Q) reads as 14 or 18. The metadata area's magic is
// cleared once read, because the kernel leaves the bytes before a frame as
// they were when it writes none: a recycled chunk must not show one frame's
// metadata to the next.
//
// CarrierNone (and CarrierAuto) frames carry nothing: ErrNoMeta.
func (c Carrier) ReadMeta(buf []byte, off, n int) (Meta, int, error) {
	if c != CarrierMeta && c != CarrierShim {
		return Meta{}, 0, ErrNoMeta
	}
	if off < 0 || n < 0 || off+n > len(buf) {
		return Meta{}, 0, ErrMetaShort
	}
	var err error = ErrMetaShort
	if n >= MetaSize+14 {
		var m Meta
		if m, err = ParseMeta(buf[off : off+MetaSize]); err == nil {
			return m, MetaSize, nil
		}
	}
	if c == CarrierShim {
		return Meta{}, 0, err
	}
	if off < MetaSize {
		return Meta{}, 0, ErrMetaShort
	}
	m, err := ParseMeta(buf[off-MetaSize : off])
	if err != nil {
		return Meta{}, 0, err
	}
	buf[off-MetaSize] = 0
	return m, 0, nil
}

// Supported says whether this kernel lets the carrier's program load:
// nil, or one line naming what it refuses. It probes the kernel (once per
// process), which needs root.
func (c Carrier) Supported() error {
	f, what := carrierNeeds(c)
	if f >= bpf.NumFeatures {
		return nil
	}
	feats := bpf.Probe(f)
	if err := feats.Err(f); err != nil {
		return fmt.Errorf("carrier %s: %s refused by this kernel: %w", c, what, err)
	}
	return nil
}

// Best is the carrier Load chooses on this kernel when asked for none: the
// first of Carriers the kernel allows. It probes the kernel (root).
func Best() Carrier {
	for _, c := range Carriers {
		if c.Supported() == nil {
			return c
		}
	}
	return CarrierNone
}
