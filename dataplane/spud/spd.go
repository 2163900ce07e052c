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
	// bytes a policy, nearly all alone on their selectors. Key and value
	// are 40 and 16 bytes (104 with netip.Prefix keys and the slice
	// inline), the key without a pointer.
	by map[spdKey]spdList
}

// spdOwner is a policy of an entry, less the entry's selectors.
type spdOwner struct {
	id      uint32
	logical uint16
	bypass  bool
}

// spdList is the policies of an entry: first, then more (nil when it
// has one, as nearly all have).
type spdList struct {
	first spdOwner
	more  *[]spdOwner
}

func (l *spdList) all() []spdOwner {
	if l.more == nil {
		return []spdOwner{l.first}
	}
	return append([]spdOwner{l.first}, *l.more...)
}

func listOf(o []spdOwner) spdList {
	l := spdList{first: o[0]}
	if len(o) > 1 {
		more := slices.Clip(o[1:])
		l.more = &more
	}
	return l
}

func ownerOf(e steer.Policy) spdOwner {
	return spdOwner{id: e.ID, logical: e.LogicalSPU, bypass: e.Bypass}
}

func (k spdKey) policy(o spdOwner) steer.Policy {
	return steer.Policy{Ifindex: int(k.ifindex), Local: k.local.prefix(), Remote: k.remote.prefix(), ID: o.id,
		LogicalSPU: o.logical, Bypass: o.bypass}
}

// spdKey is a steering entry's selectors: its interface and prefixes.
type spdKey struct {
	ifindex       int32
	local, remote spdPrefix
}

// spdPrefix is a prefix in 18 bytes, where a netip.Prefix is 32 and has
// a pointer (its address's zone), which steering prefixes never have.
type spdPrefix struct {
	a    [16]byte // IPv4 as IPv4-mapped
	bits uint8
	v6   bool
}

func pfxOf(p netip.Prefix) spdPrefix {
	return spdPrefix{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (p spdPrefix) prefix() netip.Prefix {
	a := netip.AddrFrom16(p.a)
	if !p.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(p.bits))
}

// spdKeyOf is the key of the entry of interface ifindex and prefixes
// local and remote.
func spdKeyOf(ifindex int, local, remote netip.Prefix) spdKey {
	return spdKey{int32(ifindex), pfxOf(local), pfxOf(remote)}
}

// spdProgram is what spdEntries writes to: the steering program.
type spdProgram interface {
	SetPolicy(steer.Policy) error
	DeletePolicy(ifindex int, local, remote netip.Prefix) error
}

func keyOf(e steer.Policy) spdKey { return spdKeyOf(e.Ifindex, e.Local, e.Remote) }

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
		// Appended in place: an entry may have many policies (every
		// tunnel of a load generator has the same selectors), and a copy
		// of the list per add made their adds quadratic.
		if l.more == nil {
			l.more = new([]spdOwner)
		}
		*l.more = append(*l.more, ownerOf(e))
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
