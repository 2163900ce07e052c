package traffic

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf/link"
	"github.com/spugate/spugate/dataplane/xsk"
)

// DefaultXSK is the socket shape of generator and sink: rings deep enough
// to ride out a scheduling gap of a few milliseconds at 1 Mpps.
var DefaultXSK = xsk.Config{Mode: xsk.Copy, RingSize: 4096, NumFrames: 8192}

// OpenGenerator binds AF_XDP sockets to rx/tx queues 0..queues-1 of
// ifname and makes a generator over them. Sockets are created in the
// calling thread's network namespace: call it inside lab.Host.Do. Close
// releases the sockets.
func OpenGenerator(ifname string, queues int, xc xsk.Config, cfg GenConfig) (*Generator, error) {
	socks, err := openSockets(ifname, queues, xc)
	if err != nil {
		return nil, err
	}
	g, err := NewGenerator(ports(socks), cfg)
	if err != nil {
		closeAll(socks)
		return nil, err
	}
	for _, s := range socks {
		g.closers = append(g.closers, s.Close)
	}
	return g, nil
}

// Close closes the sockets OpenGenerator opened; call it after Run.
func (g *Generator) Close() error {
	var errs []error
	for _, c := range g.closers {
		errs = append(errs, c())
	}
	g.closers = nil
	return errors.Join(errs...)
}

// OpenSink loads the sink's XDP program, attaches it to ifname (native
// mode), binds a socket to each of its first queues rx queues and makes a
// sink over them. Call it inside lab.Host.Do; Close detaches everything.
func OpenSink(ifname string, queues int, xc xsk.Config, cfg SinkConfig) (*Sink, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("traffic: sink: %w", err)
	}
	prog, err := NewSinkProgram(cfg.Port, queues)
	if err != nil {
		return nil, err
	}
	socks, err := openSockets(ifname, queues, xc)
	if err != nil {
		prog.Close()
		return nil, err
	}
	fail := func(err error) (*Sink, error) {
		closeAll(socks)
		prog.Close()
		return nil, err
	}
	for q, s := range socks {
		if err := prog.Register(q, s.FD()); err != nil {
			return fail(err)
		}
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog.Prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
	if err != nil {
		return fail(fmt.Errorf("traffic: attach the sink's XDP program to %s: %w", ifname, err))
	}
	s, err := NewSink(ports(socks), cfg)
	if err != nil {
		l.Close()
		return fail(err)
	}
	// Detach first, so that no packet is redirected to a closing socket.
	s.closers = append(s.closers, l.Close)
	for _, sk := range socks {
		s.closers = append(s.closers, sk.Close)
	}
	s.closers = append(s.closers, prog.Close)
	return s, nil
}

// Close detaches the program and closes the sockets OpenSink opened; call
// it after Run.
func (s *Sink) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	s.closers = nil
	return errors.Join(errs...)
}

func openSockets(ifname string, queues int, xc xsk.Config) ([]*xsk.Socket, error) {
	if queues <= 0 {
		queues = 1
	}
	var socks []*xsk.Socket
	for q := range queues {
		s, err := xsk.Open(ifname, q, xc)
		if err != nil {
			closeAll(socks)
			return nil, fmt.Errorf("traffic: %s queue %d: %w", ifname, q, err)
		}
		socks = append(socks, s)
	}
	return socks, nil
}

func ports(socks []*xsk.Socket) []xsk.Port {
	ps := make([]xsk.Port, len(socks))
	for i, s := range socks {
		ps[i] = s
	}
	return ps
}

func closeAll(socks []*xsk.Socket) {
	for _, s := range socks {
		s.Close()
	}
}
