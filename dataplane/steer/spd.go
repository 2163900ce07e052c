package steer

import (
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
)

// ErrTableFull is in the chain of SetPolicy's refusals of a policy that
// finds its family's SPD full (a *TableFullError says which table).
var ErrTableFull = errors.New("SPD table full")

// TableFullError is SetPolicy's refusal of a policy its family's SPD has
// no room for: either the family holds Options.MaxPolicies entries
// already, or a map update found its map full (ENOSPC from an LPM trie).
// Nothing of the refused policy is left in the maps.
type TableFullError struct {
	Map      string // the full map: spd4_dst or spd6_dst for the policy limit, a _src one when sources overflow
	IPv6     bool   // the family
	Size     int    // Map's max_entries
	Policies int    // SPD entries of the family when the policy was refused
}

// Error names the map, the family and the sizes, in one line.
func (e *TableFullError) Error() string {
	fam := "IPv4"
	if e.IPv6 {
		fam = "IPv6"
	}
	if e.Size == e.Policies {
		return fmt.Sprintf("SPD table full: %s holds %d %s policies", e.Map, e.Size, fam)
	}
	return fmt.Sprintf("SPD table full: %s holds %d entries, for %d %s policies", e.Map, e.Size, e.Policies, fam)
}

// Unwrap gives ErrTableFull.
func (e *TableFullError) Unwrap() error { return ErrTableFull }

// Family is "IPv4" or "IPv6".
func (e *TableFullError) Family() string {
	if e.IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

// Policy is an SPD entry as the steering program sees it: cleartext that
// arrives on interface Ifindex with a source in Local and a destination in
// Remote is steered to the tunnel's anchor SPU.
//
// Protocol and ports are not looked at in XDP: userspace does the exact SPD
// match after steering.
type Policy struct {
	Ifindex    int          // the protected interface the cleartext arrives on
	Local      netip.Prefix // local traffic selector: the packet's source
	Remote     netip.Prefix // remote traffic selector: the packet's destination
	ID         uint32       // reported in the metadata (Meta.PolicyID)
	LogicalSPU uint16       // the policy's anchor: its IKE SA's logical SPU, or anchor.Function.Logical of its endpoints
	Bypass     bool         // matching packets go to the kernel, counted PassBypass
}

// keyPrefix is a prefix as the table keeps it: 18 bytes, where a netip.Prefix
// is 32 (its address carries a pointer for the zone), in every key of a
// table that holds a million policies several times over. The prefixes
// are masked and without a zone (normalize).
type keyPrefix struct {
	a    [16]byte // IPv4 as IPv4-mapped
	bits uint8
	v6   bool
}

func pfxOf(p netip.Prefix) keyPrefix {
	return keyPrefix{a: p.Addr().As16(), bits: uint8(p.Bits()), v6: p.Addr().Is6()}
}

func (p keyPrefix) prefix() netip.Prefix {
	a := netip.AddrFrom16(p.a)
	if !p.v6 {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, int(p.bits))
}

type policyKey struct {
	ifindex       int32
	local, remote keyPrefix
}

func (p *Policy) key() policyKey {
	return policyKey{int32(p.Ifindex), pfxOf(p.Local), pfxOf(p.Remote)}
}

// normalize checks p and masks its prefixes.
func (p Policy) normalize() (Policy, error) {
	if p.Ifindex <= 0 {
		return p, fmt.Errorf("steer: policy %d: ifindex %d is not an interface", p.ID, p.Ifindex)
	}
	if !p.Local.IsValid() || !p.Remote.IsValid() {
		return p, fmt.Errorf("steer: policy %d: invalid traffic selector %v -> %v", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Is4In6() || p.Remote.Addr().Is4In6() {
		return p, fmt.Errorf("steer: policy %d: v4-mapped selector %v -> %v: use IPv4 prefixes", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Is4() != p.Remote.Addr().Is4() {
		return p, fmt.Errorf("steer: policy %d: selectors %v -> %v mix IPv4 and IPv6", p.ID, p.Local, p.Remote)
	}
	if p.Local.Addr().Zone() != "" || p.Remote.Addr().Zone() != "" {
		return p, fmt.Errorf("steer: policy %d: selectors %v -> %v have a zone", p.ID, p.Local, p.Remote)
	}
	p.Local, p.Remote = p.Local.Masked(), p.Remote.Masked()
	return p, nil
}

// The SPD in the maps, in two LPM stages: (ifindex, destination prefix) ->
// group, (group, source prefix) -> policy. The lookup in XDP takes the
// longest destination match first and only then looks at the source, so on
// its own it would miss a policy whose destination prefix is wider than
// another policy's, for a source only the wider one covers. spdTable
// compensates: each group holds the policies of its own destination prefix
// and of every wider destination prefix of the same interface, so the
// lookup finds a policy covering both addresses whenever one exists. Among
// several it takes the longest source prefix, then the longest destination
// prefix; the SPD's own order is userspace's business.
//
// Changes are incremental: a policy touches only the group of its own
// destination and the groups inside it (for a /32 destination, one group),
// and the policies covering a group are found by walking the group's
// prefix lengths in an index by destination, so that installing thousands
// of tunnels costs the same per tunnel as installing the first.
//
// The table is kept small, a million tunnels being a million policies:
// a policy is its key and the 8 bytes the maps hold (spdValue), and the
// per-destination sets are slices while they are small (prefixSet) rather
// than a map each, which cost ~1.2 KiB per tunnel of a /32 of its own; the
// keys hold prefixes as keyPrefix, not netip.Prefix.
type spdTable struct {
	policies map[policyKey]spdValue
	// shadowed holds, for the few entries that have them, the policies
	// set on an entry's selectors before the one in the maps and not
	// removed since, oldest first: an IKE SA set up again while the old
	// one's policy lingers (iked restarted without its state), a static
	// policy beside a negotiated one, every tunnel of a load generator
	// with the same selectors. Removing the entry's policy puts the
	// newest of them in its place, where deleting the entry would pass
	// the others' cleartext unprotected. A map apart, nil until needed,
	// so that the million entries that have one policy each carry
	// nothing for it.
	shadowed map[policyKey]*shadowList
	// dests are the destinations with policies or a group (spdDest):
	// one map, where one of the policies' sources and one of the groups,
	// both by destination, took some 50 bytes more a policy of a /32.
	dests     map[remoteKey]*spdDest
	nextGroup uint32
	free      []uint32

	// count is the policies of each family (IPv4, IPv6); max bounds
	// each (0: unbounded), so that the destination tries, sized max,
	// never overflow: a family has at most one group per policy.
	count [2]int
	max   int
}

// spdDest is a destination on an interface: the sources (local prefixes)
// of its policies and its group, once allocated. It goes when it has
// neither.
type spdDest struct {
	locals   prefixSet[struct{}]
	group    spdGroup // when hasGroup
	hasGroup bool
}

// groups yields the allocated groups by destination.
func (t *spdTable) groups() iter.Seq2[remoteKey, *spdGroup] {
	return func(yield func(remoteKey, *spdGroup) bool) {
		for rk, d := range t.dests {
			if d.hasGroup && !yield(rk, &d.group) {
				return
			}
		}
	}
}

// group is the group of destination rk, or nil.
func (t *spdTable) group(rk remoteKey) *spdGroup {
	if d := t.dests[rk]; d != nil && d.hasGroup {
		return &d.group
	}
	return nil
}

// spdGroup is an allocated group and the entries installed for it.
type spdGroup struct {
	id        uint32
	installed bool                // its stage-1 entry is in the map
	src       prefixSet[spdValue] // its stage-2 entries in the map
}

// family is the index of p's family in spdTable.count.
func family(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// remoteKey is a destination on an interface: of dests
// (where a groupKey is what the maps get).
type remoteKey struct {
	ifindex int32
	remote  keyPrefix
}

func remoteKeyOf(ifindex int, p netip.Prefix) remoteKey { return remoteKey{int32(ifindex), pfxOf(p)} }

// groupKey is a group's stage-1 key, as spdWriter takes it.
type groupKey struct {
	ifindex int
	dst     netip.Prefix
}

type srcKey struct {
	group uint32
	src   netip.Prefix
}

type spdValue struct {
	id      uint32
	logical uint16
	flags   uint16
}

// spdWriter is where spdTable puts its entries: the BPF maps, or a fake.
type spdWriter interface {
	putDst(k groupKey, group uint32) error
	delDst(k groupKey) error
	putSrc(k srcKey, v spdValue) error
	delSrc(k srcKey) error
}

func newSPDTable() spdTable {
	return spdTable{
		policies: make(map[policyKey]spdValue),
		dests:    make(map[remoteKey]*spdDest),
	}
}

func (p *Policy) value() spdValue {
	v := spdValue{id: p.ID, logical: p.LogicalSPU}
	if p.Bypass {
		v.flags |= policyBypass
	}
	return v
}

// policy is the Policy of key k and value v, as set was given it.
func (k policyKey) policy(v spdValue) Policy {
	return Policy{Ifindex: int(k.ifindex), Local: k.local.prefix(), Remote: k.remote.prefix(), ID: v.id, LogicalSPU: v.logical,
		Bypass: v.flags&policyBypass != 0}
}

const policyBypass = 0x1 // SPUGATE_POLICY_BYPASS

func (t *spdTable) index(p Policy) {
	rk := remoteKeyOf(p.Ifindex, p.Remote)
	d := t.dests[rk]
	if d == nil {
		d = &spdDest{}
		t.dests[rk] = d
	}
	d.locals.put(pfxOf(p.Local), struct{}{})
}

func (t *spdTable) unindex(p Policy) {
	rk := remoteKeyOf(p.Ifindex, p.Remote)
	d := t.dests[rk]
	if d == nil {
		return
	}
	d.locals.del(pfxOf(p.Local))
	if d.locals.len() == 0 && !d.hasGroup {
		delete(t.dests, rk)
	}
}

// hasRemote reports whether a policy has destination d on ifindex.
func (t *spdTable) hasRemote(ifindex int, d netip.Prefix) bool {
	r := t.dests[remoteKeyOf(ifindex, d)]
	return r != nil && r.locals.len() > 0
}

// desired computes group d's stage-2 entries: for each source prefix, the
// policy with the longest destination among those whose destination covers
// d. Nil when no policy has d itself as destination (no group then).
func (t *spdTable) desired(ifindex int, d netip.Prefix) map[netip.Prefix]spdValue {
	if !t.hasRemote(ifindex, d) {
		return nil
	}
	entries := make(map[netip.Prefix]spdValue)
	// Shorter destinations first, so that a longer one overrides them.
	for l := 0; l <= d.Bits(); l++ {
		r, _ := d.Addr().Prefix(l)
		rk := remoteKeyOf(ifindex, r)
		dest := t.dests[rk]
		if dest == nil {
			continue
		}
		for local := range dest.locals.all() {
			entries[local.prefix()] = t.policies[policyKey{rk.ifindex, local, rk.remote}]
		}
	}
	return entries
}

// affected returns the destinations whose groups a policy with destination
// remote on ifindex bears on: its own, and every existing group inside it.
func (t *spdTable) affected(ifindex int, remote netip.Prefix) []netip.Prefix {
	out := []netip.Prefix{remote}
	if remote.Bits() == remote.Addr().BitLen() {
		return out
	}
	for gk := range t.groups() {
		if int(gk.ifindex) != ifindex || gk.remote.v6 != remote.Addr().Is6() || int(gk.remote.bits) <= remote.Bits() {
			continue
		}
		if dst := gk.remote.prefix(); remote.Contains(dst.Addr()) {
			out = append(out, dst)
		}
	}
	return out
}

// syncGroup brings group d's installed entries to the desired ones through
// w, in an order that never leaves a lookup pointing at a group without its
// entries: stage-2 additions first, then stage 1, then stage-2 removals; or,
// for a group that goes away, stage 1 first, then its stage-2 entries.
//
// With only set, the change was to policies of that source alone: a group
// that exists before and after needs just that source's entry, which keeps
// adding a tunnel to a destination shared by thousands (one remote subnet,
// many local ones) from recomputing all of them.
func (t *spdTable) syncGroup(w spdWriter, ifindex int, d netip.Prefix, only *netip.Prefix) error {
	gk := groupKey{ifindex, d}
	rk := remoteKeyOf(ifindex, d)
	g := t.group(rk)
	if only != nil && g != nil && t.hasRemote(ifindex, d) {
		return t.syncSource(w, gk, g, *only)
	}
	want := t.desired(ifindex, d)
	if want == nil {
		if g == nil {
			return nil
		}
		if g.installed {
			if err := w.delDst(gk); err != nil {
				return err
			}
			g.installed = false
		}
		for _, s := range g.src.keys() {
			if err := w.delSrc(srcKey{g.id, s.prefix()}); err != nil {
				return err
			}
			g.src.del(s)
		}
		t.free = append(t.free, g.id)
		dest := t.dests[rk]
		dest.group, dest.hasGroup = spdGroup{}, false
		if dest.locals.len() == 0 {
			delete(t.dests, rk)
		}
		return nil
	}
	if g == nil {
		// want: a policy has destination d, so dests has it.
		dest := t.dests[rk]
		dest.hasGroup = true
		g = &dest.group
		if n := len(t.free); n > 0 {
			g.id, t.free = t.free[n-1], t.free[:n-1]
		} else {
			t.nextGroup++
			g.id = t.nextGroup
		}
	}
	for s, v := range want {
		sp := pfxOf(s)
		if old, ok := g.src.get(sp); ok && old == v {
			continue
		}
		if err := w.putSrc(srcKey{g.id, s}, v); err != nil {
			return err
		}
		g.src.put(sp, v)
	}
	if !g.installed {
		if err := w.putDst(gk, g.id); err != nil {
			return err
		}
		g.installed = true
	}
	for _, s := range g.src.keys() {
		sp := s.prefix()
		if _, keep := want[sp]; keep {
			continue
		}
		if err := w.delSrc(srcKey{g.id, sp}); err != nil {
			return err
		}
		g.src.del(s)
	}
	return nil
}

// syncSource brings source s's stage-2 entry of existing group g (gk) to
// what the policies want.
func (t *spdTable) syncSource(w spdWriter, gk groupKey, g *spdGroup, s netip.Prefix) error {
	sp := pfxOf(s)
	old, had := g.src.get(sp)
	v, ok := t.desiredSource(gk.ifindex, gk.dst, s)
	switch {
	case ok && (!had || old != v):
		if err := w.putSrc(srcKey{g.id, s}, v); err != nil {
			return err
		}
		g.src.put(sp, v)
	case !ok && had:
		if err := w.delSrc(srcKey{g.id, s}); err != nil {
			return err
		}
		g.src.del(sp)
	}
	if !g.installed {
		if err := w.putDst(gk, g.id); err != nil {
			return err
		}
		g.installed = true
	}
	return nil
}

// desiredSource is desired's entry for source s alone: the policy of
// source s with the longest destination covering d.
func (t *spdTable) desiredSource(ifindex int, d, s netip.Prefix) (spdValue, bool) {
	sp := pfxOf(s)
	for l := d.Bits(); l >= 0; l-- {
		r, _ := d.Addr().Prefix(l)
		if v, ok := t.policies[policyKey{int32(ifindex), sp, pfxOf(r)}]; ok {
			return v, true
		}
	}
	return spdValue{}, false
}

// syncAll syncs groups dsts; only is as for syncGroup.
func (t *spdTable) syncAll(w spdWriter, ifindex int, dsts []netip.Prefix, only *netip.Prefix) error {
	for _, d := range dsts {
		if err := t.syncGroup(w, ifindex, d, only); err != nil {
			return err
		}
	}
	return nil
}

// set adds or replaces a policy and syncs the groups it bears on. On a
// write error the policy change is undone (and synced back, best effort).
func (t *spdTable) set(w spdWriter, p Policy) error {
	p, err := p.normalize()
	if err != nil {
		return err
	}
	k := p.key()
	old, had := t.policies[k]
	if !had || old.id == p.ID {
		return t.put(w, p, k, old, had)
	}
	// Another policy's selectors: it stays, behind p.
	if t.shadowed == nil {
		t.shadowed = map[policyKey]*shadowList{}
	}
	sh := t.shadowed[k]
	if sh == nil {
		sh = &shadowList{at: map[uint32]int32{}}
		t.shadowed[k] = sh
	}
	behind, wasBehind := sh.at[p.ID] // p was behind: it is in front now
	delete(sh.at, p.ID)
	sh.push(old)
	if err := t.put(w, p, k, old, had); err != nil {
		sh.pop()
		if wasBehind {
			sh.at[p.ID] = behind
		}
		if len(sh.at) == 0 {
			delete(t.shadowed, k)
		}
		return err
	}
	return nil
}

// shadowList is the policies behind an entry's, oldest first, and where
// each live one is, so that neither a set nor a removal scans them: every
// tunnel of a load generator has the same selectors, a million policies
// behind one entry, and a scan per set made a million sets quadratic. A
// policy removed from behind leaves its slot, dead, until the newest are
// popped past it or the dead are most of the list.
type shadowList struct {
	vals []spdValue
	at   map[uint32]int32 // live policy ID -> its index in vals
}

func (l *shadowList) push(v spdValue) {
	l.at[v.id] = int32(len(l.vals))
	l.vals = append(l.vals, v)
}

// pop takes the newest live policy off the list.
func (l *shadowList) pop() (spdValue, bool) {
	for n := len(l.vals); n > 0; n = len(l.vals) {
		v := l.vals[n-1]
		l.vals = l.vals[:n-1]
		if i, ok := l.at[v.id]; ok && int(i) == n-1 {
			delete(l.at, v.id)
			return v, true
		}
	}
	return spdValue{}, false
}

// drop takes policy id off the list wherever it is, and compacts the list
// once the dead slots are most of it.
func (l *shadowList) drop(id uint32) {
	if _, ok := l.at[id]; !ok {
		return
	}
	delete(l.at, id)
	if len(l.vals) < 16 || len(l.vals) < 2*len(l.at) {
		return
	}
	live := l.vals[:0]
	for i, v := range l.vals {
		if j, ok := l.at[v.id]; ok && int(j) == i {
			l.at[v.id] = int32(len(live))
			live = append(live, v)
		}
	}
	clear(l.vals[len(live):])
	l.vals = slices.Clip(live)
}

// remove takes policy p.ID off the entry of p's selectors: the entry goes
// with the last policy that had it and otherwise names the newest one
// left. A policy not there is no error.
func (t *spdTable) remove(w spdWriter, p Policy) error {
	p, err := p.normalize()
	if err != nil {
		return err
	}
	k := p.key()
	v, had := t.policies[k]
	switch {
	case !had:
		return nil
	case v.id != p.ID:
		if sh := t.shadowed[k]; sh != nil {
			sh.drop(p.ID)
			if len(sh.at) == 0 {
				delete(t.shadowed, k)
			}
		}
		return nil
	}
	sh := t.shadowed[k]
	if sh == nil {
		return t.delete(w, p.Ifindex, p.Local, p.Remote)
	}
	newest, ok := sh.pop()
	if !ok {
		delete(t.shadowed, k)
		return t.delete(w, p.Ifindex, p.Local, p.Remote)
	}
	if len(sh.at) == 0 {
		delete(t.shadowed, k)
	}
	if err := t.put(w, k.policy(newest), k, v, true); err != nil {
		if len(sh.at) == 0 {
			t.shadowed[k] = sh
		}
		sh.push(newest)
		return err
	}
	return nil
}

// put makes p, of key k, the policy of its entry, whose policy was old if
// it had one, and syncs the groups it bears on; a write error undoes it.
func (t *spdTable) put(w spdWriter, p Policy, k policyKey, old spdValue, had bool) error {
	fam := family(p.Remote)
	if !had {
		if t.max > 0 && t.count[fam] >= t.max {
			return fmt.Errorf("steer: policy %d %v -> %v on ifindex %d: %w", p.ID, p.Local, p.Remote, p.Ifindex,
				&TableFullError{Map: dstMapName(fam), IPv6: fam == 1, Size: t.max, Policies: t.count[fam]})
		}
		t.count[fam]++
	}
	t.policies[k] = p.value()
	t.index(p)
	dsts := t.affected(p.Ifindex, p.Remote)
	if err := t.syncAll(w, p.Ifindex, dsts, &p.Local); err != nil {
		if had {
			t.policies[k] = old
		} else {
			delete(t.policies, k)
			t.unindex(p)
			t.count[fam]--
		}
		_ = t.syncAll(w, p.Ifindex, t.affected(p.Ifindex, p.Remote), nil)
		var full *TableFullError
		if errors.As(err, &full) {
			full.Policies = t.count[fam]
		}
		return fmt.Errorf("steer: policy %d %v -> %v on ifindex %d: %w", p.ID, p.Local, p.Remote, p.Ifindex, err)
	}
	return nil
}

// delete removes the entry with these selectors, if any, with every
// policy set on it.
func (t *spdTable) delete(w spdWriter, ifindex int, local, remote netip.Prefix) error {
	k := policyKey{int32(ifindex), pfxOf(local.Masked()), pfxOf(remote.Masked())}
	v, had := t.policies[k]
	if !had {
		return fmt.Errorf("steer: no policy %v -> %v on ifindex %d", local, remote, ifindex)
	}
	old := k.policy(v)
	dsts := t.affected(ifindex, old.Remote)
	delete(t.policies, k)
	t.unindex(old)
	t.count[family(old.Remote)]--
	if err := t.syncAll(w, ifindex, dsts, &old.Local); err != nil {
		t.policies[k] = v
		t.index(old)
		t.count[family(old.Remote)]++
		_ = t.syncAll(w, ifindex, t.affected(ifindex, old.Remote), nil)
		return fmt.Errorf("steer: delete policy %d %v -> %v on ifindex %d: %w", old.ID, local, remote, ifindex, err)
	}
	delete(t.shadowed, k)
	return nil
}

func dstMapName(fam int) string {
	if fam == 0 {
		return "spd4_dst"
	}
	return "spd6_dst"
}

// list returns the policies.
func (t *spdTable) list() []Policy {
	out := make([]Policy, 0, len(t.policies))
	for k, v := range t.policies {
		out = append(out, k.policy(v))
	}
	return out
}

// prefixSet maps prefixes to V, as a slice while it holds a few (a
// tunnel's group has one source, its destination one policy) and as a
// map once it holds more (one remote subnet for thousands of local ones),
// so that it costs tens of bytes where a map costs hundreds, yet stays one
// lookup at any size. The zero value is empty.
type prefixSet[V comparable] struct {
	few  []prefixEntry[V]
	many map[keyPrefix]V
}

type prefixEntry[V comparable] struct {
	p keyPrefix
	v V
}

// prefixSetFew is the most entries a prefixSet keeps in its slice.
const prefixSetFew = 8

func (s *prefixSet[V]) len() int { return len(s.few) + len(s.many) }

func (s *prefixSet[V]) get(p keyPrefix) (V, bool) {
	if s.many != nil {
		v, ok := s.many[p]
		return v, ok
	}
	for i := range s.few {
		if s.few[i].p == p {
			return s.few[i].v, true
		}
	}
	var zero V
	return zero, false
}

func (s *prefixSet[V]) put(p keyPrefix, v V) {
	if s.many != nil {
		s.many[p] = v
		return
	}
	for i := range s.few {
		if s.few[i].p == p {
			s.few[i].v = v
			return
		}
	}
	if len(s.few) < prefixSetFew {
		s.few = append(s.few, prefixEntry[V]{p, v})
		return
	}
	s.many = make(map[keyPrefix]V, 2*prefixSetFew)
	for _, e := range s.few {
		s.many[e.p] = e.v
	}
	s.many[p] = v
	s.few = nil
}

func (s *prefixSet[V]) del(p keyPrefix) {
	if s.many != nil {
		delete(s.many, p)
		if len(s.many) == 0 {
			s.many = nil
		}
		return
	}
	for i := range s.few {
		if s.few[i].p == p {
			last := len(s.few) - 1
			s.few[i] = s.few[last]
			s.few[last] = prefixEntry[V]{}
			s.few = s.few[:last]
			if last == 0 {
				s.few = nil
			}
			return
		}
	}
}

// all yields the entries, in no particular order; the set must not change
// meanwhile (keys gives a copy to change it by).
func (s *prefixSet[V]) all() iter.Seq2[keyPrefix, V] {
	return func(yield func(keyPrefix, V) bool) {
		if s.many != nil {
			for p, v := range s.many {
				if !yield(p, v) {
					return
				}
			}
			return
		}
		for _, e := range s.few {
			if !yield(e.p, e.v) {
				return
			}
		}
	}
}

// keys returns the prefixes of the set.
func (s *prefixSet[V]) keys() []keyPrefix {
	out := make([]keyPrefix, 0, s.len())
	for p := range s.all() {
		out = append(out, p)
	}
	return out
}
