package iked

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/control/reuseport"
	"github.com/spugate/spugate/internal/unixrpc"
)

const defaultWait = 30 * time.Second

func decode[T any](body json.RawMessage) (*T, error) {
	var v T
	if len(body) == 0 {
		return &v, nil
	}
	if err := unixrpc.Decode(body, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

func (d *Daemon) handlers() {
	s := d.ctl
	d.operatorHandlers()
	s.Handle(ikectl.OpHello, func(json.RawMessage) (any, error) {
		h := ikectl.Hello{Server: Version, Config: d.opts.ConfigPath}
		for _, l := range d.loops {
			h.Workers = append(h.Workers, l.spu)
		}
		return h, nil
	})
	s.Handle(ikectl.OpConns, func(json.RawMessage) (any, error) { return d.listConns(), nil })
	s.Handle(ikectl.OpSAs, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.SAsRequest](body)
		if err != nil {
			return nil, err
		}
		return d.listSAs(*req)
	})
	s.Handle(ikectl.OpInitiate, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.Initiate](body)
		if err != nil {
			return nil, err
		}
		return d.initiate(*req)
	})
	s.Handle(ikectl.OpTerminate, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.Terminate](body)
		if err != nil {
			return nil, err
		}
		return d.terminate(*req)
	})
	s.Handle(ikectl.OpReload, func(json.RawMessage) (any, error) { return d.Reload() })
	s.Handle(ikectl.OpRekey, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.Rekey](body)
		if err != nil {
			return nil, err
		}
		return d.rekey(*req)
	})
	s.Handle(ikectl.OpStats, func(json.RawMessage) (any, error) { return d.statsReply(), nil })
	s.Handle(ikectl.OpLoad, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.Load](body)
		if err != nil {
			return nil, err
		}
		return d.load(*req)
	})
	s.Handle(ikectl.OpLoadStatus, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.LoadStatus](body)
		if err != nil {
			return nil, err
		}
		return d.loadStatus(req.Conn)
	})
}

func (d *Daemon) listConns() ikectl.Conns {
	cfg := d.cfg.Load()
	traps := d.traps.Load()
	var out ikectl.Conns
	for _, name := range cfg.Order {
		c := cfg.Connections[name]
		ci := ikectl.Conn{Name: name, LocalAddrs: c.LocalAddrs, RemoteAddrs: c.RemoteAddrs, Proposals: c.Proposals,
			LocalAuth: c.Local.Auth, LocalID: c.Local.Identity.String(), RemoteAuth: c.Remote.Auth, RemoteID: c.Remote.Identity.String(),
			Encap: bool(c.Encap)}
		if c.DPDDelay > 0 {
			ci.DPDDelay = c.DPDDelay.D().String()
		}
		if c.RekeyTime != nil {
			ci.RekeyTime = c.RekeyTime.D()
		}
		ci.ReauthTime = c.ReauthTime.D()
		for _, cn := range c.ChildOrder {
			ch := c.Children[cn]
			cc := ikectl.Child{Name: cn, LocalTS: ch.LocalTS, RemoteTS: ch.RemoteTS, ESPProposals: ch.ESPProposals,
				StartAction: ch.StartAction, DPDAction: ch.DPDAction, CloseAction: ch.CloseAction}
			if ch.RekeyTime != nil {
				cc.RekeyTime = ch.RekeyTime.D().String()
			}
			_, cc.Trap = traps.byName[name+"/"+cn]
			ci.Children = append(ci.Children, cc)
		}
		out.Conns = append(out.Conns, ci)
	}
	return out
}

// initiate brings a connection up on the worker of its anchor and waits
// for the outcome.
func (d *Daemon) initiate(req ikectl.Initiate) (*ikectl.Result, error) {
	cfg := d.cfg.Load()
	conn := cfg.Connections[req.Conn]
	if conn == nil {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "no connection %q", req.Conn)
	}
	local, remote, err := worker.Endpoints(hostAddrs{}, conn)
	if err != nil {
		return nil, err
	}
	wait := req.Timeout
	if wait <= 0 {
		wait = defaultWait
	}
	l := d.owner(local, remote)
	done := make(chan error, 1)
	var ierr error
	if err := d.post(l, func(w *worker.Worker) {
		ierr = w.Initiate(req.Conn, req.Child, func(err error) { done <- err })
	}); err != nil {
		return nil, err
	}
	if ierr != nil {
		return nil, ierr
	}
	select {
	case err := <-done:
		if err != nil {
			return nil, err
		}
		return &ikectl.Result{Matched: 1, Message: fmt.Sprintf("connection %q established on worker %d", req.Conn, l.idx)}, nil
	case <-time.After(wait):
		return nil, fmt.Errorf("connection %q: no outcome within %v (still trying)", req.Conn, wait)
	}
}

// loadWait bounds the wait for a load run beyond its own timeout: the
// IKE SAs in flight then end on their own (retransmission timeout).
const loadWait = 10 * time.Minute

// connOwner returns the worker that owns a connection's tunnel.
func (d *Daemon) connOwner(name string) (*loop, error) {
	conn := d.cfg.Load().Connections[name]
	if conn == nil {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "no connection %q", name)
	}
	local, remote, err := worker.Endpoints(hostAddrs{}, conn)
	if err != nil {
		return nil, err
	}
	return d.owner(local, remote), nil
}

func loadResult(l *loop, p worker.LoadProgress) *ikectl.LoadResult {
	return &ikectl.LoadResult{Conn: p.Conn, Worker: l.idx, Count: p.Count, Window: p.Window, Started: p.Started,
		Established: p.Established, Failed: p.Failed, FirstFailure: p.FirstFailure, Stopped: p.Stopped,
		Elapsed: p.Elapsed, Rate: p.Rate(), Done: p.Done}
}

// load runs the load initiator on the worker of the connection's tunnel
// (all its IKE SAs hash there) and waits for the outcome unless asked to
// run in the background.
func (d *Daemon) load(req ikectl.Load) (*ikectl.LoadResult, error) {
	l, err := d.connOwner(req.Conn)
	if err != nil {
		return nil, err
	}
	done := make(chan worker.LoadProgress, 1)
	var lerr error
	var started worker.LoadProgress
	spec := worker.LoadSpec{Conn: req.Conn, Count: req.Count, Window: req.Window, Timeout: req.Timeout, MaxFailures: req.MaxFailures,
		Identity: req.Identity}
	if err := d.post(l, func(w *worker.Worker) {
		lerr = w.Load(spec, func(p worker.LoadProgress) { done <- p })
		started, _ = w.LoadStatus()
	}); err != nil {
		return nil, err
	}
	if lerr != nil {
		return nil, lerr
	}
	d.loadsMu.Lock()
	if d.loads == nil {
		d.loads = map[string]*loop{}
	}
	d.loads[req.Conn] = l
	d.loadsMu.Unlock()
	if req.Background {
		return loadResult(l, started), nil
	}
	select {
	case p := <-done:
		return loadResult(l, p), nil
	case <-time.After(req.Timeout + loadWait):
		return d.loadStatus(req.Conn)
	case <-d.ctx.Done():
		return nil, d.ctx.Err()
	}
}

// loadStatus reports the current or last load run of a connection.
func (d *Daemon) loadStatus(conn string) (*ikectl.LoadResult, error) {
	// The run is on the worker loads names: the one it started on, or the
	// one a change of the SPU map moved it to with its tunnel (moveLoads).
	d.loadsMu.Lock()
	l := d.loads[conn]
	d.loadsMu.Unlock()
	if l == nil {
		var err error
		if l, err = d.connOwner(conn); err != nil {
			return nil, err
		}
	}
	var p worker.LoadProgress
	var ok bool
	if err := d.post(l, func(w *worker.Worker) { p, ok = w.LoadStatus() }); err != nil {
		return nil, err
	}
	if !ok || p.Conn != conn {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "no load run of connection %q", conn)
	}
	return loadResult(l, p), nil
}

// terminate deletes IKE or Child SAs on every worker and waits.
func (d *Daemon) terminate(req ikectl.Terminate) (*ikectl.Result, error) {
	if req.Conn == "" && req.IKEID == 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "terminate: name a connection or an IKE SA id")
	}
	wait := req.Timeout
	if wait <= 0 {
		wait = defaultWait
	}
	sel := worker.Target{Conn: req.Conn, IKEID: req.IKEID, Child: req.Child, ChildID: req.ChildID}
	// Each worker calls its done function once (at once when it has
	// nothing to delete); the channel holds them all, so that a worker
	// never blocks on it.
	done := make(chan error, len(d.loops))
	n := 0
	err := d.each(func(_ *loop, w *worker.Worker) {
		n += w.Terminate(sel, func(err error) { done <- err })
	})
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "terminate: no SA matches %+v", req)
	}
	timeout := time.After(wait)
	for range d.loops {
		select {
		case <-done:
		case <-timeout:
			return nil, fmt.Errorf("terminate: not finished within %v", wait)
		}
	}
	return &ikectl.Result{Matched: n, Message: "terminated"}, nil
}

// rekey starts the rekeys an operator asks for, on every worker.
func (d *Daemon) rekey(req ikectl.Rekey) (*ikectl.Result, error) {
	if req.Conn == "" && req.IKEID == 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "rekey: name a connection or an IKE SA id")
	}
	sel := worker.Target{Conn: req.Conn, IKEID: req.IKEID, Child: req.Child, ChildID: req.ChildID}
	n := 0
	if err := d.each(func(_ *loop, w *worker.Worker) { n += w.Rekey(sel, req.IKE) }); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, unixrpc.Errorf(unixrpc.CodeNotFound, "rekey: no established SA matches %+v", req)
	}
	what := "child sa"
	if req.IKE {
		what = "ike sa"
	}
	return &ikectl.Result{Matched: n, Message: fmt.Sprintf("%s rekey started", what)}, nil
}

// Reload rereads the configuration: IKE SAs of connections that did not
// change are left alone; those of removed or changed connections are
// deleted; traps and start actions follow the new configuration.
func (d *Daemon) Reload() (*ikectl.ReloadResult, error) {
	// SIGHUP and spuctl reload may come at once: one reload at a time,
	// each comparing with what the one before installed.
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := config.Load(d.opts.ConfigPath, task.ConfigChecker{})
	if err != nil {
		return nil, err
	}
	d.logWarnings(cfg)
	d.logTrust(cfg)
	d.fileCfg = cfg
	return d.apply(d.compose(cfg))
}

// apply puts cfg in force in place of the running configuration, as a
// reload does; the caller holds reloadMu.
func (d *Daemon) apply(cfg *config.Config) (*ikectl.ReloadResult, error) {
	old := d.cfg.Load()
	if cfg.Control != old.Control || cfg.SPUD != old.SPUD || cfg.Port != old.Port || cfg.PortNATT != old.PortNATT ||
		!slices.Equal(cfg.Listen, old.Listen) {
		d.log.Warn("iked: reload: spud, control, listen and port settings take effect at the next start")
		cfg.Control, cfg.SPUD, cfg.Port, cfg.PortNATT, cfg.Listen = old.Control, old.SPUD, old.Port, old.PortNATT, old.Listen
	}
	res := &ikectl.ReloadResult{}
	gone := map[string]bool{}
	for _, name := range old.Order {
		nc := cfg.Connections[name]
		switch {
		case nc == nil:
			res.Removed = append(res.Removed, name)
			gone[name] = true
		case !config.SameConn(old.Connections[name], nc):
			res.Changed = append(res.Changed, name)
			gone[name] = true
		default:
			res.Unchanged = append(res.Unchanged, name)
		}
	}
	for _, name := range cfg.Order {
		if old.Connections[name] == nil {
			res.Added = append(res.Added, name)
		}
	}
	if addrs, err := listenAddrs(cfg); err == nil {
		// New local addresses get their sockets (old ones stay open).
		if err := d.listen(cfg, addrs, true); err != nil {
			d.log.Warn("iked: reload: listen", "err", err.Error())
		}
	}
	d.useConfig(cfg)
	for name := range gone {
		for _, cn := range old.Connections[name].ChildOrder {
			d.removeTrap(name, cn)
		}
		n := name
		for _, l := range d.loops {
			d.post(l, func(w *worker.Worker) { w.Terminate(worker.Target{Conn: n}, nil) })
		}
	}
	startOnly := map[string]bool{}
	for _, n := range append(append([]string{}, res.Added...), res.Changed...) {
		startOnly[n] = true
	}
	d.applyStartActions(cfg, startOnly)
	d.log.Info("iked: configuration reloaded", "added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"unchanged", len(res.Unchanged))
	return res, nil
}

// applyStartActions installs traps and initiates start_action=start
// children, of every connection or of those in only.
func (d *Daemon) applyStartActions(cfg *config.Config, only map[string]bool) {
	for _, name := range cfg.Order {
		if only != nil && !only[name] {
			continue
		}
		conn := cfg.Connections[name]
		for _, cn := range conn.ChildOrder {
			switch conn.Children[cn].StartAction {
			case "trap":
				if err := d.installTrap(name, cn); err != nil {
					d.log.Warn("iked: trap", "conn", name, "child", cn, "err", err.Error())
				}
			case "start":
				local, remote, err := worker.Endpoints(hostAddrs{}, conn)
				if err != nil {
					d.log.Warn("iked: start", "conn", name, "child", cn, "err", err.Error())
					continue
				}
				l := d.owner(local, remote)
				n, c := name, cn
				select {
				case l.cmds <- func(w *worker.Worker) {
					if err := w.Initiate(n, c, nil); err != nil {
						l.log.Warn("iked: start", "conn", n, "child", c, "err", err.Error())
					}
				}:
				case <-d.ctx.Done():
					return
				}
			}
		}
	}
}

func (d *Daemon) statsReply() *ikectl.Stats {
	s := d.stats.Snapshot()
	out := &ikectl.Stats{Counters: s.Counters, Failures: s.Failures, HalfOpen: s.HalfOpen}
	if n := d.dropped.Load(); n > 0 {
		out.Counters["queue_full_drops"] = n
	}
	d.each(func(l *loop, w *worker.Worker) {
		out.Workers = append(out.Workers, ikectl.WorkerStats{ID: l.idx, SPU: l.spu, IKESAs: w.Len(),
			Datagrams: l.rx.Load(), HandedIn: l.handedIn.Load(), SpudWaitNS: uint64(l.dp.waitedNS.Load()), InstallsInFlight: l.wdp.inflight.Load()})
		out.IKESAs += w.Len()
	})
	out.Migrations = d.migrations.Load()
	for _, p := range d.spus.Load().Entries() {
		out.MapLogical = append(out.MapLogical, int(p))
	}
	if d.steer != nil {
		if c, err := d.steer.Counters(); err == nil {
			out.Reuseport = map[string]uint64{}
			for i, v := range c {
				out.Reuseport[reuseport.Counter(i).String()] = v
			}
		}
	}
	return out
}
