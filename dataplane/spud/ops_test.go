package spud

import (
	"testing"

	"github.com/spugate/spugate/internal/version"
)

// spud answers version with its build, what spuctl version shows.
func TestVersionOp(t *testing.T) {
	_, c := apiDaemon(t)
	got, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if want := version.Get(); got != want {
		t.Errorf("version: %+v, want %+v", got, want)
	}
}
