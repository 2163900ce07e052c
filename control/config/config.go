// Package config reads iked's configuration: a YAML file whose connection
// fields follow swanctl.conf's names and strongSwan's proposal syntax, so an
// operator's knowledge carries over, and a separate secrets file that must
// be readable by its owner only.
//
// Errors carry the file, the line and the field:
//
//	config: iked.yaml: line 12: connection "site-b": child "net": esp_proposals: unknown algorithm "aes-gcm"
package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/spugate/spugate/control/pki"
)

// Config is iked's whole configuration.
type Config struct {
	// SPUD is the SA API socket of spud.
	SPUD string `yaml:"spud"`
	// Secrets is the secrets file, relative to the configuration's folder.
	Secrets string `yaml:"secrets"`
	// Listen lists the addresses iked listens on; empty means all.
	Listen List `yaml:"listen"`
	// Port and PortNATT are IKE's UDP ports (500 and 4500).
	Port     int `yaml:"port"`
	PortNATT int `yaml:"port_nat_t"`
	// Workers is the number of IKE workers (one per SPU); 0 asks spud.
	Workers int `yaml:"workers"`
	// Control is the unix socket spuctl talks to iked on.
	Control string `yaml:"control"`
	// IKEAnchor is how a responder anchors a new IKE SA: "tunnel" (the
	// default) by the hash of the two endpoints, so that every IKE SA
	// between two addresses shares one SPU; "ike-sa" by the hash of the
	// endpoints and the initiator's SPI, so that one peer's IKE SAs (a
	// load generator, many sites behind one NAT) spread over every SPU.
	IKEAnchor string `yaml:"ike_anchor"`
	// The responder's defences against IKE_SA_INIT floods, named and
	// meant as strongSwan's charon options are, and applied in its order:
	// first the COOKIE (RFC 7296 2.6), demanded while CookieThreshold
	// IKE SAs are half-open in all, while CookieThresholdIP are from the
	// requester's address, or while as many IKE_SA_INITs were refused in
	// the last second; then at most BlockThreshold half-open IKE SAs from
	// one address, and InitLimitHalfOpen in all. A spoofer with no return
	// path gets no cookie back, so it cannot fill an address's block
	// threshold that the cookie threshold of the address is below.
	CookieThreshold   int `yaml:"cookie_threshold"`
	CookieThresholdIP int `yaml:"cookie_threshold_ip"`
	BlockThreshold    int `yaml:"block_threshold"`
	InitLimitHalfOpen int `yaml:"init_limit_half_open"`
	// Retransmission (defaults as strongSwan's: 4 s, 1.8, 5 tries).
	RetransmitTimeout Duration `yaml:"retransmit_timeout"`
	RetransmitBase    float64  `yaml:"retransmit_base"`
	RetransmitTries   int      `yaml:"retransmit_tries"`
	// KeepAlive is the interval of NAT keepalives sent by an IKE SA behind
	// a NAT (charon.keep_alive, 20 s; 0 turns them off).
	KeepAlive *Duration `yaml:"keep_alive"`
	// DeleteRekeyedDelay is how long the inbound SA of a rekeyed Child SA
	// stays in the data plane after the old Child SA is deleted, for
	// packets still in flight (charon.delete_rekeyed_delay, 5 s).
	DeleteRekeyedDelay *Duration `yaml:"delete_rekeyed_delay"`
	// PKI locates certificates, CRLs and private keys, as swanctl's
	// folders do (see PKIPaths).
	PKI PKIPaths `yaml:"pki"`
	// FragmentSize is the largest IP packet of an IKE fragment we send,
	// and the size above which a message is fragmented (strongSwan's
	// charon.fragment_size, 1280 by default, for IPv4 and IPv6 alike).
	FragmentSize int `yaml:"fragment_size"`
	// MaxPacket is the largest IKE datagram iked reads, and the largest
	// message it reassembles from fragments (charon.max_packet, 10000
	// bytes); larger ones are dropped and counted as max_packet.
	MaxPacket int `yaml:"max_packet"`
	// FragmentMemory bounds the bytes of IKE fragments that all IKE SAs
	// hold together while their messages are incomplete (32m): each IKE
	// SA may hold max_packet per direction, so that half-open ones alone
	// could otherwise hold init_limit_half_open times that.
	FragmentMemory Size `yaml:"fragment_memory"`
	// SignatureAuthentication announces RFC 7427 and uses its signatures
	// when the peer does too (strongSwan's charon.signature_authentication,
	// default yes); no leaves the classic AUTH methods 1 and 9-11 only.
	SignatureAuthentication *Bool `yaml:"signature_authentication"`

	Connections map[string]*Conn `yaml:"connections"`

	// Filled by Load.
	Path       string    `yaml:"-"`
	SecretList []*Secret `yaml:"-"`
	Order      []string  `yaml:"-"` // connection names in file order
	// KeyFiles are the private key files the secrets file names.
	KeyFiles []string `yaml:"-"`
	// Warnings are the keys read and ignored (see unsupported.go), one
	// line each naming the file, the line and the key, for the daemon to
	// log: an operator is told what does not apply.
	Warnings []string `yaml:"-"`
	// Trust holds the trust anchors, intermediates and CRLs when a
	// connection authenticates with certificates (nil otherwise).
	Trust *pki.Store `yaml:"-"`
}

// Conn is one IKE connection, as a swanctl.conf connections.<name> section.
// SendCertreq (default yes) sends CERTREQ payloads naming the CAs we trust
// for the peer; SendCert is always, ifasked (default: when the peer sent a
// CERTREQ) or never; Fragmentation is yes (default), accept (announce and
// reassemble, never fragment), force (as yes in IKEv2) or no.
type Conn struct {
	Name          string            `yaml:"-"`
	Version       int               `yaml:"version"`
	LocalAddrs    List              `yaml:"local_addrs"`
	RemoteAddrs   List              `yaml:"remote_addrs"`
	LocalPort     int               `yaml:"local_port"`
	RemotePort    int               `yaml:"remote_port"`
	Proposals     List              `yaml:"proposals"`
	Encap         Bool              `yaml:"encap"`
	Fragmentation string            `yaml:"fragmentation"`
	DPDDelay      Duration          `yaml:"dpd_delay"`
	DPDTimeout    Duration          `yaml:"dpd_timeout"`
	RekeyTime     *Duration         `yaml:"rekey_time"`
	ReauthTime    Duration          `yaml:"reauth_time"`
	OverTime      *Duration         `yaml:"over_time"`
	RandTime      *Duration         `yaml:"rand_time"`
	Keyingtries   *int              `yaml:"keyingtries"`
	Unique        string            `yaml:"unique"`
	SendCertreq   *Bool             `yaml:"send_certreq"`
	SendCert      string            `yaml:"send_cert"`
	Local         *Auth             `yaml:"local"`
	Remote        *Auth             `yaml:"remote"`
	Children      map[string]*Child `yaml:"children"`

	// Parsed by Load.
	Locals     []netip.Addr   `yaml:"-"`
	Remotes    []netip.Prefix `yaml:"-"` // %any is 0.0.0.0/0 and ::/0
	ChildOrder []string       `yaml:"-"`
}

// Auth is a local or remote authentication round.
type Auth struct {
	// Auth is psk, or a public key method in swanctl's notation: pubkey,
	// rsa, rsa/pss, ecdsa, ed25519, optionally with hashes (rsa/pss-sha256,
	// ecdsa-sha384-sha512) and an "ike:" prefix (see ParseAuthMethod).
	Auth    string `yaml:"auth"`
	ID      string `yaml:"id"`
	Certs   List   `yaml:"certs"`
	CACerts List   `yaml:"cacerts"`
	// Revocation is swanctl's revocation policy; only relaxed (CRLs
	// from the x509crl folder are checked, a CA without one is accepted)
	// is implemented.
	Revocation string `yaml:"revocation"`

	Identity Identity `yaml:"-"`
	// Method is Auth parsed.
	Method AuthMethod `yaml:"-"`
	// Filled by Load for a local pubkey round: our credentials, the first
	// being the default (pki.SelectCredential), one per certs entry.
	Credentials []*pki.Credential `yaml:"-"`
	// Filled by Load for a remote pubkey round: what the peer's
	// certificate must satisfy.
	Policy *pki.Policy `yaml:"-"`
}

// Child is a Child SA configuration, as connections.<conn>.children.<name>.
type Child struct {
	Name         string    `yaml:"-"`
	LocalTS      List      `yaml:"local_ts"`
	RemoteTS     List      `yaml:"remote_ts"`
	ESPProposals List      `yaml:"esp_proposals"`
	Mode         string    `yaml:"mode"`
	StartAction  string    `yaml:"start_action"`
	DPDAction    string    `yaml:"dpd_action"`
	CloseAction  string    `yaml:"close_action"`
	RekeyTime    *Duration `yaml:"rekey_time"`
	LifeTime     *Duration `yaml:"life_time"`
	RandTime     *Duration `yaml:"rand_time"`
	RekeyBytes   Size      `yaml:"rekey_bytes"`
	LifeBytes    Size      `yaml:"life_bytes"`
	RandBytes    Size      `yaml:"rand_bytes"`
	RekeyPackets Size      `yaml:"rekey_packets"`
	LifePackets  Size      `yaml:"life_packets"`
	RandPackets  Size      `yaml:"rand_packets"`
	ReplayWindow *int      `yaml:"replay_window"`
	// Reinitiate after a hard expiry without a successful rekey.
	Reinitiate Bool `yaml:"reinitiate"`

	LocalSelectors  []Selector `yaml:"-"`
	RemoteSelectors []Selector `yaml:"-"`
}

// Defaults for what a connection leaves unset: strongSwan's (swanctl.conf's
// rekey_time for IKE and Child SAs, replay_window), so that a configuration
// moved from strongSwan behaves alike.
const (
	DefaultIKERekey   = 4 * time.Hour
	DefaultChildRekey = time.Hour
	DefaultReplay     = 1024
	// DefaultKeepAlive and DefaultDeleteRekeyedDelay as charon's keep_alive
	// and delete_rekeyed_delay.
	DefaultKeepAlive          = 20 * time.Second
	DefaultDeleteRekeyedDelay = 5 * time.Second
)

// IKEAnchorTunnel and IKEAnchorIKESA are the values of ike_anchor.
const (
	IKEAnchorTunnel = "tunnel"
	IKEAnchorIKESA  = "ike-sa"
)

// Defaults of the responder's IKE_SA_INIT defences. The per-address ones
// are charon's; the cookie threshold is higher than charon's 10 because a
// concentrator sets up hundreds of tunnels a second when a site comes back;
// charon has no global cap by default, but each half-open IKE SA holds its
// request and fragments for the half-open timeout, so iked bounds them.
const (
	DefaultCookieThreshold   = 30
	DefaultCookieThresholdIP = 3
	DefaultBlockThreshold    = 5
	DefaultInitLimitHalfOpen = 10000
)

// Bounds of the memory that unauthenticated or hostile peers can make iked
// hold: strongSwan's max_packet, and iked's own bound on the fragments
// being reassembled. MinMaxPacket is IPv6's minimum MTU: every IKE
// implementation fragments below it.
const (
	DefaultMaxPacket      = 10000
	MinMaxPacket          = 1280
	DefaultFragmentMemory = 32 << 20
)

// Checker validates proposal strings; the IKE layer installs its parser, so
// that this package needs no knowledge of algorithms.
type Checker interface {
	CheckIKEProposal(s string) error
	CheckESPProposal(s string) error
}

// Load reads the configuration at path and its secrets file. chk may be nil
// (proposals are then not checked). A swanctl.conf (see IsSwanctl) is
// read as strongSwan's syntax, its secrets section taking the secrets
// file's place.
func Load(path string, chk Checker) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if IsSwanctl(path, src) {
		return loadSwanctl(path, chk)
	}
	c, err := Parse(path, src, chk)
	if err != nil {
		return nil, err
	}
	if c.Secrets != "" {
		sp := c.Secrets
		if !filepath.IsAbs(sp) {
			sp = filepath.Join(filepath.Dir(path), sp)
		}
		var sf *secrets
		if sf, err = loadSecretsFile(sp); err != nil {
			return nil, err
		}
		c.SecretList, c.KeyFiles = sf.psks, sf.keyFiles
	}
	if err := c.checkSecrets(); err != nil {
		return nil, err
	}
	if errs := c.loadPKI(src); len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	return c, nil
}

// Parse parses a configuration from memory (name is used in errors). It does
// not read the secrets file.
func Parse(name string, src []byte, chk Checker) (*Config, error) {
	c, _, errs := parse(name, src, chk)
	if len(errs) > 0 {
		return nil, joinErrs(errs)
	}
	return c, nil
}

// joinErrs joins errors as errors.Join does, keeping them apart for
// whoever maps them (the swanctl.conf reader).
func joinErrs(errs []error) error { return errors.Join(errs...) }

// FieldError is an error, or a warning, about one field of the
// configuration: the file's name, the line (0 when not known), the keys
// from the top ("connections", the name, ..., an int for a list's
// element) and the cause. It reads as
// `config: iked.yaml: line 12: connection "site-b": child "net": esp_proposals: ...`.
type FieldError struct {
	File string
	Line int
	Keys []any
	Msg  string
}

// Error reads "config: FILE: line N: connection "x": key: cause".
func (e *FieldError) Error() string {
	where := e.File
	if e.Line > 0 {
		where += fmt.Sprintf(": line %d", e.Line)
	}
	var ctx []string
	for i := 0; i < len(e.Keys); i++ {
		k, _ := e.Keys[i].(string)
		switch {
		case k == "connections" && i+1 < len(e.Keys):
			ctx = append(ctx, fmt.Sprintf("connection %q", e.Keys[i+1]))
			i++
		case k == "children" && i+1 < len(e.Keys):
			ctx = append(ctx, fmt.Sprintf("child %q", e.Keys[i+1]))
			i++
		case k != "":
			ctx = append(ctx, k)
		}
	}
	msg := e.Msg
	if len(ctx) > 0 {
		msg = strings.Join(ctx, ": ") + ": " + msg
	}
	return fmt.Sprintf("config: %s: %s", where, msg)
}

// yamlError is go-yaml's error as a FieldError: its line, no keys.
func yamlError(base string, err error) *FieldError {
	msg := oneLine(yaml.FormatError(err, false, false))
	fe := &FieldError{File: base, Msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, err := strconv.Atoi(n); err == nil {
				fe.Line, fe.Msg = l, after
			}
		}
	}
	return fe
}

// parse is Parse, its errors (and the configuration's warnings)
// FieldErrors but for a few without a field.
func parse(name string, src []byte, chk Checker) (*Config, []*FieldError, []error) {
	base := filepath.Base(name)
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, nil, []error{yamlError(base, err)}
	}
	v := &validator{file: file, name: base, chk: chk}
	var body ast.Node
	if len(file.Docs) > 0 {
		body = file.Docs[0].Body
	}
	// Keys of swanctl.conf that iked does not implement are decided
	// here, refused or warned about, and taken out of the tree, so that
	// the decoder below knows only what iked reads.
	v.unsupported(body)
	var c Config
	if body != nil {
		if err := yaml.NodeToValue(body, &c, yaml.DisallowUnknownField()); err != nil {
			return nil, nil, append(v.errs, yamlError(base, err))
		}
	}
	c.Path = name
	v.config(&c)
	if len(v.errs) > 0 {
		return nil, nil, v.errs
	}
	for _, w := range v.warns {
		c.Warnings = append(c.Warnings, w.Error())
	}
	return &c, v.warns, nil
}

// oneLine keeps the first line of go-yaml's multi-line errors and makes its
// "[3:5]" position read "line 3".
func oneLine(s string) string {
	s = strings.SplitN(strings.TrimSpace(s), "\n", 2)[0]
	if strings.HasPrefix(s, "[") {
		if i := strings.Index(s, "]"); i > 0 {
			pos := strings.SplitN(s[1:i], ":", 2)
			s = "line " + pos[0] + ": " + strings.TrimSpace(s[i+1:])
		}
	}
	return s
}

type validator struct {
	file  *ast.File
	name  string
	chk   Checker
	errs  []error
	warns []*FieldError
}

// line finds the line of the node at the given path (keys from the root),
// or 0.
func (v *validator) line(keys ...any) int {
	b := (&yaml.PathBuilder{}).Root()
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			b = b.Child(k)
		case int:
			b = b.Index(uint(k))
		}
	}
	n, err := b.Build().FilterFile(v.file)
	if err != nil || n == nil || n.GetToken() == nil {
		if len(keys) > 1 {
			return v.line(keys[:len(keys)-1]...)
		}
		return 0
	}
	return n.GetToken().Position.Line
}

func (v *validator) errf(keys []any, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{File: v.name, Line: v.line(keys...), Keys: keys, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warnf(keys []any, format string, args ...any) {
	v.warns = append(v.warns, &FieldError{File: v.name, Line: v.line(keys...), Keys: keys, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) config(c *Config) {
	if c.SPUD == "" {
		c.SPUD = "/run/spugate/spud.sock"
	}
	if c.Control == "" {
		c.Control = "/run/spugate/iked.sock"
	}
	if c.Port == 0 {
		c.Port = 500
	}
	if c.PortNATT == 0 {
		c.PortNATT = 4500
	}
	switch c.IKEAnchor {
	case "":
		c.IKEAnchor = IKEAnchorTunnel
	case IKEAnchorTunnel, IKEAnchorIKESA:
	default:
		v.errf([]any{"ike_anchor"}, "%q is neither %s nor %s", c.IKEAnchor, IKEAnchorTunnel, IKEAnchorIKESA)
	}
	if c.CookieThreshold == 0 {
		c.CookieThreshold = DefaultCookieThreshold
	}
	if c.CookieThresholdIP == 0 {
		c.CookieThresholdIP = DefaultCookieThresholdIP
	}
	if c.BlockThreshold == 0 {
		c.BlockThreshold = DefaultBlockThreshold
	}
	if c.InitLimitHalfOpen == 0 {
		c.InitLimitHalfOpen = DefaultInitLimitHalfOpen
	}
	for _, l := range []struct {
		key string
		v   int
	}{{"cookie_threshold", c.CookieThreshold}, {"cookie_threshold_ip", c.CookieThresholdIP},
		{"block_threshold", c.BlockThreshold}, {"init_limit_half_open", c.InitLimitHalfOpen}} {
		if l.v < 0 {
			v.errf([]any{l.key}, "%d is negative (0 takes the default)", l.v)
		}
	}
	if c.RetransmitTimeout == 0 {
		c.RetransmitTimeout = Duration(4 * time.Second)
	}
	if c.RetransmitBase == 0 {
		c.RetransmitBase = 1.8
	}
	if c.RetransmitTries == 0 {
		c.RetransmitTries = 5
	}
	if c.KeepAlive == nil {
		d := Duration(DefaultKeepAlive)
		c.KeepAlive = &d
	}
	if c.DeleteRekeyedDelay == nil {
		d := Duration(DefaultDeleteRekeyedDelay)
		c.DeleteRekeyedDelay = &d
	}
	if c.SignatureAuthentication == nil {
		yes := Bool(true)
		c.SignatureAuthentication = &yes
	}
	switch {
	case c.MaxPacket == 0:
		c.MaxPacket = DefaultMaxPacket
	case c.MaxPacket < MinMaxPacket || c.MaxPacket > 65535:
		v.errf([]any{"max_packet"}, "%d out of range (%d..65535 bytes)", c.MaxPacket, MinMaxPacket)
	}
	switch {
	case c.FragmentMemory == 0:
		c.FragmentMemory = DefaultFragmentMemory
	case c.FragmentMemory < Size(c.MaxPacket) || c.FragmentMemory > 1<<40:
		v.errf([]any{"fragment_memory"}, "%d out of range (max_packet, %d bytes, to 1024g)", c.FragmentMemory, c.MaxPacket)
	}
	switch {
	case c.FragmentSize == 0:
		c.FragmentSize = DefaultFragmentSize
	case c.FragmentSize < MinFragmentSize || c.FragmentSize > 65535:
		v.errf([]any{"fragment_size"}, "%d out of range (%d..65535 bytes of IP packet)", c.FragmentSize, MinFragmentSize)
	}
	if c.RetransmitBase < 1 {
		v.errf([]any{"retransmit_base"}, "%v must be at least 1", c.RetransmitBase)
	}
	for i, a := range c.Listen {
		if _, err := netip.ParseAddr(a); err != nil {
			v.errf([]any{"listen", i}, "%q is not an IP address", a)
		}
	}
	if len(c.Connections) == 0 {
		v.errf(nil, "no connections")
	}
	c.Order = v.keyOrder([]any{"connections"}, c.Connections)
	for _, name := range c.Order {
		conn := c.Connections[name]
		if conn == nil {
			v.errf([]any{"connections", name}, "empty connection")
			continue
		}
		conn.Name = name
		v.conn(conn, []any{"connections", name})
	}
}

// keyOrder returns the keys of a mapping in file order (maps forget it, and
// start order matters to people reading logs).
func (v *validator) keyOrder(keys []any, m any) []string {
	var names []string
	switch m := m.(type) {
	case map[string]*Conn:
		for k := range m {
			names = append(names, k)
		}
	case map[string]*Child:
		for k := range m {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool {
		li := v.line(append(append([]any(nil), keys...), names[i])...)
		lj := v.line(append(append([]any(nil), keys...), names[j])...)
		if li != lj {
			return li < lj
		}
		return names[i] < names[j]
	})
	return names
}

func (v *validator) conn(c *Conn, at []any) {
	path := func(k ...any) []any { return append(append([]any(nil), at...), k...) }
	if c.Version != 0 && c.Version != 2 {
		v.errf(path("version"), "IKE version %d not supported (only 2)", c.Version)
	}
	c.Version = 2
	if c.LocalPort == 0 {
		c.LocalPort = 500
	}
	if c.RemotePort == 0 {
		c.RemotePort = 500
	}
	for i, a := range c.LocalAddrs {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			v.errf(path("local_addrs", i), "%q is not an IP address", a)
			continue
		}
		c.Locals = append(c.Locals, ip)
	}
	if len(c.RemoteAddrs) == 0 {
		c.RemoteAddrs = List{"%any"}
	}
	for i, a := range c.RemoteAddrs {
		switch {
		case a == "%any":
			c.Remotes = append(c.Remotes, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
		case a == "%any4":
			c.Remotes = append(c.Remotes, netip.MustParsePrefix("0.0.0.0/0"))
		case a == "%any6":
			c.Remotes = append(c.Remotes, netip.MustParsePrefix("::/0"))
		case strings.Contains(a, "/"):
			p, err := netip.ParsePrefix(a)
			if err != nil {
				v.errf(path("remote_addrs", i), "%q is not an address or prefix", a)
				continue
			}
			c.Remotes = append(c.Remotes, p.Masked())
		default:
			ip, err := netip.ParseAddr(a)
			if err != nil {
				v.errf(path("remote_addrs", i), "%q is not an IP address (host names are not resolved)", a)
				continue
			}
			c.Remotes = append(c.Remotes, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	if len(c.Proposals) == 0 {
		c.Proposals = List{"default"}
	}
	if v.chk != nil {
		for i, p := range c.Proposals {
			if err := v.chk.CheckIKEProposal(p); err != nil {
				v.errf(path("proposals", i), "%v", err)
			}
		}
	}
	switch c.Fragmentation {
	case "":
		c.Fragmentation = "yes"
	case "yes", "no", "accept", "force":
	default:
		v.errf(path("fragmentation"), "%q: want yes, no, accept or force", c.Fragmentation)
	}
	switch c.Unique {
	case "":
		c.Unique = "no"
	case "no", "never", "keep", "replace":
	default:
		v.errf(path("unique"), "%q: want no, never, keep or replace", c.Unique)
	}
	if c.RekeyTime == nil {
		d := Duration(DefaultIKERekey)
		c.RekeyTime = &d
	}
	if c.OverTime == nil {
		d := Duration(time.Duration(max(*c.RekeyTime, c.ReauthTime)) / 10)
		c.OverTime = &d
	}
	if c.RandTime == nil {
		d := *c.OverTime
		c.RandTime = &d
	}
	if c.Keyingtries == nil {
		one := 1
		c.Keyingtries = &one
	} else if *c.Keyingtries != 1 {
		v.warnf(path("keyingtries"), "%d ignored: iked makes one attempt per initiation, as with keyingtries = 1 (start_action, dpd_action and close_action start again)", *c.Keyingtries)
	}
	if c.SendCertreq == nil {
		yes := Bool(true)
		c.SendCertreq = &yes
	}
	switch c.SendCert {
	case "":
		c.SendCert = "ifasked"
	case "always", "ifasked", "never":
	default:
		v.errf(path("send_cert"), "%q: want always, ifasked or never", c.SendCert)
	}
	if c.Local == nil {
		v.errf(path(), "missing local authentication (local: {auth: psk, id: ...})")
	} else {
		v.auth(c, c.Local, path("local"), true)
	}
	if c.Remote == nil {
		v.errf(path(), "missing remote authentication (remote: {auth: psk, id: ...})")
	} else {
		v.auth(c, c.Remote, path("remote"), false)
	}
	if len(c.Children) == 0 {
		v.errf(path(), "no children")
	}
	c.ChildOrder = v.keyOrder(path("children"), c.Children)
	for _, n := range c.ChildOrder {
		ch := c.Children[n]
		if ch == nil {
			v.errf(path("children", n), "empty child")
			continue
		}
		ch.Name = n
		v.child(ch, path("children", n))
	}
}

func (v *validator) auth(c *Conn, a *Auth, at []any, local bool) {
	path := func(k ...any) []any { return append(append([]any(nil), at...), k...) }
	if a.Auth == "" {
		v.errf(path(), "missing auth (psk or pubkey)")
	} else if m, err := ParseAuthMethod(a.Auth); err != nil {
		v.errf(path("auth"), "%v", err)
	} else {
		a.Method = m
	}
	switch a.Revocation {
	case "":
		a.Revocation = "relaxed"
	case "relaxed":
	case "strict", "ifuri":
		v.errf(path("revocation"), "%q is not supported: only relaxed (CRLs from the x509crl folder are checked; a CA without a CRL is accepted)", a.Revocation)
	default:
		v.errf(path("revocation"), "%q: want relaxed", a.Revocation)
	}
	if local && len(a.CACerts) > 0 {
		v.errf(path("cacerts"), "cacerts constrain the peer: put them in remote")
	}
	if !local && len(a.Certs) > 0 {
		v.errf(path("certs"), "pinned peer certificates are not supported: use remote cacerts and id")
	}
	id := a.ID
	if id == "" {
		// strongSwan's defaults: our certificate's subject (Load sets
		// it), else the IP address in use.
		if local && a.Method.PubKey() {
			return
		}
		if local && len(c.Locals) > 0 {
			id = c.Locals[0].String()
		} else if !local {
			id = "%any"
		} else {
			v.errf(path(), "missing id (there is no single local address to default to)")
			return
		}
	}
	ident, err := ParseIdentity(id)
	if err != nil {
		v.errf(path("id"), "%v", err)
		return
	}
	if local && ident.Any() {
		v.errf(path("id"), "the local identity cannot be %%any")
	}
	a.Identity = ident
	if a.Method.PubKey() && local && len(a.Certs) == 0 {
		v.errf(path(), "auth %s needs certs", a.Auth)
	}
	if !a.Method.PubKey() && (len(a.Certs) > 0 || len(a.CACerts) > 0) && a.Auth != "" {
		v.errf(path(), "certs and cacerts need a public key auth (pubkey), not %s", a.Auth)
	}
}

func (v *validator) child(ch *Child, at []any) {
	path := func(k ...any) []any { return append(append([]any(nil), at...), k...) }
	if len(ch.LocalTS) == 0 {
		ch.LocalTS = List{"dynamic"}
	}
	if len(ch.RemoteTS) == 0 {
		ch.RemoteTS = List{"dynamic"}
	}
	for i, s := range ch.LocalTS {
		sel, err := ParseSelector(s)
		if err != nil {
			v.errf(path("local_ts", i), "%v", err)
			continue
		}
		ch.LocalSelectors = append(ch.LocalSelectors, sel)
	}
	for i, s := range ch.RemoteTS {
		sel, err := ParseSelector(s)
		if err != nil {
			v.errf(path("remote_ts", i), "%v", err)
			continue
		}
		ch.RemoteSelectors = append(ch.RemoteSelectors, sel)
	}
	if len(ch.ESPProposals) == 0 {
		ch.ESPProposals = List{"default"}
	}
	if v.chk != nil {
		for i, p := range ch.ESPProposals {
			if err := v.chk.CheckESPProposal(p); err != nil {
				v.errf(path("esp_proposals", i), "%v", err)
			}
		}
	}
	switch ch.Mode {
	case "":
		ch.Mode = "tunnel"
	case "tunnel", "transport":
	default:
		v.errf(path("mode"), "%q: want tunnel or transport", ch.Mode)
	}
	oneOf := func(field, val string, def string, allowed ...string) string {
		if val == "" {
			return def
		}
		for _, a := range allowed {
			if val == a {
				return val
			}
		}
		v.errf(path(field), "%q: want %s", val, strings.Join(allowed, ", "))
		return val
	}
	ch.StartAction = oneOf("start_action", ch.StartAction, "none", "none", "trap", "start")
	ch.DPDAction = oneOf("dpd_action", ch.DPDAction, "clear", "clear", "trap", "restart")
	ch.CloseAction = oneOf("close_action", ch.CloseAction, "none", "none", "trap", "start")
	if ch.RekeyTime == nil {
		d := Duration(DefaultChildRekey)
		ch.RekeyTime = &d
	}
	if ch.LifeTime == nil {
		d := Duration(time.Duration(*ch.RekeyTime) * 11 / 10)
		ch.LifeTime = &d
	}
	if ch.RandTime == nil {
		d := *ch.LifeTime - *ch.RekeyTime
		if d < 0 {
			d = 0
		}
		ch.RandTime = &d
	}
	if *ch.RekeyTime > 0 && *ch.LifeTime > 0 && *ch.LifeTime < *ch.RekeyTime {
		v.errf(path("life_time"), "%v is shorter than rekey_time %v", ch.LifeTime.D(), ch.RekeyTime.D())
	}
	if ch.LifeBytes == 0 && ch.RekeyBytes > 0 {
		ch.LifeBytes = ch.RekeyBytes * 11 / 10
	}
	if ch.LifeBytes > 0 && ch.RekeyBytes > ch.LifeBytes {
		v.errf(path("life_bytes"), "%d is below rekey_bytes %d", ch.LifeBytes, ch.RekeyBytes)
	}
	if ch.LifePackets == 0 && ch.RekeyPackets > 0 {
		ch.LifePackets = ch.RekeyPackets * 11 / 10
	}
	if ch.LifePackets > 0 && ch.RekeyPackets > ch.LifePackets {
		v.errf(path("life_packets"), "%d is below rekey_packets %d", ch.LifePackets, ch.RekeyPackets)
	}
	if ch.ReplayWindow == nil {
		w := DefaultReplay
		ch.ReplayWindow = &w
	} else if *ch.ReplayWindow < 0 || *ch.ReplayWindow > 65536 {
		v.errf(path("replay_window"), "%d out of range (0..65536; 0 turns anti-replay off)", *ch.ReplayWindow)
	}
}
