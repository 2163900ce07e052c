package strongswan

import (
	"testing"

	"github.com/spugate/spugate/internal/privileged"
)

// Require skips t unless it may build a lab (root, capabilities, ip) and
// charon with kernel-libipsec is installed.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	privileged.Require(t, append([]string{"ip", "mount"}, commands...)...)
	if r := Missing(); r != "" {
		t.Skip("strongSwan test skipped: " + r)
	}
}
