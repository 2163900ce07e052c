// Package anchor is spugate's anchor function in Go: which SPU owns a
// tunnel. It is the same function as bpf/include/anchor.h, which the XDP
// steering program and the SO_REUSEPORT selector run in the kernel; a
// privileged test in dataplane/steer runs both over thousands of address
// pairs and compares.
//
//	key      = the tunnel's two endpoint addresses as 16-byte IPv6 (IPv4 as
//	           ::ffff:a.b.c.d), the bytewise smaller first, so that both
//	           directions and both gateways build the same key
//	logical  = SipHash-2-4(hash key, key) mod L
//	physical = Map[logical]
//
// The hash key is random per deployment, so a peer cannot choose addresses
// that pile tunnels onto one SPU. L is fixed for a deployment (default 256);
// the Map from logical to physical SPUs is what changes when SPUs come or go
// (see Map.Rebuild), so that only the tunnels of moved logical SPUs migrate.
//
// The package also encodes the logical SPU in the top bits of the SPIs spud
// allocates (SPICodec), so that an inbound SA names its anchor.
//
// Everything here is pure Go with no allocation on the per-packet path
// (Function.Logical, SipHash24).
package anchor

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
)

// DefaultLogicalSPUs is L, the number of logical SPUs, unless configured.
const DefaultLogicalSPUs = 256

// MaxLogicalSPUs is the largest L the BPF programs' spu_map holds
// (SPUGATE_MAX_LOGICAL in bpf/include/spugate.h).
const MaxLogicalSPUs = 4096

// HashKey is the 128-bit SipHash key of a deployment. It is a secret: it
// decides which tunnels share an SPU.
type HashKey [16]byte

// NewHashKey draws a random hash key from r, or from crypto/rand if r is nil.
func NewHashKey(r io.Reader) (HashKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var k HashKey
	if _, err := io.ReadFull(r, k[:]); err != nil {
		return HashKey{}, fmt.Errorf("anchor: read hash key: %w", err)
	}
	return k, nil
}

// Words returns the key as SipHash's two little-endian words, the form the
// BPF config map holds.
func (k *HashKey) Words() (k0, k1 uint64) {
	return binary.LittleEndian.Uint64(k[0:8]), binary.LittleEndian.Uint64(k[8:16])
}

// String hides the key, so that it never reaches a log by accident.
func (k HashKey) String() string { return "anchor.HashKey(redacted)" }

// GoString hides the key from %#v too.
func (k HashKey) GoString() string { return k.String() }

// Key is a tunnel's canonical anchor key: its two endpoint addresses as
// 16-byte IPv6, the bytewise smaller first.
type Key [32]byte

// NewKey returns the anchor key of the endpoints a and b, in either order.
// IPv4 addresses (and v4-mapped IPv6, which is the same thing here) are
// taken as ::ffff:a.b.c.d; a zone is ignored; the zero Addr counts as ::.
func NewKey(a, b netip.Addr) Key {
	x, y := a.As16(), b.As16()
	var k Key
	if lessOrEqual(&x, &y) {
		copy(k[:16], x[:])
		copy(k[16:], y[:])
	} else {
		copy(k[:16], y[:])
		copy(k[16:], x[:])
	}
	return k
}

func lessOrEqual(x, y *[16]byte) bool {
	for i := range x {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return true
}

// Hash returns SipHash-2-4 of the key under hk.
func (k *Key) Hash(hk *HashKey) uint64 {
	k0, k1 := hk.Words()
	return sipHash24Words(k0, k1,
		binary.LittleEndian.Uint64(k[0:8]), binary.LittleEndian.Uint64(k[8:16]),
		binary.LittleEndian.Uint64(k[16:24]), binary.LittleEndian.Uint64(k[24:32]))
}

// Function is the anchor function of a deployment: its hash key and L.
type Function struct {
	key HashKey
	l   uint64
}

// NewFunction returns the anchor function with hash key hk and l logical
// SPUs, 1 <= l <= MaxLogicalSPUs.
func NewFunction(hk HashKey, l int) (Function, error) {
	if l < 1 || l > MaxLogicalSPUs {
		return Function{}, fmt.Errorf("anchor: %d logical SPUs out of range 1..%d", l, MaxLogicalSPUs)
	}
	return Function{key: hk, l: uint64(l)}, nil
}

// HashKey returns the function's hash key.
func (f *Function) HashKey() HashKey { return f.key }

// L returns the number of logical SPUs.
func (f *Function) L() int { return int(f.l) }

// Logical returns the logical SPU of the tunnel between local and remote;
// the order of the two does not matter. It does not allocate.
func (f *Function) Logical(local, remote netip.Addr) uint16 {
	k := NewKey(local, remote)
	return f.LogicalOf(&k)
}

// LogicalOf returns the logical SPU of an anchor key.
func (f *Function) LogicalOf(k *Key) uint16 {
	if f.l == 0 {
		return 0
	}
	return uint16(k.Hash(&f.key) % f.l)
}
