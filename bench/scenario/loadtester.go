package scenario

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/strongswan"
)

// LoadTesterPlugins is the plugin folder deploy/load-tester.sh lays out:
// a copy of Debian's with strongSwan's load-tester plugin built from
// Debian's source package, and a VERSION file naming the strongswan
// package it was built for. The load-generating charon has it
// bind-mounted over the system's folder in its own mount namespace.
var LoadTesterPlugins = "/var/cache/spugate/load-tester/plugins"

// loadTesterSO is the plugin's file in LoadTesterPlugins.
const loadTesterSO = "libstrongswan-load-tester.so"

// loadTesterPSK is the pre-shared key load-tester's own credential set
// offers for every identity (its preshared_key setting; "default-psk"
// otherwise): the responders are given the same.
var loadTesterPSK = []byte("spugate lab load-tester")

// loadTesterIDs is the initiator identity pattern (%d: the IKE SA's
// number, so that each IKE SA has an identity of its own) and the
// wildcard the responders accept it with.
const (
	loadTesterID    = "c%d.load.gw-a.lab.example"
	loadTesterMatch = "*.load.gw-a.lab.example"
)

// LoadTesterReady says whether the plugin folder is there for the
// installed strongSwan: "" when it is, else why not.
func LoadTesterReady() string {
	so := filepath.Join(LoadTesterPlugins, loadTesterSO)
	if _, err := os.Stat(so); err != nil {
		return fmt.Sprintf("%s missing", so)
	}
	want, err := installedStrongSwan()
	if err != nil {
		return err.Error()
	}
	have, _ := os.ReadFile(filepath.Join(LoadTesterPlugins, "VERSION"))
	if got := strings.TrimSpace(string(have)); got != want {
		return fmt.Sprintf("%s was built for strongSwan %q, %q is installed", so, got, want)
	}
	return ""
}

// installedStrongSwan is the Debian version of the installed charon.
func installedStrongSwan() (string, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "strongswan-charon").Output()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		return "", fmt.Errorf("load-tester: installed strongswan-charon version unknown (dpkg-query: %v)", err)
	}
	return string(bytes.TrimSpace(out)), nil
}

// EnsureLoadTester builds the plugin folder when it is missing or stale,
// with deploy/load-tester.sh (found above the working directory or the
// executable), logging the script's lines.
func EnsureLoadTester(e *Env) error {
	why := LoadTesterReady()
	if why == "" {
		return nil
	}
	script, err := findDeployScript("load-tester.sh")
	if err != nil {
		return fmt.Errorf("load-tester: %s, and %w: run `make load-tester` in spugate's tree", why, err)
	}
	e.Logf("load-tester: %s: building it with %s (about 5 minutes)", why, script)
	cmd := exec.Command("bash", script)
	cmd.Env = append(os.Environ(), "SPUGATE_CACHE="+filepath.Dir(filepath.Dir(LoadTesterPlugins)))
	out, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(bytes.NewReader(out))
	var last string
	for sc.Scan() {
		last = sc.Text()
		e.Logf("  %s", last)
	}
	if err != nil {
		return fmt.Errorf("load-tester: %s failed (%v): %s", script, err, last)
	}
	if why := LoadTesterReady(); why != "" {
		return fmt.Errorf("load-tester: %s ran, yet %s", script, why)
	}
	return nil
}

// findDeployScript looks for deploy/name in the working directory, the
// executable's directory and their parents.
func findDeployScript(name string) (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, d := range starts {
		for {
			p := filepath.Join(d, "deploy", name)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			up := filepath.Dir(d)
			if up == d {
				break
			}
			d = up
		}
	}
	return "", errors.New("deploy/" + name + " not found above the working directory or the executable")
}

// loadTesterOptions shape the load-generating charon.
type loadTesterOptions struct {
	Count  int // IKE SAs to set up, each with one Child SA
	Window int // at most this many half-open at a time (init_limit)
	// Initiator and Responder are the IKE endpoints; TSi and TSr the
	// Child SA's traffic selectors as proposed.
	Initiator, Responder string
	TSi, TSr             string
	ResponderID          string
	Proposal, ESP        string
}

// loadTesterThreads splits count over at most four initiator threads
// (load-tester's initiators × iterations): as many as divide it.
func loadTesterThreads(count int) (threads, iterations int) {
	for t := 4; t > 1; t-- {
		if count%t == 0 {
			return t, count / t
		}
	}
	return 1, count
}

// settings are load-tester's charon.plugins.load-tester section.
func (o loadTesterOptions) settings() map[string]string {
	threads, iter := loadTesterThreads(o.Count)
	return map[string]string{
		"enable":     "yes",
		"initiators": strconv.Itoa(threads),
		"iterations": strconv.Itoa(iter),
		// With init_limit, load-tester polls the half-open count between
		// sleeps of delay ms: 0 spins its threads on the CPUs the
		// responder needs (4.6 ms of CPU per IKE SA measured). 1 ms lets
		// each thread start up to 1,000 IKE SAs per second.
		"delay":      "1",
		"init_limit": strconv.Itoa(max(o.Window, 1)),
		"version":    "2",
		"proposal":   o.Proposal,
		"esp":        o.ESP,
		// PSK both ways: upstream load-tester signs with RSA only.
		"initiator_auth": "psk",
		"responder_auth": "psk",
		"preshared_key":  string(loadTesterPSK),
		"initiator_id":   loadTesterID,
		"responder_id":   o.ResponderID,
		"initiator":      o.Initiator,
		"responder":      o.Responder,
		"initiator_tsi":  o.TSi,
		"initiator_tsr":  o.TSr,
		"mode":           "tunnel",
		// No rekeying and no expiry during the run.
		"child_rekey": "0",
		"ike_rekey":   "0",
		// Child SAs go nowhere: the initiator's cost is IKE only, and this
		// kernel has no ESP to install them in.
		"fake_kernel":            "yes",
		"shutdown_when_complete": "no",
	}
}

// fakeKernelPlugins is the plugin list of a charon with load-tester's
// fake kernel: load-tester before kernel-netlink, or kernel-netlink's
// IPsec interface is registered first, takes every Child SA, fails to
// install it (no ESP in this kernel) and the initiator deletes each IKE
// SA right after IKE_AUTH; no kernel-libipsec.
func fakeKernelPlugins() []string {
	out := []string{"load-tester"}
	for _, p := range strongswan.DefaultPlugins {
		if p != "kernel-libipsec" {
			out = append(out, p)
		}
	}
	return out
}

// loadTesterConfig is the load-generating charon's configuration: no
// connection of its own (load-tester's backend makes one per IKE SA).
func loadTesterConfig(dir string, o loadTesterOptions) strongswan.Config {
	return strongswan.Config{
		Name:      "load-tester",
		Dir:       dir,
		Plugins:   fakeKernelPlugins(),
		PluginDir: LoadTesterPlugins,
		Settings: strongswan.Settings{
			// With reuse, each initiation scans every IKE SA for one of
			// the same config to reuse: an initiator cost that grows
			// with the count (1.3 ms of CPU per IKE SA at 2,000, 4.5 ms at
			// 10,000 measured).
			ReuseIKESA:     strongswan.No,
			InstallRoutes:  strongswan.No,
			IKESATableSize: 4096, IKESATableSegs: 16,
			Plugin: map[string]map[string]string{"load-tester": o.settings()},
		},
		Log: map[string]int{"default": 0, "ike": 0},
	}
}

// fakeKernelResponder turns a responder's configuration into charon with
// load-tester's fake kernel: every Child SA negotiated and "installed"
// nowhere, so that its cost is IKE alone. The plugin only lends its
// kernel interface (no initiators); its own connection binds to addresses
// no peer uses.
func fakeKernelResponder(cfg *strongswan.Config) {
	cfg.Plugins = fakeKernelPlugins()
	cfg.PluginDir = LoadTesterPlugins
	cfg.Settings.InstallRoutes = strongswan.No
	if cfg.Settings.Plugin == nil {
		cfg.Settings.Plugin = map[string]map[string]string{}
	}
	cfg.Settings.Plugin["load-tester"] = map[string]string{"enable": "yes", "initiators": "0", "fake_kernel": "yes",
		"initiator": "127.0.0.2", "responder": "127.0.0.1", "preshared_key": string(loadTesterPSK)}
}

// loadTesterPeer makes a responder's configuration accept load-tester's
// IKE SAs: its identities and its pre-shared key.
func loadTesterPeer(cfg *strongswan.Config) {
	for i := range cfg.Conns {
		cfg.Conns[i].Remote.ID = loadTesterMatch
	}
	cfg.Secrets = strongswan.Secrets{IKE: []strongswan.PSK{{Secret: slices.Clone(loadTesterPSK)}}}
}

// loadTesterLine is the options for a line's gateways.
func loadTesterLine(ln *lab.Line, count, window int) loadTesterOptions {
	pl := ln.Plan
	return loadTesterOptions{Count: count, Window: window,
		Initiator: pl.GwAWan4.String(), Responder: pl.GwBWan4.String(),
		TSi: pl.LanA4.String(), TSr: pl.LanB4.String(), ResponderID: strongswan.IDGwB,
		Proposal: ikeProposal, ESP: espProposal}
}

// clockTick is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// processCPU is a process's user + system time so far, its threads'
// included (/proc/PID/stat's utime and stime).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("cpu time of pid %d: %w", pid, err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line; the command name (field 2) may hold spaces and
// parentheses, so the fields are counted from its last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("cpu time: /proc/PID/stat without a command name")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, fmt.Errorf("cpu time: /proc/PID/stat has %d fields after the command name, want 13 or more", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("cpu time: /proc/PID/stat: %w", err)
	}
	return time.Duration(u+s) * clockTick, nil
}
