// Package worker is one IKE worker: the shard of iked's IKE SAs that live on
// one SPU. It owns their task managers (package manager), finds the IKE SA of
// each datagram by SPI, applies the responder's defences to IKE_SA_INIT
// (COOKIE above a threshold of half-open IKE SAs, a limit of half-open IKE
// SAs per peer address), runs their timers, and starts, lists and ends IKE
// SAs on command.
//
// A Worker is not safe for concurrent use: the daemon gives each worker a
// goroutine and sends it datagrams and commands; tests call it directly with
// a fake clock and network. Nothing on the per-exchange path takes a lock
// shared with other workers (counters are atomics).
package worker

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/anchor"
)

// Env is the daemon as a worker sees it.
type Env interface {
	Now() time.Time
	Rand() io.Reader
	KeyExchange(g suite.GroupID) (*suite.KeyExchange, error)
	DataPlane() task.DataPlane
	Config() *config.Config
	Settings() manager.Settings
	NewReqID() uint32
	NewID() uint32
	Stats() *stats.Counters
	Log() *slog.Logger
	Send(d manager.Datagram)
	Trap(conn, child string) (task.Trap, bool)
	// LocalAddrFor picks our address towards remote when the connection
	// names none.
	LocalAddrFor(remote netip.Addr) (netip.Addr, error)
	// Changed says an IKE SA changed (persist it); Gone that it ended.
	Changed(ike *sa.IKESA)
	Gone(ike *sa.IKESA)
	// InstallTrap (re)installs the trap of a child, for dpd_action and
	// close_action trap.
	InstallTrap(conn, child string)
	// Anchoring is how the worker anchors the IKE SAs it makes; nil
	// without a data plane to anchor on (IKE SPIs are then plain random
	// numbers and IKE SAs are not Anchored).
	Anchoring() *Anchoring
	// HalfOpen counts half-open IKE SAs by peer address over every worker
	// of the daemon, or is nil where the worker is alone: with an anchor
	// per IKE SA one address's IKE_SA_INITs reach every worker, and the
	// per-address thresholds are the daemon's.
	HalfOpen() *PeerCounts
	// Peers counts IKE SAs by peer address over every worker of the
	// daemon, or is nil where the worker is alone: with an anchor per IKE
	// SA one peer's IKE SAs live on several workers, and whether we hold
	// another IKE SA with a peer (INITIAL_CONTACT) is the daemon's to say.
	// Each worker adds its own as its peer index files them.
	Peers() *PeerCounts
	// Others runs f on every other worker of the daemon, later, each on
	// its own goroutine (nothing where the worker is alone).
	Others(f func(*Worker))
}

// Anchoring is how IKE SAs are anchored: the deployment's anchor function,
// the SPI codec of its L, and the rule for a responder's new IKE SA.
type Anchoring struct {
	Fn    anchor.Function
	Codec anchor.SPICodec
	// PerIKESA anchors a responder's new IKE SA by the keyed hash of the
	// endpoints and the initiator's SPI (anchor.Function.LogicalFirst),
	// so that one peer's IKE SAs spread over every SPU; else every IKE SA
	// is anchored by the hash of its endpoints alone (iked's ike_anchor).
	PerIKESA bool
}

// PeerCounts counts by peer address for several workers at once, and,
// by authenticated peer (address and identity), which workers hold IKE
// SAs of it: with an anchor per IKE SA a peer's reauthentication may land
// on another worker than the IKE SA it replaces, and the worker that
// installs the new Child SA asks those workers, not all of them.
type PeerCounts struct {
	mu sync.Mutex
	n  map[netip.Addr]int
	// ids holds, by a hash of the peer (peerKey), the workers with IKE SAs
	// of it and how many each: most peers have one IKE SA, on one worker,
	// which the entry holds without a slice of its own.
	ids  map[uint64]peerHolders
	seed maphash.Seed
	once sync.Once
}

// peerHolders is the workers holding IKE SAs of one peer.
type peerHolders struct {
	first peerHold
	more  []peerHold
}

// peerHold is a worker's count of IKE SAs of a peer.
type peerHold struct {
	worker int32
	n      int32
}

// peerHash is the key of an authenticated peer in PeerCounts' ids; two
// peers that collide only cost a question to a worker that holds neither.
func (c *PeerCounts) peerHash(k peerKey) uint64 {
	c.once.Do(func() { c.seed = maphash.MakeSeed() })
	return maphash.Comparable(c.seed, k)
}

// addPeer adds delta to worker's count of IKE SAs of peer h.
func (c *PeerCounts) addPeer(h uint64, worker int, delta int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[uint64]peerHolders{}
	}
	hs := c.ids[h]
	if hs.more == nil && (hs.first.n == 0 || hs.first.worker == int32(worker)) {
		// One worker holds the peer's IKE SAs, as nearly always: no slice.
		if n := hs.first.n + delta; n > 0 {
			c.ids[h] = peerHolders{first: peerHold{worker: int32(worker), n: n}}
		} else {
			delete(c.ids, h)
		}
		return
	}
	all := append([]peerHold{hs.first}, hs.more...)
	i := slices.IndexFunc(all, func(p peerHold) bool { return p.worker == int32(worker) })
	if i < 0 {
		if delta <= 0 {
			return
		}
		all = append(all, peerHold{worker: int32(worker)})
		i = len(all) - 1
	}
	if all[i].n += delta; all[i].n <= 0 {
		all = slices.Delete(all, i, i+1)
	}
	switch len(all) {
	case 0:
		delete(c.ids, h)
	case 1:
		c.ids[h] = peerHolders{first: all[0]}
	default:
		c.ids[h] = peerHolders{first: all[0], more: slices.Clip(all[1:])}
	}
}

// peerWorkers appends to ws the workers other than self that hold IKE
// SAs of peer h.
func (c *PeerCounts) peerWorkers(ws []int, h uint64, self int) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	hs, ok := c.ids[h]
	if !ok {
		return ws
	}
	if hs.first.n > 0 && int(hs.first.worker) != self {
		ws = append(ws, int(hs.first.worker))
	}
	for _, p := range hs.more {
		if p.n > 0 && int(p.worker) != self {
			ws = append(ws, int(p.worker))
		}
	}
	return ws
}

// Get returns the count of a.
func (c *PeerCounts) Get(a netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[a]
}

// Add adds delta to the count of a.
func (c *PeerCounts) Add(a netip.Addr, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[netip.Addr]int{}
	}
	if c.n[a] += delta; c.n[a] <= 0 {
		delete(c.n, a)
	}
}

type initKey struct {
	spi  uint64
	peer netip.AddrPort
}

// Worker is one IKE worker: the IKE SAs of one SPU's anchors, their timers
// and the responder's defences for datagrams that reach it. Use New.
type Worker struct {
	// ID is the worker's index in the daemon (New's id), as logs and
	// spuctl's worker list show it.
	ID  int
	env Env
	log *slog.Logger

	bySPI map[uint64]*manager.Manager
	// reauthHint speeds up Predecessor (reauth.go).
	reauthHint childHint
	// claims are the Child SAs of the worker, by reqid, that a
	// reauthentication's Child SA on another worker replaces (elsewhere.go).
	claims  map[uint32]claim
	initReq map[initKey]*manager.Manager
	// perPeer counts half-open IKE SAs by peer address: the daemon's
	// counts when Env.HalfOpen gives them, else the worker's own.
	perPeer *PeerCounts
	halfOpn map[*manager.Manager]netip.Addr

	// timers and sched hold each IKE SA's next deadline (schedule): the
	// heap may hold older entries of a manager, which sched tells apart.
	// Both count in nanoseconds since epoch, not in time.Time, for 16-byte
	// entries and 8-byte values instead of 32 and 24: two per IKE SA.
	timers timerHeap
	sched  map[*manager.Manager]int64
	epoch  time.Time
	// peers finds IKE SAs by peer address and identities (index.go).
	peers peerIndex
	// byID holds bySPI's managers in UniqueID order (order.go).
	byID idOrder
	// due and spis are Tick's batch, kept to spare allocations.
	due     []*manager.Manager
	spis    []uint32
	cookies cookieSecrets
	// refused and unauthLogs bound what unauthenticated requests cost:
	// refusals raise the COOKIE, log lines about them are rate-limited.
	refused    refusals
	unauthLogs logLimit
	// unauthDebug is the budget of their debug lines.
	unauthDebug logLimit
	// unauthenticated is set while a manager handles a message or a timer
	// of an IKE SA nobody has authenticated: its log lines then take from
	// unauthLogs (gatedHandler).
	unauthenticated bool
	mlog            *slog.Logger
	// current is the manager handling a datagram or a timer, for recovered.
	current *manager.Manager
	pending []func()
	menv    *mgrEnv
	// graves keep the last response of IKE SAs that ended after answering
	// the peer's DELETE, so that a retransmission of that DELETE (our
	// response was lost) is answered instead of being retransmitted for
	// minutes into the void.
	graves map[uint64]grave
	// buried is the graves' SPIs in the order they were made, which is
	// the order they expire in (each is kept graveTime), so that
	// expiring them costs no pass over all of them at each deletion: the
	// IKE SAs a peer deletes at once (a restart, a load run's end) were a
	// pass each over those of the last three minutes.
	buried []burial
	// load is the current or last load run; loadSAs the IKE SAs load
	// runs made that still exist.
	load     *loadRun
	loadSAs  map[*sa.IKESA]bool
	loadHint childHint
}

// grave is what remains of an IKE SA: its last response.
type grave struct {
	msgID uint32 // the message ID of the request it answers
	resp  [][]byte
	local netip.AddrPort
	until time.Time
}

// burial is a grave's place in the expiry order; a grave made again
// under the same SPI has a later until, and the older burial then names a
// grave that is no longer there.
type burial struct {
	spi   uint64
	until time.Time
}

// bury keeps the last response of ike, which the peer deleted, and lets
// the graves whose time is up go.
func (w *Worker) bury(ike *sa.IKESA) {
	now := w.env.Now()
	n := 0
	for _, b := range w.buried {
		if !now.After(b.until) {
			break
		}
		if g, ok := w.graves[b.spi]; ok && g.until.Equal(b.until) {
			delete(w.graves, b.spi)
		}
		n++
	}
	w.buried = w.buried[n:]
	if len(w.buried) == 0 {
		w.buried = nil // the backing array of a burst of deletions goes
	}
	until := now.Add(graveTime)
	w.graves[ike.OurSPI()] = grave{msgID: ike.MsgIDIn - 1, resp: ike.LastResponse, local: ike.Local, until: until}
	w.buried = append(w.buried, burial{spi: ike.OurSPI(), until: until})
}

// graveTime bounds how long a grave is kept: longer than a peer's
// retransmissions with strongSwan's defaults (about 165 s).
const graveTime = 3 * time.Minute

// New returns a worker with no IKE SAs; id is its index in the daemon,
// and env its clock, randomness, data plane, configuration and sockets.
func New(id int, env Env) *Worker {
	w := &Worker{ID: id, env: env, log: env.Log().With("worker", id),
		bySPI: map[uint64]*manager.Manager{}, initReq: map[initKey]*manager.Manager{},
		halfOpn: map[*manager.Manager]netip.Addr{}, sched: map[*manager.Manager]int64{}, epoch: env.Now(),
		peers:  newPeerIndex(env.Peers()),
		graves: map[uint64]grave{}, loadSAs: map[*sa.IKESA]bool{},
		unauthLogs:  logLimit{burst: unauthLogBurst, interval: unauthLogInterval},
		unauthDebug: logLimit{burst: unauthDebugBurst, interval: unauthLogInterval}}
	w.peers.worker = id
	w.peers.spread = func() bool { a := env.Anchoring(); return a != nil && a.PerIKESA }
	if w.perPeer = env.HalfOpen(); w.perPeer == nil {
		w.perPeer = &PeerCounts{}
	}
	w.mlog = slog.New(gatedHandler{env.Log().Handler(), w})
	w.menv = &mgrEnv{Env: env, w: w}
	return w
}

// Len is the number of IKE SAs of the worker.
func (w *Worker) Len() int { return len(w.bySPI) }

// Managers returns the worker's task managers, in UniqueID order.
func (w *Worker) Managers() []*manager.Manager {
	return w.byID.all(make([]*manager.Manager, 0, w.byID.Len()))
}

// track files m under our SPI of its IKE SA, and in UniqueID order.
func (w *Worker) track(spi uint64, m *manager.Manager) {
	if old := w.bySPI[spi]; old != nil {
		w.byID.remove(old)
	}
	w.bySPI[spi] = m
	w.byID.add(m)
}

// Receive handles one datagram that arrived at the worker's sockets. A
// panic while handling it (a bug, perhaps one a peer found) costs the IKE
// SA that was handling it, not the daemon: see recovered.
func (w *Worker) Receive(d manager.Datagram) {
	defer w.runPending()
	defer w.recovered("datagram", d.Data)
	w.receive(d)
}

func (w *Worker) receive(d manager.Datagram) {
	data := d.Data
	set := w.env.Settings()
	if set.MaxPacket > 0 && len(data) > set.MaxPacket {
		w.env.Stats().Fail(stats.MaxPacket)
		w.unauthLog(slog.LevelDebug, "dropped datagram: larger than max_packet", "from", d.Remote.String(), "bytes", len(data),
			"max_packet", set.MaxPacket)
		return
	}
	if d.Local.Port() == set.NATTPort {
		var err error
		if data, err = message.StripNonESPMarker(data); err != nil {
			return // a NAT keepalive, or ESP that reached the socket
		}
	}
	h, err := message.DecodeHeader(data)
	if err != nil {
		w.env.Stats().Fail(stats.DecodeError)
		w.unauthLog(slog.LevelDebug, "dropped datagram", "from", d.Remote.String(), "err", err.Error())
		return
	}
	msg, err := message.Decode(data)
	if err != nil {
		w.env.Stats().Fail(stats.DecodeError)
		w.unauthLog(slog.LevelDebug, "dropped datagram", "from", d.Remote.String(), "exchange", h.Exchange.String(), "err", err.Error())
		return
	}
	if h.Exchange == message.IKESAInit && !h.IsResponse() && h.SPIr == 0 {
		w.receiveInit(d, msg)
		return
	}
	ours := h.SPIi
	if h.IsInitiator() {
		ours = h.SPIr
	}
	m := w.bySPI[ours]
	if m == nil {
		if g, ok := w.graves[ours]; ok && !h.IsResponse() && h.MessageID == g.msgID {
			if w.env.Now().After(g.until) {
				delete(w.graves, ours)
			} else {
				w.env.Stats().Inc(stats.CachedResponses)
				for _, p := range g.resp {
					if g.local.Port() == w.env.Settings().NATTPort {
						p = message.AddNonESPMarker(p)
					}
					w.env.Send(manager.Datagram{Local: d.Local, Remote: d.Remote, Data: p})
				}
				return
			}
		}
		w.env.Stats().Fail(stats.UnknownSPI)
		w.unauthLog(slog.LevelDebug, "dropped datagram for an unknown IKE SA", "from", d.Remote.String(), "spii", fmt.Sprintf("%016x", h.SPIi),
			"spir", fmt.Sprintf("%016x", h.SPIr), "exchange", h.Exchange.String())
		return
	}
	theirs := h.SPIr
	if h.IsInitiator() {
		theirs = h.SPIi
	}
	if theirs != m.IKE.PeerSPI() && !(m.IKE.Initiator && h.Exchange == message.IKESAInit && m.IKE.SPIr == 0) {
		w.env.Stats().Fail(stats.UnknownSPI)
		return
	}
	w.unauthenticated, w.current = m.HalfOpen(), m
	m.Receive(d, msg)
	w.unauthenticated, w.current = false, nil
	w.schedule(m)
}

// receiveInit handles an IKE_SA_INIT request: a retransmission goes to its
// IKE SA; a new one passes the COOKIE check and then the half-open limits
// before any state is kept. The order is strongSwan's and matters: a
// COOKIE is demanded from an address before it reaches its block
// threshold, so a spoofer (who never sees the COOKIE) cannot fill the
// half-open slots of a peer whose address it forges.
func (w *Worker) receiveInit(d manager.Datagram, msg *message.Message) {
	h := msg.Header
	key := initKey{h.SPIi, d.Remote}
	if m := w.initReq[key]; m != nil {
		w.unauthenticated, w.current = m.HalfOpen(), m
		m.Receive(d, msg)
		w.unauthenticated, w.current = false, nil
		w.schedule(m)
		return
	}
	if err := message.Validate(msg); err != nil {
		w.env.Stats().Fail(stats.InvalidSyntax)
		w.unauthLog(slog.LevelDebug, "dropped IKE_SA_INIT", "from", d.Remote.String(), "err", err.Error())
		return
	}
	cfg := w.env.Config()
	now := w.env.Now()
	addr := d.Remote.Addr()
	if cfg != nil && w.cookieRequired(cfg, addr, now) {
		ni, _ := message.Find(msg.Payloads, message.PayloadNonce).(*message.Nonce)
		n := message.FindNotify(msg.Payloads, message.Cookie)
		if n == nil || ni == nil || !w.cookies.verify(now, n.Data, ni.Data, addr, h.SPIi) {
			if n != nil {
				w.env.Stats().Fail(stats.InvalidCookie)
			}
			w.sendCookie(d, msg, ni)
			return
		}
	}
	if cfg != nil && cfg.BlockThreshold > 0 && w.perPeer.Get(addr) >= cfg.BlockThreshold {
		w.env.Stats().Fail(stats.HalfOpenLimit)
		w.unauthLog(slog.LevelInfo, "IKE_SA_INIT dropped: half-open limit of the peer reached", "peer", d.Remote.String(),
			"half_open", w.perPeer.Get(addr), "block_threshold", cfg.BlockThreshold, "reason", stats.HalfOpenLimit.String())
		return
	}
	if cfg != nil && cfg.InitLimitHalfOpen > 0 && w.env.Stats().HalfOpen.Load() >= int64(cfg.InitLimitHalfOpen) {
		w.env.Stats().Fail(stats.InitLimit)
		w.unauthLog(slog.LevelWarn, "IKE_SA_INIT dropped: half-open limit reached", "peer", d.Remote.String(),
			"half_open", w.env.Stats().HalfOpen.Load(), "init_limit_half_open", cfg.InitLimitHalfOpen, "reason", stats.InitLimit.String())
		return
	}
	lg, anchored := w.firstAnchor(d, h.SPIi)
	spir, err := w.newSPI(lg, anchored)
	if err != nil {
		w.env.Stats().Fail(stats.InternalError)
		return
	}
	ike := &sa.IKESA{UniqueID: w.env.NewID(), SPIi: h.SPIi, SPIr: spir, Local: d.Local, Remote: d.Remote, Logical: lg, Anchored: anchored,
		Created: now}
	m := manager.New(ike, w.menv)
	w.unauthenticated, w.current = true, m
	m.Receive(d, msg)
	w.unauthenticated, w.current = false, nil
	if m.Destroyed() {
		w.refused.add(now)
		return
	}
	w.track(spir, m)
	w.initReq[key] = m
	w.perPeer.Add(d.Remote.Addr(), 1)
	w.halfOpn[m] = d.Remote.Addr()
	w.env.Stats().HalfOpen.Add(1)
	m.SetHalfOpen(now.Add(w.env.Settings().HalfOpenTimeout))
	w.schedule(m)
}

// cookieRequired says whether an IKE_SA_INIT from addr must carry a valid
// COOKIE: while cookie_threshold IKE SAs are half-open in all, while
// cookie_threshold_ip of them are from addr, or while as many requests
// were refused in the last second (counted per worker).
func (w *Worker) cookieRequired(cfg *config.Config, addr netip.Addr, now time.Time) bool {
	if cfg.CookieThreshold > 0 {
		if w.env.Stats().HalfOpen.Load() >= int64(cfg.CookieThreshold) || w.refused.recent(now) >= cfg.CookieThreshold {
			return true
		}
	}
	return cfg.CookieThresholdIP > 0 && w.perPeer.Get(addr) >= cfg.CookieThresholdIP
}

// sendCookie answers an IKE_SA_INIT request with a COOKIE (RFC 7296 2.6),
// keeping no state.
func (w *Worker) sendCookie(d manager.Datagram, req *message.Message, ni *message.Nonce) {
	var nonce []byte
	if ni != nil {
		nonce = ni.Data
	}
	cookie := w.cookies.make(w.env.Now(), w.env.Rand(), nonce, d.Remote.Addr(), req.Header.SPIi)
	resp := &message.Message{Header: message.Header{SPIi: req.Header.SPIi, Exchange: message.IKESAInit, Flags: message.FlagResponse},
		Payloads: []message.Payload{&message.Notify{NotifyType: message.Cookie, Data: cookie}}}
	b, err := resp.Encode(nil)
	if err != nil {
		return
	}
	if d.Local.Port() == w.env.Settings().NATTPort {
		b = message.AddNonESPMarker(b)
	}
	w.env.Stats().Inc(stats.CookiesSent)
	w.unauthLog(slog.LevelDebug, "IKE_SA_INIT answered with a COOKIE", "peer", d.Remote.String(), "half_open", w.env.Stats().HalfOpen.Load())
	w.env.Send(manager.Datagram{Local: d.Local, Remote: d.Remote, Data: b})
}

// newSPI returns an IKE SPI of ours that no IKE SA of the worker uses,
// carrying logical in its top bits if anchored.
func (w *Worker) newSPI(logical uint16, anchored bool) (uint64, error) {
	if a := w.env.Anchoring(); a != nil && anchored {
		for range 16 {
			spi, err := a.Codec.AllocateIKE(logical, w.env.Rand())
			if err != nil {
				return 0, err
			}
			if w.bySPI[spi] == nil {
				return spi, nil
			}
		}
		return 0, errors.New("no free IKE SPI")
	}
	var b [8]byte
	for range 16 {
		if _, err := io.ReadFull(w.env.Rand(), b[:]); err != nil {
			return 0, err
		}
		spi := binary.BigEndian.Uint64(b[:])
		if spi != 0 && w.bySPI[spi] == nil {
			return spi, nil
		}
	}
	return 0, errors.New("no free IKE SPI")
}

// firstAnchor is the anchor of a responder's new IKE SA whose initiator
// chose spiI: the hash of the endpoints and spiI with an anchor per IKE
// SA, else the endpoints' hash.
func (w *Worker) firstAnchor(d manager.Datagram, spiI uint64) (logical uint16, anchored bool) {
	a := w.env.Anchoring()
	if a == nil {
		return 0, false
	}
	if a.PerIKESA {
		if tf, ok := w.env.(TrapFinder); !ok || !tf.TrapBetween(d.Local.Addr(), d.Remote.Addr()) {
			return a.Fn.LogicalFirst(d.Local.Addr(), d.Remote.Addr(), spiI), true
		}
	}
	return a.Fn.Logical(d.Local.Addr(), d.Remote.Addr()), true
}

// TrapFinder is implemented by an Env that says whether a trap policy
// (a child with start_action trap) lies between two addresses. With an
// anchor per IKE SA, the IKE SAs a peer there initiates are then anchored
// by the endpoints, as with ike_anchor tunnel: on the trap's logical SPU,
// and so on its worker, where their Child SAs take the trap over (they
// share its reqid, and its policy sends through them), as the IKE SAs we
// initiate on the trap's acquire do. A Child SA anchored elsewhere could
// not: a policy sends through the outbound SAs of its own SPU. The
// daemon's routing of first contacts follows the same rule.
type TrapFinder interface {
	TrapBetween(local, remote netip.Addr) bool
}

// tunnelAnchor is the anchor of an IKE SA we initiate between local and
// remote: the endpoints' hash, where the daemon starts it and where the
// trap policies of its connection are.
func (w *Worker) tunnelAnchor(local, remote netip.Addr) (logical uint16, anchored bool) {
	if a := w.env.Anchoring(); a != nil {
		return a.Fn.Logical(local, remote), true
	}
	return 0, false
}

// Deadline is when Tick must next be called (zero: nothing scheduled).
func (w *Worker) Deadline() time.Time {
	for len(w.timers) > 0 {
		e := w.timers[0]
		if t, ok := w.sched[e.m]; ok && t == e.when {
			return w.epoch.Add(time.Duration(e.when))
		}
		w.timers.pop()
	}
	return time.Time{}
}

// since is t on the timers' scale: nanoseconds since the worker's epoch
// (monotonic where both have a monotonic reading).
func (w *Worker) since(t time.Time) int64 { return int64(t.Sub(w.epoch)) }

// Tick runs every timer due at now; a panic in one IKE SA's timer ends
// that IKE SA (recovered), and the timers still due run at the next Tick.
//
// The timers due are taken in batches: the data plane (a UsagePrefetcher)
// is first asked once for the inbound counts of every IKE SA of the batch
// whose liveness sample is due.
func (w *Worker) Tick(now time.Time) {
	defer w.runPending()
	defer w.recovered("timer", nil)
	pre, _ := w.env.DataPlane().(manager.UsagePrefetcher)
	at := w.since(now)
	for len(w.timers) > 0 && w.timers[0].when <= at {
		w.due = w.due[:0]
		for len(w.timers) > 0 && w.timers[0].when <= at {
			e := w.timers.pop()
			if t, ok := w.sched[e.m]; ok && t == e.when {
				w.due = append(w.due, e.m)
			}
		}
		if pre != nil {
			w.spis = w.spis[:0]
			for _, m := range w.due {
				w.spis = m.AppendDueSample(w.spis, now)
			}
			if len(w.spis) > 1 {
				pre.PrefetchInbound(w.spis)
			}
		}
		for _, m := range w.due {
			if _, ok := w.sched[m]; !ok {
				continue // rescheduled meanwhile: its entry is in the heap again
			}
			delete(w.sched, m)
			w.unauthenticated, w.current = m.HalfOpen(), m
			cached := m.IKE.LastResponse != nil
			m.Tick(now)
			w.unauthenticated, w.current = false, nil
			if cached && m.IKE.LastResponse == nil && !m.Destroyed() &&
				(m.IKE.State == sa.Established || m.IKE.State == sa.Rekeyed) {
				// The cached response expired: its state is written again
				// without it, a third of what an idle tunnel's record held
				// for the tunnel's life.
				w.env.Changed(m.IKE)
			}
			w.schedule(m)
		}
	}
}

// schedule (re)registers a manager's deadline.
func (w *Worker) schedule(m *manager.Manager) {
	w.peers.update(m)
	d := m.Deadline()
	if m.Destroyed() || d.IsZero() {
		delete(w.sched, m)
		return
	}
	at := w.since(d)
	if t, ok := w.sched[m]; ok && t == at {
		return
	}
	w.sched[m] = at
	w.timers.push(timerEntry{when: at, m: m})
}

func (w *Worker) runPending() {
	for len(w.pending) > 0 {
		p := w.pending
		w.pending = nil
		for _, f := range p {
			f()
		}
	}
}

// forget removes a manager from the tables.
func (w *Worker) forget(m *manager.Manager) {
	ike := m.IKE
	if w.bySPI[ike.OurSPI()] == m {
		delete(w.bySPI, ike.OurSPI())
	}
	w.byID.remove(m)
	w.forgetInit(m)
	w.endHalfOpen(m)
	w.peers.remove(m)
	delete(w.sched, m)
	delete(w.loadSAs, ike)
	w.dropClaims(ike, false)
}

// forgetInit drops the IKE_SA_INIT retransmission entry of a responder IKE
// SA (keyed by the address the request came from, which may have floated
// since).
func (w *Worker) forgetInit(m *manager.Manager) {
	if m.IKE.Initiator {
		return
	}
	for _, port := range []uint16{m.IKE.Remote.Port(), uint16(w.env.Config().Port), w.env.Settings().NATTPort} {
		k := initKey{m.IKE.SPIi, netip.AddrPortFrom(m.IKE.Remote.Addr(), port)}
		if w.initReq[k] == m {
			delete(w.initReq, k)
			return
		}
	}
}

func (w *Worker) endHalfOpen(m *manager.Manager) {
	peer, ok := w.halfOpn[m]
	if !ok {
		return
	}
	delete(w.halfOpn, m)
	w.perPeer.Add(peer, -1)
	w.env.Stats().HalfOpen.Add(-1)
}

// timerEntry is a deadline in the timer heap (Worker.since's scale).
type timerEntry struct {
	when int64
	m    *manager.Manager
}

// timerHeap is a binary min-heap of deadlines, typed rather than through
// container/heap, whose interface boxed each entry pushed.
type timerHeap []timerEntry

func (h *timerHeap) push(e timerEntry) {
	*h = append(*h, e)
	q := *h
	for i := len(q) - 1; i > 0; {
		p := (i - 1) / 2
		if q[p].when <= q[i].when {
			break
		}
		q[p], q[i] = q[i], q[p]
		i = p
	}
}

// pop removes and returns the earliest entry; the heap must not be empty.
func (h *timerHeap) pop() timerEntry {
	q := *h
	e := q[0]
	n := len(q) - 1
	q[0] = q[n]
	q[n] = timerEntry{}
	q = q[:n]
	for i := 0; ; {
		l, least := 2*i+1, i
		if l < n && q[l].when < q[least].when {
			least = l
		}
		if r := l + 1; r < n && q[r].when < q[least].when {
			least = r
		}
		if least == i {
			break
		}
		q[i], q[least] = q[least], q[i]
		i = least
	}
	*h = q
	return e
}
