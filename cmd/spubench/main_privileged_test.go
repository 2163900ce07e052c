package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/bench/report"
	"github.com/spugate/spugate/internal/privileged"
)

// TestPrivilegedQuick runs the whole standard set in quick mode, as CI
// does, and checks that every scenario produced results and that the
// report and the plots were written.
func TestPrivilegedQuick(t *testing.T) {
	privileged.Require(t, "ip", "ethtool", "ping")
	o, which, err := parse([]string{"-quick", "-out", t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := run(o, which)
	if err != nil {
		t.Fatal(err)
	}
	r, err := report.ReadJSON(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Quick || r.Machine.CPUs == 0 || len(r.Errors) > 0 {
		t.Errorf("results: quick %v, machine %+v, errors %v", r.Quick, r.Machine, r.Errors)
	}
	if len(r.Ceiling) == 0 || r.Ceiling[0].Result == nil || r.Ceiling[0].Result.Received == 0 {
		t.Errorf("ceiling: %+v", r.Ceiling)
	}
	if r.Throughput == nil || len(r.Throughput.Runs) == 0 {
		t.Fatal("no throughput results")
	}
	for _, x := range r.Throughput.Runs {
		// Each search starts with a probe that every flow passed.
		if x.Error != "" || x.Found == nil {
			t.Errorf("throughput %s %s %s: %s", x.System, x.Suite, x.Mix, x.Error)
		}
	}
	if len(r.Throughput.Ratios) == 0 {
		t.Error("no spud/kernel ratio")
	}
	if r.Scaling == nil || len(r.Scaling.Runs) != 2 || r.Tunnels == nil || len(r.Tunnels.Runs) != 2 || r.Rekey == nil || len(r.Rekey.Runs) != 2 {
		t.Errorf("scaling, tunnels or rekey missing: %+v %+v %+v", r.Scaling, r.Tunnels, r.Rekey)
	}
	if r.TCP == nil || len(r.TCP.Runs) != 2 {
		t.Errorf("tcp: %+v", r.TCP)
	} else {
		for _, x := range r.TCP.Runs {
			if x.Error != "" || x.Gbps == 0 {
				t.Errorf("tcp %s: %+v", x.System, x)
			}
		}
	}
	if r.IKE == nil {
		t.Error("no IKE results")
	} else {
		ikedInitiated := 0
		for _, x := range r.IKE.Runs {
			if x.Established != x.Count || x.Count == 0 {
				t.Errorf("ike %s -> %s, %s: %d of %d: %s", x.Initiator, x.Responder, x.Auth, x.Established, x.Count, x.Error)
			}
			if x.Initiator == "iked" {
				ikedInitiated++
			}
		}
		if ikedInitiated == 0 {
			t.Error("no IKE run with iked's load initiator")
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Generator ceiling", "## 1. Throughput", "### Searches", "## TCP through one tunnel", "## 2. SPU scaling", "## 3. Tunnel count", "## 4. IKE setup rate", "## 5. Rekey under load"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, f := range []string{"throughput-aes128gcm16.svg", "throughput-aes128gcm16.png", "scaling.png", "tunnels-throughput.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
}
