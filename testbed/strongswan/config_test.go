package strongswan

import (
	"strings"
	"testing"
	"time"
)

func testConfig() Config {
	return Config{
		Dir: "/tmp/x",
		Conns: []Conn{{
			Name: "site", LocalAddrs: []string{"198.18.0.2"}, RemoteAddrs: []string{"%any"},
			Proposals: []string{"aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"},
			Mobike:    No, Fragmentation: Flag("force"), DPDDelay: 1500 * time.Millisecond, RekeyTime: -1, Keyingtries: -1,
			Local:    Auth{Auth: "pubkey", ID: `C=CH, O="x", CN=a b`, Certs: []string{"gw.pem"}},
			Remote:   Auth{Auth: "rsa/pss-sha256", ID: "gw-a.lab.example", CACerts: []string{"ca.pem"}},
			Children: []Child{{Name: "net", LocalTS: []string{"198.18.2.0/24", "2001:db8:2::/64"}, RemoteTS: []string{"198.18.1.0/24"}, LifeTime: 10 * time.Second, ReplayWindow: -1}},
			Extra:    map[string]string{"childless": "force"},
		}},
		Secrets: Secrets{IKE: []PSK{{IDs: []string{"a", "b"}, Secret: []byte{0, 1, 0xff}}}},
		Files:   Files{X509: map[string][]byte{"gw.pem": nil}, X509CA: map[string][]byte{"ca.pem": nil}},
		Settings: Settings{ReuseIKESA: No, IKESATableSize: 4096, RetransmitTimeout: 0.5,
			Extra: map[string]string{"plugins.kernel-libipsec.allow_peer_ts": "yes"}},
		Log:      map[string]int{"knl": 3},
		DumpKeys: true,
	}
}

func TestSwanctlConf(t *testing.T) {
	c := testConfig()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.swanctlConf()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\t\tremote_addrs = \"%any\"\n",
		"\t\tproposals = \"aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048\"\n",
		"\t\tversion = \"2\"\n",
		"\t\tmobike = \"no\"\n",
		"\t\tfragmentation = \"force\"\n",
		"\t\tdpd_delay = \"2s\"\n", // rounded up, never 0
		"\t\trekey_time = \"0\"\n",
		"\t\tkeyingtries = \"0\"\n",
		"\t\tchildless = \"force\"\n",
		"\t\t\tid = \"C=CH, O=\\\"x\\\", CN=a b\"\n",
		"\t\t\tauth = \"rsa/pss-sha256\"\n",
		"\t\t\tcacerts = \"ca.pem\"\n",
		"\t\t\t\tlocal_ts = \"198.18.2.0/24,2001:db8:2::/64\"\n",
		"\t\t\t\tlife_time = \"10s\"\n",
		"\t\t\t\treplay_window = \"0\"\n",
		"\tike-1 {\n\t\tid-1 = \"a\"\n\t\tid-2 = \"b\"\n\t\tsecret = \"0x0001ff\"\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("swanctl.conf lacks %q:\n%s", want, s)
		}
	}
	if strings.Count(s, "{") != strings.Count(s, "}") {
		t.Errorf("unbalanced:\n%s", s)
	}
}

func TestStrongswanConf(t *testing.T) {
	c := testConfig()
	s, err := c.strongswanConf("/tmp/x/gw-b-charon")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\tload = \"openssl random ",
		"kernel-libipsec kernel-netlink\"\n",
		"\tinstall_routes = \"yes\"\n",
		"\treuse_ikesa = \"no\"\n",
		"\tikesa_table_size = \"4096\"\n",
		"\tretransmit_timeout = \"0.5\"\n",
		"\tplugins.kernel-libipsec.allow_peer_ts = \"yes\"\n",
		"socket = \"unix:///tmp/x/gw-b-charon/charon.vici\"\n",
		"path = \"/tmp/x/gw-b-charon/charon.log\"\n",
		"\t\t\tike = \"4\"\n", "\t\t\tchd = \"4\"\n", "\t\t\tesp = \"4\"\n", "\t\t\tknl = \"3\"\n",
		"swanctl {\n\tsocket = \"unix:///tmp/x/gw-b-charon/charon.vici\"\n}\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("strongswan.conf lacks %q:\n%s", want, s)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"bad conn name":       func(c *Config) { c.Conns[0].Name = "a b" },
		"dup conn":            func(c *Config) { c.Conns = append(c.Conns, c.Conns[0]) },
		"dup child":           func(c *Config) { c.Conns[0].Children = append(c.Conns[0].Children, c.Conns[0].Children[0]) },
		"non-lab address":     func(c *Config) { c.Conns[0].RemoteAddrs = []string{"10.0.0.1"} },
		"hostname address":    func(c *Config) { c.Conns[0].RemoteAddrs = []string{"example.com"} },
		"non-lab TS":          func(c *Config) { c.Conns[0].Children[0].RemoteTS = []string{"192.168.0.0/16"} },
		"non-lab TS range":    func(c *Config) { c.Conns[0].Children[0].RemoteTS = []string{"198.18.0.1-10.0.0.1"} },
		"missing cert file":   func(c *Config) { c.Conns[0].Local.Certs = []string{"nope.pem"} },
		"missing cacert file": func(c *Config) { c.Conns[0].Remote.CACerts = []string{"nope.pem"} },
		"bad file name":       func(c *Config) { c.Files.Private = map[string][]byte{"../x": nil} },
		"bad subsystem":       func(c *Config) { c.Log = map[string]int{"foo": 1} },
		"bad level":           func(c *Config) { c.Log = map[string]int{"ike": 5} },
		"bad instance name":   func(c *Config) { c.Name = "a/b" },
	} {
		c := testConfig()
		mod(&c)
		if err := c.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := testConfig()
	c.Conns[0].Children[0].LocalTS = []string{"dynamic", "0.0.0.0/0", "::/0", "198.18.1.5", "198.18.1.0/24[tcp/80]", "198.18.1.1-198.18.1.9"}
	if err := c.validate(); err != nil {
		t.Errorf("good selectors: %v", err)
	}
	c.Conns[0].Local.ID = "a\nb"
	if _, err := c.swanctlConf(); err == nil {
		t.Error("line break in a value accepted")
	}
}

// TestPluginSettings checks that plugin sections are written nested under
// charon.plugins, beside the instance's own VICI socket, and that a plugin
// folder must be an absolute path.
func TestPluginSettings(t *testing.T) {
	c := testConfig()
	c.Settings.Plugin = map[string]map[string]string{
		"load-tester": {"enable": "yes", "fake_kernel": "yes"},
		"vici":        {"socket": "unix:///elsewhere"},
	}
	c.PluginDir = "/var/cache/spugate/load-tester/plugins"
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.strongswanConf("/tmp/x/gw-a-charon")
	if err != nil {
		t.Fatal(err)
	}
	want := "\tplugins {\n\t\tvici {\n\t\t\tsocket = \"unix:///tmp/x/gw-a-charon/charon.vici\"\n\t\t}\n" +
		"\t\tload-tester {\n\t\t\tenable = \"yes\"\n\t\t\tfake_kernel = \"yes\"\n\t\t}\n\t}\n"
	if !strings.Contains(s, want) {
		t.Errorf("strongswan.conf lacks %q:\n%s", want, s)
	}
	if strings.Contains(s, "elsewhere") {
		t.Errorf("a plugin section replaced the instance's VICI socket:\n%s", s)
	}
	c.PluginDir = "plugins"
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative plugin folder: %v", err)
	}
	c.PluginDir = ""
	c.Settings.Plugin = map[string]map[string]string{"bad name": nil}
	if err := c.validate(); err == nil {
		t.Error("a plugin section with a bad name was accepted")
	}
}
