package task

import (
	"bytes"
	"github.com/spugate/spugate/ipsec"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/ts"
)

// IKEAuthI is the initiator of IKE_AUTH (RFC 7296 2.15), with a pre-shared
// key or a certificate (ike_cert.go): IDi, CERT+, CERTREQ, IDr when the
// peer's identity is configured, AUTH, and INITIAL_CONTACT when we hold no
// other IKE SA with the peer.
type IKEAuthI struct {
	conn *config.Conn
	id   *config.Identity
}

// NewIKEAuthI prepares IKE_AUTH for a connection.
func NewIKEAuthI(conn *config.Conn) *IKEAuthI { return &IKEAuthI{conn: conn} }

// As makes IKE_AUTH authenticate as id rather than the connection's local
// identity (PSK only: a load run's IKE SAs each have an identity of their
// own, as load-tester's initiator_id gives them).
func (t *IKEAuthI) As(id config.Identity) { t.id = &id }

// local is the identity we authenticate as.
func (t *IKEAuthI) local() config.Identity {
	if t.id != nil {
		return *t.id
	}
	return t.conn.Local.Identity
}

// Kind is KindIKEAuth.
func (t *IKEAuthI) Kind() Kind { return KindIKEAuth }

// Abort does nothing: nothing waits for the task.
func (t *IKEAuthI) Abort(error) {}

// Build fills the IKE_AUTH request's authentication payloads: with a
// pre-shared key or our certificate (local auth), and a CERTREQ when the
// peer authenticates with a certificate (remote auth).
func (t *IKEAuthI) Build(c *Ctx, req *message.Message) error {
	ike := c.IKE
	local, remote := t.local(), t.conn.Remote.Identity
	idi := IDPayload(false, local)
	var auth *message.Auth
	var certs []message.Payload
	if t.conn.Local.Method.PubKey() {
		var err error
		if certs, auth, err = signAuth(c, t.conn, idi.Body()); err != nil {
			return err
		}
	} else {
		secret, ok := c.Config().LookupPSK(local, remote.Type, remote.Data)
		if !ok {
			c.Fail(stats.NoPSK, 0, "no pre-shared key for %s - %s", local, remote)
			return c.Failure.Err
		}
		hs := ike.Handshake()
		data, err := ike.Keys.PSKAuth(true, secret.Key(), hs.InitI, hs.Nr, idi.Body())
		if err != nil {
			return err
		}
		auth = &message.Auth{Method: message.AuthSharedKeyMIC, Data: data}
		ike.AuthLocal = "psk"
	}
	ike.LocalID = local
	req.Inner = append(req.Inner, idi)
	req.Inner = append(req.Inner, certs...)
	if !c.HasOtherIKESA(ike) {
		req.Inner = append(req.Inner, &message.Notify{NotifyType: message.InitialContact})
	}
	if cr := certReq(c, t.conn); cr != nil {
		req.Inner = append(req.Inner, cr)
	}
	if !remote.Any() && !bytes.Contains(remote.Data, []byte("*")) {
		// IDr says whom we want to talk to; a pattern is no identity.
		req.Inner = append(req.Inner, IDPayload(true, remote))
	}
	req.Inner = append(req.Inner, auth)
	return nil
}

// Process authenticates the responder.
func (t *IKEAuthI) Process(c *Ctx, resp *message.Message) Status {
	ike := c.IKE
	idr, _ := message.Find(resp.Inner, message.PayloadIDr).(*message.ID)
	auth, _ := message.Find(resp.Inner, message.PayloadAUTH).(*message.Auth)
	if idr == nil || auth == nil {
		if n := errorNotify(resp.Inner); n != nil {
			r := stats.PeerError
			if n.NotifyType == message.AuthenticationFailed {
				r = stats.AuthFailed
			}
			c.Fail(r, 0, "IKE_AUTH: peer answered %s", n.NotifyType)
			return Failed
		}
		c.Fail(stats.InvalidSyntax, message.AuthenticationFailed, "IKE_AUTH response without IDr and AUTH")
		return Failed
	}
	peer := WireIdentity(idr)
	if !t.conn.Remote.Identity.Matches(uint8(idr.IDType), idr.Data) {
		c.Fail(stats.PeerIDMismatch, message.AuthenticationFailed,
			"IKE_AUTH: peer identity %s does not match the configured %s", peer, t.conn.Remote.Identity)
		return Failed
	}
	if t.conn.Remote.Method.PubKey() {
		if r, err := verifyAuth(c, t.conn, idr, auth, resp.Inner); err != nil {
			authFailed(c, t.conn, peer, r, err)
			return Failed
		}
	} else {
		if auth.Method != message.AuthSharedKeyMIC {
			c.Fail(stats.AuthFailed, message.AuthenticationFailed, "IKE_AUTH: peer %s authenticates with %s; connection %q wants a pre-shared key", peer, auth.Method, t.conn.Name)
			return Failed
		}
		secret, ok := c.Config().LookupPSK(t.local(), uint8(idr.IDType), idr.Data)
		if !ok {
			c.Fail(stats.NoPSK, message.AuthenticationFailed, "IKE_AUTH: no pre-shared key for %s - %s", t.local(), peer)
			return Failed
		}
		hs := ike.Handshake()
		if !ike.Keys.VerifyPSK(false, secret.Key(), hs.InitR, hs.Ni, idr.Body(), auth.Data) {
			c.Fail(stats.AuthFailed, message.AuthenticationFailed, "IKE_AUTH: authentication of %s with a pre-shared key failed (PSK mismatch)", peer)
			return Failed
		}
		ike.AuthRemote = "psk"
	}
	ike.RemoteID = sameIdentity(peer, t.conn.Remote.Identity)
	ike.State = sa.Established
	ike.Established = c.Now()
	if message.FindNotify(resp.Inner, message.InitialContact) != nil {
		// A responder that restarted may say so too (RFC 7296 3.16).
		c.InitialContact(ike)
	}
	return Done
}

// IKEAuthR is the responder of IKE_AUTH: it picks the connection by the
// peer's identity, verifies the AUTH and authenticates us.
type IKEAuthR struct {
	conn   *config.Conn
	failed bool
	// ours are our IDr, CERT and AUTH payloads, made in Process so that a
	// failure to sign stops the exchange before a Child SA is made.
	ours []message.Payload
}

// Kind is KindIKEAuth.
func (t *IKEAuthR) Kind() Kind { return KindIKEAuth }

// Abort does nothing: nothing waits for the task.
func (t *IKEAuthR) Abort(error) {}

func (t *IKEAuthR) fail(c *Ctx, r stats.Reason, format string, args ...any) Status {
	t.failed = true
	c.Fail(r, message.AuthenticationFailed, format, args...)
	return Failed
}

// Process authenticates the initiator.
func (t *IKEAuthR) Process(c *Ctx, req *message.Message) Status {
	ike := c.IKE
	idi, _ := message.Find(req.Inner, message.PayloadIDi).(*message.ID)
	auth, _ := message.Find(req.Inner, message.PayloadAUTH).(*message.Auth)
	idr, _ := message.Find(req.Inner, message.PayloadIDr).(*message.ID)
	if idi == nil || auth == nil {
		// EAP (no AUTH) is not supported.
		return t.fail(c, stats.Unsupported, "IKE_AUTH request without IDi and AUTH (EAP is not supported)")
	}
	peer := WireIdentity(idi)
	// Among the connections that accept the addresses and identities, the
	// first whose children accept the proposed traffic selectors wins:
	// several connections between the same gateways differ only by them.
	tsiP, _ := message.Find(req.Inner, message.PayloadTSi).(*message.TS)
	tsrP, _ := message.Find(req.Inner, message.PayloadTSr).(*message.TS)
	for _, conn := range FindConnByAddr(c.Config(), ike.Local.Addr(), ike.Remote.Addr()) {
		if conn.Remote == nil || conn.Local == nil || !conn.Remote.Identity.Matches(uint8(idi.IDType), idi.Data) {
			continue
		}
		if idr != nil && !(uint8(idr.IDType) == conn.Local.Identity.Type && bytes.Equal(idr.Data, conn.Local.Identity.Data)) {
			continue
		}
		if t.conn == nil {
			t.conn = conn
		}
		if tsiP == nil || tsrP == nil || acceptsTS(conn, ike, tsiP.Selectors, tsrP.Selectors) {
			t.conn = conn
			break
		}
	}
	if t.conn == nil {
		want := ""
		if idr != nil {
			want = " asking for " + WireIdentity(idr).String()
		}
		return t.fail(c, stats.PeerIDMismatch, "IKE_AUTH: no connection for peer identity %s%s from %s", peer, want, ike.Remote.Addr())
	}
	ike.ConnName = t.conn.Name
	for _, p := range req.Inner {
		if cr, ok := p.(*message.CertReq); ok {
			readCertReq(c, cr)
		}
	}
	if t.conn.Remote.Method.PubKey() {
		if r, err := verifyAuth(c, t.conn, idi, auth, req.Inner); err != nil {
			t.failed = true
			authFailed(c, t.conn, peer, r, err)
			return Failed
		}
	} else {
		if auth.Method != message.AuthSharedKeyMIC {
			return t.fail(c, stats.AuthFailed, "IKE_AUTH: peer %s authenticates with %s; connection %q wants a pre-shared key", peer, auth.Method, t.conn.Name)
		}
		secret, ok := c.Config().LookupPSK(t.conn.Local.Identity, uint8(idi.IDType), idi.Data)
		if !ok {
			return t.fail(c, stats.NoPSK, "IKE_AUTH: no pre-shared key for %s - %s", t.conn.Local.Identity, peer)
		}
		hs := ike.Handshake()
		if !ike.Keys.VerifyPSK(true, secret.Key(), hs.InitI, hs.Nr, idi.Body(), auth.Data) {
			return t.fail(c, stats.AuthFailed, "IKE_AUTH: authentication of %s with a pre-shared key failed (PSK mismatch)", peer)
		}
		ike.AuthRemote = "psk"
	}
	ike.LocalID = t.conn.Local.Identity
	ike.RemoteID = sameIdentity(peer, t.conn.Remote.Identity)
	if st := t.authenticate(c); st != Done {
		return st
	}
	ike.State = sa.Established
	ike.Established = c.Now()
	if message.FindNotify(req.Inner, message.InitialContact) != nil {
		c.InitialContact(ike)
	}
	return Done
}

// Build authenticates us, or answers AUTHENTICATION_FAILED.
func (t *IKEAuthR) Build(c *Ctx, resp *message.Message) Status {
	if t.failed {
		resp.Inner = append(resp.Inner, &message.Notify{NotifyType: message.AuthenticationFailed})
		return Failed
	}
	resp.Inner = append(resp.Inner, t.ours...)
	return Done
}

// authenticate makes our IDr, CERT and AUTH payloads.
func (t *IKEAuthR) authenticate(c *Ctx) Status {
	ike := c.IKE
	idr := IDPayload(true, t.conn.Local.Identity)
	if t.conn.Local.Method.PubKey() {
		certs, auth, err := signAuth(c, t.conn, idr.Body())
		if err != nil {
			t.failed = true
			return Failed
		}
		t.ours = append(append([]message.Payload{idr}, certs...), auth)
		return Done
	}
	secret, ok := c.Config().LookupPSK(t.conn.Local.Identity, ike.RemoteID.Type, ike.RemoteID.Data)
	if !ok {
		return t.fail(c, stats.NoPSK, "IKE_AUTH: no pre-shared key for %s - %s", t.conn.Local.Identity, ike.RemoteID)
	}
	hs := ike.Handshake()
	auth, err := ike.Keys.PSKAuth(false, secret.Key(), hs.InitR, hs.Ni, idr.Body())
	if err != nil {
		return t.fail(c, stats.InternalError, "IKE_AUTH: %v", err)
	}
	ike.AuthLocal = "psk"
	t.ours = []message.Payload{idr, &message.Auth{Method: message.AuthSharedKeyMIC, Data: auth}}
	return Done
}

// acceptsTS reports whether a child of conn accepts the selectors.
func acceptsTS(conn *config.Conn, ike *sa.IKESA, tsi, tsr []ipsec.Selector) bool {
	for _, cc := range conn.Children {
		if len(ts.Narrow(tsi, ts.FromConfig(cc.RemoteSelectors, ike.Remote.Addr()))) > 0 &&
			len(ts.Narrow(tsr, ts.FromConfig(cc.LocalSelectors, ike.Local.Addr()))) > 0 {
			return true
		}
	}
	return false
}

// signedOctets are the octets the AUTH payload of one side of ike signs
// (initiator: its IKE_SA_INIT and the responder's nonce; responder: the
// other way round), for that side's ID payload body.
func signedOctets(ike *sa.IKESA, initiator bool, idBody []byte) ([]byte, error) {
	hs := ike.Handshake()
	if initiator {
		return ike.Keys.SignedOctets(true, hs.InitI, hs.Nr, idBody)
	}
	return ike.Keys.SignedOctets(false, hs.InitR, hs.Ni, idBody)
}
