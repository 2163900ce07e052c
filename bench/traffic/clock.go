package traffic

import "time"

// Clock is the time base generator and sink share: nanoseconds since its
// creation, from the monotonic clock.
type Clock struct{ base time.Time }

// NewClock starts a clock at zero.
func NewClock() *Clock { return &Clock{base: time.Now()} }

// Now is the time since the clock started, in nanoseconds.
func (c *Clock) Now() int64 { return int64(time.Since(c.base)) }

// At converts a clock reading back to wall time.
func (c *Clock) At(ns int64) time.Time { return c.base.Add(time.Duration(ns)) }
