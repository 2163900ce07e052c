package steer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/asavie/xdp"
	"github.com/cilium/ebpf"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/internal/privileged"
	"golang.org/x/sys/unix"
)

// xdpMd is struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// env is a namespace with a 4-queue veth pair a/b, the program loaded and
// configured, and an AF_XDP socket on each of a's queues, so that test
// runs "arriving" on a can be redirected. Test runs resolve the ingress
// ifindex in the calling thread's namespace: call run inside env.ns.do.
type env struct {
	ns      *testNS
	carrier Carrier
	prog    *Program
	cls     *Classifier
	ifindex int
	fn      anchor.Function
	spus    *anchor.Map
	xsks    []*xdp.Socket
}

var (
	local4  = netip.MustParseAddr("198.18.0.2")
	peer4   = netip.MustParseAddr("198.19.7.9")
	local6  = netip.MustParseAddr("2001:db8::2")
	peer6   = netip.MustParseAddr("2001:db8:77::9")
	inside4 = netip.MustParseAddr("198.18.10.5") // a protected host
	remote4 = netip.MustParseAddr("198.18.20.7") // behind the peer
	inside6 = netip.MustParseAddr("2001:db8:10::5")
	remote6 = netip.MustParseAddr("2001:db8:20::7")
)

// forCarriers runs f as a subtest per carrier, skipping, with the reason,
// those this kernel refuses.
func forCarriers(t *testing.T, f func(t *testing.T, c Carrier)) {
	for _, c := range Carriers {
		t.Run(c.String(), func(t *testing.T) {
			requireCarrier(t, c)
			f(t, c)
		})
	}
}

func requireCarrier(t testing.TB, c Carrier) {
	t.Helper()
	privileged.Require(t)
	if err := c.Supported(); err != nil {
		t.Skip(err)
	}
}

func newEnv(t testing.TB, c Carrier) *env {
	t.Helper()
	privileged.Require(t, "ip")
	requireCarrier(t, c)
	e := &env{ns: newNS(t), carrier: c}
	e.ns.ip(t, "link", "add", "name", "a", "numrxqueues", "4", "numtxqueues", "4",
		"type", "veth", "peer", "name", "b", "numrxqueues", "4", "numtxqueues", "4")
	e.ns.ip(t, "link", "set", "dev", "a", "up")
	e.ns.ip(t, "link", "set", "dev", "b", "up")

	prog, err := Load(Options{Carrier: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	e.prog = prog
	e.cls = prog.NewClassifier()

	r := rand.New(rand.NewPCG(uint64(len(t.Name())), 77))
	var hk anchor.HashKey
	for i := range hk {
		hk[i] = byte(r.Uint32())
	}
	e.fn, _ = anchor.NewFunction(hk, 256)
	e.spus, _ = anchor.NewMap(256, []uint16{0, 1, 2, 3})
	must(t, prog.SetConfig(Config{Anchor: e.fn}, e.spus))
	must(t, prog.AddLocalAddr(local4))
	must(t, prog.AddLocalAddr(local6))

	e.ns.do(t, func() {
		ifc, err := net.InterfaceByName("a")
		if err != nil {
			t.Error(err)
			return
		}
		e.ifindex = ifc.Index
		for q := range 4 {
			s, err := xdp.NewSocket(ifc.Index, q, nil)
			if err != nil {
				t.Errorf("AF_XDP socket on a queue %d: %v", q, err)
				return
			}
			t.Cleanup(func() { s.Close() })
			e.xsks = append(e.xsks, s)
			if err := prog.RegisterXSK(ifc.Index, q, s.FD()); err != nil {
				t.Error(err)
				return
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	pols := []Policy{
		{Ifindex: e.ifindex, Local: pfx("198.18.10.0/24"), Remote: pfx("198.18.20.0/24"), ID: 7, LogicalSPU: 42},
		{Ifindex: e.ifindex, Local: pfx("198.18.10.0/24"), Remote: pfx("0.0.0.0/0"), ID: 8, LogicalSPU: 43},
		{Ifindex: e.ifindex, Local: pfx("198.18.10.99/32"), Remote: pfx("198.18.20.0/24"), ID: 9, Bypass: true},
		{Ifindex: e.ifindex, Local: pfx("2001:db8:10::/48"), Remote: pfx("2001:db8:20::/48"), ID: 10, LogicalSPU: 200},
		{Ifindex: e.ifindex, Local: pfx("2001:db8:10::/48"), Remote: pfx("::/0"), ID: 11, LogicalSPU: 201},
	}
	for _, p := range pols {
		must(t, prog.SetPolicy(p))
	}
	return e
}

type result struct {
	verdict uint32
	meta    Meta
	metaErr error
	metaLen int
	data    []byte // the frame after the run, without metadata
	delta   Counters
}

func (e *env) run(t *testing.T, frame []byte, queue int) (result, error) {
	before, err := e.prog.Counters()
	if err != nil {
		return result{}, err
	}
	var out xdpMd
	opts := &ebpf.RunOptions{
		Data:       frame,
		DataOut:    make([]byte, len(frame)+256),
		Context:    xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(e.ifindex), RxQueueIndex: uint32(queue)},
		ContextOut: &out,
	}
	verdict, err := e.prog.Program().Run(opts)
	if err != nil {
		return result{}, err
	}
	after, err := e.prog.Counters()
	if err != nil {
		return result{}, err
	}
	r := result{verdict: verdict, delta: after.Sub(&before), metaLen: int(out.Data), data: opts.DataOut}
	if int(out.Data) > len(opts.DataOut) {
		return r, fmt.Errorf("context says %d bytes of metadata, output has %d bytes", out.Data, len(opts.DataOut))
	}
	r.metaErr = ErrMetaShort
	switch {
	case e.carrier == CarrierMeta && out.Data > 0:
		r.data = opts.DataOut[out.Data:]
		r.meta, r.metaErr = ParseMeta(opts.DataOut[:out.Data])
	case out.Data > 0:
		return r, fmt.Errorf("carrier %s left %d bytes of XDP metadata", e.carrier, out.Data)
	case e.carrier == CarrierShim && verdict == xdpRedirect:
		if len(opts.DataOut) < MetaSize {
			return r, fmt.Errorf("redirected %d bytes, no room for a shim", len(opts.DataOut))
		}
		r.metaLen = MetaSize
		r.data = opts.DataOut[MetaSize:]
		r.meta, r.metaErr = ParseMeta(opts.DataOut[:MetaSize])
	case e.carrier == CarrierNone && verdict == xdpRedirect:
		// What the SPU will find, with the physical SPU the program would
		// have looked up (Classify leaves it to the reader).
		r.metaLen = MetaSize
		r.meta, r.metaErr = e.cls.Classify(opts.DataOut, uint32(e.ifindex), queue)
		if m := e.prog.spuMap; int(r.meta.LogicalSPU) < len(m) {
			r.meta.PhysicalSPU = m[r.meta.LogicalSPU]
		}
	}
	return r, nil
}

// only reports whether c is the one counter that moved, by one.
func (r *result) only(c Counter) bool {
	for i, v := range r.delta {
		if (Counter(i) == c) != (v == 1) || v > 1 {
			return false
		}
	}
	return true
}

const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

type steerCase struct {
	name    string
	f       frame
	verdict uint32
	counter Counter
	class   Class
	flags   MetaFlags
	logical int // -1: the anchor of the frame's ESP (anchor)
	policy  uint32
}

// anchor is the logical SPU the program gives the case's ESP frame: by
// its SPI for ESP and UDP-ESP, by the outer addresses for a fragment.
func (c *steerCase) anchor(fn *anchor.Function) uint16 {
	switch c.class {
	case ClassESP:
		return fn.LogicalSPI(binary.BigEndian.Uint32(c.f.l4))
	case ClassUDPESP:
		return fn.LogicalSPI(binary.BigEndian.Uint32(c.f.l4[8:]))
	}
	return fn.Logical(c.f.src, c.f.dst)
}

func steerCases() []steerCase {
	payload := esp(0xc0010203, 1, 32)
	marker := append([]byte{0, 0, 0, 0}, repeat(0x21, 28)...)
	c := []steerCase{
		{name: "ike", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(500, 500, repeat(1, 40))},
			verdict: xdpPass, counter: PassIKE},
		{name: "ike-natt-marker", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, marker)},
			verdict: xdpPass, counter: PassIKENATT},
		{name: "natt-keepalive", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, []byte{0xff})},
			verdict: xdpPass, counter: PassNATTKeepalive},
		{name: "esp", f: frame{src: peer4, dst: local4, proto: protoESP, l4: payload},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, logical: -1},
		{name: "udp-esp", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, payload)},
			verdict: xdpRedirect, counter: RedirectUDPESP, class: ClassUDPESP, logical: -1},
		{name: "udp-esp-nat-port", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(61234, 4500, payload)},
			verdict: xdpRedirect, counter: RedirectUDPESP, class: ClassUDPESP, logical: -1},
		{name: "esp-padded", f: frame{src: peer4, dst: local4, proto: protoESP, l4: payload, pad: 10},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, logical: -1},
		{name: "esp-vlan", f: frame{vlan: true, src: peer4, dst: local4, proto: protoESP, l4: payload},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagVLAN, logical: -1},
		{name: "esp-ipv4-options", f: frame{src: peer4, dst: local4, proto: protoESP, v4opts: 12, l4: payload},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagIPOptions, logical: -1},
		{name: "esp-ipv6", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagIPv6, logical: -1},
		{name: "esp-ipv6-ext", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload,
			exts: []ext{{typ: 0, size: 8}, {typ: 60, size: 16}, {typ: 43, size: 24}}},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagIPv6 | FlagIPOptions, logical: -1},
		{name: "udp-esp-ipv6-ext-vlan", f: frame{vlan: true, src: peer6, dst: local6, proto: protoUDP, l4: udp(4500, 4500, payload),
			exts: []ext{{typ: 0, size: 8}, {typ: 60, size: 8}}},
			verdict: xdpRedirect, counter: RedirectUDPESP, class: ClassUDPESP, flags: FlagIPv6 | FlagIPOptions | FlagVLAN, logical: -1},
		{name: "ike-ipv6", f: frame{src: peer6, dst: local6, proto: protoUDP, l4: udp(500, 500, repeat(1, 40))},
			verdict: xdpPass, counter: PassIKE},
		{name: "esp-transit", f: frame{src: peer4, dst: netip.MustParseAddr("198.18.99.1"), proto: protoESP, l4: payload},
			verdict: xdpPass, counter: PassTransitESP},
		{name: "esp-transit-ipv6", f: frame{src: peer6, dst: netip.MustParseAddr("2001:db8:99::1"), proto: protoESP, l4: payload},
			verdict: xdpPass, counter: PassTransitESP},
		{name: "udp-esp-transit", f: frame{src: peer4, dst: netip.MustParseAddr("198.18.99.1"), proto: protoUDP, l4: udp(4500, 4500, payload)},
			verdict: xdpPass, counter: PassNoPolicy},
		{name: "esp-frag-first", f: frame{src: peer4, dst: local4, proto: protoESP, v4frag: 0x2000, l4: payload},
			verdict: xdpRedirect, counter: RedirectESPFragment, class: ClassESPFragment, flags: FlagFragment, logical: -1},
		{name: "esp-frag-later", f: frame{src: peer4, dst: local4, proto: protoESP, v4frag: 185, l4: repeat(9, 3)},
			verdict: xdpRedirect, counter: RedirectESPFragment, class: ClassESPFragment, flags: FlagFragment, logical: -1},
		{name: "esp-frag-ipv6-first", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload,
			exts: []ext{{typ: 44, more: true}}},
			verdict: xdpRedirect, counter: RedirectESPFragment, class: ClassESPFragment, flags: FlagIPv6 | FlagIPOptions | FlagFragment, logical: -1},
		{name: "esp-frag-ipv6-later", f: frame{src: peer6, dst: local6, proto: protoESP, l4: repeat(9, 5),
			exts: []ext{{typ: 0, size: 8}, {typ: 44, fragOff: 100}}},
			verdict: xdpRedirect, counter: RedirectESPFragment, class: ClassESPFragment, flags: FlagIPv6 | FlagIPOptions | FlagFragment, logical: -1},
		{name: "esp-ipv6-atomic-fragment", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload,
			exts: []ext{{typ: 44}}},
			verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagIPv6 | FlagIPOptions, logical: -1},
		{name: "udp-frag", f: frame{src: peer4, dst: local4, proto: protoUDP, v4frag: 0x2000, l4: udp(500, 500, repeat(1, 40))},
			verdict: xdpPass, counter: PassUDPFragment},
		{name: "udp-frag-later", f: frame{src: peer4, dst: local4, proto: protoUDP, v4frag: 100, l4: repeat(1, 40)},
			verdict: xdpPass, counter: PassUDPFragment},
		{name: "udp-frag-ipv6", f: frame{src: peer6, dst: local6, proto: protoUDP, l4: repeat(1, 40),
			exts: []ext{{typ: 44, fragOff: 10}}},
			verdict: xdpPass, counter: PassUDPFragment},
		{name: "cleartext", f: frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 20)},
			verdict: xdpRedirect, counter: RedirectCleartext, class: ClassCleartext, logical: 42, policy: 7},
		{name: "cleartext-wide", f: frame{src: inside4, dst: netip.MustParseAddr("198.19.200.1"), proto: protoUDP, l4: udp(53, 53, repeat(0, 20))},
			verdict: xdpRedirect, counter: RedirectCleartext, class: ClassCleartext, logical: 43, policy: 8},
		{name: "cleartext-fragment", f: frame{src: inside4, dst: remote4, proto: protoUDP, v4frag: 0x2000, l4: udp(9, 9, repeat(0, 20))},
			verdict: xdpRedirect, counter: RedirectCleartext, class: ClassCleartext, flags: FlagFragment, logical: 42, policy: 7},
		{name: "cleartext-ipv6", f: frame{src: inside6, dst: remote6, proto: protoTCP, l4: repeat(0, 20)},
			verdict: xdpRedirect, counter: RedirectCleartext, class: ClassCleartext, flags: FlagIPv6, logical: 200, policy: 10},
		{name: "cleartext-ipv6-wide", f: frame{src: inside6, dst: netip.MustParseAddr("2001:db8:99::1"), proto: protoTCP, l4: repeat(0, 20)},
			verdict: xdpRedirect, counter: RedirectCleartext, class: ClassCleartext, flags: FlagIPv6, logical: 201, policy: 11},
		{name: "cleartext-bypass", f: frame{src: netip.MustParseAddr("198.18.10.99"), dst: remote4, proto: protoTCP, l4: repeat(0, 20)},
			verdict: xdpPass, counter: PassBypass},
		{name: "cleartext-no-policy", f: frame{src: netip.MustParseAddr("198.18.11.1"), dst: remote4, proto: protoTCP, l4: repeat(0, 20)},
			verdict: xdpPass, counter: PassNoPolicy},
		{name: "cleartext-multicast", f: frame{src: inside4, dst: netip.MustParseAddr("224.0.0.5"), proto: 89, l4: repeat(0, 20)},
			verdict: xdpPass, counter: PassLocalScope},
		{name: "cleartext-broadcast", f: frame{src: inside4, dst: netip.MustParseAddr("255.255.255.255"), proto: protoUDP, l4: udp(68, 67, repeat(0, 20))},
			verdict: xdpPass, counter: PassLocalScope},
		{name: "cleartext-ipv6-link-local", f: frame{src: netip.MustParseAddr("fe80::1"), dst: remote6, proto: 58, l4: repeat(0, 20)},
			verdict: xdpPass, counter: PassLocalScope},
		{name: "cleartext-ipv6-multicast", f: frame{src: inside6, dst: netip.MustParseAddr("ff02::1:ff00:1"), proto: 58, l4: repeat(0, 20)},
			verdict: xdpPass, counter: PassLocalScope},
		{name: "qinq", f: frame{qinq: true, src: peer4, dst: local4, proto: protoESP, l4: payload},
			verdict: xdpPass, counter: PassNotIP},
		{name: "udp-length-past-ip", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: func() []byte {
			u := udp(4500, 4500, payload)
			u[5] += 4
			return u
		}()}, verdict: xdpPass, counter: PassBadUDP},
		{name: "udp-length-short", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: func() []byte {
			u := udp(4500, 4500, payload)
			u[4], u[5] = 0, 7
			return u
		}()}, verdict: xdpPass, counter: PassBadUDP},
		{name: "esp-too-short", f: frame{src: peer4, dst: local4, proto: protoESP, l4: esp(1, 1, 0)[:7]},
			verdict: xdpPass, counter: PassBadESP},
		{name: "udp-esp-too-short", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, []byte{1, 2, 3, 4, 5})},
			verdict: xdpPass, counter: PassBadESP},
		{name: "udp-4500-two-bytes", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, []byte{0xff, 0xff})},
			verdict: xdpPass, counter: PassBadESP},
		{name: "udp-4500-one-byte-not-ff", f: frame{src: peer4, dst: local4, proto: protoUDP, l4: udp(4500, 4500, []byte{0})},
			verdict: xdpPass, counter: PassBadESP},
		{name: "ipv6-too-many-ext", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload, exts: func() []ext {
			var x []ext
			for range 9 {
				x = append(x, ext{typ: 60, size: 8})
			}
			return x
		}()}, verdict: xdpPass, counter: PassBadExtHdr},
		{name: "ipv6-eight-ext", f: frame{src: peer6, dst: local6, proto: protoESP, l4: payload, exts: func() []ext {
			var x []ext
			for range 8 {
				x = append(x, ext{typ: 60, size: 8})
			}
			return x
		}()}, verdict: xdpRedirect, counter: RedirectESP, class: ClassESP, flags: FlagIPv6 | FlagIPOptions, logical: -1},
	}
	return c
}

// malformed frames, as bytes.
func malformedCases() []struct {
	name    string
	b       []byte
	counter Counter
} {
	good := frame{src: peer4, dst: local4, proto: protoESP, l4: esp(1, 1, 16)}.bytes()
	good6 := frame{src: peer6, dst: local6, proto: protoESP, l4: esp(1, 1, 16)}.bytes()
	mod := func(b []byte, f func([]byte)) []byte {
		c := append([]byte{}, b...)
		f(c)
		return c
	}
	arp := append(append(append([]byte{}, macB...), macA...), 0x08, 0x06)
	arp = append(arp, repeat(0, 28)...)
	return []struct {
		name    string
		b       []byte
		counter Counter
	}{
		{"arp", arp, PassNotIP},
		{"ipv4-version-6", mod(good, func(b []byte) { b[14] = 0x65 }), PassBadVersion},
		{"ipv6-version-4", mod(good6, func(b []byte) { b[14] = 0x45 }), PassBadVersion},
		{"ihl-4", mod(good, func(b []byte) { b[14] = 0x44 }), PassBadIHL},
		{"ihl-0", mod(good, func(b []byte) { b[14] = 0x40 }), PassBadIHL},
		{"ihl-past-total", mod(good, func(b []byte) { b[14] = 0x4f }), PassBadLength},
		{"total-length-past-frame", mod(good, func(b []byte) { b[17] += 1 }), PassBadLength},
		{"total-length-below-header", mod(good, func(b []byte) { b[16], b[17] = 0, 19 }), PassBadLength},
		{"ipv6-payload-past-frame", mod(good6, func(b []byte) { b[19] += 1 }), PassBadLength},
		{"ipv6-jumbo", mod(good6, func(b []byte) { b[18], b[19] = 0, 0 }), PassBadLength},
		{"ipv6-ext-past-payload", frame{src: peer6, dst: local6, proto: protoESP, l4: nil,
			exts: []ext{{typ: 60, size: 16}}}.bytes()[:14+40+8], PassBadLength},
		{"ipv6-ext-len-past-payload", mod(frame{src: peer6, dst: local6, proto: protoESP, l4: esp(1, 1, 8),
			exts: []ext{{typ: 60, size: 8}}}.bytes(), func(b []byte) { b[55] = 40 }), PassBadExtHdr},
	}
}

func TestPrivilegedSteerClasses(t *testing.T) {
	forCarriers(t, func(t *testing.T, c Carrier) {
		e := newEnv(t, c)
		e.ns.do(t, func() {
			for _, c := range steerCases() {
				b := c.f.bytes()
				r, err := e.run(t, b, 1)
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
					continue
				}
				if r.verdict != c.verdict || !r.only(c.counter) {
					t.Errorf("%s: verdict %d counters {%v}, want %d and %s", c.name, r.verdict, r.delta, c.verdict, c.counter)
					continue
				}
				if c.verdict != xdpRedirect {
					if r.metaLen != 0 || string(r.data) != string(b) {
						t.Errorf("%s: passed with %d bytes of metadata, frame changed %v", c.name, r.metaLen, string(r.data) != string(b))
					}
					continue
				}
				if r.metaErr != nil || r.metaLen != MetaSize {
					t.Errorf("%s: metadata (%d bytes): %v", c.name, r.metaLen, r.metaErr)
					continue
				}
				logical := uint16(c.logical)
				if c.logical < 0 {
					logical = c.anchor(&e.fn)
				}
				want := Meta{LogicalSPU: logical, PhysicalSPU: e.spus.Physical(logical), PolicyID: c.policy,
					L3Offset: uint16(c.f.l3()), L4Offset: uint16(c.f.l4off()), RxQueue: 1, Class: c.class, Flags: c.flags}
				if r.meta != want {
					t.Errorf("%s: meta\n got %+v\nwant %+v", c.name, r.meta, want)
				}
				if string(r.data) != string(b) {
					t.Errorf("%s: the frame changed", c.name)
				}
			}
			for _, c := range malformedCases() {
				r, err := e.run(t, c.b, 0)
				if err != nil {
					t.Errorf("%s: %v", c.name, err)
					continue
				}
				if r.verdict != xdpPass || !r.only(c.counter) {
					t.Errorf("%s: verdict %d counters {%v}, want pass and %s", c.name, r.verdict, r.delta, c.counter)
				}
			}
		})
	})
}

// TestPrivilegedSteerTruncated cuts every steered frame at every length
// the kernel accepts (14 bytes up: BPF_PROG_TEST_RUN refuses shorter XDP
// input), once as is and once with the IP length fixed to the cut, and
// requires a counted pass, or for fixed lengths a redirect with sane
// metadata, and never a drop or abort.
func TestPrivilegedSteerTruncated(t *testing.T) {
	forCarriers(t, func(t *testing.T, c Carrier) {
		e := newEnv(t, c)
		e.ns.do(t, func() {
			runs, redirected := 0, 0
			for _, c := range steerCases() {
				full := c.f.bytes()
				for n := 14; n < len(full); n++ {
					for _, fix := range []bool{false, true} {
						b := append([]byte{}, full[:n]...)
						if fix && !fixLength(b, c.f) {
							continue
						}
						r, err := e.run(t, b, 2)
						if err != nil {
							t.Errorf("%s cut %d fix %v: %v", c.name, n, fix, err)
							return
						}
						runs++
						moved := 0
						for _, v := range r.delta {
							moved += int(v)
						}
						if moved != 1 {
							t.Errorf("%s cut %d fix %v: %d counters moved: {%v}", c.name, n, fix, moved, r.delta)
						}
						switch r.verdict {
						case xdpPass:
							if !fix && r.delta[RedirectESP]+r.delta[RedirectUDPESP]+r.delta[RedirectCleartext]+r.delta[RedirectESPFragment] != 0 {
								t.Errorf("%s cut %d: counted as redirect", c.name, n)
							}
						case xdpRedirect:
							redirected++
							if !fix && n < len(full)-c.f.pad {
								t.Errorf("%s cut %d: redirected a frame shorter than its IP length", c.name, n)
							}
							if r.metaErr != nil || int(r.meta.L4Offset) > n {
								t.Errorf("%s cut %d fix: redirected with meta %+v, %v", c.name, n, r.meta, r.metaErr)
							}
						default:
							t.Errorf("%s cut %d fix %v: verdict %d", c.name, n, fix, r.verdict)
						}
					}
				}
			}
			t.Logf("%d truncated frames run, %d of them still whole enough to redirect", runs, redirected)
			// Below an Ethernet header the kernel refuses the test run itself.
			if _, err := e.run(t, make([]byte, 13), 0); !errors.Is(err, unix.EINVAL) {
				t.Errorf("test run of a 13-byte frame: %v, want EINVAL", err)
			}
		})
	})
}

// fixLength sets the IP length of a cut frame to what is left, if the IP
// length field itself survived the cut.
func fixLength(b []byte, f frame) bool {
	l3 := f.l3()
	if f.src.Is4() {
		if len(b) < l3+4 {
			return false
		}
		n := len(b) - l3
		b[l3+2], b[l3+3] = byte(n>>8), byte(n)
		return true
	}
	if len(b) < l3+6 || len(b)-l3-40 <= 0 {
		return false
	}
	n := len(b) - l3 - 40
	b[l3+4], b[l3+5] = byte(n>>8), byte(n)
	return true
}

// TestPrivilegedSteerQueues checks the rx queue index in the metadata, the
// fallback of a queue without a socket, fail-closed, and that a test run
// on a queue the device does not have is refused.
func TestPrivilegedSteerQueues(t *testing.T) {
	forCarriers(t, func(t *testing.T, c Carrier) {
		e := newEnv(t, c)
		espFrame := frame{src: peer4, dst: local4, proto: protoESP, l4: esp(1, 1, 16)}.bytes()
		clear := frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 20)}.bytes()
		e.ns.do(t, func() {
			for q := range 4 {
				r, err := e.run(t, espFrame, q)
				if err != nil || r.verdict != xdpRedirect || r.meta.RxQueue != uint16(q) {
					t.Errorf("queue %d: verdict %d meta %+v err %v", q, r.verdict, r.meta, err)
				}
			}
			if _, err := e.run(t, espFrame, 4); !errors.Is(err, unix.EINVAL) {
				t.Errorf("test run on queue 4 of a 4-queue device: %v, want EINVAL", err)
			}

			must(t, e.prog.UnregisterXSK(e.ifindex, 3))
			r, err := e.run(t, espFrame, 3)
			if err != nil || r.verdict != xdpPass || !r.only(PassNoXSK) || r.metaLen != 0 {
				t.Errorf("ESP on a queue without socket: verdict %d {%v} meta %d bytes, err %v", r.verdict, r.delta, r.metaLen, err)
			}
			r, err = e.run(t, clear, 3)
			if err != nil || r.verdict != xdpPass || !r.only(PassNoXSK) {
				t.Errorf("cleartext on a queue without socket: verdict %d {%v}, err %v", r.verdict, r.delta, err)
			}
			must(t, e.prog.SetConfig(Config{Anchor: e.fn, FailClosed: true}, e.spus))
			r, err = e.run(t, clear, 3)
			if err != nil || r.verdict != xdpDrop || !r.only(DropNoXSK) {
				t.Errorf("fail-closed cleartext on a queue without socket: verdict %d {%v}, err %v", r.verdict, r.delta, err)
			}
			r, err = e.run(t, espFrame, 3)
			if err != nil || r.verdict != xdpPass || !r.only(PassNoXSK) {
				t.Errorf("fail-closed ESP on a queue without socket: verdict %d {%v}, err %v", r.verdict, r.delta, err)
			}
			// Back on: the socket of queue 3 is registered again.
			must(t, e.prog.RegisterXSK(e.ifindex, 3, e.xsks[3].FD()))
			if r, err = e.run(t, espFrame, 3); err != nil || r.verdict != xdpRedirect {
				t.Errorf("after re-register: verdict %d err %v", r.verdict, err)
			}

			// A test run "redirects" without delivering: the socket stays empty.
			s := e.xsks[0]
			s.Fill(s.GetDescs(s.NumFreeFillSlots()))
			if r, err = e.run(t, espFrame, 0); err != nil || r.verdict != xdpRedirect {
				t.Errorf("queue 0: verdict %d err %v", r.verdict, err)
			}
			if n, _, err := s.Poll(10); err != nil || n != 0 {
				t.Errorf("after a test-run redirect the AF_XDP socket received %d frames (err %v), want 0", n, err)
			}
		})
	})
}

func TestPrivilegedSteerUnconfigured(t *testing.T) {
	privileged.Require(t)
	p, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	must(t, p.AddLocalAddr(local4))
	b := frame{src: peer4, dst: local4, proto: protoESP, l4: esp(1, 1, 16)}.bytes()
	before, _ := p.Counters()
	out := xdpMd{}
	v, err := p.Program().Run(&ebpf.RunOptions{Data: b, Context: xdpMd{DataEnd: uint32(len(b)), IngressIfindex: 1}, ContextOut: &out})
	after, _ := p.Counters()
	d := after.Sub(&before)
	if err != nil || v != xdpPass || d[PassUnconfigured] != 1 {
		t.Errorf("ESP before SetConfig: verdict %d {%v} err %v, want pass and pass_unconfigured", v, d, err)
	}
	// An output context without an input one: the kernel makes a zeroed
	// context, whose data_end of 0 runs the program on an empty frame.
	// Older kernels (6.1) refuse that context instead (EINVAL): either is
	// safe, neither runs the program on the frame.
	before, _ = p.Counters()
	v, err = p.Program().Run(&ebpf.RunOptions{Data: b, ContextOut: &out})
	after, _ = p.Counters()
	if d := after.Sub(&before); errors.Is(err, unix.EINVAL) {
		t.Logf("ContextOut without Context: refused by this kernel (%v)", err)
	} else if err != nil || v != xdpPass || d[PassTruncated] != 1 || out.DataEnd != 0 {
		t.Errorf("ContextOut without Context: verdict %d {%v} data_end %d err %v; expected an empty frame", v, d, out.DataEnd, err)
	}

	// The map and config checks.
	f, _ := anchor.NewFunction(anchor.HashKey{}, 16)
	m8, _ := anchor.NewMap(8, []uint16{0})
	m16, _ := anchor.NewMap(16, []uint16{0, 1})
	if err := p.SetSPUMap(m16); err == nil {
		t.Error("SetSPUMap accepted before SetConfig")
	}
	if err := p.SetConfig(Config{Anchor: f}, m8); err == nil {
		t.Error("SetConfig accepted a map of 8 with L=16")
	}
	must(t, p.SetConfig(Config{Anchor: f}, m16))
	if err := p.SetSPUMap(m8); err == nil {
		t.Error("SetSPUMap accepted a map of 8 with L=16")
	}
	m16b, _, _ := m16.Rebuild([]uint16{1, 2})
	must(t, p.SetSPUMap(m16b))
	var got uint32
	must(t, p.maps.SpuMap.Lookup(uint32(0), &got))
	if got != uint32(m16b.Physical(0)) {
		t.Errorf("spu_map[0] = %d after rebuild, want %d", got, m16b.Physical(0))
	}
	if err := p.SetConfig(Config{}, m16); err == nil {
		t.Error("SetConfig accepted L=0")
	}
	addrs, err := p.LocalAddrs()
	if err != nil || len(addrs) != 1 || addrs[0] != local4 {
		t.Errorf("LocalAddrs = %v, %v", addrs, err)
	}
	must(t, p.DeleteLocalAddr(local4))
	if err := p.DeleteLocalAddr(local4); err == nil {
		t.Error("deleting a missing local address succeeded")
	}
}

// TestPrivilegedAnchorAgreement runs the XDP program over ESP, UDP-ESP and
// ESP fragment frames between thousands of random address pairs with
// random SPIs, IPv4 and IPv6, in both directions, and checks that the
// logical and physical SPU in the metadata are what dataplane/anchor
// computes (ESP and UDP-ESP by their SPI, LogicalSPI; fragments by the
// address hash), and what the Go classifier of the none carrier finds.
// Three values of L, one not a power of two; for the powers of two the
// SPI's anchor is also the logical SPU SPICodec encodes in it.
func TestPrivilegedAnchorAgreement(t *testing.T) {
	forCarriers(t, func(t *testing.T, c Carrier) {
		e := newEnv(t, c)
		r := rand.New(rand.NewPCG(2024, 11))
		const pairs = 2500 // per L; each run in both directions
		e.ns.do(t, func() {
			for _, l := range []int{256, 100, 4096} {
				var hk anchor.HashKey
				for i := range hk {
					hk[i] = byte(r.Uint32())
				}
				fn, _ := anchor.NewFunction(hk, l)
				codec, codecErr := fn.Codec()
				spus := make([]uint16, 0, 5)
				for i := range 5 {
					spus = append(spus, uint16(10+i*3))
				}
				m, _ := anchor.NewMap(l, spus)
				must(t, e.prog.SetConfig(Config{Anchor: fn}, m))
				checked := map[string]int{}
				seen := map[bool]map[uint16]bool{false: {}, true: {}}
				for i := range pairs {
					is4 := i%2 == 0
					a, b := randEndpoint(r, is4), randEndpoint(r, is4)
					spi := r.Uint32() | 0x100 // not reserved, not the non-ESP marker
					kind := []string{"esp", "udp-esp", "fragment"}[i%3]
					want := fn.LogicalSPI(spi)
					if kind == "fragment" {
						want = fn.Logical(a, b)
					} else if codecErr == nil && codec.Logical(spi) != want {
						t.Fatalf("L=%d spi 0x%08x: LogicalSPI %d, SPICodec.Logical %d", l, spi, want, codec.Logical(spi))
					}
					for _, dir := range [][2]netip.Addr{{a, b}, {b, a}} {
						src, dst := dir[0], dir[1]
						must(t, e.prog.AddLocalAddr(dst))
						f := frame{src: src, dst: dst, proto: protoESP, l4: esp(spi, 1, 8)}
						switch kind {
						case "udp-esp":
							f.proto, f.l4 = protoUDP, udp(uint16(1024+r.IntN(60000)), 4500, esp(spi, 1, 8))
						case "fragment":
							if is4 {
								f.v4frag = 0x2000 // the first: it has the SPI, which does not count
							} else {
								f.exts = []ext{{typ: 44, more: true}}
							}
						}
						b := f.bytes()
						res, err := e.run(t, b, 0)
						cm, cerr := e.cls.Classify(b, uint32(e.ifindex), 0)
						must(t, e.prog.DeleteLocalAddr(dst))
						if err != nil || res.verdict != xdpRedirect || res.metaErr != nil {
							t.Fatalf("%s %v -> %v: verdict %d err %v meta %v", kind, src, dst, res.verdict, err, res.metaErr)
						}
						if res.meta.LogicalSPU != want || res.meta.PhysicalSPU != m.Physical(want) {
							t.Fatalf("L=%d %s spi 0x%08x %v -> %v: BPF says logical %d physical %d, Go %d physical %d",
								l, kind, spi, src, dst, res.meta.LogicalSPU, res.meta.PhysicalSPU, want, m.Physical(want))
						}
						if cerr != nil || cm.LogicalSPU != want {
							t.Fatalf("L=%d %s spi 0x%08x %v -> %v: the classifier says logical %d (%v), want %d",
								l, kind, spi, src, dst, cm.LogicalSPU, cerr, want)
						}
						checked[kind+map[bool]string{true: "/v4", false: "/v6"}[is4]]++
						seen[kind == "fragment"][want] = true
					}
				}
				t.Logf("L=%d: BPF, classifier and Go agree on %v frames; %d distinct logical SPUs by SPI, %d by addresses",
					l, checked, len(seen[false]), len(seen[true]))
				for _, byAddr := range []bool{false, true} {
					n := pairs / 3
					if byAddr {
						n = pairs - 2*pairs/3
					}
					if exp := min(l, n) * 6 / 10; len(seen[byAddr]) < exp {
						t.Errorf("L=%d: only %d distinct logical SPUs over %d pairs (by addresses: %v)", l, len(seen[byAddr]), n, byAddr)
					}
				}
			}
		})
	})
}

// randEndpoint returns a random unicast address that the program does not
// treat as link scope (it anchors ESP whatever the scope, but keeps the
// test to plausible endpoints).
func randEndpoint(r *rand.Rand, is4 bool) netip.Addr {
	if is4 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] = 0x20 | b[0]&0x1f // 2000::/3
	return netip.AddrFrom16(b)
}

// TestPrivilegedClassifyAgrees is the none carrier's safety net: the Go
// classifier, over the program's real maps, must find what the program
// itself writes (meta or shim carrier, whichever this kernel allows) for
// the table frames and thousands of random mutations of them (bytes
// flipped in the headers, frames cut, lengths fixed up): the same Meta
// for every frame the program redirects, ErrNotSteered for every frame
// it passes. The classifier allocates nothing.
func TestPrivilegedClassifyAgrees(t *testing.T) {
	c := CarrierMeta
	if CarrierMeta.Supported() != nil {
		c = CarrierShim
	}
	e := newEnv(t, c)
	r := rand.New(rand.NewPCG(7, 13))
	e.ns.do(t, func() {
		var frames [][]byte
		for _, sc := range steerCases() {
			full := sc.f.bytes()
			frames = append(frames, full)
			for range 200 {
				b := append([]byte{}, full...)
				for range 1 + r.IntN(3) {
					b[r.IntN(min(len(b), 80))] ^= byte(1 << r.IntN(8))
				}
				if r.IntN(4) == 0 {
					b = b[:14+r.IntN(len(b)-14)]
					if r.IntN(2) == 0 {
						fixLength(b, sc.f)
					}
				}
				frames = append(frames, b)
			}
		}
		counts := map[bool]int{}
		for _, b := range frames {
			res, err := e.run(t, b, 2)
			if err != nil {
				t.Fatal(err)
			}
			m, cerr := e.cls.Classify(b, uint32(e.ifindex), 2)
			redirected := res.verdict == xdpRedirect
			counts[redirected]++
			switch {
			case redirected && cerr != nil:
				t.Errorf("program redirected %+v, classifier: %v\n% x", res.meta, cerr, b)
			case !redirected && cerr == nil:
				t.Errorf("program passed {%v}, classifier found %+v\n% x", res.delta, m, b)
			case redirected:
				m.PhysicalSPU = e.spus.Physical(m.LogicalSPU)
				if m != res.meta {
					t.Errorf("program %+v, classifier %+v\n% x", res.meta, m, b)
				}
			}
			if t.Failed() {
				return
			}
		}
		t.Logf("%d frames: %d redirected, %d passed; the classifier agrees on every one", len(frames), counts[true], counts[false])
		esp := steerCases()[3].f.bytes()
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := e.cls.Classify(esp, uint32(e.ifindex), 0); err != nil {
				t.Fatal(err)
			}
		})
		clear := frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 20)}.bytes()
		allocs += testing.AllocsPerRun(100, func() {
			if _, err := e.cls.Classify(clear, uint32(e.ifindex), 0); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("the classifier allocates %v times per frame", allocs)
		}
	})
}

// TestPrivilegedClassifierFollowsTheSPD: the none carrier's classifier
// caches SPD answers; a policy added or deleted must show in its next
// answer, as it does in the program's.
func TestPrivilegedClassifierFollowsTheSPD(t *testing.T) {
	e := newEnv(t, CarrierNone)
	clear := frame{src: inside4, dst: remote4, proto: protoTCP, l4: repeat(0, 20)}.bytes()
	other := frame{src: inside4, dst: netip.MustParseAddr("198.18.30.1"), proto: protoTCP, l4: repeat(0, 20)}.bytes()
	policy := func(b []byte) uint32 {
		m, err := e.cls.Classify(b, uint32(e.ifindex), 0)
		if err != nil {
			return 0
		}
		return m.PolicyID
	}
	if got := policy(clear); got != 7 {
		t.Fatalf("policy %d, want 7", got)
	}
	must(t, e.prog.DeletePolicy(e.ifindex, pfx("198.18.10.0/24"), pfx("198.18.20.0/24")))
	if got := policy(clear); got != 8 {
		t.Errorf("after deleting policy 7: policy %d, want 8 (the wider one)", got)
	}
	must(t, e.prog.DeletePolicy(e.ifindex, pfx("198.18.10.0/24"), pfx("0.0.0.0/0")))
	if got := policy(clear); got != 0 {
		t.Errorf("after deleting policies 7 and 8: policy %d, want none", got)
	}
	must(t, e.prog.SetPolicy(Policy{Ifindex: e.ifindex, Local: pfx("198.18.10.0/24"), Remote: pfx("198.18.30.0/24"), ID: 12, LogicalSPU: 5}))
	if got, got2 := policy(clear), policy(other); got != 0 || got2 != 12 {
		t.Errorf("after adding policy 12: policies %d and %d, want none and 12", got, got2)
	}
}

// TestPrivilegedNoRoomForMetadata runs the meta carrier's program on a
// frame that arrives with M bytes of metadata already, for every M the
// test run accepts (a test run stands in for a driver that leaves little
// or no room): while there is room the program's 20 bytes open the
// metadata area, what was there follows; where there is none, neither for the
// metadata nor for the shim it falls back to, the frame goes to the
// kernel exactly as it came, counted meta_to_shim and pass_meta_failed.
// (The fallback that succeeds, metadata refused and a shim written, needs
// a driver without metadata room, which this machine kind does not have:
// in a test run both share one headroom. The SPU's reading of a shim under
// the meta carrier is tested in dataplane/spu.)
func TestPrivilegedNoRoomForMetadata(t *testing.T) {
	e := newEnv(t, CarrierMeta)
	b := frame{src: peer4, dst: local4, proto: protoESP, l4: esp(0x77, 1, 32)}.bytes()
	logical := e.fn.LogicalSPI(0x77)
	want := Meta{LogicalSPU: logical, PhysicalSPU: e.spus.Physical(logical), L3Offset: 14, L4Offset: 34, RxQueue: 1, Class: ClassESP}
	redirected, passed := 0, 0
	e.ns.do(t, func() {
		for m := 0; m <= 252; m += 4 {
			in := append(make([]byte, m), b...)
			for i := range m {
				in[i] = byte(i)
			}
			before, _ := e.prog.Counters()
			var out xdpMd
			opts := &ebpf.RunOptions{
				Data:       in,
				DataOut:    make([]byte, len(in)+256),
				Context:    xdpMd{Data: uint32(m), DataEnd: uint32(len(in)), IngressIfindex: uint32(e.ifindex), RxQueueIndex: 1},
				ContextOut: &out,
			}
			v, err := e.prog.Program().Run(opts)
			if errors.Is(err, unix.EINVAL) {
				continue // more metadata than this kernel's test run takes
			}
			if err != nil {
				t.Error(err)
				return
			}
			after, _ := e.prog.Counters()
			d := after.Sub(&before)
			switch v {
			case xdpRedirect:
				redirected++
				// The area grows at its front: the program's bytes, then
				// what was there.
				got, perr := ParseMeta(opts.DataOut[:MetaSize])
				if int(out.Data) != m+MetaSize || perr != nil || got != want || string(opts.DataOut[MetaSize:MetaSize+m]) != string(in[:m]) {
					t.Errorf("M=%d: redirected with %d bytes of metadata, %+v, %v", m, out.Data, got, perr)
				}
			case xdpPass:
				passed++
				if d[MetaToShim] != 1 || d[PassMetaFailed] != 1 || int(out.Data) != m || string(opts.DataOut) != string(in) {
					t.Errorf("M=%d: passed with counters {%v}, %d bytes of metadata, changed %v", m, d, out.Data, string(opts.DataOut) != string(in))
				}
			default:
				t.Errorf("M=%d: verdict %d", m, v)
			}
		}
	})
	t.Logf("%d runs redirected with room for the metadata, %d passed without", redirected, passed)
	if redirected == 0 || passed == 0 {
		t.Errorf("the test run never reached the case it is for: %d redirected, %d passed", redirected, passed)
	}
}
