package manager

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
)

// send sends an IKE message from our current address to the peer's.
func (m *Manager) send(msg []byte) { m.sendTo(m.IKE.Local, m.IKE.Remote, msg) }

func (m *Manager) sendTo(local, remote netip.AddrPort, msg []byte) {
	if local.Port() == m.env.Settings().NATTPort {
		msg = message.AddNonESPMarker(msg)
	}
	m.env.Send(Datagram{Local: local, Remote: remote, Data: msg})
	m.lastSent = at(m.env.Now())
}

// Initiate starts the next exchange if none is in flight, and none of the
// peer's waits for the data plane (our request would go out before that
// answer: before IKE_AUTH's, on an IKE SA the peer does not know yet).
func (m *Manager) Initiate() {
	if m.Installing() {
		return
	}
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
			m.Logger().Warn("task dropped", "task", t.Kind().String(), "err", err.Error())
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
		ike.Handshake().InitI = pkts[0]
	}
	now := m.env.Now()
	m.req = &request{id: id, exchange: ex, packets: pkts, next: now.Add(m.timeout(0))}
	m.env.Stats().Inc(stats.ExchangesInitiated)
	m.Logger().Debug("request sent", "exchange", ex.String(), "msgid", id, "fragments", fragCount(pkts))
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

// open decrypts a protected message; it reports false (counted) if the
// message must be dropped.
func (m *Manager) open(msg *message.Message) bool {
	if msg.Header.Exchange == message.IKESAInit {
		return true
	}
	_, in, err := m.IKE.Ciphers()
	if err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		return false
	}
	if msg.Encrypted == nil {
		m.env.Stats().Fail(stats.InvalidSyntax)
		m.Logger().Debug("dropped: protected exchange without SK payload", "exchange", msg.Header.Exchange.String())
		return false
	}
	if msg.Encrypted.Fragment {
		return m.openFragment(msg)
	}
	if err := msg.Decrypt(in); err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		m.Logger().Debug("dropped: SK payload", "err", err.Error())
		return false
	}
	return true
}

// authenticated is called for every message that decrypted (or any
// IKE_SA_INIT): the peer is alive, and its address may have changed
// behind a NAT.
func (m *Manager) authenticated(d Datagram, msg *message.Message) {
	ike := m.IKE
	m.lastRecv = at(m.env.Now())
	if msg.Header.Exchange == message.IKESAInit || !ike.NAT() {
		return
	}
	if d.Remote == ike.Remote && d.Local == ike.Local {
		return
	}
	old := ike.Remote
	ike.Local, ike.Remote = d.Local, d.Remote
	if ike.State != sa.Established {
		// IKE_AUTH on the NAT-T port: the float of RFC 7296 2.23.
		m.Logger().Debug("peer floated to the NAT-T port", "from", old.String(), "to", d.Remote.String())
	} else {
		m.env.Stats().Inc(stats.PeerAddressChanges)
		m.Logger().Info("peer address changed", "from", old.String(), "to", d.Remote.String())
	}
	if len(ike.Children) > 0 {
		updateChildren(m, old)
	}
}

func (m *Manager) receiveRequest(d Datagram, msg *message.Message) {
	ike := m.IKE
	h := msg.Header
	if w := m.rare().waiting; w != nil {
		// The request at hand waits for its Child SA's install: a
		// retransmission of it is answered once, when the install is
		// (processed again, it would install a second Child SA); the peer
		// sends nothing else before that answer (window size 1).
		if h.MessageID == w.msg.Header.MessageID {
			m.env.Stats().Inc(stats.InstallRetransmits)
			m.Logger().Debug("retransmitted request dropped: its answer waits for the data plane", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		} else {
			m.env.Stats().Fail(stats.InvalidMessageID)
			m.Logger().Debug("dropped request while the one before waits for the data plane", "msgid", h.MessageID, "waiting", w.msg.Header.MessageID)
		}
		return
	}
	if ike.MsgIDIn > 0 && h.MessageID == ike.MsgIDIn-1 && len(ike.LastResponse) > 0 {
		if !m.retransmittedFragment(msg) {
			return
		}
		if h.Exchange == message.IKESAInit {
			m.cookieRetry(msg)
		}
		m.env.Stats().Inc(stats.CachedResponses)
		m.Logger().Debug("retransmitted request answered from the cache", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		for _, p := range ike.LastResponse {
			m.sendTo(d.Local, d.Remote, p)
		}
		return
	}
	if h.MessageID != ike.MsgIDIn {
		m.env.Stats().Fail(stats.InvalidMessageID)
		m.Logger().Debug("dropped request with unexpected message id", "msgid", h.MessageID, "want", ike.MsgIDIn)
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
		m.Logger().Info("invalid request", "exchange", h.Exchange.String(), "err", err.Error())
		resp := m.response(msg)
		resp.Inner = []message.Payload{&message.Notify{NotifyType: message.InvalidSyntax}}
		m.sendResponse(resp, d)
		if h.Exchange == message.IKEAuth || h.Exchange == message.CreateChildSA {
			m.destroy(&task.Failure{Reason: stats.InvalidSyntax, Err: err}, "")
		}
		return
	}
	switch h.Exchange {
	case message.IKESAInit:
		if ike.State != sa.Created {
			return
		}
		ike.Handshake().InitI = append([]byte(nil), msg.Raw...)
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
		m.Logger().Info("dropped request of an unsupported exchange", "exchange", h.Exchange.String())
		return
	}
	r := &responding{c: c, msg: msg, d: d, tasks: tasks}
	if h.Exchange == message.IKEAuth || h.Exchange == message.CreateChildSA {
		// Its Child SA may go in without the worker waiting for it.
		c.Resume = func(f func() task.Status) { m.env.Resume(m, func() { m.resume(r, f) }) }
	}
	m.respond(r)
}

// responding is a request being answered: its responder tasks, how many
// have processed it, and where the answer goes. While a task waits for
// the data plane (Pending) it is the manager's seldom.waiting.
type responding struct {
	c     *task.Ctx
	msg   *message.Message
	d     Datagram
	tasks []task.Responder
	// ran is how many tasks processed the request; stop is set when one
	// ended the exchange (Failed, Reject), which the others then skip.
	ran  int
	stop bool
}

// respond runs the responder tasks that have not processed r's request,
// then answers it, unless a task waits for the data plane: the exchange
// is then carried on by resume.
func (m *Manager) respond(r *responding) {
	for !r.stop && r.ran < len(r.tasks) {
		t := r.tasks[r.ran]
		r.ran++
		switch t.Process(r.c, r.msg) {
		case task.Pending:
			m.rareW().waiting = r
			return
		case task.Failed, task.Reject:
			r.stop = true
		}
	}
	m.answer(r)
}

// resume carries on the exchange r, whose task waited for the data
// plane, once that answered: f ends the task's step (always, so that it
// can undo what it installed for an IKE SA that ended meanwhile), then
// the other tasks run and the request is answered.
func (m *Manager) resume(r *responding, f func() task.Status) {
	st := f()
	if m.destroyed || m.more == nil || m.more.waiting != r {
		return
	}
	m.more.waiting = nil
	held := m.more.held
	m.more.held = heldResponse{}
	m.shrink()
	if st == task.Failed || st == task.Reject {
		r.stop = true
	}
	m.respond(r)
	if held.raw != nil && !m.destroyed {
		if msg, err := message.Decode(held.raw); err == nil {
			held.d.Data = held.raw
			m.receiveResponse(held.d, msg)
		}
	}
	if !m.destroyed {
		m.Initiate()
		m.armProbe()
	}
}

// heldResponse is the response to our exchange that arrived while a
// request of the peer's waited for its Child SA's install.
type heldResponse struct {
	d   Datagram
	raw []byte
}

// Installing reports whether a request of the peer waits for its Child
// SA's install before it is answered.
func (m *Manager) Installing() bool { return m.rare().waiting != nil }

// answer builds, sends and caches the response to r's request, and ends
// or establishes the IKE SA as the tasks decided.
func (m *Manager) answer(r *responding) {
	ike := m.IKE
	c, msg, d, h := r.c, r.msg, r.d, r.msg.Header
	final := task.Done
	resp := m.response(msg)
	for _, t := range r.tasks[:r.ran] {
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
			m.Logger().Info("IKE_SA_INIT refused", "reason", c.Failure.Reason.String(), "err", c.Failure.Err.Error(),
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
	case h.Exchange == message.IKEAuth && ike.State == sa.Established:
		m.established()
	}
	if ike.State == sa.Established || ike.State == sa.Rekeyed {
		m.env.Changed(m)
	}
}

// cookieRetry takes a COOKIE retry of the IKE_SA_INIT request that made
// this half-open IKE SA as the one the initiator will authenticate. The
// retry crossed the initiator's retransmission of its first request: the
// responder demanded a COOKIE of one copy and took the other once COOKIEs
// were no longer demanded. The initiator sends a retry only before it has
// accepted any response, and signs the last IKE_SA_INIT it sent, so its
// AUTH covers the retry, whichever copy the cached response answered;
// checked over the copy we took, it failed (issue 16). The retry must
// repeat that copy's payloads (message.CookieRetryOf): it binds the same
// proposals, KE and nonce the keys were made from.
func (m *Manager) cookieRetry(msg *message.Message) {
	ike := m.IKE
	if ike.Initiator || ike.State != sa.Connecting || bytes.Equal(msg.Raw, ike.Handshake().InitI) || !message.CookieRetryOf(msg.Raw, ike.Handshake().InitI) {
		return
	}
	ike.Handshake().InitI = append([]byte(nil), msg.Raw...)
	m.Logger().Debug("IKE_SA_INIT: a COOKIE retry crossed the request we answered: its AUTH is expected over the retry")
}

// repeatedCookie reports whether an IKE_SA_INIT response demands the
// COOKIE that our IKE_SA_INIT request in flight already carries.
func (m *Manager) repeatedCookie(resp *message.Message) bool {
	n := message.FindNotify(resp.Payloads, message.Cookie)
	if n == nil || m.req == nil || len(m.req.packets) == 0 {
		return false
	}
	sent := leadingCookie(m.req.packets[0])
	return sent != nil && bytes.Equal(sent, n.Data)
}

// leadingCookie is the data of the COOKIE notify that starts IKE message
// b (a retry of IKE_SA_INIT, RFC 7296 2.6), or nil.
func leadingCookie(b []byte) []byte {
	if len(b) < message.HeaderLen+8 || message.PayloadType(b[16]) != message.PayloadNotify {
		return nil
	}
	p := b[message.HeaderLen:]
	n := int(binary.BigEndian.Uint16(p[2:4]))
	if n < 8 || n > len(p) || p[5] != 0 || message.NotifyType(binary.BigEndian.Uint16(p[6:8])) != message.Cookie {
		return nil
	}
	return p[8:n]
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
		ike.Handshake().InitR = pkts[0]
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
	if m.Answering() {
		// A copy of the response being processed (the peer answered our
		// retransmission from its cache), or nothing we asked for.
		m.env.Stats().Inc(stats.LateResponses)
		return
	}
	if m.Installing() && m.req != nil && h.MessageID == m.req.id && h.Exchange == m.req.exchange {
		// The answer to our exchange, which crossed the peer's request
		// whose Child SA goes in: taken now, it would settle a rekey
		// collision without the peer's new Child SA. It is taken once the
		// install is answered (a copy: the datagram's buffer is the
		// worker's).
		m.rareW().held = heldResponse{d: d, raw: append([]byte(nil), msg.Raw...)}
		m.env.Stats().Inc(stats.ResponsesDeferred)
		m.Logger().Debug("response held: a request of the peer waits for the data plane", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		return
	}
	if m.req == nil || h.MessageID != m.req.id || h.Exchange != m.req.exchange {
		if h.MessageID < ike.MsgIDOut {
			// The answer to a retransmission of a request already answered.
			m.env.Stats().Inc(stats.LateResponses)
			return
		}
		m.env.Stats().Fail(stats.InvalidMessageID)
		m.Logger().Debug("dropped unexpected response", "exchange", h.Exchange.String(), "msgid", h.MessageID)
		return
	}
	if h.Exchange == message.IKESAInit && m.repeatedCookie(msg) {
		// The COOKIE our retry already carries: the answer to a
		// retransmission of the request before it, not a new demand. Taken
		// for one, it sent the retry again and counted a retry, and a
		// responder slower than our retransmissions made us give up after
		// five (6 of 1,500 setups with 100 ms retransmissions, issue 16).
		m.env.Stats().Inc(stats.LateResponses)
		m.Logger().Debug("IKE_SA_INIT: COOKIE answering a retransmission of the request before the retry, ignored")
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
		ike.Handshake().InitR = append([]byte(nil), msg.Raw...)
	}
	r := &answered{c: m.ctx(ex), msg: msg, final: task.Done}
	if ex == message.IKEAuth || ex == message.CreateChildSA {
		// Our Child SA may go in without the worker waiting for it.
		r.c.Resume = func(f func() task.Status) { m.env.Resume(m, func() { m.resumeAnswered(r, f) }) }
	}
	m.processAnswer(r)
}

// answered is the response to our exchange being processed: how many of
// the active tasks processed it, the status so far and the tasks that
// need another round. While a task waits for the data plane (Pending) it
// is the manager's seldom.answering: the exchange stays in flight (m.req),
// not retransmitted, and the peer's requests are served meanwhile.
type answered struct {
	c     *task.Ctx
	msg   *message.Message
	ran   int
	final task.Status
	again []task.Initiator
}

// note takes the status st of the task t that processed r's response.
func (r *answered) note(t task.Initiator, st task.Status) {
	if st == task.NeedMore {
		r.again = append(r.again, t)
	} else if rank(st) > rank(r.final) {
		r.final = st
	}
}

// processAnswer runs the active tasks that have not processed r's
// response, then ends the exchange, unless a task waits for the data
// plane: resumeAnswered carries on then.
func (m *Manager) processAnswer(r *answered) {
	for r.ran < len(m.active) {
		t := m.active[r.ran]
		r.ran++
		st := t.Process(r.c, r.msg)
		if st == task.Pending {
			m.rareW().answering = r
			return
		}
		r.note(t, st)
	}
	m.endExchange(r)
}

// resumeAnswered carries on with r once the data plane answered the task
// that waited: f ends its step (always, so that it can undo what it
// installed for an IKE SA that ended meanwhile).
func (m *Manager) resumeAnswered(r *answered, f func() task.Status) {
	st := f()
	if m.destroyed || m.more == nil || m.more.answering != r {
		return
	}
	m.more.answering = nil
	m.shrink()
	r.note(m.active[r.ran-1], st)
	m.processAnswer(r)
	if !m.destroyed {
		m.Initiate()
		m.armProbe()
	}
}

// Answering reports whether the response to our exchange waits for a
// Child SA's install before the exchange ends.
func (m *Manager) Answering() bool { return m.rare().answering != nil }

// endExchange ends our exchange whose response the tasks processed.
func (m *Manager) endExchange(r *answered) {
	ike := m.IKE
	ex, c, final, again := m.req.exchange, r.c, r.final, r.again
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
