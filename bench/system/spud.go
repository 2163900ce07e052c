package system

import (
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"sync"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// Spud is spugate's data plane on both gateways with static SAs installed
// through the SA API, as iked would install them.
//
// gw-a, the concentrator under test, gets whole tunnels: an inbound and an
// outbound SA and an outbound policy each. gw-b, standing in for the
// peers, gets only what the traffic from the peers needs: an outbound SA
// and policy per tunnel (its steering program accepts ESP for at most 1024
// local addresses, fewer than the peers it plays), and with Return an
// inbound SA too.
type Spud struct {
	// SPUs per gateway (0: one per CPU).
	SPUs int
	// Poll is spud's -poll mode (default adaptive: the gateways share the
	// machine's cores with the generator and the sink).
	Poll string
	// Args are more spud flags.
	Args []string
	// Carrier is spud's -steer-carrier (empty: auto).
	Carrier string
	// Return also gives gw-b an inbound SA per tunnel, for traffic from
	// gw-a's site back to the peers' (TCP); off, gw-b gets only what the
	// one-way UDP needs, and the install rate measured stays that of
	// gw-a's calls and gw-b's outbound ones.
	Return bool
	suite  ipsec.Suite // the plan's, once Install parsed it
	// Parallel is the number of concurrent SA API calls while installing
	// (default 8).
	Parallel int

	// InstallTimeout, when set, stops Install after that long: it then
	// returns ErrInstallTimeout with the tunnels installed so far in
	// Installed.
	InstallTimeout time.Duration

	// InstallTime is how long Install took, Installed how many tunnels it
	// installed, and InstallCurve when each tenth of them was in.
	InstallTime  time.Duration
	Installed    int
	InstallCurve []InstallPoint

	a, b    *daemons.Spud
	plan    Plan
	tunnels []spudTunnel
}

// InstallPoint is how long installing the first Tunnels took.
type InstallPoint struct {
	Tunnels int           `json:"tunnels"`
	Elapsed time.Duration `json:"elapsed_ns"`
}

// ErrInstallTimeout is Install giving up after InstallTimeout.
var ErrInstallTimeout = errors.New("system: spud: install timed out")

// spudTunnel is one tunnel's current SAs.
type spudTunnel struct {
	reqid         uint32
	spiIn, spiOut uint32 // on gw-a: from the peer, to the peer
	gen           uint32 // rekeys so far
}

// Name is "spud", or "spud:CARRIER" when Carrier forces a steering
// carrier, so that results of different carriers stay apart.
func (s *Spud) Name() string {
	if s.Carrier != "" {
		return "spud:" + s.Carrier
	}
	return "spud"
}

// Up starts spud on both gateways and installs p's tunnels.
func (s *Spud) Up(ln *lab.Line, p Plan) error {
	if err := s.Start(ln); err != nil {
		return err
	}
	if err := s.Install(p); err != nil {
		s.Down()
		return err
	}
	return nil
}

// Start starts spud on both gateways, with no tunnel.
func (s *Spud) Start(ln *lab.Line) error {
	poll := s.Poll
	if poll == "" {
		poll = "adaptive"
	}
	o := daemons.SpudOptions{SPUs: s.SPUs, Carrier: s.Carrier, Args: append([]string{"-poll", poll}, s.Args...)}
	var err error
	if s.a, err = daemons.StartSpud(ln.GwA, o); err != nil {
		return err
	}
	if s.b, err = daemons.StartSpud(ln.GwB, o); err != nil {
		s.a.Stop()
		s.a = nil
		return err
	}
	return nil
}

// Install installs p's tunnels on the started spuds, Parallel calls at a
// time, and records how long it took in InstallTime.
func (s *Spud) Install(p Plan) error {
	if err := p.Valid(); err != nil {
		return err
	}
	suite, err := ipsec.ParseSuite(p.Suite)
	if err != nil {
		return fmt.Errorf("system: spud: %w", err)
	}
	s.suite = suite
	if s.a == nil {
		return fmt.Errorf("system: spud: not started")
	}
	s.plan = p
	s.tunnels = make([]spudTunnel, p.Tunnels)
	s.InstallCurve = nil
	start := time.Now()
	var deadline time.Time
	if s.InstallTimeout > 0 {
		deadline = start.Add(s.InstallTimeout)
	}
	step := max(p.Tunnels/10, 1)
	var mu sync.Mutex
	done := 0
	n, err := s.parallel(p.Tunnels, deadline, func(i int) error {
		if err := s.install(i, 0); err != nil {
			return err
		}
		mu.Lock()
		done++
		if done%step == 0 || done == p.Tunnels {
			s.InstallCurve = append(s.InstallCurve, InstallPoint{Tunnels: done, Elapsed: time.Since(start)})
		}
		mu.Unlock()
		return nil
	})
	s.InstallTime = time.Since(start)
	s.Installed = n
	if err == nil && n < p.Tunnels {
		// Stopped by the deadline: the plan is what went in.
		s.plan.Tunnels = n
		s.tunnels = s.tunnels[:n]
		return fmt.Errorf("%w: %d of %d tunnels in %v", ErrInstallTimeout, n, p.Tunnels, s.InstallTime.Round(time.Second))
	}
	return err
}

// parallel runs fn(0..n-1) on Parallel goroutines, in order of i, until
// all are done, one fails or the deadline (if set) passes. It returns how
// many were started (all of which have ended) and the errors.
func (s *Spud) parallel(n int, deadline time.Time, fn func(i int) error) (int, error) {
	workers := s.Parallel
	if workers <= 0 {
		workers = 8
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		errs []error
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if next >= n || len(errs) > 0 || !deadline.IsZero() && time.Now().After(deadline) {
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return min(next, n), errors.Join(errs...)
}

func key(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func ts(p netip.Prefix) []ipsec.Selector { return []ipsec.Selector{ipsec.PrefixSelector(p, 0)} }

// install adds tunnel i's SAs (generation gen) and, for gen 0, its
// policies. Inbound first, then outbound: the order of a rekey, so that
// nothing is sent on an SA the other side cannot yet open.
func (s *Spud) install(i int, gen uint32) error {
	p := s.plan
	t := &s.tunnels[i]
	t.reqid = uint32(i + 1)
	local, peer, site, lan := p.Local(), p.Peer(i), p.Site(i), p.Line.LanA4
	encKey := s.suite.EncKeyLen()
	name := fmt.Sprintf("bench%d", i)
	r, err := s.a.Client.AllocSPI(api.SPIAllocRequest{Local: local, Remote: peer})
	if err != nil {
		return fmt.Errorf("tunnel %d: allocate spi on gw-a: %w", i, err)
	}
	spiIn := r.SPI
	// The SPI towards the peer is the peer's to choose; here, unique by
	// tunnel and generation.
	spiOut := 0x40000000 | gen<<16 | uint32(i)
	kIn, kOut := key(encKey), key(encKey)
	sa := func(spi uint32, dir api.Dir, l, r netip.Addr, k []byte, lts, rts netip.Prefix) *api.SA {
		return &api.SA{SPI: spi, Dir: dir, Local: l, Remote: r, Mode: api.Tunnel, Suite: s.suite, EncKey: k,
			ReqID: t.reqid, LocalTS: ts(lts), RemoteTS: ts(rts), Name: name}
	}
	for _, x := range []struct {
		c  *api.Client
		sa *api.SA
	}{
		{s.a.Client, sa(spiIn, api.In, local, peer, kIn, lan, site)},
		{s.b.Client, sa(spiIn, api.Out, peer, local, kIn, site, lan)},
		{s.a.Client, sa(spiOut, api.Out, local, peer, kOut, lan, site)},
		{s.b.Client, sa(spiOut, api.In, peer, local, kOut, site, lan)},
	} {
		if x.sa.Dir == api.In && x.c == s.b.Client && !s.Return {
			continue
		}
		if err := x.c.AddSA(x.sa); err != nil {
			return fmt.Errorf("tunnel %d: add %s sa 0x%08x: %w", i, x.sa.Dir, x.sa.SPI, err)
		}
	}
	if gen == 0 {
		for _, x := range []struct {
			c        *api.Client
			l, r     netip.Addr
			lts, rts netip.Prefix
		}{{s.a.Client, local, peer, lan, site}, {s.b.Client, peer, local, site, lan}} {
			if _, err := x.c.AddPolicy(&api.Policy{ReqID: t.reqid, Action: api.Protect, Local: x.l, Remote: x.r,
				LocalTS: ts(x.lts), RemoteTS: ts(x.rts), Name: name}); err != nil {
				return fmt.Errorf("tunnel %d: add policy: %w", i, err)
			}
		}
	}
	t.spiIn, t.spiOut, t.gen = spiIn, spiOut, gen
	return nil
}

// Rekey replaces tunnel i's SAs make-before-break, as iked's rekey will:
// the new SAs are installed (inbound first; the policies switch to the
// newest outbound SA of their reqid), then the old outbound SAs are
// deleted, and after grace the old inbound SA, so that packets already
// sealed with the old SA still open.
func (s *Spud) Rekey(i int, grace time.Duration) error {
	t := s.tunnels[i]
	old := t
	if err := s.install(i, t.gen+1); err != nil {
		return err
	}
	peer := s.plan.Peer(i)
	if err := s.b.Client.DelSA(api.SAID{SPI: old.spiIn, Dir: api.Out, Remote: s.plan.Local()}); err != nil {
		return fmt.Errorf("tunnel %d: delete old out sa on gw-b: %w", i, err)
	}
	if err := s.a.Client.DelSA(api.SAID{SPI: old.spiOut, Dir: api.Out, Remote: peer}); err != nil {
		return fmt.Errorf("tunnel %d: delete old out sa on gw-a: %w", i, err)
	}
	time.Sleep(grace)
	if err := s.a.Client.DelSA(api.SAID{SPI: old.spiIn, Dir: api.In}); err != nil {
		return fmt.Errorf("tunnel %d: delete old in sa on gw-a: %w", i, err)
	}
	if s.Return {
		if err := s.b.Client.DelSA(api.SAID{SPI: old.spiOut, Dir: api.In}); err != nil {
			return fmt.Errorf("tunnel %d: delete old in sa on gw-b: %w", i, err)
		}
	}
	return nil
}

// Gateways returns the spuds of gw-a and gw-b.
func (s *Spud) Gateways() (a, b *daemons.Spud) { return s.a, s.b }

// Down stops both spuds.
func (s *Spud) Down() error {
	var errs []error
	for _, g := range []*daemons.Spud{s.b, s.a} {
		if g != nil {
			errs = append(errs, g.Stop())
		}
	}
	s.a, s.b = nil, nil
	return errors.Join(errs...)
}

// Daemons are spud on each gateway that runs it.
func (s *Spud) Daemons() []Daemon {
	var ds []Daemon
	for _, g := range []*daemons.Spud{s.a, s.b} {
		if g != nil {
			ds = append(ds, Daemon{Host: g.Host.Name, Name: "spud", PID: g.Proc.PID})
		}
	}
	return ds
}

// SPUWork returns, per gateway, the packets each SPU encapsulated plus
// those it decapsulated: where the anchors put the work.
func (s *Spud) SPUWork() (map[string][]uint64, error) {
	out := map[string][]uint64{}
	for _, g := range []*daemons.Spud{s.a, s.b} {
		if g == nil {
			continue
		}
		st, err := g.Client.Stats()
		if err != nil {
			return nil, fmt.Errorf("system: spud on %s: stats: %w", g.Host.Name, err)
		}
		for _, sp := range st.SPUs {
			out[g.Host.Name] = append(out[g.Host.Name], sp.Encap+sp.Decap)
		}
	}
	return out, nil
}

// Drops returns spud's drop counters by reason, per gateway (host name).
func (s *Spud) Drops() (map[string]map[string]uint64, error) {
	out := map[string]map[string]uint64{}
	for _, g := range []*daemons.Spud{s.a, s.b} {
		if g == nil {
			continue
		}
		st, err := g.Client.Stats()
		if err != nil {
			return nil, fmt.Errorf("system: spud on %s: stats: %w", g.Host.Name, err)
		}
		m := map[string]uint64{}
		for k, v := range st.Drops {
			m[k] = v
		}
		for _, sk := range st.Sockets {
			if sk.RxDropped > 0 {
				m["xsk_rx_dropped"] += sk.RxDropped
			}
		}
		out[g.Host.Name] = m
	}
	return out, nil
}

// DropsSince subtracts an earlier Drops reading from a later one, leaving
// out reasons that did not move.
func DropsSince(before, after map[string]map[string]uint64) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for h, m := range after {
		d := map[string]uint64{}
		for k, v := range m {
			if n := v - before[h][k]; n > 0 {
				d[k] = n
			}
		}
		if len(d) > 0 {
			out[h] = d
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
