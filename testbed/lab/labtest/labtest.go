// Package labtest ties testbed/lab to a testing.TB: the lab is removed in
// t.Cleanup (which also runs after a panic), its processes' logs and every
// host's addresses and routes are printed when the test failed, and the test
// fails if anything of the run is left behind.
package labtest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/lab"
)

// New returns an empty lab owned by t. It skips t without privilege.
func New(t testing.TB, commands ...string) *lab.Lab {
	t.Helper()
	privileged.Require(t, append([]string{"ip", "ethtool"}, commands...)...)
	if why := lab.Missing(); why != "" {
		t.Skipf("lab test skipped: %s", why)
	}
	l, err := lab.New(lab.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	own(t, l)
	return l
}

// Line builds the standard line owned by t. It skips t without privilege.
func Line(t testing.TB, lo lab.LineOptions, commands ...string) *lab.Line {
	t.Helper()
	if lo.NAT {
		commands = append(commands, "nft", "conntrack")
	}
	l := New(t, commands...)
	if lo.NAT {
		if why := lab.MissingNAT(); why != "" {
			t.Skipf("lab test skipped: %s", why)
		}
	}
	ln, err := lab.BuildLine(l, lo)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func own(t testing.TB, l *lab.Lab) {
	t.Cleanup(func() {
		if t.Failed() {
			l.MarkFailed()
			t.Log(l.Report())
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab %s: cleanup: %v", l.RunID, err)
		}
		left, err := l.Leftovers()
		if err != nil {
			t.Errorf("lab %s: listing leftovers: %v", l.RunID, err)
		}
		if len(left) > 0 {
			t.Errorf("lab %s: left behind after cleanup: %v", l.RunID, left)
		}
	})
}

// TCPTransfer sends n random bytes from client to server over TCP and
// checks they arrive intact, within a bounded time.
func TCPTransfer(t *testing.T, client, server *lab.Host, dst netip.Addr, n int) {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 5001).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		got <- sum
	}()
	data := make([]byte, n)
	rand.Read(data)
	want := sha256.Sum256(data)
	var conn net.Conn
	if err := client.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(dst, 5001).String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("tcp dial %s: %v", dst, err)
	}
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.Copy(conn, bytes.NewReader(data)); err != nil {
		t.Fatalf("tcp send: %v", err)
	}
	conn.Close()
	select {
	case sum, ok := <-got:
		if !ok || sum != want {
			t.Errorf("tcp transfer of %d bytes to %s arrived corrupted or not at all", n, dst)
		}
	case <-time.After(25 * time.Second):
		t.Errorf("tcp transfer to %s timed out", dst)
	}
}
