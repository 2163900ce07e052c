package worker

import (
	"net/netip"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
)

// peerIndex finds a worker's IKE SAs by their peer without a pass over all
// of them: by the peer's address (the tunnel's other IKE SAs: an initiator's
// first contact, reauthentication, hand-overs) and by the pair of identities
// IKE_AUTH authenticated (INITIAL_CONTACT). With a pass per IKE_AUTH, a
// setup cost more the more IKE SAs the worker held (a third of iked's CPU
// at 45k IKE SAs).
//
// The keys are refreshed by Worker.schedule, which runs after every event
// of a manager, so that an address that floated behind a NAT and the
// identities IKE_AUTH set are found by the next event. Lookups still check
// what they need (an IKE SA whose address changed during the event at hand
// may sit under its old one until then).
type peerIndex struct {
	byAddr map[netip.Addr]map[*manager.Manager]struct{}
	byIDs  map[idPair]map[*manager.Manager]struct{}
	keys   map[*manager.Manager]peerKeys
}

// idPair is an IKE SA's authenticated identities, as map keys.
type idPair struct {
	remoteType, localType uint8
	remote, local         string
}

type peerKeys struct {
	addr   netip.Addr
	ids    idPair
	hasIDs bool
}

func newPeerIndex() peerIndex {
	return peerIndex{byAddr: map[netip.Addr]map[*manager.Manager]struct{}{}, byIDs: map[idPair]map[*manager.Manager]struct{}{},
		keys: map[*manager.Manager]peerKeys{}}
}

// sameIDs reports whether k holds ike's identities; it allocates nothing,
// as it runs after every event.
func (k peerKeys) sameIDs(ike *sa.IKESA) bool {
	return k.hasIDs && k.ids.remoteType == ike.RemoteID.Type && k.ids.localType == ike.LocalID.Type &&
		k.ids.remote == string(ike.RemoteID.Data) && k.ids.local == string(ike.LocalID.Data)
}

// hasIDs reports whether IKE_AUTH (or a restored state) gave ike its
// peer's identity.
func hasIDs(ike *sa.IKESA) bool { return ike.RemoteID.Type != 0 }

func idsOf(ike *sa.IKESA) idPair {
	return idPair{remoteType: ike.RemoteID.Type, localType: ike.LocalID.Type, remote: string(ike.RemoteID.Data),
		local: string(ike.LocalID.Data)}
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
	if ok && k.addr == addr && (k.sameIDs(ike) || (!k.hasIDs && !hasIDs(ike))) {
		return
	}
	if ok {
		x.remove(m)
	}
	k = peerKeys{addr: addr}
	add(x.byAddr, addr, m)
	if hasIDs(ike) {
		k.ids, k.hasIDs = idsOf(ike), true
		add(x.byIDs, k.ids, m)
	}
	x.keys[m] = k
}

// remove drops m from the index.
func (x *peerIndex) remove(m *manager.Manager) {
	k, ok := x.keys[m]
	if !ok {
		return
	}
	del(x.byAddr, k.addr, m)
	if k.hasIDs {
		del(x.byIDs, k.ids, m)
	}
	delete(x.keys, m)
}

// atAddr is the IKE SAs filed under a peer address; callers must not
// change it.
func (x *peerIndex) atAddr(a netip.Addr) map[*manager.Manager]struct{} { return x.byAddr[a] }

// withIDs is the IKE SAs filed under ike's identities.
func (x *peerIndex) withIDs(ike *sa.IKESA) map[*manager.Manager]struct{} {
	if !hasIDs(ike) {
		return nil
	}
	return x.byIDs[idsOf(ike)]
}

func add[K comparable](idx map[K]map[*manager.Manager]struct{}, k K, m *manager.Manager) {
	s := idx[k]
	if s == nil {
		s = map[*manager.Manager]struct{}{}
		idx[k] = s
	}
	s[m] = struct{}{}
}

func del[K comparable](idx map[K]map[*manager.Manager]struct{}, k K, m *manager.Manager) {
	if s := idx[k]; s != nil {
		delete(s, m)
		if len(s) == 0 {
			delete(idx, k)
		}
	}
}
