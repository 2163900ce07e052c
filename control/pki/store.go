package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what a peer's CERT payloads may hold, checked before any
// parsing.
type Limits struct {
	MaxCerts      int // CERT payloads per message (any encoding)
	MaxCertBytes  int // one payload's data
	MaxTotalBytes int // all payloads' data together
}

// DefaultLimits allow an end-entity certificate and a few intermediates of
// RSA-4096 size with room to spare; an IKE_AUTH message is at most 64 KiB.
var DefaultLimits = Limits{MaxCerts: 8, MaxCertBytes: 16 << 10, MaxTotalBytes: 48 << 10}

// StoreConfig says where the trust material lives.
type StoreConfig struct {
	// CAFiles hold trust anchors (PEM, possibly several certificates, or
	// one DER certificate). Each must be a CA (basicConstraints cA, or an
	// X.509 v1 self-signed certificate).
	CAFiles []string
	// IntermediateFiles hold CA certificates that are not trusted by
	// themselves but complete chains: peers that do not send their
	// intermediates, and our own chain.
	IntermediateFiles []string
	// CRLFiles hold CRLs (PEM "X509 CRL" blocks, or one DER CRL).
	CRLFiles []string
	// CACerts, IntermediateCerts and CRLs are more of the same held in
	// memory (iked's VICI-loaded credentials), checked as the files' are.
	CACerts, IntermediateCerts []*x509.Certificate
	CRLs                       []*x509.RevocationList
	// Limits for received CERT payloads; zero fields take DefaultLimits.
	Limits Limits
	// Now is the clock (time.Now if nil); tests set it.
	Now func() time.Time
}

// Store holds trust anchors, intermediate CAs and CRLs, and verifies peers'
// certificate chains against them. It is safe for concurrent use: Reload
// swaps in a complete new state while verifications go on with the old one.
type Store struct {
	cfg    StoreConfig
	mu     sync.Mutex // serialises Reload
	state  atomic.Pointer[storeState]
	limits Limits
}

type storeState struct {
	anchors       []*x509.Certificate
	intermediates []*x509.Certificate
	roots         *x509.CertPool
	inter         *x509.CertPool
	crls          map[string][]*crl // by the CRL's raw issuer DN
	ncrl          int
}

type crl struct {
	file    string
	list    *x509.RevocationList
	revoked map[string]bool // serial numbers, as hex
	// verified caches the outcome of checking the CRL's signature with an
	// issuer certificate, by the issuer's SHA-256.
	verified sync.Map
}

// NewStore loads the files of cfg.
func NewStore(cfg StoreConfig) (*Store, error) {
	s := &Store{cfg: cfg, limits: cfg.Limits}
	if s.limits.MaxCerts <= 0 {
		s.limits.MaxCerts = DefaultLimits.MaxCerts
	}
	if s.limits.MaxCertBytes <= 0 {
		s.limits.MaxCertBytes = DefaultLimits.MaxCertBytes
	}
	if s.limits.MaxTotalBytes <= 0 {
		s.limits.MaxTotalBytes = DefaultLimits.MaxTotalBytes
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload re-reads the CA, intermediate and CRL files. On any error it
// returns it and keeps the state it had, so a half-written file never
// leaves the gateway without its anchors or CRLs.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	if err != nil {
		return err
	}
	s.state.Store(st)
	return nil
}

func (s *Store) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Store) load() (*storeState, error) {
	st := &storeState{roots: x509.NewCertPool(), inter: x509.NewCertPool(), crls: map[string][]*crl{}}
	seen := map[[32]byte]bool{}
	add := func(src string, certs []*x509.Certificate, anchor bool) error {
		for _, c := range certs {
			if !isCA(c) {
				return fmt.Errorf("pki: %s: %q is not a CA certificate (no basicConstraints cA)", src, FormatDN(c.RawSubject))
			}
			if h := sha256.Sum256(c.Raw); !seen[h] {
				seen[h] = true
				if anchor {
					st.anchors = append(st.anchors, c)
					st.roots.AddCert(c)
				} else {
					st.intermediates = append(st.intermediates, c)
					st.inter.AddCert(c)
				}
			}
		}
		return nil
	}
	for _, anchor := range []bool{true, false} {
		files, mem := s.cfg.CAFiles, s.cfg.CACerts
		if !anchor {
			files, mem = s.cfg.IntermediateFiles, s.cfg.IntermediateCerts
		}
		for _, f := range files {
			certs, err := LoadCertificates(f)
			if err != nil {
				return nil, err
			}
			if err := add(f, certs, anchor); err != nil {
				return nil, err
			}
		}
		if err := add("loaded certificate", mem, anchor); err != nil {
			return nil, err
		}
	}
	known := append(append([]*x509.Certificate(nil), st.anchors...), st.intermediates...)
	type crlSource struct {
		file  string
		lists []*x509.RevocationList
	}
	var sources []crlSource
	for _, f := range s.cfg.CRLFiles {
		lists, err := loadCRLs(f)
		if err != nil {
			return nil, err
		}
		sources = append(sources, crlSource{f, lists})
	}
	if len(s.cfg.CRLs) > 0 {
		sources = append(sources, crlSource{"loaded CRL", s.cfg.CRLs})
	}
	for _, src := range sources {
		f := src.file
		for _, l := range src.lists {
			c := &crl{file: f, list: l, revoked: map[string]bool{}}
			for _, e := range l.RevokedCertificateEntries {
				c.revoked[e.SerialNumber.Text(16)] = true
			}
			// A CRL from one of our CAs must verify now; one from a CA we
			// only meet in a peer's chain is checked when used.
			var issuers []*x509.Certificate
			for _, k := range known {
				if bytes.Equal(k.RawSubject, l.RawIssuer) {
					issuers = append(issuers, k)
				}
			}
			if len(issuers) > 0 {
				ok := false
				for _, k := range issuers {
					ok = ok || c.verifiedBy(k)
				}
				if !ok {
					return nil, fmt.Errorf("pki: %s: CRL of %q is not signed by that CA (or the CA lacks cRLSign)", f, FormatDN(l.RawIssuer))
				}
			}
			st.crls[string(l.RawIssuer)] = append(st.crls[string(l.RawIssuer)], c)
			st.ncrl++
		}
	}
	return st, nil
}

func isCA(c *x509.Certificate) bool {
	return c.BasicConstraintsValid && c.IsCA || c.Version == 1 && isSelfSigned(c)
}

func loadCRLs(path string) ([]*x509.RevocationList, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "X509 CRL" {
				ders = append(ders, b.Bytes)
			}
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("pki: %s: no X509 CRL block", path)
		}
	} else {
		ders = [][]byte{data}
	}
	var out []*x509.RevocationList
	for _, d := range ders {
		l, err := x509.ParseRevocationList(d)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: %w", path, err)
		}
		out = append(out, l)
	}
	return out, nil
}

func (c *crl) verifiedBy(issuer *x509.Certificate) bool {
	key := sha256.Sum256(issuer.Raw)
	if v, ok := c.verified.Load(key); ok {
		return v.(bool)
	}
	ok := c.list.CheckSignatureFrom(issuer) == nil
	c.verified.Store(key, ok)
	return ok
}

// Config is what the store was made from: a caller extends it (with
// certificates loaded in memory) for a new store.
func (s *Store) Config() StoreConfig { return s.cfg }

// Anchors returns the trust anchors.
func (s *Store) Anchors() []*x509.Certificate {
	return append([]*x509.Certificate(nil), s.state.Load().anchors...)
}

// CAs returns the trust anchors and then the intermediate CAs.
func (s *Store) CAs() []*x509.Certificate {
	st := s.state.Load()
	return append(append([]*x509.Certificate(nil), st.anchors...), st.intermediates...)
}

// Counts reports how many anchors, intermediates and CRLs are loaded.
func (s *Store) Counts() (anchors, intermediates, crls int) {
	st := s.state.Load()
	return len(st.anchors), len(st.intermediates), st.ncrl
}

// CertReq builds the Certification Authority field of the CERTREQ we send
// for a connection: the connection's cacerts when it has some, else every
// CA we know (anchors and intermediates), as strongSwan does.
func (s *Store) CertReq(p *Policy) []byte {
	if p != nil && len(p.CACerts) > 0 {
		return CertReqData(p.CACerts)
	}
	return CertReqData(s.CAs())
}

// Policy is what a connection requires of its peer's certificate.
type Policy struct {
	// RemoteID is the configured remote identity (control/config's
	// Identity as type and data); zero (IDAny) accepts any identity that
	// the certificate contains. See MatchPattern.
	RemoteID ID
	// CACerts, when not empty, are the connection's cacerts: the peer's
	// chain must pass through one of them (as its anchor or as an
	// intermediate), as strongSwan's CA constraint does. As in strongSwan,
	// where swanctl loads them as trusted CA certificates, they are also
	// trust anchors for this verification.
	CACerts []*x509.Certificate
}

// CertPayload is a received CERT payload: its encoding and data.
type CertPayload struct {
	Encoding uint8
	Data     []byte
}

// PeerChain is a peer's verified certificate chain.
type PeerChain struct {
	Leaf  *x509.Certificate
	Chain []*x509.Certificate // Leaf first, the trust anchor last
}

// VerifyPeer checks a peer's certificates and identity before its AUTH
// payload is verified (with Verify and the returned Leaf):
//
//  1. the CERT payloads fit the Limits; the first with encoding 4 is the
//     end entity, the others with encoding 4 are candidate intermediates,
//     other encodings are ignored (as strongSwan does without hash-and-URL);
//  2. the peer's identity matches the connection's RemoteID pattern;
//  3. every X.509 payload parses;
//  4. the end entity's keyUsage, if present, has digitalSignature or
//     nonRepudiation (RFC 4945 5.1.3.2, strongSwan's X509_IKE_COMPLIANT),
//     and its extendedKeyUsage, if present, has serverAuth, clientAuth,
//     ikeIntermediate (1.3.6.1.5.5.8.2.2), id-kp-ipsecIKE
//     (1.3.6.1.5.5.7.3.17) or anyExtendedKeyUsage;
//  5. the identity is in the certificate (MatchCert, RFC 4945 3.1);
//  6. a chain to a trust anchor exists with crypto/x509 (validity of every
//     certificate at Now, CA flags, path lengths, name constraints,
//     signatures; EKU nesting not enforced), using the received
//     intermediates and ours;
//  7. no certificate of the chain is revoked by a CRL of its issuer (a CRL
//     past its nextUpdate still counts; a CA without a CRL is accepted, as
//     strongSwan's default non-strict policy);
//  8. the chain passes through one of the policy's CACerts, if any.
//
// The error carries the Reason of the first check that failed.
func (s *Store) VerifyPeer(payloads []CertPayload, peer ID, p *Policy) (*PeerChain, error) {
	if p == nil {
		p = &Policy{}
	}
	var ders [][]byte
	if len(payloads) > s.limits.MaxCerts {
		return nil, fail(ReasonMalformed, "%d CERT payloads exceed the limit of %d", len(payloads), s.limits.MaxCerts)
	}
	total := 0
	for i, pl := range payloads {
		if len(pl.Data) > s.limits.MaxCertBytes {
			return nil, fail(ReasonMalformed, "CERT payload %d of %d bytes exceeds %d", i+1, len(pl.Data), s.limits.MaxCertBytes)
		}
		if total += len(pl.Data); total > s.limits.MaxTotalBytes {
			return nil, fail(ReasonMalformed, "CERT payloads exceed %d bytes together", s.limits.MaxTotalBytes)
		}
		if pl.Encoding == CertX509Signature {
			ders = append(ders, pl.Data)
		}
	}
	if len(ders) == 0 {
		return nil, fail(ReasonMalformed, "no CERT payload with an X.509 certificate (encoding %d)", CertX509Signature)
	}
	if !MatchPattern(p.RemoteID, peer) {
		return nil, fail(ReasonIDMismatch, "peer identity %q does not match the configured remote identity %q", peer.String(), p.RemoteID.String())
	}
	certs, err := ParsePeerCerts(ders)
	if err != nil {
		return nil, err
	}
	leaf := certs[0]
	if err := CheckUsage(leaf); err != nil {
		return nil, err
	}
	if err := MatchCert(leaf, peer); err != nil {
		return nil, err
	}
	st := s.state.Load()
	chains, err := s.buildChains(st, leaf, certs[1:], p)
	if err != nil {
		return nil, err
	}
	var first error
	for _, ch := range chains {
		err := st.checkRevoked(ch)
		if err == nil {
			err = checkCAConstraint(ch, p)
		}
		if err == nil {
			return &PeerChain{Leaf: leaf, Chain: ch}, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// ParsePeerCerts parses received DER certificates, each a CERT payload's
// data; any that does not parse makes the whole set malformed.
func ParsePeerCerts(ders [][]byte) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, failWrap(ReasonMalformed, err, "CERT payload %d (%d bytes) is not a valid X.509 certificate", i+1, len(d))
		}
		out = append(out, c)
	}
	return out, nil
}

var (
	oidIKEIntermediate = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 8, 2, 2}
	oidIPsecIKE        = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 17}
)

// CheckUsage applies the keyUsage and extendedKeyUsage rules to a peer's
// end-entity certificate (see VerifyPeer, step 4). strongSwan checks the
// keyUsage the same way and ignores extendedKeyUsage entirely for IKE; RFC
// 4945 5.1.3.12 accepts only id-kp-ipsecIKE and anyExtendedKeyUsage. We
// accept the union of what deployed certificates carry (serverAuth and
// clientAuth, which Windows and macOS clients want, and strongSwan's
// ikeIntermediate) and RFC 4945's, and refuse a certificate whose EKU says
// it is for something else only (codeSigning, emailProtection...).
func CheckUsage(c *x509.Certificate) error {
	if c.KeyUsage != 0 && c.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fail(ReasonKeyUsage, "certificate %q has keyUsage without digitalSignature or nonRepudiation", FormatDN(c.RawSubject))
	}
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range c.ExtKeyUsage {
		switch u {
		case x509.ExtKeyUsageAny, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth:
			return nil
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		if o.Equal(oidIKEIntermediate) || o.Equal(oidIPsecIKE) {
			return nil
		}
	}
	return fail(ReasonKeyUsage, "certificate %q has extendedKeyUsage without serverAuth, clientAuth, ikeIntermediate or ipsecIKE", FormatDN(c.RawSubject))
}

func (s *Store) buildChains(st *storeState, leaf *x509.Certificate, received []*x509.Certificate, p *Policy) ([][]*x509.Certificate, error) {
	roots := st.roots
	if len(p.CACerts) > 0 {
		roots = roots.Clone()
		for _, c := range p.CACerts {
			roots.AddCert(c)
		}
	}
	inter := st.inter
	if len(received) > 0 {
		inter = inter.Clone()
		for _, c := range received {
			inter.AddCert(c)
		}
	}
	now := s.now()
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// EKU is judged on the end entity alone by CheckUsage.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}
	chains, err := leaf.Verify(opts)
	if err == nil {
		return chains, nil
	}
	name := FormatDN(leaf.RawSubject)
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	var crit x509.UnhandledCriticalExtension
	var insecure x509.InsecureAlgorithmError
	switch {
	case errors.As(err, &inv):
		switch inv.Reason {
		case x509.Expired:
			if e := timeError(inv.Cert, now); e != nil {
				return nil, e
			}
		case x509.CANotAuthorizedForExtKeyUsage, x509.IncompatibleUsage:
			return nil, failWrap(ReasonKeyUsage, err, "chain of %q", name)
		}
		return nil, failWrap(ReasonUnknownCA, err, "no valid chain for %q", name)
	case errors.As(err, &unk):
		if e := diagnoseTime(leaf, opts, now); e != nil {
			return nil, e
		}
		return nil, failWrap(ReasonUnknownCA, err, "no chain to a trust anchor for %q", name)
	case errors.As(err, &crit):
		return nil, failWrap(ReasonMalformed, err, "certificate %q", name)
	case errors.As(err, &insecure):
		return nil, failWrap(ReasonBadSignature, err, "certificate chain of %q", name)
	}
	return nil, failWrap(ReasonUnknownCA, err, "no valid chain for %q", name)
}

func timeError(c *x509.Certificate, now time.Time) *Error {
	if c == nil {
		return nil
	}
	switch {
	case now.Before(c.NotBefore):
		return fail(ReasonNotYetValid, "certificate %q is not valid before %s", FormatDN(c.RawSubject), c.NotBefore.UTC().Format(time.RFC3339))
	case now.After(c.NotAfter):
		return fail(ReasonExpired, "certificate %q expired at %s", FormatDN(c.RawSubject), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// diagnoseTime tells an expired or not yet valid CA from an unknown one:
// crypto/x509 reports a chain whose intermediate or anchor is out of date
// only as "unknown authority". If a chain exists at a moment when the end
// entity is valid, the certificate of it that is out of date now is the
// reason.
func diagnoseTime(leaf *x509.Certificate, opts x509.VerifyOptions, now time.Time) *Error {
	span := leaf.NotAfter.Sub(leaf.NotBefore)
	for _, t := range []time.Time{leaf.NotBefore.Add(span / 2), leaf.NotBefore.Add(time.Second), leaf.NotAfter.Add(-time.Second)} {
		opts.CurrentTime = t
		chains, err := leaf.Verify(opts)
		if err != nil {
			continue
		}
		for _, ch := range chains {
			for _, c := range ch {
				if e := timeError(c, now); e != nil {
					return e
				}
			}
		}
	}
	return nil
}

// checkRevoked looks each certificate of the chain but the anchor up in
// the CRLs of its issuer, the next certificate of the chain.
func (st *storeState) checkRevoked(chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		for _, l := range st.crls[string(c.RawIssuer)] {
			if l.revoked[c.SerialNumber.Text(16)] && l.verifiedBy(issuer) {
				return fail(ReasonRevoked, "certificate %q (serial %s) is revoked by the CRL of %q in %s", FormatDN(c.RawSubject), c.SerialNumber.Text(16), FormatDN(issuer.RawSubject), l.file)
			}
		}
	}
	return nil
}

func checkCAConstraint(chain []*x509.Certificate, p *Policy) error {
	if len(p.CACerts) == 0 {
		return nil
	}
	for _, c := range chain[1:] {
		for _, ca := range p.CACerts {
			if bytes.Equal(c.Raw, ca.Raw) {
				return nil
			}
		}
	}
	return fail(ReasonCANotAllowed, "chain of %q passes through none of the connection's %d cacerts", FormatDN(chain[0].RawSubject), len(p.CACerts))
}
