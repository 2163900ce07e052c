//go:build race || !(amd64 || arm64)

package esp

import "sync/atomic"

// counter is a 64-bit counter with one writer, the SA's owner, and readers
// on any goroutine. This is the portable form with sync/atomic stores, used
// by race builds and on architectures counter.go does not cover; see there.
type counter struct{ atomic.Uint64 }
