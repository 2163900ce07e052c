// Package machine describes the computer a benchmark ran on: CPU model and
// count, kernel, Go, and the versions of the software compared with
// spugate, so that every result file says where its figures come from.
package machine

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Info is the machine a run measured.
type Info struct {
	Hostname   string `json:"hostname"`
	CPUModel   string `json:"cpu_model"`
	CPUs       int    `json:"cpus"`        // online CPUs
	MemoryMiB  int    `json:"memory_mib"`  // total
	Kernel     string `json:"kernel"`      // uname -r
	KernelVer  string `json:"kernel_info"` // uname -v
	Arch       string `json:"arch"`
	GoVersion  string `json:"go_version"` // of the harness, built with the same toolchain as spud
	StrongSwan string `json:"strongswan,omitempty"`
	WireGuard  string `json:"wireguard_go,omitempty"`
	Virtual    string `json:"virtualization,omitempty"`
}

// Collect reads the machine's description. Tools that are missing leave
// their field empty.
func Collect() Info {
	in := Info{CPUs: runtime.NumCPU(), Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	in.Hostname, _ = os.Hostname()
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		in.Kernel = unix.ByteSliceToString(u.Release[:])
		in.KernelVer = unix.ByteSliceToString(u.Version[:])
	}
	in.CPUModel = cpuModel()
	in.MemoryMiB = memTotalMiB()
	in.StrongSwan = firstLine(run("/usr/lib/ipsec/charon", "--version"))
	in.WireGuard = firstLine(run("wireguard-go", "--version"))
	in.Virtual = firstLine(run("systemd-detect-virt"))
	return in
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func memTotalMiB() int {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
}

func run(name string, args ...string) string {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if cmd.Start() != nil {
		return ""
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	return out.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(s)
}
