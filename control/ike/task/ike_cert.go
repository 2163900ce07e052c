package task

import (
	"errors"
	"fmt"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/pki"
)

// Certificate authentication (RFC 7296 2.15 with signatures, RFC 7427,
// RFC 4945) and the IKE_SA_INIT extensions it and fragmentation need, in
// the manner of strongSwan's ike_cert_pre/ike_cert_post and
// pubkey_authenticator:
//
//	IKE_SA_INIT  both: N(SIGNATURE_HASH_ALGORITHMS) (the responder only if
//	             the initiator sent one), N(IKEV2_FRAGMENTATION_SUPPORTED)
//	             (the responder only if the initiator sent one);
//	             responder: CERTREQ naming the CAs its connection trusts.
//	IKE_AUTH     initiator: IDi, CERT+, CERTREQ, [IDr], AUTH;
//	             responder: IDr, CERT+, AUTH.
//
// CERT payloads follow send_cert (ifasked: when the peer sent a CERTREQ)
// and carry the credential and chain pki.SelectCredential picks for the
// peer's CERTREQ. The signature scheme is pki.ChooseScheme's from the
// peer's hashes. A peer's AUTH is verified with pki: chain, identity,
// revocation (Store.VerifyPeer), then the signature (Verify) under the
// schemes the remote round accepts. Every refusal is counted and logged
// with pki's reason, and answered with AUTHENTICATION_FAILED.

// maxCertReqHashes bounds the CA hashes kept from a peer's CERTREQs.
const maxCertReqHashes = pki.MaxCertReqHashes

// fragmentsAnnounced reports whether a connection announces RFC 7383.
func fragmentsAnnounced(conn *config.Conn) bool {
	return conn != nil && conn.Fragmentation != "no"
}

// fragmentsSent reports whether a connection fragments its messages when
// the peer supports it (accept only reassembles).
func fragmentsSent(conn *config.Conn) bool {
	return conn != nil && (conn.Fragmentation == "yes" || conn.Fragmentation == "force")
}

// signatureAuth reports whether we use RFC 7427 (signature_authentication).
func signatureAuth(c *Ctx) bool {
	cfg := c.Config()
	return cfg == nil || cfg.SignatureAuthentication == nil || bool(*cfg.SignatureAuthentication)
}

// appendInitExtensions appends to ps the notifies our IKE_SA_INIT request
// carries.
func appendInitExtensions(ps []message.Payload, c *Ctx, conn *config.Conn) []message.Payload {
	if signatureAuth(c) {
		ps = append(ps, &message.Notify{NotifyType: message.SignatureHashAlgorithms, Data: pki.HashAlgorithmsNotify()})
	}
	if fragmentsAnnounced(conn) {
		ps = append(ps, &message.Notify{NotifyType: message.IKEv2FragmentationSupported})
	}
	return ps
}

// peerExtensions records what the peer's IKE_SA_INIT announced: its
// signature hashes, fragmentation support and (in a response) its CERTREQs.
// It reports whether the peer announced fragmentation.
func peerExtensions(c *Ctx, ps []message.Payload) (frag bool) {
	ike := c.IKE
	for _, p := range ps {
		switch p := p.(type) {
		case *message.Notify:
			switch p.NotifyType {
			case message.SignatureHashAlgorithms:
				if !signatureAuth(c) {
					continue
				}
				hs, err := pki.ParseHashAlgorithms(p.Data)
				if err != nil {
					c.Log.Info("IKE_SA_INIT: ignoring the peer's SIGNATURE_HASH_ALGORITHMS", "err", err.Error())
					continue
				}
				ike.Handshake().SigAuth, ike.Handshake().PeerHashes = true, hs
			case message.IKEv2FragmentationSupported:
				frag = true
			}
		case *message.CertReq:
			readCertReq(c, p)
		}
	}
	return frag
}

// readCertReq records the CAs a CERTREQ payload names.
func readCertReq(c *Ctx, p *message.CertReq) {
	st := c.IKE.Handshake()
	st.CertReqSeen = true
	if p.Encoding != message.CertX509Signature {
		return
	}
	hs, err := pki.ParseCertReq(p.Data)
	if err != nil {
		c.Log.Info("ignoring a malformed CERTREQ", "err", err.Error())
		return
	}
	for _, h := range hs {
		if len(st.PeerCertReq) >= maxCertReqHashes {
			return
		}
		st.PeerCertReq = append(st.PeerCertReq, h)
	}
}

// certReq is the CERTREQ we send for a connection whose peer authenticates
// with a certificate, nil if none is due.
func certReq(c *Ctx, conn *config.Conn) *message.CertReq {
	cfg := c.Config()
	if conn == nil || conn.Remote == nil || !conn.Remote.Method.PubKey() || cfg == nil || cfg.Trust == nil ||
		(conn.SendCertreq != nil && !bool(*conn.SendCertreq)) {
		return nil
	}
	data := cfg.Trust.CertReq(conn.Remote.Policy)
	if len(data) == 0 {
		return nil
	}
	return &message.CertReq{Encoding: message.CertX509Signature, Data: data}
}

// signAuth authenticates us with our certificate: the CERT payloads to
// send and the AUTH payload over the signed octets. idBody is our ID
// payload's body; initiator says which octets (RFC 7296 2.15).
func signAuth(c *Ctx, conn *config.Conn, idBody []byte) ([]message.Payload, *message.Auth, error) {
	ike := c.IKE
	local := conn.Local
	cred, chain := pki.SelectCredential(local.Credentials, ike.Handshake().PeerCertReq)
	if cred == nil {
		c.Fail(stats.NoCredential, message.AuthenticationFailed, "IKE_AUTH: connection %q has no certificate and key to authenticate with", conn.Name)
		return nil, nil, c.Failure.Err
	}
	scheme, err := pki.ChooseScheme(cred.Key.Public(), ike.Handshake().SigAuth, ike.Handshake().PeerHashes, local.Method.SignOptions())
	if err != nil {
		c.Fail(stats.UnsupportedScheme, message.AuthenticationFailed, "IKE_AUTH: no signature scheme for our %s that the peer accepts: %v", cred.Key, err)
		return nil, nil, c.Failure.Err
	}
	octets, err := signedOctets(ike, ike.Initiator, idBody)
	if err != nil {
		c.Fail(stats.InternalError, message.AuthenticationFailed, "IKE_AUTH: %v", err)
		return nil, nil, c.Failure.Err
	}
	method, data, err := pki.Sign(cred.Key, octets, scheme)
	if err != nil {
		c.Fail(stats.InternalError, message.AuthenticationFailed, "IKE_AUTH: signing with %s: %v", scheme, err)
		return nil, nil, c.Failure.Err
	}
	var certs []message.Payload
	send := conn.SendCert == "always" || (conn.SendCert != "never" && ike.Handshake().CertReqSeen)
	if send {
		for _, der := range chain {
			certs = append(certs, &message.Cert{Encoding: message.CertX509Signature, Data: der})
		}
	}
	ike.AuthLocal = scheme.String()
	c.Log.Debug("IKE_AUTH: signing", "scheme", scheme.String(), "cert", pki.FormatDN(cred.Leaf.RawSubject), "certs_sent", len(certs),
		"peer_rfc7427", ike.Handshake().SigAuth)
	return certs, &message.Auth{Method: message.AuthMethod(method), Data: data}, nil
}

// verifyAuth authenticates the peer with its certificate: the CERT
// payloads of msg, its ID payload and AUTH. It returns the failure reason
// and error, or zero and nil.
func verifyAuth(c *Ctx, conn *config.Conn, id *message.ID, auth *message.Auth, ps []message.Payload) (stats.Reason, error) {
	ike := c.IKE
	cfg := c.Config()
	if cfg == nil || cfg.Trust == nil || conn.Remote.Policy == nil {
		return stats.InternalError, fmt.Errorf("connection %q has no trust store", conn.Name)
	}
	var certs []pki.CertPayload
	for _, p := range ps {
		if cp, ok := p.(*message.Cert); ok {
			certs = append(certs, pki.CertPayload{Encoding: uint8(cp.Encoding), Data: cp.Data})
		}
	}
	if auth.Method == message.AuthSharedKeyMIC {
		return stats.AuthFailed, fmt.Errorf("the peer authenticates with a pre-shared key; connection %q wants a certificate (%s)", conn.Name, conn.Remote.Auth)
	}
	peer := pki.ID{Type: uint8(id.IDType), Data: id.Data}
	chain, err := cfg.Trust.VerifyPeer(certs, peer, conn.Remote.Policy)
	if err != nil {
		return pkiReason(err), err
	}
	octets, err := signedOctets(ike, !ike.Initiator, id.Body())
	if err != nil {
		return stats.InternalError, err
	}
	if err := pki.Verify(chain.Leaf, uint8(auth.Method), auth.Data, octets, conn.Remote.Method.Accepted()); err != nil {
		return pkiReason(err), err
	}
	if s, _, err := pki.ParseAuth(uint8(auth.Method), auth.Data); err == nil {
		ike.AuthRemote = s.String()
	}
	c.Log.Info("peer authenticated with a certificate", "peer_cert", pki.FormatDN(chain.Leaf.RawSubject),
		"issuer", pki.FormatDN(chain.Leaf.RawIssuer), "scheme", ike.AuthRemote, "chain", len(chain.Chain))
	return 0, nil
}

// authFailed logs a refused peer authentication with its specific reason
// (connection, peer, reason) and records the failure.
func authFailed(c *Ctx, conn *config.Conn, peer config.Identity, r stats.Reason, err error) {
	name := ""
	if conn != nil {
		name = conn.Name
	}
	// The logger carries the peer's address; the connection is named
	// again because IKE_AUTH may have picked another than IKE_SA_INIT.
	attrs := []any{"conn", name, "peer_id", peer.String(), "reason", r.String()}
	var pe *pki.Error
	if errors.As(err, &pe) {
		attrs = append(attrs, "pki_reason", pe.Reason.String())
	}
	c.Log.Warn("peer authentication failed", append(attrs, "err", err.Error())...)
	c.Fail(r, message.AuthenticationFailed, "IKE_AUTH: authentication of %s failed (%s): %v", peer, r, err)
}

// pkiReason maps a pki refusal to its counter.
func pkiReason(err error) stats.Reason {
	switch pki.ReasonOf(err) {
	case pki.ReasonExpired:
		return stats.CertExpired
	case pki.ReasonNotYetValid:
		return stats.CertNotYetValid
	case pki.ReasonUnknownCA:
		return stats.CertUnknownCA
	case pki.ReasonRevoked:
		return stats.CertRevoked
	case pki.ReasonIDMismatch:
		return stats.CertIDMismatch
	case pki.ReasonKeyUsage:
		return stats.CertKeyUsage
	case pki.ReasonBadSignature:
		return stats.BadSignature
	case pki.ReasonSchemeNotAllowed:
		return stats.SchemeNotAllowed
	case pki.ReasonUnsupportedScheme:
		return stats.UnsupportedScheme
	case pki.ReasonCANotAllowed:
		return stats.CertCANotAllowed
	case pki.ReasonWeakKey:
		return stats.CertWeakKey
	}
	return stats.CertMalformed
}
