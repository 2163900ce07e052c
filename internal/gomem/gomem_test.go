package gomem_test

import (
	"math"
	"strings"
	"testing"

	"github.com/spugate/spugate/internal/gomem"
)

// TestMemorySettings: a flag wins over the environment, which wins over
// the defaults; bad values are refused with the setting's name.
func TestMemorySettings(t *testing.T) {
	for _, c := range []struct {
		env         [2]string // GOGC, GOMEMLIMIT
		gogc, limit string
		wantGC      int
		wantLimit   int64
		wantString  string
		wantErr     string
	}{
		{wantGC: gomem.DefaultGCPercent, wantLimit: math.MaxInt64, wantString: "gogc 50 (default), memory limit none (none)"},
		{env: [2]string{"200", ""}, wantGC: 200, wantLimit: math.MaxInt64, wantString: "gogc 200 (GOGC)"},
		{env: [2]string{"200", ""}, gogc: "25", wantGC: 25, wantLimit: math.MaxInt64, wantString: "gogc 25 (-gogc)"},
		{env: [2]string{"", "1GiB"}, wantGC: gomem.DefaultGCPercent, wantLimit: 1 << 30, wantString: "memory limit 1GiB (GOMEMLIMIT)"},
		{env: [2]string{"", "1GiB"}, limit: "1536MiB", wantGC: gomem.DefaultGCPercent, wantLimit: 1536 << 20, wantString: "memory limit 1536MiB (-memory-limit)"},
		{gogc: "off", limit: "3000000000", wantGC: -1, wantLimit: 3000000000, wantString: "gogc off (-gogc), memory limit 3000000000B"},
		{limit: "off", wantGC: gomem.DefaultGCPercent, wantLimit: math.MaxInt64},
		{gogc: "off", wantErr: "GC off (-gogc) without a memory limit"},
		{gogc: "-5", wantErr: `-gogc: "-5" is not a percent`},
		{env: [2]string{"lots", ""}, wantErr: `GOGC: "lots" is not a percent`},
		{limit: "2GB", wantErr: `-memory-limit: "2GB" is not a size`},
		{limit: "0", wantErr: `-memory-limit: "0" is not a size`},
		{limit: "9999999TiB", wantErr: `-memory-limit: "9999999TiB" is too large`},
	} {
		t.Setenv("GOGC", c.env[0])
		t.Setenv("GOMEMLIMIT", c.env[1])
		m, err := gomem.Settings(c.gogc, c.limit)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%+v: error %v, want %q", c, err, c.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", c, err)
			continue
		}
		if m.GCPercent != c.wantGC || m.Limit != c.wantLimit || !strings.Contains(m.String(), c.wantString) {
			t.Errorf("%+v: got %d %d %q", c, m.GCPercent, m.Limit, m.String())
		}
	}
}
