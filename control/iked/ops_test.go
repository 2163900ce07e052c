package iked

import (
	"testing"

	"github.com/spugate/spugate/internal/version"
)

// iked answers version with its build, what spuctl version shows.
func TestVersionOp(t *testing.T) {
	c := listDaemon(t, 1, 0, 0)
	got, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if want := version.Get(); got != want {
		t.Errorf("version: %+v, want %+v", got, want)
	}
}
