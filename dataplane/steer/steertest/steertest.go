// Package steertest helps tests run something once per steering carrier.
package steertest

import (
	"testing"

	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/privileged"
)

// ForCarriers runs f as a subtest per carrier, named for it; a carrier this
// kernel refuses skips, saying why. The subtests need root (the probe loads
// programs), and skip without it.
func ForCarriers(t *testing.T, f func(t *testing.T, c steer.Carrier)) {
	for _, c := range steer.Carriers {
		t.Run(c.String(), func(t *testing.T) {
			privileged.Require(t, "ip")
			if err := c.Supported(); err != nil {
				t.Skip(err)
			}
			f(t, c)
		})
	}
}
