package anchor

import (
	"encoding/binary"
	"math/bits"
)

// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF",
// 2012): two compression rounds per 8-byte word, four finalization rounds.
// The anchor key is always 32 bytes (sipHash24Words, the same steps as
// bpf/include/anchor.h); SipHash24 takes any length, for the paper's test
// vectors and for anyone who needs the general function.

const (
	sipInit0 = 0x736f6d6570736575 // "somepseu"
	sipInit1 = 0x646f72616e646f6d // "dorandom"
	sipInit2 = 0x6c7967656e657261 // "lygenera"
	sipInit3 = 0x7465646279746573 // "tedbytes"
)

type sipState struct{ v0, v1, v2, v3 uint64 }

func (s *sipState) round() {
	s.v0 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 13)
	s.v1 ^= s.v0
	s.v0 = bits.RotateLeft64(s.v0, 32)
	s.v2 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 16)
	s.v3 ^= s.v2
	s.v0 += s.v3
	s.v3 = bits.RotateLeft64(s.v3, 21)
	s.v3 ^= s.v0
	s.v2 += s.v1
	s.v1 = bits.RotateLeft64(s.v1, 17)
	s.v1 ^= s.v2
	s.v2 = bits.RotateLeft64(s.v2, 32)
}

func (s *sipState) compress(m uint64) {
	s.v3 ^= m
	s.round()
	s.round()
	s.v0 ^= m
}

func (s *sipState) finish() uint64 {
	s.v2 ^= 0xff
	s.round()
	s.round()
	s.round()
	s.round()
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

func newSipState(k0, k1 uint64) sipState {
	return sipState{k0 ^ sipInit0, k1 ^ sipInit1, k0 ^ sipInit2, k1 ^ sipInit3}
}

// SipHash24 returns SipHash-2-4 of msg under key. It does not allocate.
func SipHash24(key *HashKey, msg []byte) uint64 {
	k0, k1 := key.Words()
	s := newSipState(k0, k1)
	n := len(msg)
	for len(msg) >= 8 {
		s.compress(binary.LittleEndian.Uint64(msg))
		msg = msg[8:]
	}
	// The last word: the remaining bytes, and the length's low byte on top.
	b := uint64(n) << 56
	for i, c := range msg {
		b |= uint64(c) << (8 * i)
	}
	s.compress(b)
	return s.finish()
}

// sipHash24Words is SipHash24 of exactly four words (32 bytes).
func sipHash24Words(k0, k1, m0, m1, m2, m3 uint64) uint64 {
	s := newSipState(k0, k1)
	s.compress(m0)
	s.compress(m1)
	s.compress(m2)
	s.compress(m3)
	s.compress(32 << 56)
	return s.finish()
}
