package xsk

// Frame is one UMEM chunk lent to the caller by a Port: a received packet,
// or a chunk from Alloc to build one in. The packet is Buf[Off:Off+Len].
//
// Buf is always the whole chunk (FrameSize bytes), so the caller can read
// the XDP metadata just before the packet (Meta) and grow the packet towards
// the front in place (Prepend) for encapsulation. The port finds the chunk
// again from Buf's address: never reslice or replace Buf, only change Off
// and Len, and hand a frame back only to the port it came from.
//
// A Frame is a small value (no pointer into the port's bookkeeping); copying
// it is fine, but each chunk must be handed back (Release or Transmit)
// exactly once.
type Frame struct {
	Buf []byte // the whole chunk
	Off int    // offset of the packet in Buf
	Len int    // length of the packet
}

// Packet returns the packet bytes, Buf[Off:Off+Len].
func (f *Frame) Packet() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// Headroom is the room before the packet: the metadata, if any, then what
// Prepend can take.
func (f *Frame) Headroom() int { return f.Off }

// Tailroom is the room after the packet.
func (f *Frame) Tailroom() int { return len(f.Buf) - f.Off - f.Len }

// Meta returns the n bytes just before the packet, where the steering XDP
// program's bpf_xdp_adjust_meta area lands, or nil if the headroom is
// shorter than n. The kernel does not say how long the metadata is: the
// steering program and the reader agree on it.
func (f *Frame) Meta(n int) []byte {
	if n < 0 || n > f.Off || f.Off > len(f.Buf) {
		return nil
	}
	return f.Buf[f.Off-n : f.Off]
}

// Prepend grows the packet by n bytes at the front and returns the new
// bytes (to be written by the caller), or nil, leaving the frame as it was,
// if the headroom is shorter than n. It overwrites the metadata: read it
// first.
func (f *Frame) Prepend(n int) []byte {
	if n < 0 || n > f.Off || f.Off+f.Len > len(f.Buf) {
		return nil
	}
	f.Off -= n
	f.Len += n
	return f.Buf[f.Off : f.Off+n]
}

// Trim drops n bytes from the front of the packet (decapsulation); it
// reports false, leaving the frame as it was, if the packet is shorter.
func (f *Frame) Trim(n int) bool {
	if n < 0 || n > f.Len {
		return false
	}
	f.Off += n
	f.Len -= n
	return true
}

// SetPacket copies p into the frame at offset off and sets Off and Len; it
// reports false, leaving the frame as it was, if p does not fit.
func (f *Frame) SetPacket(off int, p []byte) bool {
	if off < 0 || off > len(f.Buf) || len(p) > len(f.Buf)-off {
		return false
	}
	copy(f.Buf[off:], p)
	f.Off, f.Len = off, len(p)
	return true
}
