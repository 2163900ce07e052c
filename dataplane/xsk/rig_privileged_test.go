package xsk

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// rig is a veth pair in a lab: the AF_XDP side "xsk" (198.18.0.2) and a
// "peer" (198.18.0.1) that talks to it with ordinary sockets.
type rig struct {
	l          *lab.Lab
	xh, ph     *lab.Host
	xmac, pmac net.HardwareAddr
	xip, pip   netip.Addr
	ifindex    int // of eth0 in the xsk host
}

func newRig(t testing.TB, lo lab.LinkOptions) *rig {
	t.Helper()
	privileged.Require(t, "ip", "ethtool")
	l := labtest.New(t, "ethtool")
	r := &rig{l: l, xip: netip.MustParseAddr("198.18.0.2"), pip: netip.MustParseAddr("198.18.0.1")}
	var err error
	if r.xh, err = l.AddHost("xsk", false); err != nil {
		t.Fatal(err)
	}
	if r.ph, err = l.AddHost("peer", false); err != nil {
		t.Fatal(err)
	}
	if err := l.Link(r.xh, "eth0", r.ph, "eth0", lo); err != nil {
		t.Fatal(err)
	}
	if err := r.xh.AddAddr("eth0", netip.PrefixFrom(r.xip, 24)); err != nil {
		t.Fatal(err)
	}
	if err := r.ph.AddAddr("eth0", netip.PrefixFrom(r.pip, 24)); err != nil {
		t.Fatal(err)
	}
	r.xmac = hostMAC(t, r.xh)
	r.pmac = hostMAC(t, r.ph)
	// The XDP program takes everything, ARP included: the peer must know
	// the xsk side's MAC without asking.
	if _, err := r.ph.Exec("ip", "neigh", "replace", r.xip.String(), "lladdr", r.xmac.String(), "dev", "eth0", "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	err = r.xh.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err == nil {
			r.ifindex = ifi.Index
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hostMAC(t testing.TB, h *lab.Host) net.HardwareAddr {
	t.Helper()
	out, err := h.Exec("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	mac, err := net.ParseMAC(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

// open opens an AF_XDP socket on the xsk side's eth0.
func (r *rig) open(t testing.TB, queue int, cfg Config) *Socket {
	t.Helper()
	var s *Socket
	err := r.xh.Do(func() (err error) {
		s, err = Open("eth0", queue, cfg)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// xdpProgram is a redirect-to-XSKMAP program by queue. With meta, it first
// grows the metadata area by 8 bytes (bpf_xdp_adjust_meta(-8)) and writes
// metaMagic and the rx queue index there.
type xdpProgram struct {
	prog *ebpf.Program
	xsks *ebpf.Map
	link link.Link
}

const metaMagic = 0x5eed1234

func newXDPProgram(t testing.TB, queues int, meta bool) *xdpProgram {
	t.Helper()
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(queues)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xsks.Close() })
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	if meta {
		if err := features.HaveProgramHelper(ebpf.XDP, asm.FnXdpAdjustMeta); err != nil {
			t.Skipf("XDP metadata: this kernel refuses bpf_xdp_adjust_meta (%v); spud steers with a shim there", err)
		}
		insns = append(insns,
			asm.Mov.Imm(asm.R2, -8),
			asm.FnXdpAdjustMeta.Call(),
			asm.JNE.Imm(asm.R0, 0, "redirect"),
			asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R6, 8, asm.Word), // data_meta
			asm.Mov.Reg(asm.R4, asm.R3),
			asm.Add.Imm(asm.R4, 8),
			asm.JGT.Reg(asm.R4, asm.R2, "redirect"),
			asm.StoreImm(asm.R3, 0, metaMagic, asm.Word),
			asm.LoadMem(asm.R5, asm.R6, 16, asm.Word), // rx_queue_index
			asm.StoreMem(asm.R3, 4, asm.R5, asm.Word),
		)
	}
	insns = append(insns,
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word).WithSymbol("redirect"),
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.Mov.Imm(asm.R3, 2), // XDP_PASS when the queue has no socket
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xsk_test", Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	return &xdpProgram{prog: prog, xsks: xsks}
}

// attach attaches the program to the xsk side's eth0 in driver (native) or
// generic mode.
func (p *xdpProgram) attach(t testing.TB, r *rig, generic bool) {
	t.Helper()
	flags := link.XDPDriverMode
	if generic {
		flags = link.XDPGenericMode
	}
	err := r.xh.Do(func() (err error) {
		p.link, err = link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: r.ifindex, Flags: flags})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.link.Close() })
}

func (p *xdpProgram) register(t testing.TB, queue int, s *Socket) {
	t.Helper()
	if err := p.xsks.Put(uint32(queue), uint32(s.FD())); err != nil {
		t.Fatalf("register queue %d: %v", queue, err)
	}
}

// buildUDP writes an Ethernet+IPv4+UDP frame into b and returns its length.
func buildUDP(b []byte, src, dst net.HardwareAddr, sip, dip netip.Addr, sport, dport uint16, payload []byte) int {
	copy(b[0:6], dst)
	copy(b[6:12], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint32(ip[4:], 0)
	ip[8], ip[9] = 64, 17
	ip[10], ip[11] = 0, 0
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := b[34:42]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	binary.BigEndian.PutUint16(udp[6:], 0) // no checksum: allowed over IPv4
	copy(b[42:], payload)
	return 42 + len(payload)
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// parseUDP returns the UDP ports and payload of an Ethernet+IPv4+UDP frame.
func parseUDP(p []byte) (sport, dport uint16, payload []byte, err error) {
	if len(p) < 42 || binary.BigEndian.Uint16(p[12:]) != 0x0800 || p[14]>>4 != 4 || p[23] != 17 {
		return 0, 0, nil, fmt.Errorf("not Ethernet/IPv4/UDP (%d bytes)", len(p))
	}
	ihl := int(p[14]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(p[16:]))
	if 14+tot > len(p) || ihl < 20 || tot < ihl+8 {
		return 0, 0, nil, fmt.Errorf("bad IPv4 lengths")
	}
	u := p[14+ihl : 14+tot]
	return binary.BigEndian.Uint16(u[0:]), binary.BigEndian.Uint16(u[2:]), u[8:], nil
}
