package pki

import (
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
)

// Certificate encodings of CERT and CERTREQ payloads (RFC 7296 3.6).
const (
	CertX509Signature = 4 // DER X.509 certificate
	CertCRL           = 7
)

// KeyHash is how a CERTREQ names a CA: the SHA-1 hash of the CA's
// subjectPublicKeyInfo, the whole DER SEQUENCE with its algorithm
// identifier (RFC 7296 3.7: "SHA-1 hash of the Subject Public Key Info
// element"). strongSwan sends the same (KEYID_PUBKEY_INFO_SHA1 in
// ike_cert_pre.c; `pki --keyid` prints it as "keyid (SHA-1 of
// subjectPublicKeyInfo)"), not the subjectKeyIdentifier-style hash of the
// BIT STRING alone; on receipt it matches either, and so do we.
func KeyHash(cert *x509.Certificate) [20]byte {
	return sha1.Sum(cert.RawSubjectPublicKeyInfo)
}

// keyHashes returns the hashes a received CERTREQ entry may use for cert:
// the subjectPublicKeyInfo hash and the subjectPublicKey hash.
func keyHashes(cert *x509.Certificate) [][20]byte {
	out := [][20]byte{KeyHash(cert)}
	if pk, err := subjectPublicKeyBits(cert.RawSubjectPublicKeyInfo); err == nil {
		out = append(out, sha1.Sum(pk))
	}
	return out
}

// subjectPublicKeyBits returns the contents of the subjectPublicKey BIT
// STRING of a DER subjectPublicKeyInfo (without the unused-bits octet).
func subjectPublicKeyBits(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	rest, err := asn1.Unmarshal(spki, &info)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("trailing data after subjectPublicKeyInfo")
	}
	return info.PublicKey.Bytes, nil
}

// CertReqData builds the Certification Authority field of our CERTREQ
// payload (encoding 4): the concatenated KeyHash of each CA, in order,
// duplicates removed.
func CertReqData(cas []*x509.Certificate) []byte {
	out := make([]byte, 0, 20*len(cas))
	seen := map[[20]byte]bool{}
	for _, c := range cas {
		h := KeyHash(c)
		if !seen[h] {
			seen[h] = true
			out = append(out, h[:]...)
		}
	}
	return out
}

// MaxCertReqHashes bounds the CA hashes we read from a peer's CERTREQs.
const MaxCertReqHashes = 64

// ParseCertReq reads the Certification Authority field of a received
// CERTREQ payload with encoding 4: a concatenation of 20-byte SHA-1 hashes.
// An empty field is valid (the peer asks for a certificate from any CA).
func ParseCertReq(data []byte) ([][20]byte, error) {
	if len(data)%20 != 0 {
		return nil, fail(ReasonMalformed, "CERTREQ authority field of %d bytes is not a list of SHA-1 hashes", len(data))
	}
	if len(data)/20 > MaxCertReqHashes {
		return nil, fail(ReasonMalformed, "CERTREQ with %d CA hashes exceeds %d", len(data)/20, MaxCertReqHashes)
	}
	out := make([][20]byte, len(data)/20)
	for i := range out {
		copy(out[i][:], data[20*i:])
	}
	return out, nil
}

// SelectCredential honours a peer's CERTREQ: it picks, among our
// credentials (the first being the default), the first whose chain contains
// a CA the peer asked for, and returns it with the certificates to send as
// CERT payloads (encoding 4), end-entity first: our certificate and the
// intermediates up to, but not including, the requested CA (the peer has
// it). With no request, or none we can meet, the default credential and its
// whole chain without the root. Returns nil, nil when creds is empty.
func SelectCredential(creds []*Credential, requested [][20]byte) (*Credential, [][]byte) {
	if len(creds) == 0 {
		return nil, nil
	}
	want := map[[20]byte]bool{}
	for _, h := range requested {
		want[h] = true
	}
	if len(want) > 0 {
		for _, c := range creds {
			for i, ca := range c.path() {
				if i == 0 {
					continue // the end entity itself is no CA
				}
				for _, h := range keyHashes(ca) {
					if want[h] {
						return c, c.certsUpTo(i)
					}
				}
			}
		}
	}
	c := creds[0]
	return c, c.certsUpTo(1 + len(c.Intermediates))
}

// path is the credential's chain: end entity, intermediates, root if known.
func (c *Credential) path() []*x509.Certificate {
	p := append([]*x509.Certificate{c.Leaf}, c.Intermediates...)
	if c.Root != nil {
		p = append(p, c.Root)
	}
	return p
}

// certsUpTo returns the DER of path()[0:n], capped at end entity plus
// intermediates.
func (c *Credential) certsUpTo(n int) [][]byte {
	p := c.path()
	if max := 1 + len(c.Intermediates); n > max {
		n = max
	}
	out := make([][]byte, 0, n)
	for _, cert := range p[:n] {
		out = append(out, cert.Raw)
	}
	return out
}
