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
	// by holds the policies of each entry in the order added, the last
	// in the program; only what the key does not say, and the first
	// inline: a copy of each steer.Policy in a slice of its own cost ~180
	// bytes a policy, nearly all alone on their selectors.
	by map[spdKey]spdList
}

// spdOwner is a policy of an entry, less the entry's selectors.
type spdOwner struct {
	id      uint32
	logical uint16
	bypass  bool
}

// spdList is the policies of an entry: first, then more.
type spdList struct {
	first spdOwner
	more  []spdOwner
}

func (l *spdList) all() []spdOwner { return append([]spdOwner{l.first}, l.more...) }

func listOf(o []spdOwner) spdList { return spdList{first: o[0], more: slices.Clip(o[1:])} }

func ownerOf(e steer.Policy) spdOwner {
	return spdOwner{id: e.ID, logical: e.LogicalSPU, bypass: e.Bypass}
}

func (k spdKey) policy(o spdOwner) steer.Policy {
	return steer.Policy{Ifindex: k.ifindex, Local: k.local, Remote: k.remote, ID: o.id, LogicalSPU: o.logical, Bypass: o.bypass}
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
		s.by = map[spdKey]spdList{}
	}
	k := keyOf(e)
	if l, ok := s.by[k]; ok {
		l.more = append(l.more, ownerOf(e))
		s.by[k] = l
	} else {
		s.by[k] = spdList{first: ownerOf(e)}
	}
	return nil
}

// del takes e's policy off its entry: the entry goes with the last policy
// that had it, and otherwise names the newest one left.
func (s *spdEntries) del(prog spdProgram, e steer.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := keyOf(e)
	have, ok := s.by[k]
	if !ok {
		return nil
	}
	l := have.all()
	i := slices.IndexFunc(l, func(x spdOwner) bool { return x.id == e.ID })
	if i < 0 {
		return nil
	}
	l = slices.Delete(l, i, i+1)
	if len(l) == 0 {
		delete(s.by, k)
		return prog.DeletePolicy(e.Ifindex, e.Local, e.Remote)
	}
	s.by[k] = listOf(l)
	if i == len(l) {
		// It was the one in the program: the newest left takes its place.
		return prog.SetPolicy(k.policy(l[len(l)-1]))
	}
	return nil
}
