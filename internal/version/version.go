// Package version says which build of spugate a binary is: the release the
// build was stamped with (make sets it from git describe), else what the Go
// toolchain recorded of the checkout it was built from.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release, set at link time by the Makefile:
//
//	-ldflags "-X github.com/spugate/spugate/internal/version.Version=v0.3.0-12-gabcdef0"
//
// Empty in a plain `go build`, where Get falls back to the build info.
var Version string

// Info is one binary's build: what `--version` prints and the daemons
// report to spuctl.
type Info struct {
	// Version is the release (git describe), or "devel" when unstamped.
	Version string `json:"version"`
	// Commit is the revision built from ("" if unknown), with
	// Modified set when the checkout had uncommitted changes.
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Go is the toolchain that built it.
	Go string `json:"go"`
}

// Get returns this binary's build.
func Get() Info {
	i := Info{Version: Version, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	return i
}

// String is the one line `prog --version` prints:
// "spud v0.3.0 (commit 0123456789ab, go1.26.8)".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	if c == "" {
		c = "unknown"
	}
	if i.Modified {
		c += "+dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", i.Version, c, i.Go)
}

// Line is what prog prints for --version.
func Line(prog string) string { return prog + " " + Get().String() }
