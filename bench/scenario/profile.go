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
	Run     string `json:"run"`
	File    string `json:"file"`
	Samples int    `json:"samples"`
	// ByCommand is the share of all samples, both CPUs, per command name
	// (swapper is idle time).
	ByCommand []Share `json:"by_command"`
	// Spud is the share of spud's own samples per function (kernel
	// functions marked [k]), the top ones.
	Spud []Share `json:"spud_symbols"`
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
	commLine = regexp.MustCompile(`^\s+([\d.]+)%\s+(\S.*?)\s*$`)
	symLine  = regexp.MustCompile(`^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.+?)\s*$`)
	samples  = regexp.MustCompile(`# Samples: (\d+)`)
)

// AnalyzeProfile summarizes a perf.data file with perf report.
func AnalyzeProfile(path string, _ []system.Daemon) (*Profile, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	p := &Profile{File: path}
	out, err := perfReport(path, "--sort", "comm", "--percent-limit", "0.5")
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := samples.FindStringSubmatch(sc.Text()); m != nil && p.Samples == 0 {
			p.Samples, _ = strconv.Atoi(m[1])
		}
		if strings.HasPrefix(sc.Text(), "#") {
			continue
		}
		if m := commLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			p.ByCommand = append(p.ByCommand, Share{Name: m[2], Percent: v})
		}
	}
	out, err = perfReport(path, "--comms", "spud", "--percentage", "relative", "--sort", "dso")
	if err != nil {
		return nil, err
	}
	sc = bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := commLine.FindStringSubmatch(sc.Text()); m != nil && !strings.HasPrefix(sc.Text(), "#") && m[2] == "[kernel.kallsyms]" {
			p.SpudKernel, _ = strconv.ParseFloat(m[1], 64)
		}
	}
	out, err = perfReport(path, "--comms", "spud", "--percentage", "relative", "--sort", "dso,sym", "--percent-limit", "0.3")
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
		name := m[4]
		if m[3] == "k" {
			name += " [k]"
		}
		if len(p.Spud) < 30 {
			p.Spud = append(p.Spud, Share{Name: name, Percent: v})
		}
	}
	return p, nil
}

func perfReport(path string, args ...string) ([]byte, error) {
	cmd := exec.Command("perf", append([]string{"report", "-i", path, "--stdio", "--no-children", "-g", "none"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("profile: perf report %s: %v: %s", path, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}
