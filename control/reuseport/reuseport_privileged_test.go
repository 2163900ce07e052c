package reuseport

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/vishvananda/netns"
)

// inNewNetns runs f on a thread in a network namespace made for the test
// (loopback up) and removed afterwards; every socket f opens lives there.
func inNewNetns(t *testing.T, setup [][]string, f func()) {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "spugate-rp-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	for _, args := range append([][]string{{"link", "set", "dev", "lo", "up"}}, setup...) {
		if out, err := exec.Command("ip", append([]string{"-n", name}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			done <- err
			return
		}
		defer func() {
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			close(done)
		}()
		f()
	}()
	if err := <-done; err != nil {
		t.Fatalf("enter netns: %v", err)
	}
}

var (
	group4 = netip.MustParseAddrPort("198.18.0.1:500")
	group6 = netip.MustParseAddrPort("[2001:db8::1]:500")
)

// senders: a /24 of IPv4 sources (the whole prefix is local once one
// address of it is on lo) and 32 IPv6 sources.
func senders() []netip.Addr {
	var out []netip.Addr
	for i := 1; i < 255; i++ {
		out = append(out, netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}))
	}
	for i := 1; i <= 32; i++ {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", i)))
	}
	return out
}

func netnsSetup() [][]string {
	setup := [][]string{
		{"addr", "add", "198.18.0.1/32", "dev", "lo"},
		{"addr", "add", "198.18.1.1/24", "dev", "lo"},
		{"addr", "add", "2001:db8::1/128", "dev", "lo", "nodad"},
	}
	for i := 1; i <= 32; i++ {
		setup = append(setup, []string{"addr", "add", fmt.Sprintf("2001:db8:1::%x/128", i), "dev", "lo", "nodad"})
	}
	return setup
}

// exchange sends one datagram from each sender to its group and returns,
// per sender, the SPU whose socket received it (-1 if none did).
func exchange(t *testing.T, groups map[bool]*Group, from []netip.Addr) map[netip.Addr]int {
	t.Helper()
	for i, src := range from {
		g := groups[src.Is4()]
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)))
		if err != nil {
			t.Fatalf("bind sender %v: %v", src, err)
		}
		msg := binary.BigEndian.AppendUint32(make([]byte, 0, 32), uint32(i))
		if _, err := c.WriteToUDPAddrPort(append(msg, make([]byte, 24)...), g.Addr()); err != nil {
			t.Fatalf("send from %v: %v", src, err)
		}
		c.Close()
	}
	got := make(map[netip.Addr]int, len(from))
	for _, src := range from {
		got[src] = -1
	}
	buf := make([]byte, 64)
	for _, g := range groups {
		for _, spu := range g.SPUs() {
			conn := g.Conn(spu)
			for {
				// Loopback delivers during the send: what is not queued now
				// never will be.
				_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				n, ap, err := conn.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				if n < 4 {
					continue
				}
				i := int(binary.BigEndian.Uint32(buf))
				if i >= len(from) || from[i] != ap.Addr().Unmap() {
					t.Errorf("datagram %d from unexpected %v", i, ap)
					continue
				}
				got[from[i]] = int(spu)
			}
		}
	}
	return got
}

// check compares where datagrams went with the anchor's prediction.
func check(t *testing.T, what string, got map[netip.Addr]int, fn anchor.Function, m *anchor.Map, groups map[bool]*Group) map[int]int {
	t.Helper()
	perSPU := map[int]int{}
	bad := 0
	for src, spu := range got {
		want := int(m.Physical(fn.Logical(src, groups[src.Is4()].Addr().Addr())))
		perSPU[spu]++
		if spu != want {
			bad++
			if bad <= 5 {
				t.Errorf("%s: datagram from %v arrived at SPU %d, anchor says %d", what, src, spu, want)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d datagrams off their anchor", what, bad, len(got))
	}
	t.Logf("%s: datagrams per SPU %v", what, perSPU)
	return perSPU
}

// listenGroups opens the IPv4 and IPv6 groups of 4 workers each, by
// address family; false (the error reported) if one fails.
func listenGroups(t *testing.T, sel *Steerer) (map[bool]*Group, bool) {
	groups := map[bool]*Group{}
	for _, a := range []netip.AddrPort{group4, group6} {
		g, err := sel.Listen(a, []uint16{0, 1, 2, 3})
		if err != nil {
			t.Error(err)
			closeGroups(groups)
			return nil, false
		}
		groups[a.Addr().Is4()] = g
	}
	return groups, true
}

func closeGroups(groups map[bool]*Group) {
	for _, g := range groups {
		g.Close()
	}
}

// TestPrivilegedReuseportFollowsAnchor checks that every datagram of many
// senders reaches the worker socket the Go anchor function predicts, over
// IPv4 and IPv6, and that the prediction follows when the SPU map changes;
// then that datagrams anchored on an SPU without a socket go to the
// kernel's choice, counted.
func TestPrivilegedReuseportFollowsAnchor(t *testing.T) {
	privileged.Require(t, "ip")
	sel, err := NewSteerer()
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	if why := sel.Unsteered(); why != "" {
		t.Skipf("no selector program on this kernel (%s): TestPrivilegedReuseportUnsteered covers the fallback", why)
	}
	hk, _ := anchor.NewHashKey(nil)
	fn, _ := anchor.NewFunction(hk, anchor.DefaultLogicalSPUs)
	m, _ := anchor.NewMap(anchor.DefaultLogicalSPUs, []uint16{0, 1, 2, 3})
	if err := sel.SetConfig(fn, m); err != nil {
		t.Fatal(err)
	}
	from := senders()
	inNewNetns(t, netnsSetup(), func() {
		groups, ok := listenGroups(t, sel)
		if !ok {
			return
		}
		defer closeGroups(groups)
		before, _ := sel.Counters()
		per := check(t, "4 SPUs", exchange(t, groups, from), fn, m, groups)
		if len(per) < 4 {
			t.Errorf("only %d of 4 workers got datagrams: the test proves little", len(per))
		}
		after, _ := sel.Counters()
		if d := after.Sub(&before); d[Selected] != uint64(len(from)) {
			t.Errorf("selected %d of %d datagrams; counters %v", d[Selected], len(from), d)
		}

		// Drain SPU 2: the map moves its logical SPUs, the workers follow.
		m2, moves, err := m.Rebuild([]uint16{0, 1, 3})
		if err != nil {
			t.Error(err)
			return
		}
		if err := sel.SetSPUMap(m2); err != nil {
			t.Error(err)
			return
		}
		per = check(t, fmt.Sprintf("SPU 2 drained (%d logical SPUs moved)", len(moves)), exchange(t, groups, from), fn, m2, groups)
		if per[2] != 0 {
			t.Errorf("%d datagrams still reached the drained SPU", per[2])
		}

		// SPU 3's worker goes away before the map says so: its datagrams
		// fall back to the kernel's choice among the remaining sockets.
		for _, g := range groups {
			if err := g.RemoveWorker(3); err != nil {
				t.Error(err)
			}
		}
		anchoredOn3 := 0
		for _, src := range from {
			if m2.Physical(fn.Logical(src, groups[src.Is4()].Addr().Addr())) == 3 {
				anchoredOn3++
			}
		}
		before, _ = sel.Counters()
		got := exchange(t, groups, from)
		after, _ = sel.Counters()
		d := after.Sub(&before)
		lost := 0
		for _, spu := range got {
			if spu < 0 {
				lost++
			}
		}
		t.Logf("worker 3 gone: %d datagrams anchored there; counters %v", anchoredOn3, d)
		if d[NoWorker] != uint64(anchoredOn3) || d[Selected] != uint64(len(from)-anchoredOn3) || lost != 0 {
			t.Errorf("worker 3 gone: no_worker %d (want %d), selected %d (want %d), %d datagrams lost",
				d[NoWorker], anchoredOn3, d[Selected], len(from)-anchoredOn3, lost)
		}
	})
}

// TestPrivilegedReuseportUnconfigured checks the fallback before SetConfig.
func TestPrivilegedReuseportUnconfigured(t *testing.T) {
	privileged.Require(t, "ip")
	sel, err := NewSteerer()
	if err != nil {
		t.Fatal(err)
	}
	defer sel.Close()
	from := senders()[:20]
	inNewNetns(t, netnsSetup(), func() {
		g, err := sel.Listen(group4, []uint16{0, 1})
		if err != nil {
			t.Error(err)
			return
		}
		defer g.Close()
		got := exchange(t, map[bool]*Group{true: g}, from)
		c, _ := sel.Counters()
		for src, spu := range got {
			if spu < 0 {
				t.Errorf("datagram from %v lost", src)
			}
		}
		if c[Unconfigured] != uint64(len(from)) {
			t.Errorf("unconfigured %d, want %d", c[Unconfigured], len(from))
		}
		if _, err := g.AddWorker(1); err == nil {
			t.Error("a second socket for SPU 1 was accepted")
		}
		if _, err := g.AddWorker(MaxWorkers); err == nil {
			t.Error("an SPU beyond the socket array was accepted")
		}
		c2, err := g.AddWorker(7)
		if err != nil || c2 == nil || g.Conn(7) != c2 {
			t.Errorf("AddWorker(7): %v", err)
		}
		if err := g.RemoveWorker(9); err == nil {
			t.Error("removing a missing worker succeeded")
		}
	})
	if _, err := sel.Listen(netip.MustParseAddrPort("0.0.0.0:500"), []uint16{0}); err == nil {
		t.Error("Listen on the unspecified address was accepted")
	}
	if err := sel.SetSPUMap(func() *anchor.Map { m, _ := anchor.NewMap(4, []uint16{0}); return m }()); err == nil {
		t.Error("SetSPUMap before SetConfig was accepted")
	}
}

// TestPrivilegedReuseportUnsteered runs the groups a kernel without the
// selector gets: every datagram reaches one worker socket or another (the
// kernel's hash), none is lost, and configuration and counters work.
func TestPrivilegedReuseportUnsteered(t *testing.T) {
	privileged.Require(t, "ip")
	sel := newUnsteered("test")
	defer sel.Close()
	hk, _ := anchor.NewHashKey(nil)
	fn, _ := anchor.NewFunction(hk, anchor.DefaultLogicalSPUs)
	m, _ := anchor.NewMap(anchor.DefaultLogicalSPUs, []uint16{0, 1, 2, 3})
	if err := sel.SetConfig(fn, m); err != nil {
		t.Fatal(err)
	}
	m2, _, _ := m.Rebuild([]uint16{0, 1})
	if err := sel.SetSPUMap(m2); err != nil {
		t.Fatal(err)
	}
	from := senders()
	inNewNetns(t, netnsSetup(), func() {
		groups, ok := listenGroups(t, sel)
		if !ok {
			return
		}
		defer closeGroups(groups)
		got := exchange(t, groups, from)
		per := map[int]int{}
		for src, spu := range got {
			if spu < 0 {
				t.Errorf("datagram from %v lost", src)
			}
			per[spu]++
		}
		t.Logf("kernel's hash: datagrams per worker %v", per)
		if err := groups[true].RemoveWorker(3); err != nil {
			t.Error(err)
		}
	})
	if c, err := sel.Counters(); err != nil || c != (Counters{}) {
		t.Errorf("counters %v, %v", c, err)
	}
}
