package nic

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/spugate/spugate/internal/privileged"
	"github.com/vishvananda/netns"
)

func TestXDPFeatureString(t *testing.T) {
	for _, c := range []struct {
		f    XDPFeature
		want string
	}{
		{0, "none"},
		{XDPBasic | XDPRedirect | XDPRxSG, "basic,redirect,rx-sg"},
		{XDPXSKZeroCopy | XDPNdoXmitSG, "xsk-zerocopy,ndo-xmit-sg"},
	} {
		if got := c.f.String(); got != c.want {
			t.Errorf("%#x: %q, want %q", uint64(c.f), got, c.want)
		}
	}
	unknown := Caps{}
	if unknown.Has(XDPBasic) || unknown.XDPString() != "unknown" {
		t.Error("unknown features read as known")
	}
}

// TestPrivilegedProbeVeth probes a 3-queue veth in a namespace of its own,
// entered with setns(2) only (so /sys still shows the test's namespace,
// where the veth's name may not exist or may be another device): the
// queues, the ifindex and (Linux 6.3+, where the netdev family exists)
// the driver's XDP features, which for veth include redirect; threaded
// NAPI is n/a there because sysfs is not this namespace's. A missing
// interface is an error naming it.
func TestPrivilegedProbeVeth(t *testing.T) {
	privileged.Require(t, "ip")
	name := "spugate-nic-test"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "add", "lo9", "numrxqueues", "3", "numtxqueues", "2",
		"type", "veth", "peer", "name", "lo8").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	done := make(chan struct{})
	var c Caps
	var missing error
	go func() {
		defer close(done)
		// The thread stays in the namespace and dies with the goroutine
		// (locked, never unlocked).
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			t.Error(err)
			return
		}
		c, err = Probe("lo9")
		_, missing = Probe("nosuch0")
	}()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v, driver XDP features %s", c, c.XDPString())
	if c.Ifindex == 0 || c.RxQueues != 3 || c.TxQueues != 2 || c.Threaded != "n/a" {
		t.Errorf("caps %+v", c)
	}
	if c.XDPKnown && !c.Has(XDPBasic|XDPRedirect) {
		t.Errorf("veth announces %s, without redirect", c.XDP)
	}
	if missing == nil || !strings.Contains(missing.Error(), `"nosuch0"`) {
		t.Errorf("missing interface: %v", missing)
	}
}
