package spu

import (
	"net/netip"
	"unique"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/esp"
	"github.com/spugate/spugate/dataplane/fib"
	"github.com/spugate/spugate/ipsec"
)

// saDesc is what an SA's dump entry (sa.dump) and events need that its
// esp.SA does not hold: the rest (SPI, direction, addresses, ports, mode,
// suite, selectors, lifetimes) is read back from the esp.SA, which keeps
// them in any case, rather than kept twice in an api.SA (~450 bytes with
// its selectors, of the ~1 KiB a tunnel may take at a million).
type saDesc struct {
	reqid uint32
	// window is the replay window as given (0: the default, -1: off),
	// which the esp.SA keeps only as the size it made.
	window int32
	// name is interned (intern), not kept as a unique.Handle, 8 bytes
	// less: iked names each Child SA (conn/child/unique id), and a
	// handle kept alive per SA holds an entry of the unique package's
	// map and a weak pointer each, which the runtime then walks at every
	// collection.
	name string
}

// inSA is an inbound SA in its anchor SPU's table.
type inSA struct {
	sa      *esp.SA
	desc    saDesc
	logical uint16
}

// outSA is an outbound SA with its cached next hop.
type outSA struct {
	sa      *esp.SA
	desc    saDesc
	logical uint16
	nhOK    bool
	added   uint64 // install order: the newest of a reqid is active
	// nh is made at the SA's first packet: a fib.NextHop is 80 bytes,
	// which most of a million tunnels, idle, need not carry; nor the
	// generation of the tables it was read from, which it holds (the
	// outSA then takes the 64-byte size class, not 80).
	nh *nhCache
	// older is the outbound SA of the same reqid installed before this
	// one: a reqid's SAs are a list, newest first, whose head is the
	// active one (tables.active).
	older *outSA
}

// nhCache is an outbound SA's next hop as the router's tables of
// generation gen gave it.
type nhCache struct {
	fib.NextHop
	gen uint64
}

// outKey is an outbound SA's key in tables.out: its SPI and its peer's
// current address, unmapped, as 16 bytes (addr16): no pointer, where a
// netip.Addr has one for its zone, and 20 bytes rather than 32.
type outKey struct {
	spi    uint32
	remote [16]byte
}

// addr16 is an address as the SA keys (outKey, saRef) hold it: unmapped,
// then as 16 bytes, so that an IPv4 address and its IPv4-mapped form are
// one key.
func addr16(a netip.Addr) [16]byte { return a.Unmap().As16() }

// key is the outbound SA's key in tables.out.
func (o *outSA) key() outKey { return outKey{o.sa.SPI(), addr16(o.sa.Remote())} }

// policy is an outbound policy in its anchor SPU's table, in the one
// form spud keeps of it: its selectors compiled, shared with the SAs of
// its Child SA (and any policy or SA installed just before with the same
// ones: esp.CompileSelectors), its endpoints as 16 bytes. api gives back
// an api.Policy made from it; the copy of the api.Policy that policy.add
// took, with two selector slices of its own, cost ~350 bytes a tunnel.
type policy struct {
	id, reqid uint32
	logical   uint16
	action    polAction
	// lfam and rfam are the endpoints' families (4, 6; 0: none, as a
	// bypass or discard policy may have).
	lfam, rfam    uint8
	local, remote [16]byte
	ts            *esp.Selectors
	name          string
	// ifaces are the interfaces the policy is restricted to (nil: every
	// protected one, as nearly all are): a pointer, 16 bytes less than a
	// slice, keeps the policy in the 112-byte size class.
	ifaces  *[]string
	out     *outSA // the active outbound SA of reqid, or nil
	packets uint64
	acq     uint64
	lastAcq int64 // Unix nanoseconds: 8 bytes where a time.Time is 24
	// Counters read from other goroutines go through the SPU's command
	// queue (dump), so they need no atomics.
}

// polAction is api.Action in a byte.
type polAction uint8

const (
	polProtect polAction = iota
	polBypass
	polDiscard
)

var polActions = [...]api.Action{polProtect: api.Protect, polBypass: api.Bypass, polDiscard: api.Discard}

// newPolicy is p as its SPU keeps it, anchored on logical; p was
// validated (api.Policy.Validate).
func newPolicy(p *api.Policy, logical uint16) *policy {
	x := &policy{id: p.ID, reqid: p.ReqID, logical: logical, name: intern(p.Name),
		ts: esp.CompileSelectors(p.LocalTS, p.RemoteTS)}
	switch p.Action {
	case api.Bypass:
		x.action = polBypass
	case api.Discard:
		x.action = polDiscard
	}
	x.local, x.lfam = packAddr(p.Local)
	x.remote, x.rfam = packAddr(p.Remote)
	if len(p.Interfaces) > 0 {
		ifs := make([]string, len(p.Interfaces))
		for i, n := range p.Interfaces {
			ifs[i] = intern(n)
		}
		x.ifaces = &ifs
	}
	return x
}

func packAddr(a netip.Addr) ([16]byte, uint8) {
	switch {
	case a.Is4():
		return a.As16(), 4
	case a.Is6():
		return a.As16(), 6
	}
	return [16]byte{}, 0
}

func unpackAddr(b *[16]byte, fam uint8) netip.Addr {
	switch fam {
	case 4:
		return netip.AddrFrom4([4]byte(b[12:]))
	case 6:
		return netip.AddrFrom16(*b)
	}
	return netip.Addr{}
}

// api is the policy as policy.add took it (its selectors as the SPU
// matches them: see canonicalPolicy), with its logical SPU. It
// allocates: for dumps and deletes, not for packets.
func (p *policy) api() api.Policy {
	a := api.Policy{ID: p.id, ReqID: p.reqid, Action: polActions[p.action], Local: unpackAddr(&p.local, p.lfam),
		Remote: unpackAddr(&p.remote, p.rfam), Logical: api.Logical(int(p.logical)), Name: p.name}
	a.LocalTS, a.RemoteTS = p.ts.Selectors()
	if p.ifaces != nil {
		a.Interfaces = append([]string(nil), *p.ifaces...)
	}
	return a
}

// canonicalSelectors reports whether selectors come back from the SPU's
// compiled form as they are: no IPv4-mapped address, no zone. A policy's
// steering entries are made from its selectors when it is added and
// again, from what its SPU gives back, when it is deleted: the two must
// be the same.
func canonicalSelectors(ts []ipsec.Selector) bool {
	for _, s := range ts {
		if s.From.Is4In6() || s.To.Is4In6() || s.From.Zone() != "" || s.To.Zone() != "" {
			return false
		}
	}
	return true
}

// canonicalPolicy gives p's selectors the form its SPU keeps, when they
// have another (see canonicalSelectors).
func canonicalPolicy(p *api.Policy) {
	if canonicalSelectors(p.LocalTS) && canonicalSelectors(p.RemoteTS) {
		return
	}
	p.LocalTS, p.RemoteTS = esp.CompileSelectors(p.LocalTS, p.RemoteTS).Selectors()
}

// matches is the exact match of a packet's flow against the policy's
// selectors (never empty, by api.Policy.Validate; a policy without would
// match nothing, where ipsec.MatchAny lets anything through an SA
// without).
func (p *policy) matches(f *flow) bool {
	if p.ts == nil {
		return false
	}
	sport, dport := ipsec.NoPort, ipsec.NoPort
	if f.hasPorts {
		sport, dport = int(f.sport), int(f.dport)
	}
	v4 := f.src.Is4()
	hi, lo := ipsec.AddrWords(f.src)
	if !ipsec.MatchAny(p.ts.Local(), v4, hi, lo, f.proto, sport) {
		return false
	}
	hi, lo = ipsec.AddrWords(f.dst)
	return ipsec.MatchAny(p.ts.Remote(), f.dst.Is4(), hi, lo, f.proto, dport)
}

// tables are one SPU's SAs and policies. Only the SPU's goroutine touches
// them; the control plane changes them through commands.
type tables struct {
	in  map[uint32]*inSA
	out map[outKey]*outSA
	// active is, by reqid, the outbound SA policies use: the newest, the
	// head of the reqid's list of outbound SAs (outSA.older), so that a
	// change of one tunnel's outbound SAs costs the tunnel's size, not the
	// table's. A reqid has an outbound SA or two (three during a rekey).
	active   map[uint32]*outSA
	policies map[uint32]*policy
	// polBy holds the policies by reqid, as idSets: bypass and discard
	// policies all have reqid 0.
	polBy map[uint32]idSet
	// byDst files each policy under the prefixes of its remote selectors,
	// and dstLens counts them by family and length, so that the exact
	// match (findPolicy) reads the policies whose remote selectors cover
	// the packet's destination: one map lookup per prefix length in use.
	// A packet the steering program's prefix match cannot settle (a port
	// or protocol the policy it found does not take) would otherwise cost
	// a walk over every policy of the SPU, a million at scale, and anyone
	// on the protected side can send such packets.
	byDst   map[dstKey]idSet
	dstLens [2][129]int32
	addSeq  uint64
	// tunnels counts the policies that protect (spu.list reads it).
	tunnels int
	// owner is the SPU's, which each SA it takes is given: the totals of
	// the SAs' drops, and the list that cools idle SAs (esp.Owner).
	owner *esp.Owner
}

// sweepBatch is how many warm SAs one turn of an SPU's loop looks at while
// it cools the idle ones (esp.Owner.Sweep): a few microseconds at most.
// sweepIdleBatch is for a turn without work, which an adaptive SPU may
// follow with a sleep of up to MaxSleep: 4,096 at ten turns a second look
// at a million SAs in half a minute, where 64 took half an hour.
const (
	sweepBatch     = 64
	sweepIdleBatch = 4096
)

// idSet is a set of policies by id: the policy itself while it holds
// one (a tunnel's /32 or reqid has one policy), then a slice while it
// holds a few and a map once it holds more (idMore), so that it costs 16
// bytes a set where a map of its own cost ~200, and no allocation while
// it has one, yet stays one lookup at any size. The zero value is empty;
// it is a value, so a change is stored back where the set lives.
type idSet struct {
	one  *policy // the set's one policy, nil when it has none or several
	more *idMore // the set's policies when it has several
}

// idMore is the policies of an idSet of several.
type idMore struct {
	few  []*policy
	many map[uint32]*policy
}

// idSetFew is the most policies an idSet keeps in its slice.
const idSetFew = 8

func (s *idSet) len() int {
	switch {
	case s.one != nil:
		return 1
	case s.more != nil:
		return len(s.more.few) + len(s.more.many)
	}
	return 0
}

func (s *idSet) has(id uint32) bool {
	if s.one != nil {
		return s.one.id == id
	}
	if s.more == nil {
		return false
	}
	if s.more.many != nil {
		_, ok := s.more.many[id]
		return ok
	}
	for _, p := range s.more.few {
		if p.id == id {
			return true
		}
	}
	return false
}

// add adds p (a policy of the same id is replaced).
func (s *idSet) add(p *policy) {
	switch {
	case s.one == nil && s.more == nil:
		s.one = p
		return
	case s.one != nil && s.one.id == p.id:
		s.one = p
		return
	case s.one != nil:
		s.more = &idMore{few: []*policy{s.one}}
		s.one = nil
	}
	m := s.more
	if m.many != nil {
		m.many[p.id] = p
		return
	}
	for i, q := range m.few {
		if q.id == p.id {
			m.few[i] = p
			return
		}
	}
	if len(m.few) < idSetFew {
		m.few = append(m.few, p)
		return
	}
	m.many = make(map[uint32]*policy, 2*idSetFew)
	for _, q := range m.few {
		m.many[q.id] = q
	}
	m.many[p.id] = p
	m.few = nil
}

func (s *idSet) del(id uint32) {
	if s.one != nil {
		if s.one.id == id {
			s.one = nil
		}
		return
	}
	m := s.more
	if m == nil {
		return
	}
	if m.many != nil {
		delete(m.many, id)
	} else {
		for i, q := range m.few {
			if q.id == id {
				last := len(m.few) - 1
				m.few[i], m.few[last] = m.few[last], nil
				m.few = m.few[:last]
				break
			}
		}
	}
	// Down to one, the set holds it again without its idMore.
	switch len(m.few) + len(m.many) {
	case 0:
		s.more = nil
	case 1:
		for _, p := range m.few {
			s.one = p
		}
		for _, p := range m.many {
			s.one = p
		}
		s.more = nil
	}
}

// each calls f for each policy (in no particular order); f must not
// change the set.
func (s *idSet) each(f func(*policy)) {
	if s.one != nil {
		f(s.one)
	}
	if s.more == nil {
		return
	}
	for _, p := range s.more.few {
		f(p)
	}
	for _, p := range s.more.many {
		f(p)
	}
}

// dstKey is a prefix as byDst keys it: 18 bytes without a pointer, where
// a netip.Prefix is 32 with one (its address's zone).
type dstKey struct {
	a    [16]byte // IPv4 as IPv4-mapped
	bits uint8
	v6   bool
}

func dstKeyOf(p netip.Prefix) dstKey {
	a := p.Addr()
	return dstKey{a: a.As16(), bits: uint8(p.Bits()), v6: a.Is6()}
}

func newTables(owner *esp.Owner) tables {
	return tables{
		owner:    owner,
		in:       map[uint32]*inSA{},
		out:      map[outKey]*outSA{},
		active:   map[uint32]*outSA{},
		policies: map[uint32]*policy{},
		polBy:    map[uint32]idSet{},
		byDst:    map[dstKey]idSet{},
	}
}

// relink points every policy of reqid at the active outbound SA, after the
// set of outbound SAs of that reqid changed.
func (t *tables) relink(reqid uint32) {
	best := t.active[reqid]
	pols := t.polBy[reqid]
	pols.each(func(p *policy) { p.out = best })
}

// intern returns the one copy of a name (a connection/child, shared by
// every tunnel of a connection) that the tables keep, rather than the
// copy each request decoded: 16 bytes for each SA and policy.
func intern(name string) string {
	if name == "" {
		return ""
	}
	return unique.Make(name).Value()
}

// addIn installs an inbound SA.
func (t *tables) addIn(x *inSA) {
	x.desc.name = intern(x.desc.name)
	t.in[x.sa.SPI()] = x
	x.sa.SetOwner(t.owner)
}

// delIn removes an inbound SA, and its cipher state from the SPU's list.
func (t *tables) delIn(spi uint32) {
	if x, ok := t.in[spi]; ok {
		delete(t.in, spi)
		x.sa.Release()
	}
}

func (t *tables) addOut(o *outSA) {
	o.desc.name = intern(o.desc.name)
	o.sa.SetOwner(t.owner)
	t.addSeq++
	o.added = t.addSeq
	t.out[o.key()] = o
	o.older = t.active[o.desc.reqid]
	t.active[o.desc.reqid] = o
	t.relink(o.desc.reqid)
}

func (t *tables) delOut(k outKey) (*outSA, bool) {
	o, ok := t.out[k]
	if !ok {
		return nil, false
	}
	t.unlinkOut(k, o)
	t.relink(o.desc.reqid)
	o.sa.Release()
	return o, true
}

// rekeyOut files the outbound SA under from again under to (its remote
// changed); it stays the same SA, active or not.
func (t *tables) rekeyOut(from, to outKey) {
	o, ok := t.out[from]
	if !ok || from == to {
		return
	}
	delete(t.out, from)
	t.out[to] = o
}

// unlinkOut removes an outbound SA from the indexes (the caller relinks).
func (t *tables) unlinkOut(k outKey, o *outSA) {
	delete(t.out, k)
	r := o.desc.reqid
	switch head := t.active[r]; {
	case head == o && o.older == nil:
		delete(t.active, r)
	case head == o:
		t.active[r] = o.older
	default:
		for x := head; x != nil; x = x.older {
			if x.older == o {
				x.older = o.older
				break
			}
		}
	}
	o.older = nil
}

func (t *tables) addPolicy(p *policy) {
	t.policies[p.id] = p
	m := t.polBy[p.reqid]
	m.add(p)
	t.polBy[p.reqid] = m
	p.out = t.active[p.reqid]
	t.fileByDst(p, true)
	if p.action == polProtect {
		t.tunnels++
	}
}

// fileByDst adds p to byDst (add) or takes it out.
func (t *tables) fileByDst(p *policy, add bool) {
	_, remote := p.ts.Selectors()
	for _, rs := range remote {
		for _, pfx := range rs.Prefixes() {
			fam := family(pfx.Addr())
			k := dstKeyOf(pfx)
			m, ok := t.byDst[k]
			if add {
				if !m.has(p.id) {
					m.add(p)
					t.byDst[k] = m
					t.dstLens[fam][pfx.Bits()]++
				}
				continue
			}
			if ok && m.has(p.id) {
				m.del(p.id)
				t.dstLens[fam][pfx.Bits()]--
				if m.len() == 0 {
					delete(t.byDst, k)
				} else {
					t.byDst[k] = m
				}
			}
		}
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func (t *tables) delPolicy(id uint32) {
	p, ok := t.policies[id]
	if !ok {
		return
	}
	delete(t.policies, id)
	t.fileByDst(p, false)
	if p.action == polProtect {
		t.tunnels--
	}
	if m, ok := t.polBy[p.reqid]; ok {
		m.del(id)
		if m.len() == 0 {
			delete(t.polBy, p.reqid)
		} else {
			t.polBy[p.reqid] = m
		}
	}
}

// findPolicy is the exact SPD match (the lowest policy id that matches),
// for a packet the steering program's prefix match sent to a policy whose
// ports or protocol it does not fit: among the policies filed under each
// prefix of the destination (byDst), not every policy of the SPU.
func (t *tables) findPolicy(f *flow) *policy {
	var best *policy
	fam := family(f.dst)
	lens := &t.dstLens[fam]
	for bits := 0; bits <= f.dst.BitLen(); bits++ {
		if lens[bits] == 0 {
			continue
		}
		pfx, err := f.dst.Prefix(bits)
		if err != nil {
			continue
		}
		// Not idSet.each: a closure here might cost an allocation per
		// packet.
		set := t.byDst[dstKeyOf(pfx)]
		if p := set.one; p != nil && p.matches(f) && (best == nil || p.id < best.id) {
			best = p
		}
		if m := set.more; m != nil {
			for _, p := range m.few {
				if p.matches(f) && (best == nil || p.id < best.id) {
					best = p
				}
			}
			for _, p := range m.many {
				if p.matches(f) && (best == nil || p.id < best.id) {
					best = p
				}
			}
		}
	}
	return best
}
