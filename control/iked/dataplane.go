package iked

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/task"

	"github.com/spugate/spugate/control/reuseport"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// spudDP is the task.DataPlane of the daemon: spud's SA API. The client is
// swapped when iked reconnects after spud restarted.
type spudDP struct {
	c atomic.Pointer[api.Client]
	// path is spud's socket: a connection lost while spud runs on (one
	// too-large reply, say) is dialled again by client, at most every
	// redialEvery; spud restarting is watchSpud's to handle, with a resync.
	path     func() string
	dialMu   sync.Mutex
	lastDial time.Time
	// awaySince is when a caller first found spud away (unix ns; 0: it
	// is not), the start of its spudWait.
	awaySince atomic.Int64
	// oldSpud is the connection whose spud answered that it knows no
	// child.add or child.del (older than them): Child SAs go in and out
	// through the separate calls on it, and a new connection (spud
	// restarted, perhaps upgraded) is asked again.
	oldSpud atomic.Pointer[api.Client]
	// spis are the inbound SPIs spud granted in blocks, by logical SPU;
	// noBlocks is the connection whose spud grants none (older than
	// blocks): SPIs are asked for one at a time on it.
	spis     spiPools
	noBlocks atomic.Pointer[api.Client]

	// usage caches inbound packet counts by SPI for usageTTL, so that an
	// IKE SA's liveness check and its held-back outbound SA asking about
	// the same SPIs within it cost one call. Counts are asked of spud for
	// the SPIs wanted only (sa.stats), never by a dump of every SA: the
	// cost is the SPIs asked, not the table. usageCur takes new counts;
	// at each usageTTL it becomes usagePrev and the older one is dropped
	// whole, so the cache holds what was asked in the last two periods
	// without a sweep of its own.
	usageMu    sync.Mutex
	usageCur   map[uint32]usageCount
	usagePrev  map[uint32]usageCount
	usageSince time.Time // when usageCur started

	// waitedNS is the time callers spent in SA API calls they waited for
	// (a worker's: the time it was blocked on spud), in nanoseconds.
	waitedNS atomic.Int64
	// waitedCalls counts those calls, so that waitedNS over it is their
	// mean latency (the metrics' spugate_iked_spud_wait_seconds).
	waitedCalls atomic.Uint64
}

// waited counts the time since start as spent waiting for spud, in one
// call.
func (p *spudDP) waited(start time.Time) {
	p.waitedNS.Add(int64(time.Since(start)))
	p.waitedCalls.Add(1)
}

type usageCount struct {
	packets uint64
	at      time.Time
}

// usageTTL is how long spud's count of an SA's packets serves.
const usageTTL = time.Second

var (
	_ manager.UsageReader     = (*spudDP)(nil)
	_ manager.UsagePrefetcher = (*spudDP)(nil)
)

// PrefetchInbound asks spud in one call for the counts of the SPIs that are
// not fresh in the cache: the worker gives those of every IKE SA whose
// liveness sample is due, whose InboundPackets then answer from the cache.
// A failure leaves them to InboundPackets.
func (p *spudDP) PrefetchInbound(spis []uint32) {
	now := time.Now()
	defer p.waited(now)
	var ask []api.SAID
	p.usageMu.Lock()
	if now.Sub(p.usageSince) >= usageTTL {
		p.usagePrev, p.usageCur, p.usageSince = p.usageCur, map[uint32]usageCount{}, now
	}
	for _, spi := range spis {
		if u, ok := p.usageCur[spi]; ok && now.Sub(u.at) < usageTTL {
			continue
		}
		ask = append(ask, api.SAID{SPI: spi, Dir: api.In})
	}
	p.usageMu.Unlock()
	if len(ask) == 0 {
		return
	}
	c, err := p.current()
	if err != nil {
		return
	}
	st, err := c.SAStats(ask)
	if err != nil {
		return
	}
	p.usageMu.Lock()
	defer p.usageMu.Unlock()
	for _, e := range st {
		p.usageCur[e.SPI] = usageCount{packets: e.Stats.Packets, at: now}
	}
}

// InboundPackets sums what the inbound SAs with these SPIs received; an
// SPI spud does not have counts nothing.
func (p *spudDP) InboundPackets(spis []uint32) (uint64, error) {
	now := time.Now()
	defer p.waited(now)
	var n uint64
	var ask []api.SAID
	p.usageMu.Lock()
	if now.Sub(p.usageSince) >= usageTTL {
		p.usagePrev, p.usageCur, p.usageSince = p.usageCur, map[uint32]usageCount{}, now
	}
	for _, spi := range spis {
		u, ok := p.usageCur[spi]
		if !ok {
			u, ok = p.usagePrev[spi]
		}
		if ok && now.Sub(u.at) < usageTTL {
			n += u.packets
		} else {
			ask = append(ask, api.SAID{SPI: spi, Dir: api.In})
		}
	}
	p.usageMu.Unlock()
	if len(ask) == 0 {
		return n, nil
	}
	c, err := p.client()
	if err != nil {
		return 0, err
	}
	st, err := c.SAStats(ask)
	if err != nil {
		return 0, err
	}
	p.usageMu.Lock()
	defer p.usageMu.Unlock()
	for _, e := range st {
		n += e.Stats.Packets
		if p.usageCur != nil {
			p.usageCur[e.SPI] = usageCount{packets: e.Stats.Packets, at: now}
		}
	}
	return n, nil
}

// errNoSpud is the data plane's error while iked has no connection to
// spud (it lost it and is dialling again): spud is gone, so it matches
// unixrpc.ErrClosed, as the errors of calls on a lost connection do.
var errNoSpud error = noSpud{}

type noSpud struct{}

func (noSpud) Error() string        { return "not connected to spud" }
func (noSpud) Is(target error) bool { return target == unixrpc.ErrClosed }

func (p *spudDP) client() (*api.Client, error) {
	c, err := p.current()
	if err == nil {
		return c, nil
	}
	// spud is away (restarting, most likely): wait for watchSpud's new
	// connection, from when the first caller noticed, for at most
	// spudWait in all.
	now := time.Now().UnixNano()
	p.awaySince.CompareAndSwap(0, now)
	since := time.Unix(0, p.awaySince.Load())
	for time.Since(since) < spudWait {
		time.Sleep(awaitPoll)
		if c, err := p.current(); err == nil {
			return c, nil
		}
	}
	return nil, err
}

// spudWait bounds how long SA API calls wait for spud when iked has lost
// it. A restart of spud takes about 200 ms: a setup or rekey that waits
// for it is not lost (failing it, the peer would try again only at its
// own pace: after its retry interval, or never for a Child SA created
// with IKE_AUTH). A spud away for longer fails the calls at once, so that
// the workers do not stall on it.
const (
	spudWait  = 2 * time.Second
	awaitPoll = 10 * time.Millisecond
)

// current is the live connection, dialled again if a lost one may be.
func (p *spudDP) current() (*api.Client, error) {
	c := p.c.Load()
	if c == nil {
		return nil, errNoSpud
	}
	select {
	case <-c.Done():
		c, err := p.redial(c)
		if err == nil {
			p.awaySince.Store(0)
		}
		return c, err
	default:
		if p.awaySince.Load() != 0 {
			p.awaySince.Store(0)
		}
		return c, nil
	}
}

// do runs an SA API call that the caller waits for (counted in
// waitedNS); one that failed because the connection was lost under it
// (spud died during the call) runs once more on the next connection: spud
// restarted empty, so the first attempt left nothing.
func (p *spudDP) do(call func(*api.Client) error) error {
	defer p.waited(time.Now())
	return p.run(call)
}

// run is do for a call nobody waits for (counted nowhere).
func (p *spudDP) run(call func(*api.Client) error) error {
	c, err := p.client()
	if err != nil {
		return err
	}
	if err = call(c); errors.Is(err, unixrpc.ErrClosed) {
		if c, cerr := p.client(); cerr == nil {
			return call(c)
		}
	}
	return err
}

// redialEvery bounds how often a lost connection is dialled again.
const redialEvery = 200 * time.Millisecond

// redial replaces the lost connection old with a new one, unless
// watchSpud has meanwhile taken the connection away (spud is gone) or
// another caller has replaced it already.
func (p *spudDP) redial(old *api.Client) (*api.Client, error) {
	p.dialMu.Lock()
	defer p.dialMu.Unlock()
	if c := p.c.Load(); c != old {
		if c == nil {
			return nil, errNoSpud
		}
		return c, nil
	}
	if p.path == nil || time.Since(p.lastDial) < redialEvery {
		return nil, errNoSpud
	}
	p.lastDial = time.Now()
	nc, err := api.Dial(p.path())
	if err != nil {
		return nil, errNoSpud
	}
	if !p.c.CompareAndSwap(old, nc) {
		nc.Close()
		return nil, errNoSpud
	}
	old.Close()
	return nc, nil
}

func (p *spudDP) AddSA(s *api.SA) error {
	return p.do(func(c *api.Client) error { return c.AddSA(s) })
}

func (p *spudDP) DelSA(id api.SAID) error {
	return p.do(func(c *api.Client) error { return c.DelSA(id) })
}

func (p *spudDP) UpdateSA(u *api.SAUpdate) error {
	return p.do(func(c *api.Client) error { return c.UpdateSA(u) })
}

func (p *spudDP) AddPolicy(pol *api.Policy) (uint32, error) {
	var r api.PolicyAddReply
	err := p.do(func(c *api.Client) (err error) {
		r, err = c.AddPolicy(pol)
		return err
	})
	return r.ID, err
}

func (p *spudDP) DelPolicy(id uint32) error {
	return p.do(func(c *api.Client) error { return c.DelPolicy(id) })
}

var _ task.ChildDataPlane = (*spudDP)(nil)

// AddChild installs a Child SA in one round trip (child.add), or answers
// task.ErrNoChildOps for a spud without it, which Install takes for the
// separate calls.
func (p *spudDP) AddChild(req *api.ChildAdd) (uint32, error) {
	defer p.waited(time.Now())
	return p.addChild(req)
}

// addChild is AddChild, not counted as waited for.
func (p *spudDP) addChild(req *api.ChildAdd) (uint32, error) {
	var r api.ChildAddReply
	err := p.run(func(c *api.Client) (err error) {
		if p.oldSpud.Load() == c {
			return task.ErrNoChildOps
		}
		r, err = c.AddChild(req)
		return p.noChildOps(c, err, api.OpChildAdd)
	})
	return r.PolicyID, err
}

// workerDP is a worker's data plane: its own connection to spud (spudDP)
// with a child.add the worker does not wait for (task.AsyncChildDataPlane).
type workerDP struct {
	*spudDP
	// post hands a function to the worker's loop, which runs it on its
	// goroutine between its other events.
	post func(func())
	// wg tracks the calls in flight, which the daemon's end waits for.
	wg *sync.WaitGroup
	// inflight counts the calls in flight.
	inflight atomic.Int64
	// flying are the child.adds in flight, with their policy's id once
	// spud answered, until the worker has taken the answer: spud holds
	// their SAs and policies before an IKE SA does, and the sweep after a
	// resync must not take them for strays.
	flyMu  sync.Mutex
	flying map[*api.ChildAdd]uint32

	// later are the calls whose outcome the worker does not wait for
	// (task.LaterDataPlane), in the order it made them; one goroutine at a
	// time (lbusy) makes them, in that order, so that spud applies them so.
	// lidle is signalled when the queue ran empty.
	lmu   sync.Mutex
	lidle sync.Cond
	lq    []laterCall
	lbusy bool
	// fail reports a call of later that failed: logged and counted, as
	// the caller of a call waited for does.
	fail func(what string, err error)
}

// laterCall is a call of workerDP.later: what it does, for the log.
type laterCall struct {
	what string
	call func(*api.Client) error
}

// fly notes req in flight, with its policy's id once spud answered.
func (p *workerDP) fly(req *api.ChildAdd, policy uint32) {
	p.flyMu.Lock()
	defer p.flyMu.Unlock()
	if p.flying == nil {
		p.flying = map[*api.ChildAdd]uint32{}
	}
	p.flying[req] = policy
}

// land forgets req once the worker took its answer.
func (p *workerDP) land(req *api.ChildAdd) {
	p.flyMu.Lock()
	defer p.flyMu.Unlock()
	delete(p.flying, req)
}

// owned adds the SAs and policies of the child.adds in flight to those
// the sweep keeps. It runs on the worker's goroutine, so that an answer
// is either taken (its Child SA in an IKE SA) or still here.
func (p *workerDP) owned(sas map[saKey]bool, pols map[uint32]bool) {
	p.flyMu.Lock()
	defer p.flyMu.Unlock()
	for req, id := range p.flying {
		sas[saKey{req.In.SPI, api.In}] = true
		if req.Out != nil {
			sas[saKey{req.Out.SPI, api.Out}] = true
		}
		if id != 0 {
			pols[id] = true
		}
	}
}

var _ task.AsyncChildDataPlane = (*workerDP)(nil)

// AddChildAsync makes AddChild's call from a goroutine of its own, so that
// the worker serves other IKE SAs meanwhile and several child.adds are in
// flight on the connection (spud answers them in turn); done gets the
// answer on the worker's goroutine. A connection lost under the call is
// handled as AddChild's is: the call waits for the next connection (up to
// spudWait) and runs again there.
func (p *workerDP) AddChildAsync(req *api.ChildAdd, done func(uint32, error)) {
	p.inflight.Add(1)
	p.fly(req, 0)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		id, err := p.addChild(req)
		p.fly(req, id)
		p.inflight.Add(-1)
		p.post(func() {
			done(id, err)
			p.land(req)
		})
	}()
}

var _ task.LaterDataPlane = (*workerDP)(nil)

// later queues call for the worker's goroutine of later calls, which it
// starts if none runs: the worker returns at once. A connection lost under
// the call is handled as a waited-for call's (spudDP.run).
func (p *workerDP) later(what string, call func(*api.Client) error) {
	p.inflight.Add(1)
	p.lmu.Lock()
	p.lq = append(p.lq, laterCall{what: what, call: call})
	start := !p.lbusy
	p.lbusy = true
	p.lmu.Unlock()
	if start {
		p.wg.Add(1)
		go p.runLater()
	}
}

// runLater makes the queued later calls one after the other, in order,
// until none is left.
func (p *workerDP) runLater() {
	defer p.wg.Done()
	for {
		p.lmu.Lock()
		q := p.lq
		p.lq = nil
		if len(q) == 0 {
			p.lbusy = false
			if p.lidle.L != nil {
				p.lidle.Broadcast()
			}
			p.lmu.Unlock()
			return
		}
		p.lmu.Unlock()
		for _, c := range q {
			err := p.run(c.call)
			p.inflight.Add(-1)
			if err != nil && p.fail != nil {
				p.fail(c.what, err)
			}
		}
	}
}

// flush waits until the later calls made so far are done: a call the
// worker waits for goes to spud after them, as it was made after them (an
// outbound SA released later must not land after its Child SA's
// replacement's). Its wait counts as the worker's.
func (p *workerDP) flush() {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if !p.lbusy {
		return
	}
	defer p.waited(time.Now())
	if p.lidle.L == nil {
		p.lidle.L = &p.lmu
	}
	for p.lbusy {
		p.lidle.Wait()
	}
}

// DelChildLater removes a Child SA as DelChild does (or with the separate
// calls, from a spud without child.del), later.
func (p *workerDP) DelChildLater(req *api.ChildDel) {
	p.later(fmt.Sprintf("remove child sa %s", childDelName(req)), func(c *api.Client) error {
		if p.oldSpud.Load() != c {
			err := p.noChildOps(c, c.DelChild(req), api.OpChildDel)
			if !errors.Is(err, task.ErrNoChildOps) {
				return err
			}
		}
		var errs []error
		for _, id := range req.Policies {
			if err := c.DelPolicy(id); err != nil {
				errs = append(errs, fmt.Errorf("policy %d: %w", id, err))
			}
		}
		for _, id := range []*api.SAID{req.Out, req.In} {
			if id != nil {
				if err := c.DelSA(*id); err != nil {
					errs = append(errs, fmt.Errorf("sa 0x%08x: %w", id.SPI, err))
				}
			}
		}
		return errors.Join(errs...)
	})
}

// childDelName names the SAs of a child.del for the log.
func childDelName(req *api.ChildDel) string {
	var in, out uint32
	if req.In != nil {
		in = req.In.SPI
	}
	if req.Out != nil {
		out = req.Out.SPI
	}
	return fmt.Sprintf("0x%08x/0x%08x", in, out)
}

// AddSALater installs s as AddSA does, later.
func (p *workerDP) AddSALater(s *api.SA) {
	p.later(fmt.Sprintf("install %s sa 0x%08x", s.Dir, s.SPI), func(c *api.Client) error { return c.AddSA(s) })
}

// UpdateSALater changes an SA as UpdateSA does, later.
func (p *workerDP) UpdateSALater(u *api.SAUpdate) {
	p.later(fmt.Sprintf("move %s sa 0x%08x", u.Dir, u.SPI), func(c *api.Client) error { return c.UpdateSA(u) })
}

// The calls the worker waits for go to spud after its later calls.

// AddSA is spudDP's, after the later calls.
func (p *workerDP) AddSA(s *api.SA) error { p.flush(); return p.spudDP.AddSA(s) }

// DelSA is spudDP's, after the later calls.
func (p *workerDP) DelSA(id api.SAID) error { p.flush(); return p.spudDP.DelSA(id) }

// UpdateSA is spudDP's, after the later calls.
func (p *workerDP) UpdateSA(u *api.SAUpdate) error { p.flush(); return p.spudDP.UpdateSA(u) }

// AddPolicy is spudDP's, after the later calls.
func (p *workerDP) AddPolicy(pol *api.Policy) (uint32, error) {
	p.flush()
	return p.spudDP.AddPolicy(pol)
}

// DelPolicy is spudDP's, after the later calls.
func (p *workerDP) DelPolicy(id uint32) error { p.flush(); return p.spudDP.DelPolicy(id) }

// AddChild is spudDP's, after the later calls.
func (p *workerDP) AddChild(req *api.ChildAdd) (uint32, error) {
	p.flush()
	return p.spudDP.AddChild(req)
}

// DelChild is spudDP's, after the later calls.
func (p *workerDP) DelChild(req *api.ChildDel) error { p.flush(); return p.spudDP.DelChild(req) }

// DelChild removes a Child SA in one round trip (child.del), or answers
// task.ErrNoChildOps as AddChild.
func (p *spudDP) DelChild(req *api.ChildDel) error {
	return p.do(func(c *api.Client) error {
		if p.oldSpud.Load() == c {
			return task.ErrNoChildOps
		}
		return p.noChildOps(c, c.DelChild(req), api.OpChildDel)
	})
}

// noChildOps turns spud's refusal of op as unknown into
// task.ErrNoChildOps, remembering the connection as one to a spud
// without the Child SA operations.
func (p *spudDP) noChildOps(c *api.Client, err error, op string) error {
	if api.UnknownOp(err, op) {
		p.oldSpud.Store(c)
		return task.ErrNoChildOps
	}
	return err
}

// reuseportSteerer loads the SO_REUSEPORT selector program with spud's anchor
// function and SPU map.
func reuseportSteerer(d *Daemon) (*reuseport.Steerer, error) {
	s, err := reuseport.NewSteerer()
	if err != nil {
		return nil, err
	}
	// Only the NAT-T port's groups find IKE behind the non-ESP marker.
	s.SetNATTPort(uint16(d.cfg.Load().PortNATT))
	if err := s.SetConfig(d.fn, d.spus.Load()); err != nil {
		s.Close()
		return nil, err
	}
	if why := s.Unsteered(); why != "" {
		d.log.Warn("iked: no SO_REUSEPORT selector: the kernel's hash picks a worker for each IKE datagram, which hands it on to the anchor's worker", "because", why)
	}
	return s, nil
}
