// Package message is the IKEv2 wire codec (RFC 7296, with RFC 7383
// fragmentation): the header, every payload, the Encrypted (SK) and
// Encrypted Fragment (SKF) payloads, and the per-exchange payload rules.
// The cryptography is package suite's; this package only calls it through
// the Sealer and Opener interfaces, which *suite.SKCipher implements.
//
// # Receiving
//
//	b, err := message.StripNonESPMarker(datagram) // UDP 4500 only
//	h, err := message.DecodeHeader(b)             // cheap: find the IKE SA by SPI
//	m, err := message.Decode(b)                   // header, cleartext payloads, raw SK
//	err = m.Decrypt(inbound)                      // SK -> m.Inner (IKE SA's keys)
//	err = message.Validate(m)                     // exchange rules
//
// Decode is strict: every length is checked; an unknown payload with the
// critical bit fails with *UnsupportedCriticalError, an unknown one
// without it is kept as *Unknown and ignored by Validate; SK or SKF must be
// the last payload. Errors name the payload and the fault:
//
//	ike: payload 3 (SA): proposal 1: transform 2: length 6 below minimum 8
//
// and NotifyFor maps them to the notify a responder answers with
// (UNSUPPORTED_CRITICAL_PAYLOAD with the type, INVALID_MAJOR_VERSION,
// INVALID_SYNTAX). A decoded message's payloads alias the datagram (and the
// decrypted plaintext): give Decode a buffer that is not reused, and keep
// Message.Raw, the exact bytes, for the AUTH of IKE_SA_INIT.
//
// The SK payload is exposed undecrypted as Message.Encrypted (the first
// inner payload type, the IV | ciphertext | ICV body, its offset) with
// Message.AAD, the bytes from the IKE header through the SK header. For
// fragments, Message.DecryptFragment authenticates and decrypts one SKF
// payload; Reassemble concatenates a complete set (numbers 1..Total, in any
// order) and decodes the inner payloads. Collecting fragments, bounding
// their number and memory, and dropping stale sets is the state machine's.
//
// # Sending
//
//	m := &message.Message{Header: h, Payloads: clear, Inner: protected}
//	b, err := m.Encode(nil)       // IKE_SA_INIT (no SK)
//	b, err := m.Encode(outbound)  // every later message: SK with Inner
//	bs, err := m.EncodeFragments(outbound, maxLen) // RFC 7383, when b is too big
//
// Encode fills the Next Payload fields, the lengths, the padding and the
// ICV. EncodeFragments cuts the inner payloads into SKF payloads each
// protected on its own, every datagram at most maxLen bytes (IKE message
// length, without IP/UDP headers and non-ESP marker). Add the non-ESP
// marker (AddNonESPMarker) on UDP 4500. A retransmission resends the same
// bytes; never re-encode a request or response that was already sent.
//
// # Payloads
//
// *SA (proposals of package suite), *KE, *ID (IDi/IDr; ID.Body is the
// input of the AUTH's MACedIDFor), *Cert, *CertReq, *Auth, *Nonce,
// *Notify (constants for RFC 7296's types and the common extensions),
// *Delete, *VendorID, *TS (TSi/TSr, IPv4 and IPv6 ranges), *CP, *EAP
// (opaque) and *Unknown. Find and FindNotify look payloads up.
// NATDetectionHash computes the NAT_DETECTION_*_IP data of RFC 7296
// section 2.23.
//
// # Exchange rules
//
// Validate checks a message (after Decrypt, or with Inner from Reassemble)
// against the table of RFC 7296 section 1: which payloads each request and
// response of IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA and INFORMATIONAL may
// carry, how many, inside SK or not, which must come together (SA, TSi,
// TSr), and the error responses made of notifies only. RulesFor exposes the
// table. Semantic checks (a KE group matching the chosen proposal, a
// REKEY_SA naming a known SA...) belong to the state machine.
//
// # Tests
//
// testdata/charon holds exchanges between two strongSwan 5.9.8 daemons
// recorded by testdata/charon/capture.sh, with the keys strongSwan logged.
// The tests decode every datagram, re-encode IKE_SA_INIT to the same bytes,
// derive the same keys, decrypt every SK and SKF payload (GCM, ChaCha20,
// CBC, fragmented IKE_AUTH with certificates), and verify strongSwan's PSK
// AUTH and NAT-D hashes. FuzzDecode and FuzzDecrypt use those datagrams as
// seeds.
package message
