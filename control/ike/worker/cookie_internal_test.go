package worker

import (
	"bytes"
	"crypto/rand"
	"net/netip"
	"testing"
	"time"
)

// TestCookieSecretsRotate checks COOKIEs across secret rotations (the HMACs
// are keyed once per secret): one made with the current secret is accepted
// through the next lifetime, not after the one following; another address,
// SPI or nonce, or a changed byte, is refused.
func TestCookieSecretsRotate(t *testing.T) {
	var c cookieSecrets
	now := time.Unix(1_800_000_000, 0)
	ni, ip, spi := bytes.Repeat([]byte{7}, 32), netip.MustParseAddr("198.18.0.1"), uint64(0x1122334455667788)
	cookie := c.make(now, rand.Reader, ni, ip, spi)
	if len(cookie) != 33 || !c.verify(now, cookie, ni, ip, spi) {
		t.Fatalf("fresh cookie %x refused", cookie)
	}
	if c.verify(now, cookie, ni, netip.MustParseAddr("198.18.0.2"), spi) || c.verify(now, cookie, ni, ip, spi+1) ||
		c.verify(now, cookie, ni[1:], ip, spi) {
		t.Error("cookie accepted for another address, SPI or nonce")
	}
	forged := bytes.Clone(cookie)
	forged[5] ^= 1
	if c.verify(now, forged, ni, ip, spi) {
		t.Error("altered cookie accepted")
	}
	now = now.Add(cookieLifetime + time.Second)
	fresh := c.make(now, rand.Reader, ni, ip, spi) // rotates
	if bytes.Equal(fresh, cookie) || !c.verify(now, cookie, ni, ip, spi) || !c.verify(now, fresh, ni, ip, spi) {
		t.Error("after one rotation: the previous secret's cookie or the new one refused")
	}
	now = now.Add(cookieLifetime + time.Second)
	c.make(now, rand.Reader, ni, ip, spi)
	if c.verify(now, cookie, ni, ip, spi) {
		t.Error("cookie of two secrets ago accepted")
	}
	if n := testing.AllocsPerRun(100, func() { c.verify(now, fresh, ni, ip, spi) }); n != 0 {
		t.Errorf("verifying a cookie allocates %v times, want 0", n)
	}
}
