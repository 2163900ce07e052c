package spu

// Packets whose next hop's MAC is not resolved yet wait here, as the
// kernel's neighbour queue (unres_qlen) holds them, instead of being
// dropped: the first packets of a flow to a new neighbour are not lost. The
// store is small, preallocated and per SPU; a packet that waits longer than
// pendingTTL, or finds the store full, is dropped and counted no_neighbour.

import (
	"time"

	"github.com/spugate/spugate/dataplane/ring"
)

const (
	pendingSlots = 256
	pendingTTL   = int64(time.Second)
	pendingSize  = 2048
)

type pendingKind uint8

const (
	pendForward pendingKind = iota + 1 // route the IP packet (decapsulated or bypass)
	pendEncap                          // encapsulate for meta.Policy, then route
)

type pendingPkt struct {
	kind pendingKind
	// meta is the packet's, placing it at the start of buf (Off and L3
	// are 0).
	meta     ring.Meta
	deadline int64
	buf      [pendingSize]byte
}

type pendingStore struct {
	slots [pendingSlots]pendingPkt
	used  int
	gen   uint64 // the router generation of the last retry
	// cur is the slot being retried, or -1: a packet still unresolved
	// during its retry stays in its own slot (its bytes are the slot's).
	cur int
}

// park keeps a copy of ip, and of m when it is not nil, until its
// neighbour is resolved. It reports false (the caller drops) when the
// store is full or the packet too big.
func (s *SPU) park(kind pendingKind, ip []byte, m *ring.Meta) bool {
	ps := &s.pend
	if ps.cur >= 0 {
		ps.slots[ps.cur].kind = kind
		return true
	}
	if ps.used == pendingSlots || len(ip) > pendingSize {
		return false
	}
	p := &ps.slots[ps.used]
	ps.used++
	p.kind = kind
	p.meta = ring.Meta{}
	if m != nil {
		p.meta = *m
	}
	p.meta.Off, p.meta.L3, p.meta.Len = 0, 0, int32(copy(p.buf[:], ip))
	p.deadline = nanotime() + pendingTTL
	s.c.parked.Add(1)
	return true
}

// retryPending runs the parked packets again when the kernel's tables
// changed (a neighbour was resolved), and drops those that waited too long.
func (s *SPU) retryPending() bool {
	ps := &s.pend
	if ps.used == 0 || ps.cur >= 0 {
		return false
	}
	gen := s.eng.router.Gen()
	now := nanotime()
	expired := false
	for i := 0; i < ps.used; i++ {
		if ps.slots[i].deadline < now {
			expired = true
			break
		}
	}
	if gen == ps.gen && !expired {
		return false
	}
	ps.gen = gen
	for i := 0; i < ps.used; i++ {
		p := &ps.slots[i]
		if p.deadline < now {
			s.drop(DropNoNeighbour)
			p.kind = 0
			continue
		}
		kind := p.kind
		p.kind = 0
		ps.cur = i
		ip := p.buf[:p.meta.Len]
		switch kind {
		case pendForward:
			s.forward(ip)
		case pendEncap:
			s.encapIP(ip, &p.meta)
		}
		ps.cur = -1
	}
	// Compact what is still waiting, in order.
	w := 0
	for i := 0; i < ps.used; i++ {
		if ps.slots[i].kind != 0 {
			if w != i {
				ps.slots[w] = ps.slots[i]
			}
			w++
		}
	}
	ps.used = w
	return true
}
