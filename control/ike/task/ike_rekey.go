package task

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
)

// IKERekeyI rekeys the IKE SA (RFC 7296 1.3.2, 2.18): CREATE_CHILD_SA
// with an IKE proposal carrying our new SPI, a nonce and a KE. The new IKE
// SA's keys come from the old one's SK_d and the new exchange
// (suite.DeriveRekeyedIKEKeys); we are its original initiator. The Child
// SAs move to it, and we delete the old IKE SA (an INFORMATIONAL exchange
// on the old one).
//
// Collisions (RFC 7296 2.8.2): the peer's rekey of the same IKE SA that we
// answered while ours was in flight is settled when our response arrives:
// the exchange whose lower nonce is the lowest lost. The loser deletes the
// IKE SA it created and moves to the winner's; the winner deletes the old
// IKE SA and waits for the loser to delete the redundant one. A peer's
// DELETE of the old IKE SA in between concludes in favour of the peer's
// replacement.
type IKERekeyI struct {
	// Reason says what made the IKE SA due, for logs.
	Reason string

	spi       uint64
	proposals []suite.Proposal
	group     suite.GroupID
	ke        *suite.KeyExchange
	nonce     []byte
	retries   int
	// passive is the peer's replacement IKE SA we answered while our
	// request was in flight; passiveNonce the lower nonce of its exchange.
	passive      *sa.IKESA
	passiveNonce []byte
	concluded    bool
}

// NewIKERekeyI prepares the rekeying of the IKE SA.
func NewIKERekeyI(reason string) *IKERekeyI { return &IKERekeyI{Reason: reason} }

// Kind is KindIKERekey.
func (t *IKERekeyI) Kind() Kind { return KindIKERekey }

// Abort does nothing: nothing waits for the task.
func (t *IKERekeyI) Abort(error) {}

// String names the task in logs.
func (t *IKERekeyI) String() string { return "ike rekey" }

// Build fills SA, Nonce and KE.
func (t *IKERekeyI) Build(c *Ctx, req *message.Message) error {
	ike := c.IKE
	if ike.State != sa.Established {
		return fmt.Errorf("IKE SA is %s, not established", ike.State)
	}
	conn := c.Conn()
	if conn == nil {
		return fmt.Errorf("connection %q is no longer configured", ike.ConnName)
	}
	if c.Host == nil {
		return errors.New("no host for a new IKE SA")
	}
	ps, err := IKEProposals(conn)
	if err != nil {
		return err
	}
	if t.spi == 0 {
		if t.spi, err = c.Host.NewIKESPI(); err != nil {
			return err
		}
	}
	if t.group == suite.GroupNone {
		// The group of the IKE SA we replace, if still configured (as
		// strongSwan does), else the first one configured.
		cur, _ := ike.Proposal.Algorithms()
		for i := range ps {
			if cur.Group != suite.GroupNone && ps[i].Has(suite.TransformKE, uint16(cur.Group)) {
				t.group = cur.Group
				break
			}
		}
		if t.group == suite.GroupNone && len(ps) > 0 && len(ps[0].Groups()) > 0 {
			t.group = ps[0].Groups()[0]
		}
		if t.group == suite.GroupNone {
			return fmt.Errorf("connection %q: no key exchange group for an IKE rekey", conn.Name)
		}
	}
	var spi [8]byte
	binary.BigEndian.PutUint64(spi[:], t.spi)
	t.proposals = suite.WithSPI(ps, spi[:])
	if t.nonce, err = c.random(NonceLen); err != nil {
		return err
	}
	if t.ke, err = c.KeyExchange(t.group); err != nil {
		return fmt.Errorf("key exchange %s: %w", t.group, err)
	}
	req.Inner = append(req.Inner, &message.SA{Proposals: t.proposals}, &message.Nonce{Data: t.nonce},
		&message.KE{Group: t.group, Data: t.ke.PublicKey()})
	c.Log.Debug("IKE SA rekey started", "reason", t.Reason, "new_spi_i", fmt.Sprintf("%016x", t.spi))
	return nil
}

// Process handles the response and settles the rekey.
func (t *IKERekeyI) Process(c *Ctx, resp *message.Message) Status {
	if n := errorNotify(resp.Inner); n != nil {
		if n.NotifyType == message.InvalidKEPayload && len(n.Data) == 2 && t.retries < 2 {
			g := suite.GroupID(binary.BigEndian.Uint16(n.Data))
			offered := false
			for i := range t.proposals {
				offered = offered || t.proposals[i].Has(suite.TransformKE, uint16(g))
			}
			if offered && g != t.group && suite.GroupSupported(g) {
				c.Stats().Fail(stats.InvalidKE)
				t.group, t.retries = g, t.retries+1
				return NeedMore
			}
		}
		t.failed(c, fmt.Sprintf("peer answered %s", n.NotifyType))
		return Done
	}
	saP, _ := message.Find(resp.Inner, message.PayloadSA).(*message.SA)
	nP, _ := message.Find(resp.Inner, message.PayloadNonce).(*message.Nonce)
	keP, _ := message.Find(resp.Inner, message.PayloadKE).(*message.KE)
	if saP == nil || nP == nil || keP == nil {
		c.Stats().Fail(stats.InvalidSyntax)
		t.failed(c, "response without SA, Nonce and KE")
		return Done
	}
	chosen, err := suite.CheckResponse(t.proposals, saP.Proposals)
	if err != nil {
		c.Stats().Fail(stats.NoProposalChosen)
		t.failed(c, fmt.Sprintf("unacceptable proposal in the response: %v", err))
		return Done
	}
	alg, err := chosen.Algorithms()
	if err != nil || len(chosen.SPI) != 8 || alg.Group != t.group || keP.Group != t.group {
		c.Stats().Fail(stats.InvalidSyntax)
		t.failed(c, fmt.Sprintf("response: proposal %s with a %d-byte SPI and a KE of group %s (we sent %s)",
			chosen, len(chosen.SPI), keP.Group, t.group))
		return Done
	}
	gir, err := t.ke.SharedSecret(keP.Data)
	if err != nil {
		c.Stats().Fail(stats.InvalidKEData)
		t.failed(c, fmt.Sprintf("peer's KE: %v", err))
		return Done
	}
	spir := binary.BigEndian.Uint64(chosen.SPI)
	next, err := rekeyedIKE(c, true, t.spi, spir, chosen, alg, gir, t.nonce, nP.Data)
	if err != nil {
		c.Stats().Fail(stats.InternalError)
		t.failed(c, err.Error())
		return Done
	}
	if t.passive != nil && !t.concluded {
		c.Stats().Inc(stats.IKERekeyCollisions)
		if bytes.Compare(lower(t.nonce, nP.Data), t.passiveNonce) < 0 {
			c.Log.Info("IKE SA rekey collision lost", "redundant_spis", next.SPIs(), "winner_spis", t.passive.SPIs())
			t.concluded = true
			c.Host.AddRedundantIKE(next, true)
			c.Host.ReplaceIKE(t.passive, "rekeyed by peer (collision)")
			return Done
		}
		c.Log.Info("IKE SA rekey collision won", "winner_spis", next.SPIs(), "redundant_spis", t.passive.SPIs())
		c.Host.AddRedundantIKE(t.passive, false)
	}
	t.concluded = true
	c.Stats().Inc(stats.IKERekeysInitiated)
	c.Host.ReplaceIKE(next, t.Reason)
	c.Queue(NewIKEDeleteI("rekeyed"))
	return Done
}

// failed settles a rekey that produced no IKE SA: the peer's replacement
// if it rekeyed too, else a retry later.
func (t *IKERekeyI) failed(c *Ctx, why string) {
	if t.passive != nil && !t.concluded {
		t.concluded = true
		c.Log.Info("IKE SA rekey failed, the peer's rekey stands", "why", why, "new_spis", t.passive.SPIs())
		c.Host.ReplaceIKE(t.passive, "rekeyed by peer")
		return
	}
	ike := c.IKE
	if ike.State != sa.Established {
		return
	}
	ike.RekeyAt = c.Now().Add(RetryDelay(c.Rand()))
	c.Stats().Inc(stats.RekeyRetries)
	c.Log.Info("IKE SA rekey failed, retrying", "why", why, "at", ike.RekeyAt.Format(time.RFC3339Nano))
}

// peerDeleted: the peer deleted the IKE SA we are rekeying. If it had
// rekeyed it (we answered), its replacement takes the Child SAs.
func (t *IKERekeyI) peerDeleted(c *Ctx) {
	if t.passive != nil && !t.concluded {
		t.concluded = true
		c.Log.Info("peer deleted the IKE SA we are rekeying; its replacement stands", "new_spis", t.passive.SPIs())
		c.Host.ReplaceIKE(t.passive, "rekeyed by peer")
	}
}

func activeIKERekey(c *Ctx) *IKERekeyI {
	for _, a := range c.Active {
		if r, ok := a.(*IKERekeyI); ok && r.nonce != nil {
			return r
		}
	}
	return nil
}

// rekeyedIKE builds the IKE SA a rekey creates: the old one's connection,
// addresses and identities, the new SPIs and keys (RFC 7296 2.18), message
// IDs from zero.
func rekeyedIKE(c *Ctx, initiator bool, spii, spir uint64, chosen suite.Proposal, alg suite.Algorithms, gir, ni, nr []byte) (*sa.IKESA, error) {
	old := c.IKE
	keys, err := suite.DeriveRekeyedIKEKeys(old.Keys, alg, ni, nr, gir, spii, spir)
	if err != nil {
		return nil, fmt.Errorf("rekeyed IKE SA keys: %w", err)
	}
	// The new IKE SA is authenticated by the old one: no AUTH, so
	// neither SK_pi and SK_pr nor the nonces are kept.
	keys.DropAuthKeys()
	now := c.Now()
	prop := chosen.Clone()
	prop.SPI = nil
	prop = prop.Share()
	n := &sa.IKESA{UniqueID: c.NewID(), ConnName: old.ConnName, Initiator: initiator, SPIi: spii, SPIr: spir,
		Local: old.Local, Remote: old.Remote, Logical: old.Logical, Anchored: old.Anchored, State: sa.Established, Proposal: prop,
		NATLocal: old.NATLocal, NATRemote: old.NATRemote, LocalID: old.LocalID, RemoteID: old.RemoteID,
		Created: now, Established: now}
	if err := n.SetKeys(keys); err != nil {
		return nil, err
	}
	return n, nil
}

// IKERekeyR answers a peer's rekey of the IKE SA. Following RFC 7296
// 2.25.2 it answers TEMPORARY_FAILURE while a Child SA is being created,
// rekeyed or deleted by us, and while the IKE SA is being deleted or was
// rekeyed already; a crossing rekey of ours is a collision (IKERekeyI).
type IKERekeyR struct {
	notify *message.Notify
	chosen suite.Proposal
	ke     *suite.KeyExchange
	nonce  []byte
	ni     []byte
	next   *sa.IKESA
}

// Kind is KindIKERekey.
func (t *IKERekeyR) Kind() Kind { return KindIKERekey }

// Abort does nothing: nothing waits for the task.
func (t *IKERekeyR) Abort(error) {}

// String names the task in logs.
func (t *IKERekeyR) String() string { return "ike rekey (responder)" }

func (t *IKERekeyR) refuse(c *Ctx, r stats.Reason, n message.NotifyType, data []byte, format string, args ...any) Status {
	t.notify = &message.Notify{NotifyType: n, Data: data}
	if n == message.TemporaryFailure {
		c.Stats().Inc(stats.TemporaryFailures)
		c.Log.Info("IKE SA rekey answered with TEMPORARY_FAILURE", "why", fmt.Sprintf(format, args...))
		return Done
	}
	c.Stats().Fail(r)
	c.Log.Warn("IKE SA rekey refused", "reason", r.String(), "notify", n.String(), "err", fmt.Sprintf(format, args...))
	return Done
}

// busy says why the IKE SA cannot be rekeyed now, or "".
func busy(c *Ctx) string {
	ike := c.IKE
	switch ike.State {
	case sa.Rekeyed:
		return "the IKE SA is rekeyed already"
	case sa.Deleting:
		return "the IKE SA is being deleted"
	}
	for _, a := range c.Active {
		switch a.Kind() {
		case KindChildCreate, KindChildRekey, KindChildDelete:
			return fmt.Sprintf("our %s exchange is in flight", a.Kind())
		}
	}
	for _, ch := range ike.Children {
		if ch.State == sa.ChildCreating || ch.State == sa.ChildRekeying || ch.State == sa.ChildDeleting {
			return fmt.Sprintf("child sa %s is %s", ch.SPIs(), ch.State)
		}
	}
	return ""
}

// Process handles the request.
func (t *IKERekeyR) Process(c *Ctx, req *message.Message) Status {
	ike := c.IKE
	if why := busy(c); why != "" {
		return t.refuse(c, 0, message.TemporaryFailure, nil, "%s", why)
	}
	saP, _ := message.Find(req.Inner, message.PayloadSA).(*message.SA)
	nP, _ := message.Find(req.Inner, message.PayloadNonce).(*message.Nonce)
	keP, _ := message.Find(req.Inner, message.PayloadKE).(*message.KE)
	if saP == nil || nP == nil || keP == nil {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "IKE rekey without SA, Nonce and KE")
	}
	if len(nP.Data) < 16 || len(nP.Data) > 256 {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "nonce of %d bytes", len(nP.Data))
	}
	conn := c.Conn()
	if conn == nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "connection %q is no longer configured", ike.ConnName)
	}
	ours, err := IKEProposals(conn)
	if err != nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "%v", err)
	}
	chosen, err := suite.Select(ours, saP.Proposals, suite.SelectPolicy{KEGroup: keP.Group})
	if err != nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "no IKE proposal chosen: ours %s, offered %s",
			suite.FormatProposals(ours), suite.FormatProposals(saP.Proposals))
	}
	alg, err := chosen.Algorithms()
	if err != nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "chosen %s: %v", chosen, err)
	}
	if alg.Group != keP.Group {
		var d [2]byte
		binary.BigEndian.PutUint16(d[:], uint16(alg.Group))
		return t.refuse(c, stats.InvalidKE, message.InvalidKEPayload, d[:], "peer's KE is of group %s, we want %s", keP.Group, alg.Group)
	}
	if len(chosen.SPI) != 8 {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "IKE proposal with a %d-byte SPI", len(chosen.SPI))
	}
	spii := binary.BigEndian.Uint64(chosen.SPI)
	if c.Host == nil {
		return t.refuse(c, stats.InternalError, message.NoProposalChosen, nil, "no host for a new IKE SA")
	}
	spir, err := c.Host.NewIKESPI()
	if err != nil {
		return t.refuse(c, stats.InternalError, message.NoProposalChosen, nil, "%v", err)
	}
	if t.ke, err = c.KeyExchange(alg.Group); err != nil {
		return t.refuse(c, stats.InternalError, message.NoProposalChosen, nil, "key exchange %s: %v", alg.Group, err)
	}
	gir, err := t.ke.SharedSecret(keP.Data)
	if err != nil {
		return t.refuse(c, stats.InvalidKEData, message.InvalidSyntax, nil, "peer's KE: %v", err)
	}
	if t.nonce, err = c.random(NonceLen); err != nil {
		return t.refuse(c, stats.InternalError, message.NoProposalChosen, nil, "%v", err)
	}
	t.ni = append([]byte(nil), nP.Data...)
	if t.next, err = rekeyedIKE(c, false, spii, spir, chosen, alg, gir, t.ni, t.nonce); err != nil {
		return t.refuse(c, stats.InternalError, message.NoProposalChosen, nil, "%v", err)
	}
	var spi [8]byte
	binary.BigEndian.PutUint64(spi[:], spir)
	t.chosen = suite.WithSPI([]suite.Proposal{chosen}, spi[:])[0]
	return Done
}

// Build answers, and moves the Child SAs to the new IKE SA unless our own
// rekey is in flight (which then settles the collision).
func (t *IKERekeyR) Build(c *Ctx, resp *message.Message) Status {
	if t.notify != nil {
		resp.Inner = append(resp.Inner, t.notify)
		return Done
	}
	resp.Inner = append(resp.Inner, &message.SA{Proposals: []suite.Proposal{t.chosen}}, &message.Nonce{Data: t.nonce},
		&message.KE{Group: t.ke.Group(), Data: t.ke.PublicKey()})
	if a := activeIKERekey(c); a != nil && !a.concluded {
		a.passive, a.passiveNonce = t.next, lower(t.ni, t.nonce)
		c.Log.Info("IKE SA rekey collision: the peer rekeys the IKE SA we are rekeying", "peer_new_spis", t.next.SPIs())
		return Done
	}
	c.Host.ReplaceIKE(t.next, "rekeyed by peer")
	return Done
}
