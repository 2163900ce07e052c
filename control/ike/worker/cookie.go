package worker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
	"net/netip"
	"time"
)

// cookieLifetime is how long a secret makes cookies; the previous one is
// still accepted, so a cookie lives between one and two lifetimes.
const cookieLifetime = 2 * time.Minute

// cookieSecrets make and check stateless COOKIEs (RFC 7296 2.6):
//
//	Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
//
// with HMAC-SHA-256 keyed by the secret as the hash.
type cookieSecrets struct {
	gen     byte
	cur     [32]byte
	hasPrev bool
	until   time.Time

	// The HMACs keyed with the current and the previous secret, made
	// at each rotation rather than for each cookie (five allocations
	// each, under a flood of IKE_SA_INITs), and scratch for what they
	// hash (what goes through hash.Hash escapes). Only the worker's
	// goroutine uses them.
	curMAC, prevMAC hash.Hash
	in              [16 + 8]byte
	sum             [sha256.Size]byte
}

func (c *cookieSecrets) rotate(now time.Time, r io.Reader) {
	if !c.until.IsZero() && now.Before(c.until) {
		return
	}
	if !c.until.IsZero() {
		c.prevMAC, c.hasPrev = c.curMAC, true
	}
	io.ReadFull(r, c.cur[:])
	c.curMAC = hmac.New(sha256.New, c.cur[:])
	c.gen++
	c.until = now.Add(cookieLifetime)
}

// hash returns Hash(Ni | IPi | SPIi | <secret>) with the HMAC keyed by
// the secret, in c.sum (valid until the next call).
func (c *cookieSecrets) hash(h hash.Hash, ni []byte, ip netip.Addr, spii uint64) []byte {
	h.Reset()
	h.Write(ni)
	a := ip.As16()
	copy(c.in[:16], a[:])
	binary.BigEndian.PutUint64(c.in[16:], spii)
	h.Write(c.in[:])
	return h.Sum(c.sum[:0])
}

func (c *cookieSecrets) make(now time.Time, r io.Reader, ni []byte, ip netip.Addr, spii uint64) []byte {
	c.rotate(now, r)
	out := make([]byte, 0, 1+sha256.Size)
	return append(append(out, c.gen), c.hash(c.curMAC, ni, ip, spii)...)
}

func (c *cookieSecrets) verify(now time.Time, cookie, ni []byte, ip netip.Addr, spii uint64) bool {
	if len(cookie) != 1+sha256.Size || c.until.IsZero() {
		return false
	}
	var mac hash.Hash
	switch {
	case cookie[0] == c.gen:
		mac = c.curMAC
	case cookie[0] == c.gen-1 && c.hasPrev:
		mac = c.prevMAC
	default:
		return false
	}
	if now.After(c.until.Add(cookieLifetime)) {
		return false
	}
	return hmac.Equal(cookie[1:], c.hash(mac, ni, ip, spii))
}
