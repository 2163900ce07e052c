package spud_test

import (
	"encoding/hex"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// capture runs tcpdump on a host while during runs, and returns the pcap's
// path.
func capture(t *testing.T, h *lab.Host, ifname, filter string, during func()) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cap.pcap")
	p, err := h.Start("tcpdump", []string{"tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root", "-w", file, filter}, lab.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Log(), "listening on") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	// "listening" comes a moment before the filter sees packets.
	time.Sleep(200 * time.Millisecond)
	during()
	time.Sleep(200 * time.Millisecond)
	p.Stop()
	if out, err := exec.Command("tcpdump", "-r", file, "-n").CombinedOutput(); err != nil || !strings.Contains(string(out), " IP") {
		t.Logf("capture on %s %s saw no IP packet (%v):\n%s\n%s", h.Name, ifname, err, p.Log(), out)
	}
	return file
}

var tsharkAlgos = map[ipsec.Suite][2]string{
	ipsec.AES128GCM16:  {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	ipsec.AES256GCM16:  {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	ipsec.AES128SHA256: {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
	ipsec.AES256SHA256: {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
}

// TestPrivilegedTsharkDecryptsSpud captures what spud sends on the wire
// and has tshark's ESP dissector, given the keys, decrypt it and check the
// ICV: the wire format proven by an independent implementation. (tshark
// 4.0 has no ChaCha20-Poly1305; scapy covers it below.)
func TestPrivilegedTsharkDecryptsSpud(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (deploy/deps.sh installs it)")
	}
	// Captures go on a router between the gateways: on a gateway, the XDP
	// program hands ESP to spud before any packet socket sees it.
	p := startPair(t, lab.LineOptions{Router: true}, daemons.SpudOptions{})
	pl := p.ln.Plan
	reqid := uint32(60)
	for _, suite := range []ipsec.Suite{ipsec.AES128GCM16, ipsec.AES256GCM16, ipsec.AES128SHA256, ipsec.AES256SHA256} {
		for _, encap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/udp=%v", suite, encap), func(t *testing.T) {
				reqid++
				tn := newTunnel(reqid, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, suite, encap)
				install(t, p, tn)
				defer remove(t, p, tn)
				ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 1) // resolve neighbours first
				filter := "esp"
				if encap {
					filter = "udp port 4500"
				}
				pcap := capture(t, p.ln.Router, "out0", filter+" and src host "+pl.GwAWan4.String(), func() {
					if n := ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 3); n != 3 {
						st, _ := p.a.Spuctl("stats")
						t.Logf("only %d of 3 pings came back; gw-a:\n%s", n, st)
					}
				})
				algos := tsharkAlgos[suite]
				ikey := ""
				if tn.IntAB != nil {
					ikey = "0x" + hex.EncodeToString(tn.IntAB)
				}
				uat := fmt.Sprintf(`uat:esp_sa:"IPv4","%s","%s","0x%08x","%s","0x%s","%s","%s"`,
					pl.GwAWan4, pl.GwBWan4, tn.SPIAB, algos[0], hex.EncodeToString(tn.KeyAB), algos[1], ikey)
				args := []string{"-n", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE",
					"-o", "esp.enable_authentication_check:TRUE", "-o", uat}
				if encap {
					args = append(args, "-d", "udp.port==4500,udpencap")
				}
				args = append(args, "-T", "fields", "-E", "separator=|", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "ip.src", "-e", "icmp.type")
				cmd := exec.Command(tshark, args...)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("tshark: %v\n%s", err, stderr.String())
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) < 3 {
					t.Fatalf("tshark saw %d packets:\n%s", len(lines), out)
				}
				for _, l := range lines {
					f := strings.Split(l, "|")
					if len(f) != 4 || !strings.Contains(f[2], pl.ClientA4.String()) || f[3] != "8" || (f[1] != "1" && f[1] != "True") {
						t.Errorf("tshark did not decrypt and verify: %q (want icv good, inner src %s, ICMP echo)", l, pl.ClientA4)
					}
				}
			})
		}
	}
}

const scapyScript = `
import sys, binascii
from scapy.all import IP, ICMP, Raw, send, conf
from scapy.layers.ipsec import SecurityAssociation, ESP
from scapy.layers.inet import UDP
conf.verb = 0
gw_src, gw_dst, inner_src, inner_dst, spi, crypt, ckey, auth, akey, udp = sys.argv[1:11]
kw = dict(spi=int(spi, 0), crypt_algo=crypt, crypt_key=binascii.unhexlify(ckey),
          tunnel_header=IP(src=gw_src, dst=gw_dst))
if auth != "-":
    kw.update(auth_algo=auth, auth_key=binascii.unhexlify(akey))
if udp == "1":
    kw.update(nat_t_header=UDP(sport=4500, dport=4500))
sa = SecurityAssociation(ESP, **kw)
def fix(p):
    if p.haslayer(UDP):
        # scapy 2.5 computes the NAT-T UDP length before adding ESP (it
        # says 8): let it recompute from the whole packet.
        del p[UDP].len
        p = IP(bytes(p))
    return p
def pkt(seq):
    # Sequence numbers well above what the gateway itself sent on this SA.
    return fix(sa.encrypt(IP(src=inner_src, dst=inner_dst)/ICMP(id=0x5ca, seq=seq)/Raw(b"scapy"), seq_num=1000+seq))
good = [pkt(s) for s in (1, 2, 3)]
for p in good:
    send(p)
tampered = pkt(4)
raw = bytearray(bytes(tampered))
raw[-1] ^= 0x01
send(IP(bytes(raw)))
send(good[0])                       # replay of sequence number 1
unknown = SecurityAssociation(ESP, spi=0x0badf00d, crypt_algo=crypt, crypt_key=binascii.unhexlify(ckey),
    tunnel_header=IP(src=gw_src, dst=gw_dst), nat_t_header=kw.get("nat_t_header"), **({"auth_algo": auth, "auth_key": binascii.unhexlify(akey)} if auth != "-" else {}))
send(fix(unknown.encrypt(IP(src=inner_src, dst=inner_dst)/ICMP(), seq_num=1)))
send(IP(src=gw_src, dst=gw_dst, proto=50)/Raw(b"\x00\x00\x10"))   # shorter than an ESP header
print("sent")
`

var scapyAlgos = map[ipsec.Suite][2]string{
	ipsec.AES128GCM16:      {"AES-GCM", "-"},
	ipsec.AES192GCM16:      {"AES-GCM", "-"},
	ipsec.AES256GCM16:      {"AES-GCM", "-"},
	ipsec.ChaCha20Poly1305: {"CHACHA20-POLY1305", "-"},
	ipsec.AES128SHA256:     {"AES-CBC", "SHA2-256-128"},
	ipsec.AES256SHA256:     {"AES-CBC", "SHA2-256-128"},
}

// TestPrivilegedScapyPacketsAcceptedAndRejected has scapy (an independent
// ESP encoder) build ESP packets with the tunnel's keys on gw-b and send
// them to gw-a: spud accepts the good ones (client-a answers them), and
// drops, with the reason counted, a tampered one, a replay, an unknown SPI
// and a truncated packet, without falling over.
func TestPrivilegedScapyPacketsAcceptedAndRejected(t *testing.T) {
	py := "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import scapy.layers.ipsec").CombinedOutput(); err != nil {
		t.Skipf("no scapy for %s (deploy/deps.sh installs python3-scapy): %s", py, out)
	}
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	script := filepath.Join(t.TempDir(), "esp.py")
	if err := os.WriteFile(script, []byte(scapyScript), 0o644); err != nil {
		t.Fatal(err)
	}
	reqid := uint32(80)
	for _, suite := range ipsec.Suites {
		for _, encap := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/udp=%v", suite, encap), func(t *testing.T) {
				reqid++
				tn := newTunnel(reqid, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, suite, encap)
				install(t, p, tn)
				defer remove(t, p, tn)
				ping(t, p.ln.ClientB, netip.Addr{}, pl.ClientA4, 1)
				al := scapyAlgos[suite]
				akey := "-"
				if tn.IntBA != nil {
					akey = hex.EncodeToString(tn.IntBA)
				}
				udp := "0"
				if encap {
					udp = "1"
				}
				before := inStats(t, p.a, tn.SPIBA)
				out, err := p.ln.GwB.Exec(py, script, pl.GwBWan4.String(), pl.GwAWan4.String(), pl.ClientB4.String(), pl.ClientA4.String(),
					fmt.Sprintf("0x%x", tn.SPIBA), al[0], hex.EncodeToString(tn.KeyBA), al[1], akey, udp)
				if err != nil {
					t.Fatalf("scapy: %v\n%s", err, out)
				}
				var after api.SAStats
				deadline := time.Now().Add(5 * time.Second)
				for {
					after = inStats(t, p.a, tn.SPIBA)
					if after.Packets-before.Packets >= 3 && after.Drops["bad_icv"] >= 1 && after.Drops["replay"] >= 1 || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if got := after.Packets - before.Packets; got != 3 {
					t.Errorf("spud accepted %d of scapy's 3 good packets", got)
				}
				if after.Drops["bad_icv"]-before.Drops["bad_icv"] != 1 || after.Drops["replay"]-before.Drops["replay"] != 1 {
					t.Errorf("drops: %v (want one bad_icv and one replay more than %v)", after.Drops, before.Drops)
				}
				st, err := p.a.Client.Stats()
				if err != nil {
					t.Fatalf("spud stopped answering: %v", err)
				}
				if st.Drops["unknown_spi"] < 1 || st.Drops["esp_header"]+st.XDP["pass_bad_esp"] < 1 {
					t.Errorf("unknown SPI or short ESP not counted: drops %v xdp %v", st.Drops, st.XDP)
				}
			})
		}
	}
	if exited, err := p.a.Proc.Exited(); exited {
		t.Fatalf("spud on gw-a died: %v", err)
	}
}

func inStats(t *testing.T, s *daemons.Spud, spi uint32) api.SAStats {
	t.Helper()
	sas, err := s.Client.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if sa.Dir == api.In && sa.SPI == spi {
			return sa.Stats
		}
	}
	t.Fatalf("no inbound sa 0x%x", spi)
	return api.SAStats{}
}

// TestPrivilegedRestart: spud removes its XDP program on SIGTERM; after a
// SIGKILL the program stays, and the next spud replaces it and works.
func TestPrivilegedRestart(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	xdpOn := func(h *lab.Host, ifname string) bool {
		out, _ := h.Exec("ip", "-d", "link", "show", ifname)
		return strings.Contains(string(out), "prog/xdp")
	}
	if !xdpOn(p.ln.GwA, "wan0") || !xdpOn(p.ln.GwA, "lan0") {
		t.Fatal("no XDP program attached while spud runs")
	}
	if err := p.a.Stop(); err != nil {
		t.Fatal(err)
	}
	if exited, err := p.a.Proc.Exited(); !exited || err != nil {
		t.Errorf("spud did not exit cleanly on SIGTERM: %v", err)
	}
	if xdpOn(p.ln.GwA, "wan0") || xdpOn(p.ln.GwA, "lan0") {
		t.Error("XDP program left attached after SIGTERM")
	}
	// Crash: SIGKILL leaves the program behind, with its policy.
	a2, err := daemons.StartSpud(p.ln.GwA, daemons.SpudOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.a = a2
	tn := newTunnel(89, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	install(t, p, tn)
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	a2.Proc.Signal(9)
	a2.Proc.Wait(5 * time.Second)
	if !xdpOn(p.ln.GwA, "wan0") {
		t.Fatal("expected a stale XDP program after SIGKILL")
	}
	// With spud dead, protected cleartext must not leak through the
	// kernel's routes (fail closed): nothing in the clear leaves wan0.
	leak := capture(t, p.ln.GwA, "wan0", "icmp and host "+pl.ClientA4.String(), func() {
		p.ln.ClientA.Exec("ping", "-n", "-c", "3", "-i", "0.1", "-W", "1", pl.ClientB4.String())
	})
	if out, _ := exec.Command("tcpdump", "-r", leak, "-n").CombinedOutput(); strings.Contains(string(out), "ICMP echo request") {
		t.Errorf("protected cleartext left in the clear while spud was dead:\n%s", out)
	}
	a3, err := daemons.StartSpud(p.ln.GwA, daemons.SpudOptions{})
	if err != nil {
		t.Fatalf("restart over a stale program: %v", err)
	}
	p.a = a3
	// The new spud starts empty (iked renegotiates or reinstalls what it
	// owns); here a fresh manual tunnel replaces the old one on both sides
	// (reusing the old outbound SA would restart its sequence numbers,
	// which gw-b rightly takes for replays).
	for _, id := range []api.SAID{{SPI: tn.SPIBA, Dir: api.Out, Remote: tn.AEnd}, {SPI: tn.SPIAB, Dir: api.In}} {
		if err := p.b.Client.DelSA(id); err != nil {
			t.Fatal(err)
		}
	}
	p.b.Client.DelPolicy(tn.Policies[1])
	install(t, p, newTunnel(90, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false))
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
}
