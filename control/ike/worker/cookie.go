package worker

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
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
	prev    [32]byte
	hasPrev bool
	until   time.Time
}

func (c *cookieSecrets) rotate(now time.Time, r io.Reader) {
	if !c.until.IsZero() && now.Before(c.until) {
		return
	}
	if !c.until.IsZero() {
		c.prev, c.hasPrev = c.cur, true
	}
	io.ReadFull(r, c.cur[:])
	c.gen++
	c.until = now.Add(cookieLifetime)
}

func cookieHash(secret *[32]byte, ni []byte, ip netip.Addr, spii uint64) []byte {
	h := hmac.New(sha256.New, secret[:])
	h.Write(ni)
	a := ip.As16()
	h.Write(a[:])
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], spii)
	h.Write(s[:])
	return h.Sum(nil)
}

func (c *cookieSecrets) make(now time.Time, r io.Reader, ni []byte, ip netip.Addr, spii uint64) []byte {
	c.rotate(now, r)
	return append([]byte{c.gen}, cookieHash(&c.cur, ni, ip, spii)...)
}

func (c *cookieSecrets) verify(now time.Time, cookie, ni []byte, ip netip.Addr, spii uint64) bool {
	if len(cookie) != 1+sha256.Size || c.until.IsZero() {
		return false
	}
	var secret *[32]byte
	switch {
	case cookie[0] == c.gen:
		secret = &c.cur
	case cookie[0] == c.gen-1 && c.hasPrev:
		secret = &c.prev
	default:
		return false
	}
	if now.After(c.until.Add(cookieLifetime)) {
		return false
	}
	return hmac.Equal(cookie[1:], cookieHash(secret, ni, ip, spii))
}
