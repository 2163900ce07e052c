package spud

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/spugate/spugate/dataplane/steer"
)

// spdEntries tracks which policies share a steering entry. The program's
// SPD has one entry per (interface, local, remote) selectors, but two
// policies may have the same selectors: an IKE SA set up again while the
// old one's policy lingers (iked restarted without its state), or a
// static policy beside a negotiated one. The entry names the newest of
// them; deleting one policy keeps the entry, pointed at the newest left,
// where it used to delete the entry and so pass the other policy's
// cleartext unprotected.
type spdEntries struct {
	mu sync.Mutex
	by map[spdKey][]steer.Policy // in the order added; the last is in the program
}

type spdKey struct {
	ifindex       int
	local, remote netip.Prefix
}

// spdProgram is what spdEntries writes to: the steering program.
type spdProgram interface {
	SetPolicy(steer.Policy) error
	DeletePolicy(ifindex int, local, remote netip.Prefix) error
}

func keyOf(e steer.Policy) spdKey { return spdKey{e.Ifindex, e.Local, e.Remote} }

// add puts e in the program, in front of any policy with its selectors.
func (s *spdEntries) add(prog spdProgram, e steer.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := prog.SetPolicy(e); err != nil {
		return err
	}
	if s.by == nil {
		s.by = map[spdKey][]steer.Policy{}
	}
	k := keyOf(e)
	s.by[k] = append(s.by[k], e)
	return nil
}

// del takes e's policy off its entry: the entry goes with the last policy
// that had it, and otherwise names the newest one left.
func (s *spdEntries) del(prog spdProgram, e steer.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(e)
	l := s.by[k]
	i := slices.IndexFunc(l, func(x steer.Policy) bool { return x.ID == e.ID })
	if i < 0 {
		return nil
	}
	l = slices.Delete(l, i, i+1)
	if len(l) == 0 {
		delete(s.by, k)
		return prog.DeletePolicy(e.Ifindex, e.Local, e.Remote)
	}
	s.by[k] = l
	if i == len(l) {
		// It was the one in the program: the newest left takes its place.
		return prog.SetPolicy(l[len(l)-1])
	}
	return nil
}
