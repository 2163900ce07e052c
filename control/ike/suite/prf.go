package suite

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
)

type hmacSpec struct {
	hash   func() hash.Hash
	size   int // output (and preferred key) length of the PRF
	keyLen int // integrity key length
	icvLen int // truncated integrity output
}

// prfSpec returns the implementation of a PRF, nil when not implemented.
func prfSpec(p PRFID) *hmacSpec {
	switch p {
	case PRFHMACSHA1:
		return &hmacSpec{hash: sha1.New, size: sha1.Size}
	case PRFHMACSHA256:
		return &hmacSpec{hash: sha256.New, size: sha256.Size}
	case PRFHMACSHA384:
		return &hmacSpec{hash: sha512.New384, size: sha512.Size384}
	case PRFHMACSHA512:
		return &hmacSpec{hash: sha512.New, size: sha512.Size}
	}
	return nil
}

// integSpec returns the implementation of an integrity algorithm (RFC 2404,
// RFC 4868), nil when not implemented. The key length equals the hash
// output length.
func integSpec(i IntegID) *hmacSpec {
	switch i {
	case IntegHMACSHA196:
		return &hmacSpec{hash: sha1.New, keyLen: 20, icvLen: 12}
	case IntegHMACSHA256128:
		return &hmacSpec{hash: sha256.New, keyLen: 32, icvLen: 16}
	case IntegHMACSHA384192:
		return &hmacSpec{hash: sha512.New384, keyLen: 48, icvLen: 24}
	case IntegHMACSHA512256:
		return &hmacSpec{hash: sha512.New, keyLen: 64, icvLen: 32}
	}
	return nil
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
	m := hmac.New(s.hash, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil), nil
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
	s := prfSpec(p)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", p)
	}
	if n < 0 || n > 255*s.size {
		return nil, fmt.Errorf("suite: prf+ with %s cannot produce %d bytes (at most %d)", p, n, 255*s.size)
	}
	// Exactly n: the IKE SA and Child SA keys slice the output and keep
	// it for their lifetime.
	out := make([]byte, 0, n)
	m := hmac.New(s.hash, key)
	var t []byte
	for i := 1; len(out) < n; i++ {
		m.Reset()
		m.Write(t)
		m.Write(seed)
		m.Write([]byte{byte(i)})
		t = m.Sum(t[:0])
		out = append(out, t[:min(len(t), n-len(out))]...)
	}
	return out[:n], nil
}
