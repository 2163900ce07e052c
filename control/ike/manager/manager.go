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
// tasks make, and not on IKE_AUTH's install where the data plane answers
// later (task.AsyncChildDataPlane): the request then waits (Installing),
// a retransmission of it is dropped, and the answer goes out when
// Env.Resume brings the data plane's.
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
	"log/slog"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/ike/defrag"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/task"
)

// Datagram is one UDP datagram of IKE.
type Datagram struct {
	// Local is our address and port (the socket it arrived on or leaves
	// from), Remote the peer's.
	Local, Remote netip.AddrPort
	// Data is the IKE message, with the non-ESP marker on the NAT-T port.
	Data []byte
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
	// MaxPacket is the largest IKE datagram, and the largest message
	// reassembled from fragments, accepted (10000 bytes).
	MaxPacket int
	// Fragments, when not nil, bounds the fragment bytes that all the IKE
	// SAs sharing it hold.
	Fragments *defrag.Budget
}

// DefaultMaxPacket is strongSwan's charon.max_packet.
const DefaultMaxPacket = 10000

// DefaultSettings are strongSwan's defaults.
func DefaultSettings() Settings {
	return Settings{RetransmitTimeout: 4 * time.Second, RetransmitBase: 1.8, RetransmitTries: 5,
		HalfOpenTimeout: 30 * time.Second, KeepaliveInterval: 20 * time.Second, NATTPort: 4500, DrainDelay: 5 * time.Second,
		MaxPacket: DefaultMaxPacket}
}

// Env is the worker as a manager sees it.
type Env interface {
	task.Env
	// Settings are the daemon-wide parameters, read at each use so that a
	// reload applies.
	Settings() Settings
	// Send sends a datagram from d.Local to d.Remote.
	Send(d Datagram)
	// Log is the worker's logger, which the manager extends with the IKE
	// SA's attributes.
	Log() *slog.Logger
	// Changed says the IKE SA changed (an exchange completed): persist it.
	Changed(m *Manager)
	// Established is called once when IKE_AUTH completes, before the
	// exchange's Changed.
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
	// NewIKESPI returns an IKE SPI of ours that no IKE SA uses, for the
	// new IKE SA of ike's rekey: it carries ike's anchor.
	NewIKESPI(ike *sa.IKESA) (uint64, error)
	// Adopt takes a new IKE SA (made by a rekey of m's) under the worker's
	// care and returns its manager; its queued tasks start once the
	// current event is handled.
	Adopt(ike *sa.IKESA) *Manager
	// Resume runs f, the rest of an exchange of m that waited for the
	// data plane, as the worker runs m's events: on its goroutine, with a
	// panic costing m alone, m's timers and the worker's pending work seen
	// to after.
	Resume(m *Manager, f func())
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
	// InboundPackets sums the packets the inbound SAs with these SPIs
	// have received.
	InboundPackets(spis []uint32) (uint64, error)
}

// UsagePrefetcher is implemented by data planes whose InboundPackets
// answers from what one call fetched for many SAs: the worker gives it the
// SPIs of every IKE SA whose sample is due at a Tick, so that a million
// IKE SAs sampling every dpd_delay/2 cost a call per Tick, not one each.
type UsagePrefetcher interface {
	PrefetchInbound(spis []uint32)
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
	// IKE is the IKE SA the manager runs; the worker reads it (state,
	// addresses, persistence), only the manager's goroutine writes it.
	IKE *sa.IKESA
	env Env

	queue  []task.Initiator
	active []task.Initiator
	req    *request
	// more is what few IKE SAs need at a time (nil until then).
	more *seldom

	// The times are instants, 8 bytes each rather than a time.Time's 24:
	// a Manager is then 160 bytes, not 288.
	//
	// halfOpenUntil is the half-open deadline of a responder IKE SA (zero
	// once established or for an initiator).
	halfOpenUntil instant
	// lastRecv is when the last authenticated message of the peer arrived;
	// lastSent when we last sent anything (for keepalives).
	lastRecv, lastSent instant
	dpdDelay           time.Duration
	// inPkts is the inbound packet count of the Child SAs at the last
	// sample (UsageReader, every dpd_delay/2), taken at sampledAt;
	// lastInbound is the earliest time ESP may last have arrived.
	inPkts                 uint64
	sampledAt, lastInbound instant
	// probeAt is when to look for traffic through Child SAs whose outbound
	// SA is held back (zero: none pending).
	probeAt   instant
	destroyed bool
}

// instant is a time as the nanoseconds since instantEpoch, 0 for the zero
// time.Time: what a Manager keeps of its times. Instants order as their
// times do, the zero time first (every time since instantEpoch is
// positive), so that max and < apply to them.
type instant int64

// instantEpoch is the origin of instants, a century before iked started
// (an instant spans 292 years), read with the monotonic clock: an
// instant made of a time.Now reading and made a time.Time again compares
// with other readings by the monotonic clock, as the reading did. A time
// without a monotonic reading (a fake clock's) makes the wall time it was
// again.
var instantEpoch = time.Now().Add(-100 * 365 * 24 * time.Hour)

// at is t as an instant.
func at(t time.Time) instant {
	if t.IsZero() {
		return 0
	}
	if d := t.Sub(instantEpoch); d != 0 {
		return instant(d)
	}
	return 1 // the epoch itself, a nanosecond later, not the zero time
}

// t is the instant as a time.Time (the zero time for 0).
func (i instant) t() time.Time {
	if i == 0 {
		return time.Time{}
	}
	return instantEpoch.Add(time.Duration(i))
}

// seldom is the state of a Manager that few IKE SAs hold at a time,
// apart so that an idle IKE SA's Manager is a size class smaller.
type seldom struct {
	deferred []deferredTask
	// frags collect the fragments of the peer's requests and of the
	// responses to ours (RFC 7383); nil until the first fragment.
	frags     fragBuffers
	failure   *task.Failure
	endReason string
	// waiting is the peer's request whose answer waits for its Child
	// SA's install (Installing).
	waiting *responding
	// held is the response to our exchange that arrived meanwhile,
	// taken once the install is answered.
	held heldResponse
	// answering is the response to our exchange whose Child SA's install
	// the exchange waits for (Answering).
	answering *answered
	// sampleFailedAt is when the last sample of inbound packets could not
	// be read.
	sampleFailedAt instant
}

// noSeldom is what rare returns for a Manager without: never written.
var noSeldom seldom

// rare returns m's seldom state to read.
func (m *Manager) rare() *seldom {
	if m.more == nil {
		return &noSeldom
	}
	return m.more
}

// rareW returns m's seldom state to change, made when first needed.
func (m *Manager) rareW() *seldom {
	if m.more == nil {
		m.more = &seldom{}
	}
	return m.more
}

// shrink lets m's seldom state go when it holds nothing any more (the
// install it was made to wait for is over), so that an idle IKE SA's
// Manager is small again.
func (m *Manager) shrink() {
	if x := m.more; x != nil && len(x.deferred) == 0 && x.frags.requests == nil && x.frags.responses == nil &&
		x.failure == nil && x.endReason == "" && x.waiting == nil && x.held.raw == nil && x.answering == nil {
		m.more = nil
	}
}

// New returns the manager of ike.
func New(ike *sa.IKESA, env Env) *Manager {
	m := &Manager{IKE: ike, env: env}
	now := env.Now()
	m.lastRecv, m.lastSent = at(now), at(now)
	return m
}

// Restore returns the manager of an IKE SA read back from the state file:
// established, with its message IDs and cached response.
func Restore(ike *sa.IKESA, env Env) *Manager {
	m := New(ike, env)
	// A state written before IKE SAs dropped SK_pi and SK_pr has them.
	if ike.Keys != nil {
		ike.Keys.DropAuthKeys()
	}
	if ike.State == sa.Rekeyed && ike.RekeyedUntil.IsZero() {
		ike.RekeyedUntil = env.Now().Add(RekeyedTimeout)
	}
	// The request in flight when iked stopped goes out again as it was,
	// with its task rebuilt to process the answer.
	var resumed task.Initiator
	if f := ike.InFlight; f != nil {
		t, err := task.Resume(m.ctx(f.Exchange), f)
		if err != nil {
			m.Logger().Warn("request in flight not resumed; its answer will be ignored", "exchange", f.Exchange.String(),
				"msgid", f.MsgID, "err", err.Error())
		}
		resumed = t
		m.active = []task.Initiator{t}
		m.req = &request{id: f.MsgID, exchange: f.Exchange, packets: f.Packets, next: env.Now()}
		m.Logger().Info("request in flight resumed", "exchange", f.Exchange.String(), "msgid", f.MsgID, "task", f.Task)
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

// Destroyed reports whether the IKE SA is gone.
func (m *Manager) Destroyed() bool { return m.destroyed }

// Active returns the tasks of the exchange in flight.
func (m *Manager) Active() []task.Initiator { return m.active }

// Queued returns the tasks waiting for an exchange.
func (m *Manager) Queued() []task.Initiator { return m.queue }

// Deferred returns how many tasks wait for a later start (retries after
// TEMPORARY_FAILURE).
func (m *Manager) Deferred() int { return len(m.rare().deferred) }

// Busy reports whether a request of ours is outstanding.
func (m *Manager) Busy() bool { return m.req != nil }

// SetHalfOpen marks a responder IKE SA half-open until deadline.
func (m *Manager) SetHalfOpen(deadline time.Time) { m.halfOpenUntil = at(deadline) }

// HalfOpen reports whether the IKE SA is a half-open responder IKE SA.
func (m *Manager) HalfOpen() bool { return m.halfOpenUntil != 0 }

// Queue adds a task; Initiate starts it when the window is free.
func (m *Manager) Queue(t task.Initiator) { m.queue = append(m.queue, t) }

// QueueAt queues t to start no earlier than at.
func (m *Manager) QueueAt(t task.Initiator, at time.Time) {
	x := m.rareW()
	x.deferred = append(x.deferred, deferredTask{at: at, t: t})
}

func (m *Manager) ctx(ex message.ExchangeType) *task.Ctx {
	s := m.env.Settings()
	return &task.Ctx{Env: m.env, IKE: m.IKE, Log: m.Logger(), Exchange: ex, Tasks: m, NATTPort: s.NATTPort,
		DrainDelay: s.DrainDelay, Active: m.active, Host: host{m}}
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
	for _, x := range m.rare().deferred {
		if x.t.Kind() == k && (match == nil || match(x.t)) {
			return true
		}
	}
	return false
}
