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
	name   string
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
	nhGen   uint64
	// nh is made at the SA's first packet: a fib.NextHop is 80 bytes,
	// which most of a million tunnels, idle, need not carry.
	nh *fib.NextHop
	// older is the outbound SA of the same reqid installed before this
	// one: a reqid's SAs are a list, newest first, whose head is the
	// active one (tables.active).
	older *outSA
}

type outKey struct {
	spi    uint32
	remote netip.Addr
}

// key is the outbound SA's key in tables.out: its SPI and its peer's
// current address.
func (o *outSA) key() outKey { return outKey{o.sa.SPI(), o.sa.Remote()} }

// policy is an outbound policy in its anchor SPU's table.
type policy struct {
	p       api.Policy
	logical uint16
	out     *outSA // the active outbound SA of p.ReqID, or nil
	packets uint64
	acq     uint64
	lastAcq int64 // Unix nanoseconds: 8 bytes where a time.Time is 24
	// Counters read from other goroutines go through the SPU's command
	// queue (dump), so they need no atomics.
}

func (p *policy) matches(f *flow) bool {
	return tsMatch(p.p.LocalTS, f.src, f.proto, f.sport, f.hasPorts) &&
		tsMatch(p.p.RemoteTS, f.dst, f.proto, f.dport, f.hasPorts)
}

// tsMatch: a packet without ports (a later fragment) matches only selectors
// whose port range is full, as RFC 4301 5.2 asks for OPAQUE ports.
func tsMatch(ts []ipsec.Selector, a netip.Addr, proto uint8, port uint16, hasPorts bool) bool {
	for i := range ts {
		if ts[i].Matches(a, proto, port, hasPorts) {
			return true
		}
	}
	return false
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
	byDst   map[netip.Prefix]idSet
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

// idSet is a set of policies by id: a slice while it holds a few (a
// tunnel's /32 or reqid has one policy) and a map once it holds more, so
// that it costs 16 bytes a policy where a map of its own cost ~200, yet
// stays one lookup at any size. The zero value is empty; it is a value,
// so a change is stored back where the set lives.
type idSet struct {
	few  []*policy
	many map[uint32]*policy
}

// idSetFew is the most policies an idSet keeps in its slice.
const idSetFew = 8

func (s *idSet) len() int { return len(s.few) + len(s.many) }

func (s *idSet) has(id uint32) bool {
	if s.many != nil {
		_, ok := s.many[id]
		return ok
	}
	for _, p := range s.few {
		if p.p.ID == id {
			return true
		}
	}
	return false
}

// add adds p (a policy of the same id is replaced).
func (s *idSet) add(p *policy) {
	if s.many != nil {
		s.many[p.p.ID] = p
		return
	}
	for i, q := range s.few {
		if q.p.ID == p.p.ID {
			s.few[i] = p
			return
		}
	}
	if len(s.few) < idSetFew {
		s.few = append(s.few, p)
		return
	}
	s.many = make(map[uint32]*policy, 2*idSetFew)
	for _, q := range s.few {
		s.many[q.p.ID] = q
	}
	s.many[p.p.ID] = p
	s.few = nil
}

func (s *idSet) del(id uint32) {
	if s.many != nil {
		delete(s.many, id)
		if len(s.many) == 0 {
			s.many = nil
		}
		return
	}
	for i, q := range s.few {
		if q.p.ID == id {
			last := len(s.few) - 1
			s.few[i], s.few[last] = s.few[last], nil
			s.few = s.few[:last]
			if last == 0 {
				s.few = nil
			}
			return
		}
	}
}

// each calls f for each policy (in no particular order); f must not
// change the set.
func (s *idSet) each(f func(*policy)) {
	for _, p := range s.few {
		f(p)
	}
	for _, p := range s.many {
		f(p)
	}
}

func newTables(owner *esp.Owner) tables {
	return tables{
		owner:    owner,
		in:       map[uint32]*inSA{},
		out:      map[outKey]*outSA{},
		active:   map[uint32]*outSA{},
		policies: map[uint32]*policy{},
		polBy:    map[uint32]idSet{},
		byDst:    map[netip.Prefix]idSet{},
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
	p.p.Name = intern(p.p.Name)
	t.policies[p.p.ID] = p
	m := t.polBy[p.p.ReqID]
	m.add(p)
	t.polBy[p.p.ReqID] = m
	p.out = t.active[p.p.ReqID]
	t.fileByDst(p, true)
	if p.p.Action == api.Protect {
		t.tunnels++
	}
}

// fileByDst adds p to byDst (add) or takes it out.
func (t *tables) fileByDst(p *policy, add bool) {
	for _, rs := range p.p.RemoteTS {
		for _, pfx := range rs.Prefixes() {
			fam := family(pfx.Addr())
			m, ok := t.byDst[pfx]
			if add {
				if !m.has(p.p.ID) {
					m.add(p)
					t.byDst[pfx] = m
					t.dstLens[fam][pfx.Bits()]++
				}
				continue
			}
			if ok && m.has(p.p.ID) {
				m.del(p.p.ID)
				t.dstLens[fam][pfx.Bits()]--
				if m.len() == 0 {
					delete(t.byDst, pfx)
				} else {
					t.byDst[pfx] = m
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
	if p.p.Action == api.Protect {
		t.tunnels--
	}
	if m, ok := t.polBy[p.p.ReqID]; ok {
		m.del(id)
		if m.len() == 0 {
			delete(t.polBy, p.p.ReqID)
		} else {
			t.polBy[p.p.ReqID] = m
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
		set := t.byDst[pfx]
		for _, p := range set.few {
			if p.matches(f) && (best == nil || p.p.ID < best.p.ID) {
				best = p
			}
		}
		for _, p := range set.many {
			if p.matches(f) && (best == nil || p.p.ID < best.p.ID) {
				best = p
			}
		}
	}
	return best
}
