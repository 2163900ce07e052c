package scenario

import (
	"os"
	"path/filepath"
	"testing"
)

// TestAnalyzeProfile reads a perf.data file named by BENCH_PERF_DATA (perf
// needs a real recording; there is none in the tree).
func TestAnalyzeProfile(t *testing.T) {
	path := os.Getenv("BENCH_PERF_DATA")
	if path == "" {
		t.Skip("BENCH_PERF_DATA not set")
	}
	if m, _ := filepath.Glob(path); len(m) > 0 {
		path = m[0]
	}
	p, err := AnalyzeProfile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Samples == 0 || len(p.ByCommand) == 0 {
		t.Errorf("%+v", p)
	}
	t.Logf("%d samples, spud %d (kernel %.1f%%): %v\n%v", p.Samples, p.SpudSamples, p.SpudKernel, p.ByCommand, p.Spud)
}
