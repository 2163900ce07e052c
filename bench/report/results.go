// Package report turns a benchmark run's results into what people read: a
// JSON file of everything measured, a markdown report with the tables the
// README and the issues quote, and plots (gonum/plot, SVG and PNG).
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spugate/spugate/bench/machine"
	"github.com/spugate/spugate/bench/scenario"
	"github.com/spugate/spugate/testbed/lab"
)

// Version of the results file format.
const Version = 1

// Results are everything one run of spubench measured.
type Results struct {
	Version  int          `json:"version"`
	Command  string       `json:"command"`
	Quick    bool         `json:"quick"`
	Started  time.Time    `json:"started"`
	Finished time.Time    `json:"finished"`
	Machine  machine.Info `json:"machine"`
	Settings Settings     `json:"settings"`

	Ceiling    []scenario.CeilingRun       `json:"ceiling,omitempty"`
	Throughput *scenario.ThroughputResults `json:"throughput,omitempty"`
	TCP        *scenario.TCPResults        `json:"tcp,omitempty"`
	Scaling    *scenario.ScalingResults    `json:"scaling,omitempty"`
	Tunnels    *scenario.TunnelResults     `json:"tunnels,omitempty"`
	IKE        *scenario.IKEResults        `json:"ike,omitempty"`
	Rekey      *scenario.RekeyResults      `json:"rekey,omitempty"`
	// Errors are scenarios that could not run at all.
	Errors []string `json:"errors,omitempty"`
}

// Settings are the conditions every comparison of the run shares.
type Settings struct {
	Links    lab.LinkOptions `json:"links"`
	SpudPoll string          `json:"spud_poll"`
	XSKMode  string          `json:"xsk_mode"`
	// Carrier is the steering carrier spud chooses on this kernel (the
	// systems spud:meta, spud:shim, spud:none force one).
	Carrier string `json:"carrier,omitempty"`
	// LoadBefore and LoadAfter are /proc/loadavg at the start and the end:
	// other work on the machine competes with the measurement.
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
}

// LoadAvg reads /proc/loadavg.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// WriteJSON writes r to dir/results.json.
func WriteJSON(r *Results, dir string) (string, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	p := filepath.Join(dir, "results.json")
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return p, nil
}

// ReadJSON reads a results file.
func ReadJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report: %s: %w", path, err)
	}
	return &r, nil
}
