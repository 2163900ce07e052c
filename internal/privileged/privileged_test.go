package privileged

import (
	"os"
	"testing"
)

func TestMissingReportsReason(t *testing.T) {
	reason := Missing(Default)
	if os.Geteuid() != 0 && reason == "" {
		t.Fatal("non-root process reported as privileged")
	}
	if reason := Missing(nil, "spugate-no-such-command"); reason == "" {
		t.Fatal("missing command not reported")
	}
}
