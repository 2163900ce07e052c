package steer

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
	"golang.org/x/sys/unix"
)

// pair is two namespaces joined by a veth pair with two queues: x in
// "peer" (198.18.0.1, 2001:db8::1) and y in "gw" (198.18.0.2, 2001:db8::2),
// where the program is attached.
type pair struct {
	peer, gw *testNS
	yIndex   int
}

var (
	peerAddr = netip.MustParseAddr("198.18.0.1")
	gwAddr   = netip.MustParseAddr("198.18.0.2")
)

func newPair(t *testing.T) *pair {
	t.Helper()
	privileged.Require(t, "ip")
	p := &pair{peer: newNS(t), gw: newNS(t)}
	p.peer.ip(t, "link", "add", "name", "x", "numrxqueues", "2", "numtxqueues", "2",
		"type", "veth", "peer", "name", "y", "netns", p.gw.name, "numrxqueues", "2", "numtxqueues", "2")
	p.peer.ip(t, "addr", "add", "198.18.0.1/24", "dev", "x")
	p.peer.ip(t, "addr", "add", "2001:db8::1/64", "dev", "x", "nodad")
	p.gw.ip(t, "addr", "add", "198.18.0.2/24", "dev", "y")
	p.gw.ip(t, "addr", "add", "2001:db8::2/64", "dev", "y", "nodad")
	p.peer.ip(t, "link", "set", "dev", "x", "up")
	p.gw.ip(t, "link", "set", "dev", "y", "up")
	p.gw.do(t, func() {
		ifc, err := net.InterfaceByName("y")
		if err != nil {
			t.Error(err)
			return
		}
		p.yIndex = ifc.Index
	})
	if t.Failed() {
		t.FailNow()
	}
	return p
}

// configured loads a program of carrier c configured with a random key,
// L=256 over 2 SPUs, and the gateway's addresses as tunnel endpoints.
func configured(t *testing.T, c Carrier) (*Program, anchor.Function) {
	t.Helper()
	prog, err := Load(Options{Carrier: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	hk, _ := anchor.NewHashKey(nil)
	fn, _ := anchor.NewFunction(hk, 256)
	m, _ := anchor.NewMap(256, []uint16{0, 1})
	must(t, prog.SetConfig(Config{Anchor: fn}, m))
	must(t, prog.AddLocalAddr(gwAddr))
	must(t, prog.AddLocalAddr(netip.MustParseAddr("2001:db8::2")))
	return prog, fn
}

// TestPrivilegedAttachEndToEnd attaches the program to a veth in native
// and in generic mode and sends real traffic through it: IKE reaches a UDP
// socket (XDP_PASS), ESP to a local address with no AF_XDP socket falls
// back to the kernel (a raw ESP socket sees it) and is counted PassNoXSK,
// and with AF_XDP sockets registered ESP lands in them with the metadata
// readable by the carrier's reader (copy mode), for every carrier the
// kernel allows.
func TestPrivilegedAttachEndToEnd(t *testing.T) {
	privileged.Require(t, "ip")
	forCarriers(t, func(t *testing.T, c Carrier) {
		for _, mode := range []Mode{ModeNative, ModeGeneric} {
			t.Run(mode.String(), func(t *testing.T) {
				p := newPair(t)
				prog, fn := configured(t, c)
				p.gw.do(t, func() {
					got, err := prog.Attach(p.yIndex, mode)
					if err != nil || got != mode {
						t.Errorf("Attach(%s) = %s, %v", mode, got, err)
					}
				})
				if t.Failed() {
					return
				}
				endToEnd(t, p, prog, fn)
			})
		}
	})
}

func endToEnd(t *testing.T, p *pair, prog *Program, fn anchor.Function) {
	const n = 5
	// Receivers in the gateway namespace.
	var ike4, ike6 *net.UDPConn
	var rawESP int
	p.gw.do(t, func() {
		var err error
		if ike4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP("198.18.0.2"), Port: 500}); err != nil {
			t.Error(err)
			return
		}
		if ike6, err = net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("2001:db8::2"), Port: 500}); err != nil {
			t.Error(err)
			return
		}
		if rawESP, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		return
	}
	defer ike4.Close()
	defer ike6.Close()
	defer unix.Close(rawESP)
	tv := unix.NsecToTimeval(int64(2 * time.Second))
	must(t, unix.SetsockoptTimeval(rawESP, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))

	before, err := prog.Counters()
	must(t, err)
	sendIKE(t, p, n)
	sendESP(t, p, n, 0x1000)
	got4 := recvUDP(t, ike4, n)
	got6 := recvUDP(t, ike6, n)
	gotESP := recvRaw(t, rawESP, n)
	after, err := prog.Counters()
	must(t, err)
	d := after.Sub(&before)
	t.Logf("no AF_XDP socket: IKE received %d+%d, ESP at the raw socket %d; counters {%v}", got4, got6, gotESP, d)
	if got4 != n || got6 != n || d[PassIKE] != 2*n {
		t.Errorf("IKE: received %d IPv4 and %d IPv6 of %d each, pass_ike %d", got4, got6, n, d[PassIKE])
	}
	if gotESP != n || d[PassNoXSK] != n || d[RedirectESP] != 0 {
		t.Errorf("ESP without AF_XDP socket: kernel got %d of %d, pass_no_xsk %d, redirect_esp %d", gotESP, n, d[PassNoXSK], d[RedirectESP])
	}

	// Now with an AF_XDP socket on each of y's queues.
	var socks []*xdp.Socket
	p.gw.do(t, func() {
		for q := range 2 {
			s, err := xdp.NewSocket(p.yIndex, q, nil)
			if err != nil {
				t.Errorf("AF_XDP socket on y queue %d: %v", q, err)
				return
			}
			socks = append(socks, s)
			s.Fill(s.GetDescs(s.NumFreeFillSlots()))
			if err := prog.RegisterXSK(p.yIndex, q, s.FD()); err != nil {
				t.Error(err)
			}
		}
	})
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	if t.Failed() {
		return
	}
	before = after
	sendESP(t, p, n, 0x2000)
	metas := recvXSK(t, socks, n, prog, p.yIndex)
	after, err = prog.Counters()
	must(t, err)
	d = after.Sub(&before)
	t.Logf("AF_XDP sockets registered: %d frames received there; counters {%v}", len(metas), d)
	if len(metas) != n || d[RedirectESP] != n {
		t.Errorf("ESP with AF_XDP sockets: %d of %d received, redirect_esp %d", len(metas), n, d[RedirectESP])
	}
	want := fn.LogicalSPI(0x2000) // ESP is anchored by its SPI
	for _, m := range metas {
		if m.Class != ClassESP || m.LogicalSPU != want || m.L3Offset != 14 || m.L4Offset != 34 {
			t.Errorf("metadata in the UMEM: %+v, want class esp, logical %d, offsets 14/34", m, want)
		}
	}
}

func sendIKE(t *testing.T, p *pair, n int) {
	t.Helper()
	p.peer.do(t, func() {
		// Unconnected, so that an ICMP port unreachable (no listener in
		// some tests) does not fail the next write.
		c, err := net.ListenUDP("udp", nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		for _, dst := range []string{"198.18.0.2:500", "[2001:db8::2]:500"} {
			to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst))
			for i := range n {
				// An IKE header's worth: zero SPIs never matter to XDP.
				if _, err := c.WriteToUDP(append(make([]byte, 28), byte(i)), to); err != nil {
					t.Error(err)
				}
			}
		}
	})
}

// waitCounter waits up to 2 s for counter c of prog to reach want since
// before, and returns what it reached.
func waitCounter(prog *Program, before Counters, c Counter, want uint64) uint64 {
	deadline := time.Now().Add(2 * time.Second)
	for {
		now, err := prog.Counters()
		if err != nil {
			return 0
		}
		d := now.Sub(&before)
		if d[c] >= want || time.Now().After(deadline) {
			return d[c]
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendESP sends n ESP packets (SPI spi) from the peer to the gateway with a
// raw socket: the kernel writes the IP header, protocol 50.
func sendESP(t *testing.T, p *pair, n int, spi uint32) {
	t.Helper()
	p.peer.do(t, func() {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ESP)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: gwAddr.As4()}
		for i := range n {
			if err := unix.Sendto(fd, esp(spi, uint32(i+1), 32), 0, to); err != nil {
				t.Error(err)
			}
		}
	})
}

func recvUDP(t *testing.T, c *net.UDPConn, n int) int {
	t.Helper()
	buf := make([]byte, 2048)
	got := 0
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	for got < n {
		if _, _, err := c.ReadFromUDP(buf); err != nil {
			break
		}
		got++
	}
	return got
}

// recvRaw counts ESP packets from 198.18.0.1 on a raw socket.
func recvRaw(t *testing.T, fd, n int) int {
	t.Helper()
	buf := make([]byte, 2048)
	got := 0
	for tries := 0; got < n && tries < 4*n; tries++ {
		m, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			break
		}
		if m >= 20 && netip.AddrFrom4([4]byte(buf[12:16])) == peerAddr {
			got++
		}
	}
	return got
}

// recvXSK collects up to n frames from the sockets and reads the metadata
// of each as an SPU would: by the program's carrier from the UMEM, or by
// classifying the frame.
func recvXSK(t *testing.T, socks []*xdp.Socket, n int, prog *Program, ifindex int) []Meta {
	t.Helper()
	var metas []Meta
	deadline := time.Now().Add(3 * time.Second)
	for len(metas) < n && time.Now().Before(deadline) {
		for q, s := range socks {
			k, _, err := s.Poll(20)
			if err != nil {
				t.Errorf("poll: %v", err)
				return metas
			}
			for _, d := range s.Receive(k) {
				frame := s.GetFrame(d)
				if d.Addr < MetaSize {
					t.Errorf("frame at UMEM offset %d: no room for metadata", d.Addr)
					continue
				}
				// The UMEM is one mapping, so the bytes before the frame
				// are addressable from it.
				buf := unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(frame)), -MetaSize)), MetaSize+len(frame))
				m, shim, err := prog.Carrier().ReadMeta(buf, MetaSize, len(frame))
				if prog.Carrier() == CarrierNone {
					m, err = prog.NewClassifier().Classify(frame, uint32(ifindex), q)
				}
				if err != nil {
					t.Errorf("frame of %d bytes on queue %d: %v", len(frame), q, err)
					continue
				}
				if (prog.Carrier() == CarrierShim) != (shim == MetaSize) {
					t.Errorf("carrier %s: frame with a shim of %d bytes", prog.Carrier(), shim)
				}
				metas = append(metas, m)
			}
		}
	}
	return metas
}

// TestPrivilegedAttachReplacesStale leaves programs attached as a crashed
// spud would (maps and program closed in this process, attachment kept by
// the kernel) and checks that the next Attach replaces them: in place for
// the same mode, by detach and attach for another; that a foreign XDP
// program is left alone; and that Close detaches.
func TestPrivilegedAttachReplacesStale(t *testing.T) {
	p := newPair(t)
	p.gw.do(t, func() {
		crash := func(prog *Program) { prog.closeObjects() } // no detach, like a crash

		first, _ := configured(t, CarrierAuto)
		if _, err := first.Attach(p.yIndex, ModeNative); err != nil {
			t.Error(err)
			return
		}
		crash(first)
		id, mode, err := xdpState(p.yIndex)
		if err != nil || id != first.ID() || mode != ModeNative {
			t.Errorf("after the crash: program %d mode %s (%v), want %d native still attached", id, mode, err, first.ID())
		}

		second, _ := configured(t, CarrierAuto)
		got, err := second.Attach(p.yIndex, ModeAuto)
		if id, _, _ := xdpState(p.yIndex); err != nil || got != ModeNative || id != second.ID() {
			t.Errorf("replace in place: mode %s err %v, attached %d, want %d", got, err, id, second.ID())
		}
		crash(second)

		third, _ := configured(t, CarrierAuto)
		got, err = third.Attach(p.yIndex, ModeGeneric)
		if id, _, _ := xdpState(p.yIndex); err != nil || got != ModeGeneric || id != third.ID() {
			t.Errorf("replace native by generic: mode %s err %v, attached %d, want %d", got, err, id, third.ID())
		}
		// The replacement works: IKE passes and is counted by the new program.
		before, _ := third.Counters()
		sendIKE(t, p, 2)
		if got := waitCounter(third, before, PassIKE, 4); got != 4 {
			t.Errorf("new program counted pass_ike %d, want 4", got)
		}

		// Close detaches.
		if err := third.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if id, _, _ := xdpState(p.yIndex); id != 0 {
			t.Errorf("after Close program %d still attached", id)
		}

		// A foreign program is not replaced.
		foreign, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Name: "foreign_xdp", Type: ebpf.XDP, License: "MIT",
			Instructions: asm.Instructions{asm.LoadImm(asm.R0, 2, asm.DWord), asm.Return()},
		})
		if err != nil {
			t.Error(err)
			return
		}
		defer foreign.Close()
		if err := setXDP(p.yIndex, foreign.FD(), ModeNative); err != nil {
			t.Error(err)
			return
		}
		defer setXDP(p.yIndex, -1, ModeNative)
		fourth, _ := configured(t, CarrierAuto)
		if _, err := fourth.Attach(p.yIndex, ModeAuto); err == nil || !strings.Contains(err.Error(), "not spugate's") {
			t.Errorf("Attach over a foreign program: %v, want a refusal", err)
		}
		if err := fourth.Detach(p.yIndex); err == nil {
			t.Error("Detach removed a foreign program")
		}
		if id, _, _ := xdpState(p.yIndex); id == 0 {
			t.Error("the foreign program is gone")
		}
	})
}

// TestPrivilegedAttachOneNetns checks that a Program bound to one
// namespace refuses interfaces of another, and that Detach and Close work
// from any thread.
func TestPrivilegedAttachOneNetns(t *testing.T) {
	p := newPair(t)
	prog, _ := configured(t, CarrierAuto)
	p.gw.do(t, func() {
		if _, err := prog.Attach(p.yIndex, ModeAuto); err != nil {
			t.Error(err)
		}
	})
	var peerIndex int
	p.peer.do(t, func() {
		ifc, _ := net.InterfaceByName("x")
		peerIndex = ifc.Index
		if _, err := prog.Attach(peerIndex, ModeAuto); err == nil {
			t.Error("Attach in a second namespace succeeded")
		}
	})
	// From the test's own thread (another namespace): still works on gw.
	if m, err := prog.AttachedMode(p.yIndex); err != nil || m != ModeNative {
		t.Errorf("AttachedMode from another thread: %s, %v", m, err)
	}
	if err := prog.Detach(p.yIndex); err != nil {
		t.Errorf("Detach from another thread: %v", err)
	}
	if _, err := prog.AttachedMode(p.yIndex); err == nil {
		t.Error("still attached after Detach")
	}
	if err := prog.Detach(p.yIndex); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if err := prog.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
