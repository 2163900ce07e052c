package worker

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/sa"
)

// LoadSpec is a load-initiator run: Count new IKE SAs of a connection,
// each with the connection's first child, at most Window of them not yet
// established at a time (what strongSwan's load-tester plugin does, for
// benchmarks and testbeds).
type LoadSpec struct {
	Conn   string
	Count  int
	Window int
	// Timeout stops starting new IKE SAs once passed (those in flight
	// finish or fail on their own retransmission timeout); zero: none.
	Timeout time.Duration
	// MaxFailures stops starting new IKE SAs once that many failed; zero:
	// no budget.
	MaxFailures int
	// Identity, when set, is the local identity of each IKE SA, with "%d"
	// replaced by its number in the run (1, 2, ...), as load-tester's
	// initiator_id: the responder then sees as many tunnels as IKE SAs, not
	// one tunnel reauthenticated over and over. PSK only (a certificate
	// names one identity).
	Identity string
}

// LoadProgress is the state (or outcome) of a load run.
type LoadProgress struct {
	Conn        string
	Count       int
	Window      int
	Started     int
	Established int
	Failed      int
	// FirstFailure is why the first IKE SA that failed did.
	FirstFailure string
	// Stopped says why the run stopped before Count ("timeout", "failure
	// budget"); empty when it ran through.
	Stopped string
	Begin   time.Time
	Elapsed time.Duration
	Done    bool
}

// Rate is the established IKE SAs per second of elapsed time.
func (p LoadProgress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Established) / p.Elapsed.Seconds()
}

// loadRun is a running load.
type loadRun struct {
	spec     LoadSpec
	conn     *config.Conn
	child    *config.Child
	progress LoadProgress
	deadline time.Time
	done     func(LoadProgress)
	// seq numbers the IKE SAs begun (their identities), Started less any
	// abandoned ones at a hand-off, which are begun again under new numbers.
	seq int
	// handedOff: the run went to another worker (HandOffLoad); what its
	// abandoned IKE SAs report here counts nothing.
	handedOff bool
}

// ErrLoadRunning is returned by Load while the worker runs another load.
var ErrLoadRunning = errors.New("a load run is in progress")

// Load starts a load run on conn: spec.Count new IKE SAs (never an
// existing one, unlike Initiate), each with the connection's first child,
// spec.Window of them in flight at a time. done (may be nil) is called
// once with the outcome when every IKE SA started is established or has
// failed. The IKE SAs of a load stay until terminated; they are not
// re-initiated by close_action or dpd_action, and their Child SAs are not
// reauthentication replacements of each other: they share the tunnel's
// reqid and policy, as siblings.
func (w *Worker) Load(spec LoadSpec, done func(LoadProgress)) error {
	defer w.runPending()
	if w.load != nil && !w.load.progress.Done {
		return ErrLoadRunning
	}
	conn := w.env.Config().Connections[spec.Conn]
	if conn == nil {
		return fmt.Errorf("no connection %q", spec.Conn)
	}
	if len(conn.ChildOrder) == 0 {
		return fmt.Errorf("connection %q has no child", spec.Conn)
	}
	if spec.Count <= 0 {
		return fmt.Errorf("load %q: count %d, want at least 1", spec.Conn, spec.Count)
	}
	if spec.Window <= 0 {
		spec.Window = 1
	}
	if _, _, err := Endpoints(w.env, conn); err != nil {
		return err
	}
	if spec.Identity != "" {
		if err := checkLoadIdentity(conn, spec.Identity); err != nil {
			return err
		}
	}
	now := w.env.Now()
	r := &loadRun{spec: spec, conn: conn, child: firstChild(conn), done: done,
		progress: LoadProgress{Conn: spec.Conn, Count: spec.Count, Window: spec.Window, Begin: now}}
	if spec.Timeout > 0 {
		r.deadline = now.Add(spec.Timeout)
	}
	w.load = r
	w.log.Info("load run started", "conn", spec.Conn, "count", spec.Count, "window", spec.Window)
	w.loadMore(r)
	return nil
}

// LoadStatus returns the progress of the current or last load run, and
// false if there was none.
func (w *Worker) LoadStatus() (LoadProgress, bool) {
	if w.load == nil {
		return LoadProgress{}, false
	}
	p := w.load.progress
	if !p.Done {
		p.Elapsed = w.env.Now().Sub(p.Begin)
	}
	return p, true
}

// loadMore starts IKE SAs until the window is full or the run must stop,
// and ends the run when nothing is in flight any more.
func (w *Worker) loadMore(r *loadRun) {
	if r.handedOff {
		return
	}
	p := &r.progress
	for p.Stopped == "" && p.Started < r.spec.Count && p.Started-p.Established-p.Failed < r.spec.Window {
		if !r.deadline.IsZero() && !w.env.Now().Before(r.deadline) {
			p.Stopped = "timeout"
			break
		}
		if r.spec.MaxFailures > 0 && p.Failed >= r.spec.MaxFailures {
			p.Stopped = "failure budget"
			break
		}
		p.Started++
		r.seq++
		if err := w.loadOne(r); err != nil {
			p.Failed++
			if p.FirstFailure == "" {
				p.FirstFailure = err.Error()
			}
		}
	}
	if p.Done || p.Started-p.Established-p.Failed > 0 {
		return
	}
	if p.Started < r.spec.Count && p.Stopped == "" {
		return
	}
	p.Done = true
	p.Elapsed = w.env.Now().Sub(p.Begin)
	w.log.Info("load run finished", "conn", p.Conn, "count", p.Count, "established", p.Established, "failed", p.Failed,
		"elapsed", p.Elapsed.String(), "rate", fmt.Sprintf("%.1f/s", p.Rate()), "stopped", p.Stopped, "first_failure", p.FirstFailure)
	if r.done != nil {
		d := r.done
		r.done = nil
		d(*p)
	}
}

// checkLoadIdentity refuses an identity pattern that cannot name each IKE
// SA of a load run of conn.
func checkLoadIdentity(conn *config.Conn, pattern string) error {
	if strings.Count(pattern, "%d") != 1 {
		return fmt.Errorf("load %q: identity %q: want exactly one %%d (the IKE SA's number)", conn.Name, pattern)
	}
	if conn.Local == nil || conn.Local.Method.PubKey() {
		return fmt.Errorf("load %q: identity %q: needs local auth psk (a certificate names its own identity)", conn.Name, pattern)
	}
	if _, err := loadIdentity(pattern, 1); err != nil {
		return fmt.Errorf("load %q: %w", conn.Name, err)
	}
	return nil
}

// loadIdentity is the identity of IKE SA n of a load run.
func loadIdentity(pattern string, n int) (config.Identity, error) {
	return config.ParseIdentity(strings.Replace(pattern, "%d", strconv.Itoa(n), 1))
}

// loadOne starts one new IKE SA of a load run.
func (w *Worker) loadOne(r *loadRun) error {
	var id *config.Identity
	if r.spec.Identity != "" {
		v, err := loadIdentity(r.spec.Identity, r.seq)
		if err != nil {
			return err
		}
		id = &v
	}
	m, err := w.newIKEAs(r.conn, id, []*config.Child{r.child}, func(err error) {
		if r.handedOff {
			return
		}
		p := &r.progress
		if err != nil {
			p.Failed++
			if p.FirstFailure == "" {
				p.FirstFailure = err.Error()
			}
		} else {
			p.Established++
		}
		// A task's callback: start the next ones once the event at hand
		// is handled.
		w.pending = append(w.pending, func() { w.loadMore(r) })
	})
	if err != nil {
		return err
	}
	w.loadSAs[m.IKE] = true
	return nil
}

// isLoad reports whether an IKE SA was made by a load run.
func (w *Worker) isLoad(ike *sa.IKESA) bool { return w.loadSAs[ike] }

// sharable reports whether p, of load IKE SA o, can share its reqid and
// policy with ch of ike.
func (w *Worker) sharable(o *sa.IKESA, p *sa.ChildSA, ike *sa.IKESA, ch *sa.ChildSA) bool {
	return w.loadSAs[o] && sameTunnel(o, ike) && o.State != sa.Destroyed && !p.Trap &&
		p.State != sa.ChildDeleted && p.State != sa.ChildDeleting && p.ReqID != 0 && sameChild(p, ch)
}

// loadSibling finds the Child SA of another load IKE SA of the tunnel that
// a new load Child SA ch shares its reqid and policy with: the one holding
// the policy (the newest), else any live one. The last holder is tried
// first, so that a load of N IKE SAs does not search N times over them.
func (e *mgrEnv) loadSibling(ike *sa.IKESA, ch *sa.ChildSA) (*sa.IKESA, *sa.ChildSA) {
	w := e.w
	if h := w.loadHint; h.ch != nil && len(h.ch.PolicyIDs) > 0 && w.sharable(h.ike, h.ch, ike, ch) {
		w.loadHint = childHint{ike, ch}
		return h.ike, h.ch
	}
	var anyIKE *sa.IKESA
	var anyCh *sa.ChildSA
	for o := range w.loadSAs {
		if !sameTunnel(o, ike) || o.State == sa.Destroyed {
			continue
		}
		for _, p := range o.Children {
			if !w.sharable(o, p, ike, ch) {
				continue
			}
			if len(p.PolicyIDs) > 0 {
				// Install moves the policy to ch.
				w.loadHint = childHint{ike, ch}
				return o, p
			}
			if anyCh == nil {
				anyIKE, anyCh = o, p
			}
		}
	}
	if anyCh == nil {
		// ch is the first of the tunnel: Install gives it a new policy.
		w.loadHint = childHint{ike, ch}
	}
	return anyIKE, anyCh
}

// loadHandOver gives the policies of a load Child SA whose IKE SA goes to
// another live load Child SA of the same reqid, so that the tunnel keeps
// its policy while any load IKE SA is up.
func (e *mgrEnv) loadHandOver(m *manager.Manager, ch *sa.ChildSA) {
	if len(ch.PolicyIDs) == 0 {
		return
	}
	w := e.w
	for o := range w.loadSAs {
		if o == m.IKE || !sameTunnel(o, m.IKE) || o.State == sa.Destroyed {
			continue
		}
		for _, p := range o.Children {
			if p.Name == ch.Name && p.ReqID == ch.ReqID && p.Trap == ch.Trap && p.State != sa.ChildDeleted && p.State != sa.ChildDeleting {
				p.PolicyIDs = append(p.PolicyIDs, ch.PolicyIDs...)
				ch.PolicyIDs = nil
				w.loadHint = childHint{o, p}
				oike := o
				w.pending = append(w.pending, func() { w.env.Changed(oike) })
				return
			}
		}
	}
}

// LoadHandOff is a load run on its way from one worker to another
// (HandOffLoad, ResumeLoad).
type LoadHandOff struct {
	r         *loadRun
	abandoned int
}

// HandOffLoad takes the running load of connection conn off the worker,
// for ResumeLoad on the worker that owns the connection's tunnel now that
// the SPU map moved it (nil if the worker runs no load of conn). Its IKE
// SAs are anchored on the tunnel's logical SPU, whose datagrams reach the
// new owner from now on: those not yet established here are abandoned
// (destroyed without a word to the peer, whose half-open or unconfirmed
// IKE SA expires on its own) and the run starts them again there; the
// established ones move with the map as every IKE SA does.
func (w *Worker) HandOffLoad(conn string) *LoadHandOff {
	defer w.runPending()
	r := w.load
	if r == nil || r.progress.Done || r.spec.Conn != conn {
		return nil
	}
	r.handedOff = true
	w.load = nil
	h := &LoadHandOff{r: r}
	for ike := range w.loadSAs {
		m := w.bySPI[ike.OurSPI()]
		if m == nil || m.IKE != ike || m.Destroyed() || ike.State == sa.Established || ike.State == sa.Rekeyed ||
			ike.State == sa.Deleting {
			continue
		}
		m.Destroy("abandoned: its logical SPU moved to another worker, where the load run starts it again")
		h.abandoned++
	}
	// The run counts them as never started.
	r.progress.Started -= h.abandoned
	w.log.Info("load run handed over to another worker", "conn", conn, "established", r.progress.Established,
		"failed", r.progress.Failed, "abandoned", h.abandoned)
	return h
}

// ResumeLoad goes on with a load run that another worker handed off
// (HandOffLoad): it starts the IKE SAs the run still lacks here.
func (w *Worker) ResumeLoad(h *LoadHandOff) error {
	defer w.runPending()
	if w.load != nil && !w.load.progress.Done {
		return ErrLoadRunning
	}
	r := &loadRun{spec: h.r.spec, conn: h.r.conn, child: h.r.child, progress: h.r.progress, deadline: h.r.deadline, done: h.r.done,
		seq: h.r.seq}
	if c := w.env.Config().Connections[r.spec.Conn]; c != nil {
		r.conn, r.child = c, firstChild(c)
	}
	w.load = r
	w.log.Info("load run taken over from another worker", "conn", r.spec.Conn, "started", r.progress.Started,
		"established", r.progress.Established, "restarting", h.abandoned)
	w.loadMore(r)
	return nil
}
