// Package defrag collects the fragments of an IKE message (RFC 7383) until
// the message is whole, within hard limits that a hostile peer cannot push
// past: at most MaxFragments fragments and MaxBytes bytes per message, one
// message at a time per Buffer, and Timeout from its first fragment.
//
// The task manager of an IKE SA keeps two Buffers, one for the peer's
// requests and one for the responses to ours, and gives them only
// fragments that authenticated (message.DecryptFragment) and carry the
// message ID it expects, so that memory is spent only on what the peer
// that completed IKE_SA_INIT sent. A Buffer therefore holds at most
// MaxBytes of fragment data and MaxFragments pointers, whatever arrives.
//
// The rules of RFC 7383 section 2.6: fragments may arrive in any order and
// more than once (a duplicate is ignored); a fragment announcing more
// fragments than the set being collected means the sender re-fragmented a
// retransmission with a smaller size, so the set starts again with it; one
// announcing fewer belongs to an earlier attempt and is ignored.
//
// Per message, a peer that completed IKE_SA_INIT can still make each of
// its IKE SAs hold MaxBytes per direction, and many IKE SAs a lot: Buffers
// may therefore share a Budget, the bytes they hold together (all the IKE
// SAs of a daemon), and a fragment that would pass it is dropped with its
// message.
//
// A Buffer is not safe for concurrent use: it belongs to its IKE SA's
// worker goroutine. A Budget is.
package defrag

import (
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/control/ike/message"
)

// Limits bound one message being reassembled.
type Limits struct {
	// MaxFragments is the largest Total Fragments accepted.
	MaxFragments int
	// MaxBytes bounds the decrypted fragment data of one message.
	MaxBytes int
	// Timeout is how long an incomplete message is kept after its first
	// fragment.
	Timeout time.Duration
	// Budget, when not nil, is shared with other Buffers: the bytes they
	// hold together.
	Budget *Budget
}

// Budget bounds the fragment bytes that the Buffers sharing it hold
// together. The zero value holds nothing; use NewBudget.
type Budget struct {
	max, used atomic.Int64
}

// NewBudget returns a Budget of max bytes.
func NewBudget(max int) *Budget {
	b := &Budget{}
	b.max.Store(int64(max))
	return b
}

// SetMax changes the bound (a reload); bytes held beyond a lower one stay
// until their messages complete or expire.
func (b *Budget) SetMax(max int) { b.max.Store(int64(max)) }

// Max is the bound.
func (b *Budget) Max() int { return int(b.max.Load()) }

// Used is the bytes held.
func (b *Budget) Used() int { return int(b.used.Load()) }

func (b *Budget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.max.Load() {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

func (b *Budget) give(n int) {
	if b != nil && n != 0 {
		b.used.Add(-int64(n))
	}
}

// DefaultLimits allow any message iked meets (an IKE_AUTH with an RSA-4096
// chain is about 5 KB, 5 fragments at 1280 bytes; a 64 KiB message at the
// smallest fragment size is 120) with a margin, and drop an incomplete one
// after 30 s, past the peer's first retransmissions (4 s, 11 s, 24 s).
var DefaultLimits = Limits{MaxFragments: 128, MaxBytes: 64 << 10, Timeout: 30 * time.Second}

// Result says what Add did with a fragment.
type Result int

// Results.
const (
	// Incomplete: the fragment was kept; more are needed.
	Incomplete Result = iota
	// Complete: the message is whole; Add returned its fragments.
	Complete
	// Duplicate: a fragment already held (a retransmission); ignored.
	Duplicate
	// Stale: a fragment of an earlier fragmentation of the message (a
	// smaller Total than the set's); ignored.
	Stale
	// OverLimit: the fragment would pass MaxFragments or MaxBytes; the
	// message's fragments were dropped.
	OverLimit
	// OverBudget: the fragment would pass the shared Budget; the
	// message's fragments were dropped.
	OverBudget
)

var resultNames = [...]string{"incomplete", "complete", "duplicate", "stale", "over-limit", "over-budget"}

// String returns the result's name for logs, or "unknown" outside the
// enum.
func (r Result) String() string {
	if r >= 0 && int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// Buffer reassembles one message at a time. The zero value is not ready:
// use New.
type Buffer struct {
	limits  Limits
	active  bool
	msgID   uint32
	total   uint16
	started time.Time
	frags   []*message.Fragment // by Number-1
	have    int
	bytes   int
}

// New returns an empty Buffer; zero fields of l take DefaultLimits'.
func New(l Limits) *Buffer {
	if l.MaxFragments <= 0 {
		l.MaxFragments = DefaultLimits.MaxFragments
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultLimits.MaxBytes
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultLimits.Timeout
	}
	return &Buffer{limits: l}
}

// Limits returns the Buffer's limits.
func (b *Buffer) Limits() Limits { return b.limits }

// Reset drops the message being collected and gives its bytes back to the
// Budget. The owner of a Buffer that is no longer used must Reset it, or
// its bytes stay taken.
func (b *Buffer) Reset() {
	b.limits.Budget.give(b.bytes)
	b.active, b.frags, b.have, b.bytes, b.total = false, nil, 0, 0, 0
}

// Pending reports the message being collected: its ID, how many of its
// fragments are held, and their bytes. ok is false when none is.
func (b *Buffer) Pending() (msgID uint32, have, total, bytes int, ok bool) {
	return b.msgID, b.have, int(b.total), b.bytes, b.active
}

// Deadline is when the message being collected expires (zero: none).
func (b *Buffer) Deadline() time.Time {
	if !b.active {
		return time.Time{}
	}
	return b.started.Add(b.limits.Timeout)
}

// Expire drops the message being collected if its time is up, and reports
// whether it did.
func (b *Buffer) Expire(now time.Time) bool {
	if b.active && !now.Before(b.Deadline()) {
		b.Reset()
		return true
	}
	return false
}

// Add adds an authenticated fragment of message msgID. It returns the
// fragments 1..Total in order when the message is complete (the Buffer is
// then empty again), nil otherwise. A fragment of another message ID than
// the one being collected replaces it: the caller passes only the message
// ID it expects, so the older one is dead. The fragment's data is copied.
func (b *Buffer) Add(now time.Time, msgID uint32, f *message.Fragment) ([]*message.Fragment, Result) {
	b.Expire(now)
	if f == nil || f.Number == 0 || f.Number > f.Total {
		return nil, Stale
	}
	if b.active && msgID != b.msgID {
		b.Reset()
	}
	if int(f.Total) > b.limits.MaxFragments || len(f.Data) > b.limits.MaxBytes {
		b.Reset()
		return nil, OverLimit
	}
	if b.active {
		switch {
		case f.Total < b.total:
			return nil, Stale
		case f.Total > b.total:
			b.Reset()
		}
	}
	if !b.active {
		b.active, b.msgID, b.total, b.started = true, msgID, f.Total, now
		b.frags = make([]*message.Fragment, f.Total)
	}
	i := int(f.Number) - 1
	if b.frags[i] != nil {
		return nil, Duplicate
	}
	if b.bytes+len(f.Data) > b.limits.MaxBytes {
		b.Reset()
		return nil, OverLimit
	}
	if !b.limits.Budget.take(len(f.Data)) {
		b.Reset()
		return nil, OverBudget
	}
	c := *f
	c.Data = append([]byte(nil), f.Data...)
	b.frags[i] = &c
	b.have++
	b.bytes += len(c.Data)
	if b.have < int(b.total) {
		return nil, Incomplete
	}
	out := b.frags
	b.Reset()
	return out, Complete
}
