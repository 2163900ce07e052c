package xfrmargs

import (
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
)

var local = netip.MustParseAddr("198.18.0.1")

func isLocal(a netip.Addr) bool { return a == local }

func split(s string) []string { return strings.Fields(s) }

func TestParseSA(t *testing.T) {
	key := "0x" + strings.Repeat("11", 20)
	sa, err := ParseSA(split("src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x1000 reqid 7 mode tunnel aead rfc4106(gcm(aes)) "+key+
		" 128 encap espinudp 4500 4501 0.0.0.0 replay-window 64 flag esn sel src 198.18.1.0/24 dst 198.18.2.0/24"), isLocal)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Dir != api.Out || sa.Local != local || sa.Remote.String() != "198.18.0.2" || sa.SPI != 0x1000 || sa.ReqID != 7 ||
		sa.Suite != ipsec.AES128GCM16 || !sa.ESN || sa.ReplayWindow != 64 || sa.Encap == nil ||
		sa.Encap.LocalPort != 4500 || sa.Encap.RemotePort != 4501 ||
		sa.LocalTS[0].String() != "198.18.1.0/24" || sa.RemoteTS[0].String() != "198.18.2.0/24" {
		t.Errorf("%+v", sa)
	}
	// The same facts seen from the receiving side: an inbound SA, ports
	// and selectors swapped.
	in, err := ParseSA(split("src 198.18.0.2 dst 198.18.0.1 proto esp spi 0x2000 reqid 7 mode tunnel aead rfc4106(gcm(aes)) "+key+
		" 128 encap espinudp 4501 4500 0.0.0.0 sel src 198.18.2.0/24 dst 198.18.1.0/24"), isLocal)
	if err != nil {
		t.Fatal(err)
	}
	if in.Dir != api.In || in.Local != local || in.Encap.LocalPort != 4500 || in.Encap.RemotePort != 4501 ||
		in.LocalTS[0].String() != "198.18.1.0/24" || in.RemoteTS[0].String() != "198.18.2.0/24" {
		t.Errorf("inbound %+v", in)
	}
	cbc, err := ParseSA(split("src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x3000 reqid 1 mode tunnel enc cbc(aes) 0x"+
		strings.Repeat("22", 32)+" auth-trunc hmac(sha256) 0x"+strings.Repeat("33", 32)+" 128"), isLocal)
	if err != nil || cbc.Suite != ipsec.AES256SHA256 || len(cbc.IntegKey) != 32 {
		t.Errorf("cbc: %+v %v", cbc, err)
	}
	chacha, err := ParseSA(split("src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x3001 reqid 1 mode tunnel aead rfc7539esp(chacha20,poly1305) 0x"+
		strings.Repeat("44", 36)+" 128 replay-window 0"), isLocal)
	if err != nil || chacha.Suite != ipsec.ChaCha20Poly1305 || chacha.ReplayWindow != -1 {
		t.Errorf("chacha: %+v %v", chacha, err)
	}
	gcm192, err := ParseSA(split("src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x3002 reqid 1 mode tunnel aead rfc4106(gcm(aes)) 0x"+
		strings.Repeat("55", 28)+" 128"), isLocal)
	if err != nil || gcm192.Suite != ipsec.AES192GCM16 {
		t.Errorf("aes-gcm-192: %+v %v", gcm192, err)
	}
}

func TestParseSAErrors(t *testing.T) {
	key := "0x" + strings.Repeat("11", 20)
	base := "src 198.18.0.1 dst 198.18.0.2 proto esp spi 0x1000 reqid 1 mode tunnel aead rfc4106(gcm(aes)) " + key + " 128"
	for _, c := range []struct{ args, want string }{
		{strings.Replace(base, "0x1000", "0x10", 1), "reserved"},
		{strings.Replace(base, key, "0x0102", 1), "20, 28 or 36"},
		{strings.Replace(base, key, "1122", 1), "0x followed by hex"},
		{strings.Replace(base, "proto esp", "proto ah", 1), "only esp"},
		{strings.Replace(base, "198.18.0.1", "198.18.0.9", 1), "say dir in or dir out"},
		{base + " encap espinudp 4500", "missing value"},
		{base + " bogus 1", `unknown keyword "bogus"`},
		{strings.Replace(base, "aead rfc4106(gcm(aes)) "+key+" 128", "", 1), "no algorithm"},
		{base + " sel sport 80", "only src and dst"},
		{strings.Replace(base, "src 198.18.0.1 ", "", 1), "src and dst are required"},
	} {
		if _, err := ParseSA(split(c.args), isLocal); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(split("src 198.18.1.0/24 dst 198.18.2.0/24 proto udp dir out tmpl src 198.18.0.1 dst 198.18.0.2 proto esp reqid 3 mode tunnel dev lan0"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Action != api.Protect || p.ReqID != 3 || p.Local != local || p.LocalTS[0].Proto != 17 || p.RemoteTS[0].String() != "198.18.2.0/24[udp]" || p.Interfaces[0] != "lan0" {
		t.Errorf("%+v", p)
	}
	b, err := ParsePolicy(split("src 198.18.1.0/24 dst 198.18.9.0/24 dir out action block"))
	if err != nil || b.Action != api.Discard {
		t.Errorf("block: %+v %v", b, err)
	}
	a, err := ParsePolicy(split("src 198.18.1.0/24 dst 198.18.9.0/24 dir out"))
	if err != nil || a.Action != api.Bypass {
		t.Errorf("allow: %+v %v", a, err)
	}
	for _, c := range []struct{ args, want string }{
		{"src 198.18.1.0/24 dst 198.18.2.0/24 dir in tmpl src 198.18.0.1 dst 198.18.0.2 proto esp reqid 3", "outbound policies only"},
		{"src 198.18.1.0/24 dst 198.18.2.0/24 dir out tmpl src 198.18.0.1 dst 198.18.0.2 proto esp", "reqid"},
		{"src 198.18.1.0/33 dst 198.18.2.0/24 dir out", "not an address or prefix"},
		{"dst 198.18.2.0/24 dir out", "local and remote selectors"},
	} {
		if _, err := ParsePolicy(split(c.args)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.args, err, c.want)
		}
	}
}
