package steer

import (
	"encoding/binary"
	"net/netip"
)

// Frames for the BPF tests, built by hand so that every field can be made
// wrong on purpose.

var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0, 0, 0, 0x0b}
)

// ext is an IPv6 extension header: HBH (0), routing (43), destination
// options (60) of size bytes (a multiple of 8), or fragment (44).
type ext struct {
	typ     uint8
	size    int
	fragOff uint16 // fragment: offset in 8-byte units
	more    bool   // fragment: M flag
}

type frame struct {
	vlan     bool
	qinq     bool
	src, dst netip.Addr
	proto    uint8
	v4opts   int    // IPv4 option bytes, a multiple of 4
	v4frag   uint16 // IPv4 flags+offset field (host order)
	exts     []ext
	l4       []byte // everything after the IP header chain
	pad      int    // link padding after the IP packet
}

const protoTCP = 6

func (f frame) bytes() []byte {
	b := append([]byte{}, macB...)
	b = append(b, macA...)
	if f.qinq {
		b = append(b, 0x81, 0x00, 0x00, 0x05)
	}
	if f.vlan || f.qinq {
		b = append(b, 0x81, 0x00, 0x00, 0x07)
	}
	if f.src.Is4() {
		b = append(b, 0x08, 0x00)
		ihl := 20 + f.v4opts
		ip := make([]byte, ihl)
		ip[0] = 0x40 | byte(ihl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(f.l4)))
		binary.BigEndian.PutUint16(ip[6:], f.v4frag)
		ip[8] = 64
		ip[9] = f.proto
		s, d := f.src.As4(), f.dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		for i := 20; i < ihl; i++ {
			ip[i] = 1 // NOP options
		}
		b = append(b, ip...)
	} else {
		b = append(b, 0x86, 0xdd)
		var chain []byte
		next := f.proto
		for i := len(f.exts) - 1; i >= 0; i-- {
			e := f.exts[i]
			var h []byte
			if e.typ == 44 {
				h = make([]byte, 8)
				off := e.fragOff << 3
				if e.more {
					off |= 1
				}
				binary.BigEndian.PutUint16(h[2:], off)
				binary.BigEndian.PutUint32(h[4:], 0x1234)
			} else {
				h = make([]byte, e.size)
				h[1] = byte(e.size/8 - 1)
			}
			h[0] = next
			next = e.typ
			chain = append(h, chain...)
		}
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(chain)+len(f.l4)))
		ip[6] = next
		ip[7] = 64
		s, d := f.src.As16(), f.dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
		b = append(b, chain...)
	}
	b = append(b, f.l4...)
	return append(b, make([]byte, f.pad)...)
}

// l3 returns the IP header offset of the frame.
func (f frame) l3() int {
	switch {
	case f.qinq:
		return 22
	case f.vlan:
		return 18
	}
	return 14
}

// l4off returns the offset of f.l4 in the frame.
func (f frame) l4off() int {
	n := f.l3()
	if f.src.Is4() {
		return n + 20 + f.v4opts
	}
	n += 40
	for _, e := range f.exts {
		if e.typ == 44 {
			n += 8
		} else {
			n += e.size
		}
	}
	return n
}

func udp(sport, dport uint16, payload []byte) []byte {
	h := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], uint16(8+len(payload)))
	return append(h, payload...)
}

// esp returns an ESP header with SPI and sequence number and n bytes of
// "ciphertext".
func esp(spi, seq uint32, n int) []byte {
	b := make([]byte, 8+n)
	binary.BigEndian.PutUint32(b[0:], spi)
	binary.BigEndian.PutUint32(b[4:], seq)
	for i := range n {
		b[8+i] = byte(i)
	}
	return b
}

func repeat(c byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = c
	}
	return b
}
