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

// Sockets are AF_XDP sockets bound to the first queues of an interface,
// and for receiving, the sink's XDP program attached to it. Generators and
// sinks are made over their Ports, one after the other (a port belongs to
// one goroutine at a time).
type Sockets struct {
	Ports   []xsk.Port
	closers []func() error
}

// OpenTx binds sockets to queues 0..queues-1 of ifname for a generator.
// Sockets are created in the calling thread's network namespace: call it
// inside lab.Host.Do.
func OpenTx(ifname string, queues int, xc xsk.Config) (*Sockets, error) {
	socks, err := openSockets(ifname, queues, xc)
	if err != nil {
		return nil, err
	}
	s := &Sockets{}
	for _, sk := range socks {
		s.Ports = append(s.Ports, sk)
		s.closers = append(s.closers, sk.Close)
	}
	return s, nil
}

// OpenRx loads the sink's XDP program for UDP port, binds a socket to each
// of the first queues rx queues of ifname, and attaches the program
// (native mode). Call it inside lab.Host.Do.
func OpenRx(ifname string, queues int, port uint16, xc xsk.Config) (*Sockets, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("traffic: sink: %w", err)
	}
	prog, err := NewSinkProgram(port, queues)
	if err != nil {
		return nil, err
	}
	socks, err := openSockets(ifname, queues, xc)
	if err != nil {
		prog.Close()
		return nil, err
	}
	fail := func(err error) (*Sockets, error) {
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
		// Generic XDP works on any device (slower, every frame on queue 0
		// on a veth): a sink that runs beats one that does not.
		var errGeneric error
		if l, errGeneric = link.AttachXDP(link.XDPOptions{Program: prog.Prog, Interface: ifi.Index, Flags: link.XDPGenericMode}); errGeneric != nil {
			return fail(fmt.Errorf("traffic: attach the sink's XDP program to %s: native: %v; generic: %w", ifname, err, errGeneric))
		}
	}
	// Detach first, so that no packet is redirected to a closing socket.
	s := &Sockets{closers: []func() error{l.Close}}
	for _, sk := range socks {
		s.Ports = append(s.Ports, sk)
		s.closers = append(s.closers, sk.Close)
	}
	s.closers = append(s.closers, prog.Close)
	return s, nil
}

// Close detaches the program, if any, and closes the sockets.
func (s *Sockets) Close() error {
	var errs []error
	for _, c := range s.closers {
		errs = append(errs, c())
	}
	s.closers = nil
	return errors.Join(errs...)
}

// OpenGenerator is OpenTx and NewGenerator in one; Close releases the
// sockets.
func OpenGenerator(ifname string, queues int, xc xsk.Config, cfg GenConfig) (*Generator, error) {
	s, err := OpenTx(ifname, queues, xc)
	if err != nil {
		return nil, err
	}
	g, err := NewGenerator(s.Ports, cfg)
	if err != nil {
		s.Close()
		return nil, err
	}
	g.sockets = s
	return g, nil
}

// Close closes the sockets OpenGenerator opened; call it after Run.
func (g *Generator) Close() error {
	if g.sockets == nil {
		return nil
	}
	err := g.sockets.Close()
	g.sockets = nil
	return err
}

// OpenSink is OpenRx and NewSink in one; Close detaches and closes
// everything.
func OpenSink(ifname string, queues int, xc xsk.Config, cfg SinkConfig) (*Sink, error) {
	s, err := OpenRx(ifname, queues, cfg.Port, xc)
	if err != nil {
		return nil, err
	}
	k, err := NewSink(s.Ports, cfg)
	if err != nil {
		s.Close()
		return nil, err
	}
	k.sockets = s
	return k, nil
}

// Close closes what OpenSink opened; call it after Run.
func (s *Sink) Close() error {
	if s.sockets == nil {
		return nil
	}
	err := s.sockets.Close()
	s.sockets = nil
	return err
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

func closeAll(socks []*xsk.Socket) {
	for _, s := range socks {
		s.Close()
	}
}
