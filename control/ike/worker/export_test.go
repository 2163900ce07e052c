package worker

import (
	"fmt"

	"github.com/spugate/spugate/control/ike/manager"
)

// Every test of the package checks Predecessor's hints against its search.
func init() { verifyHints = true }

// VerifyHints turns the check of every hint against the search on or off
// (benchmarks measure without it), and returns what it was.
func VerifyHints(on bool) bool {
	was := verifyHints
	verifyHints = on
	return was
}

// HintHits is how many Predecessor hints were taken (and verified).
func HintHits() int64 { return hintHits.Load() }

// The unauthenticated log budget, for tests that flood.
const (
	UnauthLogBurst    = unauthLogBurst
	UnauthLogInterval = unauthLogInterval
)

// IndexError reports where the peer index disagrees with the worker's IKE
// SAs (every live one filed under its address and identities, nothing
// else), or the id order with its table by SPI (each of them once, sorted
// by UniqueID).
func (w *Worker) IndexError() error {
	live := map[*manager.Manager]bool{}
	for _, m := range w.bySPI {
		if m.Destroyed() {
			continue
		}
		live[m] = true
		k, ok := w.peers.keys[m]
		switch {
		case !ok:
			return fmt.Errorf("IKE SA %d (%s) is not in the peer index", m.IKE.UniqueID, m.IKE.State)
		case k.addr != m.IKE.Remote.Addr():
			return fmt.Errorf("IKE SA %d is filed under %s, its peer is at %s", m.IKE.UniqueID, k.addr, m.IKE.Remote.Addr())
		case hasIDs(m.IKE) != k.hasIDs() || (k.hasIDs() && !k.sameIDs(m.IKE)):
			return fmt.Errorf("IKE SA %d is filed under identities %+v, has %v/%v", m.IKE.UniqueID, k.ids.Value(), m.IKE.RemoteID, m.IKE.LocalID)
		}
		if !w.peers.byAddr[k.addr].has(m) {
			return fmt.Errorf("IKE SA %d is missing from its address's set", m.IKE.UniqueID)
		}
		if k.hasIDs() && !w.peers.byIDs[k.ids].has(m) {
			return fmt.Errorf("IKE SA %d is missing from its identities' set", m.IKE.UniqueID)
		}
	}
	if err := w.byID.check(); err != nil {
		return err
	}
	inOrder := map[*manager.Manager]bool{}
	for _, m := range w.byID.all(nil) {
		if inOrder[m] {
			return fmt.Errorf("IKE SA %d is twice in the id order", m.IKE.UniqueID)
		}
		inOrder[m] = true
	}
	for _, m := range w.bySPI {
		if !inOrder[m] {
			return fmt.Errorf("IKE SA %d (%s) is not in the id order", m.IKE.UniqueID, m.IKE.State)
		}
	}
	if len(inOrder) != len(w.bySPI) {
		return fmt.Errorf("id order: %d IKE SAs, the worker holds %d", len(inOrder), len(w.bySPI))
	}
	n := 0
	for a, s := range w.peers.byAddr {
		n += s.len()
		if s.len() == 0 || (s.more != nil && len(s.more) < 2) {
			return fmt.Errorf("peer index: address %s holds a set of %d", a, s.len())
		}
	}
	for ids, s := range w.peers.byIDs {
		if s.len() == 0 || (s.more != nil && len(s.more) < 2) {
			return fmt.Errorf("peer index: identities %+v hold a set of %d", ids, s.len())
		}
	}
	if len(w.peers.keys) != len(live) || n != len(live) {
		return fmt.Errorf("peer index: %d keys, %d by address, for %d live IKE SAs", len(w.peers.keys), n, len(live))
	}
	return nil
}
