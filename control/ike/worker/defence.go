package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/spugate/spugate/control/ike/stats"
)

// refusals counts the IKE_SA_INITs a worker refused (no proposal, bad KE
// data, ...) in one-second windows. Refused requests leave no half-open
// IKE SA, so without this count a flood of them, each costing a parse
// and possibly a key exchange, would never raise the COOKIE that makes a
// spoofer give up.
type refusals struct {
	start     time.Time // of the current window
	cur, prev int
}

// refusalWindow is how long refusals count towards the COOKIE trigger.
const refusalWindow = time.Second

func (r *refusals) roll(now time.Time) {
	switch d := now.Sub(r.start); {
	case d < refusalWindow && !r.start.IsZero():
		return
	case d < 2*refusalWindow && !r.start.IsZero():
		r.prev, r.cur = r.cur, 0
		r.start = r.start.Add(refusalWindow)
	default:
		r.prev, r.cur = 0, 0
		r.start = now
	}
}

// add counts one refusal at now.
func (r *refusals) add(now time.Time) {
	r.roll(now)
	r.cur++
}

// recent is the larger of this window's and the last window's refusals,
// so the trigger does not fall silent each time a window starts.
func (r *refusals) recent(now time.Time) int {
	r.roll(now)
	return max(r.cur, r.prev)
}

// logLimit bounds the log lines a worker writes about datagrams nobody
// has authenticated: anyone can send those, and one line each would let
// a sender fill the disk faster than the link fills the host. Every such
// event is still counted by its reason; what is left out of the log is
// counted (logs_suppressed) and said in one line when the next interval
// starts.
type logLimit struct {
	burst      int           // lines per interval
	interval   time.Duration // of the budget
	start      time.Time
	used       int
	suppressed int
}

// Defaults of the unauthenticated log budget: enough to see what a
// misconfigured peer does, too little to matter on disk (at most 36,000
// lines an hour per worker).
const (
	unauthLogBurst    = 10
	unauthLogInterval = time.Second
	// unauthDebugBurst is the budget of debug lines (a dozen or more per
	// negotiation), only spent where an operator turned debug on.
	unauthDebugBurst = 100
)

// allow says whether one more line may be written at now, and how many
// lines the interval before left out (to be said once, then zero).
func (l *logLimit) allow(now time.Time) (ok bool, leftOut int) {
	if l.start.IsZero() || now.Sub(l.start) >= l.interval {
		leftOut, l.suppressed = l.suppressed, 0
		l.start, l.used = now, 0
	}
	if l.used >= l.burst {
		l.suppressed++
		return false, leftOut
	}
	l.used++
	return true, leftOut
}

// unauthLog writes one log line about an unauthenticated datagram within
// the worker's budget.
func (w *Worker) unauthLog(level slog.Level, msg string, args ...any) {
	if !w.log.Enabled(context.Background(), level) {
		return
	}
	if w.allowUnauth(level) {
		w.log.Log(context.Background(), level, msg, args...)
	}
}

// allowUnauth takes one line of the unauthenticated log budget, or counts
// the line as left out; the first line of an interval after some were
// left out is preceded by their count.
//
// Debug lines take from a budget of their own: one peer's negotiation
// writes a dozen of them, which must not use up the budget of the line
// that says why it failed.
func (w *Worker) allowUnauth(level slog.Level) bool {
	l := &w.unauthLogs
	if level < slog.LevelInfo {
		l = &w.unauthDebug
	}
	ok, leftOut := l.allow(w.env.Now())
	if leftOut > 0 {
		w.log.Warn("log lines about unauthenticated datagrams left out by the rate limit", "suppressed", leftOut,
			"limit", unauthLogBurst, "per", unauthLogInterval.String())
	}
	if !ok {
		w.env.Stats().Inc(stats.LogsSuppressed)
	}
	return ok
}

// gatedHandler passes the log records of the worker's task managers
// through the worker's unauthenticated log budget while one of them
// handles a message of a half-open IKE SA (nobody has authenticated its
// sender yet: "IKE_SA_INIT refused ... offered ..." is what a flood of
// bad requests makes), and straight through otherwise.
type gatedHandler struct {
	slog.Handler
	w *Worker
}

func (h gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.w.unauthenticated && !h.w.allowUnauth(r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h gatedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return gatedHandler{h.Handler.WithAttrs(as), h.w}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{h.Handler.WithGroup(name), h.w}
}

// recovered, deferred around the handling of a datagram or a timer, turns
// a panic into an ERROR line and the end of the IKE SA whose manager was
// running: one peer's message that finds a bug must not take every other
// tunnel's control plane down with the daemon. The line names the
// datagram by a hash, not its bytes, which may hold secrets of the peer.
func (w *Worker) recovered(what string, datagram []byte) {
	r := recover()
	if r == nil {
		return
	}
	m := w.current
	w.current, w.unauthenticated = nil, false
	w.env.Stats().Inc(stats.PanicsRecovered)
	w.env.Stats().Fail(stats.InternalError)
	args := []any{"in", what, "panic", fmt.Sprint(r), "stack", string(debug.Stack())}
	if datagram != nil {
		sum := sha256.Sum256(datagram)
		args = append(args, "datagram_sha256", hex.EncodeToString(sum[:8]), "datagram_len", len(datagram))
	}
	if m != nil {
		args = append(args, "ike_id", m.IKE.UniqueID, "spis", m.IKE.SPIs(), "peer", m.IKE.Remote.String())
	}
	w.log.Error("recovered from a panic: the IKE SA at hand ends, the daemon goes on", args...)
	if m == nil || m.Destroyed() {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			// Its state is beyond use: drop it from the tables at least.
			w.log.Error("ending the IKE SA after a panic panicked too: forgotten", "ike_id", m.IKE.UniqueID, "panic", fmt.Sprint(r))
			w.forget(m)
		}
	}()
	m.Destroy("internal error")
}
