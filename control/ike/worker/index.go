package worker

import (
	"iter"
	"net/netip"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
)

// peerIndex finds a worker's IKE SAs by their peer without a pass over all
// of them: by the peer's address (an initiator's first contact) and by the
// address and identity IKE_AUTH authenticated (the tunnel's other IKE SAs:
// INITIAL_CONTACT, reauthentication predecessors, hand-overs). With a pass
// per IKE_AUTH, a setup cost more the more IKE SAs the worker held (a third
// of iked's CPU at 45k IKE SAs); with a pass over the IKE SAs of the peer's
// address, it did when one address held many (a load generator,
// sites behind a carrier NAT: 45 % of iked's CPU at 10k IKE SAs of
// load-tester, each with an identity of its own).
//
// The keys are refreshed by Worker.schedule, which runs after every event
// of a manager, so that an address that floated behind a NAT and the
// identities IKE_AUTH set are found by the next event. Lookups still check
// what they need (an IKE SA whose address changed during the event at hand
// may sit under its old one until then).
//
// Most keys file one IKE SA (a site's, a road warrior's: one per peer at a
// million tunnels), which a peerSet holds without a map of its own; a map
// per key made the index a tenth of what an idle IKE SA cost.
type peerIndex struct {
	byAddr map[netip.Addr]peerSet
	byPeer map[peerKey]peerSet
	keys   map[*manager.Manager]peerKeys
	// shared counts the IKE SAs of every worker by address (nil for a
	// worker alone): the index adds and takes its own as it files them
	// under an address, so that others counts those of the other workers.
	shared *PeerCounts
	// worker is the worker's ID, under which spread (when it says that
	// one peer's IKE SAs spread over the workers: ike_anchor ike-sa) has
	// the index count its authenticated IKE SAs in shared, so that a
	// reauthentication finds the workers of its predecessor (workersOf).
	worker int
	spread func() bool
}

// peerSet is the IKE SAs under one key: one, or, once a second came, all
// of them in more.
type peerSet struct {
	one  *manager.Manager
	more map[*manager.Manager]struct{}
}

// has reports whether m is in the set.
func (s peerSet) has(m *manager.Manager) bool {
	if s.more != nil {
		_, ok := s.more[m]
		return ok
	}
	return m != nil && s.one == m
}

// len is the number of IKE SAs in the set.
func (s peerSet) len() int {
	if s.more != nil {
		return len(s.more)
	}
	if s.one != nil {
		return 1
	}
	return 0
}

// all yields the set's IKE SAs; the set must not change meanwhile.
func (s peerSet) all() iter.Seq[*manager.Manager] {
	return func(yield func(*manager.Manager) bool) {
		if s.more == nil {
			if s.one != nil {
				yield(s.one)
			}
			return
		}
		for m := range s.more {
			if !yield(m) {
				return
			}
		}
	}
}

// peerKey is an authenticated peer, as a map key: its address and
// identity. The local identity is left out: what looks a peer up wants
// another IKE SA of the same peer (sameTunnel) or checks the local
// identity itself (INITIAL_CONTACT), and an IKE SA keeps it for life.
type peerKey struct {
	addr   netip.Addr
	idType uint8
	id     string
}

type peerKeys struct {
	addr   netip.Addr
	idType uint8
	id     string
	hasID  bool
	// counted: the identity is counted in shared's workers by peer.
	counted bool
}

func newPeerIndex(shared *PeerCounts) peerIndex {
	return peerIndex{byAddr: map[netip.Addr]peerSet{}, byPeer: map[peerKey]peerSet{}, keys: map[*manager.Manager]peerKeys{},
		shared: shared}
}

// workersOf appends to ws the other workers that hold authenticated IKE
// SAs of ike's peer (one lookup in the daemon's table), none unless the
// index counts there.
func (x *peerIndex) workersOf(ws []int, ike *sa.IKESA) []int {
	if x.shared == nil || x.spread == nil || !hasIDs(ike) || !x.spread() {
		return ws
	}
	return x.shared.peerWorkers(ws, x.shared.peerHash(peerOf(ike)), x.worker)
}

// sameID reports whether k holds ike's peer identity; it allocates
// nothing, as it runs after every event.
func (k peerKeys) sameID(ike *sa.IKESA) bool {
	return k.hasID && k.idType == ike.RemoteID.Type && k.id == string(ike.RemoteID.Data)
}

// peer is the key k files its IKE SA under in byPeer.
func (k peerKeys) peer() peerKey { return peerKey{addr: k.addr, idType: k.idType, id: k.id} }

// hasIDs reports whether IKE_AUTH (or a restored state) gave ike its
// peer's identity.
func hasIDs(ike *sa.IKESA) bool { return ike.RemoteID.Type != 0 }

// peerOf is the key of ike's authenticated peer (at its current address).
func peerOf(ike *sa.IKESA) peerKey {
	return peerKey{addr: ike.Remote.Addr(), idType: ike.RemoteID.Type, id: string(ike.RemoteID.Data)}
}

// update files m under its current keys, or removes it once destroyed.
func (x *peerIndex) update(m *manager.Manager) {
	if m.Destroyed() {
		x.remove(m)
		return
	}
	ike := m.IKE
	k, ok := x.keys[m]
	addr := ike.Remote.Addr()
	if ok && k.addr == addr && (k.sameID(ike) || (!k.hasID && !hasIDs(ike))) {
		return
	}
	// The shared count changes only with the address, not with the
	// identities IKE_AUTH gave: one lock per IKE SA and address.
	moved := !ok || k.addr != addr
	if ok {
		x.unfile(m, k, moved)
	}
	k = peerKeys{addr: addr}
	add(x.byAddr, addr, m)
	if moved && x.shared != nil {
		x.shared.Add(addr, 1)
	}
	if hasIDs(ike) {
		k.idType, k.id, k.hasID = ike.RemoteID.Type, string(ike.RemoteID.Data), true
		add(x.byPeer, k.peer(), m)
		if x.shared != nil && x.spread != nil && x.spread() {
			x.shared.addPeer(x.shared.peerHash(k.peer()), x.worker, 1)
			k.counted = true
		}
	}
	x.keys[m] = k
}

// remove drops m from the index.
func (x *peerIndex) remove(m *manager.Manager) {
	if k, ok := x.keys[m]; ok {
		x.unfile(m, k, true)
	}
}

// unfile drops m, filed under k, from the index, and from the shared
// count of k's address if addrGone.
func (x *peerIndex) unfile(m *manager.Manager, k peerKeys, addrGone bool) {
	del(x.byAddr, k.addr, m)
	if k.hasID {
		del(x.byPeer, k.peer(), m)
	}
	if k.counted {
		x.shared.addPeer(x.shared.peerHash(k.peer()), x.worker, -1)
	}
	delete(x.keys, m)
	if addrGone && x.shared != nil {
		x.shared.Add(k.addr, -1)
	}
}

// others is the number of IKE SAs with a peer address that other workers
// hold: the shared count less the worker's own there, which it files and
// counts in the same step, so the difference holds no IKE SA of this
// worker (none below zero).
func (x *peerIndex) others(a netip.Addr) int {
	if x.shared == nil {
		return 0
	}
	return max(x.shared.Get(a)-x.byAddr[a].len(), 0)
}

// atAddr is the IKE SAs filed under a peer address, which must not
// change while they are taken.
func (x *peerIndex) atAddr(a netip.Addr) iter.Seq[*manager.Manager] { return x.byAddr[a].all() }

// ofPeer is the IKE SAs filed under ike's peer: its address and, once
// authenticated, its identity; the address's IKE SAs when ike has no
// identity yet. The others at the address that have none are left out:
// an IKE SA has no Child SA before IKE_AUTH gave it the identity.
func (x *peerIndex) ofPeer(ike *sa.IKESA) iter.Seq[*manager.Manager] {
	if !hasIDs(ike) {
		return x.atAddr(ike.Remote.Addr())
	}
	return x.byPeer[peerOf(ike)].all()
}

func add[K comparable](idx map[K]peerSet, k K, m *manager.Manager) {
	s, ok := idx[k]
	switch {
	case !ok:
		s.one = m
	case s.more == nil:
		s.more = map[*manager.Manager]struct{}{s.one: {}, m: {}}
		s.one = nil
	default:
		s.more[m] = struct{}{}
		return
	}
	idx[k] = s
}

func del[K comparable](idx map[K]peerSet, k K, m *manager.Manager) {
	s, ok := idx[k]
	switch {
	case !ok:
	case s.more == nil:
		if s.one == m {
			delete(idx, k)
		}
	default:
		delete(s.more, m)
		// Back to one without a map, so that a tunnel that had several
		// IKE SAs for a while (a reauthentication) is small again.
		if len(s.more) == 1 {
			for o := range s.more {
				idx[k] = peerSet{one: o}
			}
		} else if len(s.more) == 0 {
			delete(idx, k)
		}
	}
}
