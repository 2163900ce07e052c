package task

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"github.com/spugate/spugate/ipsec"
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
		spi, err := c.DataPlane().AllocSPI(ike.Local.Addr(), ike.Remote.Addr())
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
	_, st := t.negotiate(c, resp)
	return st
}

// negotiate processes the response and installs the Child SA (inbound
// only for a rekey); it returns the Child SA, or nil with Done after a
// failure (logged, counted, t.notify set when the peer refused) or
// NeedMore to try again with another group.
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
	ni, nr := ike.Ni, ike.Nr
	var gir []byte
	if !inAuth {
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
		LocalTS: append([]ipsec.Selector(nil), tsiP.Selectors...), RemoteTS: append([]ipsec.Selector(nil), tsrP.Selectors...),
		Encap: ike.NAT(), ReqID: t.ReqID}
	if t.Replaces != nil {
		ch.Replaces, ch.OutPending = t.Replaces.SPIIn, true
	}
	if err := Install(c, t.conn, t.child, ch); err != nil {
		t.deletePeerSA(c, spiOut)
		return nil, t.fail(c, stats.DataPlane, "%v", err)
	}
	ike.Children = append(ike.Children, ch)
	if t.Replaces == nil {
		logChild(c, ch, "child sa installed")
	}
	t.finish(nil)
	return ch, Done
}

// deletePeerSA tells the peer to drop a Child SA it installed but we did not.
func (t *ChildCreateI) deletePeerSA(c *Ctx, spiOut uint32) {
	if c.Exchange == message.IKEAuth {
		return // the IKE SA is deleted, and its Child SAs with it
	}
	c.Queue(&ChildDeleteI{spis: []uint32{t.spi}, reason: "not installed"})
}

func logChild(c *Ctx, ch *sa.ChildSA, msg string, more ...any) {
	suiteName, _ := DataPlaneSuite(ch.Alg)
	c.Log.With(more...).Info(msg, "child", ch.Name, "child_id", ch.UniqueID, "spi_in", fmt.Sprintf("%08x", ch.SPIIn), "spi_out", fmt.Sprintf("%08x", ch.SPIOut),
		"suite", suiteName, "local_ts", ipsec.Selectors(ch.LocalTS), "remote_ts", ipsec.Selectors(ch.RemoteTS), "reqid", ch.ReqID, "encap", ch.Encap)
}

// ChildCreateR creates a Child SA as responder: it picks the child
// configuration whose selectors overlap the proposed ones, narrows them,
// selects an ESP proposal and installs the Child SA before answering.
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

func (t *ChildCreateR) Kind() Kind  { return KindChildCreate }
func (t *ChildCreateR) Abort(error) {}

func (t *ChildCreateR) refuse(c *Ctx, r stats.Reason, n message.NotifyType, data []byte, format string, args ...any) Status {
	t.notify = &message.Notify{NotifyType: n, Data: data}
	c.Stats().Fail(r)
	c.Log.Warn("child sa failed", "reason", r.String(), "notify", n.String(), "err", fmt.Sprintf(format, args...))
	return Done
}

// tempFail answers TEMPORARY_FAILURE: the request crosses an exchange
// that makes it impossible now; the peer tries again later.
func (t *ChildCreateR) tempFail(c *Ctx, why string) Status {
	t.notify = &message.Notify{NotifyType: message.TemporaryFailure}
	c.Stats().Inc(stats.TemporaryFailures)
	c.Log.Info("CREATE_CHILD_SA answered with TEMPORARY_FAILURE", "why", why)
	return Done
}

// Process handles the request's SA, TSi, TSr (and Nonce, KE).
func (t *ChildCreateR) Process(c *Ctx, req *message.Message) Status {
	ike := c.IKE
	inAuth := c.Exchange == message.IKEAuth
	if inAuth && ike.State != sa.Established {
		t.skip = true
		return Done
	}
	saP, _ := message.Find(req.Inner, message.PayloadSA).(*message.SA)
	tsiP, _ := message.Find(req.Inner, message.PayloadTSi).(*message.TS)
	tsrP, _ := message.Find(req.Inner, message.PayloadTSr).(*message.TS)
	if saP == nil || tsiP == nil || tsrP == nil {
		if inAuth {
			t.skip = true // childless IKE SA (RFC 6023)
			return Done
		}
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "CREATE_CHILD_SA without SA, TSi and TSr")
	}
	// A peer's Child SA rekey (REKEY_SA, RFC 7296 1.3.3) is answered as the
	// creation of a Child SA of the same child: the new one shares the old
	// one's reqid and policy (see Install), and holds its outbound SA back
	// until the peer deletes the old one. Requests that cross one of ours
	// follow RFC 7296 2.25: TEMPORARY_FAILURE while the IKE SA is being
	// rekeyed or deleted, or the Child SA deleted; a crossing rekey of the
	// same Child SA is answered as usual and noted for our own rekey to
	// settle (ChildRekeyI).
	var rekeyed *sa.ChildSA
	if !inAuth {
		if len(saP.Proposals) > 0 && saP.Proposals[0].Protocol == suite.ProtocolIKE {
			return t.refuse(c, stats.InvalidSyntax, message.NoProposalChosen, nil, "an IKE proposal where a Child SA was expected")
		}
		switch {
		case ike.State == sa.Rekeyed:
			return t.tempFail(c, "the IKE SA is rekeyed")
		case ike.State == sa.Deleting:
			return t.tempFail(c, "the IKE SA is being deleted")
		case activeIKERekey(c) != nil:
			return t.tempFail(c, "we are rekeying the IKE SA")
		}
		if n := message.FindNotify(req.Inner, message.RekeySA); n != nil {
			if n.Protocol != suite.ProtocolESP || len(n.SPI) != 4 {
				return t.refuse(c, stats.Unsupported, message.NoProposalChosen, nil, "REKEY_SA for protocol %s", n.Protocol)
			}
			spi := binary.BigEndian.Uint32(n.SPI)
			rekeyed = ike.ChildByOutSPI(spi)
			if rekeyed == nil || rekeyed.State == sa.ChildDeleted {
				var d [4]byte
				copy(d[:], n.SPI)
				t.notify = &message.Notify{Protocol: suite.ProtocolESP, SPI: d[:], NotifyType: message.ChildSANotFound}
				c.Log.Info("child sa rekey refused: no such child sa", "spi_out", fmt.Sprintf("%08x", spi))
				return Done
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
		}
	}
	conn := c.Conn()
	if conn == nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "connection %q is no longer configured", ike.ConnName)
	}
	// Candidates: children whose selectors overlap the proposed ones, those
	// that need no narrowing first (as strongSwan prefers the best match),
	// then in configuration order; the first whose proposals agree wins.
	type cand struct {
		cc       *config.Child
		tsi, tsr []ipsec.Selector
	}
	var exact, narrowed []cand
	for _, name := range conn.ChildOrder {
		ch := conn.Children[name]
		if rekeyed != nil && name != rekeyed.Name {
			continue
		}
		ni := ts.Narrow(tsiP.Selectors, ts.FromConfig(ch.RemoteSelectors, ike.Remote.Addr()))
		nr := ts.Narrow(tsrP.Selectors, ts.FromConfig(ch.LocalSelectors, ike.Local.Addr()))
		if len(ni) == 0 || len(nr) == 0 {
			continue
		}
		x := cand{ch, ni, nr}
		if ts.Equal(ni, tsiP.Selectors) && ts.Equal(nr, tsrP.Selectors) {
			exact = append(exact, x)
		} else {
			narrowed = append(narrowed, x)
		}
	}
	cands := append(exact, narrowed...)
	if len(cands) == 0 {
		return t.refuse(c, stats.TSUnacceptable, message.TSUnacceptable, nil, "no child of %q accepts TSi %s TSr %s",
			conn.Name, ipsec.Selectors(tsiP.Selectors), ipsec.Selectors(tsrP.Selectors))
	}
	pol := suite.SelectPolicy{SkipKE: inAuth}
	var keP *message.KE
	if !inAuth {
		keP, _ = message.Find(req.Inner, message.PayloadKE).(*message.KE)
		if keP != nil {
			pol.KEGroup = keP.Group
		}
	}
	var cc *config.Child
	var chosen suite.Proposal
	var oursAll []suite.Proposal
	for _, x := range cands {
		ours, err := ESPProposals(conn, x.cc)
		if err != nil {
			continue
		}
		oursAll = append(oursAll, ours...)
		p, err := suite.Select(ours, saP.Proposals, pol)
		if err != nil {
			continue
		}
		cc, chosen, t.tsi, t.tsr = x.cc, p, x.tsi, x.tsr
		break
	}
	if cc == nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "child %q: no ESP proposal chosen: ours %s, offered %s",
			cands[0].cc.Name, suite.FormatProposals(oursAll), suite.FormatProposals(saP.Proposals))
	}
	alg, err := chosen.Algorithms()
	if err != nil {
		return t.refuse(c, stats.NoProposalChosen, message.NoProposalChosen, nil, "child %q: chosen %s: %v", cc.Name, chosen, err)
	}
	if len(chosen.SPI) != 4 {
		return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "proposal with a %d-byte SPI", len(chosen.SPI))
	}
	spiOut := binary.BigEndian.Uint32(chosen.SPI)
	ni, nr := ike.Ni, ike.Nr
	var gir []byte
	if !inAuth {
		nP, _ := message.Find(req.Inner, message.PayloadNonce).(*message.Nonce)
		if nP == nil {
			return t.refuse(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "CREATE_CHILD_SA without a nonce")
		}
		if t.nonce, err = c.random(NonceLen); err != nil {
			return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "%v", err)
		}
		ni, nr = nP.Data, t.nonce
		if alg.Group != suite.GroupNone {
			if keP == nil || keP.Group != alg.Group {
				var d [2]byte
				binary.BigEndian.PutUint16(d[:], uint16(alg.Group))
				return t.refuse(c, stats.InvalidKE, message.InvalidKEPayload, d[:], "PFS group %s wanted", alg.Group)
			}
			if t.ke, err = c.KeyExchange(alg.Group); err != nil {
				return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "%v", err)
			}
			if gir, err = t.ke.SharedSecret(keP.Data); err != nil {
				return t.refuse(c, stats.InvalidKEData, message.InvalidSyntax, nil, "peer's KE: %v", err)
			}
		}
	}
	spiIn, err := c.DataPlane().AllocSPI(ike.Local.Addr(), ike.Remote.Addr())
	if err != nil {
		return t.refuse(c, stats.DataPlane, message.NoAdditionalSAs, nil, "allocate SPI: %v", err)
	}
	keys, err := ike.Keys.ChildKeys(alg, gir, ni, nr)
	if err != nil {
		return t.refuse(c, stats.InternalError, message.NoAdditionalSAs, nil, "key derivation: %v", err)
	}
	ch := &sa.ChildSA{Name: cc.Name, Initiator: false, SPIIn: spiIn, SPIOut: spiOut, Alg: alg, Keys: keys,
		LocalTS: t.tsr, RemoteTS: t.tsi, Encap: ike.NAT(), OutPending: rekeyed != nil}
	if rekeyed != nil {
		ch.Replaces, ch.ReqID = rekeyed.SPIIn, rekeyed.ReqID
	}
	if err := Install(c, conn, cc, ch); err != nil {
		return t.refuse(c, stats.DataPlane, message.NoAdditionalSAs, nil, "%v", err)
	}
	var spi [4]byte
	binary.BigEndian.PutUint32(spi[:], spiIn)
	t.chosen = suite.WithSPI([]suite.Proposal{chosen}, spi[:])[0]
	ike.Children = append(ike.Children, ch)
	t.installed = ch
	if rekeyed != nil {
		if a := activeRekey(c, rekeyed); a != nil {
			// Both sides rekey it: our rekey settles which replacement
			// stays when its response arrives.
			a.notePassive(ch, lower(ni, nr))
			c.Log.Info("child sa rekey collision: the peer rekeys the child sa we are rekeying", "child", ch.Name,
				"old_spi_in", hex8(rekeyed.SPIIn), "peer_new_spi_in", hex8(ch.SPIIn))
		} else {
			// The peer replaces it; our own rekey timer must not race.
			rekeyed.State, rekeyed.RekeyAt = sa.ChildRekeyed, time.Time{}
		}
		logRekey(c, rekeyed, ch, "peer", "responder")
		return Done
	}
	logChild(c, ch, "child sa installed")
	return Done
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
