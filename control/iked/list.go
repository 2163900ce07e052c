package iked

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// listHead is what a page takes from one worker.
type listHead struct {
	l *loop
	*listBufs
	take int // how many of ids the page takes
	json []ikectl.IKESA
	wr   *saWriter // encodes them, on the worker's goroutine
}

// listBufs are a worker's share of a page, reused page after page
// (listPool): the page that goes out is a copy of them, and at a million
// IKE SAs iked's collector is better spared a page's worth of garbage.
type listBufs struct {
	// ids and kids are the UniqueIDs of the worker's next IKE SAs and
	// their Child SA counts; sas the SAs of those Child SAs (in and out
	// of each), in the same order.
	ids  []uint32
	kids []int
	sas  []api.SAID
	// The page's IKE SAs of this worker, encoded: packed entries in buf,
	// each ending at ends[i], with UniqueID got[i].
	buf  []byte
	ends []int
	got  []uint32
	// all are the whole page's Child SAs, asked about, and es spud's
	// answers (the first worker's listBufs hold them).
	all []api.SAID
	es  []api.SAStatsEntry
}

var listPool sync.Pool // *listBufs

// listSAs answers a page of IKE SAs (ikectl.SAsRequest), with the counters
// of their Child SAs: an ikectl.SAs in JSON, or a packed page (as base64 in
// the JSON, or as the reply's data).
//
// The IKE SAs are read where they are, on their workers' goroutines, not
// copied: first each worker's next UniqueIDs, with their Child SAs'
// SPIs, merged to find where the page ends (its size, or its budget of
// Child SAs); then the counters of those Child SAs alone, from spud (a
// dump of every SA would cost the table for each page); then each
// worker's IKE SAs up to there, encoded, and the workers' entries merged
// in UniqueID order. IKE SAs added between the steps come on the next
// page; one deleted meanwhile is left out.
func (d *Daemon) listSAs(req ikectl.SAsRequest) (any, error) {
	switch req.Encoding {
	case "", ikectl.EncodingPacked, ikectl.EncodingPackedData:
	default:
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "unknown encoding %q (%q, %q or none)", req.Encoding, ikectl.EncodingPackedData, ikectl.EncodingPacked)
	}
	most, children := ikectl.MaxSAsPage, ikectl.MaxPageChildren
	if req.Encoding == "" {
		most, children = ikectl.MaxJSONSAsPage, ikectl.MaxPageChildren/2
	}
	limit := req.Limit
	if limit <= 0 || limit > most {
		limit = most
	}
	heads := make([]listHead, len(d.loops))
	for i, l := range d.loops {
		heads[i].l = l
		heads[i].listBufs, _ = listPool.Get().(*listBufs)
		if heads[i].listBufs == nil {
			heads[i].listBufs = new(listBufs)
		}
		// A head that takes nothing keeps its buffers as the pool gave
		// them, and listReply reads them: an empty page would repeat the
		// previous page's IKE SAs.
		b := heads[i].listBufs
		b.buf, b.ends, b.got = b.buf[:0], b.ends[:0], b.got[:0]
	}
	err := d.onWorkers(heads, func(h *listHead, w *worker.Worker) {
		h.ids, h.kids, h.sas = h.ids[:0], h.kids[:0], h.sas[:0]
		w.VisitAfter(req.After, limit+1, func(ike *sa.IKESA) bool {
			h.ids = append(h.ids, ike.UniqueID)
			h.kids = append(h.kids, len(ike.Children))
			for _, ch := range ike.Children {
				h.sas = append(h.sas, api.SAID{SPI: ch.SPIIn, Dir: api.In}, api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: ike.Remote.Addr()})
			}
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	out := ikectl.SAs{}
	total := 0
	for i := range heads {
		total += len(heads[i].ids)
	}
	// Merged up to limit IKE SAs, or fewer where their Child SAs reach
	// MaxPageChildren.
	taken, kids := 0, 0
	for taken < limit {
		best := -1
		for i := range heads {
			h := &heads[i]
			if h.take < len(h.ids) && (best < 0 || h.ids[h.take] < heads[best].ids[heads[best].take]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		h := &heads[best]
		if k := h.kids[h.take]; taken > 0 && kids+k > children {
			break
		} else {
			kids += k
		}
		out.Next = h.ids[h.take]
		h.take++
		taken++
	}
	out.More = taken < total
	if taken == 0 {
		return d.listReply(req, &out, heads)
	}
	// The counters of this page's Child SAs only, in the order of the
	// workers' IKE SAs, which each writer follows.
	ids := slices.Grow(heads[0].all[:0], 2*kids)
	at := make([]int, len(heads))
	for i := range heads {
		h := &heads[i]
		n := 0
		for _, k := range h.kids[:h.take] {
			n += 2 * k
		}
		at[i] = len(ids)
		ids = append(ids, h.sas[:n]...)
	}
	var es []api.SAStatsEntry
	if c, cerr := d.dp.client(); cerr == nil && len(ids) > 0 {
		if r, serr := c.SAStatsTo(heads[0].es, ids); serr == nil {
			es, heads[0].es = r, r
		}
	}
	heads[0].all = ids
	now, scratch := time.Now(), req.Encoding != ""
	last := out.Next
	var busy []listHead
	for i := range heads {
		h := &heads[i]
		if h.take == 0 {
			continue
		}
		// A writer each: the workers encode at once.
		h.wr = &saWriter{d: d, now: now, scratch: scratch, ids: h.ids[:h.take], kids: h.kids[:h.take]}
		if es != nil {
			h.wr.es = es[at[i]:]
		}
		if scratch {
			// About 180 bytes an IKE SA and 140 a Child SA: room
			// enough that the page is not copied as it grows.
			n := 0
			for _, k := range h.kids[:h.take] {
				n += k
			}
			h.buf = slices.Grow(h.buf[:0], 192*h.take+160*n)
			h.ends, h.got = h.ends[:0], h.got[:0]
		} else {
			h.json = make([]ikectl.IKESA, 0, h.take)
		}
		busy = append(busy, *h)
	}
	err = d.onWorkers(busy, func(h *listHead, w *worker.Worker) {
		w.VisitAfter(req.After, h.take, func(ike *sa.IKESA) bool {
			if ike.UniqueID > last {
				return false
			}
			s := h.wr.fill(ike, h.l.idx)
			if scratch {
				h.buf = ikectl.AppendPackedIKESA(h.buf, s)
				h.ends = append(h.ends, len(h.buf))
				h.got = append(h.got, ike.UniqueID)
			} else {
				h.json = append(h.json, *s)
			}
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	r, err := d.listReply(req, &out, busy)
	// Copied into the reply: the buffers are free. Not after an error
	// above, where a worker may yet run its part.
	for i := range heads {
		listPool.Put(heads[i].listBufs)
	}
	return r, err
}

// onWorkers runs f on the worker of each head, every worker at once, and
// waits for them all: a page's IKE SAs are read and encoded by their
// workers in parallel, not one worker after the other.
func (d *Daemon) onWorkers(heads []listHead, f func(h *listHead, w *worker.Worker)) error {
	errs := make([]error, len(heads))
	var wg sync.WaitGroup
	for i := range heads {
		h := &heads[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.post(h.l, func(w *worker.Worker) { f(h, w) })
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// listReply merges the workers' encoded IKE SAs in UniqueID order into
// the reply req asked for.
func (d *Daemon) listReply(req ikectl.SAsRequest, out *ikectl.SAs, heads []listHead) (any, error) {
	pos := make([]int, len(heads))
	next := func() int {
		best := -1
		for i := range heads {
			if pos[i] < len(heads[i].got) && (best < 0 || heads[i].got[pos[i]] < heads[best].got[pos[best]]) {
				best = i
			}
		}
		return best
	}
	if req.Encoding == "" {
		for i := range heads {
			heads[i].got = heads[i].got[:0]
			for _, s := range heads[i].json {
				heads[i].got = append(heads[i].got, s.UniqueID)
			}
		}
		for best := next(); best >= 0; best = next() {
			if out.IKESAs == nil {
				out.IKESAs = make([]ikectl.IKESA, 0, ikectl.MaxJSONSAsPage)
			}
			out.IKESAs = append(out.IKESAs, heads[best].json[pos[best]])
			pos[best]++
		}
		return out, nil
	}
	n := 0
	for i := range heads {
		n += len(heads[i].buf)
	}
	page := make([]byte, 0, n)
	for best := next(); best >= 0; best = next() {
		h := &heads[best]
		start := 0
		if pos[best] > 0 {
			start = h.ends[pos[best]-1]
		}
		page = append(page, h.buf[start:h.ends[pos[best]]]...)
		pos[best]++
	}
	if req.Encoding == ikectl.EncodingPackedData {
		return unixrpc.WithData{Body: ikectl.SAs{Next: out.Next, More: out.More}, Data: page}, nil
	}
	out.Packed = page
	return packedReply(out), nil
}

// packedReply encodes a packed page as json.Marshal would, but straight
// into one buffer: Marshal would write the base64 of megabytes into a
// buffer of its own, grown as it goes, and copy it.
func packedReply(r *ikectl.SAs) json.RawMessage {
	b := make([]byte, 0, 64+base64.StdEncoding.EncodedLen(len(r.Packed)))
	b = append(b, `{"ike_sas":null`...)
	if r.Next != 0 {
		b = append(b, `,"next":`...)
		b = strconv.AppendUint(b, uint64(r.Next), 10)
	}
	if r.More {
		b = append(b, `,"more":true`...)
	}
	if len(r.Packed) > 0 {
		b = append(b, `,"packed":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Packed)
		b = append(b, '"')
	}
	return append(b, '}')
}

// saWriter makes the ikectl.IKESA of each IKE SA of a page. For a packed
// page (scratch) it is one value, written over for each IKE SA and
// encoded at once: its SPIs' text and its Child SAs' slices are the
// writer's memory, so that an IKE SA costs no allocation but the strings
// its caches do not hold yet. For a JSON page each is a value of its own.
type saWriter struct {
	d       *Daemon
	now     time.Time
	scratch bool
	// ids and kids are the worker's IKE SAs of the page, as step one
	// found them, and es the counters of their Child SAs (in and out of
	// each) in that order, nil without spud's answer; j and at are where
	// the next IKE SA's are.
	ids   []uint32
	kids  []int
	es    []api.SAStatsEntry
	j, at int

	ike      ikectl.IKESA
	children []ikectl.ChildSA
	ts       []string
	hex      [32]byte

	props map[proposalKey]string
	algs  map[suite.Algorithms]string
	sels  map[ipsec.Selector]string
}

// maxCached bounds each of a page's string caches.
const maxCached = 4096

// proposalKey is what Proposal.String writes: the protocol and each
// transform's type, ID and key length (not its attributes).
type proposalKey struct {
	proto suite.Protocol
	n     uint8
	t     [8]struct {
		ty     suite.TransformType
		id, kl uint16
	}
}

func (wr *saWriter) proposal(p *suite.Proposal) string {
	if len(p.Transforms) > len(proposalKey{}.t) {
		return p.String()
	}
	k := proposalKey{proto: p.Protocol, n: uint8(len(p.Transforms))}
	for i, t := range p.Transforms {
		k.t[i].ty, k.t[i].id, k.t[i].kl = t.Type, t.ID, t.KeyLength
	}
	if s, ok := wr.props[k]; ok {
		return s
	}
	s := p.String()
	if wr.props == nil {
		wr.props = map[proposalKey]string{}
	}
	if len(wr.props) < maxCached {
		wr.props[k] = s
	}
	return s
}

func (wr *saWriter) algorithms(a suite.Algorithms) string {
	if s, ok := wr.algs[a]; ok {
		return s
	}
	s := a.String()
	if wr.algs == nil {
		wr.algs = map[suite.Algorithms]string{}
	}
	if len(wr.algs) < maxCached {
		wr.algs[a] = s
	}
	return s
}

func (wr *saWriter) selector(x ipsec.Selector) string {
	if s, ok := wr.sels[x]; ok {
		return s
	}
	s := x.String()
	if wr.sels == nil {
		wr.sels = map[ipsec.Selector]string{}
	}
	if len(wr.sels) < maxCached {
		wr.sels[x] = s
	}
	return s
}

// selectors are the text of ts: in the writer's memory for a packed page,
// nil for none.
func (wr *saWriter) selectors(ts []ipsec.Selector) []string {
	if len(ts) == 0 {
		return nil
	}
	var l []string
	if wr.scratch {
		at := len(wr.ts)
		for _, x := range ts {
			wr.ts = append(wr.ts, wr.selector(x))
		}
		return wr.ts[at:len(wr.ts):len(wr.ts)]
	}
	for _, x := range ts {
		l = append(l, wr.selector(x))
	}
	return l
}

// spi is an SPI as 16 hex digits: for a packed page, text in the
// writer's memory (half of hex), good until the next IKE SA.
func (wr *saWriter) spi(v uint64, half int) string {
	if !wr.scratch {
		return hex16(v)
	}
	b := wr.hex[16*half : 16*half+16]
	for i := 15; i >= 0; i-- {
		b[i] = "0123456789abcdef"[v&0xf]
		v >>= 4
	}
	return unsafe.String(&b[0], 16)
}

// fill makes the ikectl.IKESA of ike, on worker's goroutine.
func (wr *saWriter) fill(ike *sa.IKESA, worker int) *ikectl.IKESA {
	lg, ph := wr.d.anchorOf(ike)
	var i *ikectl.IKESA
	if wr.scratch {
		i = &wr.ike
		wr.children, wr.ts = wr.children[:0], wr.ts[:0]
	} else {
		i = new(ikectl.IKESA)
	}
	*i = ikectl.IKESA{Conn: ike.ConnName, UniqueID: ike.UniqueID, State: ike.State.String(), Initiator: ike.Initiator,
		SPIi: wr.spi(ike.SPIi, 0), SPIr: wr.spi(ike.SPIr, 1), Local: ike.Local, Remote: ike.Remote,
		LocalID: ike.LocalID.String(), RemoteID: ike.RemoteID.String(), NATLocal: ike.NATLocal, NATRemote: ike.NATRemote,
		Established: ike.Established, Worker: worker, SPU: ph, Logical: lg,
		Counters:  ikectl.IKECounter{MsgIDOut: ike.MsgIDOut, MsgIDIn: ike.MsgIDIn},
		AuthLocal: ike.AuthLocal, AuthRemote: ike.AuthRemote, Fragmentation: ike.FragSend}
	if len(ike.Proposal.Transforms) > 0 {
		i.Proposal = wr.proposal(&ike.Proposal)
	}
	if !ike.RekeyAt.IsZero() {
		i.RekeyIn = ike.RekeyAt.Sub(wr.now).Round(time.Second)
	}
	es := wr.counters(ike)
	for k, ch := range ike.Children {
		suiteName := ""
		if s, err := task.DataPlaneSuite(ch.Alg); err == nil {
			suiteName = s.String()
		}
		c := ikectl.ChildSA{Name: ch.Name, UniqueID: ch.UniqueID, State: ch.State.String(), ReqID: ch.ReqID,
			SPIIn: ch.SPIIn, SPIOut: ch.SPIOut, Suite: suiteName, Proposal: wr.algorithms(ch.Alg), Encap: ch.Encap,
			Installed: ch.Installed, Policies: ch.PolicyIDs, Trap: ch.Trap, SPU: -1}
		if !wr.scratch {
			// Kept after the worker goes on: a copy of its own.
			c.Policies = slices.Clone(ch.PolicyIDs)
		}
		c.LocalTS = wr.selectors(ch.LocalTS)
		c.RemoteTS = wr.selectors(ch.RemoteTS)
		if !ch.RekeyAt.IsZero() {
			c.RekeyIn = ch.RekeyAt.Sub(wr.now).Round(time.Second)
		}
		if !ch.ExpireAt.IsZero() {
			c.ExpireIn = ch.ExpireAt.Sub(wr.now).Round(time.Second)
		}
		if es != nil {
			if x := &es[2*k]; x.Found && x.SPI == ch.SPIIn {
				// A Child SA lives on its IKE SA's anchor.
				c.BytesIn, c.PacketsIn, c.SPU = x.Stats.Bytes, x.Stats.Packets, ph
			}
			if x := &es[2*k+1]; x.Found && x.SPI == ch.SPIOut {
				c.BytesOut, c.PktsOut = x.Stats.Bytes, x.Stats.Packets
			}
		}
		if wr.scratch {
			wr.children = append(wr.children, c)
		} else {
			i.Children = append(i.Children, c)
		}
	}
	if wr.scratch && len(wr.children) > 0 {
		i.Children = wr.children
	}
	return i
}

// counters are the counters spud gave for ike's Child SAs, in and out of
// each: where step one's order has them (the IKE SAs before it that are
// gone since skipped), nil when it has none for ike or ike's Child SAs
// are not those it counted (its counters are then left out, as for SAs
// spud does not have). No lookup by SPI: the page's visit follows the
// order the counters were asked in.
func (wr *saWriter) counters(ike *sa.IKESA) []api.SAStatsEntry {
	for wr.j < len(wr.ids) && wr.ids[wr.j] < ike.UniqueID {
		wr.at += 2 * wr.kids[wr.j]
		wr.j++
	}
	if wr.j == len(wr.ids) || wr.ids[wr.j] != ike.UniqueID {
		return nil
	}
	n := 2 * wr.kids[wr.j]
	at := wr.at
	wr.at += n
	wr.j++
	if wr.es == nil || n != 2*len(ike.Children) || at+n > len(wr.es) {
		return nil
	}
	return wr.es[at : at+n]
}

// hex16 is fmt.Sprintf("%016x", v), for a page's thousands of SPIs.
func hex16(v uint64) string {
	var b [16]byte
	for i := 15; i >= 0; i-- {
		b[i] = "0123456789abcdef"[v&0xf]
		v >>= 4
	}
	return string(b[:])
}
