package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `spud: /run/test/spud.sock
secrets: secrets.yaml
connections:
  site-b:
    local_addrs: 198.18.0.1
    remote_addrs: [198.18.0.2]
    proposals: aes128gcm16-prfsha256-x25519
    dpd_delay: 10s
    rekey_time: 1h
    local:
      auth: psk
      id: gw-a.example
    remote:
      auth: psk
      id: gw-b.example
    children:
      net:
        local_ts: 198.18.1.0/24
        remote_ts: [198.18.2.0/24, "198.18.3.0/24[udp/53]"]
        esp_proposals: [aes128gcm16, aes256-sha256]
        rekey_time: 10s
        start_action: start
      second:
        remote_ts: 198.18.9.9
  any-peer:
    remote_addrs: "%any"
    local:
      auth: psk
      id: "@responder.example"
    remote:
      auth: psk
    children:
      c:
        local_ts: 0.0.0.0/0
`

const goodSecrets = `ike:
  ab:
    id: [gw-a.example, gw-b.example]
    secret: 0x73656372657421
  wild:
    id: responder.example
    secret: "0sc2VjcmV0IQ=="
`

type fakeChecker struct{}

func (fakeChecker) CheckIKEProposal(s string) error {
	if strings.Contains(s, "bogus") {
		return fmt.Errorf("proposal %q: unknown algorithm %q", s, "bogus")
	}
	return nil
}
func (fakeChecker) CheckESPProposal(s string) error { return fakeChecker{}.CheckIKEProposal(s) }

func write(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGood(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "iked.yaml", good, 0o644)
	write(t, dir, "secrets.yaml", goodSecrets, 0o600)
	c, err := Load(p, fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Order, ",") != "site-b,any-peer" {
		t.Errorf("order %v", c.Order)
	}
	sb := c.Connections["site-b"]
	if sb.Locals[0].String() != "198.18.0.1" || sb.Remotes[0].String() != "198.18.0.2/32" || sb.DPDDelay.D() != 10*time.Second {
		t.Errorf("site-b: %+v", sb)
	}
	if sb.RekeyTime.D() != time.Hour || sb.OverTime.D() != 6*time.Minute {
		t.Errorf("ike rekey %v over %v", sb.RekeyTime.D(), sb.OverTime.D())
	}
	net := sb.Children["net"]
	if net.RekeyTime.D() != 10*time.Second || net.LifeTime.D() != 11*time.Second || net.RandTime.D() != time.Second {
		t.Errorf("child lifetimes %v %v %v", net.RekeyTime.D(), net.LifeTime.D(), net.RandTime.D())
	}
	if len(net.RemoteSelectors) != 2 || net.RemoteSelectors[1].Proto != 17 || net.RemoteSelectors[1].FromPort != 53 {
		t.Errorf("selectors %+v", net.RemoteSelectors)
	}
	if *net.ReplayWindow != 1024 || net.Mode != "tunnel" || net.StartAction != "start" || net.DPDAction != "clear" {
		t.Errorf("child defaults %+v", net)
	}
	if sec := sb.Children["second"]; !sec.LocalSelectors[0].Dynamic {
		t.Errorf("default local_ts is not dynamic: %+v", sec.LocalSelectors)
	}
	ap := c.Connections["any-peer"]
	if len(ap.Remotes) != 2 || !ap.Remote.Identity.Any() || ap.Local.Identity.Type != IDFQDN || string(ap.Local.Identity.Data) != "responder.example" {
		t.Errorf("any-peer %+v %+v", ap.Remotes, ap.Local.Identity)
	}
	s, ok := c.LookupPSK(sb.Local.Identity, IDFQDN, []byte("gw-b.example"))
	if !ok || string(s.Key()) != "secret!" || s.Name != "ab" {
		t.Errorf("psk lookup: %v %v", s, ok)
	}
	if s, ok := c.LookupPSK(ap.Local.Identity, IDFQDN, []byte("whoever")); !ok || s.Name != "wild" || string(s.Key()) != "secret!" {
		t.Errorf("psk lookup for %%any: %v %v", s, ok)
	}
	if strings.Contains(fmt.Sprint(s), "secret!") {
		t.Error("a Secret prints its key")
	}
}

func TestErrorsNameFileLineAndField(t *testing.T) {
	cases := []struct {
		name, edit, want string
	}{
		{"bad esp proposal", "esp_proposals: [aes128gcm16, aes256-sha256]", `iked.yaml: line 20: connection "site-b": child "net": esp_proposals: proposal "bogus-esp"`},
		{"unknown field", "start_action: start", `line 22`},
		{"bad selector", "local_ts: 198.18.1.0/24", `line 18: connection "site-b": child "net": local_ts: selector "198.18.1.0/33"`},
		{"bad address", "local_addrs: 198.18.0.1", `line 5: connection "site-b": local_addrs: "198.18.0.300" is not an IP address`},
		{"bad duration", "dpd_delay: 10s", `line 8`},
		{"bad start action", "start_action: start", `line 22: connection "site-b": child "net": start_action: "later": want none, trap, start`},
		{"bad id", "id: gw-b.example", `line 15: connection "site-b": remote: id: identity "keyid:zz"`},
	}
	repl := map[string]string{
		"bad esp proposal": "esp_proposals: [aes128gcm16, bogus-esp]",
		"unknown field":    "start_actoin: start",
		"bad selector":     "local_ts: 198.18.1.0/33",
		"bad address":      "local_addrs: 198.18.0.300",
		"bad duration":     "dpd_delay: 10 fortnights",
		"bad start action": "start_action: later",
		"bad id":           "id: keyid:zz",
	}
	for _, c := range cases {
		src := strings.Replace(good, c.edit, repl[c.name], 1)
		if src == good {
			t.Fatalf("%s: edit did not apply", c.name)
		}
		_, err := Parse("/etc/spugate/iked.yaml", []byte(src), fakeChecker{})
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error\n  %v\nwant it to contain\n  %s", c.name, err, c.want)
		}
	}
}

func TestSecretsFile(t *testing.T) {
	dir := t.TempDir()
	p := write(t, dir, "iked.yaml", good, 0o644)
	sp := write(t, dir, "secrets.yaml", goodSecrets, 0o644)
	_, err := Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable secrets: %v", err)
	}
	os.Chmod(sp, 0o600)
	// A connection without a matching secret fails at load.
	write(t, dir, "secrets.yaml", "ike:\n  x:\n    id: other.example\n    secret: hunter2\n", 0o600)
	_, err = Load(p, nil)
	if err == nil || !strings.Contains(err.Error(), `connection "site-b": no secret`) {
		t.Errorf("missing secret: %v", err)
	}
	// A broken secrets file does not echo its secret.
	write(t, dir, "secrets.yaml", "ike:\n  x:\n    id: a\n    secret: hunter2\n    bad: [\n", 0o600)
	_, err = Load(p, nil)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("broken secrets file: %v", err)
	}
}

func TestParseIdentity(t *testing.T) {
	cases := []struct {
		in   string
		typ  uint8
		data string
	}{
		{"198.18.0.1", IDIPv4, "\xc6\x12\x00\x01"},
		{"@gw.example", IDFQDN, "gw.example"},
		{"gw.example", IDFQDN, "gw.example"},
		{"fqdn:gw.example", IDFQDN, "gw.example"},
		{"alice@example.com", IDRFC822, "alice@example.com"},
		{"@#0102ff", IDKeyID, "\x01\x02\xff"},
		{"keyid:0102", IDKeyID, "\x01\x02"},
	}
	for _, c := range cases {
		id, err := ParseIdentity(c.in)
		if err != nil || id.Type != c.typ || string(id.Data) != c.data {
			t.Errorf("%s: %d %q %v", c.in, id.Type, id.Data, err)
		}
	}
	if id, err := ParseIdentity("2001:db8::1"); err != nil || id.Type != IDIPv6 || len(id.Data) != 16 {
		t.Errorf("ipv6: %+v %v", id, err)
	}
	dn, err := ParseIdentity("C=CH, O=spugate, CN=gw-a")
	if err != nil || dn.Type != IDDN || !strings.Contains(string(dn.Data), "gw-a") {
		t.Errorf("dn: %+v %v", dn, err)
	}
	if _, err := ParseIdentity("C=CH, XX=1"); err == nil {
		t.Error("unknown DN attribute accepted")
	}
	w, _ := ParseIdentity("*.site.example")
	if !w.Matches(IDFQDN, []byte("gw1.SITE.example")) || w.Matches(IDFQDN, []byte("gw1.other.example")) || w.Matches(IDRFC822, []byte("a.site.example")) {
		t.Error("wildcard matching")
	}
}

func TestParseDurationAndSelector(t *testing.T) {
	for in, want := range map[string]time.Duration{"30": 30 * time.Second, "10s": 10 * time.Second, "5m": 5 * time.Minute, "4h": 4 * time.Hour, "1d": 24 * time.Hour, "1.5s": 1500 * time.Millisecond} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-5s", "3w"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("duration %q accepted", bad)
		}
	}
	s, err := ParseSelector("198.18.1.1-198.18.1.9[tcp/1000-2000]")
	if err != nil || s.From.String() != "198.18.1.1" || s.To.String() != "198.18.1.9" || s.Proto != 6 || s.FromPort != 1000 || s.ToPort != 2000 {
		t.Errorf("%+v %v", s, err)
	}
	for _, bad := range []string{"198.18.1.9-198.18.1.1", "1.2.3.4[/80]", "x", "1.2.3.4[tcp/99999]", "::/0[udp", "198.18.0.1-2001:db8::1"} {
		if _, err := ParseSelector(bad); err == nil {
			t.Errorf("selector %q accepted", bad)
		}
	}
	var e error = errors.New("x")
	_ = e
}

// The IKE_SA_INIT defences default to charon's per-address thresholds and
// a global cap, and a negative one is refused with its line.
func TestHalfOpenDefences(t *testing.T) {
	c, err := Parse("/etc/spugate/iked.yaml", []byte(good), fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if c.CookieThreshold != DefaultCookieThreshold || c.CookieThresholdIP != 3 || c.BlockThreshold != 5 || c.InitLimitHalfOpen != DefaultInitLimitHalfOpen {
		t.Errorf("defaults: cookie_threshold %d, cookie_threshold_ip %d, block_threshold %d, init_limit_half_open %d",
			c.CookieThreshold, c.CookieThresholdIP, c.BlockThreshold, c.InitLimitHalfOpen)
	}
	// strongSwan's cookie_threshold_ip is below its block_threshold, or a
	// spoofer fills the block threshold without ever answering a COOKIE.
	if c.CookieThresholdIP >= c.BlockThreshold {
		t.Errorf("cookie_threshold_ip %d is not below block_threshold %d", c.CookieThresholdIP, c.BlockThreshold)
	}
	_, err = Parse("/etc/spugate/iked.yaml", []byte("block_threshold: -1\n"+good), fakeChecker{})
	if err == nil || !strings.Contains(err.Error(), "iked.yaml: line 1: block_threshold: -1 is negative") {
		t.Errorf("negative block_threshold: %v", err)
	}
}

// max_packet defaults to charon's, fragment_memory to 32 MiB; both are
// checked with their lines.
func TestMemoryBounds(t *testing.T) {
	c, err := Parse("/etc/spugate/iked.yaml", []byte(good), fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxPacket != 10000 || c.FragmentMemory != 32<<20 {
		t.Errorf("defaults: max_packet %d, fragment_memory %d", c.MaxPacket, c.FragmentMemory)
	}
	c, err = Parse("/etc/spugate/iked.yaml", []byte("max_packet: 65000\nfragment_memory: 1g\n"+good), fakeChecker{})
	if err != nil || c.MaxPacket != 65000 || c.FragmentMemory != 1<<30 {
		t.Errorf("max_packet: 65000, fragment_memory: 1g: %v", err)
	}
	for in, want := range map[string]string{
		"max_packet: 1000\n":                        "line 1: max_packet: 1000 out of range (1280..65535 bytes)",
		"max_packet: 70000\n":                       "line 1: max_packet: 70000 out of range",
		"max_packet: 20000\nfragment_memory: 10k\n": "line 2: fragment_memory: 10240 out of range (max_packet, 20000 bytes, to 1024g)",
	} {
		if _, err := Parse("/etc/spugate/iked.yaml", []byte(in+good), fakeChecker{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
	}
}
