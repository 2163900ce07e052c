package machine

import (
	"runtime"
	"testing"
)

func TestCollect(t *testing.T) {
	in := Collect()
	if in.CPUs != runtime.NumCPU() || in.Kernel == "" || in.GoVersion == "" {
		t.Errorf("incomplete: %+v", in)
	}
	t.Logf("%+v", in)
}
