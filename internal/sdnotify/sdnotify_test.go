package sdnotify

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func receiver(t *testing.T) *Receiver {
	t.Helper()
	r, err := Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	t.Setenv("NOTIFY_SOCKET", r.Path())
	return r
}

func expect(t *testing.T, r *Receiver, want ...string) []string {
	t.Helper()
	got, err := r.Receive(2 * time.Second)
	if err != nil {
		t.Fatalf("want %q: %v", want, err)
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, w) }) {
			t.Errorf("message %q, want a line %q", got, w)
		}
	}
	return got
}

// Each call sends its state as one datagram, as systemd reads them.
func TestSend(t *testing.T) {
	r := receiver(t)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	expect(t, r, "READY=1")
	before := monotonicUsec()
	if err := Reloading(); err != nil {
		t.Fatal(err)
	}
	got := expect(t, r, "RELOADING=1", "MONOTONIC_USEC=")
	us, err := strconv.ParseInt(strings.TrimPrefix(got[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || us < before || us > monotonicUsec() {
		t.Errorf("MONOTONIC_USEC %q: not CLOCK_MONOTONIC now (%d)", got[1], before)
	}
	if err := Status("serving\n2 SPUs"); err != nil {
		t.Fatal(err)
	}
	if got := expect(t, r, "STATUS="); got[0] != "STATUS=serving 2 SPUs" {
		t.Errorf("status %q: one line wanted", got)
	}
	if err := Stopping(); err != nil {
		t.Fatal(err)
	}
	expect(t, r, "STOPPING=1")
}

// Without NOTIFY_SOCKET nothing is sent and nothing fails; a socket that
// is not there is an error naming it.
func TestNoSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready(); err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v", err)
	}
	p := filepath.Join(t.TempDir(), "gone")
	t.Setenv("NOTIFY_SOCKET", p)
	if err := Ready(); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("missing socket: %v, want an error naming %s", err, p)
	}
}

// A socket in the abstract namespace (@name) is reached too.
func TestAbstractSocket(t *testing.T) {
	name := "@spugate-sdnotify-test-" + strconv.Itoa(os.Getpid())
	r, err := Listen("\x00" + name[1:])
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Setenv("NOTIFY_SOCKET", name)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	expect(t, r, "READY=1")
}

// The watchdog is kept at half WatchdogSec, only for the process systemd
// watches, and not while the daemon says it is not alive.
func TestWatchdog(t *testing.T) {
	r := receiver(t)
	t.Setenv("WATCHDOG_USEC", "")
	if _, ok := WatchdogInterval(); ok {
		t.Error("a watchdog without WATCHDOG_USEC")
	}
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if _, ok := WatchdogInterval(); ok {
		t.Error("a watchdog for another process")
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d, ok := WatchdogInterval(); !ok || d != 50*time.Millisecond {
		t.Errorf("interval %v %v, want 50ms", d, ok)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	alive := make(chan error, 10)
	done := make(chan struct{})
	go func() {
		Watchdog(ctx, log, func() error { return <-alive })
		close(done)
	}()
	alive <- nil
	start := time.Now()
	expect(t, r, "WATCHDOG=1")
	alive <- nil
	expect(t, r, "WATCHDOG=1")
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("second keep-alive after %v, want about 50ms", d)
	}
	alive <- io.ErrUnexpectedEOF
	if got, err := r.Receive(120 * time.Millisecond); err == nil {
		t.Errorf("a keep-alive %q while not alive", got)
	}
	cancel()
	alive <- nil
	<-done
}
