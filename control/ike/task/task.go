// Package task holds the tasks IKEv2 exchanges are made of, in the manner
// of strongSwan's charon: each task builds payloads into an outgoing message
// and processes the payloads of an incoming one, with initiator and
// responder behaviour in separate types. The task manager of an IKE SA
// (package manager) owns message IDs, retransmissions and the response
// cache, and chooses which tasks make up an exchange:
//
//	IKE_SA_INIT       IKEInitI                     / IKEInitR
//	IKE_AUTH          IKEAuthI + ChildCreateI      / IKEAuthR + ChildCreateR
//	CREATE_CHILD_SA   ChildCreateI, ChildRekeyI,   / ChildCreateR (new Child SA,
//	                  IKERekeyI                      or REKEY_SA), IKERekeyR
//	INFORMATIONAL     IKEDeleteI, ChildDeleteI,    / InfoR (deletes, liveness,
//	                  DPDI                           error notifies)
//
// Tasks reach the rest of the daemon only through Env (clock, randomness,
// configuration, the data plane, counters), so that two task managers can
// negotiate over a fake transport with a fake data plane in a unit test.
//
// # Rekeying
//
// A Child SA rekey (ChildRekeyI, RFC 7296 2.8) is make before break: the
// new inbound SA goes in first on both sides; the initiator then switches
// its outbound SA (the data plane sends through the newest outbound SA of
// a reqid) and deletes the old Child SA; the responder holds its new
// outbound SA back until that DELETE (or until traffic arrives through the
// new Child SA, or the initiator's retransmissions would be over); the old
// inbound SA stays Ctx.DrainDelay after the deletion for packets in
// flight. An IKE SA rekey (IKERekeyI/R, RFC 7296 2.18) makes a new IKE SA
// through Ctx.Host, and the Child SAs, draining SAs and queued tasks move
// to it.
//
// Collisions are seen by the responder tasks in Ctx.Active (our exchange
// in flight) and settled by our initiator task when its response arrives:
// simultaneous rekeys of one SA by the nonce rule (RFC 7296 2.8.1, 2.8.2),
// requests that cross a rekey or a delete with TEMPORARY_FAILURE or as
// usual (RFC 7296 2.25). ChildRekeyI's doc lists the cases.
package task

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/dataplane/api"
)

// DataPlane is the narrow interface to the data plane: spud's SA API in the
// daemon, a map in tests.
type DataPlane interface {
	// AllocSPI reserves an inbound SPI anchored on logical (nil: on the
	// hash of the tunnel's endpoints).
	AllocSPI(local, remote netip.Addr, logical *int) (uint32, error)
	// AddSA installs an SA; DelSA removes one.
	AddSA(s *api.SA) error
	DelSA(id api.SAID) error
	// AddPolicy installs a policy and returns its id; DelPolicy removes
	// one.
	AddPolicy(p *api.Policy) (uint32, error)
	DelPolicy(id uint32) error
}

// ChildDataPlane is a DataPlane that installs and removes a whole Child SA
// in one call each (spud's child.add and child.del): one round trip to
// spud per Child SA instead of up to three. Install and Uninstall use it
// when the data plane has it (a separate interface, so that data planes
// without it, older fakes, keep working with the separate calls), and
// when it answers ErrNoChildOps.
type ChildDataPlane interface {
	DataPlane
	// AddChild installs req whole or not at all (a refused part undoes
	// the others) and returns its policy's id, 0 when req has none.
	AddChild(req *api.ChildAdd) (uint32, error)
	// DelChild removes the parts req names that are there; the error
	// names those that were not, or could not be removed.
	DelChild(req *api.ChildDel) error
}

// AsyncChildDataPlane is a ChildDataPlane that takes a Child SA without
// making the worker wait for spud's answer: the request goes out on the
// connection (several may be in flight) and the answer comes back to the
// worker as an event of its own loop, so that the worker serves other IKE
// SAs meanwhile. InstallAsync uses it where the exchange can wait
// (Ctx.Resume is set).
type AsyncChildDataPlane interface {
	ChildDataPlane
	// AddChildAsync sends req and returns at once; done is called once,
	// later (never within AddChildAsync), on the goroutine that runs the
	// worker that called, with what AddChild would have returned.
	// Requests in flight together may be applied in any order: nothing
	// is asked about a Child SA until its add has been answered.
	AddChildAsync(req *api.ChildAdd, done func(policyID uint32, err error))
}

// LaterDataPlane is a data plane that takes the calls whose outcome
// nothing waits for without the worker waiting for spud: a Child SA's
// removal (Uninstall), an outbound SA released (InstallOutbound), an SA
// moved to the peer's new address. Each returns at once; the data plane
// applies them in the order the worker made them, and before any call the
// worker makes after them and waits for, so that a removal never overtakes
// the install it undoes (that one was answered before the Child SA could
// be removed) nor a replacement's install the removal of what it
// replaces. A failure is the data plane's to report (logged, counted as
// data_plane_error), as the caller of a waited-for call does; the state
// was changed as if the call had succeeded, as it is after a failed
// removal.
type LaterDataPlane interface {
	// DelChildLater is ChildDataPlane.DelChild, later (with the separate
	// calls from a data plane without child.del).
	DelChildLater(req *api.ChildDel)
	// AddSALater is DataPlane.AddSA, later.
	AddSALater(s *api.SA)
	// UpdateSALater moves an SA to the peer's new address or port, later.
	UpdateSALater(u *api.SAUpdate)
}

// ErrNoChildOps is a ChildDataPlane's answer when the data plane behind
// it cannot take a Child SA in one call (a spud older than child.add):
// nothing was done, and the caller makes the separate calls.
var ErrNoChildOps = errors.New("data plane has no child.add/child.del")

// Trap is a trap policy installed for a start_action=trap child: a protect
// policy with a reqid and no SA, whose traffic raises an acquire.
type Trap struct {
	// ReqID is the reqid a Child SA of the child takes over.
	ReqID uint32
	// PolicyID is the trap policy's id in the data plane.
	PolicyID uint32
	// Logical is the logical SPU the trap policy is anchored on: a Child
	// SA of an IKE SA anchored elsewhere cannot take it over.
	Logical int
	// LocalTS and RemoteTS are the trap policy's selectors.
	LocalTS  []ipsec.Selector
	RemoteTS []ipsec.Selector
}

// Env is what tasks need of the worker that runs them.
type Env interface {
	// Now is the worker's clock.
	Now() time.Time
	// Rand supplies nonces and SPIs.
	Rand() io.Reader
	// KeyExchange starts a Diffie-Hellman exchange (deterministic in
	// simulations).
	KeyExchange(g suite.GroupID) (*suite.KeyExchange, error)
	// DataPlane is where Child SAs are installed.
	DataPlane() DataPlane
	// Config is the configuration in force (nil before one is loaded).
	Config() *config.Config
	// NewReqID returns an unused reqid; NewID a unique id for an IKE or
	// Child SA.
	NewReqID() uint32
	NewID() uint32
	// Stats are the daemon's counters.
	Stats() *stats.Counters
	// Trap returns the trap of a child configuration, if installed.
	Trap(conn, child string) (Trap, bool)
	// HasOtherIKESA reports whether another IKE SA with the same peer (address
	// and configured identity) exists: if not, IKE_AUTH carries INITIAL_CONTACT.
	HasOtherIKESA(ike *sa.IKESA) bool
	// InitialContact removes every other IKE SA between the same identities
	// and peer address, without telling the peer (which forgot them).
	InitialContact(ike *sa.IKESA)
	// Predecessor finds, in another IKE SA of the same connection and peer,
	// a live Child SA of the same child with the same selectors as ch: the
	// one that ch, made by a reauthentication, replaces.
	Predecessor(ike *sa.IKESA, ch *sa.ChildSA) (*sa.IKESA, *sa.ChildSA)
}

// Status is what a step of a task asks of the manager.
//
//go:generate go tool stringer -type=Status -linecomment
type Status int

// Statuses.
const (
	// Done: the task is finished.
	Done Status = iota // done
	// NeedMore: the initiator task needs another exchange (requeued first).
	NeedMore // need-more
	// Retry: the IKE_SA_INIT request must be rebuilt and sent again with the
	// same message ID (COOKIE, INVALID_KE_PAYLOAD).
	Retry // retry
	// Failed: the IKE SA cannot go on; it is destroyed after what Build
	// produced is sent. Ctx.Failure says why.
	Failed // failed
	// Destroy: the IKE SA ends normally (a DELETE was exchanged).
	Destroy // destroy
	// Reject: a responder's IKE_SA_INIT answer that keeps no state (an error
	// notify sent with SPIr zero).
	Reject // reject
	// Pending: the responder's step waits for the data plane (an
	// asynchronous install, InstallAsync): the manager answers nothing
	// yet and serves other IKE SAs' events meanwhile; the step's end runs
	// later through Ctx.Resume and says what the step would have said.
	Pending // pending
)

// Kind names a task type.
//
//go:generate go tool stringer -type=Kind -linecomment
type Kind int

// Task kinds.
const (
	KindIKEInit     Kind = iota // IKE_INIT
	KindIKEAuth                 // IKE_AUTH
	KindChildCreate             // CHILD_CREATE
	KindChildDelete             // CHILD_DELETE
	KindIKEDelete               // IKE_DELETE
	KindDPD                     // IKE_DPD
	KindInfo                    // INFORMATIONAL
	KindChildRekey              // CHILD_REKEY
	KindIKERekey                // IKE_REKEY
)

// Task is one task.
type Task interface {
	// Kind names the task's type.
	Kind() Kind
	// Abort tells the task that its IKE SA is gone before it finished.
	Abort(err error)
}

// Initiator is the initiator side of a task: it builds a request and
// processes the response.
type Initiator interface {
	Task
	// Build adds the task's payloads to the request (req.Payloads for
	// IKE_SA_INIT, req.Inner otherwise). An error drops the task from the
	// exchange (and fails the IKE SA if the task is essential to it).
	Build(c *Ctx, req *message.Message) error
	// Process handles the response and says what the manager does next.
	Process(c *Ctx, resp *message.Message) Status
}

// Responder is the responder side of a task.
type Responder interface {
	Task
	// Process handles the request; Build then adds the task's part of the
	// response. Each says what the manager does next.
	Process(c *Ctx, req *message.Message) Status
	Build(c *Ctx, resp *message.Message) Status
}

// Failure records why an IKE SA failed, for the manager's log line and
// counters.
type Failure struct {
	// Reason is the failure's counter; Err says what failed and why.
	Reason stats.Reason
	Err    error
	// Notify, when set, is sent to the peer: in the response (responder) or
	// in an INFORMATIONAL request (initiator).
	Notify message.NotifyType
}

// Ctx is a task's view of its IKE SA and of the daemon for one step.
type Ctx struct {
	Env
	// IKE is the IKE SA the task belongs to.
	IKE *sa.IKESA
	// Log carries the IKE SA's connection, SPIs and peer.
	Log *slog.Logger
	// Exchange is the exchange being built or processed.
	Exchange message.ExchangeType
	// Tasks is the IKE SA's manager, which Queue and QueueAt add to: an
	// interface holding the manager's pointer, where two method values
	// were two allocations for every exchange's Ctx.
	Tasks Queuer
	// Failure is set by Fail.
	Failure *Failure
	// Settings of the daemon that tasks need.
	NATTPort uint16
	// DrainDelay is how long the inbound SA of a replaced Child SA stays.
	DrainDelay time.Duration
	// Active are our tasks whose request is in flight: a responder task
	// looks there for the exchange its request collides with.
	Active []Initiator
	// Host reaches beyond this IKE SA, for IKE SA rekeying.
	Host Host
	// Resume, when set (a responder's exchange that may wait), runs the
	// end of a step that returned Pending, on the worker's goroutine with
	// the IKE SA's manager in charge: f finishes the step (also when the
	// IKE SA ended meanwhile, so that it can undo what the data plane
	// did) and returns the status Process would have returned; then the
	// manager carries on with the exchange. Nil: every step finishes
	// within Process.
	Resume func(f func() Status)
}

// Queuer takes the initiator tasks a step starts: the IKE SA's manager.
type Queuer interface {
	// Queue adds an initiator task.
	Queue(t Initiator)
	// QueueAt adds an initiator task to start no earlier than at.
	QueueAt(t Initiator, at time.Time)
}

// Queue adds an initiator task to the IKE SA's manager.
func (c *Ctx) Queue(t Initiator) { c.Tasks.Queue(t) }

// QueueAt queues an initiator task to start no earlier than at.
func (c *Ctx) QueueAt(t Initiator, at time.Time) { c.Tasks.QueueAt(t, at) }

// Host is what rekeying an IKE SA needs of the task manager: new IKE SAs
// next to the current one.
type Host interface {
	// NewIKESPI returns an IKE SPI of ours that no IKE SA uses.
	NewIKESPI() (uint64, error)
	// ReplaceIKE makes next (established, keys set) the successor of the
	// current IKE SA: its Child SAs, draining SAs and queued tasks move
	// there, and the current one becomes Rekeyed (it only waits for its
	// DELETE).
	ReplaceIKE(next *sa.IKESA, reason string)
	// AddRedundantIKE registers an IKE SA that lost a rekey collision: we
	// delete it (del), or the peer that created it does.
	AddRedundantIKE(ike *sa.IKESA, del bool)
}

// Retries after TEMPORARY_FAILURE and failed rekeys: strongSwan waits
// 5..15 s; these are shorter so that short lifetimes still leave room
// for a retry.
const (
	retryBase   = 2 * time.Second
	retryJitter = 3 * time.Second
	// maxTempFailRetries bounds the retries of one Child SA creation.
	maxTempFailRetries = 5
)

// RetryDelay is how long to wait before trying a rekey or creation again:
// randomised, so that two peers that crossed do not cross again.
func RetryDelay(r io.Reader) time.Duration {
	return retryBase + jitter(r, (*config.Duration)(ptr(retryJitter)))
}

func ptr[T any](v T) *T { return &v }

// Fail records the failure of the IKE SA. The first failure wins.
func (c *Ctx) Fail(r stats.Reason, notify message.NotifyType, format string, args ...any) {
	if c.Failure != nil {
		return
	}
	c.Failure = &Failure{Reason: r, Err: fmt.Errorf(format, args...), Notify: notify}
}

// Conn returns the configuration of the IKE SA's connection, or nil if it
// is gone (reloaded away).
func (c *Ctx) Conn() *config.Conn {
	cfg := c.Config()
	if cfg == nil {
		return nil
	}
	return cfg.Connections[c.IKE.ConnName]
}

func (c *Ctx) random(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.Rand(), b); err != nil {
		return nil, fmt.Errorf("randomness: %w", err)
	}
	return b, nil
}

// NonceLen is the length of our nonces: at least half the PRF's key size
// (RFC 7296 2.10) for every PRF we implement.
const NonceLen = 32

func errorNotify(ps []message.Payload) *message.Notify {
	for _, p := range ps {
		if n, ok := p.(*message.Notify); ok && n.NotifyType.IsError() {
			return n
		}
	}
	return nil
}

// WireIdentity turns a received ID payload into an Identity for logs and
// matching.
func WireIdentity(id *message.ID) config.Identity {
	data := append([]byte(nil), id.Data...)
	out := config.Identity{Type: uint8(id.IDType), Data: data}
	switch id.IDType {
	case message.IDIPv4Addr, message.IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(data); ok {
			out.Text = a.String()
		}
	case message.IDFQDN, message.IDRFC822Addr:
		out.Text = fmt.Sprintf("%q", data)
		out.Text = out.Text[1 : len(out.Text)-1]
	case message.IDKeyID:
		out.Text = fmt.Sprintf("@#%x", data)
	case message.IDDERASN1DN:
		out.Text = pki.FormatDN(data)
	default:
		out.Text = fmt.Sprintf("%s:%x", id.IDType, data)
	}
	if out.Text == "" {
		out.Text = fmt.Sprintf("%s:%x", id.IDType, data)
	}
	return out
}

// sameIdentity returns cfg when the peer's identity is the configured one,
// byte for byte and in its text, else peer: the bytes and text of an
// authenticated peer are then the configuration's, which every IKE SA of
// the connection shares, rather than a copy of their own (two
// allocations an IKE SA, at a million of them).
func sameIdentity(peer, cfg config.Identity) config.Identity {
	if peer.Type == cfg.Type && peer.Text == cfg.Text && bytes.Equal(peer.Data, cfg.Data) {
		return cfg
	}
	return peer
}

// IDPayload builds our ID payload from a configured identity.
func IDPayload(responder bool, id config.Identity) *message.ID {
	return &message.ID{Responder: responder, IDType: message.IDType(id.Type), Data: id.Data}
}

// ConfigChecker validates the proposal strings of a configuration with this
// package's parsers (config.Checker).
type ConfigChecker struct{}

// CheckIKEProposal parses an IKE proposal.
func (ConfigChecker) CheckIKEProposal(s string) error {
	_, err := suite.ParseIKE(s)
	return err
}

// CheckESPProposal parses an ESP proposal.
func (ConfigChecker) CheckESPProposal(s string) error {
	_, err := suite.ParseESP(s)
	return err
}
