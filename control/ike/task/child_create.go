package task

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"log/slog"
	"slices"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/ts"
)

// ChildCreateI creates a Child SA as initiator: inside IKE_AUTH for the
// first one (no KE, keys from the IKE SA's nonces), in CREATE_CHILD_SA for
// the others (own nonces, KE when the child asks for PFS). A rekey
// (ChildRekeyI) drives one with Replaces set.
type ChildCreateI struct {
	conn  *config.Conn
	child *config.Child
	done  func(error)

	// ReqID, when set, is used for the Child SA (a trap's or the reqid of
	// the Child SA it replaces).
	ReqID uint32
	// Replaces, when set, is the Child SA this one rekeys: the request
	// carries REKEY_SA and the old one's traffic selectors, and the new
	// Child SA is installed inbound only (ChildRekeyI decides about its
	// outbound SA).
	Replaces *sa.ChildSA

	spi       uint32
	proposals []suite.Proposal
	group     suite.GroupID
	ke        *suite.KeyExchange
	nonce     []byte
	peerNonce []byte
	tsi, tsr  []ipsec.Selector
	retries   int
	tempFails int
	finished  bool
	// notify is the error notify the peer answered, if any.
	notify message.NotifyType
}

// NewChildCreateI prepares the creation of a Child SA; done (may be nil)
// is called once with the outcome.
func NewChildCreateI(conn *config.Conn, child *config.Child, done func(error)) *ChildCreateI {
	return &ChildCreateI{conn: conn, child: child, done: done}
}

// Child returns the child configuration.
func (t *ChildCreateI) Child() *config.Child { return t.child }

// Kind is KindChildCreate.
func (t *ChildCreateI) Kind() Kind { return KindChildCreate }

func (t *ChildCreateI) finish(err error) {
	if t.finished {
		return
	}
	t.finished = true
	if t.done != nil {
		t.done(err)
	}
}

// Abort reports the failure of the IKE SA to whoever waits for the child.
func (t *ChildCreateI) Abort(err error) {
	if err == nil {
		err = errAborted
	}
	t.finish(err)
}

// lowerNonce is the lower of the exchange's two nonces, which decides
// rekey collisions (RFC 7296 2.8.1).
func (t *ChildCreateI) lowerNonce() []byte { return lower(t.nonce, t.peerNonce) }

func lower(a, b []byte) []byte {
	if bytes.Compare(a, b) <= 0 {
		return a
	}
	return b
}

// Build fills SA, TSi and TSr (and Nonce, KE in CREATE_CHILD_SA).
func (t *ChildCreateI) Build(c *Ctx, req *message.Message) error {
	ike := c.IKE
	inAuth := c.Exchange == message.IKEAuth
	if t.spi == 0 {
		spi, err := c.DataPlane().AllocSPI(ike.Local.Addr(), ike.Remote.Addr(), Anchor(ike))
		if err != nil {
			err = fmt.Errorf("child %q: allocate SPI: %w", t.child.Name, err)
			c.Stats().Fail(stats.DataPlane)
			t.finish(err)
			return err
		}
		t.spi = spi
	}
	ps, err := ESPProposals(t.conn, t.child)
	if err != nil {
		t.finish(err)
		return err
	}
	if inAuth {
		ps = suite.WithoutKE(ps)
	} else if t.group == suite.GroupNone && len(ps) > 0 && len(ps[0].Groups()) > 0 {
		t.group = ps[0].Groups()[0]
	}
	var spi [4]byte
	binary.BigEndian.PutUint32(spi[:], t.spi)
	t.proposals = suite.WithSPI(ps, spi[:])
	t.tsi = ts.FromConfig(t.child.LocalSelectors, ike.Local.Addr())
	t.tsr = ts.FromConfig(t.child.RemoteSelectors, ike.Remote.Addr())
	if old := t.Replaces; old != nil && !inAuth {
		// A rekey (RFC 7296 1.3.3, 2.8): the peer learns which Child SA the
		// new one replaces, and gets the selectors that one has.
		var o [4]byte
		binary.BigEndian.PutUint32(o[:], old.SPIIn)
		req.Inner = append(req.Inner, &message.Notify{Protocol: suite.ProtocolESP, SPI: o[:], NotifyType: message.RekeySA})
		if len(old.LocalTS) > 0 && len(old.RemoteTS) > 0 {
			t.tsi, t.tsr = old.LocalTS, old.RemoteTS
		}
	}
	req.Inner = append(req.Inner, &message.SA{Proposals: t.proposals})
	if !inAuth {
		if t.nonce, err = c.random(NonceLen); err != nil {
			t.finish(err)
			return err
		}
		req.Inner = append(req.Inner, &message.Nonce{Data: t.nonce})
		if t.group != suite.GroupNone {
			if t.ke, err = c.KeyExchange(t.group); err != nil {
				t.finish(err)
				return err
			}
			req.Inner = append(req.Inner, &message.KE{Group: t.group, Data: t.ke.PublicKey()})
		}
	}
	req.Inner = append(req.Inner, &message.TS{Selectors: t.tsi}, &message.TS{Responder: true, Selectors: t.tsr})
	return nil
}

func (t *ChildCreateI) fail(c *Ctx, r stats.Reason, format string, args ...any) Status {
	err := fmt.Errorf(format, args...)
	c.Stats().Fail(r)
	msg := "child sa failed"
	if t.Replaces != nil {
		msg = "child sa rekey failed"
	}
	c.Log.Warn(msg, "child", t.child.Name, "reason", r.String(), "err", err.Error())
	if c.Exchange == message.IKEAuth {
		// We keep no IKE SA without its first Child SA: delete it so that
		// both ends forget it now, not at the next liveness check.
		c.Queue(NewIKEDeleteI("first child sa failed"))
	}
	t.finish(fmt.Errorf("child %q: %w (%s)", t.child.Name, err, r))
	return Done
}

// Process handles the response: the chosen proposal, the narrowed
// selectors, then installation.
func (t *ChildCreateI) Process(c *Ctx, resp *message.Message) Status {
	ch, st := t.negotiate(c, resp)
	if ch == nil {
		return st
	}
	return t.install(c, ch, func(_ *sa.ChildSA, st Status) Status { return st })
}

// negotiate processes the response and makes the Child SA, for install
// to put into the data plane; it returns the Child SA, or nil with Done
// after a failure (logged, counted, t.notify set when the peer refused)
// or NeedMore to try again with another group.
func (t *ChildCreateI) negotiate(c *Ctx, resp *message.Message) (*sa.ChildSA, Status) {
	ike := c.IKE
	inAuth := c.Exchange == message.IKEAuth
	if inAuth && ike.State != sa.Established {
		err := fmt.Errorf("child %q: IKE SA not established", t.child.Name)
		if c.Failure != nil {
			err = c.Failure.Err
		}
		t.finish(err)
		return nil, Done
	}
	if n := errorNotify(resp.Inner); n != nil {
		t.notify = n.NotifyType
		switch n.NotifyType {
		case message.InvalidKEPayload:
			if !inAuth && len(n.Data) == 2 && t.retries < 2 {
				g := suite.GroupID(binary.BigEndian.Uint16(n.Data))
				offered := false
				for i := range t.proposals {
					offered = offered || t.proposals[i].Has(suite.TransformKE, uint16(g))
				}
				if offered && g != t.group {
					c.Stats().Fail(stats.InvalidKE)
					t.group, t.retries = g, t.retries+1
					t.notify = 0
					return nil, NeedMore
				}
			}
			return nil, t.fail(c, stats.InvalidKE, "peer answered INVALID_KE_PAYLOAD")
		case message.NoProposalChosen:
			return nil, t.fail(c, stats.NoProposalChosen, "peer answered NO_PROPOSAL_CHOSEN (we offered %s)", suite.FormatProposals(t.proposals))
		case message.TSUnacceptable:
			return nil, t.fail(c, stats.TSUnacceptable, "peer answered TS_UNACCEPTABLE (we proposed %s === %s)", ipsec.Selectors(t.tsi), ipsec.Selectors(t.tsr))
		case message.TemporaryFailure:
			if t.Replaces == nil && !inAuth && t.tempFails < maxTempFailRetries {
				// The peer is busy with a crossing exchange (RFC 7296
				// 2.25): try again a little later.
				t.tempFails++
				t.spi, t.notify = 0, 0
				at := c.Now().Add(RetryDelay(c.Rand()))
				c.Log.Info("child sa creation: peer answered TEMPORARY_FAILURE, retrying", "child", t.child.Name, "at", at.Format(time.RFC3339Nano))
				c.Stats().Inc(stats.RekeyRetries)
				c.QueueAt(t, at)
				return nil, Done
			}
			if t.Replaces != nil {
				c.Log.Info("child sa rekey: peer answered TEMPORARY_FAILURE", "child", t.child.Name)
				return nil, Done
			}
		case message.ChildSANotFound:
			if t.Replaces != nil {
				c.Log.Info("child sa rekey: peer answered CHILD_SA_NOT_FOUND", "child", t.child.Name,
					"spi_in", fmt.Sprintf("%08x", t.Replaces.SPIIn))
				return nil, Done
			}
		}
		return nil, t.fail(c, stats.PeerError, "peer answered %s", n.NotifyType)
	}
	saP, _ := message.Find(resp.Inner, message.PayloadSA).(*message.SA)
	tsiP, _ := message.Find(resp.Inner, message.PayloadTSi).(*message.TS)
	tsrP, _ := message.Find(resp.Inner, message.PayloadTSr).(*message.TS)
	if saP == nil || tsiP == nil || tsrP == nil {
		return nil, t.fail(c, stats.InvalidSyntax, "response without SA, TSi and TSr")
	}
	chosen, err := suite.CheckResponse(t.proposals, saP.Proposals)
	if err != nil {
		return nil, t.fail(c, stats.NoProposalChosen, "unacceptable proposal in the response: %v", err)
	}
	alg, err := chosen.Algorithms()
	if err != nil {
		return nil, t.fail(c, stats.NoProposalChosen, "chosen proposal %s: %v", chosen, err)
	}
	if len(chosen.SPI) != 4 {
		return nil, t.fail(c, stats.InvalidSyntax, "chosen proposal has a %d-byte SPI", len(chosen.SPI))
	}
	spiOut := binary.BigEndian.Uint32(chosen.SPI)
	if !ts.Subset(tsiP.Selectors, t.tsi) || !ts.Subset(tsrP.Selectors, t.tsr) {
		t.deletePeerSA(c, spiOut)
		return nil, t.fail(c, stats.TSUnacceptable, "peer widened the traffic selectors: got %s === %s, proposed %s === %s",
			ipsec.Selectors(tsiP.Selectors), ipsec.Selectors(tsrP.Selectors), ipsec.Selectors(t.tsi), ipsec.Selectors(t.tsr))
	}
	var ni, nr, gir []byte
	if inAuth {
		ni, nr = ike.Handshake().Ni, ike.Handshake().Nr
	} else {
		nP, _ := message.Find(resp.Inner, message.PayloadNonce).(*message.Nonce)
		if nP == nil {
			return nil, t.fail(c, stats.InvalidSyntax, "CREATE_CHILD_SA response without a nonce")
		}
		t.peerNonce = append([]byte(nil), nP.Data...)
		ni, nr = t.nonce, nP.Data
		if alg.Group != suite.GroupNone {
			keP, _ := message.Find(resp.Inner, message.PayloadKE).(*message.KE)
			if keP == nil || t.ke == nil || keP.Group != alg.Group || t.ke.Group() != alg.Group {
				t.deletePeerSA(c, spiOut)
				return nil, t.fail(c, stats.InvalidKE, "CREATE_CHILD_SA response: PFS group %s without a matching KE", alg.Group)
			}
			if gir, err = t.ke.SharedSecret(keP.Data); err != nil {
				t.deletePeerSA(c, spiOut)
				return nil, t.fail(c, stats.InvalidKEData, "peer's KE: %v", err)
			}
		}
	}
	keys, err := ike.Keys.ChildKeys(alg, gir, ni, nr)
	if err != nil {
		t.deletePeerSA(c, spiOut)
		return nil, t.fail(c, stats.InternalError, "key derivation: %v", err)
	}
	if t.Replaces != nil && t.ReqID == 0 {
		t.ReqID = t.Replaces.ReqID
	}
	ch := &sa.ChildSA{Name: t.child.Name, Initiator: true, SPIIn: t.spi, SPIOut: spiOut, Alg: alg, Keys: keys,
		LocalTS: ts.Share(tsiP.Selectors), RemoteTS: ts.Share(tsrP.Selectors),
		Encap: ike.NAT(), ReqID: t.ReqID}
	if t.Replaces != nil {
		ch.Replaces, ch.OutPending = t.Replaces.SPIIn, true
	}
	return ch, Done
}

// install puts the Child SA negotiate made into the data plane (inbound
// only for a rekey) and hands it to then (nil after a failure, logged,
// counted), whose status it returns. Where the exchange can wait
// (InstallAsync) the worker does not wait for the data plane: install
// returns Pending and then runs when the data plane answered; for an IKE
// SA that ended meanwhile, then never runs.
func (t *ChildCreateI) install(c *Ctx, ch *sa.ChildSA, then func(*sa.ChildSA, Status) Status) Status {
	finish := func(err error) Status {
		switch {
		case errors.Is(err, ErrIKEGone):
			t.finish(err)
			return Done
		case err != nil:
			t.deletePeerSA(c, ch.SPIOut)
			return then(nil, t.fail(c, stats.DataPlane, "%v", err))
		}
		c.IKE.Children = append(c.IKE.Children, ch)
		if t.Replaces == nil {
			logChild(c, ch, "child sa installed")
		}
		t.finish(nil)
		return then(ch, Done)
	}
	pending, err := InstallAsync(c, t.conn, t.child, ch, finish)
	if pending {
		return Pending
	}
	return finish(err)
}

// deletePeerSA tells the peer to drop a Child SA it installed but we did not.
func (t *ChildCreateI) deletePeerSA(c *Ctx, spiOut uint32) {
	if c.Exchange == message.IKEAuth {
		return // the IKE SA is deleted, and its Child SAs with it
	}
	c.Queue(&ChildDeleteI{spis: []uint32{t.spi}, reason: "not installed"})
}

func logChild(c *Ctx, ch *sa.ChildSA, msg string, more ...any) {
	// Its attributes are formatted before slog would drop the line: an
	// allocation-heavy part of each setup below -log-level info.
	if !c.Log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	suiteName, _ := DataPlaneSuite(ch.Alg)
	c.Log.With(more...).Info(msg, "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn), "spi_out", fmt.Sprintf("%08x", ch.SPIOut),
		"suite", suiteName, "local_ts", ipsec.Selectors(ch.LocalTS), "remote_ts", ipsec.Selectors(ch.RemoteTS), "reqid", ch.ReqID, "encap", ch.Encap)
}

// ChildCreateR creates a Child SA as responder: it picks the child
// configuration whose selectors overlap the proposed ones, narrows them,
// selects an ESP proposal and installs the Child SA before answering.
//
// Process takes the steps of strongSwan's child_create responder, each a
// method that either decides and lets the next one go on or refuses with
// the notify it names (in t.notify, sent by Build):
//
//	readRequest          the SA, TSi, TSr payloads (INVALID_SYNTAX)
//	refuseIKEProposal    an IKE SA rekey in disguise (NO_PROPOSAL_CHOSEN)
//	checkCrossing        a rekey or delete of the IKE SA in the way (TEMPORARY_FAILURE)
//	findRekeyed          the Child SA a REKEY_SA names (CHILD_SA_NOT_FOUND, TEMPORARY_FAILURE)
//	selectConfig         the children whose selectors overlap, narrowed (TS_UNACCEPTABLE)
//	selectProposal       the first child whose proposals agree (NO_PROPOSAL_CHOSEN)
//	exchangeKeys         the nonces and the PFS group's KE (INVALID_KE_PAYLOAD)
//	allocateSPI          our inbound SPI (NO_ADDITIONAL_SAS)
//	deriveKeys           KEYMAT (NO_ADDITIONAL_SAS)
//	install              the SAs and policy in the data plane (NO_ADDITIONAL_SAS;
//	                     in IKE_AUTH without waiting: Pending until the data plane answers)
//	adopt                the Child SA joins the IKE SA, a rekey's old one is marked
type ChildCreateR struct {
	// rekeyOf is the Child SA the peer rekeys (REKEY_SA), if any.
	rekeyOf   *sa.ChildSA
	notify    *message.Notify
	chosen    suite.Proposal
	nonce     []byte
	ke        *suite.KeyExchange
	tsi, tsr  []ipsec.Selector
	skip      bool
	installed *sa.ChildSA
}

// childRequest is what the steps of ChildCreateR.Process learn of a
// request and decide about it, step by step.
type childRequest struct {
	inAuth   bool
	sa       *message.SA
	tsi, tsr *message.TS
	ke       *message.KE
	nonce    *message.Nonce

	conn  *config.Conn
	cands []childCandidate
	// The child and proposal selected, and what follows from them.
	cc     *config.Child
	chosen suite.Proposal
	alg    suite.Algorithms
	spiOut uint32
	spiIn  uint32
	// ni and nr are the nonces the Child SA's keys come from (the IKE SA's
	// inside IKE_AUTH), gir the PFS shared secret.
	ni, nr, gir []byte
	keys        *suite.ChildKeys
}

// childCandidate is a child configuration whose selectors overlap the
// proposed ones, with the proposed selectors narrowed to it.
type childCandidate struct {
	cc       *config.Child
	tsi, tsr []ipsec.Selector
}

// Kind is KindChildCreate.
func (t *ChildCreateR) Kind() Kind { return KindChildCreate }

// Abort does nothing: a step that waits for the data plane learns of
// the IKE SA's end when it resumes (InstallAsync).
func (t *ChildCreateR) Abort(error) {}

// refuse answers with the notify n (data its data) and returns false, to
// end the steps of Process.
func (t *ChildCreateR) refuse(c *Ctx, r stats.Reason, n message.NotifyType, data []byte, format string, args ...any) bool {
	t.notify = &message.Notify{NotifyType: n, Data: data}
	c.Stats().Fail(r)
	c.Log.Warn("child sa failed", "reason", r.String(), "notify", n.String(), "err", fmt.Sprintf(format, args...))
	return false
}

// tempFail answers TEMPORARY_FAILURE: the request crosses an exchange
// that makes it impossible now; the peer tries again later. It returns
// false, to end the steps of Process.
func (t *ChildCreateR) tempFail(c *Ctx, why string) bool {
	t.notify = &message.Notify{NotifyType: message.TemporaryFailure}
	c.Stats().Inc(stats.TemporaryFailures)
	c.Log.Info("CREATE_CHILD_SA answered with TEMPORARY_FAILURE", "why", why)
	return false
}

// Process handles the request's SA, TSi, TSr (and Nonce, KE): the steps
// listed in ChildCreateR's doc, in order, until one refuses.
func (t *ChildCreateR) Process(c *Ctx, req *message.Message) Status {
	r, ok := t.readRequest(c, req)
	if !ok {
		return Done
	}
	if !r.inAuth && (!t.refuseIKEProposal(c, r) || !t.checkCrossing(c) || !t.findRekeyed(c, req)) {
		return Done
	}
	if !t.selectConfig(c, r) || !t.selectProposal(c, r) || !t.exchangeKeys(c, r) ||
		!t.allocateSPI(c, r) || !t.deriveKeys(c, r) {
		return Done
	}
	return t.install(c, r)
}

// readRequest finds the SA, TSi and TSr payloads (and KE, Nonce). Without
// them, IKE_AUTH makes a childless IKE SA (RFC 6023), and CREATE_CHILD_SA
// is refused with INVALID_SYNTAX. Nothing is answered for a Child SA in an
// IKE_AUTH that did not authenticate the peer.
func (t *ChildCreateR) readRequest(c *Ctx, req *message.Message) (*childRequest, bool) {
	r := &childRequest{inAuth: c.Exchange == message.IKEAuth}
	if r.inAuth && c.IKE.State != sa.Established {
		t.skip = true
		return nil, false
	}
	r.sa, _ = message.Find(req.Inner, message.PayloadSA).(*message.SA)
	r.tsi, _ = message.Find(req.Inner, message.PayloadTSi).(*message.TS)
	r.tsr, _ = message.Find(req.Inner, message.PayloadTSr).(*message.TS)
	if r.sa == nil || r.tsi == nil || r.tsr == nil {
		if r.inAuth {
			t.skip = true // childless IKE SA (RFC 6023)
			return nil, false
		}
		return nil, t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "CREATE_CHILD_SA without SA, TSi and TSr")
	}
	if !r.inAuth {
		r.ke, _ = message.Find(req.Inner, message.PayloadKE).(*message.KE)
		r.nonce, _ = message.Find(req.Inner, message.PayloadNonce).(*message.Nonce)
	}
	return r, true
}

// refuseIKEProposal refuses with NO_PROPOSAL_CHOSEN a CREATE_CHILD_SA whose
// SA payload proposes an IKE SA where a Child SA was expected (an IKE SA
// rekey comes without TSi and TSr and goes to IKERekeyR).
func (t *ChildCreateR) refuseIKEProposal(c *Ctx, r *childRequest) bool {
	if len(r.sa.Proposals) > 0 && r.sa.Proposals[0].Protocol == suite.ProtocolIKE {
		return t.refuse(c, stats.InvalidSyntax, message.NoProposalChosen, nil, "an IKE proposal where a Child SA was expected")
	}
	return true
}

// checkCrossing answers TEMPORARY_FAILURE to a CREATE_CHILD_SA that
// crosses a rekey or delete of the IKE SA (RFC 7296 2.25).
func (t *ChildCreateR) checkCrossing(c *Ctx) bool {
	switch {
	case c.IKE.State == sa.Rekeyed:
		return t.tempFail(c, "the IKE SA is rekeyed")
	case c.IKE.State == sa.Deleting:
		return t.tempFail(c, "the IKE SA is being deleted")
	case activeIKERekey(c) != nil:
		return t.tempFail(c, "we are rekeying the IKE SA")
	}
	return true
}

// findRekeyed finds the Child SA a REKEY_SA notify names (t.rekeyOf). A
// peer's Child SA rekey (RFC 7296 1.3.3) is answered as the creation of a
// Child SA of the same child: the new one shares the old one's reqid and
// policy (see Install), and holds its outbound SA back until the peer
// deletes the old one. It answers CHILD_SA_NOT_FOUND for a Child SA we do
// not have, NO_PROPOSAL_CHOSEN for a REKEY_SA of another protocol, and
// TEMPORARY_FAILURE while the Child SA is being deleted or is already
// rekeyed (RFC 7296 2.25); a crossing rekey of the same Child SA is
// answered as usual and noted for our own rekey to settle (ChildRekeyI).
func (t *ChildCreateR) findRekeyed(c *Ctx, req *message.Message) bool {
	ike := c.IKE
	n := message.FindNotify(req.Inner, message.RekeySA)
	if n == nil {
		return true
	}
	if n.Protocol != suite.ProtocolESP || len(n.SPI) != 4 {
		return t.refuse(c, stats.Unsupported, message.NoProposalChosen, nil, "REKEY_SA for protocol %s", n.Protocol)
	}
	spi := binary.BigEndian.Uint32(n.SPI)
	rekeyed := ike.ChildByOutSPI(spi)
	if rekeyed == nil || rekeyed.State == sa.ChildDeleted {
		var d [4]byte
		copy(d[:], n.SPI)
		t.notify = &message.Notify{Protocol: suite.ProtocolESP, SPI: d[:], NotifyType: message.ChildSANotFound}
		c.Log.Info("child sa rekey refused: no such child sa", "spi_out", fmt.Sprintf("%08x", spi))
		return false
	}
	switch rekeyed.State {
	case sa.ChildDeleting:
		return t.tempFail(c, fmt.Sprintf("we are deleting child sa %s", rekeyed.SPIs()))
	case sa.ChildRekeyed:
		prev := ike.Successor(rekeyed)
		if prev == nil || prev.Initiator || rekeyed.Redundant {
			return t.tempFail(c, fmt.Sprintf("child sa %s is already rekeyed", rekeyed.SPIs()))
		}
		// The peer rekeys the same Child SA a second time (seen with
		// peers whose collision handling has bugs): the newest
		// replacement is the one to use, the earlier one is
		// superseded (never sent through; it expires or the peer
		// deletes it).
		c.Log.Info("peer rekeys the child sa again; superseding its earlier replacement", "child", rekeyed.Name,
			"old_spi_in", hex8(rekeyed.SPIIn), "superseded_spi_in", hex8(prev.SPIIn))
		prev.Redundant, prev.State, prev.RekeyAt = true, sa.ChildRekeyed, time.Time{}
	}
	t.rekeyOf = rekeyed
	return true
}

// selectConfig lists the children of the connection whose selectors
// overlap the proposed ones (only the rekeyed Child SA's child for a
// rekey), with the proposed selectors narrowed to each: those that need no
// narrowing first (as strongSwan prefers the best match), then in
// configuration order. None: TS_UNACCEPTABLE; the connection gone from
// the configuration: NO_PROPOSAL_CHOSEN.
func (t *ChildCreateR) selectConfig(c *Ctx, r *childRequest) bool {
	ike := c.IKE
	r.conn = c.Conn()
	if r.conn == nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "connection %q is no longer configured", ike.ConnName)
	}
	var exact, narrowed []childCandidate
	for _, name := range r.conn.ChildOrder {
		ch := r.conn.Children[name]
		if t.rekeyOf != nil && name != t.rekeyOf.Name {
			continue
		}
		ni := ts.Narrow(r.tsi.Selectors, ts.FromConfig(ch.RemoteSelectors, ike.Remote.Addr()))
		nr := ts.Narrow(r.tsr.Selectors, ts.FromConfig(ch.LocalSelectors, ike.Local.Addr()))
		if len(ni) == 0 || len(nr) == 0 {
			continue
		}
		x := childCandidate{ch, ni, nr}
		if ts.Equal(ni, r.tsi.Selectors) && ts.Equal(nr, r.tsr.Selectors) {
			exact = append(exact, x)
		} else {
			narrowed = append(narrowed, x)
		}
	}
	r.cands = append(exact, narrowed...)
	if len(r.cands) == 0 {
		return t.refuse(c, stats.TSUnacceptable, message.TSUnacceptable, nil, "no child of %q accepts TSi %s TSr %s",
			r.conn.Name, ipsec.Selectors(r.tsi.Selectors), ipsec.Selectors(r.tsr.Selectors))
	}
	return true
}

// selectProposal picks the first candidate child whose ESP proposals agree
// with the offered ones (the KE group of the request's KE payload
// preferred, no KE inside IKE_AUTH); its narrowed selectors are the ones
// answered. NO_PROPOSAL_CHOSEN if none agrees or the chosen proposal makes
// no algorithms; INVALID_SYNTAX for an SPI that is not 4 bytes.
func (t *ChildCreateR) selectProposal(c *Ctx, r *childRequest) bool {
	pol := suite.SelectPolicy{SkipKE: r.inAuth}
	if r.ke != nil {
		pol.KEGroup = r.ke.Group
	}
	var oursAll []suite.Proposal
	for _, x := range r.cands {
		ours, err := ESPProposals(r.conn, x.cc)
		if err != nil {
			continue
		}
		// For the error only: the first list as it is (shared, so
		// clipped before another is appended).
		if oursAll == nil {
			oursAll = ours
		} else {
			oursAll = append(slices.Clip(oursAll), ours...)
		}
		p, err := suite.Select(ours, r.sa.Proposals, pol)
		if err != nil {
			continue
		}
		r.cc, r.chosen, t.tsi, t.tsr = x.cc, p, x.tsi, x.tsr
		break
	}
	if r.cc == nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "child %q: no ESP proposal chosen: ours %s, offered %s",
			r.cands[0].cc.Name, suite.FormatProposals(oursAll), suite.FormatProposals(r.sa.Proposals))
	}
	var err error
	if r.alg, err = r.chosen.Algorithms(); err != nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "child %q: chosen %s: %v", r.cc.Name, r.chosen, err)
	}
	if len(r.chosen.SPI) != 4 {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "proposal with a %d-byte SPI", len(r.chosen.SPI))
	}
	r.spiOut = binary.BigEndian.Uint32(r.chosen.SPI)
	return true
}

// exchangeKeys takes the nonces the Child SA's keys come from: the IKE
// SA's inside IKE_AUTH; in CREATE_CHILD_SA the peer's (INVALID_SYNTAX
// without one) and a fresh one of ours, and, when the chosen proposal has
// a PFS group, the Diffie-Hellman shared secret with the peer's KE. A KE
// of another group (or none) is answered INVALID_KE_PAYLOAD with the group
// we want (RFC 7296 1.3).
func (t *ChildCreateR) exchangeKeys(c *Ctx, r *childRequest) bool {
	if r.inAuth {
		r.ni, r.nr = c.IKE.Handshake().Ni, c.IKE.Handshake().Nr
		return true
	}
	if r.nonce == nil {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "CREATE_CHILD_SA without a nonce")
	}
	var err error
	if t.nonce, err = c.random(NonceLen); err != nil {
		return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "%v", err)
	}
	r.ni, r.nr = r.nonce.Data, t.nonce
	if r.alg.Group == suite.GroupNone {
		return true
	}
	if r.ke == nil || r.ke.Group != r.alg.Group {
		var d [2]byte
		binary.BigEndian.PutUint16(d[:], uint16(r.alg.Group))
		return t.refuse(c, stats.InvalidKE, message.InvalidKEPayload, d[:], "PFS group %s wanted", r.alg.Group)
	}
	if t.ke, err = c.KeyExchange(r.alg.Group); err != nil {
		return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "%v", err)
	}
	if r.gir, err = t.ke.SharedSecret(r.ke.Data); err != nil {
		return t.refuse(c, stats.InvalidKEData, message.InvalidSyntax, nil, "peer's KE: %v", err)
	}
	return true
}

// allocateSPI reserves our inbound SPI in the data plane;
// NO_ADDITIONAL_SAS if it cannot.
func (t *ChildCreateR) allocateSPI(c *Ctx, r *childRequest) bool {
	var err error
	if r.spiIn, err = c.DataPlane().AllocSPI(c.IKE.Local.Addr(), c.IKE.Remote.Addr(), Anchor(c.IKE)); err != nil {
		return t.refuse(c, stats.DataPlane, message.NoAdditionalSAs, nil, "allocate SPI: %v", err)
	}
	return true
}

// deriveKeys derives the Child SA's KEYMAT from SK_d (RFC 7296 2.17);
// NO_ADDITIONAL_SAS if it cannot.
func (t *ChildCreateR) deriveKeys(c *Ctx, r *childRequest) bool {
	var err error
	if r.keys, err = c.IKE.Keys.ChildKeys(r.alg, r.gir, r.ni, r.nr); err != nil {
		return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "key derivation: %v", err)
	}
	return true
}

// install puts the Child SA into the data plane (Install: nothing of it
// stays on failure) before the answer goes out, so that the peer's first
// packets find it; a rekey's outbound SA is held back. NO_ADDITIONAL_SAS
// if the data plane refuses; else the Child SA is adopted.
//
// The worker does not wait for the data plane (InstallAsync), in
// IKE_AUTH and CREATE_CHILD_SA alike: the step returns Pending, and the
// exchange is answered when the data plane is, as it would have been at
// once. A rekey's collision is settled in adopt against the state of
// that moment, which the manager keeps still meanwhile: it takes no
// response of ours (the peer answers our retransmission from its cache)
// and runs no Child SA timer of the IKE SA until the answer.
func (t *ChildCreateR) install(c *Ctx, r *childRequest) Status {
	rekeyed := t.rekeyOf
	ch := &sa.ChildSA{Name: r.cc.Name, Initiator: false, SPIIn: r.spiIn, SPIOut: r.spiOut, Alg: r.alg, Keys: r.keys,
		LocalTS: ts.Share(t.tsr), RemoteTS: ts.Share(t.tsi), Encap: c.IKE.NAT(), OutPending: rekeyed != nil}
	if rekeyed != nil {
		ch.Replaces, ch.ReqID = rekeyed.SPIIn, rekeyed.ReqID
	}
	finish := func(err error) Status {
		switch {
		case errors.Is(err, ErrIKEGone):
			// Nothing to answer: the manager drops the exchange.
		case err != nil:
			t.refuse(c, stats.DataPlane, message.NoAdditionalSAs, nil, "%v", err)
		default:
			t.adopt(c, r, ch)
		}
		return Done
	}
	pending, err := InstallAsync(c, r.conn, r.cc, ch, finish)
	if pending {
		return Pending
	}
	return finish(err)
}

// adopt makes the installed Child SA one of the IKE SA's, with the chosen
// proposal answered under our SPI. For a rekey, the old Child SA is marked
// replaced, unless we are rekeying it too: then our rekey settles the
// collision when its response arrives.
func (t *ChildCreateR) adopt(c *Ctx, r *childRequest, ch *sa.ChildSA) {
	ike := c.IKE
	var spi [4]byte
	binary.BigEndian.PutUint32(spi[:], r.spiIn)
	t.chosen = suite.WithSPI([]suite.Proposal{r.chosen}, spi[:])[0]
	ike.Children = append(ike.Children, ch)
	t.installed = ch
	rekeyed := t.rekeyOf
	if rekeyed == nil {
		logChild(c, ch, "child sa installed")
		return
	}
	if a := activeRekey(c, rekeyed); a != nil {
		// Both sides rekey it: our rekey settles which replacement
		// stays when its response arrives.
		a.notePassive(ch, lower(r.ni, r.nr))
		c.Log.Info("child sa rekey collision: the peer rekeys the child sa we are rekeying", "child", ch.Name,
			"old_spi_in", hex8(rekeyed.SPIIn), "peer_new_spi_in", hex8(ch.SPIIn))
	} else {
		// The peer replaces it; our own rekey timer must not race.
		rekeyed.State, rekeyed.RekeyAt = sa.ChildRekeyed, time.Time{}
	}
	logRekey(c, rekeyed, ch, "peer", "responder")
}

// Build answers with the chosen proposal and narrowed selectors, or the
// notify that says why not.
func (t *ChildCreateR) Build(c *Ctx, resp *message.Message) Status {
	switch {
	case t.skip:
	case t.notify != nil:
		resp.Inner = append(resp.Inner, t.notify)
	default:
		resp.Inner = append(resp.Inner, &message.SA{Proposals: []suite.Proposal{t.chosen}})
		if c.Exchange != message.IKEAuth {
			resp.Inner = append(resp.Inner, &message.Nonce{Data: t.nonce})
			if t.ke != nil {
				resp.Inner = append(resp.Inner, &message.KE{Group: t.ke.Group(), Data: t.ke.PublicKey()})
			}
		}
		resp.Inner = append(resp.Inner, &message.TS{Selectors: t.tsi}, &message.TS{Responder: true, Selectors: t.tsr})
	}
	return Done
}
