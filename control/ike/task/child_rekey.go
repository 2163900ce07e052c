package task

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
)

// Rekey reasons, as logs and spuctl show them.
const (
	ReasonTime     = "rekey_time"
	ReasonBytes    = "rekey_bytes"
	ReasonPackets  = "rekey_packets"
	ReasonSeq      = "sequence numbers near exhaustion"
	ReasonOperator = "operator"
	ReasonResync   = "data plane lost the outbound sa"
)

// ChildRekeyI rekeys a Child SA (RFC 7296 1.3.3, 2.8), make before break:
//
//  1. CREATE_CHILD_SA with REKEY_SA; the response installs the new
//     inbound SA only;
//  2. unless a collision was lost: the new outbound SA is installed (the
//     data plane sends through the newest outbound SA of the reqid) and
//     the old Child SA is deleted (a separate INFORMATIONAL exchange); its
//     inbound SA stays for the drain period (Ctx.DrainDelay).
//
// The responder (ChildCreateR) installs its new inbound SA before it
// answers and holds its new outbound SA back until the old Child SA is
// deleted, so that nothing reaches us through an SA we do not have yet.
//
// Collisions (RFC 7296 2.8.1, 2.25.1) are noted while the request is in
// flight by the responder tasks: the peer's own rekey of the same Child
// SA (answered as usual: the passive replacement), its DELETE of the old
// Child SA, or of the passive replacement. When the response arrives:
//
//   - both rekeys succeeded: the exchange whose lower nonce is the lowest
//     lost. The winner installs its outbound SA and deletes the old Child
//     SA; the loser deletes the Child SA it created (never sending through
//     it) and sends through the winner's once the old one is deleted.
//   - ours failed (TEMPORARY_FAILURE, TS_UNACCEPTABLE...) but the peer's
//     succeeded: the peer's replacement is kept; it deletes the old one.
//   - the peer deleted the old Child SA and has a replacement: ours is
//     redundant and deleted.
//   - the peer deleted the old Child SA after answering ours (a peer that
//     deletes what the initiator should): ours is kept.
//   - ours failed otherwise: the old Child SA stays and is rekeyed again
//     after RetryDelay.
type ChildRekeyI struct {
	// Old is the Child SA being rekeyed.
	Old *sa.ChildSA
	// Reason says what made it due (time, bytes, packets...), for logs.
	Reason string

	create *ChildCreateI
	// passive is the peer's replacement of Old that we answered while our
	// request was in flight, passiveNonce the lower nonce of its exchange.
	passive      *sa.ChildSA
	passiveNonce []byte
	// oldDeleted: the peer deleted Old meanwhile.
	oldDeleted bool
	// deleted are SPIs the peer deleted meanwhile that were none of ours
	// (the one it allocated for our new Child SA, if it deleted that).
	deleted []uint32
	done    func(error)
}

// NewChildRekeyI prepares the rekeying of a Child SA; reason says why (for
// the logs).
func NewChildRekeyI(old *sa.ChildSA, reason string) *ChildRekeyI {
	return &ChildRekeyI{Old: old, Reason: reason}
}

// WithDone sets a function called once with the outcome.
func (t *ChildRekeyI) WithDone(done func(error)) *ChildRekeyI { t.done = done; return t }

// Kind is KindChildRekey.
func (t *ChildRekeyI) Kind() Kind { return KindChildRekey }

// String names the task in logs.
func (t *ChildRekeyI) String() string { return "child rekey " + t.Old.Name }

func (t *ChildRekeyI) finish(err error) {
	if t.done != nil {
		t.done(err)
		t.done = nil
	}
}

// Abort: the IKE SA is gone; the Child SA with it.
func (t *ChildRekeyI) Abort(err error) {
	if err == nil {
		err = errAborted
	}
	t.finish(err)
}

var errNotInstalled = errors.New("child sa is no longer installed")

// Build sends the CREATE_CHILD_SA request; it drops the task when the
// Child SA is no longer installed (the peer rekeyed or deleted it since
// the task was queued).
func (t *ChildRekeyI) Build(c *Ctx, req *message.Message) error {
	old := t.Old
	if t.create == nil {
		if old.State != sa.ChildInstalled || c.IKE.ChildByInSPI(old.SPIIn) != old {
			t.finish(errNotInstalled)
			return fmt.Errorf("child %s %s: %w (%s)", old.Name, old.SPIs(), errNotInstalled, old.State)
		}
		conn := c.Conn()
		var cc *config.Child
		if conn != nil {
			cc = conn.Children[old.Name]
		}
		if cc == nil {
			err := fmt.Errorf("child %q of connection %q is no longer configured", old.Name, c.IKE.ConnName)
			t.finish(err)
			return err
		}
		t.create = NewChildCreateI(conn, cc, nil)
		t.create.Replaces, t.create.ReqID = old, old.ReqID
	} else if old.State != sa.ChildRekeying {
		// Another round (INVALID_KE_PAYLOAD) after the Child SA went.
		t.finish(errNotInstalled)
		return fmt.Errorf("child %s %s: %w (%s)", old.Name, old.SPIs(), errNotInstalled, old.State)
	}
	if err := t.create.Build(c, req); err != nil {
		t.finish(err)
		return err
	}
	old.State = sa.ChildRekeying
	old.RekeyAt = time.Time{}
	c.Log.Debug("child sa rekey started", "child", old.Name, "child_id", old.UniqueID, "spi_in", hex8(old.SPIIn),
		"spi_out", hex8(old.SPIOut), "reason", t.Reason)
	return nil
}

// Process handles the response and settles the rekey (see the type's
// doc).
func (t *ChildRekeyI) Process(c *Ctx, resp *message.Message) Status {
	ch, st := t.create.negotiate(c, resp)
	if st == NeedMore {
		return NeedMore
	}
	if ch == nil {
		return t.settle(c, nil)
	}
	return t.create.install(c, ch, func(ch *sa.ChildSA, _ Status) Status { return t.settle(c, ch) })
}

// settle ends the rekey once the new Child SA ch is in the data plane
// (nil: it failed), against the state of that moment: the peer may have
// rekeyed or deleted the old Child SA, or deleted ch, while ch went in.
func (t *ChildRekeyI) settle(c *Ctx, ch *sa.ChildSA) Status {
	old := t.Old
	passive := t.passive
	if passive != nil && (passive.State == sa.ChildDeleted || passive.State == sa.ChildDeleting) {
		// The peer took its replacement back: it lost the collision (and
		// settled it before we did: our new Child SA went in meanwhile).
		passive = nil
		if ch != nil {
			c.Stats().Inc(stats.ChildRekeyCollisions)
		}
	}
	if ch == nil {
		t.failed(c, passive)
		return Done
	}
	if containsSPI(t.deleted, ch.SPIOut) {
		// The peer deleted the replacement it had installed for us before
		// we even had it: honour that, keep the old one.
		c.Log.Info("child sa rekey: the peer deleted the new child sa meanwhile", "child", ch.Name, "spi_in", hex8(ch.SPIIn))
		removeChild(c, ch, "deleted by peer before the rekey completed")
		t.failed(c, passive)
		return Done
	}
	switch {
	case t.oldDeleted && passive != nil:
		// The peer won (or never saw our request as a collision) and has
		// already deleted the old Child SA: its replacement stands.
		c.Stats().Inc(stats.ChildRekeyCollisions)
		t.redundant(c, ch, "rekey collision: the peer's replacement stands")
		t.finish(nil)
		return Done
	case passive != nil:
		c.Stats().Inc(stats.ChildRekeyCollisions)
		if bytes.Compare(t.create.lowerNonce(), t.passiveNonce) < 0 {
			c.Log.Info("child sa rekey collision lost", "child", ch.Name, "redundant_spi_in", hex8(ch.SPIIn),
				"winner_spi_in", hex8(passive.SPIIn), "old_spi_in", hex8(old.SPIIn))
			old.State = sa.ChildRekeyed
			t.redundant(c, ch, "rekey collision lost")
			t.finish(nil)
			return Done
		}
		c.Log.Info("child sa rekey collision won", "child", ch.Name, "winner_spi_in", hex8(ch.SPIIn),
			"redundant_spi_in", hex8(passive.SPIIn), "old_spi_in", hex8(old.SPIIn))
		// The peer deletes its redundant Child SA; we never send through it.
		passive.Redundant, passive.State, passive.RekeyAt = true, sa.ChildRekeyed, time.Time{}
	}
	if err := InstallOutbound(c, ch); err != nil {
		// Without its outbound SA the new Child SA is useless: tell the
		// peer, keep the old one, try again later.
		c.Stats().Fail(stats.DataPlane)
		c.Log.Warn("child sa rekey: new outbound sa not installed", "child", ch.Name, "err", err.Error())
		ch.Redundant = true
		c.Queue(NewChildDeleteI("outbound sa not installed", nil, ch))
		t.failed(c, nil)
		return Done
	}
	c.Stats().Inc(stats.ChildRekeysInitiated)
	logRekey(c, old, ch, t.Reason, "initiator")
	if t.oldDeleted {
		// The peer deleted the old Child SA after answering (which the
		// initiator should do): it is gone on its side already.
		removeChild(c, old, "deleted by peer during the rekey")
	} else {
		old.State = sa.ChildRekeyed
		c.Queue(NewChildDeleteI("rekeyed", nil, old))
	}
	t.finish(nil)
	return Done
}

// redundant gives up our new Child SA ch: never sent through, deleted.
func (t *ChildRekeyI) redundant(c *Ctx, ch *sa.ChildSA, why string) {
	ch.Redundant, ch.State, ch.RekeyAt = true, sa.ChildRekeyed, time.Time{}
	c.Queue(NewChildDeleteI(why, nil, ch))
}

// failed settles a rekey that produced no Child SA of ours.
func (t *ChildRekeyI) failed(c *Ctx, passive *sa.ChildSA) {
	old := t.Old
	switch {
	case passive != nil:
		// The peer's rekey of the same Child SA succeeded: that one
		// stands, and the peer deletes the old one (or did).
		c.Log.Info("child sa rekey aborted: the peer rekeyed it", "child", old.Name, "old_spi_in", hex8(old.SPIIn),
			"new_spi_in", hex8(passive.SPIIn))
		if t.oldDeleted {
			removeChild(c, old, "rekeyed by peer")
		} else {
			old.State = sa.ChildRekeyed
		}
	case t.oldDeleted:
		removeChild(c, old, "deleted by peer during the rekey")
	case t.create.notify == message.ChildSANotFound:
		// The peer does not know the Child SA (it lost its state): replace
		// it by a new one instead.
		c.Log.Info("child sa rekey: the peer does not know the child sa; creating a new one", "child", old.Name,
			"spi_in", hex8(old.SPIIn))
		removeChild(c, old, "unknown to the peer")
		if conn := c.Conn(); conn != nil && conn.Children[old.Name] != nil {
			cr := NewChildCreateI(conn, conn.Children[old.Name], nil)
			cr.ReqID = old.ReqID
			c.Queue(cr)
		}
	default:
		if old.State == sa.ChildRekeying {
			old.State = sa.ChildInstalled
			old.RekeyAt = c.Now().Add(RetryDelay(c.Rand()))
			c.Stats().Inc(stats.RekeyRetries)
			c.Log.Info("child sa rekey failed, retrying", "child", old.Name, "spi_in", hex8(old.SPIIn),
				"at", old.RekeyAt.Format(time.RFC3339Nano))
		}
	}
	t.finish(fmt.Errorf("child %s rekey failed", old.Name))
}

// notePassive records the peer's rekey of our Old, answered while our
// request was in flight.
func (t *ChildRekeyI) notePassive(ch *sa.ChildSA, lowerNonce []byte) {
	t.passive, t.passiveNonce = ch, append([]byte(nil), lowerNonce...)
}

// activeRekey returns our in-flight rekey of ch, if any.
func activeRekey(c *Ctx, ch *sa.ChildSA) *ChildRekeyI {
	for _, a := range c.Active {
		if r, ok := a.(*ChildRekeyI); ok && r.Old == ch && r.create != nil {
			return r
		}
	}
	return nil
}

// activeChildRekeys returns our in-flight Child SA rekeys.
func activeChildRekeys(c *Ctx) []*ChildRekeyI {
	var out []*ChildRekeyI
	for _, a := range c.Active {
		if r, ok := a.(*ChildRekeyI); ok && r.create != nil {
			out = append(out, r)
		}
	}
	return out
}

func containsSPI(l []uint32, spi uint32) bool {
	for _, x := range l {
		if x == spi {
			return true
		}
	}
	return false
}

func hex8(v uint32) string { return fmt.Sprintf("%08x", v) }

// logRekey is the one line of a Child SA rekey: old and new SPIs, why,
// and our role.
func logRekey(c *Ctx, old, ch *sa.ChildSA, reason, role string) {
	logChild(c, ch, "child sa rekeyed", "old_spi_in", hex8(old.SPIIn), "old_spi_out", hex8(old.SPIOut),
		"reason", reason, "role", role)
}
