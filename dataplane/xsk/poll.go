package xsk

import (
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Waiter sleeps in poll(2) until one of its ports has received frames, one
// of its extra descriptors (an eventfd for frames handed over by another
// SPU, say) is readable, or a timeout expires. It belongs to one goroutine
// and allocates nothing per call.
type Waiter struct {
	ports []Port
	pfds  []unix.PollFd
}

// NewWaiter waits on ports and on extra descriptors for POLLIN.
func NewWaiter(ports []Port, extra ...int) *Waiter {
	w := &Waiter{ports: ports, pfds: make([]unix.PollFd, len(ports)+len(extra))}
	for i, fd := range extra {
		w.pfds[len(ports)+i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	return w
}

// Wait returns true as soon as something is ready, false on timeout. It
// first lets every port push pending transmissions (PrepareWait) and
// returns at once if a port already has frames. A negative timeout waits
// without limit. EINTR (the Go runtime preempting the thread) resumes the
// wait for the time left.
func (w *Waiter) Wait(timeout time.Duration) (bool, error) {
	for i, p := range w.ports {
		fd, ready := p.PrepareWait()
		if ready {
			return true, nil
		}
		w.pfds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		var ts *unix.Timespec
		var t unix.Timespec
		if timeout >= 0 {
			t = unix.NsecToTimespec(max(0, int64(time.Until(deadline))))
			ts = &t
		}
		n, err := unix.Ppoll(w.pfds, ts, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("xsk: poll: %w", err)
		}
		if n == 0 {
			return false, nil
		}
		for _, p := range w.pfds {
			if p.Revents&unix.POLLNVAL != 0 {
				return false, fmt.Errorf("xsk: poll: descriptor %d is not open", p.Fd)
			}
		}
		return true, nil
	}
}

// PollMode is how an SPU loop waits for work. Its String (generated) is
// "busy" or "adaptive", as spud's -poll flag spells it.
type PollMode uint8

//go:generate go tool stringer -type=PollMode -linecomment

const (
	// Busy spins: the loop never sleeps, for the lowest latency at the cost
	// of a whole core.
	Busy PollMode = iota // busy
	// Adaptive spins while there is work and for Spin after the last of
	// it, then sleeps in poll(2) until a frame arrives or MaxSleep passes,
	// like VPP's adaptive mode: an idle port costs no CPU.
	Adaptive // adaptive
)

// Poller paces an SPU loop. The loop calls Idle once per iteration, saying
// whether the iteration did any work:
//
//	w := xsk.NewWaiter(ports, handoffEventFD)
//	p := xsk.Poller{Mode: xsk.Adaptive, Waiter: w}
//	for running {
//		worked := false
//		for _, port := range ports {
//			port.Complete()
//			n := port.Receive(batch)
//			worked = worked || n > 0
//			... process, Transmit, Release ...
//		}
//		if _, err := p.Idle(worked); err != nil { ... }
//	}
//
// Poller belongs to the loop's goroutine.
type Poller struct {
	Mode   PollMode
	Waiter *Waiter
	// Spin is how long Adaptive keeps spinning after the last work before
	// sleeping (default 50µs: long enough to ride out the gaps inside a
	// burst, short enough to cost nothing at rest).
	Spin time.Duration
	// MaxSleep bounds one sleep so that the loop's timers (lifetimes,
	// statistics) still run on an idle port (default 100ms).
	MaxSleep time.Duration

	lastWork time.Time
	idle     bool
	sleeps   atomic.Uint64
	wakeups  atomic.Uint64 // sleeps that ended because something was ready
}

// Idle is called once per loop iteration. In Adaptive mode, after Spin with
// no work, it sleeps until something is ready or MaxSleep passes, and
// reports slept=true. In Busy mode it returns at once.
func (p *Poller) Idle(worked bool) (slept bool, err error) {
	if p.Mode == Busy || p.Waiter == nil {
		return false, nil
	}
	if worked {
		p.idle = false
		return false, nil
	}
	now := time.Now()
	if !p.idle {
		p.idle, p.lastWork = true, now
		return false, nil
	}
	spin := p.Spin
	if spin == 0 {
		spin = 50 * time.Microsecond
	}
	if now.Sub(p.lastWork) < spin {
		return false, nil
	}
	sleep := p.MaxSleep
	if sleep <= 0 {
		sleep = 100 * time.Millisecond
	}
	p.sleeps.Add(1)
	ready, err := p.Waiter.Wait(sleep)
	if ready {
		p.wakeups.Add(1)
		p.idle = false
	}
	return true, err
}

// Sleeps returns how many times the poller slept and how many of those
// sleeps were ended by work rather than by MaxSleep. Safe from any
// goroutine.
func (p *Poller) Sleeps() (sleeps, wakeups uint64) {
	return p.sleeps.Load(), p.wakeups.Load()
}
