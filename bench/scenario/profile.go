package scenario

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/spugate/spugate/bench/system"
)

// Profile is where the CPU went during one measurement, from a system-wide
// perf profile (software cpu-clock sampling: this machine kind has no
// hardware counters). It covers the whole machine: generator, sink, both
// gateways, the kernel's NAPI threads, and anything else running.
type Profile struct {
	Run string `json:"run"`
	// Result is the profiled run's traffic.
	Result  *Measurement `json:"result,omitempty"`
	File    string       `json:"file"`
	Samples int          `json:"samples"`
	// ByCommand is the share of all samples, both CPUs, per command name
	// (swapper is idle time).
	ByCommand []Share `json:"by_command"`
	// Spud is the share of spud's own samples per function (kernel
	// functions marked [k]), the top ones; SpudSamples is their number.
	Spud        []Share `json:"spud_symbols"`
	SpudSamples int     `json:"spud_samples"`
	// SpudKernel is the share of spud's samples spent in the kernel
	// (system calls, the AF_XDP copy, veth transmit).
	SpudKernel float64 `json:"spud_kernel_share"`
}

// Share is a part of a profile in percent.
type Share struct {
	Name    string  `json:"name"`
	Percent float64 `json:"percent"`
}

var (
	// "  24.90%  380  spud": share, samples, name (perf report -n).
	commLine = regexp.MustCompile(`^\s+([\d.]+)%\s+(\d+)\s+(\S.*?)\s*$`)
	// "  8.36%  12  [kernel.kallsyms]  [k] do_syscall_64".
	symLine = regexp.MustCompile(`^\s+([\d.]+)%\s+(\d+)\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$`)
)

// AnalyzeProfile summarizes a perf.data file with perf report.
func AnalyzeProfile(path string, _ []system.Daemon) (*Profile, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	p := &Profile{File: path}
	out, err := perfReport(path, "--sort", "comm")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := commLine.FindStringSubmatch(sc.Text())
		if m == nil || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		n, _ := strconv.Atoi(m[2])
		p.Samples += n
		if v >= 0.5 {
			p.ByCommand = append(p.ByCommand, Share{Name: m[3], Percent: v})
		}
	}
	out, err = perfReport(path, "--comms", "spud", "--percentage", "relative", "--sort", "dso,sym")
	if err != nil {
		return nil, err
	}
	sc = bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := symLine.FindStringSubmatch(sc.Text())
		if m == nil || strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		n, _ := strconv.Atoi(m[2])
		p.SpudSamples += n
		name := m[5]
		if m[4] == "k" {
			p.SpudKernel += v
			name += " [k]"
		}
		if len(p.Spud) < 30 && v >= 0.3 {
			p.Spud = append(p.Spud, Share{Name: name, Percent: v})
		}
	}
	return p, nil
}

func perfReport(path string, args ...string) ([]byte, error) {
	cmd := exec.Command("perf", append([]string{"report", "-i", path, "--stdio", "--no-children", "-g", "none", "-n"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("profile: perf report %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
