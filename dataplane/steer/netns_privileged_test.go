package steer

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// testNS is a network namespace made for one test and removed when the
// test ends, whatever its outcome.
type testNS struct {
	name string
	h    netns.NsHandle
}

func newNS(t testing.TB) *testNS {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "spugate-steer-" + hex.EncodeToString(b[:])
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	ns := &testNS{name: name, h: h}
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n <ns> args...`.
func (ns *testNS) ip(t testing.TB, args ...string) {
	t.Helper()
	run(t, "ip", append([]string{"-n", ns.name}, args...)...)
}

// do runs f on an OS thread switched into the namespace: sockets, netlink
// requests and BPF test runs made by f belong to it.
func (ns *testNS) do(t testing.TB, f func()) {
	t.Helper()
	done := make(chan struct{})
	var failed error
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			failed = err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.h); err != nil {
			failed = err
			return
		}
		// The thread goes back to its namespace before it can run other
		// goroutines; if it cannot, it stays locked and dies with this one.
		defer func() {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
		}()
		f()
	}()
	<-done
	if failed != nil {
		t.Fatalf("enter netns %s: %v", ns.name, failed)
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
