package reuseport

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNewNetns runs f on a thread in a network namespace made for the test
// (loopback up) and removed afterwards; every socket f opens lives there.
func inNewNetns(t *testing.T, setup [][]string, f func()) {
	t.Helper()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], rand.Uint32())
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

// listenIKE opens the groups of 4 workers iked opens on each address: the
// IKE port and the NAT-T port, IPv4 and IPv6.
func listenIKE(t *testing.T, sel *Steerer) ([]*Group, bool) {
	var out []*Group
	for _, a := range []netip.AddrPort{group4, group6} {
		for _, port := range []uint16{500, DefaultNATTPort} {
			g, err := sel.Listen(netip.AddrPortFrom(a.Addr(), port), []uint16{0, 1, 2, 3})
			if err != nil {
				t.Error(err)
				closeAll(out)
				return nil, false
			}
			out = append(out, g)
		}
	}
	return out, true
}

func closeAll(groups []*Group) {
	for _, g := range groups {
		g.Close()
	}
}

// A datagram for deliver: payload from src to the group's address.
type datagram struct {
	src     netip.Addr
	g       *Group
	payload []byte
}

func (d *datagram) key() string {
	return d.src.String() + "|" + d.g.Addr().String() + "|" + string(d.payload)
}

// deliver sends the datagrams, each from an ephemeral port of its source,
// and returns the physical SPU whose socket received each (-1 if none).
// Datagrams are told apart by source, group and payload; identical ones
// must land alike, so which of them arrived where does not matter.
func deliver(t *testing.T, dgs []datagram) []int {
	t.Helper()
	got := make([]int, len(dgs))
	for i := range got {
		got[i] = -1
	}
	senders := map[netip.Addr]*net.UDPConn{}
	defer func() {
		for _, c := range senders {
			c.Close()
		}
	}()
	var groups []*Group
	for _, d := range dgs {
		if !slices.Contains(groups, d.g) {
			groups = append(groups, d.g)
		}
	}
	buf := make([]byte, 2048)
	// Batches small enough for the receive buffer of one socket: with
	// L=1 every datagram goes to the same worker.
	const batch = 64
	for start := 0; start < len(dgs); start += batch {
		pending := map[string][]int{}
		for i := start; i < min(start+batch, len(dgs)); i++ {
			d := &dgs[i]
			c := senders[d.src]
			if c == nil {
				var err error
				if c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.src, 0))); err != nil {
					t.Fatalf("bind sender %v: %v", d.src, err)
				}
				senders[d.src] = c
			}
			if _, err := c.WriteToUDPAddrPort(d.payload, d.g.Addr()); err != nil {
				t.Fatalf("send %d bytes from %v to %v: %v", len(d.payload), d.src, d.g.Addr(), err)
			}
			k := d.key()
			pending[k] = append(pending[k], i)
		}
		// Loopback delivers during the send: what is not queued now never
		// will be, so the sockets are read without waiting.
		for _, g := range groups {
			for _, spu := range g.SPUs() {
				raw, err := g.Conn(spu).SyscallConn()
				if err != nil {
					t.Fatal(err)
				}
				var rerr error
				err = raw.Read(func(fd uintptr) bool {
					for {
						n, sa, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
						if err != nil {
							if err != unix.EAGAIN {
								rerr = err
							}
							return true
						}
						var src netip.Addr
						switch sa := sa.(type) {
						case *unix.SockaddrInet4:
							src = netip.AddrFrom4(sa.Addr)
						case *unix.SockaddrInet6:
							src = netip.AddrFrom16(sa.Addr).Unmap()
						}
						k := (&datagram{src: src, g: g, payload: buf[:n]}).key()
						if q := pending[k]; len(q) > 0 {
							got[q[0]] = int(spu)
							pending[k] = q[1:]
						} else {
							t.Errorf("%v: unexpected datagram of %d bytes from %v", g.Addr(), n, src)
						}
					}
				})
				if err == nil {
					err = rerr
				}
				if err != nil {
					t.Fatalf("read %v SPU %d: %v", g.Addr(), spu, err)
				}
			}
		}
	}
	return got
}

// ikeHeader returns an IKE header (RFC 7296, 3.1) with these SPIs, the
// exchange type and flags, and a zero length, followed by trailer.
func ikeHeader(spiI, spiR uint64, exchange, flags byte, trailer []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, spiI)
	b = binary.BigEndian.AppendUint64(b, spiR)
	b = append(b, 33, 0x20, exchange, flags, 0, 0, 0, 0, 0, 0, 0, 0)
	return append(b, trailer...)
}

const (
	exchangeSAInit  = 34
	exchangeAuth    = 35
	flagInitiator   = 0x08
	flagResponse    = 0x20
	nonESPMarkerLen = 4
)

// randomPayload draws a UDP payload for a group on the IKE port or (natt)
// the NAT-T port, of every kind the rule tells apart.
func randomPayload(r *rand.Rand, c anchor.SPICodec, l int, natt bool) []byte {
	bytesN := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	ours := func() uint64 {
		spi, err := c.EncodeIKE(uint16(r.IntN(l)), r.Uint64())
		if err != nil {
			return r.Uint64() | 1<<63
		}
		return spi
	}
	maybeZero := func(v uint64) uint64 {
		switch r.IntN(8) {
		case 0:
			return 0
		case 1:
			return v & 0xffffffff // top 32 bits zero
		}
		return v
	}
	var p []byte
	trailer := bytesN(r.IntN(41))
	switch r.IntN(7) {
	case 0: // IKE_SA_INIT request
		p = ikeHeader(r.Uint64()|1, 0, exchangeSAInit, flagInitiator, trailer)
	case 1: // from the initiator, to our responder SPI
		p = ikeHeader(r.Uint64(), ours(), byte(r.IntN(256)), flagInitiator|byte(r.IntN(2))*flagResponse, trailer)
	case 2: // from the responder, to our initiator SPI
		p = ikeHeader(ours(), r.Uint64(), byte(r.IntN(256)), byte(r.IntN(2))*flagResponse, trailer)
	case 3: // anything, zero SPIs included
		p = ikeHeader(maybeZero(r.Uint64()), maybeZero(r.Uint64()), byte(r.IntN(256)), byte(r.IntN(256)), trailer)
	case 4: // zero SPIs
		p = ikeHeader(0, 0, exchangeSAInit, byte(r.IntN(2))*flagInitiator, trailer)
	case 5: // too short for an IKE header, around the boundary mostly
		p = bytesN(r.IntN(32))
		if r.IntN(2) == 0 && len(p) >= 4 {
			copy(p, []byte{0, 0, 0, 0})
		}
		return p
	case 6: // a NAT-T keepalive or ESP in UDP
		if r.IntN(2) == 0 {
			return []byte{0xff}
		}
		return binary.BigEndian.AppendUint32(nil, r.Uint32()|1)
	}
	if natt && r.IntN(4) != 0 {
		p = append(make([]byte, nonESPMarkerLen), p...)
	}
	return p
}

// compareIKE compares where datagrams went with anchor.IKELogical through
// m, and the selector's counters over the delivery with the rules
// IKELogical says it used. It returns the datagrams per SPU.
func compareIKE(t *testing.T, what string, sel *Steerer, dgs []datagram, fn anchor.Function, m *anchor.Map) map[int]int {
	t.Helper()
	c, err := fn.Codec()
	if err != nil {
		t.Fatal(err)
	}
	before, err := sel.Counters()
	if err != nil {
		t.Fatal(err)
	}
	got := deliver(t, dgs)
	after, err := sel.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var want Counters
	perSPU := map[int]int{}
	bad := 0
	for i, d := range dgs {
		logical, by := fn.IKELogical(c, d.g.Addr().Addr(), d.src, d.payload, d.g.NATT())
		want[RuleCounter(by)]++
		w := int(m.Physical(logical))
		perSPU[got[i]]++
		if got[i] != w {
			bad++
			if bad <= 5 {
				t.Errorf("%s: %d bytes %x from %v to %v arrived at SPU %d, IKELogical says logical %d (rule %s), SPU %d",
					what, len(d.payload), d.payload, d.src, d.g.Addr(), got[i], logical, RuleCounter(by), w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d datagrams off their anchor", what, bad, len(dgs))
	}
	want[Selected] = uint64(len(dgs))
	if d := after.Sub(&before); d != want {
		t.Errorf("%s: counters %v, want %v", what, d, want)
	}
	t.Logf("%s: %d datagrams per SPU %v; rules: %d by responder SPI, %d by initiator SPI, %d first contact, %d by addresses",
		what, len(dgs), perSPU, want[ByResponderSPI], want[ByInitiatorSPI], want[FirstContact], want[ByAddresses])
	return perSPU
}

// randomDatagrams draws n datagrams from the senders to the groups.
func randomDatagrams(r *rand.Rand, n int, from []netip.Addr, groups []*Group, fn anchor.Function) []datagram {
	c, _ := fn.Codec()
	var out []datagram
	for len(out) < n {
		src := from[r.IntN(len(from))]
		g := groups[r.IntN(len(groups))]
		if src.Is4() != g.Addr().Addr().Is4() {
			continue
		}
		out = append(out, datagram{src: src, g: g, payload: randomPayload(r, c, fn.L(), g.NATT())})
	}
	return out
}

// TestPrivilegedReuseportFollowsIKELogical checks that the kernel's choice
// is anchor.IKELogical's for thousands of random datagrams (IKE_SA_INIT
// requests, messages to our responder or initiator SPI, zero SPIs, short
// payloads, keepalives, NAT-T with and without the marker) from many
// sources, IPv4 and IPv6, on the IKE and NAT-T ports, for several L and
// SPU maps, and that the counters say which rule anchored each.
func TestPrivilegedReuseportFollowsIKELogical(t *testing.T) {
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
	from := senders()
	r := rand.New(rand.NewPCG(16, 500))
	inNewNetns(t, netnsSetup(), func() {
		groups, ok := listenIKE(t, sel)
		if !ok {
			return
		}
		defer closeAll(groups)
		for _, tc := range []struct {
			l    int
			spus []uint16
		}{{1, []uint16{2}}, {2, []uint16{1, 3}}, {256, []uint16{0, 1, 2, 3}}} {
			fn, _ := anchor.NewFunction(hk, tc.l)
			m, err := anchor.NewMap(tc.l, tc.spus)
			if err != nil {
				t.Fatal(err)
			}
			if err := sel.SetConfig(fn, m); err != nil {
				t.Fatal(err)
			}
			per := compareIKE(t, fmt.Sprintf("L=%d on SPUs %v", tc.l, tc.spus), sel, randomDatagrams(r, 3000, from, groups, fn), fn, m)
			if len(per) < len(tc.spus) {
				t.Errorf("L=%d: only %d of %d workers got datagrams: the test proves little", tc.l, len(per), len(tc.spus))
			}
		}

		fn, _ := anchor.NewFunction(hk, anchor.DefaultLogicalSPUs)
		m, _ := anchor.NewMap(anchor.DefaultLogicalSPUs, []uint16{0, 1, 2, 3})
		if err := sel.SetConfig(fn, m); err != nil {
			t.Fatal(err)
		}
		// Drain SPU 2: the map moves its logical SPUs, the workers follow.
		m2, moves, err := m.Rebuild([]uint16{0, 1, 3})
		if err != nil {
			t.Fatal(err)
		}
		if err := sel.SetSPUMap(m2); err != nil {
			t.Fatal(err)
		}
		dgs := randomDatagrams(r, 2000, from, groups, fn)
		per := compareIKE(t, fmt.Sprintf("SPU 2 drained (%d logical SPUs moved)", len(moves)), sel, dgs, fn, m2)
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
		c, _ := fn.Codec()
		anchoredOn3 := 0
		for _, d := range dgs {
			if lg, _ := fn.IKELogical(c, d.g.Addr().Addr(), d.src, d.payload, d.g.NATT()); m2.Physical(lg) == 3 {
				anchoredOn3++
			}
		}
		before, _ := sel.Counters()
		got := deliver(t, dgs)
		after, _ := sel.Counters()
		d := after.Sub(&before)
		lost := 0
		for _, spu := range got {
			if spu < 0 {
				lost++
			}
		}
		t.Logf("worker 3 gone: %d datagrams anchored there; counters %v", anchoredOn3, d)
		if d[NoWorker] != uint64(anchoredOn3) || d[Selected] != uint64(len(dgs)-anchoredOn3) || lost != 0 {
			t.Errorf("worker 3 gone: no_worker %d (want %d), selected %d (want %d), %d datagrams lost",
				d[NoWorker], anchoredOn3, d[Selected], len(dgs)-anchoredOn3, lost)
		}
	})
}

// TestPrivilegedReuseportSpreadsOnePeer is issue 16's case: many IKE SAs
// from ONE peer address and port. Their IKE_SA_INIT requests spread over
// every worker in about equal shares (the kernel's hash of the 4-tuple
// would put them all on one), and each later message, which carries the
// responder SPI that worker chose (EncodeIKE of its logical SPU), lands
// on that same worker. A 4-worker group on IKE's port over IPv4 and a
// 2-worker group on the NAT-T port over IPv6, behind the marker.
func TestPrivilegedReuseportSpreadsOnePeer(t *testing.T) {
	privileged.Require(t, "ip")
	hk, _ := anchor.NewHashKey(nil)
	r := rand.New(rand.NewPCG(16, 4500))
	inNewNetns(t, netnsSetup(), func() {
		for _, tc := range []struct {
			group netip.AddrPort
			peer  netip.Addr
			spus  []uint16
		}{
			{group4, netip.MustParseAddr("198.18.1.7"), []uint16{0, 1, 2, 3}},
			{netip.AddrPortFrom(group6.Addr(), DefaultNATTPort), netip.MustParseAddr("2001:db8:1::7"), []uint16{0, 1}},
		} {
			sel, err := NewSteerer()
			if err != nil {
				t.Fatal(err)
			}
			defer sel.Close()
			if why := sel.Unsteered(); why != "" {
				t.Skipf("no selector program on this kernel (%s)", why)
			}
			fn, _ := anchor.NewFunction(hk, anchor.DefaultLogicalSPUs)
			c, _ := fn.Codec()
			m, _ := anchor.NewMap(anchor.DefaultLogicalSPUs, tc.spus)
			if err := sel.SetConfig(fn, m); err != nil {
				t.Fatal(err)
			}
			g, err := sel.Listen(tc.group, tc.spus)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Close()
			var marker []byte
			if g.NATT() {
				marker = make([]byte, nonESPMarkerLen)
			}
			const n = 1000
			inits := make([]datagram, n)
			auths := make([]datagram, n)
			for i := range n {
				spiI := r.Uint64() | 1
				inits[i] = datagram{src: tc.peer, g: g, payload: append(slices.Clone(marker), ikeHeader(spiI, 0, exchangeSAInit, flagInitiator, []byte("SA KE Ni"))...)}
				spiR, err := c.AllocateIKE(fn.LogicalFirst(tc.peer, tc.group.Addr(), spiI), nil)
				if err != nil {
					t.Fatal(err)
				}
				auths[i] = datagram{src: tc.peer, g: g, payload: append(slices.Clone(marker), ikeHeader(spiI, spiR, exchangeAuth, flagInitiator, []byte("SK"))...)}
			}
			what := fmt.Sprintf("%d IKE_SA_INIT requests from %v to %v", n, tc.peer, tc.group)
			per := compareIKE(t, what, sel, inits, fn, m)
			share := n / len(tc.spus)
			for _, spu := range tc.spus {
				if got := per[int(spu)]; got < share*7/10 || got > share*13/10 {
					t.Errorf("%s: worker %d got %d, want about %d", what, spu, got, share)
				}
			}
			first := deliver(t, inits)
			then := deliver(t, auths)
			moved := 0
			for i := range n {
				if then[i] != first[i] || first[i] < 0 {
					moved++
				}
			}
			if moved > 0 {
				t.Errorf("%s: %d IKE_AUTH requests did not land on their IKE_SA_INIT's worker", what, moved)
			}
			compareIKE(t, fmt.Sprintf("their %d IKE_AUTH requests", n), sel, auths, fn, m)
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
