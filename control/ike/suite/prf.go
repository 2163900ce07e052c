package suite

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"sync"
)

type hmacSpec struct {
	hash   func() hash.Hash
	block  int // block size of the hash (HMAC's B, RFC 2104)
	size   int // output (and preferred key) length of the PRF
	keyLen int // integrity key length
	icvLen int // truncated integrity output

	// macs holds *macState of this hash between uses: crypto/hmac.New
	// makes two hash states and two pad buffers for every MAC, and an
	// IKE setup computes some twenty (SKEYSEED, prf+ blocks, AUTH),
	// which was a tenth of the bytes a setup allocated and so a tenth of
	// the garbage collector's work per setup.
	macs *sync.Pool
}

// The specifications are shared: one pool of hash states per hash.
var (
	sha1Pool   = newMACPool(sha1.New, sha1.BlockSize)
	sha256Pool = newMACPool(sha256.New, sha256.BlockSize)
	sha384Pool = newMACPool(sha512.New384, sha512.BlockSize)
	sha512Pool = newMACPool(sha512.New, sha512.BlockSize)

	prfSHA1   = &hmacSpec{hash: sha1.New, block: sha1.BlockSize, size: sha1.Size, macs: sha1Pool}
	prfSHA256 = &hmacSpec{hash: sha256.New, block: sha256.BlockSize, size: sha256.Size, macs: sha256Pool}
	prfSHA384 = &hmacSpec{hash: sha512.New384, block: sha512.BlockSize, size: sha512.Size384, macs: sha384Pool}
	prfSHA512 = &hmacSpec{hash: sha512.New, block: sha512.BlockSize, size: sha512.Size, macs: sha512Pool}

	integSHA1   = &hmacSpec{hash: sha1.New, block: sha1.BlockSize, keyLen: 20, icvLen: 12, macs: sha1Pool}
	integSHA256 = &hmacSpec{hash: sha256.New, block: sha256.BlockSize, keyLen: 32, icvLen: 16, macs: sha256Pool}
	integSHA384 = &hmacSpec{hash: sha512.New384, block: sha512.BlockSize, keyLen: 48, icvLen: 24, macs: sha384Pool}
	integSHA512 = &hmacSpec{hash: sha512.New, block: sha512.BlockSize, keyLen: 64, icvLen: 32, macs: sha512Pool}
)

// prfSpec returns the implementation of a PRF, nil when not implemented.
func prfSpec(p PRFID) *hmacSpec {
	switch p {
	case PRFHMACSHA1:
		return prfSHA1
	case PRFHMACSHA256:
		return prfSHA256
	case PRFHMACSHA384:
		return prfSHA384
	case PRFHMACSHA512:
		return prfSHA512
	}
	return nil
}

// integSpec returns the implementation of an integrity algorithm (RFC 2404,
// RFC 4868), nil when not implemented. The key length equals the hash
// output length.
func integSpec(i IntegID) *hmacSpec {
	switch i {
	case IntegHMACSHA196:
		return integSHA1
	case IntegHMACSHA256128:
		return integSHA256
	case IntegHMACSHA384192:
		return integSHA384
	case IntegHMACSHA512256:
		return integSHA512
	}
	return nil
}

// maxBlock is the largest hash block size (SHA-384, SHA-512).
const maxBlock = 128

// macState is HMAC keyed once (RFC 2104): ipad is K XOR ipad, so that
// each MAC under the key (a prf+ block) only hashes.
type macState struct {
	h     hash.Hash
	block int
	ipad  [maxBlock]byte
	// Scratch, here rather than on the stack: what goes through
	// hash.Hash's methods escapes.
	opad, inner, t [maxBlock]byte
	ctr            [1]byte
	pool           *sync.Pool
}

func newMACPool(h func() hash.Hash, block int) *sync.Pool {
	p := &sync.Pool{}
	p.New = func() any { return &macState{h: h(), block: block, pool: p} }
	return p
}

// key takes a macState from the pool keyed with key; release returns it.
func (s *hmacSpec) key(key []byte) *macState {
	m := s.macs.Get().(*macState)
	if len(key) > m.block {
		// RFC 2104: a key longer than the block is hashed first.
		m.h.Reset()
		m.h.Write(key)
		m.ipad = [maxBlock]byte{}
		copy(m.ipad[:], m.h.Sum(m.inner[:0]))
		clear(m.inner[:])
	} else {
		m.ipad = [maxBlock]byte{}
		copy(m.ipad[:], key)
	}
	for i := range m.block {
		m.ipad[i] ^= 0x36
	}
	return m
}

// sum appends HMAC(key, data[0] | data[1] | ...) to dst.
func (m *macState) sum(dst []byte, data ...[]byte) []byte {
	h := m.h
	h.Reset()
	h.Write(m.ipad[:m.block])
	for _, d := range data {
		h.Write(d)
	}
	return m.outer(dst)
}

// outer finishes the MAC whose inner hash has been fed, appending it to
// dst.
func (m *macState) outer(dst []byte) []byte {
	h := m.h
	in := h.Sum(m.inner[:0])
	for i := range m.block {
		m.opad[i] = m.ipad[i] ^ (0x36 ^ 0x5c)
	}
	h.Reset()
	h.Write(m.opad[:m.block])
	h.Write(in)
	return h.Sum(dst)
}

// sumSeed appends HMAC(key, prev | seed[0] | seed[1] | ... | ctr) to dst.
func (m *macState) sumSeed(dst, prev []byte, seed [][]byte, ctr []byte) []byte {
	h := m.h
	h.Reset()
	h.Write(m.ipad[:m.block])
	h.Write(prev)
	for _, d := range seed {
		h.Write(d)
	}
	h.Write(ctr)
	return m.outer(dst)
}

// release forgets the key and returns m to its pool. The hash's block
// buffer may hold the end of the last input: a full-block write of zeros
// through an unaligned offset overwrites it.
func (m *macState) release() {
	m.ipad, m.opad, m.inner, m.t = [maxBlock]byte{}, [maxBlock]byte{}, [maxBlock]byte{}, [maxBlock]byte{}
	m.h.Reset()
	m.h.Write(m.ipad[:m.block-1])
	m.h.Reset()
	m.pool.Put(m)
}

// mac appends HMAC(key, data[0] | data[1] | ...) to dst.
func (s *hmacSpec) mac(dst, key []byte, data ...[]byte) []byte {
	m := s.key(key)
	dst = m.sum(dst, data...)
	m.release()
	return dst
}

// macTrunc appends the first n bytes of HMAC(key, data[0] | ...) to dst
// (a truncated ICV), computing the full MAC in the pooled state's scratch.
func (s *hmacSpec) macTrunc(dst []byte, n int, key []byte, data ...[]byte) []byte {
	m := s.key(key)
	dst = append(dst, m.sum(m.t[:0], data...)[:n]...)
	m.release()
	return dst
}

// Supported reports whether this package implements the PRF.
func (p PRFID) Supported() bool { return prfSpec(p) != nil }

// Size is the output length of the PRF in bytes, which is also the length
// of SK_d, SK_pi and SK_pr (RFC 7296 section 2.14); 0 if not implemented.
func (p PRFID) Size() int {
	if s := prfSpec(p); s != nil {
		return s.size
	}
	return 0
}

// Compute returns prf(key, data[0] | data[1] | ...).
func (p PRFID) Compute(key []byte, data ...[]byte) ([]byte, error) {
	s := prfSpec(p)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", p)
	}
	return s.mac(make([]byte, 0, s.size), key, data...), nil
}

// PRFPlus returns the first n bytes of prf+(key, seed) (RFC 7296 section
// 2.13):
//
//	prf+ (K,S) = T1 | T2 | T3 | T4 | ...
//	T1 = prf (K, S | 0x01)
//	T2 = prf (K, T1 | S | 0x02)
//
// The counter is one octet, so at most 255 blocks can be produced.
func PRFPlus(p PRFID, key, seed []byte, n int) ([]byte, error) {
	return prfPlus(p, key, n, seed)
}

// prfPlus is PRFPlus of the seed seed[0] | seed[1] | ..., which the key
// derivations give in parts rather than concatenated.
func prfPlus(p PRFID, key []byte, n int, seed ...[]byte) ([]byte, error) {
	s := prfSpec(p)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", p)
	}
	if n < 0 || n > 255*s.size {
		return nil, fmt.Errorf("suite: prf+ with %s cannot produce %d bytes (at most %d)", p, n, 255*s.size)
	}
	// Exactly n, whole blocks while they fit: the IKE SA and Child SA keys
	// slice the output and keep it for their lifetime. Each Ti is
	// computed straight into the output, the last one through t.
	out := make([]byte, 0, n)
	m := s.key(key)
	var prev []byte
	for i := 1; len(out) < n; i++ {
		m.ctr[0] = byte(i)
		if n-len(out) >= s.size {
			start := len(out)
			out = m.sumSeed(out, prev, seed, m.ctr[:])
			prev = out[start:]
			continue
		}
		last := m.sumSeed(m.t[:0], prev, seed, m.ctr[:])
		out = append(out, last[:n-len(out)]...)
	}
	m.release()
	return out, nil
}
