package suite

import (
	"crypto/hmac"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
)

// IKEKeys are the keys of an IKE SA (RFC 7296 section 2.14):
//
//	SKEYSEED = prf(Ni | Nr, g^ir)
//	{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
//	         = prf+ (SKEYSEED, Ni | Nr | SPIi | SPIr)
//
// SK_ai and SK_ar are empty with an AEAD; SK_ei and SK_er then end with the
// 4-byte salt. SK_d, SK_pi and SK_pr are as long as the PRF output.
//
// The keys are one buffer and where each ends, read through SKd, SKai...:
// a million IKE SAs each keep theirs, and seven slices were 168 bytes of
// headers and seven pointers for the garbage collector to follow, against
// 14 bytes of offsets and one pointer. Build them with DeriveIKEKeys or
// NewIKEKeys; they keep the JSON form of the seven fields they were.
type IKEKeys struct {
	Alg Algorithms
	b   []byte
	end [7]uint16
}

// The keys of IKEKeys in the order of prf+'s output, end's indices.
const (
	skD = iota
	skAI
	skAR
	skEI
	skER
	skPI
	skPR
)

// NewIKEKeys makes IKE keys from their parts (a restored state, a test),
// copied into one buffer; an empty part is a key the IKE SA does not
// have (SK_ai with an AEAD, SK_pi once dropped).
func NewIKEKeys(a Algorithms, skd, skai, skar, skei, sker, skpi, skpr []byte) (*IKEKeys, error) {
	k := &IKEKeys{Alg: a}
	if err := fill(&k.b, k.end[:], "IKE", skd, skai, skar, skei, sker, skpi, skpr); err != nil {
		return nil, err
	}
	return k, nil
}

// fill copies parts into *b, one allocation, and where each ends into end.
func fill(b *[]byte, end []uint16, what string, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > math.MaxUint16 {
		return fmt.Errorf("suite: %s keys of %d bytes (at most %d)", what, n, math.MaxUint16)
	}
	*b = make([]byte, 0, n)
	for i, p := range parts {
		*b = append(*b, p...)
		end[i] = uint16(len(*b))
	}
	return nil
}

// keyAt is key i of b, whose keys end at end, capped so that an append
// copies it; nil if empty.
func keyAt(b []byte, end []uint16, i int) []byte {
	start := 0
	if i > 0 {
		start = int(end[i-1])
	}
	e := int(end[i])
	if start == e {
		return nil
	}
	return b[start:e:e]
}

// key is key i (skD...), nil if the IKE SA does not have it.
func (k *IKEKeys) key(i int) []byte { return keyAt(k.b, k.end[:], i) }

// SKd is SK_d, which the keys of Child SAs and of a rekeyed IKE SA are
// derived from.
func (k *IKEKeys) SKd() []byte { return k.key(skD) }

// SKai is SK_ai, the initiator's integrity key (nil with an AEAD).
func (k *IKEKeys) SKai() []byte { return k.key(skAI) }

// SKar is SK_ar, the responder's integrity key (nil with an AEAD).
func (k *IKEKeys) SKar() []byte { return k.key(skAR) }

// SKei is SK_ei, the initiator's encryption key (and salt).
func (k *IKEKeys) SKei() []byte { return k.key(skEI) }

// SKer is SK_er, the responder's encryption key (and salt).
func (k *IKEKeys) SKer() []byte { return k.key(skER) }

// SKpi is SK_pi, which the initiator's AUTH payload covers its ID with
// (nil once DropAuthKeys dropped it).
func (k *IKEKeys) SKpi() []byte { return k.key(skPI) }

// SKpr is SK_pr, the responder's SK_pi.
func (k *IKEKeys) SKpr() []byte { return k.key(skPR) }

// ikeKeysJSON is the JSON form of IKEKeys: the struct's fields before the
// keys went into one buffer, which states of earlier versions hold.
type ikeKeysJSON struct {
	Alg                                     Algorithms
	SKd, SKai, SKar, SKei, SKer, SKpi, SKpr []byte
}

// MarshalJSON writes the keys as the fields Alg, SKd, SKai... (base64).
func (k *IKEKeys) MarshalJSON() ([]byte, error) {
	return json.Marshal(ikeKeysJSON{k.Alg, k.SKd(), k.SKai(), k.SKar(), k.SKei(), k.SKer(), k.SKpi(), k.SKpr()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (k *IKEKeys) UnmarshalJSON(b []byte) error {
	var j ikeKeysJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	n, err := NewIKEKeys(j.Alg, j.SKd, j.SKai, j.SKar, j.SKei, j.SKer, j.SKpi, j.SKpr)
	if err != nil {
		return err
	}
	*k = *n
	return nil
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
	skeyseed, err := old.Alg.PRF.Compute(old.SKd(), gir, ni, nr)
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
	k := &IKEKeys{Alg: a, b: km}
	end := 0
	for i, n := range [...]int{prfLen, integLen, integLen, encLen, encLen, prfLen, prfLen} {
		end += n
		k.end[i] = uint16(end)
	}
	return k, nil
}

// Ciphers returns the SK protection for our side of the IKE SA: out seals
// what we send, in opens what we receive. The original initiator of the
// IKE SA (the I flag) uses SK_ei/SK_ai to send, the responder SK_er/SK_ar.
func (k *IKEKeys) Ciphers(initiator bool) (out, in *SKCipher, err error) {
	ei, ai, er, ar := k.SKei(), k.SKai(), k.SKer(), k.SKar()
	if !initiator {
		ei, ai, er, ar = er, ar, ei, ai
	}
	if out, err = NewSKCipher(k.Alg, ei, ai); err != nil {
		return nil, nil, err
	}
	if in, err = NewSKCipher(k.Alg, er, ar); err != nil {
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
	n := int(k.end[skER])
	if int(k.end[skPR]) == n {
		return
	}
	k.b = append(make([]byte, 0, n), k.b[:n]...)
	k.end[skPI], k.end[skPR] = uint16(n), uint16(n)
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
//
// Like IKEKeys, the four are one buffer and where each ends, read through
// EncrI, IntegI...; they keep the JSON form of the four fields they were.
type ChildKeys struct {
	Alg Algorithms
	b   []byte
	end [4]uint16
}

// NewChildKeys makes Child SA keys from their parts (a restored state, a
// test), copied into one buffer.
func NewChildKeys(a Algorithms, encrI, integI, encrR, integR []byte) (*ChildKeys, error) {
	c := &ChildKeys{Alg: a}
	if err := fill(&c.b, c.end[:], "Child SA", encrI, integI, encrR, integR); err != nil {
		return nil, err
	}
	return c, nil
}

// EncrI is the initiator-to-responder encryption key (and salt).
func (c *ChildKeys) EncrI() []byte { return keyAt(c.b, c.end[:], 0) }

// IntegI is the initiator-to-responder integrity key (nil with an AEAD).
func (c *ChildKeys) IntegI() []byte { return keyAt(c.b, c.end[:], 1) }

// EncrR is the responder-to-initiator encryption key (and salt).
func (c *ChildKeys) EncrR() []byte { return keyAt(c.b, c.end[:], 2) }

// IntegR is the responder-to-initiator integrity key (nil with an AEAD).
func (c *ChildKeys) IntegR() []byte { return keyAt(c.b, c.end[:], 3) }

// childKeysJSON is the JSON form of ChildKeys, as IKEKeys' is.
type childKeysJSON struct {
	Alg           Algorithms
	EncrI, IntegI []byte
	EncrR, IntegR []byte
}

// MarshalJSON writes the keys as the fields Alg, EncrI, IntegI, EncrR and
// IntegR (base64).
func (c *ChildKeys) MarshalJSON() ([]byte, error) {
	return json.Marshal(childKeysJSON{c.Alg, c.EncrI(), c.IntegI(), c.EncrR(), c.IntegR()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *ChildKeys) UnmarshalJSON(b []byte) error {
	var j childKeysJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	n, err := NewChildKeys(j.Alg, j.EncrI, j.IntegI, j.EncrR, j.IntegR)
	if err != nil {
		return err
	}
	*c = *n
	return nil
}

// ChildKeys derives the keys of a Child SA from this IKE SA's SK_d and PRF.
// "initiator" is the initiator of the exchange that creates the Child SA
// (IKE_AUTH or CREATE_CHILD_SA), whose nonce is Ni. gir is nil without PFS.
func (k *IKEKeys) ChildKeys(child Algorithms, gir, ni, nr []byte) (*ChildKeys, error) {
	return DeriveChildKeys(k.Alg.PRF, k.SKd(), child, gir, ni, nr)
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
	c := &ChildKeys{Alg: child, b: km}
	end := 0
	for i, n := range [...]int{encLen, integLen, encLen, integLen} {
		end += n
		c.end[i] = uint16(end)
	}
	return c, nil
}

// Outbound returns the keys for the SA we send with; initiator says whether
// we initiated the exchange that created the Child SA.
func (c *ChildKeys) Outbound(initiator bool) (encr, integ []byte) {
	if initiator {
		return c.EncrI(), c.IntegI()
	}
	return c.EncrR(), c.IntegR()
}

// Inbound returns the keys for the SA we receive with.
func (c *ChildKeys) Inbound(initiator bool) (encr, integ []byte) {
	return c.Outbound(!initiator)
}

// keyPad is the fixed string of RFC 7296 section 2.15 for shared-key AUTH.
const keyPad = "Key Pad for IKEv2"

// keyPadBytes is keyPad as the PRF reads it.
var keyPadBytes = []byte(keyPad)

// authKey is SK_pi (initiator) or SK_pr, which only the AUTH payloads of
// IKE_AUTH use: an error once DropAuthKeys dropped them, as an empty key
// would MAC without complaint, a wrong AUTH.
func (k *IKEKeys) authKey(initiator bool) ([]byte, error) {
	skp := k.SKpr()
	if initiator {
		skp = k.SKpi()
	}
	if len(skp) == 0 {
		return nil, errors.New("suite: AUTH: SK_pi and SK_pr were dropped after IKE_AUTH")
	}
	return skp, nil
}

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
	skp, err := k.authKey(initiator)
	if err != nil {
		return nil, err
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
	s := prfSpec(prf)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", prf)
	}
	return s.pskAuth(make([]byte, 0, s.size), secret, signedOctets), nil
}

// VerifyPSKAuth reports in constant time whether auth is the shared-key
// AUTH for signedOctets.
func VerifyPSKAuth(prf PRFID, secret, signedOctets, auth []byte) bool {
	want, err := PSKAuth(prf, secret, signedOctets)
	return err == nil && hmac.Equal(want, auth)
}

// PSKAuth is PSKAuth(prf, secret, SignedOctets(initiator, realMessage,
// peerNonce, idBody)) without building the signed octets: the MACs run
// over their parts, which saves copying the IKE_SA_INIT message for each
// AUTH made and checked (four per setup over both ends).
func (k *IKEKeys) PSKAuth(initiator bool, secret, realMessage, peerNonce, idBody []byte) ([]byte, error) {
	return k.appendPSKAuth(nil, initiator, secret, realMessage, peerNonce, idBody)
}

// VerifyPSK reports in constant time whether auth is the shared-key AUTH
// that PSKAuth computes.
func (k *IKEKeys) VerifyPSK(initiator bool, secret, realMessage, peerNonce, idBody, auth []byte) bool {
	var want [maxBlock]byte
	got, err := k.appendPSKAuth(want[:0], initiator, secret, realMessage, peerNonce, idBody)
	return err == nil && hmac.Equal(got, auth)
}

// appendPSKAuth appends what PSKAuth returns to dst (a new slice if nil),
// MACing the ID in the scratch of its pooled state.
func (k *IKEKeys) appendPSKAuth(dst []byte, initiator bool, secret, realMessage, peerNonce, idBody []byte) ([]byte, error) {
	s := prfSpec(k.Alg.PRF)
	if s == nil {
		return nil, fmt.Errorf("suite: PRF %s not supported", k.Alg.PRF)
	}
	skp, err := k.authKey(initiator)
	if err != nil {
		return nil, err
	}
	if dst == nil {
		dst = make([]byte, 0, s.size)
	}
	idm := s.key(skp)
	dst = s.pskAuth(dst, secret, realMessage, peerNonce, idm.sum(idm.t[:0], idBody))
	idm.release()
	return dst, nil
}

// pskAuth appends prf(prf(secret, "Key Pad for IKEv2"), octets[0] |
// octets[1] | ...) to dst, each intermediate MAC in the scratch of its
// pooled state.
func (s *hmacSpec) pskAuth(dst, secret []byte, octets ...[]byte) []byte {
	padm := s.key(secret)
	m := s.key(padm.sum(padm.t[:0], keyPadBytes))
	dst = append(dst, m.sum(m.t[:0], octets...)...)
	m.release()
	padm.release()
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
