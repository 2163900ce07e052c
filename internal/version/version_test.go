package version

import (
	"strings"
	"testing"
)

func TestLine(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "v1.2.3"
	l := Line("spud")
	if !strings.HasPrefix(l, "spud v1.2.3 (commit ") || !strings.Contains(l, "go1.") {
		t.Errorf("Line: %q", l)
	}
	Version = ""
	if v := Get().Version; v != "devel" {
		t.Errorf("unstamped version %q, want devel", v)
	}
	i := Info{Version: "v1", Commit: "0123456789abcdef", Modified: true, Go: "go1.26.8"}
	if s := i.String(); s != "v1 (commit 0123456789ab+dirty, go1.26.8)" {
		t.Errorf("String: %q", s)
	}
}
