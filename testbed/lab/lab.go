// Package lab builds network topologies out of Linux network namespaces for
// spugate's tests, its demo and its benchmarks: named hosts, veth links with
// a chosen number of queues, addresses from 198.18.0.0/15 and 2001:db8::/32,
// routes, forwarding, commands and Go functions run inside a host, and
// long-running processes whose logs are kept for a failure report.
//
// A lab owns everything it creates and removes it on Close, which tests get
// from NewForTest (t.Cleanup, also after a panic), and programs on SIGINT or
// SIGTERM through the handler New installs. A run that dies anyway (SIGKILL,
// power loss of the test binary) leaves a state file under StateDir naming
// its PID; every New first sweeps the namespaces of runs whose owner is gone.
//
// Links are created directly inside their namespaces (never in the caller's),
// so deleting a lab's namespaces deletes all of its links too.
//
// Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) but the naming
// and cleanup bookkeeping, which is unit tested without privilege.
package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// StateDir holds one JSON file per live run (tmpfs: a reboot forgets runs
// whose namespaces it also forgot).
var StateDir = "/run/spugate-lab"

// Options configure a lab.
type Options struct {
	// LogDir receives the processes' logs; default a fresh directory under
	// os.TempDir(). It is removed on a clean Close and kept after a failure.
	LogDir string
	// Logf, when set, receives a line per action (the commands run).
	Logf func(format string, args ...any)
	// NoSignalHandler leaves SIGINT/SIGTERM to the caller, who must then
	// call Close itself.
	NoSignalHandler bool
	// NoSweep skips removing leftovers of dead runs on New.
	NoSweep bool
}

// Lab is a set of hosts (network namespaces) and links of one run.
type Lab struct {
	RunID  string
	LogDir string

	opts   Options
	run    runner
	mu     sync.Mutex
	hosts  map[string]*Host
	order  []string // host creation order, for stable reports
	procs  []*Proc
	closed bool
	failed bool
	keep   bool // keep LogDir on Close
}

// runner runs one command and returns its combined output. Tests replace it
// to check the bookkeeping without privilege.
type runner func(ctx context.Context, name string, args ...string) ([]byte, error)

func execRunner(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// runState is what StateDir/<runID>.json records for Sweep.
type runState struct {
	RunID     string `json:"run_id"`
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"` // /proc/PID/stat field 22, against PID reuse
	LogDir    string `json:"log_dir"`
}

// New makes an empty lab after sweeping leftovers of dead runs.
func New(opts Options) (*Lab, error) {
	if why := Missing(); why != "" {
		return nil, fmt.Errorf("lab: %s", why)
	}
	return newLab(opts, execRunner)
}

// Missing says which kernel facility the lab needs and this machine lacks
// (network namespaces, IPv6), or "" when none.
func Missing() string {
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "no network namespaces on this kernel (CONFIG_NET_NS)"
	}
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return "IPv6 is off on this kernel (ipv6.disable=1?): the lab's hosts and links are dual-stack"
	}
	return ""
}

// MissingNAT says why nftables NAT (masquerade), which a line with a NAT
// box needs, does not work here, or "" when it does; it tries it in a
// namespace of its own.
func MissingNAT() string {
	ns := nsName(newRunID(), "natprobe")
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return fmt.Sprintf("ip netns add: %v: %s", err, bytes.TrimSpace(out))
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	rules := "table ip natprobe {\n\tchain post {\n\t\ttype nat hook postrouting priority 100;\n\t\tmasquerade\n\t}\n}\n"
	cmd := exec.Command("ip", "netns", "exec", ns, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Sprintf("nftables NAT refused by this kernel (nft_nat, nft_masq): %s", firstLine(out, err))
	}
	return ""
}

func firstLine(out []byte, err error) string {
	if l, _, _ := bytes.Cut(bytes.TrimSpace(out), []byte("\n")); len(l) > 0 {
		return string(l)
	}
	return err.Error()
}

func newLab(opts Options, run runner) (*Lab, error) {
	if !opts.NoSweep {
		if _, err := sweep(context.Background(), run, opts.Logf); err != nil {
			return nil, err
		}
	}
	l := &Lab{RunID: newRunID(), opts: opts, run: run, hosts: map[string]*Host{}}
	l.LogDir = opts.LogDir
	if l.LogDir == "" {
		dir, err := os.MkdirTemp("", "spugate-lab-"+l.RunID+"-")
		if err != nil {
			return nil, fmt.Errorf("lab: log directory: %w", err)
		}
		l.LogDir = dir
	} else if err := os.MkdirAll(l.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: log directory: %w", err)
	}
	if err := l.writeState(); err != nil {
		return nil, err
	}
	if !opts.NoSignalHandler {
		registerLive(l)
	}
	return l, nil
}

func (l *Lab) logf(format string, args ...any) {
	if l.opts.Logf != nil {
		l.opts.Logf(format, args...)
	}
}

func (l *Lab) writeState() error {
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return fmt.Errorf("lab: state directory: %w", err)
	}
	st := runState{RunID: l.RunID, PID: os.Getpid(), StartTime: procStartTime(os.Getpid()), LogDir: l.LogDir}
	b, _ := json.Marshal(st)
	if err := os.WriteFile(filepath.Join(StateDir, l.RunID+".json"), b, 0o644); err != nil {
		return fmt.Errorf("lab: state file: %w", err)
	}
	return nil
}

// cmd runs a command with a bounded time: a wedged `ip` must not hang a test.
func (l *Lab) cmd(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.logf("lab %s: %s %s", l.RunID, name, strings.Join(args, " "))
	return l.run(ctx, name, args...)
}

// AddHost creates a host: a network namespace with loopback up, IPv6
// duplicate address detection off (addresses are usable at once) and
// forwarding as asked.
func (l *Lab) AddHost(name string, router bool) (*Host, error) {
	if err := checkHostName(name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	if _, dup := l.hosts[name]; dup {
		l.mu.Unlock()
		return nil, fmt.Errorf("lab: host %q exists", name)
	}
	h := &Host{Name: name, NS: nsName(l.RunID, name), lab: l}
	l.hosts[name] = h
	l.order = append(l.order, name)
	l.mu.Unlock()

	if _, err := l.cmd("ip", "netns", "add", h.NS); err != nil {
		return nil, fmt.Errorf("lab: host %q: %w", name, err)
	}
	fwd := "0"
	if router {
		fwd = "1"
	}
	// rp_filter off before any link exists: a new namespace takes its
	// defaults from the host's (a systemd host sets 2), and a link takes
	// them from the namespace's default when it is created; hosts of the
	// lab send from addresses that have no route back on purpose.
	sysctls := [][2]string{
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
		{"net.ipv4.ip_forward", fwd},
		{"net.ipv6.conf.all.forwarding", fwd},
		{"net.ipv4.conf.all.rp_filter", "0"},
		{"net.ipv4.conf.default.rp_filter", "0"},
	}
	if _, err := h.Exec("ip", "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	for _, s := range sysctls {
		if err := h.Sysctl(s[0], s[1]); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[name]
}

// Hosts returns the hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := make([]*Host, 0, len(l.order))
	for _, n := range l.order {
		hs = append(hs, l.hosts[n])
	}
	return hs
}

// LinkOptions shape a veth link.
type LinkOptions struct {
	// Queues is the number of rx and tx queues on each end (default 1).
	// The queue a packet lands on follows the sender's tx queue.
	Queues int
	// MTU of both ends (default 1500).
	MTU int
	// Threaded turns on threaded NAPI on both ends, which lets the other
	// core share a veth chain's work (see docs/architecture.md). A kernel
	// without the switch (before 5.12) gets the link without it, logged.
	Threaded bool
	// TxChecksumOffload keeps veth's transmit checksum offload. Off by
	// default: a locally sent packet then leaves with its checksum only
	// partly computed (the kernel finishes it on delivery), and a packet
	// that an XDP program hands to AF_XDP never gets finished, so a
	// userspace gateway would forward it with a bad checksum. Real NICs
	// deliver complete checksums; this is a veth artefact.
	TxChecksumOffload bool
}

// Link connects host a's interface aIf to host b's interface bIf with a veth
// pair created inside the two namespaces, and sets both ends up.
func (l *Lab) Link(a *Host, aIf string, b *Host, bIf string, o LinkOptions) error {
	for _, n := range []string{aIf, bIf} {
		if err := checkIfName(n); err != nil {
			return err
		}
	}
	q := o.Queues
	if q <= 0 {
		q = 1
	}
	qs := fmt.Sprint(q)
	args := []string{"link", "add", "name", aIf, "netns", a.NS, "numtxqueues", qs, "numrxqueues", qs,
		"type", "veth", "peer", "name", bIf, "netns", b.NS, "numtxqueues", qs, "numrxqueues", qs}
	if _, err := l.cmd("ip", args...); err != nil {
		return fmt.Errorf("lab: link %s:%s-%s:%s: %w", a.Name, aIf, b.Name, bIf, err)
	}
	for _, end := range []struct {
		h   *Host
		if_ string
	}{{a, aIf}, {b, bIf}} {
		if o.MTU > 0 {
			if _, err := end.h.Exec("ip", "link", "set", end.if_, "mtu", fmt.Sprint(o.MTU)); err != nil {
				return err
			}
		}
		if _, err := end.h.Exec("ip", "link", "set", end.if_, "up"); err != nil {
			return err
		}
		if !o.TxChecksumOffload {
			if _, err := end.h.Exec("ethtool", "-K", end.if_, "tx", "off"); err != nil {
				return err
			}
		}
		if o.Threaded {
			err := end.h.SetThreaded(end.if_, true)
			if errors.Is(err, ErrNoThreadedNAPI) {
				l.logf("lab %s: %s:%s: %v: left as the kernel has it", l.RunID, end.h.Name, end.if_, err)
			} else if err != nil {
				return err
			}
		}
	}
	return nil
}

// MarkFailed keeps the logs on Close and makes Report worth printing.
func (l *Lab) MarkFailed() {
	l.mu.Lock()
	l.failed, l.keep = true, true
	l.mu.Unlock()
}

// Report returns, for a failure message, the tail of every process log and
// each host's addresses, routes and links.
func (l *Lab) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s (logs in %s)\n", l.RunID, l.LogDir)
	l.mu.Lock()
	procs := append([]*Proc(nil), l.procs...)
	l.mu.Unlock()
	for _, p := range procs {
		fmt.Fprintf(&b, "--- %s on %s (pid %d, %s): last lines of %s\n%s\n", p.Name, p.Host.Name, p.PID, p.State(), p.LogPath, tail(p.Log(), 60))
	}
	for _, h := range l.Hosts() {
		for _, c := range [][]string{{"ip", "-br", "addr"}, {"ip", "route"}, {"ip", "-6", "route"}, {"ip", "-s", "-br", "link"}} {
			out, err := h.Exec(c[0], c[1:]...)
			if err != nil {
				fmt.Fprintf(&b, "--- %s: %s: %v\n", h.Name, strings.Join(c, " "), err)
				continue
			}
			fmt.Fprintf(&b, "--- %s: %s\n%s", h.Name, strings.Join(c, " "), out)
		}
	}
	return b.String()
}

func tail(s string, lines int) string {
	s = strings.TrimRight(s, "\n")
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Close stops every process the lab started, deletes its namespaces (and
// with them its links and nftables rules) and its state file. It tries every
// step even when one fails and returns all the errors. Closing twice is a
// no-op.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := append([]*Proc(nil), l.procs...)
	names := append([]string(nil), l.order...)
	keep := l.keep
	l.mu.Unlock()
	unregisterLive(l)

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range names {
		ns := nsName(l.RunID, n)
		// Processes this run started in the namespace but that escaped
		// their process group would keep it busy; they are ours to stop.
		if err := killNSPids(l.run, ns); err != nil {
			errs = append(errs, err)
		}
		if _, err := l.cmd("ip", "netns", "del", ns); err != nil && !isNoSuchNS(err) {
			errs = append(errs, fmt.Errorf("lab: delete host %q: %w", n, err))
		}
	}
	if err := os.Remove(filepath.Join(StateDir, l.RunID+".json")); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	if !keep && l.opts.LogDir == "" {
		os.RemoveAll(l.LogDir)
	}
	return errors.Join(errs...)
}

func isNoSuchNS(err error) bool {
	return err != nil && strings.Contains(err.Error(), "No such file")
}

// Leftovers lists what of this run still exists: namespaces named for it
// and, in the caller's namespace, links named for it. Tests assert it is
// empty after Close.
func (l *Lab) Leftovers() ([]string, error) {
	return leftovers(l.run, l.RunID)
}

func leftovers(run runner, runID string) ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var left []string
	nss, err := listNS(ctx, run)
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		if id, _, ok := parseNSName(ns); ok && id == runID {
			left = append(left, "netns "+ns)
		}
	}
	out, err := run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, runID) {
			left = append(left, "link "+strings.TrimSpace(line))
		}
	}
	if _, err := os.Stat(filepath.Join(StateDir, runID+".json")); err == nil {
		left = append(left, "state file "+runID)
	}
	sort.Strings(left)
	return left, nil
}

func listNS(ctx context.Context, run runner) ([]string, error) {
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return nil, err
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// Prefix4 and Prefix6 are the only ranges a lab hands out.
var (
	Prefix4 = netip.MustParsePrefix("198.18.0.0/15")
	Prefix6 = netip.MustParsePrefix("2001:db8::/32")
)

func checkLabAddr(p netip.Prefix) error {
	if p.Addr().Is4() && Prefix4.Contains(p.Addr()) || p.Addr().Is6() && Prefix6.Contains(p.Addr()) {
		return nil
	}
	return fmt.Errorf("lab: address %s is outside %s and %s", p, Prefix4, Prefix6)
}
