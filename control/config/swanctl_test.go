package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/pki/labca"
)

// A swanctl.conf as Debian's example has them: two connections, one with
// pre-shared keys and one with certificates, children with esp_proposals,
// start actions, DPD and rekey times, the secrets in a file of conf.d.
const swanctlExample = `# /etc/swanctl/swanctl.conf
connections {

   # Site to site with a pre-shared key
   site-b {
      version = 2
      local_addrs  = 198.18.0.1
      remote_addrs = 198.18.0.2
      proposals = aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048
      dpd_delay = 30s
      rekey_time = 4h
      mobike = no
      local-1 {
         auth = psk
         id = gw-a.example
      }
      remote-1 {
         auth = psk
         id = gw-b.example
      }
      children {
         lan {
            local_ts  = 198.18.1.0/24, 2001:db8:1::/64
            remote_ts = 198.18.2.0/24,2001:db8:2::/64
            esp_proposals = aes128gcm16, aes256-sha256
            start_action = trap
            dpd_action = restart
            rekey_time = 1h
            rekey_bytes = 1g
         }
      }
   }

   # With certificates; the peer's DN names it
   site-c {
      local_addrs  = 198.18.0.1
      remote_addrs = 198.18.0.3
      local {
         auth = pubkey
         certs = gw-a.pem
         id = gw-a.example
      }
      remote {
         auth = pubkey
         id = "C=CH, O=lab, CN=*"   # a DN: commas are not a list here
      }
      children {
         net {
            local_ts = 198.18.1.0/24
            remote_ts = 198.18.3.0/24
            esp_proposals = aes256gcm16-x25519
            start_action = start
            life_time = 90m
         }
      }
   }
}

include conf.d/*.conf
`

const swanctlSecrets = `secrets {
   ike-site-b {
      id-a = gw-a.example
      id-b = gw-b.example
      secret = 0x73656372657421
   }
}
`

// The same configuration in iked's YAML.
const swanctlExampleYAML = `connections:
  site-b:
    version: 2
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.2
    proposals: aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048
    dpd_delay: 30s
    rekey_time: 4h
    mobike: no
    local: {auth: psk, id: gw-a.example}
    remote: {auth: psk, id: gw-b.example}
    children:
      lan:
        local_ts: [198.18.1.0/24, "2001:db8:1::/64"]
        remote_ts: 198.18.2.0/24, 2001:db8:2::/64
        esp_proposals: aes128gcm16, aes256-sha256
        start_action: trap
        dpd_action: restart
        rekey_time: 1h
        rekey_bytes: 1g
  site-c:
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.3
    local:
      auth: pubkey
      certs: gw-a.pem
      id: gw-a.example
    remote:
      auth: pubkey
      id: "C=CH, O=lab, CN=*"
    children:
      net:
        local_ts: 198.18.1.0/24
        remote_ts: 198.18.3.0/24
        esp_proposals: aes256gcm16-x25519
        start_action: start
        life_time: 90m
secrets: secrets.yaml
`

const swanctlExampleSecretsYAML = `ike:
  ike-site-b:
    id: [gw-a.example, gw-b.example]
    secret: 0x73656372657421
`

// TestSwanctlEqualsYAML: a swanctl.conf (with an include, certificates in
// swanctl's folders next to it, secrets in its secrets section) and the
// same configuration in YAML give the same Config.
func TestSwanctlEqualsYAML(t *testing.T) {
	dir := t.TempDir()
	lab(t, dir, labca.ECDSAP256)
	conf := write(t, dir, "swanctl.conf", swanctlExample, 0o644)
	os.Mkdir(filepath.Join(dir, "conf.d"), 0o755)
	write(t, dir, "conf.d/secrets.conf", swanctlSecrets, 0o600)
	yml := write(t, dir, "iked.yaml", swanctlExampleYAML, 0o644)
	write(t, dir, "secrets.yaml", swanctlExampleSecretsYAML, 0o600)

	sw, err := Load(conf, fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	ym, err := Load(yml, fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	if sw.Connections["site-c"].Local.Credentials == nil || sw.Trust == nil {
		t.Fatal("site-c's certificate not loaded from x509/ next to swanctl.conf")
	}
	if len(sw.SecretList) != 1 || string(sw.SecretList[0].Key()) != "secret!" || len(sw.SecretList[0].IDs) != 2 {
		t.Fatalf("secrets %v", sw.SecretList)
	}
	if !slices.Equal(sw.Order, []string{"site-b", "site-c"}) {
		t.Errorf("order %v", sw.Order)
	}
	// What differs by construction: where each came from; the loaded
	// keys and store hold pointers of their own.
	for _, c := range []*Config{sw, ym} {
		c.Path, c.Secrets, c.Trust = "", "", nil
		c.Connections["site-c"].Local.Credentials = nil
		c.Connections["site-c"].Remote.Policy = nil
	}
	if !reflect.DeepEqual(sw, ym) {
		t.Errorf("swanctl.conf and YAML differ:\n%+v\n%+v", sw, ym)
		for _, n := range sw.Order {
			if !reflect.DeepEqual(sw.Connections[n], ym.Connections[n]) {
				t.Errorf("%s:\n%+v\n%+v", n, sw.Connections[n], ym.Connections[n])
			}
		}
	}
}

// TestSwanctlErrors: every error names the file, the line and the
// swanctl.conf key path.
func TestSwanctlErrors(t *testing.T) {
	base := func(conn, child string) string {
		return "connections {\n  a {\n    remote_addrs = 198.18.0.2\n" + conn +
			"    local { auth = psk \n id = gw-a.example\n }\n    remote {\n      auth = psk\n    }\n    children {\n      net {\n" +
			child + "      }\n    }\n  }\n}\n"
	}
	for _, tc := range []struct{ conf, want string }{
		{base("", "        esp_proposals = bogus-gcm\n"), `x.conf: line 12: connections.a.children.net.esp_proposals: item 1: proposal "bogus-gcm": unknown algorithm "bogus"`},
		{base("    mobike = yes\n", ""), `x.conf: line 4: connections.a.mobike: mobike is not supported: set mobike = no`},
		{base("    pools = p1\n", ""), `x.conf: line 4: connections.a.pools: address pools`},
		{base("    mobikee = no\n", ""), `x.conf: line 4: connections.a.mobikee: unknown field "mobikee"`},
		{base("    dpd_delay = soon\n", ""), `x.conf: line 4: connections.a.dpd_delay: duration "soon"`},
		{base("", "        updown = /usr/lib/ipsec/_updown iptables\n"), `line 12: connections.a.children.net.updown: iked runs no updown script`},
		{base("", "        local_ts = 10.0.0.0/33\n"), `line 12: connections.a.children.net.local_ts: item 1:`},
		{base("    local-2 {\n auth = psk\n }\n", ""), `line 7: connections.a.local: local-2 and local: iked has one local authentication round`},
		{"connections {\n  a {\n", `x.conf: line 2: connections.a: section not closed`},
		{"connections {\n  a : tmpl {\n  }\n}\n", `x.conf: line 2: connections.a: section references`},
		{"connections {\n  a = \"x\n", `x.conf: line 2: connections.a: quoted value not closed`},
		{"pools {\n  p { addrs = 10.0.0.0/24 }\n}\n", `x.conf: line 1: pools: address pools`},
		{"foo = bar\n", `x.conf: line 1: foo: a value outside any section`},
		{"include x.conf\n", `x.conf: line 1: include x.conf: no folder`},
		{"connections {\n  a {\n    remote_addrs = 198.18.0.2\n  }\n}\n", `x.conf: line 2: connections.a: missing local authentication`},
	} {
		_, err := ParseSwanctl("x.conf", []byte(tc.conf), fakeChecker{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.conf, err, tc.want)
		} else if !strings.HasPrefix(err.Error(), "config: x.conf: line ") {
			t.Errorf("%v: not config: FILE: line N", err)
		}
	}
}

// TestUnsupportedKeys: keys iked does not implement are errors, or
// warnings for the harmless ones, in YAML as in swanctl.conf: never
// accepted and dropped.
func TestUnsupportedKeys(t *testing.T) {
	conn := func(extra, child string) string {
		return "connections:\n  a:\n    remote_addrs: 198.18.0.2\n" + extra +
			"    local: {auth: psk, id: gw-a.example}\n    remote: {auth: psk}\n    children:\n      net:\n        local_ts: 198.18.1.0/24\n" + child
	}
	for _, tc := range []struct {
		yaml      string
		err, warn string
	}{
		{conn("    mobike: yes\n", ""), `y.yaml: line 4: connection "a": mobike: mobike is not supported: set mobike = no`, ""},
		{conn("    mobike: no\n", ""), "", ""},
		{conn("    vips: 0.0.0.0\n", ""), `vips: virtual IPs are not supported`, ""},
		{conn("    vips: []\n", ""), "", ""},
		{conn("    pull: yes\n", ""), "", `y.yaml: line 4: connection "a": pull: ignored`},
		{conn("    ocsp: reply\n", ""), "", `ocsp: "reply" ignored`},
		{conn("    ocsp: request\n", ""), `ocsp: "request": OCSP is not supported`, ""},
		{conn("", "        hw_offload: auto\n"), "", `line 9: connection "a": child "net": hw_offload: "auto" ignored`},
		{conn("", "        hw_offload: yes\n"), `hw_offload: "yes": NIC offload is not supported`, ""},
		{conn("", "        copy_df: yes\n        policies: yes\n"), "", ""},
		{conn("", "        mark_in: 42\n"), `mark_in: XFRM marks`, ""},
		{conn("", "        ah_proposals: sha256\n"), `ah_proposals: AH is not supported`, ""},
		{conn("", "        reqid: 7\n"), `reqid: iked assigns reqids`, ""},
		{strings.Replace(conn("", ""), "remote: {auth: psk}", "remote: {auth: psk, eap_id: \"%any\"}", 1), `remote: eap_id: EAP is not supported`, ""},
		{conn("    keyingtries: 3\n", ""), "", `keyingtries: 3 ignored`},
		{conn("    keyingtries: 1\n", ""), "", ""},
	} {
		c, err := Parse("y.yaml", []byte(tc.yaml), nil)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s\n got %v\nwant %s", tc.yaml, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.yaml, err)
		case tc.warn == "" && len(c.Warnings) > 0:
			t.Errorf("%s: warnings %q", tc.yaml, c.Warnings)
		case tc.warn != "" && (len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], tc.warn)):
			t.Errorf("%s: warnings %q, want %s", tc.yaml, c.Warnings, tc.warn)
		}
	}
	// The same in swanctl.conf: the warning names its file, line and key.
	c, err := ParseSwanctl("s.conf", []byte("connections {\n a {\n  remote_addrs = 198.18.0.2\n  pull = yes\n  local {\n auth = psk\n id = a.example\n}\n remote {\n auth = psk\n }\n children {\n n {\n hw_offload = auto\n }\n }\n }\n}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Warnings, []string{"config: s.conf: line 4: connections.a.pull: ignored: pull is IKEv1's mode config, and iked speaks IKEv2 only",
		`config: s.conf: line 14: connections.a.children.n.hw_offload: "auto" ignored: spud is the data plane, not the kernel's XFRM, and offloads nothing to the NIC`}) {
		t.Errorf("warnings %q", c.Warnings)
	}
}

// TestSwanctlSecretsMode: a file that holds secrets must be its owner's
// only, as iked's secrets file.
func TestSwanctlSecretsMode(t *testing.T) {
	dir := t.TempDir()
	conf := write(t, dir, "swanctl.conf", "connections {\n a {\n remote_addrs = 198.18.0.2\n local {\n auth = psk\n id = gw-a.example\n }\n remote {\n auth = psk\n id = gw-b.example\n }\n children {\n n {\n }\n }\n }\n}\n"+swanctlSecrets, 0o644)
	if _, err := Load(conf, nil); err == nil || !strings.Contains(err.Error(), "line 22: secrets.ike-site-b.secret: "+conf+" has mode 0644") {
		t.Errorf("secrets in a 0644 file: %v", err)
	}
	os.Chmod(conf, 0o600)
	if _, err := Load(conf, nil); err != nil {
		t.Error(err)
	}
	// A connection without a secret is refused at load.
	write(t, dir, "swanctl.conf", "connections {\n a {\n remote_addrs = 198.18.0.2\n local {\n auth = psk\n id = gw-a.example\n }\n remote {\n auth = psk\n id = gw-x.example\n }\n children {\n n {\n }\n }\n }\n}\n", 0o600)
	if _, err := Load(conf, nil); err == nil || !strings.Contains(err.Error(), "no secret for gw-a.example - gw-x.example in the secrets section") {
		t.Errorf("no secret: %v", err)
	}
}

// A YAML file named .conf is read as swanctl.conf; the error says so.
func TestYAMLNamedConf(t *testing.T) {
	p := write(t, t.TempDir(), "iked.conf", good, 0o600)
	if _, err := Load(p, nil); err == nil || !strings.Contains(err.Error(), "line 1: spud: section references") || !strings.Contains(err.Error(), "name iked's YAML .yaml") {
		t.Errorf("%v", err)
	}
}

func TestIsSwanctl(t *testing.T) {
	for _, tc := range []struct {
		path, src string
		want      bool
	}{
		{"/etc/swanctl/swanctl.conf", "connections:\n", true},
		{"/etc/spugate/iked.yaml", "connections {\n", false},
		{"iked.yml", "", false},
		{"iked", "# comment\n\nconnections {\n", true},
		{"iked", "include conf.d/*.conf\n", true},
		{"iked", "a = b\n", true},
		{"iked", "# comment\nconnections:\n  a: {local: x}\n", false},
		{"iked", "spud: /run/x.sock # a = b\n", false},
	} {
		if got := IsSwanctl(tc.path, []byte(tc.src)); got != tc.want {
			t.Errorf("IsSwanctl(%q, %q) = %v", tc.path, tc.src, got)
		}
	}
}

// FuzzParseSwanctl: a swanctl.conf, whatever its bytes, is a Config or an
// error naming its file, never a panic.
func FuzzParseSwanctl(f *testing.F) {
	f.Add([]byte(swanctlExample))
	f.Add([]byte(swanctlSecrets))
	f.Add([]byte("connections {\n a {\n  mobike = yes\n  local {\n auth = psk\n id = a\n }\n remote {\n auth = psk\n }\n children {\n n {\n esp_proposals = x\n local_ts = 1.2.3.4/40\n }\n }\n }\n}\niked {\n spud = /x\n pki {\n x509 = y\n }\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		_, err := ParseSwanctl("f.conf", src, fakeChecker{})
		if err != nil && !strings.HasPrefix(err.Error(), "config: f.conf") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

// TestSwanctlExampleEqualsYAMLExample: deploy/examples' swanctl.conf and
// its YAML and secrets files are one configuration.
func TestSwanctlExampleEqualsYAMLExample(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"swanctl.example.conf", "iked.example.yaml", "secrets.example.yaml"} {
		b, err := os.ReadFile(filepath.Join("../../deploy/examples", f))
		if err != nil {
			t.Fatal(err)
		}
		write(t, dir, f, string(b), 0o600)
	}
	sw, err := Load(filepath.Join(dir, "swanctl.example.conf"), fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	ym, err := Load(filepath.Join(dir, "iked.example.yaml"), fakeChecker{})
	if err != nil {
		t.Fatal(err)
	}
	sw.Path, ym.Path, ym.Secrets = "", "", ""
	// Secrets are named by their section in swanctl.conf (ike-site-b), by
	// their key in the YAML (site-b), and the YAML's come in map order.
	for _, c := range []*Config{sw, ym} {
		for _, s := range c.SecretList {
			s.Name = strings.TrimPrefix(s.Name, "ike-")
		}
		slices.SortFunc(c.SecretList, func(a, b *Secret) int { return strings.Compare(a.Name, b.Name) })
	}
	if !reflect.DeepEqual(sw, ym) {
		t.Errorf("the examples differ:\n%+v\n%+v", sw, ym)
		for _, n := range ym.Order {
			if !reflect.DeepEqual(sw.Connections[n], ym.Connections[n]) {
				t.Errorf("%s:\n%+v\n%+v", n, sw.Connections[n], ym.Connections[n])
			}
		}
	}
}
