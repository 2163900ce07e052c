// Package sdnotify tells systemd how a Type=notify service is doing, as
// sd_notify(3) does: READY=1 once it serves, RELOADING=1 and READY=1 around
// a reload, STOPPING=1 as it stops, and WATCHDOG=1 while it is alive, each
// a datagram to the unix socket $NOTIFY_SOCKET names. Without
// NOTIFY_SOCKET (not started by systemd, or not Type=notify) every call
// does nothing, so the daemons call it unconditionally.
package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Send sends the state lines ("READY=1", "STATUS=...") in one datagram.
// It returns nil without NOTIFY_SOCKET, and an error naming the socket
// when systemd's cannot be reached.
func Send(state ...string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" || len(state) == 0 {
		return nil
	}
	name := path
	// A leading @ names a socket in the abstract namespace (what
	// systemd gives a service in another mount namespace).
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET %s: %w", path, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(state, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: NOTIFY_SOCKET %s: %w", path, err)
	}
	return nil
}

// Ready says the service serves: systemd's start job ends, and units
// ordered after it start.
func Ready() error { return Send("READY=1") }

// Reloading says a reload began; Ready again says it ended (systemd's
// reload job waits for it). MONOTONIC_USEC is when it began, which
// systemd (253+) requires to tell this reload from an earlier one.
func Reloading() error {
	return Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))
}

// Stopping says the service is stopping (systemd shows deactivating).
func Stopping() error { return Send("STOPPING=1") }

// Status sends a one-line status, which systemctl status shows.
func Status(s string) error { return Send("STATUS=" + strings.ReplaceAll(s, "\n", " ")) }

func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Sec*1_000_000 + ts.Nsec/1_000
}

// WatchdogInterval is how often to send WATCHDOG=1: half systemd's
// WatchdogSec ($WATCHDOG_USEC), as sd_watchdog_enabled(3) advises, and
// false when there is no watchdog for this process (no WATCHDOG_USEC, or a
// WATCHDOG_PID that is another process's).
func WatchdogInterval() (time.Duration, bool) {
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0, false
	}
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return time.Duration(us) * time.Microsecond / 2, true
}

// Watchdog sends WATCHDOG=1 every WatchdogInterval until ctx ends, when
// there is a watchdog. alive, if not nil, is asked first each time: a
// daemon whose serving part is stuck says so (the error is logged) and
// sends nothing, so that systemd restarts it when WatchdogSec passes.
// Errors of sending are logged once, not at every tick.
func Watchdog(ctx context.Context, log *slog.Logger, alive func() error) {
	every, ok := WatchdogInterval()
	if !ok {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var failing bool
	for {
		err := error(nil)
		if alive != nil {
			if err = alive(); err != nil {
				log.Error("watchdog: not alive, no keep-alive sent", "err", err.Error())
			}
		}
		if err == nil {
			if err = Send("WATCHDOG=1"); err != nil && !failing {
				log.Error("watchdog", "err", err.Error())
			}
			failing = err != nil
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
