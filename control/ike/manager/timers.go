package manager

import (
	"fmt"
	"math"
	"time"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
)

// timeout is the wait after the n-th retransmission (0: the first
// transmission): Timeout * Base^n.
func (m *Manager) timeout(n int) time.Duration {
	s := m.env.Settings()
	return time.Duration(float64(s.RetransmitTimeout) * math.Pow(s.RetransmitBase, float64(n)))
}

// armProbe schedules the look for traffic through Child SAs whose
// outbound SA is held back.
func (m *Manager) armProbe() {
	if m.probeAt != 0 {
		return
	}
	if _, ok := m.env.DataPlane().(UsageReader); !ok {
		return
	}
	for _, ch := range m.IKE.Children {
		if pendingOut(ch) {
			m.probeAt = at(m.env.Now().Add(task.OutPendingProbe))
			return
		}
	}
}

func (m *Manager) setDPD() {
	// The connection as task.Ctx.Conn finds it, without building a
	// context (an allocation per setup).
	if cfg := m.env.Config(); cfg != nil {
		if conn := cfg.Connections[m.IKE.ConnName]; conn != nil {
			m.dpdDelay = conn.DPDDelay.D()
		}
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
	{name: "fragments", when: func(m *Manager) time.Time { return m.rare().frags.deadline() },
		fire: func(m *Manager, now time.Time) bool { m.expireFragments(now); return false }},
	{name: "half-open", when: func(m *Manager) time.Time { return m.halfOpenUntil.t() }, fire: (*Manager).halfOpenTimeout},
	{name: "deferred", when: (*Manager).deferredAt, fire: (*Manager).startDeferred},
	{name: "drain", when: (*Manager).drainAt, fire: (*Manager).drain},
	{name: "rekeyed", when: (*Manager).rekeyedUntil, fire: (*Manager).rekeyedTimeout},
	{name: "cached-response", when: (*Manager).responseKeptUntil, fire: (*Manager).idle},
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

// CachedResponseTime is how long the last response stays cached after
// the peer's last message: longer than the peer retransmits a request
// whose response was lost (about 165 s with strongSwan's defaults). Kept
// for ever, the responses of the IKE_AUTHs (a few hundred bytes) were a
// tenth of what an idle IKE SA costs at a million. A request retransmitted
// later is dropped as one with an old message ID.
const CachedResponseTime = 3 * time.Minute

// responseKeptUntil is when the cached response goes, and the SK
// ciphers with it (zero: neither is held). The response is not persisted
// again without it: a restored one is kept CachedResponseTime after the
// restore.
func (m *Manager) responseKeptUntil() time.Time {
	if len(m.IKE.LastResponse) == 0 && !m.ciphersIdle() {
		return time.Time{}
	}
	return m.lastRecv.t().Add(CachedResponseTime)
}

// ciphersIdle reports whether the SK ciphers are made and no request of
// ours waits for its response: a request sent after a long silence (a
// liveness check, a rekey) keeps them for its response.
func (m *Manager) ciphersIdle() bool {
	return m.req == nil && (m.IKE.Out != nil || m.IKE.In != nil)
}

// idle lets go of what an IKE SA the peer has not spoken to for
// CachedResponseTime holds for its next exchange only: the cached
// response and the SK ciphers (IKESA.DropCiphers; the next message makes
// them again from the keys).
func (m *Manager) idle(time.Time) bool {
	m.IKE.LastResponse = nil
	if m.ciphersIdle() {
		m.IKE.DropCiphers()
	}
	return false
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
	if m.req == nil || m.Answering() {
		// Nothing in flight, or its response is in and waits for our
		// Child SA's install.
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
	m.Logger().Debug("retransmit", "exchange", r.exchange.String(), "msgid", r.id, "try", r.tries)
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
	for _, x := range m.rare().deferred {
		d = earliest(d, x.at)
	}
	return d
}

// startDeferred queues the deferred tasks whose time has come.
func (m *Manager) startDeferred(now time.Time) bool {
	if m.more == nil {
		return false
	}
	kept := m.more.deferred[:0]
	for _, x := range m.more.deferred {
		if now.Before(x.at) {
			kept = append(kept, x)
		} else {
			m.queue = append(m.queue, x.t)
		}
	}
	m.more.deferred = kept
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
		m.Logger().Warn("draining inbound sa removal incomplete", "err", err.Error())
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
	m.Logger().Warn("IKE SA expired: neither rekey nor reauthentication succeeded in time", "reason", "over_time")
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
	return max(m.sampledAt, m.rare().sampleFailedAt).t().Add(m.dpdDelay / 2)
}

// AppendDueSample appends to spis the inbound SPIs of the IKE SA's Child
// SAs if its inbound sample is due at now (for UsagePrefetcher).
func (m *Manager) AppendDueSample(spis []uint32, now time.Time) []uint32 {
	if at := m.sampleAt(); m.destroyed || at.IsZero() || at.After(now) || len(m.queue) > 0 {
		return spis
	}
	for _, ch := range m.IKE.Children {
		spis = append(spis, ch.SPIIn)
	}
	return spis
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
	m.lastInbound = at(now) // one check per dpd_delay without an answer
	return false
}

func (m *Manager) keepaliveAt() time.Time {
	s := m.env.Settings()
	if !m.IKE.NATLocal || s.KeepaliveInterval <= 0 {
		return time.Time{}
	}
	return m.lastSent.t().Add(s.KeepaliveInterval)
}

// keepalive sends a NAT keepalive, to keep the mapping of a NAT in front
// of us.
func (m *Manager) keepalive(now time.Time) bool {
	ike := m.IKE
	m.env.Send(Datagram{Local: ike.Local, Remote: ike.Remote, Data: []byte{0xff}})
	m.lastSent = at(now)
	m.env.Stats().Inc(stats.Keepalives)
	return false
}

// childrenAt is the earliest timer of the Child SAs: rekey, expiry, and
// the install of a held-back outbound SA (its limit, or the look for
// traffic through it).
func (m *Manager) childrenAt() time.Time {
	var d time.Time
	if m.Installing() || m.Answering() {
		// A Child SA's install is pending (a rekey's, perhaps): the Child
		// SAs stay as they are until it is answered (resume reschedules).
		return d
	}
	for _, ch := range m.IKE.Children {
		if ch.State == sa.ChildInstalled {
			d = earliest(d, ch.RekeyAt)
		}
		if pendingOut(ch) {
			d = earliest(d, ch.Installed.Add(m.outPendingLimit()))
			if _, ok := m.env.DataPlane().(UsageReader); ok {
				d = earliest(d, m.probeAt.t())
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
	if m.Installing() || m.Answering() {
		return false
	}
	probe := m.probeAt != 0 && !now.Before(m.probeAt.t())
	if probe {
		m.probeAt = 0
	}
	for _, ch := range append([]*sa.ChildSA(nil), m.IKE.Children...) {
		if !pendingOut(ch) {
			// nothing held back
		} else if why := m.outPendingDue(ch, now, probe); why != "" {
			if err := m.installPendingOut(ch); err != nil {
				ch.OutPending = false // do not spin; the Child SA stays inbound-only
				m.env.Stats().Fail(stats.DataPlane)
				m.Logger().Warn("child sa outbound not installed", "child", ch.Name, "child_id", ch.UniqueID, "err", err.Error())
			} else {
				m.Logger().Info("child sa outbound installed: "+why, "child", ch.Name, "child_id", ch.UniqueID,
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
		m.Logger().Info("IKE SA rekey due", "reason", task.ReasonTime)
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
	return max(m.lastInbound, m.lastRecv).t()
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
		// Tried again in dpd_delay/2: with the sample's time left in the
		// past, Deadline stayed there and the worker spun, calling spud
		// in a tight loop while it was away.
		m.rareW().sampleFailedAt = at(now)
		return
	}
	if n != m.inPkts && m.sampledAt != 0 && m.sampledAt > m.lastInbound {
		m.lastInbound = m.sampledAt
	}
	m.inPkts, m.sampledAt = n, at(now)
}
