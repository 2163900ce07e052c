// Package suite is the cryptography of IKEv2 for spugate: transform and
// proposal types, strongSwan's proposal syntax, proposal selection, the
// PRFs and prf+, key exchange, key derivation for IKE and Child SAs, the
// protection of the SK payload and the shared-key AUTH. It knows nothing of
// the wire format; package message encodes the proposals and uses the SK
// ciphers.
//
// # Algorithms
//
// IKE SA: AES-GCM-16 with 128, 192 or 256-bit keys (RFC 5282),
// ChaCha20-Poly1305 (RFC 7634), AES-CBC-128/192/256 with
// HMAC-SHA2-256-128, -384-192, -512-256 or HMAC-SHA1-96; PRF HMAC-SHA2-256,
// -384, -512 and HMAC-SHA1; key exchange groups 14 (MODP-2048, RFC 3526),
// 19, 20, 21 (ECP-256/384/521, RFC 5903: public value x | y, shared secret
// x) and 31 (Curve25519, RFC 8031). Child SA (ESP), what spugate's data
// plane implements: AES-GCM-16-128/256 and ChaCha20-Poly1305 (key plus
// 4-byte salt), AES-CBC-128/256 with HMAC-SHA2-256-128; ESN or not; PFS
// with the groups above. Other algorithms are named (for logs and for
// declining a peer's proposals) but not implemented.
//
// MODP arithmetic uses math/big, which is not constant-time; the private
// exponent is used once per exchange. The ECP groups and X25519 use
// crypto/ecdh.
//
// # Use by the IKE state machine
//
// Configuration: ParseIKE and ParseESP read strongSwan's syntax
// ("aes128gcm16-prfsha256-x25519,default") into []Proposal, numbered from
// 1. For an SA payload of a Child SA or an IKE SA rekey, set our SPI with
// WithSPI.
//
// IKE_SA_INIT, initiator: NewKeyExchange(proposals[0].Groups()[0]) gives
// the KE payload's data (KeyExchange.PublicKey). On the response,
// CheckResponse(offered, response SA's proposals) returns the chosen
// Proposal or names the lie; Proposal.Algorithms turns it into an
// Algorithms value; KeyExchange.SharedSecret(peer KE data) returns g^ir
// after checking the peer's value; DeriveIKEKeys(alg, Ni, Nr, g^ir, SPIi,
// SPIr) returns IKEKeys.
//
// IKE_SA_INIT, responder: Select(ours, offered, SelectPolicy{KEGroup: the
// KE payload's group}) returns the proposal for the response or an error
// wrapping ErrNoProposalChosen; if the chosen group differs from the KE
// payload's, answer INVALID_KE_PAYLOAD with the chosen group. Then as
// above. By default Select prefers our configured order, as strongSwan does
// (charon.prefer_configured_proposals = yes); SelectPolicy.PreferPeer
// follows the peer's order instead.
//
// Every protected message: IKEKeys.Ciphers(initiator) returns the pair of
// *SKCipher for our role in the IKE SA (the original initiator sends with
// SK_ei/SK_ai); they implement message.Sealer and message.Opener.
//
// IKE_AUTH with a pre-shared key: IKEKeys.SignedOctets(initiator, our or
// the peer's IKE_SA_INIT message as sent, the other side's nonce,
// ID payload body) builds the octets of RFC 7296 section 2.15 (also what a
// signature covers); PSKAuth computes the AUTH data and VerifyPSKAuth
// checks the peer's in constant time. IKEKeys.PSKAuth and VerifyPSK do both
// from the parts, without building the signed octets (what iked uses).
//
// Child SAs: in IKE_AUTH, send WithoutKE(proposals) (no KE payload there,
// as strongSwan does) and choose with SelectPolicy{SkipKE: true}; in
// CREATE_CHILD_SA with PFS, SelectPolicy{KEGroup: the KE payload's group}.
// IKEKeys.ChildKeys(child alg, g^ir or nil, Ni, Nr) returns the
// four ESP keys in the order of RFC 7296 section 2.17; ChildKeys.Outbound
// and Inbound pick the directions for our role in the exchange that created
// the Child SA.
//
// IKE SA rekey: DeriveRekeyedIKEKeys(old keys, new alg, Ni, Nr, g^ir, new
// SPIi, new SPIr) uses the old SA's PRF and SK_d for SKEYSEED (RFC 7296
// section 2.18).
//
// # Tests
//
// Known answers: HMAC-SHA2 from RFC 4231; prf+, SKEYSEED, the IKE key
// material, Child SA keying material with and without PFS and the rekey
// SKEYSEED from NIST CAVP's IKEv2 KDF (SP 800-135) SHA-1 test case; ECP
// Diffie-Hellman from RFC 5903 section 8 and RFC 5114 appendix A; X25519
// from RFC 7748 section 6.1. MODP-2048 and PSK AUTH have no published
// vector: the modulus is checked to be the RFC 3526 safe prime and the
// exchange for agreement. Package message's tests derive the keys of
// recorded strongSwan exchanges (all suites above, SHA-2 PRFs included) and
// compare them with the keys strongSwan logged, and verify strongSwan's
// PSK AUTH payloads.
package suite
