// Package flow sends a numbered UDP flow between two lab hosts and checks
// that every packet arrived exactly once: the measure of "no packet lost or
// duplicated" in the rekeying, migration and failover tests. It is bounded
// in packets and in time.
package flow

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/spugate/spugate/testbed/lab"
)

// magic marks the flow's datagrams, so stray traffic is not counted.
const magic = 0x5350_4746 // "SPGF"

// Result is what the receiver saw.
type Result struct {
	Sent       uint64
	Received   uint64 // distinct sequence numbers
	Duplicates uint64
	Reordered  uint64 // arrivals below the highest seen so far
	// Lost lists the missing sequence numbers (at most 100 kept), and
	// LostCount counts them all.
	Lost      []uint64
	LostCount uint64
	Duration  time.Duration
}

// String summarises the result in one line for test logs, the lost
// sequence numbers left out.
func (r Result) String() string {
	return fmt.Sprintf("sent %d, received %d, lost %d, duplicated %d, reordered %d in %v",
		r.Sent, r.Received, r.LostCount, r.Duplicates, r.Reordered, r.Duration.Round(time.Millisecond))
}

// Options shape a flow.
type Options struct {
	From, To *lab.Host
	Src, Dst netip.Addr
	Port     uint16        // destination port (default 7777)
	Rate     int           // packets per second (default 1000)
	Duration time.Duration // how long to send (default 5s)
	Size     int           // payload bytes (default 64, at least 16)
	Drain    time.Duration // how long the receiver waits after the last packet (default 1s)
}

// Flow is a running flow.
type Flow struct {
	o    Options
	send *net.UDPConn
	recv *net.UDPConn
	done chan Result
	stop chan struct{}
	// sentAll is closed when the sender is done.
	sentAll chan struct{}
	mu      sync.Mutex
	sent    uint64
}

// Start opens the receiver in To and the sender in From and starts sending.
func Start(o Options) (*Flow, error) {
	if o.Port == 0 {
		o.Port = 7777
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Size < 16 {
		o.Size = 64
	}
	if o.Drain <= 0 {
		o.Drain = time.Second
	}
	f := &Flow{o: o, done: make(chan Result, 1), stop: make(chan struct{}), sentAll: make(chan struct{})}
	if err := o.To.Do(func() error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.Dst, o.Port)))
		if err != nil {
			return err
		}
		// A deep buffer, so that the receiver's own socket (a goroutine
		// on a busy machine) is not where packets are lost.
		c.SetReadBuffer(8 << 20)
		f.recv = c
		return nil
	}); err != nil {
		return nil, fmt.Errorf("flow: receiver on %s: %w", o.To.Name, err)
	}
	if err := o.From.Do(func() error {
		c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.Src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(o.Dst, o.Port)))
		f.send = c
		return err
	}); err != nil {
		f.recv.Close()
		return nil, fmt.Errorf("flow: sender on %s: %w", o.From.Name, err)
	}
	total := uint64(float64(o.Rate) * o.Duration.Seconds())
	go f.receive(total)
	go f.transmit(total)
	return f, nil
}

func (f *Flow) transmit(total uint64) {
	defer close(f.sentAll)
	defer f.send.Close()
	buf := make([]byte, f.o.Size)
	binary.BigEndian.PutUint32(buf[0:4], magic)
	interval := time.Second / time.Duration(f.o.Rate)
	start := time.Now()
	for seq := uint64(0); seq < total; seq++ {
		select {
		case <-f.stop:
			return
		default:
		}
		// Pace against the start, so scheduling hiccups do not slow the
		// average rate.
		if d := time.Until(start.Add(time.Duration(seq) * interval)); d > 0 {
			time.Sleep(d)
		}
		binary.BigEndian.PutUint64(buf[4:12], seq)
		if _, err := f.send.Write(buf); err != nil && !errors.Is(err, net.ErrClosed) {
			// A transient send error (e.g. no route during a change) is a
			// lost packet, which the receiver will report.
			_ = err
		}
		f.mu.Lock()
		f.sent = seq + 1
		f.mu.Unlock()
	}
}

func (f *Flow) receive(total uint64) {
	start := time.Now()
	seen := make([]byte, total)
	var r Result
	var highest uint64
	buf := make([]byte, 65536)
	// Wait for the last packet until Drain after the sender finished, not
	// after a fixed time: a sender slowed down by a busy machine must not
	// look like loss.
	go func() {
		<-f.sentAll
		f.recv.SetReadDeadline(time.Now().Add(f.o.Drain))
	}()
	for {
		n, err := f.recv.Read(buf)
		if err != nil {
			break
		}
		if n < 12 || binary.BigEndian.Uint32(buf[0:4]) != magic {
			continue
		}
		seq := binary.BigEndian.Uint64(buf[4:12])
		if seq >= total {
			continue
		}
		if seen[seq] != 0 {
			r.Duplicates++
			continue
		}
		seen[seq] = 1
		r.Received++
		if seq < highest {
			r.Reordered++
		} else {
			highest = seq
		}
		if r.Received == total {
			break
		}
	}
	f.recv.Close()
	f.mu.Lock()
	r.Sent = f.sent
	f.mu.Unlock()
	for s := uint64(0); s < r.Sent; s++ {
		if seen[s] == 0 {
			r.LostCount++
			if len(r.Lost) < 100 {
				r.Lost = append(r.Lost, s)
			}
		}
	}
	r.Duration = time.Since(start)
	f.done <- r
}

// Wait returns the result once the flow has been sent and drained.
func (f *Flow) Wait() Result { return <-f.done }

// Stop ends sending early; Wait still drains.
func (f *Flow) Stop() { close(f.stop) }
