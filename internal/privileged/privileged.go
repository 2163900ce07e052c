// Package privileged gates tests that need root: network namespaces, BPF
// programs, AF_XDP sockets. Such tests live in files named
// *_privileged_test.go, their names start with TestPrivileged, and they call
// Require first, so that
//
//	go test -run '^TestPrivileged' ./...
//
// runs them alone, and an unprivileged `go test ./...` skips them with the
// reason instead of failing.
package privileged

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Capability numbers from linux/capability.h. x/sys/unix names a few of
// them, but not CAP_BPF or CAP_PERFMON on every version.
const (
	CapNetAdmin = 12
	CapNetRaw   = 13
	CapIPCLock  = 14
	CapSysAdmin = 21
	CapPerfmon  = 38
	CapBPF      = 39
)

var capNames = map[int]string{
	CapNetAdmin: "CAP_NET_ADMIN",
	CapNetRaw:   "CAP_NET_RAW",
	CapIPCLock:  "CAP_IPC_LOCK",
	CapSysAdmin: "CAP_SYS_ADMIN",
	CapPerfmon:  "CAP_PERFMON",
	CapBPF:      "CAP_BPF",
}

// Default is what a lab test needs: namespaces and links (NET_ADMIN, which
// with SYS_ADMIN covers `ip netns`), raw sockets for ping, BPF and locked
// memory for XDP and AF_XDP.
var Default = []int{CapNetAdmin, CapNetRaw, CapSysAdmin, CapBPF, CapIPCLock}

// Require skips t unless the process runs as root with the Default
// capabilities and every named command is on PATH.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	if reason := Missing(Default, commands...); reason != "" {
		t.Skipf("privileged test skipped: %s (run as root, e.g. `sudo make test`)", reason)
	}
}

// RequireCaps is Require with an explicit capability set.
func RequireCaps(t testing.TB, caps []int, commands ...string) {
	t.Helper()
	if reason := Missing(caps, commands...); reason != "" {
		t.Skipf("privileged test skipped: %s (run as root, e.g. `sudo make test`)", reason)
	}
}

// Missing returns why the privileged requirement is not met, or "" when it is.
func Missing(caps []int, commands ...string) string {
	if os.Geteuid() != 0 {
		return fmt.Sprintf("not root (euid %d)", os.Geteuid())
	}
	eff, err := effectiveCaps()
	if err != nil {
		return "cannot read capabilities: " + err.Error()
	}
	last := lastCap()
	for _, c := range caps {
		if c > last {
			// A capability this kernel does not know (CAP_BPF and
			// CAP_PERFMON came in 5.8): CAP_SYS_ADMIN stands for it.
			c = CapSysAdmin
		}
		if eff&(1<<uint(c)) == 0 {
			name := capNames[c]
			if name == "" {
				name = fmt.Sprintf("capability %d", c)
			}
			return "missing " + name
		}
	}
	for _, cmd := range commands {
		if _, err := exec.LookPath(cmd); err != nil {
			return fmt.Sprintf("command %q not found (deploy/deps.sh installs it)", cmd)
		}
	}
	return ""
}

// lastCap is the highest capability the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 63
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 63
	}
	return n
}

func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}
