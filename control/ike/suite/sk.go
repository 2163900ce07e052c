package suite

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"
)

// ErrICV is returned by SKCipher.Open when the integrity check fails. It
// says nothing more, by design.
var ErrICV = errors.New("suite: SK payload integrity check failed")

// SKCipher protects the Encrypted (SK) and Encrypted Fragment (SKF)
// payloads in one direction of an IKE SA: one instance seals what we send
// with SK_ei/SK_ai (initiator) or SK_er/SK_ar (responder), another opens
// what we receive. IKEKeys.Ciphers builds the pair.
//
// The body of an SK payload is IV | Encrypted(inner payloads | Padding |
// Pad Length) | ICV (RFC 7296 section 3.14):
//   - AEAD (AES-GCM-16, RFC 5282; ChaCha20-Poly1305, RFC 7634): the IV is
//     8 bytes, the nonce is salt | IV with the 4-byte salt from the end of
//     the key material, the associated data is the message from the IKE
//     header through the SK payload header; no padding is added (the
//     block size is 1). The IV is a counter from a random start, so it
//     never repeats under one key (even if a second SKCipher is
//     mistakenly built from the same key, the two sequences are 2^64
//     apart at random).
//   - AES-CBC with HMAC: a random 16-byte IV, padding to the block size,
//     and the truncated HMAC of the whole message from the IKE header
//     through the Pad Length (encrypt-then-MAC), compared in constant time.
//
// Seal and Open are safe for concurrent use.
type SKCipher struct {
	alg Algorithms

	// key is the AEAD's key without the salt, or with block (AES-CBC) the
	// HMAC's key: one field, so that an SKCipher, two per IKE SA, takes
	// 96 bytes, not 128. It is the caller's key material, not a copy (an
	// IKE SA's keys never change; a copy was two allocations an IKE SA).
	// The AEAD is made for each message rather than kept, since an IKE SA
	// sends a message a minute and an AES-GCM state is about 700 bytes, a
	// third of what an IKE SA costs at a million.
	key    []byte
	salt   [4]byte
	ivBase uint64        // random, so that two SKCiphers on one key do not collide
	seq    atomic.Uint64 // messages sealed

	// block is nil with an AEAD.
	block cipher.Block
	integ *hmacSpec
}

const aeadIVLen = 8

// NewSKCipher builds the SK protection for one direction from the
// negotiated IKE algorithms and that direction's keys (encKey includes the
// salt for an AEAD; integKey is nil for an AEAD). The cipher keeps using
// the keys' bytes: they must not change.
func NewSKCipher(a Algorithms, encKey, integKey []byte) (*SKCipher, error) {
	if want := a.EncrKeyLen(); want == 0 || len(encKey) != want {
		return nil, fmt.Errorf("suite: %s: encryption key of %d bytes, want %d", a.Encr, len(encKey), want)
	}
	c := &SKCipher{alg: a}
	switch a.Encr {
	case EncrAESGCM16, EncrChaCha20Poly1305:
		if len(integKey) != 0 {
			return nil, fmt.Errorf("suite: %s: integrity key with an AEAD", a.Encr)
		}
		k, salt := encKey[:len(encKey)-4], encKey[len(encKey)-4:]
		// The key size is checked here rather than by making the AEAD,
		// which Seal and Open make again for each message (two AES key
		// schedules and GCM tables per IKE SA saved).
		if a.Encr == EncrAESGCM16 && len(k) != 16 && len(k) != 24 && len(k) != 32 {
			return nil, fmt.Errorf("suite: %s: %w", a.Encr, aes.KeySizeError(len(k)))
		}
		c.key = k[:len(k):len(k)]
		copy(c.salt[:], salt)
		var r [8]byte
		rand.Read(r[:])
		c.ivBase = binary.BigEndian.Uint64(r[:])
	case EncrAESCBC:
		s := integSpec(a.Integ)
		if s == nil {
			return nil, fmt.Errorf("suite: integrity algorithm %s not supported", a.Integ)
		}
		if len(integKey) != s.keyLen {
			return nil, fmt.Errorf("suite: %s: integrity key of %d bytes, want %d", a.Integ, len(integKey), s.keyLen)
		}
		b, err := aes.NewCipher(encKey)
		if err != nil {
			return nil, fmt.Errorf("suite: %s: %w", a.Encr, err)
		}
		c.block, c.integ, c.key = b, s, integKey[:len(integKey):len(integKey)]
	default:
		return nil, fmt.Errorf("suite: encryption algorithm %s not supported", a.Encr)
	}
	return c, nil
}

// aeadOverhead is the ICV of both AEADs (AES-GCM-16, ChaCha20-Poly1305).
const aeadOverhead = 16

// newAEAD makes the AEAD of c's key.
func (c *SKCipher) newAEAD() (cipher.AEAD, error) {
	if c.alg.Encr == EncrAESGCM16 {
		b, err := aes.NewCipher(c.key)
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	return chacha20poly1305.New(c.key)
}

// Algorithms returns the suite c was built for.
func (c *SKCipher) Algorithms() Algorithms { return c.alg }

// SealedLen is the length of the SK payload body (IV, ciphertext with
// padding and pad length, ICV) that Seal produces for n bytes of inner
// payloads. The encoder writes it into the length fields before sealing,
// because they are part of the authenticated data.
func (c *SKCipher) SealedLen(n int) int {
	if c.block == nil {
		return aeadIVLen + n + 1 + aeadOverhead
	}
	bs := c.block.BlockSize()
	return bs + (n+1+bs-1)/bs*bs + c.integ.icvLen
}

// Seal appends IV | Encrypted(plaintext | Padding | Pad Length) | ICV to msg
// and returns the extended slice. msg must hold the message from the IKE
// header through the SK (or SKF) payload header, with the final lengths:
// it is the associated data (AEAD) or the start of the MACed data (CBC).
func (c *SKCipher) Seal(msg, plaintext []byte) ([]byte, error) {
	total := len(msg) + c.SealedLen(len(plaintext))
	out := msg
	if cap(out) < total {
		out = make([]byte, len(msg), total)
		copy(out, msg)
	}
	if c.block == nil {
		aead, err := c.newAEAD()
		if err != nil {
			return nil, err
		}
		seq := c.seq.Add(1)
		if seq == 0 {
			return nil, errors.New("suite: SK IV counter exhausted; rekey the IKE SA")
		}
		var nonce [12]byte
		copy(nonce[:4], c.salt[:])
		binary.BigEndian.PutUint64(nonce[4:], c.ivBase+seq)
		out = append(out, nonce[4:]...)
		body := out[len(out):total]
		copy(body, plaintext)
		body[len(plaintext)] = 0 // pad length
		out = aead.Seal(out, nonce[:], body[:len(plaintext)+1], msg)
		return out, nil
	}
	bs := c.block.BlockSize()
	padded := (len(plaintext) + 1 + bs - 1) / bs * bs
	start := len(out)
	out = out[:start+bs+padded]
	iv, buf := out[start:start+bs], out[start+bs:]
	rand.Read(iv) // crypto/rand.Read never fails (Go 1.24+)
	copy(buf, plaintext)
	clear(buf[len(plaintext) : padded-1])
	buf[padded-1] = byte(padded - len(plaintext) - 1)
	cipher.NewCBCEncrypter(c.block, iv).CryptBlocks(buf, buf)
	return c.integ.macTrunc(out, c.integ.icvLen, c.key, out), nil
}

// Open authenticates and decrypts the body of an SK or SKF payload
// (IV | ciphertext | ICV) received in a message whose bytes from the IKE
// header through the payload header are aad, and returns the inner payload
// bytes with the padding removed, in a new slice.
func (c *SKCipher) Open(aad, body []byte) ([]byte, error) {
	if c.block == nil {
		min := aeadIVLen + 1 + aeadOverhead
		if len(body) < min {
			return nil, fmt.Errorf("suite: SK payload body of %d bytes below minimum %d", len(body), min)
		}
		var nonce [12]byte
		copy(nonce[:4], c.salt[:])
		copy(nonce[4:], body[:aeadIVLen])
		aead, err := c.newAEAD()
		if err != nil {
			return nil, err
		}
		plain, err := aead.Open(nil, nonce[:], body[aeadIVLen:], aad)
		if err != nil {
			return nil, ErrICV
		}
		return unpad(plain)
	}
	bs := c.block.BlockSize()
	icv := c.integ.icvLen
	if len(body) < bs+bs+icv || (len(body)-bs-icv)%bs != 0 {
		return nil, fmt.Errorf("suite: SK payload body of %d bytes is not IV, whole blocks and a %d-byte ICV", len(body), icv)
	}
	var sum [maxBlock]byte
	if !hmac.Equal(c.integ.macTrunc(sum[:0], icv, c.key, aad, body[:len(body)-icv]), body[len(body)-icv:]) {
		return nil, ErrICV
	}
	iv, ct := body[:bs], body[bs:len(body)-icv]
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(c.block, iv).CryptBlocks(plain, ct)
	return unpad(plain)
}

func unpad(plain []byte) ([]byte, error) {
	if len(plain) == 0 {
		return nil, errors.New("suite: SK payload without pad length")
	}
	pad := int(plain[len(plain)-1])
	if pad+1 > len(plain) {
		return nil, fmt.Errorf("suite: SK pad length %d exceeds the %d decrypted bytes", pad, len(plain)-1)
	}
	return plain[:len(plain)-1-pad], nil
}
