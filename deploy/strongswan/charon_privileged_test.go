package strongswan

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/deploy/lab"
	"github.com/spugate/spugate/deploy/lab/labtest"
)

var testPSK = []byte("spugate lab psk: not a secret, 32+ bytes long")

// startCharon starts an instance owned by t: stopped (with leftovers
// checked) at cleanup, its logs printed if t failed.
func startCharon(t *testing.T, h *lab.Host, cfg Config) *Charon {
	t.Helper()
	c, err := Start(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Report())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop %s on %s: %v", c.Name, h.Name, err)
		}
	})
	return c
}

// lineConfig is the PSK (or, with auth set later, certificate) config of
// one gateway of the line.
func lineConfig(t *testing.T, ln *lab.Line, gw *lab.Host, o LineConnOptions, ike, esp []string) Config {
	t.Helper()
	c, err := LineConn(ln, gw, o)
	if err != nil {
		t.Fatal(err)
	}
	c.Proposals = ike
	c.Children[0].ESPProposals = esp
	c.Local.Auth, c.Remote.Auth = "psk", "psk"
	return Config{Dir: ln.LogDir, Conns: []Conn{c}, Secrets: LinePSK(testPSK)}
}

// capture runs tcpdump in h and returns a function that stops it and
// returns the decoded packets, one per line.
func capture(t *testing.T, h *lab.Host, ifname, filter string) func() []string {
	t.Helper()
	pcap := filepath.Join(t.TempDir(), h.Name+"-"+ifname+".pcap")
	p, err := h.Start("tcpdump-"+ifname, []string{"tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-w", pcap, filter}, lab.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Log(), "listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump on %s:%s not listening: %s", h.Name, ifname, p.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return func() []string {
		t.Helper()
		time.Sleep(100 * time.Millisecond) // let the last packets land
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
		out, err := h.Exec("tcpdump", "-r", pcap, "-n")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
}

var espRe = regexp.MustCompile(`(\S+)\.(\d+) > (\S+)\.(\d+): UDP-encap: ESP\(spi=0x([0-9a-f]+),seq=0x[0-9a-f]+\)`)

// espSPIs counts captured UDP-encapsulated ESP packets per SPI, and
// fails t on ESP that is not on port 4500 at both ends (unless any port
// is allowed, as behind a NAT).
func espSPIs(t *testing.T, lines []string, anyPort bool) map[uint32]int {
	t.Helper()
	spis := map[uint32]int{}
	for _, l := range lines {
		m := espRe.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if !anyPort && (m[2] != "4500" || m[4] != "4500") {
			t.Errorf("ESP not between ports 4500: %s", l)
		}
		spi, _ := strconv.ParseUint(m[5], 16, 32)
		spis[uint32(spi)]++
	}
	return spis
}

func ping(t *testing.T, from *lab.Host, to string) {
	t.Helper()
	args := []string{"-c", "3", "-i", "0.2", "-W", "2", to}
	if strings.Contains(to, ":") {
		args = append([]string{"-6"}, args...)
	}
	if out, err := from.Exec("ping", args...); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", to, from.Name, err, out)
	}
}

// established returns the single established IKE SA of conn with its
// installed child, failing t otherwise.
func established(t *testing.T, c *Charon, conn, child string) *IKESA {
	t.Helper()
	sa, err := c.WaitEstablished(conn, child, 10*time.Second)
	if err != nil {
		t.Fatalf("%s on %s: %v", c.Name, c.Host.Name, err)
	}
	return sa
}

type suite struct {
	name     string
	ike, esp []string
	// want from list-sas
	ikeEncr, ikeInteg, prf, dh string
	ikeKey                     int
	espEncr, espInteg          string
	espKey                     int
}

var suites = []suite{
	{name: "gcm", ike: []string{"aes128gcm16-prfsha256-x25519"}, esp: []string{"aes128gcm16"},
		ikeEncr: "AES_GCM_16", ikeKey: 128, prf: "PRF_HMAC_SHA2_256", dh: "CURVE_25519",
		espEncr: "AES_GCM_16", espKey: 128},
	{name: "cbc", ike: []string{"aes256-sha256-modp2048"}, esp: []string{"aes256-sha256"},
		ikeEncr: "AES_CBC", ikeKey: 256, ikeInteg: "HMAC_SHA2_256_128", prf: "PRF_HMAC_SHA2_256", dh: "MODP_2048",
		espEncr: "AES_CBC", espKey: 256, espInteg: "HMAC_SHA2_256_128"},
}

func checkSuite(t *testing.T, side string, sa *IKESA, s suite) {
	t.Helper()
	if sa.EncrAlg != s.ikeEncr || sa.EncrKeySize != s.ikeKey || sa.IntegAlg != s.ikeInteg || sa.PRFAlg != s.prf || sa.DHGroup != s.dh {
		t.Errorf("%s: IKE SA %s/%d/%s/%s/%s, want %s/%d/%s/%s/%s", side, sa.EncrAlg, sa.EncrKeySize, sa.IntegAlg, sa.PRFAlg, sa.DHGroup,
			s.ikeEncr, s.ikeKey, s.ikeInteg, s.prf, s.dh)
	}
	ch := sa.Child("net")
	if ch == nil {
		t.Fatalf("%s: no installed child net in %+v", side, sa)
	}
	if ch.EncrAlg != s.espEncr || ch.EncrKeySize != s.espKey || ch.IntegAlg != s.espInteg || ch.Protocol != "ESP" || ch.Mode != "TUNNEL" {
		t.Errorf("%s: child SA %s %s %s/%d/%s, want ESP TUNNEL %s/%d/%s", side, ch.Protocol, ch.Mode, ch.EncrAlg, ch.EncrKeySize, ch.IntegAlg,
			s.espEncr, s.espKey, s.espInteg)
	}
	if !ch.Encap {
		t.Errorf("%s: child SA not UDP-encapsulated (kernel-libipsec always is)", side)
	}
	if sa.LocalPort != 4500 || sa.RemotePort != 4500 {
		t.Errorf("%s: IKE SA on ports %d/%d, want 4500/4500 (libipsec fakes NAT)", side, sa.LocalPort, sa.RemotePort)
	}
}

// TestPrivilegedPSK brings up a PSK tunnel between charon on gw-a and
// charon on gw-b for each suite, pings through it in both families, checks
// list-sas on both sides and the wire (UDP 4500, the SPIs list-sas names),
// and that Stop leaves nothing behind.
func TestPrivilegedPSK(t *testing.T) {
	Require(t, "tcpdump", "ping")
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
			p := ln.Plan
			a := startCharon(t, ln.GwA, lineConfig(t, ln, ln.GwA, LineConnOptions{}, s.ike, s.esp))
			b := startCharon(t, ln.GwB, lineConfig(t, ln, ln.GwB, LineConnOptions{}, s.ike, s.esp))
			stopCap := capture(t, ln.GwB, "wan0", "udp")

			start := time.Now()
			if err := a.Initiate("net", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: PSK tunnel up in %v (initiate to installed child)", s.name, time.Since(start).Round(100*time.Microsecond))
			sa, sb := established(t, a, "site", "net"), established(t, b, "site", "net")
			checkSuite(t, "gw-a", sa, s)
			checkSuite(t, "gw-b", sb, s)
			if !sa.Initiator || sb.Initiator {
				t.Errorf("initiator flags: gw-a %v gw-b %v", sa.Initiator, sb.Initiator)
			}
			ca, cb := sa.Child("net"), sb.Child("net")
			if ca.SPIOut != cb.SPIIn || ca.SPIIn != cb.SPIOut || ca.SPIIn == 0 || ca.SPIOut == 0 {
				t.Errorf("SPIs: gw-a in %08x out %08x, gw-b in %08x out %08x", ca.SPIIn, ca.SPIOut, cb.SPIIn, cb.SPIOut)
			}
			if !sa.NATFake && !sb.NATFake && !sa.NATAny {
				t.Logf("no NAT faked or seen: gw-a %+v", sa.Raw)
			}

			ping(t, ln.ClientA, p.ClientB4.String())
			ping(t, ln.ClientA, p.ClientB6.String())
			ping(t, ln.ClientB, p.ClientA4.String())

			sas, err := a.ListSAs()
			if err != nil {
				t.Fatal(err)
			}
			ch := sas[0].Child("net")
			if ch.PacketsOut < 9 || ch.PacketsIn < 9 || ch.BytesOut == 0 {
				t.Errorf("gw-a child counters: %d packets out, %d in, %d bytes out; want >= 9 each way", ch.PacketsOut, ch.PacketsIn, ch.BytesOut)
			}
			want := []string{p.LanA4.String(), p.LanA6.String()}
			if !slices.Equal(ch.LocalTS, want) {
				t.Errorf("gw-a local TS %v, want %v", ch.LocalTS, want)
			}

			lines := stopCap()
			defer func() {
				if t.Failed() {
					t.Logf("capture on gw-b:\n%s", strings.Join(lines, "\n"))
				}
			}()
			spis := espSPIs(t, lines, false)
			if spis[ca.SPIOut] < 9 || spis[ca.SPIIn] < 9 {
				t.Errorf("captured ESP per SPI %v: want >= 9 packets each for out %08x and in %08x", spis, ca.SPIOut, ca.SPIIn)
			}
			if spis[0] != 0 {
				t.Errorf("captured %d ESP packets with SPI 0", spis[0])
			}

			for _, c := range []*Charon{a, b} {
				pid := c.PID
				if err := c.Stop(); err != nil {
					t.Errorf("stop %s: %v", c.Host.Name, err)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					// A zombie would still be there; Proc.Stop reaps.
					t.Errorf("pid %d of %s still exists after Stop", pid, c.Host.Name)
				}
				left, err := c.Leftovers()
				if err != nil || len(left) > 0 {
					t.Errorf("%s after Stop: %v %v", c.Host.Name, left, err)
				}
			}
			if out, err := ln.ClientA.Exec("ping", "-c", "1", "-W", "1", p.ClientB4.String()); err == nil {
				t.Errorf("ping still works without the tunnel (NoClearRoutes): %s", out)
			}
		})
	}
}
