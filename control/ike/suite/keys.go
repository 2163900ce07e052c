package suite

import (
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
)

// IKEKeys are the keys of an IKE SA (RFC 7296 section 2.14):
//
//	SKEYSEED = prf(Ni | Nr, g^ir)
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//	         = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// SK_ai and SK_ar are empty with an AEAD; SK_ei and SK_er then end with the
// 4-byte salt. SK_d, SK_pi and SK_pr are as long as the PRF output.
type IKEKeys struct {
	Alg                                     Algorithms
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// DeriveIKEKeys computes the keys of a new IKE SA from IKE_SA_INIT: the
// negotiated IKE suite, both nonces (the Nonce Data, without payload
// header), the Diffie-Hellman shared secret and the SPIs of the header.
func DeriveIKEKeys(a Algorithms, ni, nr, gir []byte, spii, spir uint64) (*IKEKeys, error) {
	if err := a.Check(); err != nil {
		return nil, fmt.Errorf("suite: deriving IKE keys: %w", err)
	}
	if a.Protocol != ProtocolIKE {
		return nil, fmt.Errorf("suite: deriving IKE keys for a %s suite", a.Protocol)
	}
	skeyseed, err := a.PRF.Compute(cat(ni, nr), gir)
	if err != nil {
		return nil, err
	}
	return expandIKEKeys(a, skeyseed, ni, nr, spii, spir)
}

// DeriveRekeyedIKEKeys computes the keys of the IKE SA that replaces old in
// a CREATE_CHILD_SA exchange (RFC 7296 section 2.18):
//
//	SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)
//
// with the old IKE SA's PRF, then prf+ of the new SA's PRF over
// Ni | Nr | SPIi | SPIr as in DeriveIKEKeys, with the new SPIs.
func DeriveRekeyedIKEKeys(old *IKEKeys, a Algorithms, ni, nr, gir []byte, spii, spir uint64) (*IKEKeys, error) {
	if err := a.Check(); err != nil {
		return nil, fmt.Errorf("suite: deriving rekeyed IKE keys: %w", err)
	}
	if a.Protocol != ProtocolIKE {
		return nil, fmt.Errorf("suite: deriving IKE keys for a %s suite", a.Protocol)
	}
	skeyseed, err := old.Alg.PRF.Compute(old.SKd, gir, ni, nr)
	if err != nil {
		return nil, err
	}
	return expandIKEKeys(a, skeyseed, ni, nr, spii, spir)
}

func expandIKEKeys(a Algorithms, skeyseed, ni, nr []byte, spii, spir uint64) (*IKEKeys, error) {
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:8], spii)
	binary.BigEndian.PutUint64(spis[8:], spir)
	prfLen, integLen, encLen := a.PRF.Size(), a.IntegKeyLen(), a.EncrKeyLen()
	km, err := prfPlus(a.PRF, skeyseed, 3*prfLen+2*integLen+2*encLen, ni, nr, spis[:])
	if err != nil {
		return nil, err
	}
	k := &IKEKeys{Alg: a}
	for _, f := range []struct {
		dst *[]byte
		n   int
	}{{&k.SKd, prfLen}, {&k.SKai, integLen}, {&k.SKar, integLen}, {&k.SKei, encLen}, {&k.SKer, encLen}, {&k.SKpi, prfLen}, {&k.SKpr, prfLen}} {
		*f.dst, km = km[:f.n:f.n], km[f.n:]
	}
	return k, nil
}

// Ciphers returns the SK protection for our side of the IKE SA: out seals
// what we send, in opens what we receive. The original initiator of the
// IKE SA (the I flag) uses SK_ei/SK_ai to send, the responder SK_er/SK_ar.
func (k *IKEKeys) Ciphers(initiator bool) (out, in *SKCipher, err error) {
	ei, ai, er, ar := k.SKei, k.SKai, k.SKer, k.SKar
	if !initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	if out, err = NewSKCipher(k.Alg, ei, nilIfEmpty(ai)); err != nil {
		return nil, nil, err
	}
	if in, err = NewSKCipher(k.Alg, er, nilIfEmpty(ar)); err != nil {
		return nil, nil, err
	}
	return out, in, nil
}

// DropAuthKeys forgets SK_pi and SK_pr, which only the AUTH payloads of
// IKE_AUTH use (SignedOctets): an IKE SA drops them once authenticated
// (a rekey's new IKE SA never needs them), so that neither its memory
// nor its state record carries them for the tunnel's life. The other
// keys move to an allocation of their own, without the two; ciphers
// made from the keys before keep the old one until they go.
func (k *IKEKeys) DropAuthKeys() {
	if k.SKpi == nil && k.SKpr == nil {
		return
	}
	buf := make([]byte, 0, len(k.SKd)+len(k.SKai)+len(k.SKar)+len(k.SKei)+len(k.SKer))
	for _, p := range [...]*[]byte{&k.SKd, &k.SKai, &k.SKar, &k.SKei, &k.SKer} {
		n := len(buf)
		buf = append(buf, *p...)
		*p = buf[n:len(buf):len(buf)]
	}
	k.SKpi, k.SKpr = nil, nil
}

// ChildKeys are the keys of an ESP Child SA pair (RFC 7296 section 2.17):
//
//	KEYMAT = prf+(SK_d, Ni | Nr)                  (no PFS)
//	KEYMAT = prf+(SK_d, g^ir (new) | Ni | Nr)     (PFS, CREATE_CHILD_SA with KE)
//
// taken in the order: initiator-to-responder encryption key, its integrity
// key, responder-to-initiator encryption key, its integrity key. The
// encryption keys of AES-GCM and ChaCha20-Poly1305 end with the 4-byte salt
// (RFC 4106, RFC 7634); the integrity keys are empty for them.
type ChildKeys struct {
	Alg           Algorithms
	EncrI, IntegI []byte // initiator to responder
	EncrR, IntegR []byte // responder to initiator
}

// ChildKeys derives the keys of a Child SA from this IKE SA's SK_d and PRF.
// "initiator" is the initiator of the exchange that creates the Child SA
// (IKE_AUTH or CREATE_CHILD_SA), whose nonce is Ni. gir is nil without PFS.
func (k *IKEKeys) ChildKeys(child Algorithms, gir, ni, nr []byte) (*ChildKeys, error) {
	return DeriveChildKeys(k.Alg.PRF, k.SKd, child, gir, ni, nr)
}

// DeriveChildKeys is IKEKeys.ChildKeys given the PRF and SK_d directly.
func DeriveChildKeys(prf PRFID, skd []byte, child Algorithms, gir, ni, nr []byte) (*ChildKeys, error) {
	if child.Protocol != ProtocolESP {
		return nil, fmt.Errorf("suite: Child SA keys for protocol %s not supported", child.Protocol)
	}
	if err := child.Check(); err != nil {
		return nil, fmt.Errorf("suite: deriving Child SA keys: %w", err)
	}
	encLen, integLen := child.EncrKeyLen(), child.IntegKeyLen()
	km, err := prfPlus(prf, skd, 2*(encLen+integLen), gir, ni, nr)
	if err != nil {
		return nil, err
	}
	c := &ChildKeys{Alg: child}
	for _, f := range []struct {
		dst *[]byte
		n   int
	}{{&c.EncrI, encLen}, {&c.IntegI, integLen}, {&c.EncrR, encLen}, {&c.IntegR, integLen}} {
		*f.dst, km = km[:f.n:f.n], km[f.n:]
	}
	return c, nil
}

// Outbound returns the keys for the SA we send with; initiator says whether
// we initiated the exchange that created the Child SA.
func (c *ChildKeys) Outbound(initiator bool) (encr, integ []byte) {
	if initiator {
		return c.EncrI, c.IntegI
	}
	return c.EncrR, c.IntegR
}

// Inbound returns the keys for the SA we receive with.
func (c *ChildKeys) Inbound(initiator bool) (encr, integ []byte) {
	return c.Outbound(!initiator)
}

// keyPad is the fixed string of RFC 7296 section 2.15 for shared-key AUTH.
const keyPad = "Key Pad for IKEv2"

// SignedOctets builds the octets an AUTH payload authenticates (RFC 7296
// section 2.15), for the side whose AUTH it is:
//
//	InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
//	ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR
//	MACedIDForX           = prf(SK_px, RestOfXIDPayload)
//
// realMessage is that side's IKE_SA_INIT message exactly as sent, peerNonce
// the other side's Nonce Data, idBody the ID payload body after the generic
// header (ID Type, RESERVED, data: message.ID.Body()). They serve PSK and
// signature authentication alike.
func (k *IKEKeys) SignedOctets(initiator bool, realMessage, peerNonce, idBody []byte) ([]byte, error) {
	skp := k.SKpr
	if initiator {
		skp = k.SKpi
	}
	if len(skp) == 0 {
		// An empty key would MAC without complaint: a wrong AUTH.
		return nil, errors.New("suite: signed octets: SK_pi and SK_pr were dropped after IKE_AUTH")
	}
	maced, err := k.Alg.PRF.Compute(skp, idBody)
	if err != nil {
		return nil, err
	}
	return cat(realMessage, peerNonce, maced), nil
}

// PSKAuth computes the Authentication Data of a shared-key AUTH payload
// (method 2, RFC 7296 section 2.15):
//
//	AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)
func PSKAuth(prf PRFID, secret, signedOctets []byte) ([]byte, error) {
	k, err := prf.Compute(secret, []byte(keyPad))
	if err != nil {
		return nil, err
	}
	return prf.Compute(k, signedOctets)
}

// VerifyPSKAuth reports in constant time whether auth is the shared-key
// AUTH for signedOctets.
func VerifyPSKAuth(prf PRFID, secret, signedOctets, auth []byte) bool {
	want, err := PSKAuth(prf, secret, signedOctets)
	return err == nil && hmac.Equal(want, auth)
}

// keyPadBytes is keyPad as the PRF reads it.
var keyPadBytes = []byte(keyPad)

// PSKAuth is PSKAuth(prf, secret, SignedOctets(initiator, realMessage,
// peerNonce, idBody)) without building the signed octets: the MACs run
// over their parts, which saves copying the IKE_SA_INIT message for each
// AUTH made and checked (four per setup over both ends).
func (k *IKEKeys) PSKAuth(initiator bool, secret, realMessage, peerNonce, idBody []byte) ([]byte, error) {
	s := prfSpec(k.Alg.PRF)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", k.Alg.PRF)
	}
	if len(k.SKpi) == 0 || len(k.SKpr) == 0 {
		// An empty key would MAC without complaint: a wrong AUTH.
		return nil, errors.New("suite: PSK AUTH: SK_pi and SK_pr were dropped after IKE_AUTH")
	}
	return k.pskAuth(s, make([]byte, 0, s.size), initiator, secret, realMessage, peerNonce, idBody), nil
}

// VerifyPSK reports in constant time whether auth is the shared-key AUTH
// that PSKAuth computes.
func (k *IKEKeys) VerifyPSK(initiator bool, secret, realMessage, peerNonce, idBody, auth []byte) bool {
	s := prfSpec(k.Alg.PRF)
	if s == nil || len(k.SKpi) == 0 || len(k.SKpr) == 0 {
		return false
	}
	var want [maxBlock]byte
	return hmac.Equal(k.pskAuth(s, want[:0], initiator, secret, realMessage, peerNonce, idBody), auth)
}

// pskAuth appends the AUTH data to dst, each intermediate MAC in the
// scratch of its pooled state.
func (k *IKEKeys) pskAuth(s *hmacSpec, dst []byte, initiator bool, secret, realMessage, peerNonce, idBody []byte) []byte {
	skp := k.SKpr
	if initiator {
		skp = k.SKpi
	}
	idm := s.key(skp)
	maced := idm.sum(idm.t[:0], idBody)
	padm := s.key(secret)
	authKey := padm.sum(padm.t[:0], keyPadBytes)
	m := s.key(authKey)
	dst = append(dst, m.sum(m.t[:0], realMessage, peerNonce, maced)...)
	m.release()
	padm.release()
	idm.release()
	return dst
}

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
