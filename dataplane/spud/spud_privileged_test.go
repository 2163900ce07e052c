package spud_test

import (
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// pair is a lab line with spud on both gateways.
type pair struct {
	ln   *lab.Line
	a, b *daemons.Spud
}

func startPair(t *testing.T, lo lab.LineOptions, o daemons.SpudOptions) *pair {
	t.Helper()
	if lo.GatewayLinks.Queues == 0 {
		lo.GatewayLinks.Queues = 2
	}
	ln := labtest.Line(t, lo, "ping")
	p := &pair{ln: ln}
	var err error
	if p.a, err = daemons.StartSpud(ln.GwA, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.a.Stop() })
	if p.b, err = daemons.StartSpud(ln.GwB, o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.b.Stop() })
	return p
}

// tunnel is a static (manually keyed) tunnel between the two gateways.
type tunnel = daemons.StaticTunnel

func newTunnel(reqid uint32, aEnd, bEnd netip.Addr, aNets, bNets []netip.Prefix, suite ipsec.Suite, encap bool) *tunnel {
	return daemons.NewStaticTunnel(reqid, aEnd, bEnd, aNets, bNets, suite, encap)
}

func install(t *testing.T, p *pair, tn *tunnel) {
	t.Helper()
	if err := tn.Install(p.a, p.b); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, p *pair, tn *tunnel) {
	t.Helper()
	if err := tn.Remove(p.a, p.b); err != nil {
		t.Errorf("tunnel %d: remove: %v", tn.ReqID, err)
	}
}

// hostTunnels installs a tunnel for each i in [first, first+n): endpoints
// aEnd(i) on gw-a's wan0 and bEnd(i) on gw-b's (added as /24s), protecting
// the single hosts 198.18.1.(100+i) on client-a and 198.18.2.(100+i) on
// client-b, reqid reqid+i, AES-GCM-128.
func hostTunnels(t *testing.T, p *pair, aEnd, bEnd func(i int) netip.Addr, first, n int, reqid uint32) []*tunnel {
	t.Helper()
	var tunnels []*tunnel
	for i := first; i < first+n; i++ {
		a, b := aEnd(i), bEnd(i)
		aHost := netip.AddrFrom4([4]byte{198, 18, 1, byte(100 + i)})
		bHost := netip.AddrFrom4([4]byte{198, 18, 2, byte(100 + i)})
		for _, x := range []struct {
			h   *lab.Host
			dev string
			a   netip.Addr
		}{{p.ln.GwA, "wan0", a}, {p.ln.GwB, "wan0", b}, {p.ln.ClientA, "eth0", aHost}, {p.ln.ClientB, "eth0", bHost}} {
			if err := x.h.AddAddr(x.dev, netip.PrefixFrom(x.a, 24)); err != nil {
				t.Fatal(err)
			}
		}
		tn := newTunnel(reqid+uint32(i), a, b, []netip.Prefix{netip.PrefixFrom(aHost, 32)}, []netip.Prefix{netip.PrefixFrom(bHost, 32)},
			ipsec.AES128GCM16, false)
		install(t, p, tn)
		tunnels = append(tunnels, tn)
	}
	return tunnels
}

// v4 is the address 198.18.x.y.
func v4(x, y int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, byte(x), byte(y)}) }

var receivedRe = regexp.MustCompile(`(\d+) received`)

// ping sends count pings after one to warm up neighbour caches, and
// returns how many of the counted ones came back.
func ping(t *testing.T, h *lab.Host, src, dst netip.Addr, count int) int {
	t.Helper()
	args := []string{"-n", "-i", "0.05", "-W", "2"}
	if src.IsValid() {
		args = append(args, "-I", src.String())
	}
	h.Exec("ping", append(append([]string{}, args...), "-c", "1", dst.String())...)
	out, _ := h.Exec("ping", append(args, "-c", strconv.Itoa(count), dst.String())...)
	m := receivedRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s: %s", dst, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func mustPing(t *testing.T, h *lab.Host, src, dst netip.Addr) {
	t.Helper()
	if n := ping(t, h, src, dst, 5); n != 5 {
		t.Errorf("%s -> %s: %d of 5 pings came back", h.Name, dst, n)
	}
}

func TestPrivilegedStaticTunnelEverySuite(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	for i, suite := range ipsec.Suites {
		t.Run(suite.String(), func(t *testing.T) {
			v4 := newTunnel(uint32(10+2*i), pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, suite, false)
			v6 := newTunnel(uint32(11+2*i), pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA6}, []netip.Prefix{pl.LanB6}, suite, false)
			install(t, p, v4)
			install(t, p, v6)
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
			mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA4)
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB6)
			mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA6)
			labtest.TCPTransfer(t, p.ln.ClientA, p.ln.ClientB, pl.ClientB4, 1<<20)
			labtest.TCPTransfer(t, p.ln.ClientB, p.ln.ClientA, pl.ClientA6, 1<<20)
			// The traffic went through the SAs, not around them.
			sas, err := p.a.Client.DumpSAs(false)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range sas {
				if s.ReqID == v4.ReqID && s.Stats.Packets < 5 {
					t.Errorf("sa 0x%x %s carried only %d packets", s.SPI, s.Dir, s.Stats.Packets)
				}
			}
			remove(t, p, v4)
			remove(t, p, v6)
		})
	}
}

func TestPrivilegedStaticTunnelOuterIPv6AndUDP(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	for _, c := range []struct {
		name       string
		aEnd, bEnd netip.Addr
		encap      bool
	}{
		{"outer6", pl.GwAWan6, pl.GwBWan6, false},
		{"outer4-udp", pl.GwAWan4, pl.GwBWan4, true},
		{"outer6-udp", pl.GwAWan6, pl.GwBWan6, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			v4 := newTunnel(40, c.aEnd, c.bEnd, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, c.encap)
			v6 := newTunnel(41, c.aEnd, c.bEnd, []netip.Prefix{pl.LanA6}, []netip.Prefix{pl.LanB6}, ipsec.ChaCha20Poly1305, c.encap)
			install(t, p, v4)
			install(t, p, v6)
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
			mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA6)
			labtest.TCPTransfer(t, p.ln.ClientA, p.ln.ClientB, pl.ClientB4, 256<<10)
			remove(t, p, v4)
			remove(t, p, v6)
		})
	}
}

// TestPrivilegedSpuctlBuildsATunnel builds the tunnel by hand with spuctl,
// from the facts `ip xfrm state add` takes.
func TestPrivilegedSpuctlBuildsATunnel(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	kab := "0x" + strings.Repeat("ab", 20)
	kba := "0x" + strings.Repeat("ba", 20)
	for _, side := range []struct {
		s             *daemons.Spud
		local, remote string
		lnet, rnet    string
	}{
		{p.a, pl.GwAWan4.String(), pl.GwBWan4.String(), pl.LanA4.String(), pl.LanB4.String()},
		{p.b, pl.GwBWan4.String(), pl.GwAWan4.String(), pl.LanB4.String(), pl.LanA4.String()},
	} {
		a2b := pl.GwAWan4.String() == side.local
		outKey, inKey := kab, kba
		outSPI, inSPI := "0x5001", "0x5002"
		if !a2b {
			outKey, inKey = kba, kab
			outSPI, inSPI = inSPI, outSPI
		}
		for _, cmd := range [][]string{
			{"sa", "add", "src", side.remote, "dst", side.local, "proto", "esp", "spi", inSPI, "reqid", "7", "mode", "tunnel",
				"aead", "rfc4106(gcm(aes))", inKey, "128", "replay-window", "128", "sel", "src", side.rnet, "dst", side.lnet},
			{"sa", "add", "src", side.local, "dst", side.remote, "proto", "esp", "spi", outSPI, "reqid", "7", "mode", "tunnel",
				"aead", "rfc4106(gcm(aes))", outKey, "128"},
			{"policy", "add", "src", side.lnet, "dst", side.rnet, "dir", "out", "tmpl", "src", side.local, "dst", side.remote,
				"proto", "esp", "reqid", "7", "mode", "tunnel"},
		} {
			if out, err := side.s.Spuctl(cmd...); err != nil {
				t.Fatalf("spuctl %s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
		}
	}
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	out, err := p.a.Spuctl("sa", "list")
	if err != nil || !strings.Contains(out, "0x00005001 out") || !strings.Contains(out, "aes128gcm16") {
		t.Errorf("sa list: %v\n%s", err, out)
	}
	out, err = p.a.Spuctl("stats")
	if err != nil || !strings.Contains(out, "encap") {
		t.Errorf("stats: %v\n%s", err, out)
	}
	// A bad command is refused with the reason.
	out, err = p.a.Spuctl("sa", "add", "src", pl.GwBWan4.String(), "dst", pl.GwAWan4.String(), "proto", "esp", "spi", "0x6000",
		"reqid", "8", "mode", "tunnel", "aead", "rfc4106(gcm(aes))", "0x0102", "128")
	if err == nil || !strings.Contains(out, "20, 28 or 36") {
		t.Errorf("short key accepted: %v %s", err, out)
	}
}

// TestPrivilegedBigPackets: an inner packet too big for the path once
// encapsulated is carried in outer fragments (reassembled by the receiving
// spud) when it may be fragmented, and answered with ICMP "too big" (with
// the MTU that fits) when it may not.
func TestPrivilegedBigPackets(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	v4 := newTunnel(50, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	v6 := newTunnel(51, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA6}, []netip.Prefix{pl.LanB6}, ipsec.AES128GCM16, false)
	install(t, p, v4)
	install(t, p, v6)
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB6)
	// DF clear: fragmented outside, whole inside.
	out, err := p.ln.ClientA.Exec("ping", "-n", "-c", "3", "-i", "0.1", "-W", "2", "-s", "1450", "-M", "dont", pl.ClientB4.String())
	if err != nil || !strings.Contains(string(out), "3 received") {
		t.Errorf("large pings without DF: %v\n%s", err, out)
	}
	st, _ := p.b.Client.Stats()
	if st.XDP["redirect_esp_fragment"] == 0 {
		t.Errorf("gw-b saw no ESP fragments: xdp %v drops %v", st.XDP, st.Drops)
	}
	// DF set: ICMP "fragmentation needed" with the MTU that fits.
	out, _ = p.ln.ClientA.Exec("ping", "-n", "-c", "1", "-W", "2", "-s", "1472", "-M", "do", pl.ClientB4.String())
	if !strings.Contains(string(out), "mtu = 14") {
		t.Errorf("no frag-needed with an MTU for a DF packet:\n%s", out)
	}
	// IPv6: packet too big.
	out, _ = p.ln.ClientA.Exec("ping", "-n", "-c", "1", "-W", "2", "-s", "1452", pl.ClientB6.String())
	if !strings.Contains(string(out), "Packet too big") && !strings.Contains(string(out), "mtu") {
		t.Errorf("no packet-too-big for IPv6:\n%s", out)
	}
	// After PMTU discovery the same sizes get through (TCP does this on its own).
	labtest.TCPTransfer(t, p.ln.ClientA, p.ln.ClientB, pl.ClientB6, 256<<10)
}
