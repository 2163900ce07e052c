// Package pki is spugate's X.509 layer for IKEv2 authentication: trust
// anchors, intermediate CAs, CRLs and our own certificates and keys; the
// verification of a peer's certificate chain and of the binding between its
// IKE identity and its certificate; and the AUTH payload signatures of RFC
// 7296 (methods 1, 9, 10, 11), RFC 7427 (method 14) and RFC 8420 (Ed25519),
// with the SIGNATURE_HASH_ALGORITHMS negotiation. It knows nothing of the
// IKE message codec or state machine, which call it:
//
//	store, err := pki.NewStore(pki.StoreConfig{CAFiles: ..., CRLFiles: ...})
//	cred, err := pki.LoadCredential(certFile, keyFile, store) // ours
//	// IKE_SA_INIT: send pki.HashAlgorithmsNotify(); read the peer's with
//	// pki.ParseHashAlgorithms. CERTREQ data: store.CertReq(policy).
//	// IKE_AUTH, sending: the peer's CERTREQ -> pki.ParseCertReq, then
//	cred, certs := pki.SelectCredential(creds, requested) // CERT payloads
//	scheme, err := pki.ChooseScheme(cred.Key.Public(), peerSentNotify, peerHashes, opts)
//	method, authData, err := pki.Sign(cred.Key, signedOctets, scheme)
//	// IKE_AUTH, receiving:
//	chain, err := store.VerifyPeer(certPayloads, peerID, policy)
//	err = pki.Verify(chain.Leaf, method, authData, signedOctets, allowedSchemes)
//	// any error: count pki.ReasonOf(err), answer AUTHENTICATION_FAILED.
//
// Every refusal is an *Error with a Reason ("expired", "not_yet_valid",
// "unknown_ca", "revoked", "id_mismatch", "key_usage", "bad_signature",
// "scheme_not_allowed", "unsupported_scheme", "ca_not_allowed", "weak_key",
// "malformed"). Errors name certificates by their subject DN and never hold
// private key material; PrivateKey prints only its type.
//
// # Choices where the RFCs and strongSwan differ
//
// Identity in the certificate (MatchCert). RFC 4945 3.1 and strongSwan
// agree: IP identities match iPAddress SANs, FQDN dNSName SANs, RFC822
// rfc822Name SANs, DER_ASN1_DN the subject. An FQDN identity is never
// matched against the subject's CN (RFC 4945 3.1.2 forbids it; strongSwan
// does not do it either). DNs compare bit for bit or, as strongSwan does,
// attribute by attribute with folded string values. KEY_ID, which RFC 4945
// leaves to local policy, matches as in strongSwan: the subjectKeyIdentifier
// or a SHA-1 of the public key.
//
// keyUsage. If present it must have digitalSignature or nonRepudiation (RFC
// 4945 5.1.3.2; strongSwan's "rejecting certificate without
// digitalSignature or nonRepudiation keyUsage flags").
//
// extendedKeyUsage. strongSwan ignores it for IKE; RFC 4945 5.1.3.12
// accepts only id-kp-ipsecIKE or anyExtendedKeyUsage when present. We
// accept none, or any of serverAuth, clientAuth, strongSwan's
// ikeIntermediate (1.3.6.1.5.5.8.2.2), id-kp-ipsecIKE, anyExtendedKeyUsage,
// and refuse a certificate whose EKU names only other purposes. EKU is not
// nested through the CA certificates (strongSwan does not either).
//
// CERTREQ. RFC 7296 3.7 names a CA by "the SHA-1 hash of the Subject Public
// Key Info element"; strongSwan sends exactly that (KEYID_PUBKEY_INFO_SHA1,
// the hash of the whole DER subjectPublicKeyInfo, which `pki --keyid`
// prints as "SHA-1 of subjectPublicKeyInfo"), not the hash of the key's BIT
// STRING alone that subjectKeyIdentifiers use. We send the same, and match
// either on receipt, as strongSwan does. A connection with cacerts asks for
// those, else we ask for every CA we hold (anchors and intermediates), as
// strongSwan does.
//
// cacerts. As in strongSwan, the chain must pass through one of them, as
// its anchor or as an intermediate, and they are trusted anchors for that
// connection.
//
// Remote identity patterns (MatchPattern). strongSwan's wildcards are '*'
// in FQDN and RFC822 identities and whole-value "CN=*" in DNs; we also let
// '*' stand inside a DN value ("CN=*.site.example").
//
// Signature hashes. We announce SHA2-256, SHA2-384, SHA2-512 and Identity;
// strongSwan also announces SHA-1, which RFC 8247 deprecates. Under method
// 14 we verify only these hashes (SHA-1 and RSASSA-PSS with its SHA-1
// defaults are unsupported_scheme); method 1 (RSA with SHA-1, RFC 7296) is
// verified unless the caller's allowed schemes exclude it.
//
// Choosing our scheme (ChooseScheme) is strongSwan 5.9's
// select_signature_schemes: the key's list in strongSwan's order, filtered
// by the peer's hashes, PSS only when configured (charon.rsa_pss); the
// classic methods when the peer did not announce RFC 7427.
//
// RSASSA-PSS. We sign with salt length = hash length, MGF1 with the same
// hash, trailer 1, and the AlgorithmIdentifier of RFC 7427 A.4.3 (which is
// also strongSwan's byte for byte). On receipt the hash must be SHA-256/384/512
// with MGF1 of the same hash and trailer 1; the salt length the peer
// declares is used as declared (0 is refused).
//
// Key sizes. RSA keys under 2048 bits are refused, ours and the peers'
// (weak_key); strongSwan accepts them by default.
//
// Revocation. CRLs come from files and Store.Reload; a CRL from one of our
// CAs must verify when loaded; one from a CA met only in a peer's chain is
// verified when used. A CRL past its nextUpdate still revokes; a CA with no
// CRL is accepted (strongSwan's default, non-strict, policy). No OCSP and no
// fetching from distribution points.
//
// CERT payloads. Only encoding 4 (X.509 Certificate - Signature) is read;
// the others (hash and URL, CRLs...) are ignored, as strongSwan does unless
// configured for hash and URL. The payloads are bounded in number and size
// (Limits) before anything is parsed.
package pki
