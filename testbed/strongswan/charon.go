package strongswan

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spugate/spugate/testbed/lab"
)

// Paths of the Debian strongSwan 5.9.8 tools. charon is not on PATH.
var (
	CharonPath  = "/usr/lib/ipsec/charon"
	SwanctlPath = "/usr/sbin/swanctl"
	PKIPath     = "/usr/bin/pki"
	// PluginDir holds the plugins; kernel-libipsec must be among them.
	PluginDir = "/usr/lib/ipsec/plugins"
)

const (
	viciSocketName = "charon.vici"
	filelogName    = "charon.log"
	// unixPathMax is sun_path's size less the terminating NUL.
	unixPathMax = 107
	// routingTable is where charon installs its routes (charon.routing_table's
	// compiled-in default) and the ip rule pointing there.
	routingTable = "220"
)

// Missing returns why charon cannot run here, or "" when it can: the
// binaries, and the kernel-libipsec plugin (libcharon-extra-plugins)
// without which this kernel (no ESP) cannot carry a tunnel.
func Missing() string {
	for _, p := range []string{CharonPath, SwanctlPath} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Sprintf("%s missing (Debian packages strongswan-charon, strongswan-swanctl): %v", p, err)
		}
	}
	lib := filepath.Join(PluginDir, "libstrongswan-kernel-libipsec.so")
	if _, err := os.Stat(lib); err != nil {
		return fmt.Sprintf("%s missing (Debian package libcharon-extra-plugins): %v", lib, err)
	}
	// kernel-libipsec carries ESP through a TUN device; without one, charon
	// loads, negotiates and then cannot install a Child SA.
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("no TUN device, which charon's userspace ESP (kernel-libipsec) needs: %v", err)
	}
	f.Close()
	return ""
}

// Charon is a running charon instance in a lab host.
type Charon struct {
	Host *lab.Host
	Name string
	// Dir holds strongswan.conf, swanctl/, run/ (bind-mounted over the
	// instance's /run), the VICI socket and the filelog.
	Dir  string
	Proc *lab.Proc
	PID  int

	mu      sync.Mutex
	cfg     Config
	stopped bool
}

// Start runs charon in h with cfg, waits until its VICI socket answers,
// loads the configuration with swanctl and checks every connection is
// loaded. On failure nothing of the instance is left running. One charon
// per host: kernel-libipsec's TUN device is always called ipsec0.
func Start(h *lab.Host, cfg Config) (*Charon, error) {
	if r := Missing(); r != "" {
		return nil, errors.New("strongswan: " + r)
	}
	if cfg.Dir == "" {
		cfg.Dir = h.LogDir()
	}
	if cfg.Dir == "" {
		return nil, errors.New("strongswan: Config.Dir is required (the lab's LogDir or t.TempDir())")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Charon{Host: h, Name: cfg.name(), cfg: cfg}
	c.Dir = filepath.Join(cfg.Dir, h.Name+"-"+c.Name)
	if sock := c.socket(); len(sock) > unixPathMax {
		return nil, fmt.Errorf("strongswan: VICI socket path %s is %d bytes, over the %d a unix socket takes; use a shorter Config.Dir", sock, len(sock), unixPathMax)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		// A stopped (or killed) instance of the same name may be
		// started again in its directory, logs appended; a live one
		// may not.
		if _, _, err := c.call("version", nil, "", 2*time.Second); err == nil {
			return nil, fmt.Errorf("strongswan: an instance called %q is running on %s (%s)", c.Name, h.Name, c.Dir)
		}
		// Stale after a SIGKILL; the pid file's PID may belong to
		// another process by now, and charon would refuse to start.
		os.Remove(c.socket())
		os.Remove(filepath.Join(c.Dir, "run", "charon.pid"))
	}
	if out, err := h.Exec("ip", "link", "show", "dev", "ipsec0"); err == nil {
		return nil, fmt.Errorf("strongswan: %s already has an ipsec0 (another charon?): %s", h.Name, bytes.TrimSpace(out))
	}
	if err := os.MkdirAll(filepath.Join(c.Dir, "run"), 0o755); err != nil {
		return nil, fmt.Errorf("strongswan: %w", err)
	}
	if err := c.writeConfig(&cfg); err != nil {
		return nil, err
	}
	// `ip netns exec` gives the process a private mount namespace; a
	// private /run there keeps charon's compiled-in /run/charon.pid (and
	// its "already running" check) apart from other instances.
	argv := []string{"sh", "-c", `mount --bind "$0" /run && exec "$1"`, filepath.Join(c.Dir, "run"), CharonPath}
	if cfg.PluginDir != "" {
		if _, err := os.Stat(cfg.PluginDir); err != nil {
			return nil, fmt.Errorf("strongswan: plugin folder: %w", err)
		}
		// Over the system's folder in this instance's namespace only: the
		// extra plugins exist for this charon and no other.
		argv = []string{"sh", "-c", `mount --bind "$0" /run && mount --bind "$2" "$3" && exec "$1"`,
			filepath.Join(c.Dir, "run"), CharonPath, cfg.PluginDir, PluginDir}
	}
	p, err := h.Start(c.Name, argv, lab.StartOptions{Env: c.env()})
	if err != nil {
		return nil, fmt.Errorf("strongswan: start %s on %s: %w", c.Name, h.Name, err)
	}
	c.Proc, c.PID = p, p.PID
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if err := c.waitVICI(timeout); err != nil {
		return nil, c.abort(err)
	}
	if err := c.load(&cfg); err != nil {
		return nil, c.abort(err)
	}
	return c, nil
}

// abort stops a half-started instance and returns err with its logs.
func (c *Charon) abort(err error) error {
	serr := c.Stop()
	return errors.Join(fmt.Errorf("%w\n%s", err, c.Report()), serr)
}

func (c *Charon) socket() string   { return filepath.Join(c.Dir, viciSocketName) }
func (c *Charon) confPath() string { return filepath.Join(c.Dir, "strongswan.conf") }
func (c *Charon) swanctlDir() string {
	return filepath.Join(c.Dir, "swanctl")
}

// LogPath is the filelog: every subsystem at the configured levels,
// with timestamps (ms) and the IKE SA's name and unique id on each line.
func (c *Charon) LogPath() string { return filepath.Join(c.Dir, filelogName) }

func (c *Charon) env() []string {
	return []string{"STRONGSWAN_CONF=" + c.confPath(), "SWANCTL_DIR=" + c.swanctlDir()}
}

// swanctl's credential folders; it complains about any that is missing.
var credDirs = []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey",
	"private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12", "conf.d"}

// writeConfig (re)writes strongswan.conf, swanctl.conf and the
// credential folders, removing credentials of a previous config.
func (c *Charon) writeConfig(cfg *Config) error {
	ss, err := cfg.strongswanConf(c.Dir)
	if err != nil {
		return err
	}
	sw, err := cfg.swanctlConf()
	if err != nil {
		return err
	}
	for _, d := range credDirs {
		p := filepath.Join(c.swanctlDir(), d)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("strongswan: %w", err)
		}
		if err := os.MkdirAll(p, 0o700); err != nil {
			return fmt.Errorf("strongswan: %w", err)
		}
	}
	files := map[string]map[string][]byte{"x509": cfg.Files.X509, "x509ca": cfg.Files.X509CA,
		"x509crl": cfg.Files.X509CRL, "private": cfg.Files.Private}
	for d, m := range files {
		for name, data := range m {
			if err := os.WriteFile(filepath.Join(c.swanctlDir(), d, name), data, 0o600); err != nil {
				return fmt.Errorf("strongswan: %w", err)
			}
		}
	}
	if err := os.WriteFile(c.confPath(), []byte(ss), 0o644); err != nil {
		return fmt.Errorf("strongswan: %w", err)
	}
	// swanctl.conf holds the PSKs.
	if err := os.WriteFile(filepath.Join(c.swanctlDir(), "swanctl.conf"), []byte(sw), 0o600); err != nil {
		return fmt.Errorf("strongswan: %w", err)
	}
	return nil
}

// waitVICI polls until charon answers a version request, charon exits
// or the time is up.
func (c *Charon) waitVICI(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if exited, err := c.Proc.Exited(); exited {
			return fmt.Errorf("strongswan: charon %s on %s exited during start-up: %v", c.Name, c.Host.Name, err)
		}
		_, _, err := c.call("version", nil, "", 2*time.Second)
		if err == nil {
			return nil
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("strongswan: charon %s on %s: VICI socket not answering after %v: %v", c.Name, c.Host.Name, timeout, last)
}

// load runs swanctl --load-all and checks charon has every connection
// and credential: swanctl exits 0 when a certificate or key fails to
// parse, so its output and charon's lists are checked instead.
func (c *Charon) load(cfg *Config) error {
	out, err := c.Swanctl("--load-all", "--noprompt")
	if err != nil {
		return fmt.Errorf("strongswan: load configuration: %w", err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "failed") && !strings.Contains(l, "opening directory") {
			return fmt.Errorf("strongswan: swanctl --load-all: %s", strings.TrimSpace(l))
		}
	}
	if err := c.checkCreds(cfg); err != nil {
		return err
	}
	resp, err := c.Call("get-conns", nil)
	if err != nil {
		return err
	}
	have := resp.List("conns")
	for _, cn := range cfg.Conns {
		if !slices.Contains(have, cn.Name) {
			return fmt.Errorf("strongswan: connection %q not loaded (charon has %v); swanctl said:\n%s", cn.Name, have, out)
		}
	}
	return nil
}

// checkCreds compares what charon holds with what cfg gave it.
func (c *Charon) checkCreds(cfg *Config) error {
	keys, err := c.Call("get-keys", nil)
	if err != nil {
		return err
	}
	if n, want := len(keys.List("keys")), distinct(cfg.Files.Private); n < want {
		return fmt.Errorf("strongswan: charon holds %d private keys, %d given", n, want)
	}
	shared, err := c.Call("get-shared", nil)
	if err != nil {
		return err
	}
	if n, want := len(shared.List("keys")), len(cfg.Secrets.IKE); n < want {
		return fmt.Errorf("strongswan: charon holds %d shared secrets, %d given", n, want)
	}
	_, certs, err := c.call("list-certs", (&Section{}).Set("type", "ANY"), "list-cert", 30*time.Second)
	if err != nil {
		return err
	}
	var x509, crls int
	for _, ct := range certs {
		switch ct.Get("type") {
		case "X509":
			x509++
		case "X509_CRL":
			crls++
		}
	}
	all := map[string][]byte{}
	for k, v := range cfg.Files.X509 {
		all["x509/"+k] = v
	}
	for k, v := range cfg.Files.X509CA {
		all["x509ca/"+k] = v
	}
	if want := distinct(all); x509 < want {
		return fmt.Errorf("strongswan: charon holds %d certificates, %d given", x509, want)
	}
	if want := distinct(cfg.Files.X509CRL); crls < want {
		return fmt.Errorf("strongswan: charon holds %d CRLs, %d given", crls, want)
	}
	return nil
}

// distinct counts the different contents of m: charon keeps one copy of
// a credential given twice.
func distinct(m map[string][]byte) int {
	seen := map[string]bool{}
	for _, v := range m {
		seen[string(v)] = true
	}
	return len(seen)
}

// Swanctl runs swanctl against this instance (its socket and swanctl
// directory) and returns its combined output; the error carries it too.
func (c *Charon) Swanctl(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, SwanctlPath, args...)
	cmd.Env = append(os.Environ(), c.env()...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("swanctl %s (%s on %s): %w: %s", strings.Join(args, " "), c.Name, c.Host.Name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Call sends one VICI command and returns the response message.
func (c *Charon) Call(cmd string, req *Section) (*Section, error) {
	resp, _, err := c.call(cmd, req, "", 30*time.Second)
	return resp, err
}

// call runs a command on a fresh connection (one command at a time per
// connection, and a fresh one cannot be wedged by an earlier timeout).
func (c *Charon) call(cmd string, req *Section, event string, timeout time.Duration) (*Section, []*Section, error) {
	v, err := dialVICI(c.socket(), 5*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("strongswan: %s on %s: %w", c.Name, c.Host.Name, err)
	}
	defer v.Close()
	resp, events, err := v.call(cmd, req, event, time.Now().Add(timeout))
	if err != nil {
		return resp, events, fmt.Errorf("strongswan: %s on %s: %w", c.Name, c.Host.Name, err)
	}
	return resp, events, nil
}

// result turns a {success, errmsg} response into an error, with the
// control-log lines charon streamed while working on it.
func result(what string, resp *Section, logs []*Section) error {
	if resp.Get("success") == "yes" {
		return nil
	}
	var b strings.Builder
	for _, l := range logs {
		fmt.Fprintf(&b, "\n  [%s] %s", l.Get("group"), l.Get("msg"))
	}
	return fmt.Errorf("%s failed: %s%s", what, resp.Get("errmsg"), b.String())
}

// Initiate brings up the child config called child (and its IKE SA if
// needed), waiting at most timeout (0: 30 s) for the result. A negative
// timeout returns at once without waiting for the exchange.
func (c *Charon) Initiate(child string, timeout time.Duration) error {
	return c.InitiateIKE("", child, timeout)
}

// InitiateIKE is Initiate with the connection named, for child names
// used by several connections.
func (c *Charon) InitiateIKE(ike, child string, timeout time.Duration) error {
	req := (&Section{}).Set("child", child)
	if ike != "" {
		req.Set("ike", ike)
	}
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ms := "-1" // charon answers at once
	wait := 10 * time.Second
	if timeout > 0 {
		// Charon's own timeout (0 would mean forever) is shorter than
		// the socket's, so that its answer, with the log, arrives.
		ms = strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
		wait = timeout + 10*time.Second
	}
	req.Set("timeout", ms).Set("loglevel", "1").Set("init-limits", "no")
	resp, logs, err := c.call("initiate", req, "control-log", wait)
	if err != nil {
		return err
	}
	return result(fmt.Sprintf("strongswan: %s on %s: initiate %s", c.Name, c.Host.Name, child), resp, logs)
}

// Terminate deletes the IKE SAs of connection ike (and their child SAs),
// waiting up to 10 s for the peer's answer.
func (c *Charon) Terminate(ike string) error {
	return c.terminate((&Section{}).Set("ike", ike), "ike "+ike)
}

// TerminateChild deletes the child SAs of child config child.
func (c *Charon) TerminateChild(child string) error {
	return c.terminate((&Section{}).Set("child", child), "child "+child)
}

func (c *Charon) terminate(req *Section, what string) error {
	req.Set("timeout", "10000").Set("loglevel", "1")
	resp, logs, err := c.call("terminate", req, "control-log", 20*time.Second)
	if err != nil {
		return err
	}
	return result(fmt.Sprintf("strongswan: %s on %s: terminate %s", c.Name, c.Host.Name, what), resp, logs)
}

// ListSAs returns every IKE SA with its child SAs.
func (c *Charon) ListSAs() ([]IKESA, error) {
	_, events, err := c.call("list-sas", nil, "list-sa", 30*time.Second)
	if err != nil {
		return nil, err
	}
	return parseIKESAs(events)
}

// ListConns returns the loaded connections.
func (c *Charon) ListConns() ([]ConnInfo, error) {
	_, events, err := c.call("list-conns", nil, "list-conn", 30*time.Second)
	if err != nil {
		return nil, err
	}
	return parseConns(events)
}

// Stats returns charon's statistics (ikesas total and half-open, worker
// threads, queues), as the VICI stats command gives them.
func (c *Charon) Stats() (*Section, error) { return c.Call("stats", nil) }

// Config returns the configuration the instance runs with.
func (c *Charon) Config() Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg
}

// Reload writes cfg (its Name and Dir are ignored) and loads it:
// connections, secrets and credentials no longer in cfg are unloaded,
// changed ones replaced (existing SAs stay up). Daemon settings are
// re-read with reload-settings, which changes only what charon reloads
// at run time (log levels, not the plugin list or ports).
func (c *Charon) Reload(cfg Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg.Name, cfg.Dir = c.cfg.Name, c.cfg.Dir
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := c.writeConfig(&cfg); err != nil {
		return err
	}
	resp, err := c.Call("reload-settings", nil)
	if err != nil {
		return err
	}
	if err := result("strongswan: reload-settings", resp, nil); err != nil {
		return err
	}
	if err := c.load(&cfg); err != nil {
		return err
	}
	c.cfg = cfg
	return nil
}

// Stop ends charon by PID (SIGTERM, then SIGKILL after 5 s) and checks
// that it took its TUN device, routes and routing rule with it. What it
// left behind is removed and reported as an error, so that a later
// instance in the host starts clean. Stopping twice is a no-op.
func (c *Charon) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	var errs []error
	if err := c.Proc.Stop(); err != nil {
		errs = append(errs, err)
	}
	if exited, _ := c.Proc.Exited(); !exited {
		errs = append(errs, fmt.Errorf("strongswan: charon %s on %s (pid %d) still running", c.Name, c.Host.Name, c.PID))
	}
	left, err := c.Leftovers()
	if err != nil {
		errs = append(errs, err)
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("strongswan: charon %s on %s left behind: %s", c.Name, c.Host.Name, strings.Join(left, "; ")))
		c.removeLeftovers()
	}
	return errors.Join(errs...)
}

// Kill ends charon with SIGKILL, as a crash would: no DELETE reaches the
// peer, which must find out by DPD or retransmission timeouts. The TUN
// device dies with the process; Kill removes the rule and routes it
// leaves, so that the host can run charon again. It returns an error
// only if the process survives.
func (c *Charon) Kill() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return nil
	}
	c.stopped = true
	c.mu.Unlock()
	if err := c.Proc.Signal(syscall.SIGKILL); err != nil {
		return fmt.Errorf("strongswan: kill %s on %s: %w", c.Name, c.Host.Name, err)
	}
	if exited, _ := c.Proc.Wait(10 * time.Second); !exited {
		return fmt.Errorf("strongswan: charon %s on %s (pid %d) survived SIGKILL", c.Name, c.Host.Name, c.PID)
	}
	c.removeLeftovers()
	return nil
}

// Signal sends sig to charon's process group: SIGSTOP and SIGCONT make a
// peer that stops answering (for DPD) and comes back with its state.
func (c *Charon) Signal(sig syscall.Signal) error {
	return c.Proc.Signal(sig)
}

// Restart stops the instance and starts it again with the same
// configuration, in the same directory (logs appended), and returns the
// new instance.
func (c *Charon) Restart() (*Charon, error) {
	if err := c.Stop(); err != nil {
		return nil, err
	}
	return Start(c.Host, c.Config())
}

func (c *Charon) removeLeftovers() {
	c.Host.Exec("ip", "link", "del", "dev", "ipsec0")
	c.Host.Exec("ip", "-4", "route", "flush", "table", routingTable)
	c.Host.Exec("ip", "-6", "route", "flush", "table", routingTable)
	for range 4 { // one rule per family, maybe duplicated
		c.Host.Exec("ip", "-4", "rule", "del", "table", routingTable)
		c.Host.Exec("ip", "-6", "rule", "del", "table", routingTable)
	}
}

// Leftovers lists what of charon exists in its host: the ipsec0 TUN
// device, routes in its routing table, rules pointing there. Empty while
// charon runs only if it has no tunnel; after Stop it must be empty.
func (c *Charon) Leftovers() ([]string, error) {
	var left []string
	if out, err := c.Host.Exec("ip", "-o", "link", "show"); err != nil {
		return nil, err
	} else if regexp.MustCompile(`(?m)^\d+: ipsec0[:@]`).Match(out) {
		left = append(left, "TUN device ipsec0")
	}
	for _, fam := range []string{"-4", "-6"} {
		out, err := c.Host.Exec("ip", fam, "route", "show", "table", routingTable)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			left = append(left, fmt.Sprintf("routes in table %s (%s): %s", routingTable, fam, strings.ReplaceAll(s, "\n", ", ")))
		}
		out, err = c.Host.Exec("ip", fam, "rule", "show")
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "lookup "+routingTable) {
				left = append(left, fmt.Sprintf("rule (%s) %s", fam, strings.TrimSpace(l)))
			}
		}
	}
	return left, nil
}

// Log returns the filelog so far.
func (c *Charon) Log() string {
	b, err := os.ReadFile(c.LogPath())
	if err != nil {
		return "(filelog unreadable: " + err.Error() + ")"
	}
	return string(b)
}

// Stderr returns what charon wrote on stderr: level-0 events and any
// crash message. It is the lab's process log for the instance.
func (c *Charon) Stderr() string {
	if c.Proc == nil {
		return ""
	}
	return c.Proc.Log()
}

// Report returns, for a failure message, the process state and the last
// lines of stderr and the filelog.
func (c *Charon) Report() string {
	state := "not started"
	if c.Proc != nil {
		state = c.Proc.State()
	}
	return fmt.Sprintf("--- charon %s on %s (pid %d, %s), dir %s\n--- stderr:\n%s\n--- filelog (last 80 lines):\n%s\n",
		c.Name, c.Host.Name, c.PID, state, c.Dir, tail(c.Stderr(), 30), tail(c.Log(), 80))
}

func tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// WaitLog waits up to timeout for a filelog line matching re and returns
// the first such line.
func (c *Charon) WaitLog(re *regexp.Regexp, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range strings.Split(c.Log(), "\n") {
			if re.MatchString(l) {
				return l, nil
			}
		}
		if err := c.pollStep(deadline); err != nil {
			return "", fmt.Errorf("strongswan: %s on %s: no log line matching %q: %w", c.Name, c.Host.Name, re, err)
		}
	}
}

// WaitSAs polls ListSAs until cond holds, for up to timeout, and returns
// the SAs that satisfied it.
func (c *Charon) WaitSAs(cond func([]IKESA) bool, timeout time.Duration) ([]IKESA, error) {
	deadline := time.Now().Add(timeout)
	var last []IKESA
	for {
		sas, err := c.ListSAs()
		if err == nil && cond(sas) {
			return sas, nil
		}
		if err == nil {
			last = sas
		}
		if perr := c.pollStep(deadline); perr != nil {
			return last, fmt.Errorf("strongswan: %s on %s: condition on SAs not met: %w (last error %v)", c.Name, c.Host.Name, perr, err)
		}
	}
}

// WaitEstablished waits until an ESTABLISHED IKE SA of connection ike
// has an INSTALLED child SA called child ("" for any IKE SA) and returns
// it.
func (c *Charon) WaitEstablished(ike, child string, timeout time.Duration) (*IKESA, error) {
	var found *IKESA
	_, err := c.WaitSAs(func(sas []IKESA) bool {
		for i := range sas {
			if sas[i].Name == ike && sas[i].Ready() && (child == "" || sas[i].Child(child) != nil) {
				found = &sas[i]
				return true
			}
		}
		return false
	}, timeout)
	return found, err
}

// pollStep sleeps one poll interval, or fails when charon has exited or
// the deadline has passed.
func (c *Charon) pollStep(deadline time.Time) error {
	if exited, err := c.Proc.Exited(); exited {
		return fmt.Errorf("charon exited (%v)", err)
	}
	if time.Now().After(deadline) {
		return errors.New("timed out")
	}
	time.Sleep(50 * time.Millisecond)
	return nil
}
