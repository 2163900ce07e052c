package strongswan

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

var testPSK = []byte("spugate lab psk: not a secret, 32+ bytes long")

// startCharon starts an instance owned by t: stopped (with leftovers
// checked) at cleanup, its logs printed if t failed.
func startCharon(t testing.TB, h *lab.Host, cfg Config) *Charon {
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
func lineConfig(t testing.TB, ln *lab.Line, gw *lab.Host, o LineConnOptions, ike, esp []string) Config {
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
	pcap, stop := capturePcap(t, h, ifname, filter)
	return func() []string {
		t.Helper()
		stop()
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
func established(t testing.TB, c *Charon, conn, child string) *IKESA {
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

// TestPrivilegedKeyDump runs both ends with DumpKeys, extracts the keys
// from their logs, checks that each end's outbound keys are the other's
// inbound ones, and has tshark (an independent ESP implementation)
// decrypt the captured pings with them.
func TestPrivilegedKeyDump(t *testing.T) {
	Require(t, "tcpdump", "ping", "tshark")
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
			ca := lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp)
			cb := lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp)
			ca.DumpKeys, cb.DumpKeys = true, true
			a := startCharon(t, ln.GwA, ca)
			b := startCharon(t, ln.GwB, cb)
			pcap, stopCap := capturePcap(t, ln.GwB, "wan0", "udp")
			if err := a.Initiate("net", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			sa := established(t, a, "site", "net")
			established(t, b, "site", "net")
			ping(t, ln.ClientA, ln.Plan.ClientB4.String())
			stopCap()

			ia, ka, err := a.Keys()
			if err != nil {
				t.Fatal(err)
			}
			_, kb, err := b.Keys()
			if err != nil {
				t.Fatal(err)
			}
			if len(ka) != 1 || len(kb) != 1 {
				t.Fatalf("child key sets: gw-a %d, gw-b %d; want 1 each", len(ka), len(kb))
			}
			if !ka[0].Initiator || kb[0].Initiator || ka[0].SPIOut != kb[0].SPIIn || !bytes.Equal(ka[0].EncrOut, kb[0].EncrIn) ||
				!bytes.Equal(ka[0].IntegOut, kb[0].IntegIn) || ka[0].SPIIn != sa.Child("net").SPIIn {
				t.Errorf("keys do not pair up:\ngw-a %+v\ngw-b %+v", ka[0], kb[0])
			}
			if len(ia) != 1 || ia[0].InitiatorSPI != sa.InitiatorSPI || ia[0].ResponderSPI != sa.ResponderSPI || len(ia[0].SKei) == 0 {
				t.Errorf("IKE keys %+v for SA %s/%s", ia, sa.InitiatorSPI, sa.ResponderSPI)
			}

			uat, err := kb[0].TsharkESPSAs()
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"-r", pcap, "-n", "-o", "esp.enable_encryption_decode:TRUE", "-Y", "icmp", "-T", "fields", "-E", "occurrence=l", "-e", "icmp.type", "-e", "ip.src"}
			for _, u := range uat {
				args = append(args, "-o", "uat:esp_sa:"+u)
			}
			out, err := exec.Command("tshark", args...).Output()
			if err != nil {
				t.Fatalf("tshark %q: %v", args, err)
			}
			got := strings.Fields(string(out))
			want := strings.Fields(strings.Repeat(fmt.Sprintf("8 %s 0 %s ", ln.Plan.ClientA4, ln.Plan.ClientB4), 3))
			if !slices.Equal(got, want) {
				t.Errorf("tshark decrypted %q, want %q (entries %q)", got, want, uat)
			}
		})
	}
}

// capturePcap is capture returning the pcap file instead of decoding it.
func capturePcap(t *testing.T, h *lab.Host, ifname, filter string) (string, func()) {
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
	return pcap, func() {
		time.Sleep(100 * time.Millisecond)
		if err := p.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// certCase is a certificate setup: key type for the whole chain, how the
// CA signs, what auth each side configures.
type certCase struct {
	name       string
	key        KeyType
	pss        bool // CA signatures with RSASSA-PSS
	localAuth  string
	remoteAuth string
	settings   Settings
	// authRe matches the peer's log line for a successful authentication.
	authRe string
	// fragments: IKE_AUTH needs IKE fragmentation.
	fragments bool
}

var certCases = []certCase{
	{name: "ecdsa256", key: ECDSA256, localAuth: "pubkey", remoteAuth: "pubkey", authRe: `with ECDSA.*successful|with \(\d+\) ECDSA.*successful`},
	{name: "rsa3072pss", key: RSA3072, pss: true, localAuth: "pubkey", remoteAuth: "rsa/pss-sha256", settings: Settings{RSAPSS: Yes},
		authRe: `with RSA_EMSA_PSS_SHA2_256(_SALT_32)? successful`},
	// The same without charon.rsa_pss: the local auth names the scheme.
	{name: "rsa3072pss-auth", key: RSA3072, pss: true, localAuth: "rsa/pss-sha256", remoteAuth: "rsa/pss-sha256",
		authRe: `with RSA_EMSA_PSS_SHA2_256(_SALT_32)? successful`},
	{name: "rsa3072pss-ike", key: RSA3072, pss: true, localAuth: "ike:rsa/pss-sha384", remoteAuth: "ike:rsa/pss-sha384",
		authRe: `with RSA_EMSA_PSS_SHA2_384(_SALT_48)? successful`},
	{name: "ed25519", key: Ed25519, localAuth: "pubkey", remoteAuth: "pubkey", authRe: `with ED25519 successful`},
	{name: "rsa4096frag", key: RSA4096, localAuth: "pubkey", remoteAuth: "pubkey", authRe: `with RSA.* successful`, fragments: true,
		settings: Settings{FragmentSize: 1000}},
}

// linePKI makes a root CA, one intermediate per gateway and the gateways'
// certificates, all with key type kt.
func linePKI(t testing.TB, ln *lab.Line, kt KeyType, pss bool) (root, gwA, gwB *Cert) {
	t.Helper()
	p, err := NewPKI(filepath.Join(ln.LogDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	o := CertOptions{Key: kt, PSS: pss}
	if root, err = p.NewCA("root", o); err != nil {
		t.Fatal(err)
	}
	imA, err := p.NewIntermediate("im-a", root, o)
	if err != nil {
		t.Fatal(err)
	}
	imB, err := p.NewIntermediate("im-b", root, o)
	if err != nil {
		t.Fatal(err)
	}
	oa, ob := o, o
	oa.SANs = []string{IDGwA, ln.Plan.GwAWan4.String(), ln.Plan.GwAWan6.String()}
	ob.SANs = []string{IDGwB, ln.Plan.GwBWan4.String(), ln.Plan.GwBWan6.String()}
	oa.Flags, ob.Flags = []string{"serverAuth", "ikeIntermediate"}, []string{"serverAuth", "ikeIntermediate"}
	if gwA, err = p.NewCert("gw-a", imA, oa); err != nil {
		t.Fatal(err)
	}
	if gwB, err = p.NewCert("gw-b", imB, ob); err != nil {
		t.Fatal(err)
	}
	return root, gwA, gwB
}

func certConfig(t testing.TB, ln *lab.Line, gw *lab.Host, own, root *Cert, cc certCase) Config {
	t.Helper()
	cfg := lineConfig(t, ln, gw, LineConnOptions{}, suites[0].ike, suites[0].esp)
	cfg.Secrets = Secrets{}
	c := &cfg.Conns[0]
	c.Local.Auth, c.Remote.Auth = cc.localAuth, cc.remoteAuth
	c.Local.Certs = []string{cfg.Files.AddIdentity(own)}
	c.Remote.CACerts = []string{cfg.Files.AddCA(root)}
	c.SendCert = Flag("always")
	cfg.Settings = cc.settings
	return cfg
}

// TestPrivilegedCerts brings up certificate-authenticated tunnels whose
// chains go root -> per-gateway intermediate -> gateway, so that each side
// must use the intermediate the other sends in-band.
func TestPrivilegedCerts(t *testing.T) {
	Require(t, "ping")
	for _, cc := range certCases {
		t.Run(cc.name, func(t *testing.T) {
			ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
			root, gwA, gwB := linePKI(t, ln, cc.key, cc.pss)
			a := startCharon(t, ln.GwA, certConfig(t, ln, ln.GwA, gwA, root, cc))
			b := startCharon(t, ln.GwB, certConfig(t, ln, ln.GwB, gwB, root, cc))
			start := time.Now()
			if err := a.Initiate("net", 10*time.Second); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: certificate tunnel up in %v", cc.name, time.Since(start).Round(100*time.Microsecond))
			established(t, a, "site", "net")
			established(t, b, "site", "net")
			ping(t, ln.ClientA, ln.Plan.ClientB4.String())
			for _, c := range []struct {
				me   *Charon
				peer string
				im   string
			}{{a, IDGwB, "im-b"}, {b, IDGwA, "im-a"}} {
				l, err := c.me.WaitLog(regexp.MustCompile(`authentication of '`+regexp.QuoteMeta(c.peer)+`' `+cc.authRe), time.Second)
				if err != nil {
					t.Error(err)
				} else {
					t.Logf("%s: %s", c.me.Host.Name, l[strings.Index(l, "authentication"):])
				}
				if _, err := c.me.WaitLog(regexp.MustCompile(`using untrusted intermediate certificate "CN=`+c.im), time.Second); err != nil {
					t.Error(err)
				}
			}
			if cc.fragments {
				for _, c := range []struct {
					me  *Charon
					msg string
				}{{a, "request"}, {b, "response"}} {
					l, err := c.me.WaitLog(regexp.MustCompile(`generating IKE_AUTH `+c.msg+` 1 \[ EF\(1/[4-9]\) \]`), time.Second)
					if err != nil {
						t.Error(err)
					} else {
						t.Logf("%s: %s", c.me.Host.Name, l[strings.Index(l, "generating"):])
					}
				}
			}
		})
	}
}

// TestPrivilegedNAT brings the tunnel up through the line's masquerading
// NAT box: both ends detect the real NAT, gw-b sees gw-a at the NAT's
// address, and ESP crosses in UDP.
func TestPrivilegedNAT(t *testing.T) {
	Require(t, "tcpdump", "ping")
	ln := labtest.Line(t, lab.LineOptions{NAT: true, NoClearRoutes: true})
	p := ln.Plan
	s := suites[0]
	a := startCharon(t, ln.GwA, lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp))
	b := startCharon(t, ln.GwB, lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp))
	stopB := capture(t, ln.GwB, "wan0", "udp")
	stopA := capture(t, ln.GwA, "wan0", "udp")
	start := time.Now()
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("PSK tunnel through the NAT up in %v", time.Since(start).Round(100*time.Microsecond))
	sa, sb := established(t, a, "site", "net"), established(t, b, "site", "net")
	if !sa.NATLocal || !sb.NATRemote {
		t.Errorf("NAT detection: gw-a nat-local %v, gw-b nat-remote %v", sa.NATLocal, sb.NATRemote)
	}
	if sb.RemoteHost != p.NatOut4 || sa.LocalHost != p.GwAWan4 {
		t.Errorf("gw-b sees gw-a at %v (want the NAT's %v); gw-a is at %v", sb.RemoteHost, p.NatOut4, sa.LocalHost)
	}
	ping(t, ln.ClientA, p.ClientB4.String())
	ping(t, ln.ClientB, p.ClientA4.String())
	ch := sa.Child("net")
	linesB, linesA := stopB(), stopA()
	spisB := espSPIs(t, linesB, true)
	if spisB[ch.SPIOut] < 6 || spisB[ch.SPIIn] < 6 {
		t.Errorf("ESP at gw-b per SPI %v, want >= 6 for %08x and %08x:\n%s", spisB, ch.SPIOut, ch.SPIIn, strings.Join(linesB, "\n"))
	}
	from := 0
	for _, l := range linesB {
		if m := espRe.FindStringSubmatch(l); m != nil && m[1] == p.NatOut4.String() {
			from++
		}
	}
	if from < 6 {
		t.Errorf("%d ESP packets at gw-b from the NAT's address %v, want >= 6", from, p.NatOut4)
	}
	if spisA := espSPIs(t, linesA, false); spisA[ch.SPIOut] < 6 {
		t.Errorf("ESP at gw-a per SPI %v", spisA)
	}
}

// TestPrivilegedIPv6Outer runs IKE and ESP between the gateways' IPv6
// addresses and carries both inner families.
func TestPrivilegedIPv6Outer(t *testing.T) {
	Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	p := ln.Plan
	s := suites[0]
	a := startCharon(t, ln.GwA, lineConfig(t, ln, ln.GwA, LineConnOptions{IPv6: true}, s.ike, s.esp))
	b := startCharon(t, ln.GwB, lineConfig(t, ln, ln.GwB, LineConnOptions{IPv6: true}, s.ike, s.esp))
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	sa := established(t, a, "site", "net")
	established(t, b, "site", "net")
	if sa.RemoteHost != p.GwBWan6 || sa.RemotePort != 4500 {
		t.Errorf("IKE SA to %v port %d", sa.RemoteHost, sa.RemotePort)
	}
	ping(t, ln.ClientA, p.ClientB4.String())
	ping(t, ln.ClientA, p.ClientB6.String())
}

// TestPrivilegedRekey rekeys the child SA and the IKE SA with short
// lifetimes and keeps traffic flowing.
func TestPrivilegedRekey(t *testing.T) {
	Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	s := suites[0]
	ca := lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp)
	cb := lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp)
	// over_time defaults to 10% of rekey_time: with a short rekey_time
	// the hard end of the old SA falls on its rekey, and charon migrates
	// the old SA's delete onto the new one.
	ca.Conns[0].RekeyTime, ca.Conns[0].RandTime, ca.Conns[0].OverTime = 4*time.Second, -1, 10*time.Second
	ca.Conns[0].Children[0].RekeyTime, ca.Conns[0].Children[0].LifeTime, ca.Conns[0].Children[0].RandTime = 2*time.Second, 30*time.Second, -1
	a := startCharon(t, ln.GwA, ca)
	b := startCharon(t, ln.GwB, cb)
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first := established(t, a, "site", "net")
	spi := first.Child("net").SPIIn
	sas, err := a.WaitSAs(func(sas []IKESA) bool {
		for _, sa := range sas {
			if sa.Ready() && sa.UniqueID != first.UniqueID && sa.Child("net") != nil && sa.Child("net").SPIIn != spi {
				return true
			}
		}
		return false
	}, 15*time.Second)
	if err != nil {
		t.Fatalf("no rekeyed IKE and child SA: %v (SAs %+v)", err, sas)
	}
	if _, err := b.WaitLog(regexp.MustCompile(`CHILD_SA net\{\d+\} established with SPIs`), time.Second); err != nil {
		t.Error(err)
	}
	if _, err := a.WaitLog(regexp.MustCompile(`rekeying IKE_SA|IKE_SA site\[\d+\] rekeyed|rekeyed IKE_SA`), time.Second); err != nil {
		t.Logf("no IKE rekey line: %v", err)
	}
	ping(t, ln.ClientA, ln.Plan.ClientB4.String())
}

// TestPrivilegedLifecycle covers terminate, reload, list-conns, a start
// that fails (nothing left behind) and Stop's checks.
func TestPrivilegedLifecycle(t *testing.T) {
	Require(t)
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	s := suites[0]
	ca := lineConfig(t, ln, ln.GwA, LineConnOptions{}, s.ike, s.esp)
	cb := lineConfig(t, ln, ln.GwB, LineConnOptions{}, s.ike, s.esp)
	a := startCharon(t, ln.GwA, ca)
	b := startCharon(t, ln.GwB, cb)

	conns, err := a.ListConns()
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 || conns[0].Name != "site" || len(conns[0].Children) != 1 || conns[0].Children[0].Name != "net" ||
		len(conns[0].Local) != 1 || conns[0].Local[0].ID != IDGwA || conns[0].Local[0].Class != "pre-shared key" {
		t.Errorf("list-conns: %+v", conns)
	}
	if err := a.Initiate("nope", time.Second); err == nil {
		t.Error("initiating an unknown child succeeded")
	} else {
		t.Logf("unknown child: %v", err)
	}
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, b, "site", "net")
	if left, _ := a.Leftovers(); len(left) == 0 {
		t.Error("no TUN device or routes while a tunnel is up: Leftovers cannot see them")
	}
	if err := a.Terminate("site"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitSAs(func(sas []IKESA) bool { return len(sas) == 0 }, 5*time.Second); err != nil {
		t.Errorf("gw-b still has SAs after terminate: %v", err)
	}

	// Reload with a second connection and without the first.
	c2 := ca.Conns[0]
	c2.Name = "site2"
	ca.Conns = []Conn{c2}
	if err := a.Reload(ca); err != nil {
		t.Fatal(err)
	}
	if conns, err = a.ListConns(); err != nil || len(conns) != 1 || conns[0].Name != "site2" {
		t.Errorf("after reload: %+v %v", conns, err)
	}
	if err := a.InitiateIKE("site2", "net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	stats, err := a.Stats()
	if err != nil || stats.Sub("ikesas").Get("total") != "1" {
		t.Errorf("stats: %v %v", stats, err)
	}

	// A configuration charon rejects: Start fails and leaves nothing.
	bad := lineConfig(t, ln, ln.GwA, LineConnOptions{}, []string{"nonsense-proposal"}, s.esp)
	if c, err := Start(ln.ClientA, bad); err == nil {
		c.Stop()
		t.Error("bad proposal accepted")
	} else if !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("error does not name the cause: %v", err)
	}
	if out, err := ln.ClientA.Exec("ip", "link", "show", "ipsec0"); err == nil {
		t.Errorf("failed start left ipsec0: %s", out)
	}
	// Credentials that do not parse: swanctl exits 0, Start must not.
	badCert := lineConfig(t, ln, ln.GwA, LineConnOptions{}, s.ike, s.esp)
	badCert.Name = "badcert"
	badCert.Files.X509 = map[string][]byte{"bad.pem": []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")}
	if c, err := Start(ln.ClientA, badCert); err == nil {
		c.Stop()
		t.Error("unparsable certificate accepted")
	} else if !strings.Contains(err.Error(), "bad.pem") {
		t.Errorf("error does not name the file: %v", err)
	}
	// A second instance in one host is refused (one ipsec0 per host).
	cb.Name = "second"
	if c, err := Start(ln.GwB, cb); err == nil {
		c.Stop()
		t.Error("second instance on gw-b started")
	}
}

// BenchmarkPrivilegedSetup measures one tunnel's setup between two
// charons (gw-a initiates; IKE_SA_INIT and IKE_AUTH with the child SA,
// until the initiator has it installed), per authentication. Run with a
// fixed count, e.g. -benchtime=20x; terminating between rounds is not
// timed.
func BenchmarkPrivilegedSetup(b *testing.B) {
	Require(b)
	cases := []struct {
		name string
		cert *certCase
		s    suite
	}{
		{name: "psk-gcm-x25519", s: suites[0]},
		{name: "psk-cbc-modp2048", s: suites[1]},
	}
	for i := range certCases {
		switch certCases[i].name {
		case "ecdsa256", "rsa3072pss", "ed25519", "rsa4096frag":
			cases = append(cases, struct {
				name string
				cert *certCase
				s    suite
			}{name: certCases[i].name, cert: &certCases[i], s: suites[0]})
		}
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ln := labtest.Line(b, lab.LineOptions{NoClearRoutes: true})
			var ca, cb Config
			if bc.cert == nil {
				ca = lineConfig(b, ln, ln.GwA, LineConnOptions{}, bc.s.ike, bc.s.esp)
				cb = lineConfig(b, ln, ln.GwB, LineConnOptions{}, bc.s.ike, bc.s.esp)
			} else {
				root, gwA, gwB := linePKI(b, ln, bc.cert.key, bc.cert.pss)
				ca = certConfig(b, ln, ln.GwA, gwA, root, *bc.cert)
				cb = certConfig(b, ln, ln.GwB, gwB, root, *bc.cert)
			}
			a := startCharon(b, ln.GwA, ca)
			startCharon(b, ln.GwB, cb)
			b.ResetTimer()
			for range b.N {
				if err := a.Initiate("net", 10*time.Second); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := a.Terminate("site"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// TestPrivilegedKillRestart kills gw-b's charon (no DELETE sent), checks
// Kill cleaned the host, restarts it in the same directory, and lets
// gw-a's DPD find the dead SA and re-establish the tunnel.
func TestPrivilegedKillRestart(t *testing.T) {
	Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	s := suites[0]
	ca := lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp)
	cb := lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp)
	ca.Conns[0].DPDDelay = time.Second
	ca.Conns[0].Children[0].DPDAction = "restart"
	ca.Settings.RetransmitTimeout, ca.Settings.RetransmitBase, ca.Settings.RetransmitTries = 0.5, 1.5, 2
	a := startCharon(t, ln.GwA, ca)
	b := startCharon(t, ln.GwB, cb)
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first := established(t, a, "site", "net")
	established(t, b, "site", "net")

	pid := b.PID
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("pid %d alive after Kill", pid)
	}
	if left, err := b.Leftovers(); err != nil || len(left) > 0 {
		t.Errorf("after Kill: %v %v", left, err)
	}
	b2, err := b.Restart()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(b2.Report())
		}
		b2.Stop()
	})
	if b2.PID == pid || b2.Dir != b.Dir {
		t.Errorf("restart: pid %d (was %d), dir %s (was %s)", b2.PID, pid, b2.Dir, b.Dir)
	}
	// The restarted charon knows nothing of the old SAs: gw-a's DPD
	// gets no answer it accepts, gives up, and dpd_action=restart
	// brings up a new IKE SA.
	start := time.Now()
	if _, err := a.WaitSAs(func(sas []IKESA) bool {
		return len(sas) == 1 && sas[0].UniqueID != first.UniqueID && sas[0].Ready() && sas[0].Child("net") != nil
	}, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("tunnel back %v after the restart", time.Since(start).Round(10*time.Millisecond))
	established(t, b2, "site", "net")
	ping(t, ln.ClientA, ln.Plan.ClientB4.String())
}

// TestPrivilegedRekeyPackets rekeys the child SA on a packet count:
// kernel-libipsec enforces volume lifetimes too.
func TestPrivilegedRekeyPackets(t *testing.T) {
	Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	s := suites[0]
	ca := lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp)
	cb := lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp)
	ch := &ca.Conns[0].Children[0]
	ch.RekeyPackets, ch.LifePackets, ch.Extra = 10, 1000, map[string]string{"rand_packets": "0"}
	a := startCharon(t, ln.GwA, ca)
	startCharon(t, ln.GwB, cb)
	if err := a.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	spi := established(t, a, "site", "net").Child("net").SPIIn
	if out, err := ln.ClientA.Exec("ping", "-c", "15", "-i", "0.05", "-W", "2", ln.Plan.ClientB4.String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	if _, err := a.WaitSAs(func(sas []IKESA) bool {
		return len(sas) == 1 && sas[0].Child("net") != nil && sas[0].Child("net").SPIIn != spi
	}, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ping(t, ln.ClientA, ln.Plan.ClientB4.String())
}

// TestPrivilegedManyTunnels brings up 200 tunnels (one IKE SA each, as
// reuse_ikesa = no makes them) from 200 connections on gw-a to one
// responder connection on gw-b that narrows to each, initiating 8 at a
// time, and lists them.
//
// kernel-libipsec routes a child SA's remote selector into its TUN device
// with a source address from the local selector, and fails the child SA
// ("error installing route with policy") when the gateway has no address
// in it. So tunnel i joins 198.19.i.0/25 behind gw-a to 198.19.i.128/25
// behind gw-b, and each gateway holds an address in its side.
func TestPrivilegedManyTunnels(t *testing.T) {
	Require(t)
	const n = 200
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true})
	s := suites[0]
	ca := lineConfig(t, ln, ln.GwA, LineConnOptions{Families: "4"}, s.ike, s.esp)
	cb := lineConfig(t, ln, ln.GwB, LineConnOptions{Families: "4"}, s.ike, s.esp)
	var batchA, batchB strings.Builder
	ta := ca.Conns[0]
	ca.Conns = nil
	for i := range n {
		fmt.Fprintf(&batchA, "addr add 198.19.%d.1/25 dev lan0\n", i)
		fmt.Fprintf(&batchB, "addr add 198.19.%d.129/25 dev lan0\n", i)
		a := ta
		a.Name = fmt.Sprintf("t%03d", i)
		a.Children = []Child{{Name: "net", LocalTS: []string{fmt.Sprintf("198.19.%d.0/25", i)},
			RemoteTS: []string{fmt.Sprintf("198.19.%d.128/25", i)}, ESPProposals: s.esp}}
		ca.Conns = append(ca.Conns, a)
	}
	for _, x := range []struct {
		h *lab.Host
		b string
	}{{ln.GwA, batchA.String()}, {ln.GwB, batchB.String()}} {
		f := filepath.Join(t.TempDir(), x.h.Name+".batch")
		if err := os.WriteFile(f, []byte(x.b), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := x.h.Exec("ip", "-batch", f); err != nil {
			t.Fatal(err)
		}
	}
	// A responder picks the connection by addresses and identities, not
	// by traffic selectors, so one connection answers all 200 and its
	// child narrows to each pair. unique = never: with the default (no)
	// an INITIAL_CONTACT from a new IKE SA deletes the others.
	cb.Conns[0].Unique = Flag("never")
	cb.Conns[0].Children[0].LocalTS, cb.Conns[0].Children[0].RemoteTS = []string{"198.19.0.0/16"}, []string{"198.19.0.0/16"}
	ca.Settings.ReuseIKESA = No
	for _, c := range []*Config{&ca, &cb} {
		// MOBIKE would list all 200 extra addresses in every IKE_AUTH.
		for i := range c.Conns {
			c.Conns[i].Mobike = No
		}
		c.Settings.IKESATableSize, c.Settings.InitLimitHalfOpen, c.Settings.CookieThreshold, c.Settings.CookieThresholdIP, c.Settings.BlockThreshold = 1024, 1000, 1000, 1000, 1000
	}
	a := startCharon(t, ln.GwA, ca)
	b := startCharon(t, ln.GwB, cb)
	// Eight blocking initiates at a time: each holds one of charon's
	// worker threads until its tunnel is up (see Settings.Threads).
	start := time.Now()
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := a.InitiateIKE(fmt.Sprintf("t%03d", i), "net", 10*time.Second); err != nil {
				t.Error(err)
			}
		}()
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	if _, err := a.WaitSAs(func(sas []IKESA) bool {
		up := 0
		for _, sa := range sas {
			if sa.Ready() && sa.Child("net") != nil {
				up++
			}
		}
		return up == n
	}, 60*time.Second); err != nil {
		t.Error(err)
	}
	took := time.Since(start)
	t.Logf("%d tunnels up in %v (%.0f/s)", n, took.Round(time.Millisecond), n/took.Seconds())
	for _, c := range []*Charon{a, b} {
		sas, err := c.ListSAs()
		if err != nil {
			t.Fatal(err)
		}
		up := 0
		for _, sa := range sas {
			if sa.Ready() && sa.Child("net") != nil {
				up++
			}
		}
		if up != n {
			t.Errorf("%s: %d tunnels up, want %d", c.Host.Name, up, n)
		}
	}
	if out, err := ln.GwA.Exec("ping", "-c", "1", "-W", "2", "-I", "198.19.77.1", "198.19.77.129"); err != nil {
		t.Errorf("ping through tunnel 77: %v\n%s", err, out)
	}
}
