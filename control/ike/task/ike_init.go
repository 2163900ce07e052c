package task

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/pki"
)

// maxInitRetries bounds the COOKIE and INVALID_KE_PAYLOAD retries of one
// IKE_SA_INIT, so that a peer cannot keep us retrying.
const maxInitRetries = 5

// proposalKey names a parsed proposal list: its protocol and text.
type proposalKey struct {
	proto suite.Protocol
	text  string
}

// maxParsedProposals bounds the cache of parsed proposals; configurations
// hold a few distinct proposal strings, and a reload that changes them
// many times over only stops the caching of new ones.
const maxParsedProposals = 1024

// parsed caches proposal lists by their text: the IKE_SA_INIT and the
// Child SA of every setup looked up their connection's proposals, and
// parsing them again each time was a few percent of what a setup
// allocated. The lists are shared and never modified (Select, WithSPI
// and WithoutKE build new ones).
var parsed struct {
	sync.RWMutex
	m map[proposalKey][]suite.Proposal
}

// parseProposals is suite.ParseProposals through the cache.
func parseProposals(proto suite.Protocol, text string) ([]suite.Proposal, error) {
	k := proposalKey{proto, text}
	parsed.RLock()
	ps, ok := parsed.m[k]
	parsed.RUnlock()
	if ok {
		return ps, nil
	}
	ps, err := suite.ParseProposals(proto, text)
	if err != nil {
		return nil, err
	}
	parsed.Lock()
	if parsed.m == nil {
		parsed.m = make(map[proposalKey][]suite.Proposal)
	}
	if len(parsed.m) < maxParsedProposals {
		parsed.m[k] = ps
	}
	parsed.Unlock()
	return ps, nil
}

// IKEProposals parses a connection's IKE proposals. The result is shared:
// the caller must not modify it.
func IKEProposals(conn *config.Conn) ([]suite.Proposal, error) {
	ps, err := parseProposals(suite.ProtocolIKE, strings.Join(conn.Proposals, ","))
	if err != nil {
		return nil, fmt.Errorf("connection %q: proposals: %w", conn.Name, err)
	}
	return ps, nil
}

// ESPProposals parses a child's ESP proposals. The result is shared: the
// caller must not modify it.
func ESPProposals(conn *config.Conn, child *config.Child) ([]suite.Proposal, error) {
	ps, err := parseProposals(suite.ProtocolESP, strings.Join(child.ESPProposals, ","))
	if err != nil {
		return nil, fmt.Errorf("connection %q: child %q: esp_proposals: %w", conn.Name, child.Name, err)
	}
	return ps, nil
}

// natHash is the NAT_DETECTION_SOURCE_IP we send: the real hash, or random
// bytes when the connection forces UDP encapsulation (encap=yes), which makes
// the peer see a NAT as strongSwan does.
func natSourceHash(c *Ctx, conn *config.Conn, spii, spir uint64, local netip.AddrPort) ([]byte, error) {
	if conn != nil && bool(conn.Encap) {
		return c.random(20)
	}
	h := message.NATDetectionHash(spii, spir, local)
	return h[:], nil
}

// detectNAT compares the NAT_DETECTION notifies of a message with the
// addresses it travelled between (RFC 7296 2.23). It reports nothing if the
// peer sent no NAT detection at all.
func detectNAT(ps []message.Payload, spii, spir uint64, local, remote netip.AddrPort) (localNAT, remoteNAT, present bool) {
	srcWant := message.NATDetectionHash(spii, spir, remote)
	dstWant := message.NATDetectionHash(spii, spir, local)
	srcSeen, srcMatch, dstSeen, dstMatch := false, false, false, false
	for _, p := range ps {
		n, ok := p.(*message.Notify)
		if !ok {
			continue
		}
		switch n.NotifyType {
		case message.NATDetectionSourceIP:
			srcSeen = true
			srcMatch = srcMatch || bytes.Equal(n.Data, srcWant[:])
		case message.NATDetectionDestinationIP:
			dstSeen = true
			dstMatch = dstMatch || bytes.Equal(n.Data, dstWant[:])
		}
	}
	if !srcSeen || !dstSeen {
		return false, false, false
	}
	return !dstMatch, !srcMatch, true
}

// IKEInitI is the initiator of IKE_SA_INIT: proposals, key exchange, nonce,
// NAT detection; it retries with a COOKIE or with the group the responder
// asks for in INVALID_KE_PAYLOAD.
type IKEInitI struct {
	conn      *config.Conn
	proposals []suite.Proposal
	group     suite.GroupID
	ke        *suite.KeyExchange
	nonce     []byte
	cookie    []byte
	retries   int
}

// NewIKEInitI prepares IKE_SA_INIT for a connection.
func NewIKEInitI(conn *config.Conn) (*IKEInitI, error) {
	ps, err := IKEProposals(conn)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 || len(ps[0].Groups()) == 0 {
		return nil, fmt.Errorf("connection %q: the first IKE proposal has no key exchange group", conn.Name)
	}
	return &IKEInitI{conn: conn, proposals: ps, group: ps[0].Groups()[0]}, nil
}

// Kind is KindIKEInit.
func (t *IKEInitI) Kind() Kind { return KindIKEInit }

// Abort does nothing: nothing waits for the task.
func (t *IKEInitI) Abort(error) {}

// Build fills the IKE_SA_INIT request.
func (t *IKEInitI) Build(c *Ctx, req *message.Message) error {
	ike := c.IKE
	var err error
	if t.nonce == nil {
		if t.nonce, err = c.random(NonceLen); err != nil {
			return err
		}
	}
	if t.ke == nil || t.ke.Group() != t.group {
		if t.ke, err = c.KeyExchange(t.group); err != nil {
			return fmt.Errorf("key exchange %s: %w", t.group, err)
		}
	}
	ike.Handshake().Ni = t.nonce
	// Room for every payload below (growing the slice: three
	// allocations per setup).
	req.Payloads = slices.Grow(req.Payloads, 8)
	if t.cookie != nil {
		req.Payloads = append(req.Payloads, &message.Notify{NotifyType: message.Cookie, Data: t.cookie})
	}
	src, err := natSourceHash(c, t.conn, ike.SPIi, 0, ike.Local)
	if err != nil {
		return err
	}
	dst := message.NATDetectionHash(ike.SPIi, 0, ike.Remote)
	req.Payloads = append(req.Payloads,
		&message.SA{Proposals: t.proposals},
		&message.KE{Group: t.group, Data: t.ke.PublicKey()},
		&message.Nonce{Data: t.nonce},
		&message.Notify{NotifyType: message.NATDetectionSourceIP, Data: src},
		&message.Notify{NotifyType: message.NATDetectionDestinationIP, Data: dst[:]},
	)
	req.Payloads = appendInitExtensions(req.Payloads, c, t.conn)
	return nil
}

// Process handles the IKE_SA_INIT response.
func (t *IKEInitI) Process(c *Ctx, resp *message.Message) Status {
	ike := c.IKE
	if n := message.FindNotify(resp.Payloads, message.Cookie); n != nil {
		if t.retries >= maxInitRetries || len(n.Data) < 1 || len(n.Data) > 64 {
			c.Fail(stats.PeerError, 0, "IKE_SA_INIT: giving up after %d COOKIE/INVALID_KE_PAYLOAD retries", t.retries)
			return Failed
		}
		t.cookie = append([]byte(nil), n.Data...)
		t.retries++
		c.Log.Info("IKE_SA_INIT: responder asks for a COOKIE, retrying")
		return Retry
	}
	if n := message.FindNotify(resp.Payloads, message.InvalidKEPayload); n != nil {
		if len(n.Data) != 2 {
			c.Fail(stats.InvalidSyntax, 0, "IKE_SA_INIT: INVALID_KE_PAYLOAD with %d bytes of data, want 2", len(n.Data))
			return Failed
		}
		g := suite.GroupID(binary.BigEndian.Uint16(n.Data))
		offered := false
		for i := range t.proposals {
			offered = offered || t.proposals[i].Has(suite.TransformKE, uint16(g))
		}
		switch {
		case !offered || !suite.GroupSupported(g):
			c.Fail(stats.InvalidKE, 0, "IKE_SA_INIT: peer asks for group %s, which we did not offer", g)
			return Failed
		case g == t.group:
			c.Fail(stats.InvalidKE, 0, "IKE_SA_INIT: peer refuses group %s although it asks for it", g)
			return Failed
		case t.retries >= maxInitRetries:
			c.Fail(stats.InvalidKE, 0, "IKE_SA_INIT: giving up after %d retries", t.retries)
			return Failed
		}
		c.Log.Info("IKE_SA_INIT: peer wants another key exchange group, retrying", "from", t.group, "to", g)
		c.Stats().Fail(stats.InvalidKE)
		t.group = g
		t.retries++
		return Retry
	}
	if n := errorNotify(resp.Payloads); n != nil {
		r := stats.PeerError
		if n.NotifyType == message.NoProposalChosen {
			r = stats.NoProposalChosen
		}
		c.Fail(r, 0, "IKE_SA_INIT: peer answered %s (we offered %s)", n.NotifyType, suite.FormatProposals(t.proposals))
		return Failed
	}
	saP, _ := message.Find(resp.Payloads, message.PayloadSA).(*message.SA)
	keP, _ := message.Find(resp.Payloads, message.PayloadKE).(*message.KE)
	nP, _ := message.Find(resp.Payloads, message.PayloadNonce).(*message.Nonce)
	if saP == nil || keP == nil || nP == nil {
		c.Fail(stats.InvalidSyntax, 0, "IKE_SA_INIT response without SA, KE and Nonce")
		return Failed
	}
	if resp.Header.SPIr == 0 {
		c.Fail(stats.InvalidSyntax, 0, "IKE_SA_INIT response with a zero responder SPI")
		return Failed
	}
	chosen, err := suite.CheckResponse(t.proposals, saP.Proposals)
	if err != nil {
		c.Fail(stats.NoProposalChosen, 0, "IKE_SA_INIT: unacceptable proposal in the response: %v", err)
		return Failed
	}
	alg, err := chosen.Algorithms()
	if err != nil {
		c.Fail(stats.NoProposalChosen, 0, "IKE_SA_INIT: chosen proposal %s: %v", chosen, err)
		return Failed
	}
	if alg.Group != t.group || keP.Group != t.group {
		c.Fail(stats.InvalidKE, 0, "IKE_SA_INIT: responder chose group %s with a KE of group %s, we sent %s", alg.Group, keP.Group, t.group)
		return Failed
	}
	gir, err := t.ke.SharedSecret(keP.Data)
	if err != nil {
		c.Fail(stats.InvalidKEData, 0, "IKE_SA_INIT: peer's KE: %v", err)
		return Failed
	}
	ike.SPIr = resp.Header.SPIr
	ike.Handshake().Nr = append([]byte(nil), nP.Data...)
	keys, err := suite.DeriveIKEKeys(alg, ike.Handshake().Ni, ike.Handshake().Nr, gir, ike.SPIi, ike.SPIr)
	if err != nil {
		c.Fail(stats.InternalError, 0, "IKE_SA_INIT: key derivation: %v", err)
		return Failed
	}
	if err := ike.SetKeys(keys); err != nil {
		c.Fail(stats.InternalError, 0, "%v", err)
		return Failed
	}
	ike.Proposal = chosen.Share()
	hs := ike.Handshake()
	hs.SigAuth, hs.PeerHashes, hs.PeerCertReq, hs.CertReqSeen = false, nil, nil, false
	frag := peerExtensions(c, resp.Payloads)
	ike.FragAccept = fragmentsAnnounced(t.conn)
	ike.FragSend = frag && fragmentsSent(t.conn)
	localNAT, remoteNAT, _ := detectNAT(resp.Payloads, ike.SPIi, ike.SPIr, ike.Local, ike.Remote)
	ike.NATLocal = localNAT || bool(t.conn.Encap)
	ike.NATRemote = remoteNAT
	if ike.NAT() {
		// Float to the NAT-T port for IKE_AUTH (RFC 7296 2.23).
		port := c.NATTPort
		ike.Local = netip.AddrPortFrom(ike.Local.Addr(), port)
		if ike.Remote.Port() == uint16(t.conn.RemotePort) {
			ike.Remote = netip.AddrPortFrom(ike.Remote.Addr(), port)
		}
	}
	if c.Log.Enabled(context.Background(), slog.LevelDebug) {
		c.Log.Debug("IKE_SA_INIT done", "proposal", chosen.String(), "nat_local", ike.NATLocal, "nat_remote", ike.NATRemote)
	}
	return Done
}

// FindConnByAddr returns the connections whose local and remote addresses
// allow a tunnel between local and remote, in configuration order.
func FindConnByAddr(cfg *config.Config, local, remote netip.Addr) []*config.Conn {
	var out []*config.Conn
	if cfg == nil {
		return nil
	}
	local, remote = local.Unmap(), remote.Unmap()
	for _, name := range cfg.Order {
		conn := cfg.Connections[name]
		if conn == nil {
			continue
		}
		if len(conn.Locals) > 0 {
			ok := false
			for _, a := range conn.Locals {
				ok = ok || a.Unmap() == local
			}
			if !ok {
				continue
			}
		}
		ok := false
		for _, p := range conn.Remotes {
			ok = ok || p.Contains(remote)
		}
		if ok {
			out = append(out, conn)
		}
	}
	return out
}

// IKEInitR is the responder of IKE_SA_INIT. The worker has already applied
// the COOKIE and half-open limits.
type IKEInitR struct {
	reject  *message.Notify
	chosen  suite.Proposal
	ke      *suite.KeyExchange
	conn    *config.Conn
	natSeen bool
	// The initiator's announcements, answered in kind.
	fragSeen, sigSeen bool
}

// Kind is KindIKEInit.
func (t *IKEInitR) Kind() Kind { return KindIKEInit }

// Abort does nothing: nothing waits for the task.
func (t *IKEInitR) Abort(error) {}

func (t *IKEInitR) rejectWith(c *Ctx, r stats.Reason, n message.NotifyType, data []byte, format string, args ...any) Status {
	t.reject = &message.Notify{NotifyType: n, Data: data}
	c.Fail(r, n, format, args...)
	return Reject
}

// Process handles the IKE_SA_INIT request.
func (t *IKEInitR) Process(c *Ctx, req *message.Message) Status {
	ike := c.IKE
	saP, _ := message.Find(req.Payloads, message.PayloadSA).(*message.SA)
	keP, _ := message.Find(req.Payloads, message.PayloadKE).(*message.KE)
	nP, _ := message.Find(req.Payloads, message.PayloadNonce).(*message.Nonce)
	if saP == nil || keP == nil || nP == nil {
		return t.rejectWith(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "IKE_SA_INIT request without SA, KE and Nonce")
	}
	conns := FindConnByAddr(c.Config(), ike.Local.Addr(), ike.Remote.Addr())
	if len(conns) == 0 {
		return t.rejectWith(c, stats.NoProposalChosen, message.NoProposalChosen, nil,
			"no connection for %s - %s", ike.Local.Addr(), ike.Remote.Addr())
	}
	// Proposals of the first connection that can agree with the peer;
	// IKE_AUTH picks the connection by identity among those with the
	// same addresses.
	var lastErr error
	var ours []suite.Proposal
	for _, conn := range conns {
		ps, err := IKEProposals(conn)
		if err != nil {
			lastErr = err
			continue
		}
		// For the error only: the first list as it is (shared, so
		// clipped before another is appended).
		if ours == nil {
			ours = ps
		} else {
			ours = append(slices.Clip(ours), ps...)
		}
		chosen, err := suite.Select(ps, saP.Proposals, suite.SelectPolicy{KEGroup: keP.Group})
		if err != nil {
			lastErr = err
			continue
		}
		if _, err := chosen.Algorithms(); err != nil {
			lastErr = err
			continue
		}
		t.chosen, t.conn = chosen, conn
		break
	}
	if t.conn == nil {
		return t.rejectWith(c, stats.NoProposalChosen, message.NoProposalChosen, nil,
			"no IKE proposal chosen: ours %s, offered %s: %v", suite.FormatProposals(ours), suite.FormatProposals(saP.Proposals), lastErr)
	}
	ike.ConnName = t.conn.Name
	alg, _ := t.chosen.Algorithms()
	if alg.Group != keP.Group {
		var d [2]byte
		binary.BigEndian.PutUint16(d[:], uint16(alg.Group))
		c.Stats().Fail(stats.InvalidKE)
		t.reject = &message.Notify{NotifyType: message.InvalidKEPayload, Data: d[:]}
		c.Log.Info("IKE_SA_INIT: peer's KE is of another group, asking for ours", "peer_group", keP.Group.String(), "group", alg.Group.String())
		return Reject
	}
	// Checked before we make a key pair: a flood of bad KE data must not
	// cost an exponentiation each.
	if err := suite.CheckPeerKE(alg.Group, keP.Data); err != nil {
		return t.rejectWith(c, stats.InvalidKEData, message.InvalidSyntax, nil, "peer's KE: %v", err)
	}
	var err error
	if t.ke, err = c.KeyExchange(alg.Group); err != nil {
		return t.rejectWith(c, stats.InternalError, message.NoProposalChosen, nil, "key exchange %s: %v", alg.Group, err)
	}
	gir, err := t.ke.SharedSecret(keP.Data)
	if err != nil {
		return t.rejectWith(c, stats.InvalidKEData, message.InvalidSyntax, nil, "peer's KE: %v", err)
	}
	if len(nP.Data) < 16 || len(nP.Data) > 256 {
		return t.rejectWith(c, stats.InvalidSyntax, message.InvalidSyntax, nil, "nonce of %d bytes", len(nP.Data))
	}
	ike.Handshake().Ni = append([]byte(nil), nP.Data...)
	if ike.Handshake().Nr, err = c.random(NonceLen); err != nil {
		return t.rejectWith(c, stats.InternalError, message.NoProposalChosen, nil, "%v", err)
	}
	keys, err := suite.DeriveIKEKeys(alg, ike.Handshake().Ni, ike.Handshake().Nr, gir, ike.SPIi, ike.SPIr)
	if err != nil {
		return t.rejectWith(c, stats.InternalError, message.NoProposalChosen, nil, "key derivation: %v", err)
	}
	if err := ike.SetKeys(keys); err != nil {
		return t.rejectWith(c, stats.InternalError, message.NoProposalChosen, nil, "%v", err)
	}
	ike.Proposal = t.chosen.Share()
	t.fragSeen = peerExtensions(c, req.Payloads)
	t.sigSeen = ike.Handshake().SigAuth
	ike.FragAccept = t.fragSeen && fragmentsAnnounced(t.conn)
	ike.FragSend = ike.FragAccept && fragmentsSent(t.conn)
	localNAT, remoteNAT, seen := detectNAT(req.Payloads, ike.SPIi, 0, ike.Local, ike.Remote)
	t.natSeen = seen
	ike.NATLocal = localNAT || (seen && bool(t.conn.Encap))
	ike.NATRemote = remoteNAT
	return Done
}

// Build fills the IKE_SA_INIT response.
func (t *IKEInitR) Build(c *Ctx, resp *message.Message) Status {
	if t.reject != nil {
		resp.Payloads = append(resp.Payloads, t.reject)
		return Reject
	}
	ike := c.IKE
	// Room for every payload below: growing the slice as they are
	// appended was three allocations per setup.
	resp.Payloads = slices.Grow(resp.Payloads, 8)
	resp.Payloads = append(resp.Payloads,
		&message.SA{Proposals: []suite.Proposal{t.chosen}},
		&message.KE{Group: t.ke.Group(), Data: t.ke.PublicKey()},
		&message.Nonce{Data: ike.Handshake().Nr},
	)
	if cr := certReq(c, t.conn); cr != nil {
		resp.Payloads = append(resp.Payloads, cr)
	}
	if t.natSeen {
		src, err := natSourceHash(c, t.conn, ike.SPIi, ike.SPIr, ike.Local)
		if err != nil {
			c.Fail(stats.InternalError, 0, "%v", err)
			return Failed
		}
		dst := message.NATDetectionHash(ike.SPIi, ike.SPIr, ike.Remote)
		resp.Payloads = append(resp.Payloads,
			&message.Notify{NotifyType: message.NATDetectionSourceIP, Data: src},
			&message.Notify{NotifyType: message.NATDetectionDestinationIP, Data: dst[:]})
	}
	// RFC 7427 and RFC 7383: a responder announces what the initiator did.
	if t.sigSeen {
		resp.Payloads = append(resp.Payloads, &message.Notify{NotifyType: message.SignatureHashAlgorithms, Data: pki.HashAlgorithmsNotify()})
	}
	if ike.FragAccept {
		resp.Payloads = append(resp.Payloads, &message.Notify{NotifyType: message.IKEv2FragmentationSupported})
	}
	return Done
}

var errAborted = errors.New("IKE SA gone")
