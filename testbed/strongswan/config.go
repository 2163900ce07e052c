package strongswan

import (
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spugate/spugate/testbed/lab"
)

// Config is one charon instance: its connections, credentials and daemon
// settings. Start writes it as strongswan.conf and swanctl.conf in the
// instance directory and loads it with swanctl.
type Config struct {
	// Name names the instance: its directory <Dir>/<host>-<Name>, its
	// lab process and log files. Default "charon".
	Name string
	// Dir is where the instance directory is made; default the lab's log
	// directory (Host.LogDir), so that a failed test keeps the logs.
	Dir string

	Conns   []Conn
	Secrets Secrets
	Files   Files

	Settings Settings
	// Log sets filelog levels per subsystem ("ike", "chd", "knl", "net",
	// "enc", "cfg", "esp", "lib", "mgr", "job", "dmn", "asn", "tls"...)
	// and "default", from -1 (silent) to 4 (everything, with secrets).
	// Unset subsystems log at level 1, ike at 2.
	Log map[string]int
	// DumpKeys raises ike, chd and esp to level 4: charon then logs the
	// IKE SA keys (SK_d, SK_ai/ar, SK_ei/er, SK_pi/pr) and the Child SA
	// keys, which Charon.Keys extracts for tshark. Secrets end up in the
	// log: use it only in lab tests.
	DumpKeys bool
	// Plugins replaces the plugin list (charon.load); default Plugins.
	Plugins []string
	// PluginDir, when set, is a folder bind-mounted over the system's
	// plugin folder (the package PluginDir) in this instance's mount
	// namespace only: a copy of it with plugins Debian does not ship
	// (load-tester, see deploy/load-tester.sh), which no other charon on
	// the machine may load.
	PluginDir string

	// StartTimeout bounds waiting for the VICI socket; default 10 s.
	StartTimeout time.Duration
}

// DefaultPlugins is the plugin list of an instance: openssl does the
// crypto (AES-GCM, ChaCha20-Poly1305, RSA-PSS, ECDSA, Ed25519, X25519,
// MODP), the software plugins are fallbacks, kernel-libipsec is the
// userspace ESP this kernel needs, kernel-netlink does addresses and
// routes. No updown: kernel-libipsec installs its own routes.
var DefaultPlugins = []string{
	"openssl", "random", "nonce", "pem", "pkcs1", "pkcs8", "x509",
	"revocation", "constraints", "pubkey", "curve25519", "aes", "sha1",
	"sha2", "hmac", "gcm", "chapoly", "kdf", "mgf1", "gmp",
	"socket-default", "vici", "kernel-libipsec", "kernel-netlink",
}

// Flag is a swanctl.conf or strongswan.conf keyword value; "" keeps
// strongSwan's default.
type Flag string

// Common Flag values; other keywords (fragmentation "accept", unique
// "replace", send_cert "always"...) are written as Flag("...").
const (
	Yes Flag = "yes"
	No  Flag = "no"
)

// Conn is a swanctl.conf connections.<name> section. Zero values keep
// strongSwan's defaults. A negative duration or count writes 0 where 0
// means something (rekey_time = 0 disables rekeying, keyingtries = 0
// retries forever, replay_window = 0 disables replay protection).
type Conn struct {
	Name        string
	LocalAddrs  []string
	RemoteAddrs []string
	LocalPort   int
	RemotePort  int
	Proposals   []string
	// Version is the IKE version; default 2 (swanctl's default, 0, means
	// either).
	Version       int
	Encap         Flag
	Mobike        Flag
	Fragmentation Flag // yes, accept, force, no
	SendCert      Flag // always, ifasked, never
	SendCertReq   Flag
	DPDDelay      time.Duration
	DPDTimeout    time.Duration // IKEv1 only
	RekeyTime     time.Duration
	ReauthTime    time.Duration
	OverTime      time.Duration
	RandTime      time.Duration
	Keyingtries   int
	Unique        Flag // no, never, keep, replace

	Local  Auth
	Remote Auth

	Children []Child

	// Extra holds keys Conn does not name, written as given (e.g.
	// "childless": "force", "if_id_in": "7").
	Extra map[string]string
}

// Auth is a local or remote authentication round.
type Auth struct {
	// Auth is the method: "psk", "pubkey", "rsa/pss-sha256",
	// "ike:rsa/pss-sha256", "ecdsa-256", ... (see swanctl.conf(5)).
	Auth string
	ID   string
	// Certs (local) names files in x509/ (Files.X509).
	Certs []string
	// CACerts (remote) names files in x509ca/ (Files.X509CA) the peer's
	// chain must end in.
	CACerts []string
	// Revocation (remote): strict, ifuri or relaxed.
	Revocation string
	Extra      map[string]string
}

// Child is a connections.<conn>.children.<name> section.
type Child struct {
	Name         string
	LocalTS      []string
	RemoteTS     []string
	ESPProposals []string
	Mode         string // tunnel (default), transport
	StartAction  string // none, trap, start
	DPDAction    string // clear, trap, restart
	CloseAction  string // none, trap, start
	RekeyTime    time.Duration
	LifeTime     time.Duration
	RandTime     time.Duration
	RekeyBytes   int64
	LifeBytes    int64
	RekeyPackets int64
	LifePackets  int64
	ReplayWindow int
	Extra        map[string]string
}

// Secrets is the swanctl.conf secrets section. Private keys are files
// (Files.Private), loaded with the certificates.
type Secrets struct {
	IKE []PSK
}

// PSK is an IKE pre-shared key and the identities it is for (none: any).
type PSK struct {
	IDs    []string
	Secret []byte
}

// Files are credentials written into the instance's swanctl directory,
// file name to PEM bytes. swanctl --load-all loads them all; certificates
// in X509CA are trust anchors for remote authentication.
type Files struct {
	X509    map[string][]byte // x509/: our own (end entity) certificates
	X509CA  map[string][]byte // x509ca/: CA certificates (trusted, and sent as our chain)
	X509CRL map[string][]byte // x509crl/: CRLs
	Private map[string][]byte // private/: private keys of any type
}

// Settings are strongswan.conf charon.* settings. Zero values keep the
// defaults; install_routes is always on (kernel-libipsec routes into its
// TUN device).
type Settings struct {
	Port     int
	PortNATT int
	// Threads is charon's worker thread count; default 32 here, not
	// charon's 16: kernel-libipsec and charon's own services keep about
	// half of 16 busy for good, and every blocking VICI initiate holds
	// one more until its tunnel is up, so eight concurrent initiates
	// starve charon until they time out.
	Threads           int
	ReuseIKESA        Flag
	InitLimitHalfOpen int
	CookieThreshold   int
	CookieThresholdIP int
	BlockThreshold    int
	IKESATableSize    int
	IKESATableSegs    int
	RetransmitTimeout float64 // seconds
	RetransmitBase    float64
	RetransmitTries   int
	RetransmitJitter  int // percent
	RetransmitLimit   float64
	MakeBeforeBreak   Flag
	InstallRoutes     Flag
	FragmentSize      int
	RSAPSS            Flag // charon.rsa_pss: PSS for RSA signatures by default
	// Extra holds charon.* keys by their dotted path below charon, e.g.
	// "plugins.kernel-libipsec.allow_peer_ts": "yes".
	Extra map[string]string
	// Plugin holds charon.plugins.<name> sections, key to value, written
	// as nested sections (load-tester's settings, for one).
	Plugin map[string]map[string]string
}

var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// fileNameRe keeps credential file names inside their folder.
var fileNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

var subsystems = []string{"default", "dmn", "mgr", "ike", "chd", "job", "cfg", "knl", "net", "asn", "enc", "tnc", "imc", "imv", "pts", "tls", "esp", "lib", "app"}

func (c *Config) name() string {
	if c.Name == "" {
		return "charon"
	}
	return c.Name
}

// validate checks what charon would reject late or what would break the
// lab's rules: names, lab-only addresses, values that cannot be written.
func (c *Config) validate() error {
	if !nameRe.MatchString(c.name()) {
		return fmt.Errorf("strongswan: instance name %q: want %s", c.name(), nameRe)
	}
	conns := map[string]bool{}
	for _, cn := range c.Conns {
		if !nameRe.MatchString(cn.Name) {
			return fmt.Errorf("strongswan: connection name %q: want %s", cn.Name, nameRe)
		}
		if conns[cn.Name] {
			return fmt.Errorf("strongswan: connection %q defined twice", cn.Name)
		}
		conns[cn.Name] = true
		for _, a := range slices.Concat(cn.LocalAddrs, cn.RemoteAddrs) {
			if err := checkAddr(a); err != nil {
				return fmt.Errorf("strongswan: connection %q: %w", cn.Name, err)
			}
		}
		children := map[string]bool{}
		for _, ch := range cn.Children {
			if !nameRe.MatchString(ch.Name) {
				return fmt.Errorf("strongswan: connection %q: child name %q: want %s", cn.Name, ch.Name, nameRe)
			}
			if children[ch.Name] {
				return fmt.Errorf("strongswan: connection %q: child %q defined twice", cn.Name, ch.Name)
			}
			children[ch.Name] = true
			for _, ts := range slices.Concat(ch.LocalTS, ch.RemoteTS) {
				if err := checkTS(ts); err != nil {
					return fmt.Errorf("strongswan: connection %q child %q: %w", cn.Name, ch.Name, err)
				}
			}
		}
		for _, f := range cn.Local.Certs {
			if _, ok := c.Files.X509[f]; !ok {
				return fmt.Errorf("strongswan: connection %q: local cert %q is not in Files.X509", cn.Name, f)
			}
		}
		for _, f := range cn.Remote.CACerts {
			if _, ok := c.Files.X509CA[f]; !ok {
				return fmt.Errorf("strongswan: connection %q: remote cacert %q is not in Files.X509CA", cn.Name, f)
			}
		}
	}
	for _, m := range []map[string][]byte{c.Files.X509, c.Files.X509CA, c.Files.X509CRL, c.Files.Private} {
		for f := range m {
			if !fileNameRe.MatchString(f) {
				return fmt.Errorf("strongswan: credential file name %q: want %s", f, fileNameRe)
			}
		}
	}
	for k, v := range c.Log {
		if !slices.Contains(subsystems, k) {
			return fmt.Errorf("strongswan: log subsystem %q unknown (want one of %s)", k, strings.Join(subsystems, " "))
		}
		if v < -1 || v > 4 {
			return fmt.Errorf("strongswan: log level %d for %s out of -1..4", v, k)
		}
	}
	for _, p := range c.plugins() {
		if !nameRe.MatchString(p) {
			return fmt.Errorf("strongswan: plugin name %q", p)
		}
	}
	for p := range c.Settings.Plugin {
		if !nameRe.MatchString(p) {
			return fmt.Errorf("strongswan: plugin settings for %q: want a plugin name (%s)", p, nameRe)
		}
	}
	if c.PluginDir != "" && !filepath.IsAbs(c.PluginDir) {
		return fmt.Errorf("strongswan: plugin folder %q is not an absolute path", c.PluginDir)
	}
	return nil
}

// checkAddr accepts lab addresses and ranges, %any and DNS-free
// keywords; anything else could send IKE out of the lab's ranges.
func checkAddr(a string) error {
	if strings.HasPrefix(a, "%any") {
		return nil
	}
	if p, err := netip.ParsePrefix(a); err == nil {
		return checkLab(p.Addr(), a)
	}
	if ip, err := netip.ParseAddr(a); err == nil {
		return checkLab(ip, a)
	}
	return fmt.Errorf("address %q: want an IP address or prefix in %s or %s, or %%any", a, lab.Prefix4, lab.Prefix6)
}

// checkTS accepts lab prefixes, "dynamic" and the catch-all prefixes
// (which stay inside the host's namespace).
func checkTS(ts string) error {
	sel, _, _ := strings.Cut(ts, "[") // protocol/port suffix
	switch sel {
	case "dynamic", "0.0.0.0/0", "::/0":
		return nil
	}
	if p, err := netip.ParsePrefix(sel); err == nil {
		return checkLab(p.Addr(), ts)
	}
	if ip, err := netip.ParseAddr(sel); err == nil {
		return checkLab(ip, ts)
	}
	if a, b, ok := strings.Cut(sel, "-"); ok {
		for _, s := range []string{a, b} {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("traffic selector %q: %w", ts, err)
			}
			if err := checkLab(ip, ts); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("traffic selector %q: want a prefix, an address, a range or dynamic", ts)
}

func checkLab(ip netip.Addr, orig string) error {
	if lab.Prefix4.Contains(ip) || lab.Prefix6.Contains(ip) {
		return nil
	}
	return fmt.Errorf("address %q is outside %s and %s", orig, lab.Prefix4, lab.Prefix6)
}

func (c *Config) plugins() []string {
	if len(c.Plugins) > 0 {
		return c.Plugins
	}
	return DefaultPlugins
}

// logLevels returns the effective filelog levels.
func (c *Config) logLevels() map[string]int {
	lv := map[string]int{"default": 1, "ike": 2}
	if c.DumpKeys {
		lv["ike"], lv["chd"], lv["esp"] = 4, 4, 4
	}
	maps.Copy(lv, c.Log)
	return lv
}

// confWriter writes the strongswan.conf / swanctl.conf syntax: nested
// `name { }` sections and `key = "value"` lines, every value quoted so
// that identities with spaces or commas survive.
type confWriter struct {
	b     strings.Builder
	depth int
	err   error
}

func (w *confWriter) open(name string) {
	w.indent()
	w.b.WriteString(name + " {\n")
	w.depth++
}

func (w *confWriter) close() {
	w.depth--
	w.indent()
	w.b.WriteString("}\n")
}

func (w *confWriter) indent() {
	for range w.depth {
		w.b.WriteString("\t")
	}
}

func (w *confWriter) kv(key, value string) {
	if strings.ContainsAny(value, "\n\r\x00") {
		w.err = errors.Join(w.err, fmt.Errorf("strongswan: value of %s contains a line break or NUL", key))
		return
	}
	w.indent()
	v := strings.ReplaceAll(value, `\`, `\\`)
	v = strings.ReplaceAll(v, `"`, `\"`)
	fmt.Fprintf(&w.b, "%s = \"%s\"\n", key, v)
}

func (w *confWriter) opt(key, value string) {
	if value != "" {
		w.kv(key, value)
	}
}

func (w *confWriter) list(key string, values []string) {
	if len(values) > 0 {
		w.kv(key, strings.Join(values, ","))
	}
}

func (w *confWriter) num(key string, v int64) {
	switch {
	case v < 0:
		w.kv(key, "0")
	case v > 0:
		w.kv(key, fmt.Sprint(v))
	}
}

func (w *confWriter) float(key string, v float64) {
	if v > 0 {
		w.kv(key, fmt.Sprint(v))
	}
}

func (w *confWriter) dur(key string, d time.Duration) {
	switch {
	case d < 0:
		w.kv(key, "0")
	case d > 0:
		// strongSwan takes whole seconds; round up so that a short
		// lifetime in a test never becomes 0 (disabled).
		w.kv(key, fmt.Sprintf("%ds", int64((d+time.Second-1)/time.Second)))
	}
}

func (w *confWriter) extra(m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		w.kv(k, m[k])
	}
}

// strongswanConf renders strongswan.conf for an instance living in dir.
func (c *Config) strongswanConf(dir string) (string, error) {
	w := &confWriter{}
	sock := "unix://" + filepath.Join(dir, viciSocketName)
	w.open("charon")
	w.kv("load", strings.Join(c.plugins(), " "))
	s := c.Settings
	if s.InstallRoutes == "" {
		s.InstallRoutes = Yes
	}
	w.opt("install_routes", string(s.InstallRoutes))
	w.num("port", int64(s.Port))
	w.num("port_nat_t", int64(s.PortNATT))
	if s.Threads == 0 {
		s.Threads = 32
	}
	w.num("threads", int64(s.Threads))
	w.opt("reuse_ikesa", string(s.ReuseIKESA))
	w.num("init_limit_half_open", int64(s.InitLimitHalfOpen))
	w.num("cookie_threshold", int64(s.CookieThreshold))
	w.num("cookie_threshold_ip", int64(s.CookieThresholdIP))
	w.num("block_threshold", int64(s.BlockThreshold))
	w.num("ikesa_table_size", int64(s.IKESATableSize))
	w.num("ikesa_table_segments", int64(s.IKESATableSegs))
	w.float("retransmit_timeout", s.RetransmitTimeout)
	w.float("retransmit_base", s.RetransmitBase)
	w.num("retransmit_tries", int64(s.RetransmitTries))
	w.num("retransmit_jitter", int64(s.RetransmitJitter))
	w.float("retransmit_limit", s.RetransmitLimit)
	w.opt("make_before_break", string(s.MakeBeforeBreak))
	w.num("fragment_size", int64(s.FragmentSize))
	w.opt("rsa_pss", string(s.RSAPSS))
	w.extra(s.Extra)

	w.open("plugins")
	w.open("vici")
	w.kv("socket", sock)
	w.close()
	for _, name := range slices.Sorted(maps.Keys(s.Plugin)) {
		if name == "vici" {
			continue // the socket is the instance's
		}
		w.open(name)
		w.extra(s.Plugin[name])
		w.close()
	}
	w.close()

	w.open("filelog")
	w.open("charon")
	w.kv("path", filepath.Join(dir, filelogName))
	w.kv("time_format", "%Y-%m-%d %H:%M:%S")
	w.kv("time_add_ms", "yes")
	w.kv("ike_name", "yes")
	w.kv("append", "yes")
	w.kv("flush_line", "yes")
	lv := c.logLevels()
	for _, k := range slices.Sorted(maps.Keys(lv)) {
		w.kv(k, fmt.Sprint(lv[k]))
	}
	w.close()
	// Level 0 on stderr (the lab's process log) gives a failure report
	// the IKE_SA and CHILD_SA events without the detail.
	w.open("stderr")
	w.kv("default", "0")
	w.kv("ike_name", "yes")
	w.close()
	w.close()
	// No syslog: a lab instance must not write into the host's logs.
	w.open("syslog")
	w.open("daemon")
	w.kv("default", "-1")
	w.close()
	w.close()
	w.close() // charon

	w.open("swanctl")
	w.kv("socket", sock)
	w.close()
	return w.b.String(), w.err
}

// swanctlConf renders swanctl.conf.
// SwanctlConf returns the swanctl.conf Start writes for c (its connections
// and secrets), for another IKE daemon to read the same file.
func (c Config) SwanctlConf() (string, error) {
	if err := c.validate(); err != nil {
		return "", err
	}
	return c.swanctlConf()
}

func (c *Config) swanctlConf() (string, error) {
	w := &confWriter{}
	w.open("connections")
	for _, cn := range c.Conns {
		w.open(cn.Name)
		w.list("local_addrs", cn.LocalAddrs)
		w.list("remote_addrs", cn.RemoteAddrs)
		w.num("local_port", int64(cn.LocalPort))
		w.num("remote_port", int64(cn.RemotePort))
		w.list("proposals", cn.Proposals)
		v := cn.Version
		if v == 0 {
			v = 2
		}
		w.kv("version", fmt.Sprint(v))
		w.opt("encap", string(cn.Encap))
		w.opt("mobike", string(cn.Mobike))
		w.opt("fragmentation", string(cn.Fragmentation))
		w.opt("send_cert", string(cn.SendCert))
		w.opt("send_certreq", string(cn.SendCertReq))
		w.dur("dpd_delay", cn.DPDDelay)
		w.dur("dpd_timeout", cn.DPDTimeout)
		w.dur("rekey_time", cn.RekeyTime)
		w.dur("reauth_time", cn.ReauthTime)
		w.dur("over_time", cn.OverTime)
		w.dur("rand_time", cn.RandTime)
		w.num("keyingtries", int64(cn.Keyingtries))
		w.opt("unique", string(cn.Unique))
		w.extra(cn.Extra)
		for _, side := range []struct {
			name string
			a    Auth
		}{{"local", cn.Local}, {"remote", cn.Remote}} {
			w.open(side.name)
			w.opt("auth", side.a.Auth)
			w.opt("id", side.a.ID)
			w.list("certs", side.a.Certs)
			w.list("cacerts", side.a.CACerts)
			w.opt("revocation", side.a.Revocation)
			w.extra(side.a.Extra)
			w.close()
		}
		w.open("children")
		for _, ch := range cn.Children {
			w.open(ch.Name)
			w.list("local_ts", ch.LocalTS)
			w.list("remote_ts", ch.RemoteTS)
			w.list("esp_proposals", ch.ESPProposals)
			w.opt("mode", ch.Mode)
			w.opt("start_action", ch.StartAction)
			w.opt("dpd_action", ch.DPDAction)
			w.opt("close_action", ch.CloseAction)
			w.dur("rekey_time", ch.RekeyTime)
			w.dur("life_time", ch.LifeTime)
			w.dur("rand_time", ch.RandTime)
			w.num("rekey_bytes", ch.RekeyBytes)
			w.num("life_bytes", ch.LifeBytes)
			w.num("rekey_packets", ch.RekeyPackets)
			w.num("life_packets", ch.LifePackets)
			w.num("replay_window", int64(ch.ReplayWindow))
			w.extra(ch.Extra)
			w.close()
		}
		w.close() // children
		w.close() // conn
	}
	w.close() // connections

	w.open("secrets")
	for i, psk := range c.Secrets.IKE {
		w.open(fmt.Sprintf("ike-%d", i+1))
		for j, id := range psk.IDs {
			w.kv(fmt.Sprintf("id-%d", j+1), id)
		}
		// Hex keeps any byte string exact.
		w.kv("secret", "0x"+hex.EncodeToString(psk.Secret))
		w.close()
	}
	w.close()
	return w.b.String(), w.err
}
