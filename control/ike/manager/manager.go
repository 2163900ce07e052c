// Package manager is the task manager of one IKE SA, in the manner of
// strongSwan's charon: it owns the message IDs (window size 1), the
// retransmission of our requests with exponential backoff, the cache of
// our last response (a retransmitted request is answered from it, never
// processed twice), and the choice of the tasks (package task) that make up
// each exchange. It also keeps the IKE SA's timers: retransmission,
// half-open timeout, liveness checks (DPD), NAT keepalives and the Child
// SAs' rekey and expiry times.
//
// A Manager is driven by one goroutine (its worker's): Receive for a
// datagram of its IKE SA, Tick when Deadline has passed, Queue and
// Initiate for new work. It never blocks but on the data plane calls its
// tasks make.
//
// Message flow of an exchange we initiate:
//
//	Queue(tasks) -> Initiate: pick the tasks of the next exchange by the IKE
//	SA's state -> each task's Build -> Encode (SK with the IKE SA's keys) ->
//	Send, retransmit at Timeout*Base^n until Tries are spent -> response:
//	each task's Process -> Done / NeedMore / Retry / Failed / Destroy.
//
// And one the peer initiates:
//
//	request with the expected message ID -> Decrypt, Validate -> responder
//	tasks by exchange -> each Process, then each Build -> Encode, cache,
//	Send; a request with the previous ID gets the cached response again.
//
// Rekeying is tasks (package task). The manager gives the responder
// tasks our exchange in flight (Ctx.Active), so that a crossing request is
// noted as a collision, and gives the IKE rekey tasks a Host to make the
// new IKE SA, which the worker adopts (Env.Adopt); the old one stays
// Rekeyed only to answer the peer's DELETE. It runs the lifetimes: Child
// SA rekey and expiry times, the held-back outbound SAs of rekey
// responders, the drain of replaced inbound SAs, the IKE SA's rekey,
// reauth and expiry times, and tasks deferred after TEMPORARY_FAILURE.
// Liveness checks count inbound ESP when the data plane reports it
// (UsageReader).
package manager

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
)

// Datagram is one UDP datagram of IKE: Local is our address and port (the
// socket it arrived on or leaves from), Remote the peer's. Data is the IKE
// message, with the non-ESP marker on the NAT-T port.
type Datagram struct {
	Local, Remote netip.AddrPort
	Data          []byte
}

// Settings are the daemon-wide parameters a manager needs.
type Settings struct {
	RetransmitTimeout time.Duration // 4 s
	RetransmitBase    float64       // 1.8
	RetransmitTries   int           // 5
	HalfOpenTimeout   time.Duration // 30 s
	KeepaliveInterval time.Duration // 20 s; 0: no NAT keepalives
	NATTPort          uint16        // 4500
	// DrainDelay is how long the inbound SA of a replaced Child SA stays
	// (5 s).
	DrainDelay time.Duration
}

// DefaultSettings are strongSwan's defaults.
func DefaultSettings() Settings {
	return Settings{RetransmitTimeout: 4 * time.Second, RetransmitBase: 1.8, RetransmitTries: 5,
		HalfOpenTimeout: 30 * time.Second, KeepaliveInterval: 20 * time.Second, NATTPort: 4500, DrainDelay: 5 * time.Second}
}

// Env is the worker as a manager sees it.
type Env interface {
	task.Env
	Settings() Settings
	Send(d Datagram)
	Log() *slog.Logger
	// Changed says the IKE SA changed (an exchange completed): persist it.
	Changed(m *Manager)
	// Established is called once when IKE_AUTH completes.
	Established(m *Manager)
	// Destroyed is called once when the IKE SA is gone; f is nil for a
	// normal deletion.
	Destroyed(m *Manager, f *task.Failure)
	// ChildRekeyDue is called when a Child SA reaches its rekey time; the
	// hook must move ch.RekeyAt (or clear it) so it is not called again.
	ChildRekeyDue(m *Manager, ch *sa.ChildSA)
	// ChildExpired is called when a Child SA reaches its life time.
	ChildExpired(m *Manager, ch *sa.ChildSA)
	// ReauthDue is called when the IKE SA reaches its reauth time: the
	// hook starts its replacement (make before break).
	ReauthDue(m *Manager)
	// NewIKESPI returns an IKE SPI of ours that no IKE SA uses.
	NewIKESPI() (uint64, error)
	// Adopt takes a new IKE SA (made by a rekey of m's) under the worker's
	// care and returns its manager; its queued tasks start once the
	// current event is handled.
	Adopt(ike *sa.IKESA) *Manager
	// Heir is called for each Child SA of an IKE SA that goes: if a Child
	// SA of another IKE SA replaces it (a reauthentication's), the hook
	// installs that one's pending outbound SA and returns its IKE SA, which
	// then keeps ch's inbound SA for the drain period.
	Heir(m *Manager, ch *sa.ChildSA) *sa.IKESA
}

// UsageReader is implemented by data planes that can tell how many
// packets inbound SAs received, so that DPD counts ESP as a sign of life
// (strongSwan checks only when neither IKE nor ESP arrived for dpd_delay).
type UsageReader interface {
	InboundPackets(spis []uint32) (uint64, error)
}

// RekeyedTimeout bounds how long a rekeyed IKE SA waits for the peer's
// DELETE (strongSwan waits 90 s as responder, 30 s for a redundant one).
const RekeyedTimeout = 30 * time.Second

// deferredTask is a task queued for later (a retry after
// TEMPORARY_FAILURE).
type deferredTask struct {
	at time.Time
	t  task.Initiator
}

// request is our outstanding request.
type request struct {
	id       uint32
	exchange message.ExchangeType
	packets  [][]byte // as sent, without the non-ESP marker
	tries    int      // retransmissions so far
	next     time.Time
}

// Reasons of a normal end, as Destroy and EndReason name them.
const (
	ReasonPeerDeleted    = "deleted by peer"
	ReasonInitialContact = "replaced after the peer's INITIAL_CONTACT"
)

// Manager is the task manager of one IKE SA.
type Manager struct {
	IKE *sa.IKESA
	env Env
	log *slog.Logger

	queue    []task.Initiator
	active   []task.Initiator
	req      *request
	deferred []deferredTask

	// halfOpenUntil is the half-open deadline of a responder IKE SA (zero
	// once established or for an initiator).
	halfOpenUntil time.Time
	// lastRecv is when the last authenticated message of the peer arrived;
	// lastSent when we last sent anything (for keepalives).
	lastRecv, lastSent time.Time
	dpdDelay           time.Duration
	// inPkts is the inbound packet count of the Child SAs at the last
	// sample (UsageReader, every dpd_delay/2), taken at sampledAt;
	// lastInbound is the earliest time ESP may last have arrived.
	inPkts                 uint64
	sampledAt, lastInbound time.Time
	// probeAt is when to look for traffic through Child SAs whose outbound
	// SA is held back (zero: none pending).
	probeAt   time.Time
	destroyed bool
	failure   *task.Failure
	endReason string
	// frags collect the fragments of the peer's requests and of the
	// responses to ours (RFC 7383); nil until the first fragment.
	frags fragBuffers
}

// New returns the manager of ike.
func New(ike *sa.IKESA, env Env) *Manager {
	m := &Manager{IKE: ike, env: env}
	now := env.Now()
	m.lastRecv, m.lastSent = now, now
	m.refreshLog()
	return m
}

// Restore returns the manager of an IKE SA read back from the state file:
// established, with its message IDs and cached response.
func Restore(ike *sa.IKESA, env Env) *Manager {
	m := New(ike, env)
	if ike.State == sa.Rekeyed && ike.RekeyedUntil.IsZero() {
		ike.RekeyedUntil = env.Now().Add(RekeyedTimeout)
	}
	// The request in flight when iked stopped goes out again as it was,
	// with its task rebuilt to process the answer.
	var resumed task.Initiator
	if f := ike.InFlight; f != nil {
		t, err := task.Resume(m.ctx(f.Exchange), f)
		if err != nil {
			m.log.Warn("request in flight not resumed; its answer will be ignored", "exchange", f.Exchange.String(),
				"msgid", f.MsgID, "err", err.Error())
		}
		resumed = t
		m.active = []task.Initiator{t}
		m.req = &request{id: f.MsgID, exchange: f.Exchange, packets: f.Packets, next: env.Now()}
		m.log.Info("request in flight resumed", "exchange", f.Exchange.String(), "msgid", f.MsgID, "task", f.Task)
	}
	// Other tasks are not persisted: a Child SA caught REKEYING is rekeyed
	// again soon, a delete is sent again.
	var deleting []*sa.ChildSA
	for _, ch := range ike.Children {
		if r, ok := resumed.(*task.ChildRekeyI); ok && r.Old == ch {
			continue
		}
		if _, ok := resumed.(*task.ChildDeleteI); ok && ch.State == sa.ChildDeleting {
			continue
		}
		switch ch.State {
		case sa.ChildRekeying:
			ch.State = sa.ChildInstalled
			ch.RekeyAt = env.Now().Add(time.Second)
		case sa.ChildDeleting:
			deleting = append(deleting, ch)
		}
	}
	if len(deleting) > 0 {
		m.Queue(task.NewChildDeleteI("deleting when iked stopped", nil, deleting...))
	}
	if _, ok := resumed.(*task.IKEDeleteI); !ok && ike.State == sa.Deleting {
		ike.State = sa.Established
		m.Queue(task.NewIKEDeleteI("deleting when iked stopped"))
	}
	if ike.State == sa.Established {
		m.setDPD()
	}
	m.armProbe()
	return m
}

func (m *Manager) refreshLog() {
	ike := m.IKE
	m.log = m.env.Log().With("ike_id", ike.UniqueID, "conn", ike.ConnName, "spis", ike.SPIs(), "peer", ike.Remote.String())
}

// Logger returns the IKE SA's logger (conn, SPIs, peer).
func (m *Manager) Logger() *slog.Logger { return m.log }

// Destroyed reports whether the IKE SA is gone.
func (m *Manager) Destroyed() bool { return m.destroyed }

// Active returns the tasks of the exchange in flight.
func (m *Manager) Active() []task.Initiator { return m.active }

// Queued returns the tasks waiting for an exchange.
func (m *Manager) Queued() []task.Initiator { return m.queue }

// Deferred returns how many tasks wait for a later start (retries after
// TEMPORARY_FAILURE).
func (m *Manager) Deferred() int { return len(m.deferred) }

// Busy reports whether a request of ours is outstanding.
func (m *Manager) Busy() bool { return m.req != nil }

// SetHalfOpen marks a responder IKE SA half-open until deadline.
func (m *Manager) SetHalfOpen(deadline time.Time) { m.halfOpenUntil = deadline }

// HalfOpen reports whether the IKE SA is a half-open responder IKE SA.
func (m *Manager) HalfOpen() bool { return !m.halfOpenUntil.IsZero() }

// Queue adds a task; Initiate starts it when the window is free.
func (m *Manager) Queue(t task.Initiator) { m.queue = append(m.queue, t) }

// QueueAt queues t to start no earlier than at.
func (m *Manager) QueueAt(t task.Initiator, at time.Time) {
	m.deferred = append(m.deferred, deferredTask{at: at, t: t})
}

func (m *Manager) ctx(ex message.ExchangeType) *task.Ctx {
	s := m.env.Settings()
	return &task.Ctx{Env: m.env, IKE: m.IKE, Log: m.log, Exchange: ex, Queue: m.Queue, NATTPort: s.NATTPort,
		DrainDelay: s.DrainDelay, Active: m.active, QueueAt: m.QueueAt, Host: host{m}}
}

// send sends an IKE message from our current address to the peer's.
func (m *Manager) send(msg []byte) { m.sendTo(m.IKE.Local, m.IKE.Remote, msg) }

func (m *Manager) sendTo(local, remote netip.AddrPort, msg []byte) {
	if local.Port() == m.env.Settings().NATTPort {
		msg = message.AddNonESPMarker(msg)
	}
	m.env.Send(Datagram{Local: local, Remote: remote, Data: msg})
	m.lastSent = m.env.Now()
}

// Initiate starts the next exchange if none is in flight.
func (m *Manager) Initiate() {
	for !m.destroyed && m.req == nil {
		ex, tasks := m.pick()
		if len(tasks) == 0 {
			return
		}
		m.active = tasks
		if m.sendRequest(ex) {
			return
		}
	}
}

// pick chooses the tasks of the next exchange by the IKE SA's state, and
// removes them from the queue.
func (m *Manager) pick() (message.ExchangeType, []task.Initiator) {
	take := func(i int) task.Initiator {
		t := m.queue[i]
		m.queue = append(m.queue[:i], m.queue[i+1:]...)
		return t
	}
	find := func(k task.Kind) int {
		for i, t := range m.queue {
			if t.Kind() == k {
				return i
			}
		}
		return -1
	}
	switch m.IKE.State {
	case sa.Created:
		if i := find(task.KindIKEInit); i >= 0 {
			return message.IKESAInit, []task.Initiator{take(i)}
		}
	case sa.Connecting:
		if !m.IKE.Initiator {
			return 0, nil
		}
		if i := find(task.KindIKEAuth); i >= 0 {
			ts := []task.Initiator{take(i)}
			if j := find(task.KindChildCreate); j >= 0 {
				ts = append(ts, take(j))
			}
			return message.IKEAuth, ts
		}
	case sa.Established:
		if len(m.queue) == 0 {
			return 0, nil
		}
		i := find(task.KindIKEDelete)
		if i < 0 {
			i = 0
		}
		t := take(i)
		switch t.Kind() {
		case task.KindChildCreate, task.KindChildRekey, task.KindIKERekey:
			return message.CreateChildSA, []task.Initiator{t}
		}
		return message.Informational, []task.Initiator{t}
	case sa.Rekeyed:
		// A rekeyed IKE SA only deletes itself.
		if i := find(task.KindIKEDelete); i >= 0 {
			return message.Informational, []task.Initiator{take(i)}
		}
	case sa.Deleting:
		// Only the notify of a failure may still go out.
		if i := find(task.KindInfo); i >= 0 {
			return message.Informational, []task.Initiator{take(i)}
		}
	}
	return 0, nil
}

// rank orders statuses by how much they end: the worst of an exchange's
// tasks decides.
func rank(s task.Status) int {
	switch s {
	case task.Reject:
		return 5
	case task.Failed:
		return 4
	case task.Destroy:
		return 3
	case task.Retry:
		return 2
	}
	return 0
}

func essential(ex message.ExchangeType, t task.Initiator) bool {
	return ex == message.IKESAInit || ex == message.IKEAuth || t.Kind() == task.KindIKEDelete
}

// sendRequest builds, encodes and sends the request of m.active. It reports
// false if nothing was sent (every task dropped out), so that the caller
// moves on.
func (m *Manager) sendRequest(ex message.ExchangeType) bool {
	ike := m.IKE
	id := ike.MsgIDOut
	if ex == message.IKESAInit {
		id = 0
	}
	msg := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: ex, MessageID: id}}
	if ike.Initiator {
		msg.Header.Flags |= message.FlagInitiator
	}
	c := m.ctx(ex)
	kept := m.active[:0]
	for i, t := range m.active {
		if err := t.Build(c, msg); err != nil {
			if essential(ex, t) {
				f := c.Failure
				if f == nil {
					f = &task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("%s: %w", t.Kind(), err)}
				}
				// Every task of the exchange, built or not, learns the end.
				m.active = append(kept, m.active[i:]...)
				m.destroy(f, "")
				return true
			}
			m.log.Warn("task dropped", "task", t.Kind().String(), "err", err.Error())
			t.Abort(err)
			continue
		}
		kept = append(kept, t)
	}
	m.active = kept
	if len(m.active) == 0 {
		return false
	}
	pkts, err := m.encode(msg, ike.Local, ike.Remote)
	if err != nil {
		m.destroy(&task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("encode %s request: %w", ex, err)}, "")
		return true
	}
	if ex == message.IKESAInit {
		ike.InitI = pkts[0]
	}
	now := m.env.Now()
	m.req = &request{id: id, exchange: ex, packets: pkts, next: now.Add(m.timeout(0))}
	m.env.Stats().Inc(stats.ExchangesInitiated)
	m.log.Debug("request sent", "exchange", ex.String(), "msgid", id, "fragments", fragCount(pkts))
	if ex != message.IKESAInit && ex != message.IKEAuth && ike.State != sa.Created && ike.State != sa.Connecting {
		// The request in flight is part of the state: a restored IKE SA
		// must send this very request again, not a new one with its
		// message ID, and process the answer.
		ike.InFlight = nil
		if len(m.active) == 1 {
			if sn, ok := m.active[0].(task.Snapshotter); ok {
				if f := sn.Snapshot(); f != nil {
					f.MsgID, f.Exchange, f.Packets = id, ex, pkts
					ike.InFlight = f
				}
			}
		}
		if ike.InFlight == nil {
			ike.InFlight = &sa.InFlight{MsgID: id, Exchange: ex, Packets: pkts, Task: "unknown"}
		}
		m.env.Changed(m)
	}
	for _, p := range pkts {
		m.send(p)
	}
	return true
}

// timeout is the wait after the n-th retransmission (0: the first
// transmission): Timeout * Base^n.
func (m *Manager) timeout(n int) time.Duration {
	s := m.env.Settings()
	return time.Duration(float64(s.RetransmitTimeout) * math.Pow(s.RetransmitBase, float64(n)))
}

// Receive handles a decoded datagram of this IKE SA.
func (m *Manager) Receive(d Datagram, msg *message.Message) {
	if m.destroyed {
		return
	}
	if msg.Header.IsResponse() {
		m.receiveResponse(d, msg)
	} else {
		m.receiveRequest(d, msg)
	}
	if !m.destroyed {
		m.Initiate()
		m.armProbe()
	}
}

// armProbe schedules the look for traffic through Child SAs whose
// outbound SA is held back.
func (m *Manager) armProbe() {
	if !m.probeAt.IsZero() {
		return
	}
	if _, ok := m.env.DataPlane().(UsageReader); !ok {
		return
	}
	for _, ch := range m.IKE.Children {
		if pendingOut(ch) {
			m.probeAt = m.env.Now().Add(task.OutPendingProbe)
			return
		}
	}
}

// open decrypts a protected message; it reports false (counted) if the
// message must be dropped.
func (m *Manager) open(msg *message.Message) bool {
	if msg.Header.Exchange == message.IKESAInit {
		return true
	}
	if m.IKE.In == nil {
		m.env.Stats().Fail(stats.DecryptError)
		return false
	}
	if msg.Encrypted == nil {
		m.env.Stats().Fail(stats.InvalidSyntax)
		m.log.Debug("dropped: protected exchange without SK payload", "exchange", msg.Header.Exchange.String())
		return false
	}
	if msg.Encrypted.Fragment {
		return m.openFragment(msg)
	}
	if err := msg.Decrypt(m.IKE.In); err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		m.log.Debug("dropped: SK payload", "err", err.Error())
		return false
	}
	return true
}

// authenticated is called for every message that decrypted (or any
// IKE_SA_INIT): the peer is alive, and its address may have changed
// behind a NAT.
func (m *Manager) authenticated(d Datagram, msg *message.Message) {
	ike := m.IKE
	m.lastRecv = m.env.Now()
	if msg.Header.Exchange == message.IKESAInit || !ike.NAT() {
		return
	}
	if d.Remote == ike.Remote && d.Local == ike.Local {
		return
	}
	old := ike.Remote
	ike.Local, ike.Remote = d.Local, d.Remote
	m.refreshLog()
	if ike.State != sa.Established {
		// IKE_AUTH on the NAT-T port: the float of RFC 7296 2.23.
		m.log.Debug("peer floated to the NAT-T port", "from", old.String(), "to", d.Remote.String())
	} else {
		m.env.Stats().Inc(stats.PeerAddressChanges)
		m.log.Info("peer address changed", "from", old.String(), "to", d.Remote.String())
	}
	if len(ike.Children) > 0 {
		updateChildren(m, old)
	}
}

func (m *Manager) receiveRequest(d Datagram, msg *message.Message) {
	ike := m.IKE
	h := msg.Header
	if ike.MsgIDIn > 0 && h.MessageID == ike.MsgIDIn-1 && len(ike.LastResponse) > 0 {
		if !m.retransmittedFragment(msg) {
			return
		}
		m.env.Stats().Inc(stats.CachedResponses)
		m.log.Debug("retransmitted request answered from the cache", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		for _, p := range ike.LastResponse {
			m.sendTo(d.Local, d.Remote, p)
		}
		return
	}
	if h.MessageID != ike.MsgIDIn {
		m.env.Stats().Fail(stats.InvalidMessageID)
		m.log.Debug("dropped request with unexpected message id", "msgid", h.MessageID, "want", ike.MsgIDIn)
		return
	}
	if !m.open(msg) {
		return
	}
	m.authenticated(d, msg)
	c := m.ctx(h.Exchange)
	var tasks []task.Responder
	if err := message.Validate(msg); err != nil {
		m.env.Stats().Fail(stats.InvalidSyntax)
		m.log.Info("invalid request", "exchange", h.Exchange.String(), "err", err.Error())
		resp := m.response(msg)
		resp.Inner = []message.Payload{&message.Notify{NotifyType: message.InvalidSyntax}}
		m.sendResponse(resp, d)
		if h.Exchange == message.IKEAuth {
			m.destroy(&task.Failure{Reason: stats.InvalidSyntax, Err: err}, "")
		}
		return
	}
	switch h.Exchange {
	case message.IKESAInit:
		if ike.State != sa.Created {
			return
		}
		ike.InitI = append([]byte(nil), msg.Raw...)
		tasks = []task.Responder{&task.IKEInitR{}}
	case message.IKEAuth:
		if ike.State != sa.Connecting || ike.Initiator {
			m.env.Stats().Fail(stats.InvalidSyntax)
			return
		}
		tasks = []task.Responder{&task.IKEAuthR{}, &task.ChildCreateR{}}
	case message.CreateChildSA:
		if ike.State != sa.Established && ike.State != sa.Rekeyed && ike.State != sa.Deleting {
			m.env.Stats().Fail(stats.InvalidSyntax)
			return
		}
		if saP, _ := message.Find(msg.Inner, message.PayloadSA).(*message.SA); saP != nil && len(saP.Proposals) > 0 &&
			saP.Proposals[0].Protocol == suite.ProtocolIKE {
			tasks = []task.Responder{&task.IKERekeyR{}}
		} else {
			tasks = []task.Responder{&task.ChildCreateR{}}
		}
	case message.Informational:
		tasks = []task.Responder{&task.InfoR{}}
	default:
		m.env.Stats().Fail(stats.Unsupported)
		m.log.Info("dropped request of an unsupported exchange", "exchange", h.Exchange.String())
		return
	}
	final := task.Done
	ran := 0
	for _, t := range tasks {
		ran++
		st := t.Process(c, msg)
		if st == task.Failed || st == task.Reject {
			break
		}
	}
	resp := m.response(msg)
	for _, t := range tasks[:ran] {
		if st := t.Build(c, resp); rank(st) > rank(final) {
			final = st
		}
	}
	if final == task.Reject {
		resp.Header.SPIr = 0
	}
	m.env.Stats().Inc(stats.ExchangesAnswered)
	if !m.sendResponse(resp, d) {
		return
	}
	switch final {
	case task.Reject:
		m.destroyed = true
		ike.State = sa.Destroyed
		if c.Failure != nil {
			m.env.Stats().Fail(c.Failure.Reason)
			m.log.Info("IKE_SA_INIT refused", "reason", c.Failure.Reason.String(), "err", c.Failure.Err.Error(),
				"notify", c.Failure.Notify.String())
		}
		return
	case task.Failed:
		m.destroy(c.Failure, "")
		return
	case task.Destroy:
		m.destroy(nil, ReasonPeerDeleted)
		return
	}
	switch {
	case h.Exchange == message.IKESAInit:
		ike.State = sa.Connecting
		m.refreshLog()
	case h.Exchange == message.IKEAuth && ike.State == sa.Established:
		m.established()
	}
	if ike.State == sa.Established || ike.State == sa.Rekeyed {
		m.env.Changed(m)
	}
}

// response starts the response to req.
func (m *Manager) response(req *message.Message) *message.Message {
	ike := m.IKE
	h := message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: req.Header.Exchange, MessageID: req.Header.MessageID,
		Flags: message.FlagResponse}
	if ike.Initiator {
		h.Flags |= message.FlagInitiator
	}
	return &message.Message{Header: h}
}

// sendResponse encodes, caches and sends a response, and moves the
// expected message ID on.
func (m *Manager) sendResponse(resp *message.Message, d Datagram) bool {
	ike := m.IKE
	pkts, err := m.encode(resp, d.Local, d.Remote)
	if err != nil {
		m.destroy(&task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("encode %s response: %w", resp.Header.Exchange, err)}, "")
		return false
	}
	if resp.Header.Exchange == message.IKESAInit {
		ike.InitR = pkts[0]
	}
	ike.LastResponse = pkts
	ike.MsgIDIn = resp.Header.MessageID + 1
	for _, p := range pkts {
		m.sendTo(d.Local, d.Remote, p)
	}
	return true
}

func (m *Manager) receiveResponse(d Datagram, msg *message.Message) {
	ike := m.IKE
	h := msg.Header
	if m.req == nil || h.MessageID != m.req.id || h.Exchange != m.req.exchange {
		if h.MessageID < ike.MsgIDOut {
			// The answer to a retransmission of a request already answered.
			m.env.Stats().Inc(stats.LateResponses)
			return
		}
		m.env.Stats().Fail(stats.InvalidMessageID)
		m.log.Debug("dropped unexpected response", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		return
	}
	if !m.open(msg) {
		return
	}
	if err := message.Validate(msg); err != nil {
		m.destroy(&task.Failure{Reason: stats.InvalidSyntax, Err: fmt.Errorf("%s response: %w", h.Exchange, err)}, "")
		return
	}
	m.authenticated(d, msg)
	ex := m.req.exchange
	if ex == message.IKESAInit {
		ike.InitR = append([]byte(nil), msg.Raw...)
	}
	c := m.ctx(ex)
	final := task.Done
	var again []task.Initiator
	for _, t := range m.active {
		st := t.Process(c, msg)
		if st == task.NeedMore {
			again = append(again, t)
			continue
		}
		if rank(st) > rank(final) {
			final = st
		}
	}
	m.req = nil
	ike.InFlight = nil
	switch final {
	case task.Retry:
		// IKE_SA_INIT again, same message ID, rebuilt by the same tasks.
		m.sendRequest(ex)
		return
	case task.Failed:
		ike.MsgIDOut++
		m.fail(c.Failure)
		return
	case task.Destroy:
		ike.MsgIDOut++
		reason := "deleted"
		for _, t := range m.active {
			if d, ok := t.(*task.IKEDeleteI); ok {
				reason = d.Reason()
			}
		}
		m.destroy(nil, reason)
		return
	}
	if ex != message.IKESAInit {
		ike.MsgIDOut++
	} else {
		ike.MsgIDOut = 1
		ike.State = sa.Connecting
		m.refreshLog()
	}
	m.active = nil
	m.queue = append(again, m.queue...)
	if ex == message.IKEAuth && ike.State == sa.Established {
		m.established()
	}
	if ike.State == sa.Established || ike.State == sa.Rekeyed {
		m.env.Changed(m)
	}
}

func (m *Manager) established() {
	ike := m.IKE
	m.halfOpenUntil = time.Time{}
	m.refreshLog()
	m.setDPD()
	m.setTimers(ike, ike.Established, true)
	m.env.Stats().Inc(stats.IKESAsEstablished)
	m.log.Info("IKE SA established", "local", ike.Local.String(), "local_id", ike.LocalID.String(), "remote_id", ike.RemoteID.String(),
		"proposal", ike.Proposal.String(), "initiator", ike.Initiator, "nat_local", ike.NATLocal, "nat_remote", ike.NATRemote)
	m.env.Established(m)
}

func (m *Manager) setDPD() {
	if conn := m.ctx(0).Conn(); conn != nil {
		m.dpdDelay = conn.DPDDelay.D()
	}
}

// setTimers sets the rekey, reauth and expiry times of an IKE SA
// established (or rekeyed) at now: rekey_time and reauth_time less a
// random share of rand_time, and over_time after the later of them.
// A rekeyed IKE SA keeps its predecessor's reauth time (a rekey does not
// authenticate again); reauth sets it anew.
func (m *Manager) setTimers(ike *sa.IKESA, now time.Time, reauth bool) {
	cfg := m.env.Config()
	if cfg == nil {
		return
	}
	conn := cfg.Connections[ike.ConnName]
	if conn == nil {
		return
	}
	var rand time.Duration
	if conn.RandTime != nil {
		rand = conn.RandTime.D()
	}
	ike.RekeyAt, ike.ExpireAt = time.Time{}, time.Time{}
	if conn.RekeyTime != nil && *conn.RekeyTime > 0 {
		r := conn.RekeyTime.D()
		ike.RekeyAt = now.Add(r - task.Jitter(m.env.Rand(), min(rand, r/2)))
	}
	if reauth {
		ike.ReauthAt = time.Time{}
		if r := conn.ReauthTime.D(); r > 0 {
			ike.ReauthAt = now.Add(r - task.Jitter(m.env.Rand(), min(rand, r/2)))
		}
	}
	last := ike.RekeyAt
	if ike.ReauthAt.After(last) {
		last = ike.ReauthAt
	}
	if !last.IsZero() && conn.OverTime != nil && *conn.OverTime > 0 {
		ike.ExpireAt = last.Add(conn.OverTime.D())
	}
}

// host is the manager as tasks see it for IKE SA rekeying.
type host struct{ m *Manager }

func (h host) NewIKESPI() (uint64, error) { return h.m.env.NewIKESPI() }

// ReplaceIKE moves the IKE SA's Child SAs, draining SAs and queued tasks to
// next, which the worker adopts, and leaves this one Rekeyed.
func (h host) ReplaceIKE(next *sa.IKESA, reason string) {
	m := h.m
	old := m.IKE
	now := m.env.Now()
	next.Children, old.Children = old.Children, nil
	next.Draining, old.Draining = old.Draining, nil
	next.ReauthAt = old.ReauthAt
	m.setTimers(next, now, false)
	nm := m.env.Adopt(next)
	nm.setDPD()
	nm.armProbe()
	nm.queue = append(nm.queue, m.queue...)
	nm.deferred = append(nm.deferred, m.deferred...)
	m.queue, m.deferred = nil, nil
	old.State = sa.Rekeyed
	old.RekeyAt, old.ReauthAt, old.ExpireAt = time.Time{}, time.Time{}, time.Time{}
	old.RekeyedUntil = now.Add(RekeyedTimeout)
	m.env.Stats().Inc(stats.IKESAsRekeyed)
	m.log.Info("IKE SA rekeyed", "new_ike_id", next.UniqueID, "new_spis", next.SPIs(), "old_spis", old.SPIs(),
		"reason", reason, "initiator", next.Initiator, "children", len(next.Children), "proposal", next.Proposal.String())
	m.env.Changed(nm)
	m.env.Changed(m)
}

// AddRedundantIKE adopts an IKE SA that lost a rekey collision, with no
// Child SAs: we delete it, or wait for the peer to.
func (h host) AddRedundantIKE(ike *sa.IKESA, del bool) {
	m := h.m
	if del {
		nm := m.env.Adopt(ike)
		nm.Queue(task.NewIKEDeleteI("redundant: IKE SA rekey collision lost"))
		return
	}
	ike.State = sa.Rekeyed
	ike.RekeyedUntil = m.env.Now().Add(RekeyedTimeout)
	nm := m.env.Adopt(ike)
	m.env.Changed(nm)
}

// fail ends the IKE SA after a failed exchange we initiated, telling the
// peer when the failure asks for a notify (AUTHENTICATION_FAILED after we
// refused its authentication).
func (m *Manager) fail(f *task.Failure) {
	if f != nil && f.Notify != 0 && m.IKE.Out != nil {
		msg := &message.Message{Header: message.Header{SPIi: m.IKE.SPIi, SPIr: m.IKE.SPIr, Exchange: message.Informational,
			MessageID: m.IKE.MsgIDOut}, Inner: []message.Payload{&message.Notify{NotifyType: f.Notify}}}
		if m.IKE.Initiator {
			msg.Header.Flags |= message.FlagInitiator
		}
		if b, err := msg.Encode(m.IKE.Out); err == nil {
			m.IKE.MsgIDOut++
			m.send(b)
		}
	}
	m.destroy(f, "")
}

// Delete queues the deletion of the IKE SA (a DELETE exchange, then
// destruction, also if the peer does not answer).
func (m *Manager) Delete(reason string, done func(error)) {
	if m.destroyed {
		if done != nil {
			done(nil)
		}
		return
	}
	if m.IKE.State != sa.Established {
		m.destroy(nil, reason)
		if done != nil {
			done(nil)
		}
		return
	}
	m.Queue(task.NewIKEDeleteI(reason).WithDone(done))
	m.Initiate()
}

// Destroy ends the IKE SA at once, without telling the peer.
func (m *Manager) Destroy(reason string) { m.destroy(nil, reason) }

// destroy removes every Child SA from the data plane, aborts the tasks and
// reports the end of the IKE SA. f is nil for a normal end (reason says
// why).
func (m *Manager) destroy(f *task.Failure, reason string) {
	if m.destroyed {
		return
	}
	m.destroyed = true
	ike := m.IKE
	wasEstablished := ike.State == sa.Established || ike.State == sa.Deleting
	c := m.ctx(0)
	if len(ike.Draining) > 0 {
		if _, err := task.DrainDue(m.env.DataPlane(), ike, time.Time{}, true); err != nil {
			m.log.Warn("draining inbound sa removal incomplete", "err", err.Error())
		}
	}
	for _, ch := range append([]*sa.ChildSA(nil), ike.Children...) {
		why := "ike sa gone"
		var err error
		if heir := m.env.Heir(m, ch); heir != nil {
			why = "replaced by a reauthentication"
			var until time.Time
			if d := m.env.Settings().DrainDelay; d > 0 {
				until = m.env.Now().Add(d)
			}
			err = task.UninstallDrained(m.env.DataPlane(), ike, ch, heir, until)
			m.env.Stats().Inc(stats.ChildSAsRekeyed)
		} else {
			err = task.Uninstall(m.env.DataPlane(), ike, ch)
		}
		if err != nil {
			m.env.Stats().Fail(stats.DataPlane)
			m.log.Warn("child sa removal incomplete", "child", ch.Name, "err", err.Error())
		}
		m.env.Stats().Inc(stats.ChildSAsDeleted)
		c.Log.Info("child sa deleted", "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn),
			"spi_out", fmt.Sprintf("%08x", ch.SPIOut), "reason", why)
	}
	var err error
	if f != nil {
		err = f.Err
	} else {
		err = fmt.Errorf("ike sa %s", reason)
	}
	for _, t := range m.active {
		t.Abort(err)
	}
	for _, t := range m.queue {
		t.Abort(err)
	}
	for _, d := range m.deferred {
		d.t.Abort(err)
	}
	m.active, m.queue, m.req, m.deferred = nil, nil, nil, nil
	ike.State = sa.Destroyed
	m.failure = f
	m.endReason = reason
	if f != nil {
		m.endReason = f.Reason.String()
	}
	if f != nil {
		m.env.Stats().Fail(f.Reason)
		msg := "IKE SA failed"
		if wasEstablished {
			msg = "IKE SA deleted"
		}
		m.log.Warn(msg, "reason", f.Reason.String(), "err", f.Err.Error())
	} else {
		m.log.Info("IKE SA deleted", "reason", reason)
	}
	if wasEstablished {
		m.env.Stats().Inc(stats.IKESAsDeleted)
	}
	m.env.Destroyed(m, f)
}

// InstallPendingOutbound installs the held-back outbound SA of one of
// the IKE SA's Child SAs (whose predecessor in another IKE SA goes).
func (m *Manager) InstallPendingOutbound(ch *sa.ChildSA) {
	if !ch.OutPending || ch.Redundant {
		return
	}
	if err := task.InstallOutbound(m.ctx(0), ch); err != nil {
		m.env.Stats().Fail(stats.DataPlane)
		m.log.Warn("child sa outbound not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
		return
	}
	m.log.Info("child sa outbound installed", "child", ch.Name, "child_id", ch.UniqueID,
		"spi_in", fmt.Sprintf("%08x", ch.SPIIn), "spi_out", fmt.Sprintf("%08x", ch.SPIOut))
	m.env.Changed(m)
}

// EndReason says why the IKE SA ended ("" while it lives).
func (m *Manager) EndReason() string { return m.endReason }

// Failure is why the IKE SA was destroyed, nil if deleted normally.
func (m *Manager) Failure() *task.Failure { return m.failure }

// timer is one of the IKE SA's timers: Deadline wakes for the earliest
// when of the table, Tick fires each due timer in the table's order.
type timer struct {
	// name names the timer in tests.
	name string
	// established: the timer runs only while the IKE SA is established;
	// Tick checks that once, at the first such timer (an earlier timer
	// may have ended the tick, a later one's hooks do not stop the rest).
	established bool
	// always: Tick runs fire on each tick that reaches the timer, due or
	// not, and fire checks each item's time itself (see children).
	always bool
	// when is when the timer is next due (zero: not armed).
	when func(m *Manager) time.Time
	// fire runs the timer at now; stop ends the tick, without the
	// Initiate that follows the timers (the IKE SA is gone, or the fire
	// initiated already).
	fire func(m *Manager, now time.Time) (stop bool)
}

// timers are the IKE SA's timers in the order Tick fires them: the order
// matters where a timer ends the tick (the IKE SA gone) or feeds the next
// (deferred tasks are queued before the liveness check, which waits while
// a task does; the sample of inbound ESP comes before the check it may
// postpone).
var timers = [...]timer{
	{name: "retransmit", when: (*Manager).retransmitAt, fire: (*Manager).retransmit},
	{name: "fragments", when: func(m *Manager) time.Time { return m.frags.deadline() },
		fire: func(m *Manager, now time.Time) bool { m.expireFragments(now); return false }},
	{name: "half-open", when: func(m *Manager) time.Time { return m.halfOpenUntil }, fire: (*Manager).halfOpenTimeout},
	{name: "deferred", when: (*Manager).deferredAt, fire: (*Manager).startDeferred},
	{name: "drain", when: (*Manager).drainAt, fire: (*Manager).drain},
	{name: "rekeyed", when: (*Manager).rekeyedUntil, fire: (*Manager).rekeyedTimeout},
	{name: "ike-expire", established: true, when: func(m *Manager) time.Time { return m.IKE.ExpireAt }, fire: (*Manager).expireIKE},
	{name: "dpd-sample", established: true, when: (*Manager).sampleAt, fire: (*Manager).sample},
	{name: "dpd", established: true, when: (*Manager).dpdAt, fire: (*Manager).dpd},
	{name: "keepalive", established: true, when: (*Manager).keepaliveAt, fire: (*Manager).keepalive},
	// The Child SAs' timers run on every tick: the look for traffic
	// through held-back outbound SAs (probeAt) is consumed on each, so
	// that a probe time left over from a Child SA whose outbound SA went
	// in meanwhile does not make the next one's look early.
	{name: "children", established: true, always: true, when: (*Manager).childrenAt, fire: (*Manager).children},
	{name: "reauth", established: true, when: func(m *Manager) time.Time { return m.IKE.ReauthAt }, fire: (*Manager).reauth},
	// Not a timer: arms the probe for Child SAs whose outbound SA the
	// exchanges so far held back, between reauth and rekey as always.
	{name: "arm-probe", established: true, always: true, when: func(*Manager) time.Time { return time.Time{} },
		fire: func(m *Manager, _ time.Time) bool { m.armProbe(); return false }},
	{name: "ike-rekey", established: true, when: func(m *Manager) time.Time { return m.IKE.RekeyAt }, fire: (*Manager).rekeyIKE},
}

// Deadline is when Tick must next be called (zero: no timer).
func (m *Manager) Deadline() time.Time {
	if m.destroyed {
		return time.Time{}
	}
	var d time.Time
	established := m.IKE.State == sa.Established
	for i := range timers {
		t := &timers[i]
		if t.established && !established {
			continue
		}
		if w := t.when(m); !w.IsZero() && (d.IsZero() || w.Before(d)) {
			d = w
		}
	}
	return d
}

// Tick runs the timers that are due, then starts the next exchange.
func (m *Manager) Tick(now time.Time) {
	if m.destroyed {
		return
	}
	checked := false
	for i := range timers {
		t := &timers[i]
		if t.established && !checked {
			checked = true
			if m.IKE.State != sa.Established {
				break
			}
		}
		if !t.always {
			if w := t.when(m); w.IsZero() || now.Before(w) {
				continue
			}
		}
		if t.fire(m, now) {
			return
		}
	}
	if !m.destroyed {
		m.Initiate()
	}
}

// earliest returns the earliest of times that are set (zero if none).
func earliest(d, t time.Time) time.Time {
	if !t.IsZero() && (d.IsZero() || t.Before(d)) {
		return t
	}
	return d
}

func (m *Manager) retransmitAt() time.Time {
	if m.req == nil {
		return time.Time{}
	}
	return m.req.next
}

// retransmit sends our request again, or gives the IKE SA up after the
// last try.
func (m *Manager) retransmit(now time.Time) bool {
	r := m.req
	if r.tries >= m.env.Settings().RetransmitTries {
		m.giveUp()
		return true
	}
	r.tries++
	r.next = now.Add(m.timeout(r.tries))
	m.env.Stats().Inc(stats.Retransmissions)
	m.log.Debug("retransmit", "exchange", r.exchange.String(), "msgid", r.id, "try", r.tries)
	for _, p := range r.packets {
		m.send(p)
	}
	return false
}

func (m *Manager) halfOpenTimeout(time.Time) bool {
	m.destroy(&task.Failure{Reason: stats.HalfOpenTimeout, Err: fmt.Errorf("IKE_AUTH not completed within %v",
		m.env.Settings().HalfOpenTimeout)}, "")
	return true
}

func (m *Manager) deferredAt() time.Time {
	var d time.Time
	for _, x := range m.deferred {
		d = earliest(d, x.at)
	}
	return d
}

// startDeferred queues the deferred tasks whose time has come.
func (m *Manager) startDeferred(now time.Time) bool {
	kept := m.deferred[:0]
	for _, x := range m.deferred {
		if now.Before(x.at) {
			kept = append(kept, x)
		} else {
			m.queue = append(m.queue, x.t)
		}
	}
	m.deferred = kept
	return false
}

func (m *Manager) drainAt() time.Time {
	var d time.Time
	for _, x := range m.IKE.Draining {
		d = earliest(d, x.Until)
	}
	return d
}

// drain removes the inbound SAs of replaced Child SAs whose drain period
// ended.
func (m *Manager) drain(now time.Time) bool {
	n, err := task.DrainDue(m.env.DataPlane(), m.IKE, now, false)
	if err != nil {
		m.env.Stats().Fail(stats.DataPlane)
		m.log.Warn("draining inbound sa removal incomplete", "err", err.Error())
	}
	if n > 0 {
		m.env.Stats().Add(stats.InboundDrained, uint64(n))
		m.env.Changed(m)
	}
	return false
}

func (m *Manager) rekeyedUntil() time.Time {
	if m.IKE.State != sa.Rekeyed {
		return time.Time{}
	}
	return m.IKE.RekeyedUntil
}

func (m *Manager) rekeyedTimeout(time.Time) bool {
	m.destroy(nil, fmt.Sprintf("rekeyed (the peer did not delete it within %v)", RekeyedTimeout))
	return true
}

// expireIKE deletes an IKE SA that neither a rekey nor a reauthentication
// replaced by its over_time.
func (m *Manager) expireIKE(time.Time) bool {
	m.IKE.ExpireAt = time.Time{}
	m.env.Stats().Inc(stats.IKESAsExpired)
	m.log.Warn("IKE SA expired: neither rekey nor reauthentication succeeded in time", "reason", "over_time")
	m.Delete("expired", nil)
	return true
}

// dpdArmed reports whether liveness checks run: configured, and no
// request of ours outstanding (its answer or its timeout tells).
func (m *Manager) dpdArmed() bool { return m.dpdDelay > 0 && m.req == nil }

func (m *Manager) sampleAt() time.Time {
	if !m.dpdArmed() || !m.samplesInbound() {
		return time.Time{}
	}
	return m.sampledAt.Add(m.dpdDelay / 2)
}

// sample reads the inbound packet count; not while a task waits to
// start (deferred tasks just queued), as the liveness check.
func (m *Manager) sample(now time.Time) bool {
	if len(m.queue) == 0 {
		m.sampleInbound(now)
	}
	return false
}

func (m *Manager) dpdAt() time.Time {
	if !m.dpdArmed() {
		return time.Time{}
	}
	return m.alive().Add(m.dpdDelay)
}

// dpd queues a liveness check; not while a task waits to start: its
// exchange is one.
func (m *Manager) dpd(now time.Time) bool {
	if len(m.queue) > 0 {
		return false
	}
	m.env.Stats().Inc(stats.DPDChecks)
	m.Queue(&task.DPDI{})
	m.lastInbound = now // one check per dpd_delay without an answer
	return false
}

func (m *Manager) keepaliveAt() time.Time {
	s := m.env.Settings()
	if !m.IKE.NATLocal || s.KeepaliveInterval <= 0 {
		return time.Time{}
	}
	return m.lastSent.Add(s.KeepaliveInterval)
}

// keepalive sends a NAT keepalive, to keep the mapping of a NAT in front
// of us.
func (m *Manager) keepalive(now time.Time) bool {
	ike := m.IKE
	m.env.Send(Datagram{Local: ike.Local, Remote: ike.Remote, Data: []byte{0xff}})
	m.lastSent = now
	m.env.Stats().Inc(stats.Keepalives)
	return false
}

// childrenAt is the earliest timer of the Child SAs: rekey, expiry, and
// the install of a held-back outbound SA (its limit, or the look for
// traffic through it).
func (m *Manager) childrenAt() time.Time {
	var d time.Time
	for _, ch := range m.IKE.Children {
		if ch.State == sa.ChildInstalled {
			d = earliest(d, ch.RekeyAt)
		}
		if pendingOut(ch) {
			d = earliest(d, ch.Installed.Add(m.outPendingLimit()))
			if _, ok := m.env.DataPlane().(UsageReader); ok {
				d = earliest(d, m.probeAt)
			}
		}
		if ch.State != sa.ChildDeleted {
			d = earliest(d, ch.ExpireAt)
		}
	}
	return d
}

// children runs the Child SAs' timers that are due, one Child SA after
// the other.
func (m *Manager) children(now time.Time) bool {
	probe := !m.probeAt.IsZero() && !now.Before(m.probeAt)
	if probe {
		m.probeAt = time.Time{}
	}
	for _, ch := range append([]*sa.ChildSA(nil), m.IKE.Children...) {
		if !pendingOut(ch) {
			// nothing held back
		} else if why := m.outPendingDue(ch, now, probe); why != "" {
			c := m.ctx(0)
			if err := task.InstallOutbound(c, ch); err != nil {
				ch.OutPending = false // do not spin; the Child SA stays inbound-only
				m.env.Stats().Fail(stats.DataPlane)
				m.log.Warn("child sa outbound not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
			} else {
				m.log.Info("child sa outbound installed: "+why, "child", ch.Name, "child_id", ch.UniqueID,
					"spi_in", fmt.Sprintf("%08x", ch.SPIIn), "spi_out", fmt.Sprintf("%08x", ch.SPIOut))
			}
			m.env.Changed(m)
		}
		if !ch.ExpireAt.IsZero() && !now.Before(ch.ExpireAt) && ch.State != sa.ChildDeleted {
			ch.ExpireAt = time.Time{}
			m.env.ChildExpired(m, ch)
			continue
		}
		if ch.State == sa.ChildInstalled && !ch.RekeyAt.IsZero() && !now.Before(ch.RekeyAt) {
			before := ch.RekeyAt
			m.env.ChildRekeyDue(m, ch)
			if ch.RekeyAt.Equal(before) {
				ch.RekeyAt = time.Time{}
			}
		}
	}
	return false
}

func (m *Manager) reauth(time.Time) bool {
	m.IKE.ReauthAt = time.Time{}
	m.env.ReauthDue(m)
	return false
}

// rekeyIKE queues the IKE SA's rekey, unless one is queued or running.
func (m *Manager) rekeyIKE(time.Time) bool {
	m.IKE.RekeyAt = time.Time{}
	if !m.queued(task.KindIKERekey, nil) {
		m.log.Info("IKE SA rekey due", "reason", task.ReasonTime)
		m.Queue(task.NewIKERekeyI(task.ReasonTime))
	}
	return false
}

// pendingOut reports whether a Child SA waits for its outbound SA (the
// responder's side of a rekey), not for good (redundant) and not on its
// way out.
func pendingOut(ch *sa.ChildSA) bool {
	return ch.OutPending && !ch.Redundant && (ch.State == sa.ChildInstalled || ch.State == sa.ChildRekeying)
}

// queued reports whether a task of kind k is queued or in flight.
func (m *Manager) queued(k task.Kind, match func(task.Initiator) bool) bool {
	for _, l := range [][]task.Initiator{m.active, m.queue} {
		for _, t := range l {
			if t.Kind() == k && (match == nil || match(t)) {
				return true
			}
		}
	}
	for _, x := range m.deferred {
		if x.t.Kind() == k && (match == nil || match(x.t)) {
			return true
		}
	}
	return false
}

// outPendingLimit bounds how long the responder of a rekey holds its new
// outbound SA back without traffic from the peer through the new Child
// SA: as long as the peer may still retransmit its request (after that it
// has given the IKE SA up).
func (m *Manager) outPendingLimit() time.Duration {
	s := m.env.Settings()
	var total time.Duration
	for i := 0; i <= s.RetransmitTries; i++ {
		total += m.timeout(i)
	}
	return total + time.Second
}

// outPendingDue says why a held-back outbound SA goes in now, or "".
func (m *Manager) outPendingDue(ch *sa.ChildSA, now time.Time, probe bool) string {
	if probe {
		if ur, ok := m.env.DataPlane().(UsageReader); ok {
			if n, err := ur.InboundPackets([]uint32{ch.SPIIn}); err == nil && n > 0 {
				return "the peer sends through the new child sa"
			}
		}
	}
	if !now.Before(ch.Installed.Add(m.outPendingLimit())) {
		return "the old one was not deleted in time"
	}
	return ""
}

// alive is the last sign of life of the peer: an IKE message, or ESP
// through its Child SAs (as far as the samples tell).
func (m *Manager) alive() time.Time {
	if m.lastInbound.After(m.lastRecv) {
		return m.lastInbound
	}
	return m.lastRecv
}

// samplesInbound reports whether DPD can count ESP (the data plane
// reports inbound packets and there are Child SAs).
func (m *Manager) samplesInbound() bool {
	_, ok := m.env.DataPlane().(UsageReader)
	return ok && len(m.IKE.Children) > 0
}

// sampleInbound reads the Child SAs' inbound packet count: if it moved
// since the last sample, ESP arrived after that sample, the earliest time
// it may last have arrived. Sampling every dpd_delay/2, a peer that stops
// sending (or whose NAT mapping changed) gets its liveness check between
// dpd_delay and 1.5 dpd_delay after its last packet.
func (m *Manager) sampleInbound(now time.Time) {
	spis := make([]uint32, 0, len(m.IKE.Children))
	for _, ch := range m.IKE.Children {
		spis = append(spis, ch.SPIIn)
	}
	ur := m.env.DataPlane().(UsageReader)
	n, err := ur.InboundPackets(spis)
	if err != nil {
		return
	}
	if n != m.inPkts && !m.sampledAt.IsZero() && m.sampledAt.After(m.lastInbound) {
		m.lastInbound = m.sampledAt
	}
	m.inPkts, m.sampledAt = n, now
}

// giveUp ends the IKE SA after the last retransmission went unanswered.
func (m *Manager) giveUp() {
	r := m.req
	reason := stats.RetransmitTimeout
	deleting := false
	for _, t := range m.active {
		switch t.Kind() {
		case task.KindDPD:
			reason = stats.DPDTimeout
		case task.KindIKEDelete:
			deleting = true
		}
	}
	total := time.Duration(0)
	for i := 0; i <= r.tries; i++ {
		total += m.timeout(i)
	}
	if deleting {
		m.destroy(nil, fmt.Sprintf("deleted (peer did not confirm within %v)", total.Round(time.Millisecond)))
		return
	}
	m.destroy(&task.Failure{Reason: reason, Err: fmt.Errorf("no response to %s request %d after %d retransmissions (%v)",
		r.exchange, r.id, r.tries, total.Round(time.Millisecond))}, "")
}
