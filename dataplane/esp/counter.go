//go:build !race && (amd64 || arm64)

package esp

import "sync/atomic"

// counter is a 64-bit counter with one writer, the SA's owner, and readers
// on any goroutine (Stats).
//
// The owner publishes with a plain store. A sync/atomic store would be an
// XCHG on amd64, a full barrier that waits for the packet's cipher output
// to drain from the store buffer: three of them per packet cost about 10 ns,
// as much as the rest of the ESP framing at 64 bytes. Nothing needs that
// barrier: no reader orders other memory after a counter, and each counter
// only has to be exact on its own. An aligned 64-bit store is single-copy
// atomic on these architectures, and the Go memory model guarantees that a
// racing read of a word-sized location observes some value actually
// written (no tearing, no invented values), so a reader's atomic load
// sees a recent total, never a torn one. The race detector would still
// report the plain store against the loads, so race builds (and 32-bit or
// other architectures) use counter_atomic.go instead.
type counter struct{ v uint64 }

// Store publishes v. Owner only.
func (c *counter) Store(v uint64) { c.v = v }

// Load reads the last published value. Any goroutine.
func (c *counter) Load() uint64 { return atomic.LoadUint64(&c.v) }
