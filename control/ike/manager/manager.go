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
// Rekeying (issue 7) plugs in as tasks; a collision is a request arriving
// while m.active holds a task of the same kind, which Receive can hand to
// the active task before the responder tasks run (see Active).
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
	KeepaliveInterval time.Duration // 20 s
	NATTPort          uint16        // 4500
}

// DefaultSettings are strongSwan's defaults.
func DefaultSettings() Settings {
	return Settings{RetransmitTimeout: 4 * time.Second, RetransmitBase: 1.8, RetransmitTries: 5,
		HalfOpenTimeout: 30 * time.Second, KeepaliveInterval: 20 * time.Second, NATTPort: 4500}
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

	queue  []task.Initiator
	active []task.Initiator
	req    *request

	// halfOpenUntil is the half-open deadline of a responder IKE SA (zero
	// once established or for an initiator).
	halfOpenUntil time.Time
	// lastRecv is when the last authenticated message of the peer arrived;
	// lastSent when we last sent anything (for keepalives).
	lastRecv, lastSent time.Time
	dpdDelay           time.Duration
	destroyed          bool
	failure            *task.Failure
	endReason          string
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
	m.setDPD()
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

// Busy reports whether a request of ours is outstanding.
func (m *Manager) Busy() bool { return m.req != nil }

// SetHalfOpen marks a responder IKE SA half-open until deadline.
func (m *Manager) SetHalfOpen(deadline time.Time) { m.halfOpenUntil = deadline }

// HalfOpen reports whether the IKE SA is a half-open responder IKE SA.
func (m *Manager) HalfOpen() bool { return !m.halfOpenUntil.IsZero() }

// Queue adds a task; Initiate starts it when the window is free.
func (m *Manager) Queue(t task.Initiator) { m.queue = append(m.queue, t) }

func (m *Manager) ctx(ex message.ExchangeType) *task.Ctx {
	return &task.Ctx{Env: m.env, IKE: m.IKE, Log: m.log, Exchange: ex, Queue: m.Queue, NATTPort: m.env.Settings().NATTPort}
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
		if t.Kind() == task.KindChildCreate {
			return message.CreateChildSA, []task.Initiator{t}
		}
		return message.Informational, []task.Initiator{t}
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
	for _, t := range m.active {
		if err := t.Build(c, msg); err != nil {
			if essential(ex, t) {
				f := c.Failure
				if f == nil {
					f = &task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("%s: %w", t.Kind(), err)}
				}
				m.active = append(kept, t)
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
	var cipher message.Sealer
	if ex != message.IKESAInit {
		cipher = ike.Out
	}
	b, err := msg.Encode(cipher)
	if err != nil {
		m.destroy(&task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("encode %s request: %w", ex, err)}, "")
		return true
	}
	if ex == message.IKESAInit {
		ike.InitI = b
	}
	now := m.env.Now()
	m.req = &request{id: id, exchange: ex, packets: [][]byte{b}, next: now.Add(m.timeout(0))}
	m.env.Stats().Inc(stats.ExchangesInitiated)
	m.log.Debug("request sent", "exchange", ex.String(), "msgid", id)
	m.send(b)
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
		m.env.Stats().Fail(stats.Unsupported)
		m.log.Debug("dropped: IKE fragment (fragmentation was not negotiated)")
		return false
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
	m.log.Info("peer address changed", "from", old.String(), "to", d.Remote.String())
	if len(ike.Children) > 0 {
		updateChildren(m, old)
	}
}

func (m *Manager) receiveRequest(d Datagram, msg *message.Message) {
	ike := m.IKE
	h := msg.Header
	if ike.MsgIDIn > 0 && h.MessageID == ike.MsgIDIn-1 && len(ike.LastResponse) > 0 {
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
		resp := m.response(msg, 0)
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
		if ike.State != sa.Established {
			m.env.Stats().Fail(stats.InvalidSyntax)
			return
		}
		tasks = []task.Responder{&task.ChildCreateR{}}
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
	resp := m.response(msg, 0)
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
	if ike.State == sa.Established {
		m.env.Changed(m)
	}
}

// response starts the response to req.
func (m *Manager) response(req *message.Message, _ int) *message.Message {
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
	var cipher message.Sealer
	if resp.Header.Exchange != message.IKESAInit {
		cipher = ike.Out
	}
	b, err := resp.Encode(cipher)
	if err != nil {
		m.destroy(&task.Failure{Reason: stats.InternalError, Err: fmt.Errorf("encode %s response: %w", resp.Header.Exchange, err)}, "")
		return false
	}
	if resp.Header.Exchange == message.IKESAInit {
		ike.InitR = b
	}
	ike.LastResponse = [][]byte{b}
	ike.MsgIDIn = resp.Header.MessageID + 1
	m.sendTo(d.Local, d.Remote, b)
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
	if ike.State == sa.Established {
		m.env.Changed(m)
	}
}

func (m *Manager) established() {
	ike := m.IKE
	m.halfOpenUntil = time.Time{}
	m.refreshLog()
	m.setDPD()
	if conn := m.ctx(0).Conn(); conn != nil && conn.RekeyTime != nil && *conn.RekeyTime > 0 {
		ike.RekeyAt = ike.Established.Add(conn.RekeyTime.D())
	}
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
	for _, ch := range append([]*sa.ChildSA(nil), ike.Children...) {
		if err := task.Uninstall(m.env.DataPlane(), ike, ch); err != nil {
			m.env.Stats().Fail(stats.DataPlane)
			m.log.Warn("child sa removal incomplete", "child", ch.Name, "err", err.Error())
		}
		m.env.Stats().Inc(stats.ChildSAsDeleted)
		c.Log.Info("child sa deleted", "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn),
			"spi_out", fmt.Sprintf("%08x", ch.SPIOut), "reason", "ike sa gone")
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
	m.active, m.queue, m.req = nil, nil, nil
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

// EndReason says why the IKE SA ended ("" while it lives).
func (m *Manager) EndReason() string { return m.endReason }

// Failure is why the IKE SA was destroyed, nil if deleted normally.
func (m *Manager) Failure() *task.Failure { return m.failure }

// Deadline is when Tick must next be called (zero: no timer).
func (m *Manager) Deadline() time.Time {
	if m.destroyed {
		return time.Time{}
	}
	var d time.Time
	min := func(t time.Time) {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	if m.req != nil {
		min(m.req.next)
	}
	min(m.halfOpenUntil)
	ike := m.IKE
	if ike.State == sa.Established {
		if m.dpdDelay > 0 && m.req == nil {
			min(m.lastRecv.Add(m.dpdDelay))
		}
		if ike.NATLocal {
			min(m.lastSent.Add(m.env.Settings().KeepaliveInterval))
		}
		for _, ch := range ike.Children {
			if ch.State == sa.ChildInstalled {
				min(ch.RekeyAt)
			}
			if ch.OutPending {
				min(ch.Installed.Add(task.OutPendingDelay))
			}
			min(ch.ExpireAt)
		}
		min(ike.RekeyAt)
	}
	return d
}

// Tick runs the timers that are due.
func (m *Manager) Tick(now time.Time) {
	if m.destroyed {
		return
	}
	s := m.env.Settings()
	if r := m.req; r != nil && !now.Before(r.next) {
		if r.tries < s.RetransmitTries {
			r.tries++
			r.next = now.Add(m.timeout(r.tries))
			m.env.Stats().Inc(stats.Retransmissions)
			m.log.Debug("retransmit", "exchange", r.exchange.String(), "msgid", r.id, "try", r.tries)
			for _, p := range r.packets {
				m.send(p)
			}
		} else {
			m.giveUp()
			return
		}
	}
	if !m.halfOpenUntil.IsZero() && !now.Before(m.halfOpenUntil) {
		m.destroy(&task.Failure{Reason: stats.HalfOpenTimeout, Err: fmt.Errorf("IKE_AUTH not completed within %v", s.HalfOpenTimeout)}, "")
		return
	}
	ike := m.IKE
	if ike.State != sa.Established {
		return
	}
	if m.dpdDelay > 0 && m.req == nil && len(m.queue) == 0 && !now.Before(m.lastRecv.Add(m.dpdDelay)) {
		m.env.Stats().Inc(stats.DPDChecks)
		m.Queue(&task.DPDI{})
	}
	if ike.NATLocal && !now.Before(m.lastSent.Add(s.KeepaliveInterval)) {
		m.env.Send(Datagram{Local: ike.Local, Remote: ike.Remote, Data: []byte{0xff}})
		m.lastSent = now
		m.env.Stats().Inc(stats.Keepalives)
	}
	for _, ch := range append([]*sa.ChildSA(nil), ike.Children...) {
		if ch.OutPending && !now.Before(ch.Installed.Add(task.OutPendingDelay)) {
			c := m.ctx(0)
			if err := task.InstallOutbound(c, ch); err != nil {
				ch.OutPending = false // do not spin; the Child SA stays inbound-only
				m.env.Stats().Fail(stats.DataPlane)
				m.log.Warn("child sa outbound not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
			} else {
				m.log.Info("child sa outbound installed: the old one was not deleted in time", "child", ch.Name, "child_id", ch.UniqueID)
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
	if !ike.RekeyAt.IsZero() && !now.Before(ike.RekeyAt) {
		// IKE SA rekeying is issue 7's; until then the IKE SA lives on.
		m.log.Info("IKE SA rekey due; IKE SA rekeying is not implemented, keeping it")
		ike.RekeyAt = time.Time{}
	}
	if !m.destroyed {
		m.Initiate()
	}
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
