package spud

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/dataplane/steer"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/vishvananda/netlink"
)

// An allocated SPI is held for an SA this long (an IKE exchange's worth).
const spiHold = 2 * time.Minute

func (d *Daemon) handlers() {
	s := d.srv
	d.operatorHandlers()
	s.Handle(api.OpHello, func(body json.RawMessage) (any, error) {
		var req api.HelloRequest
		if len(body) > 0 {
			if err := unixrpc.Decode(body, &req); err != nil {
				return nil, err
			}
		}
		d.log.Info("spud: client hello", "client", req.Client)
		return d.hello(), nil
	})
	s.Handle(api.OpSPIAlloc, func(body json.RawMessage) (any, error) {
		req, err := decode[api.SPIAllocRequest](body)
		if err != nil {
			return nil, err
		}
		return d.allocSPI(req)
	})
	s.Handle(api.OpSAAdd, func(body json.RawMessage) (any, error) {
		sa, err := decode[api.SA](body)
		if err != nil {
			return nil, err
		}
		return nil, d.addSA(sa)
	})
	s.Handle(api.OpSADel, func(body json.RawMessage) (any, error) {
		id, err := decode[api.SAID](body)
		if err != nil {
			return nil, err
		}
		return nil, d.delSA(*id)
	})
	s.Handle(api.OpSAUpdate, func(body json.RawMessage) (any, error) {
		u, err := decode[api.SAUpdate](body)
		if err != nil {
			return nil, err
		}
		return nil, d.eng.UpdateSA(u)
	})
	s.Handle(api.OpSADump, func(body json.RawMessage) (any, error) {
		req, err := dumpRequest(body)
		if err != nil {
			return nil, err
		}
		if req.Keys {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "spud keeps no key material outside the SAs' cipher state: dump without keys")
		}
		switch req.Encoding {
		case api.EncodingPacked:
			return packedPage(d.eng.PackedSAPage(req.After, req.Limit, pageBytes/4*3)), nil
		case api.EncodingPackedData:
			pg := d.eng.PackedSAPage(req.After, req.Limit, pageBytes)
			return unixrpc.WithData{Body: api.SADump{Next: pg.Next, More: pg.More, Missing: pg.Missing, MissingReason: pg.MissingReason},
				Data: pg.SAs}, nil
		}
		pg := d.eng.SAPage(req.After, req.Limit)
		return pageReply(pg, func(sas []api.SAState, next uint64, more bool) any {
			return api.SADump{SAs: sas, Next: next, More: more, Missing: pg.Missing, MissingReason: pg.MissingReason}
		})
	})
	s.Handle(api.OpSAStats, func(body json.RawMessage) (any, error) {
		req, err := decode[api.SAStatsRequest](body)
		if err != nil {
			return nil, err
		}
		return api.AnswerSAStats(req, func(ids []api.SAID) ([]api.SAStatsEntry, error) {
			r, err := d.saStats(ids)
			return r.SAs, err
		})
	})
	s.Handle(api.OpPolicyAdd, func(body json.RawMessage) (any, error) {
		p, err := decode[api.Policy](body)
		if err != nil {
			return nil, err
		}
		return d.addPolicy(*p)
	})
	s.Handle(api.OpChildAdd, func(body json.RawMessage) (any, error) {
		req, err := decodeChildAdd(body)
		if err != nil {
			return nil, err
		}
		return d.addChild(req)
	})
	s.Handle(api.OpChildDel, func(body json.RawMessage) (any, error) {
		req, err := decode[api.ChildDel](body)
		if err != nil {
			return nil, err
		}
		return nil, d.delChild(req)
	})
	s.Handle(api.OpPolicyDel, func(body json.RawMessage) (any, error) {
		id, err := decode[api.PolicyID](body)
		if err != nil {
			return nil, err
		}
		return nil, d.delPolicy(id.ID)
	})
	s.Handle(api.OpPolicyDump, func(body json.RawMessage) (any, error) {
		req, err := dumpRequest(body)
		if err != nil {
			return nil, err
		}
		if req.Encoding != "" {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%s: encoding %q not known: policies are dumped in JSON (no encoding)", api.OpPolicyDump, req.Encoding)
		}
		pg := d.eng.PolicyPage(req.After, req.Limit)
		return pageReply(pg, func(ps []api.PolicyState, next uint64, more bool) any {
			return api.PolicyDump{Policies: ps, Next: next, More: more, Missing: pg.Missing, MissingReason: pg.MissingReason}
		})
	})
	s.Handle(api.OpStats, func(json.RawMessage) (any, error) { return d.stats(), nil })
	s.Handle(api.OpSPUDrain, func(body json.RawMessage) (any, error) {
		r, err := decode[api.SPURequest](body)
		if err != nil {
			return nil, err
		}
		if _, err := d.eng.Drain(r.ID); err != nil {
			return nil, err
		}
		d.mapChanged("drain", r.ID)
		return d.spuList(), nil
	})
	s.Handle(api.OpSPUAdd, func(body json.RawMessage) (any, error) {
		r, err := decode[api.SPURequest](body)
		if err != nil {
			return nil, err
		}
		if _, err := d.eng.Add(r.ID); err != nil {
			return nil, err
		}
		d.mapChanged("add", r.ID)
		return d.spuList(), nil
	})
	s.Handle(api.OpSPUMapSet, func(body json.RawMessage) (any, error) {
		r, err := decode[api.SPUMap](body)
		if err != nil {
			return nil, err
		}
		entries := make([]uint16, len(r.Map))
		for i, p := range r.Map {
			if p < 0 || p >= d.eng.NumSPUs() {
				return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "spu.map.set: entry %d names SPU %d of %d", i, p, d.eng.NumSPUs())
			}
			entries[i] = uint16(p)
		}
		m, err := anchor.MapFromEntries(entries)
		if err != nil {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
		}
		if _, err := d.eng.SetMap(m); err != nil {
			return nil, err
		}
		d.mapChanged("set", -1)
		return nil, nil
	})
	s.Handle(api.OpSPUFail, func(body json.RawMessage) (any, error) {
		r, err := decode[api.SPURequest](body)
		if err != nil {
			return nil, err
		}
		d.log.Warn("spud: fault injected", "spu", r.ID)
		return nil, d.eng.InjectFault(r.ID)
	})
	s.Handle(api.OpSPUList, func(json.RawMessage) (any, error) { return d.spuList(), nil })
}

// decodeChildAdd decodes child.add's body, packed (api.PackedRequest, as
// iked sends it) or JSON.
func decodeChildAdd(body json.RawMessage) (*api.ChildAdd, error) {
	b, ok, err := api.PackedBody(body)
	if !ok {
		return decode[api.ChildAdd](body)
	}
	if err != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	req, err := api.DecodePackedChildAdd(b)
	if err != nil {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	return req, nil
}

// dumpRequest decodes a dump's request, an empty body (a client older than
// paging) being the first page, and caps its limit at api.MaxPage.
func dumpRequest(body json.RawMessage) (api.DumpRequest, error) {
	var req api.DumpRequest
	if len(body) > 0 {
		if err := unixrpc.Decode(body, &req); err != nil {
			return req, err
		}
	}
	most := api.MaxPage
	switch req.Encoding {
	case "":
	case api.EncodingPacked, api.EncodingPackedData:
		most = api.MaxPackedPage
	default:
		return req, unixrpc.Errorf(unixrpc.CodeBadRequest, "dump: encoding %q not known (%s, %s, or none for JSON)", req.Encoding, api.EncodingPackedData, api.EncodingPacked)
	}
	if req.Limit <= 0 || req.Limit > most {
		req.Limit = most
	}
	return req, nil
}

// packedPage is an SA page in the packed encoding as base64 in the
// reply's JSON (api.EncodingPacked), written straight into the reply's
// bytes (no SADump in between).
func packedPage(pg spu.PackedPage) json.RawMessage {
	b := pg.SAs
	out := make([]byte, 0, len(b)/3*4+128+len(pg.MissingReason))
	out = append(out, `{"sas":null`...)
	if len(b) > 0 {
		out = append(out, `,"packed":"`...)
		out = base64.StdEncoding.AppendEncode(out, b)
		out = append(out, '"')
	}
	if pg.Next != 0 {
		out = append(out, `,"next":`...)
		out = strconv.AppendUint(out, pg.Next, 10)
	}
	if pg.More {
		out = append(out, `,"more":true`...)
	}
	if pg.Missing != 0 {
		out = append(out, `,"missing":`...)
		out = strconv.AppendInt(out, int64(pg.Missing), 10)
	}
	if pg.MissingReason != "" {
		q, _ := json.Marshal(pg.MissingReason) // a string always marshals
		out = append(out, `,"missing_reason":`...)
		out = append(out, q...)
	}
	return json.RawMessage(append(out, '}'))
}

// pageBytes is the most a page's reply may take: half a frame, so that a
// page of entries much larger than usual (many selectors, long names) is
// cut short, not refused as too large.
var pageBytes = unixrpc.MaxMessage / 2

// pageReply encodes the reply that mk makes of page pg, cutting the page
// short (and moving its Next back, with More set) while the reply is
// larger than pageBytes: to the share of its entries that the bytes
// allow, with a margin for entries of uneven size.
func pageReply[T any](pg spu.Page[T], mk func([]T, uint64, bool) any) (any, error) {
	entries, next, more := pg.Entries, pg.Next, pg.More
	for {
		b, err := json.Marshal(mk(entries, next, more))
		if err != nil || len(b) <= pageBytes || len(entries) <= 1 {
			return json.RawMessage(b), err
		}
		n := int(int64(len(entries)) * int64(pageBytes) / int64(len(b)) * 9 / 10)
		n = max(1, min(n, len(entries)/2))
		entries = entries[:n]
		next, more = pg.Seqs[n-1], true
	}
}

// saStats answers sa.stats: the counters of the SAs named, at most
// api.MaxQuery of them. SAs spud holds but could not read (a failed SPU
// still stuck) are an error naming why, not SAs not found: iked would
// take those for gone.
func (d *Daemon) saStats(ids []api.SAID) (api.SAStatsReply, error) {
	if len(ids) > api.MaxQuery {
		return api.SAStatsReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "sa.stats: %d SAs asked, at most %d a request", len(ids), api.MaxQuery)
	}
	for _, id := range ids {
		if id.Dir != api.In && id.Dir != api.Out {
			return api.SAStatsReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "sa.stats: sa spi 0x%08x: direction %q, want in or out", id.SPI, id.Dir)
		}
		if id.Dir == api.Out && !id.Remote.IsValid() {
			return api.SAStatsReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "sa.stats: sa spi 0x%08x out: an outbound SA is named by its SPI and remote (the peer chose the SPI)", id.SPI)
		}
	}
	stats, found, missing, why := d.eng.SACounters(ids)
	if missing > 0 {
		return api.SAStatsReply{}, unixrpc.Errorf(unixrpc.CodeUnavailable, "sa.stats: %d of the %d SAs asked not readable: %s", missing, len(ids), why)
	}
	r := api.SAStatsReply{SAs: make([]api.SAStatsEntry, len(ids))}
	for i, id := range ids {
		r.SAs[i] = api.SAStatsEntry{SAID: id, Found: found[i], Stats: stats[i]}
	}
	return r, nil
}

func (d *Daemon) hello() api.HelloReply {
	m := d.eng.Map()
	hk := d.fn.HashKey()
	entries := m.Entries()
	mm := make([]int, len(entries))
	for i, p := range entries {
		mm[i] = int(p)
	}
	gen := d.eng.MapGen()
	return api.HelloReply{Version: api.Version, Server: Version, Logical: d.fn.L(), SPUs: d.spus,
		AnchorKey: hk[:], Map: mm, MapGen: gen, Interfaces: d.ifaces, Steering: d.steer}
}

// allocSPI reserves an inbound SPI whose top bits encode the logical SPU
// asked for (the IKE SA's), or the hash of the endpoints when none is: the
// steering program anchors the SA's packets by those bits, and the engine
// installs the SA there. A request with a count reserves a block of them,
// held api.SPIBlockUse longer, for the client to hand out itself.
func (d *Daemon) allocSPI(req *api.SPIAllocRequest) (api.SPIAllocReply, error) {
	if err := req.Validate(d.fn.L()); err != nil {
		return api.SPIAllocReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	logical := d.fn.Logical(req.Local, req.Remote)
	if req.Logical != nil {
		logical = uint16(*req.Logical)
	}
	n, hold := 1, spiHold
	var rnd io.Reader // crypto/rand, one read per draw
	if req.Count > 0 {
		// One getrandom for the block rather than one per SPI.
		n, hold, rnd = req.Count, spiHold+api.SPIBlockUse, bufio.NewReaderSize(rand.Reader, 4*req.Count+16)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.sweepSPIs(now)
	taken := func(spi uint32) bool { return d.inSPIs[spi].IsValid() || !d.spis[spi].IsZero() }
	spis := make([]uint32, 0, n)
	for range n {
		spi, err := d.codec.Allocate(logical, rnd, taken)
		if err != nil {
			for _, s := range spis {
				delete(d.spis, s)
			}
			// With crypto/rand as the source and a logical SPU of spud's
			// own function, the only way Allocate fails is finding no
			// free SPI.
			return api.SPIAllocReply{}, unixrpc.Errorf(unixrpc.CodeExhausted, "%w", err)
		}
		d.spis[spi] = now.Add(hold)
		spis = append(spis, spi)
	}
	r := api.SPIAllocReply{SPI: spis[0], Logical: int(logical), SPU: int(d.eng.Map().Physical(logical))}
	if req.Count > 0 {
		r.SPIs = spis
	}
	return r, nil
}

// spiSweepEvery spaces the sweeps of lapsed SPI reservations: a sweep
// looks at every reservation, which each allocation must not pay for.
const spiSweepEvery = 10 * time.Second

// sweepSPIs drops the reservations that lapsed, at most every
// spiSweepEvery (d.mu held). A lapsed one that waits for the sweep only
// keeps its SPI from being drawn a little longer.
func (d *Daemon) sweepSPIs(now time.Time) {
	if now.Before(d.spiSweep) {
		return
	}
	d.spiSweep = now.Add(spiSweepEvery)
	for spi, exp := range d.spis {
		if now.After(exp) {
			delete(d.spis, spi)
		}
	}
}

func (d *Daemon) addSA(sa *api.SA) error {
	d.mu.Lock()
	if sa.Dir == api.In && d.inSPIs[sa.SPI].IsValid() {
		d.mu.Unlock()
		return fmt.Errorf("sa spi 0x%08x in: %w", sa.SPI, unixrpc.ErrExists)
	}
	d.mu.Unlock()
	// The engine validates too (with the same text); this gives the
	// refusal its code.
	if err := sa.Validate(); err != nil {
		return unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	if err := sa.ValidateLogical(d.fn.L()); err != nil {
		return unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	logical, spuID, err := d.eng.AddSA(sa)
	if err != nil {
		return err
	}
	if sa.Dir == api.In {
		d.inAdded(d.steering(), sa)
	} else {
		d.resolveSoon(sa.Remote)
	}
	d.log.Info("spud: sa added", "spi", fmt.Sprintf("0x%08x", sa.SPI), "dir", sa.Dir, "suite", sa.Suite,
		"local", sa.Local, "remote", sa.Remote, "encap", sa.Encap != nil, "reqid", sa.ReqID, "logical", logical, "spu", spuID, "name", sa.Name)
	return nil
}

func (d *Daemon) delSA(id api.SAID) error {
	// The local endpoint from spud's own table, not from a dump of every
	// SA: deleting one of a million SAs must not copy the million.
	d.mu.Lock()
	local := d.inSPIs[id.SPI]
	d.mu.Unlock()
	if err := d.eng.DelSA(id); err != nil {
		return err
	}
	if id.Dir == api.In {
		d.inRemoved(d.steering(), id.SPI, local)
	}
	d.log.Info("spud: sa deleted", "spi", fmt.Sprintf("0x%08x", id.SPI), "dir", id.Dir)
	return nil
}

// inAdded files an installed inbound SA in spud's own tables: its SPI is
// no longer held, and its local endpoint is one the steering program
// takes ESP for.
func (d *Daemon) inAdded(prog childSteering, sa *api.SA) {
	d.mu.Lock()
	delete(d.spis, sa.SPI)
	id, ok := d.localRefs[sa.Local]
	if !ok {
		if n := len(d.freeLocals); n > 0 {
			id, d.freeLocals = d.freeLocals[n-1], d.freeLocals[:n-1]
		} else {
			d.locals = append(d.locals, localEndpoint{})
			id = localID(len(d.locals))
		}
		d.localRefs[sa.Local] = id
		d.locals[id-1].addr = sa.Local
	}
	d.inSPIs[sa.SPI] = id
	d.locals[id-1].refs++
	first := d.locals[id-1].refs == 1
	d.mu.Unlock()
	if first {
		if err := prog.AddLocalAddr(sa.Local); err != nil {
			d.log.Error("spud: steering local address", "addr", sa.Local, "err", err)
		}
	}
}

// inRemoved takes a removed inbound SA out of spud's own tables, and its
// local endpoint out of the steering program's with the last SA of it.
func (d *Daemon) inRemoved(prog childSteering, spi uint32, local localID) {
	d.mu.Lock()
	delete(d.inSPIs, spi)
	var last netip.Addr
	if local.IsValid() {
		e := &d.locals[local-1]
		if e.refs--; e.refs <= 0 {
			last = e.addr
			delete(d.localRefs, e.addr)
			*e = localEndpoint{}
			d.freeLocals = append(d.freeLocals, local)
		}
	}
	d.mu.Unlock()
	if last.IsValid() {
		prog.DeleteLocalAddr(last)
	}
}

// steerEntries are the steering program's SPD entries of a policy: one per
// protected interface and pair of selector prefixes.
func (d *Daemon) steerEntries(p api.Policy, logical uint16) []steer.Policy {
	var out []steer.Policy
	for _, ifc := range d.ifaces {
		if !ifc.Protected || (len(p.Interfaces) > 0 && !contains(p.Interfaces, ifc.Name)) {
			continue
		}
		for _, lts := range p.LocalTS {
			for _, lp := range lts.Prefixes() {
				for _, rts := range p.RemoteTS {
					for _, rp := range rts.Prefixes() {
						if lp.Addr().Is4() != rp.Addr().Is4() {
							continue
						}
						out = append(out, steer.Policy{Ifindex: ifc.Ifindex, Local: lp, Remote: rp, ID: p.ID,
							LogicalSPU: logical, Bypass: p.Action == api.Bypass})
					}
				}
			}
		}
	}
	return out
}

// checkInterfaces refuses a policy that names an interface that is not a
// protected data-plane interface.
func (d *Daemon) checkInterfaces(p *api.Policy) error {
	for _, n := range p.Interfaces {
		found := false
		for _, ifc := range d.ifaces {
			found = found || (ifc.Name == n && ifc.Protected)
		}
		if !found {
			return unixrpc.Errorf(unixrpc.CodeBadRequest, "policy: interface %q is not a protected data-plane interface", n)
		}
	}
	return nil
}

func (d *Daemon) addPolicy(p api.Policy) (api.PolicyAddReply, error) {
	if err := d.checkInterfaces(&p); err != nil {
		return api.PolicyAddReply{}, err
	}
	// The engine validates too (with the same text); this gives the
	// refusal its code.
	if err := p.Validate(); err != nil {
		return api.PolicyAddReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	if err := p.ValidateLogical(d.fn.L()); err != nil {
		return api.PolicyAddReply{}, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
	}
	p, logical, spuID, err := d.eng.AddPolicy(p)
	if err != nil {
		return api.PolicyAddReply{}, err
	}
	entries := d.steerEntries(p, logical)
	for i, e := range entries {
		if err := d.spd.add(d.steering(), e); err != nil {
			for _, done := range entries[:i] {
				d.spd.del(d.steering(), done)
			}
			d.eng.DelPolicy(p.ID)
			var full *steer.TableFullError
			if errors.As(err, &full) {
				d.policyTableFull.Add(1)
				d.log.Warn("spud: policy refused: table full", "id", p.ID, "local", e.Local.String(), "remote", e.Remote.String(), "err", full.Error())
				return api.PolicyAddReply{}, unixrpc.Errorf(unixrpc.CodeExhausted, "%s", tableFullText(full))
			}
			return api.PolicyAddReply{}, fmt.Errorf("policy %d: steering entry %s -> %s: %w", p.ID, e.Local, e.Remote, err)
		}
	}
	d.log.Info("spud: policy added", "id", p.ID, "action", p.Action, "reqid", p.ReqID, "local_ts", p.LocalTS,
		"remote_ts", p.RemoteTS, "logical", logical, "spu", spuID, "name", p.Name)
	return api.PolicyAddReply{ID: p.ID, Logical: int(logical), SPU: spuID}, nil
}

// tableFullText is the refusal of a policy for a full SPD, in the
// operator's terms: the family's limit and the flag that raises it.
func tableFullText(f *steer.TableFullError) string {
	if f.Size == f.Policies {
		return fmt.Sprintf("policy table full: %d %s policies (raise -max-policies)", f.Size, f.Family())
	}
	// A source trie overflowed before the family reached its limit: wide
	// destinations over many narrower ones take a source entry in each.
	return fmt.Sprintf("policy table full: %s holds %d source entries, for %d %s policies (raise -max-policies)",
		f.Map, f.Size, f.Policies, f.Family())
}

func (d *Daemon) delPolicy(id uint32) error {
	p, logical, ok := d.eng.Policy(id)
	if !ok {
		return fmt.Errorf("policy %d: %w", id, unixrpc.ErrNotFound)
	}
	if _, err := d.eng.DelPolicy(id); err != nil {
		return err
	}
	for _, e := range d.steerEntries(p, logical) {
		if err := d.spd.del(d.steering(), e); err != nil {
			d.log.Warn("spud: steering entry of a deleted policy", "id", id, "local", e.Local.String(), "remote", e.Remote.String(), "err", err.Error())
		}
	}
	d.log.Info("spud: policy deleted", "id", id)
	return nil
}

func (d *Daemon) stats() api.Stats {
	st := api.Stats{SPUs: d.eng.SPUStats(), Drops: map[string]uint64{}, XDP: map[string]uint64{}, Carrier: d.steer.Carrier}
	if n := d.policyTableFull.Load(); n > 0 {
		st.Refused = map[string]uint64{"policy_table_full": n}
	}
	for _, s := range st.SPUs {
		for k, v := range s.Drops {
			st.Drops[k] += v
		}
	}
	// No program: a daemon of the tests, its SPUs fed by fake ports.
	if d.prog != nil {
		if c, err := d.prog.Counters(); err == nil {
			for i, v := range c {
				if v > 0 {
					st.XDP[steer.Counter(i).String()] = v
				}
			}
		}
	}
	st.Links = map[string]uint64{}
	// Through netlink, not /sys: sysfs shows the namespace of whoever
	// mounted it, which is not spud's when spud entered its namespace by
	// setns(2) alone.
	for _, ifc := range d.ifaces {
		l, err := netlink.LinkByIndex(ifc.Ifindex)
		if err != nil || l.Attrs().Statistics == nil {
			continue
		}
		ls := l.Attrs().Statistics
		for _, c := range []struct {
			name string
			v    uint64
		}{{"rx_dropped", ls.RxDropped}, {"tx_dropped", ls.TxDropped}, {"rx_missed_errors", ls.RxMissedErrors},
			{"tx_errors", ls.TxErrors}, {"rx_errors", ls.RxErrors}} {
			if c.v > 0 {
				st.Links[ifc.Name+" "+c.name] = c.v
			}
		}
	}
	i := 0
	for _, ifc := range d.ifaces {
		for q := 0; q < ifc.Queues && i < len(d.socks); q++ {
			ss := d.socks[i].Stats()
			st.Sockets = append(st.Sockets, api.SocketStats{Interface: ifc.Name, Queue: q, SPU: q % d.cfg.SPUs,
				Rx: ss.RxFrames, Tx: ss.TxFrames, RxDropped: ss.Kernel.RxDropped + ss.Kernel.RxRingFull,
				FillEmpty: ss.FillRingEmpty, TxFull: ss.TxRingFull})
			i++
		}
	}
	return st
}

func (d *Daemon) spuList() api.SPUList {
	m := d.eng.Map()
	entries := m.Entries()
	mm := make([]int, len(entries))
	sas, pols, tunnels := d.eng.Counts()
	stats := d.eng.SPUStats()
	infos := make([]api.SPUInfo, d.eng.NumSPUs())
	for i := range infos {
		infos[i] = api.SPUInfo{ID: i, CPU: stats[i].CPU, State: d.eng.SPUState(i), SAs: sas[i], Policies: pols[i], Tunnels: tunnels[i],
			Busy: stats[i].Busy}
	}
	for l, p := range entries {
		mm[l] = int(p)
		infos[p].Logical = append(infos[p].Logical, l)
	}
	return api.SPUList{Logical: m.Len(), Map: mm, MapGen: d.eng.MapGen(), SPUs: infos}
}

// mapChanged pushes the engine's new map to the steering program (where
// it is a hint: spud's own map decides) and tells subscribers (iked moves
// the IKE SAs of moved logical SPUs to their new workers).
func (d *Daemon) mapChanged(why string, spuID int) {
	m := d.eng.Map()
	if err := d.prog.SetSPUMap(m); err != nil {
		d.log.Error("spud: steering map", "err", err)
	}
	d.srv.Publish(api.EventSPUMap, d.spuList())
	d.log.Info("spud: spu map changed", "why", why, "spu", spuID, "gen", d.eng.MapGen(), "load", m.Load())
}
