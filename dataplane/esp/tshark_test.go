package esp

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/iphdr"
)

// tsharkAlgos maps suites to the names of tshark's ESP SA table (UAT
// esp_sa: protocol, src, dst, SPI, encryption, key, authentication, key).
// Wireshark 4.0's ESP dissector knows neither ChaCha20-Poly1305 nor ESN;
// those are cross-checked with scapy (scapy_test.go).
var tsharkAlgos = map[ipsec.Suite][2]string{
	ipsec.AES128GCM16:  {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	ipsec.AES192GCM16:  {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	ipsec.AES256GCM16:  {"AES-GCM with 16 octet ICV [RFC4106]", "NULL"},
	ipsec.AES128SHA256: {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
	ipsec.AES256SHA256: {"AES-CBC [RFC3602]", "HMAC-SHA-256-128 [RFC4868]"},
}

// TestTsharkDecodesEncap has tshark's ESP dissector, given the keys,
// decrypt and authenticate packets that Encap produced: the wire format
// proven by an independent implementation. It also checks that tshark
// flags a packet whose ICV was corrupted.
func TestTsharkDecodesEncap(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (deploy/deps.sh installs it)")
	}
	for _, suite := range allSuites {
		algos, ok := tsharkAlgos[suite]
		for _, v6outer := range []bool{false, true} {
			for _, udp := range []bool{false, true} {
				o := pairOpts{suite: suite, v6outer: v6outer, udp: udp, spi: 0x5ca1ab1e}
				t.Run(o.String(), func(t *testing.T) {
					if !ok {
						t.Skipf("tshark %s has no %s in its ESP dissector", tsharkVersion(tshark), suite)
					}
					tsharkCheck(t, tshark, o, algos)
				})
			}
		}
	}
	// Speed padding (up to 112 extra bytes) on AES-GCM.
	o := pairOpts{suite: ipsec.AES128GCM16, spi: 0x5ca1ab1e, speedPad: maxSpeedPad}
	t.Run(o.String(), func(t *testing.T) { tsharkCheck(t, tshark, o, tsharkAlgos[ipsec.AES128GCM16]) })
}

func tsharkVersion(tshark string) string {
	out, _ := exec.Command(tshark, "-v").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

func tsharkCheck(t *testing.T, tshark string, o pairOpts, algos [2]string) {
	out, _ := newPair(t, o)
	inner := [][]byte{
		ipv4Packet(host4, peer4, iphdr.ProtoICMP, 0, false, icmpEcho(false, 0x77, 1, []byte("spugate ping v4"))),
		ipv4Packet(host4, peer4, iphdr.ProtoUDP, 0, true, udpPayload(40000, 33333, bytes.Repeat([]byte{0xab}, 333))),
		ipv6Packet(host6, peer6, iphdr.ProtoUDP, 0, udpPayload(40001, 33334, []byte("spugate udp v6"))),
		ipv6Packet(host6, peer6, iphdr.ProtoICMPv6, 0, icmpEcho(true, 0x66, 2, []byte("spugate ping v6"))),
	}
	fixICMPv6(inner[3])
	var wire [][]byte
	for _, p := range inner {
		wire = append(wire, encapOne(t, out, p))
	}
	bad := append([]byte(nil), wire[0]...)
	bad[len(bad)-1] ^= 0x55
	wire = append(wire, bad)

	dir := t.TempDir()
	pcap := filepath.Join(dir, "esp.pcap")
	writePcap(t, pcap, wire)

	enc, integ := testKeys(o.suite, 0x40)
	proto, src, dst := "IPv4", gw4a.String(), gw4b.String()
	if o.v6outer {
		proto, src, dst = "IPv6", gw6a.String(), gw6b.String()
	}
	ikey := ""
	if integ != nil {
		ikey = "0x" + hex.EncodeToString(integ)
	}
	uat := fmt.Sprintf(`uat:esp_sa:"%s","%s","%s","0x%08x","%s","0x%s","%s","%s"`,
		proto, src, dst, o.spi, algos[0], hex.EncodeToString(enc), algos[1], ikey)
	args := []string{"-n", "-r", pcap,
		"-o", "esp.enable_encryption_decode:TRUE",
		"-o", "esp.enable_authentication_check:TRUE",
		"-o", uat,
		"-T", "fields", "-E", "separator=|",
		"-e", "frame.number", "-e", "esp.spi", "-e", "esp.sequence",
		"-e", "esp.icv_good", "-e", "esp.icv_bad",
		"-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
		"-e", "icmp.type", "-e", "icmpv6.type", "-e", "udp.dstport", "-e", "esp.pad_len", "-e", "esp.protocol",
	}
	cmd := exec.Command(tshark, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(res)), "\n")
	if len(lines) != len(wire) {
		t.Fatalf("tshark printed %d lines for %d packets:\n%s\n%s", len(lines), len(wire), res, stderr.String())
	}
	type want struct {
		src, dst, l4 string
	}
	wants := []want{
		{host4.String(), peer4.String(), "icmp=8"},
		{host4.String(), peer4.String(), "udp=33333"},
		{host6.String(), peer6.String(), "udp=33334"},
		{host6.String(), peer6.String(), "icmpv6=128"},
	}
	for i, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != 14 {
			t.Fatalf("packet %d: odd tshark line %q", i+1, line)
		}
		spi, icvGood, icvBad := f[1], f[3], f[4]
		if !strings.Contains(spi, fmt.Sprintf("%x", o.spi)) && spi != fmt.Sprint(o.spi) {
			t.Errorf("packet %d: tshark sees SPI %q", i+1, spi)
		}
		if i == len(lines)-1 {
			// The corrupted packet: tshark must flag the ICV as bad.
			if !isTrue(icvBad) || isTrue(icvGood) {
				t.Errorf("corrupted packet not flagged: %q", line)
			}
			continue
		}
		if !isTrue(icvGood) || isTrue(icvBad) {
			t.Errorf("packet %d: tshark did not verify the ICV: %q", i+1, line)
		}
		w := wants[i]
		addrs := f[5] + "," + f[6] + "," + f[7] + "," + f[8]
		if !strings.Contains(addrs, w.src) || !strings.Contains(addrs, w.dst) {
			t.Errorf("packet %d: tshark did not decrypt to %s -> %s: %q", i+1, w.src, w.dst, line)
		}
		kind, val, _ := strings.Cut(w.l4, "=")
		var got string
		switch kind {
		case "icmp":
			got = f[9]
		case "icmpv6":
			got = f[10]
		case "udp":
			got = f[11]
		}
		if !strings.Contains(got, val) {
			t.Errorf("packet %d: inner %s not %s in %q", i+1, kind, val, line)
		}
	}
	t.Logf("tshark verified %d packets and flagged the corrupted one", len(wire)-1)
}

func isTrue(s string) bool {
	s = strings.TrimSpace(s)
	return s == "1" || strings.EqualFold(s, "true")
}
