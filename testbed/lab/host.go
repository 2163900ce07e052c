package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is one network namespace of a lab.
type Host struct {
	Name string // as given to AddHost
	NS   string // the namespace name, unique per run
	lab  *Lab
}

// LogDir is the lab's log directory, where daemons started for this host
// may keep their files (kept after a failure, removed on a clean Close).
func (h *Host) LogDir() string { return h.lab.LogDir }

// Exec runs a command inside the host and returns its combined output. The
// error carries the command and its output.
func (h *Host) Exec(name string, args ...string) ([]byte, error) {
	return h.lab.cmd("ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// ExecContext is Exec bounded by ctx instead of the default 30 s.
func (h *Host) ExecContext(ctx context.Context, name string, args ...string) ([]byte, error) {
	h.lab.logf("lab %s: [%s] %s %s", h.lab.RunID, h.Name, name, strings.Join(args, " "))
	return h.lab.run(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Sysctl sets a sysctl inside the host.
func (h *Host) Sysctl(key, value string) error {
	_, err := h.Exec("sysctl", "-q", "-w", key+"="+value)
	return err
}

// ErrNoThreadedNAPI is SetThreaded's error on a kernel or device without
// the switch (/sys/class/net/IF/threaded, Linux 5.12+).
var ErrNoThreadedNAPI = errors.New("no threaded NAPI switch on this kernel")

// SetThreaded turns threaded NAPI on or off for an interface of the host.
func (h *Host) SetThreaded(ifname string, on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	// A veth has NAPI instances (and so something to thread) only with
	// GRO or an XDP program on it: turn GRO on first.
	if on {
		if _, err := h.Exec("ethtool", "-K", ifname, "gro", "on"); err != nil {
			return err
		}
	}
	// `ip netns exec` mounts the namespace's own /sys, so the path names
	// the host's interface, not the caller's.
	path := fmt.Sprintf("/sys/class/net/%s/threaded", ifname)
	if _, err := h.Exec("test", "-e", path); err != nil {
		return fmt.Errorf("%s: %w", ifname, ErrNoThreadedNAPI)
	}
	_, err := h.Exec("sh", "-c", fmt.Sprintf("echo %s > %s", v, path))
	return err
}

// AddAddr adds an address with its prefix length to an interface. IPv6
// addresses skip duplicate address detection.
func (h *Host) AddAddr(ifname string, p netip.Prefix) error {
	if err := checkLabAddr(p); err != nil {
		return err
	}
	args := []string{"addr", "add", p.String(), "dev", ifname}
	if p.Addr().Is6() {
		args = append([]string{"-6"}, append(args, "nodad")...)
	}
	_, err := h.Exec("ip", args...)
	return err
}

// AddRoute routes dst via the gateway address gw (a neighbour of this host).
func (h *Host) AddRoute(dst netip.Prefix, gw netip.Addr) error {
	if err := checkLabAddr(dst); err != nil && dst.Bits() != 0 {
		return err
	}
	if err := checkLabAddr(netip.PrefixFrom(gw, gw.BitLen())); err != nil {
		return err
	}
	fam := "-4"
	if dst.Addr().Is6() {
		fam = "-6"
	}
	d := dst.String()
	if dst.Bits() == 0 {
		d = "default"
	}
	_, err := h.Exec("ip", fam, "route", "replace", d, "via", gw.String())
	return err
}

// Do runs fn on an OS thread that has entered the host's namespace. Sockets
// fn opens stay in that namespace after it returns; goroutines fn starts do
// not inherit it. A thread that cannot be brought back to its namespace is
// left locked, so the runtime retires it instead of reusing it.
func (h *Host) Do(fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: host %s: current namespace: %w", h.Name, err)
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", h.NS))
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: host %s: %w", h.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lab: host %s: setns: %w", h.Name, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("lab: host %s: restore namespace: %w (after: %v)", h.Name, err, ferr)
	}
	runtime.UnlockOSThread()
	return ferr
}
