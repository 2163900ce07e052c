// Package labca makes certificate authorities and gateway certificates for
// spugate's tests, demos and lab (and for `spuctl pki`): a root CA, an
// intermediate, end-entity certificates with subjectAltNames for every key
// type spugate uses (RSA 2048-4096, ECDSA P-256/P-384, Ed25519), expired and
// not yet valid variants, CRLs, and PEM files written with the right modes
// (keys 0600). The certificates follow strongSwan's `pki` profile closely
// enough that strongSwan verifies them: CA certificates carry a critical
// basicConstraints and keyCertSign|cRLSign, every certificate a subject key
// identifier, issued ones an authority key identifier.
//
// It is not a production CA: keys are generated in memory, serials are
// random, and nothing keeps an issuance log.
package labca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/spugate/spugate/control/pki"
)

// KeyType names a key algorithm and size.
type KeyType string

// Key types.
const (
	RSA2048   KeyType = "rsa2048"
	RSA3072   KeyType = "rsa3072"
	RSA4096   KeyType = "rsa4096"
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	Ed25519   KeyType = "ed25519"
)

// KeyTypes lists every key type, for tests that cover them all.
var KeyTypes = []KeyType{RSA2048, RSA3072, RSA4096, ECDSAP256, ECDSAP384, Ed25519}

// GenerateKey makes a new private key of the type.
func GenerateKey(kt KeyType) (crypto.Signer, error) {
	switch kt {
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	case ECDSAP256, "":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
	return nil, fmt.Errorf("labca: unknown key type %q (want one of %v)", kt, KeyTypes)
}

// Cert is a certificate with its private key.
type Cert struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Template describes a certificate to make. Zero fields take defaults.
type Template struct {
	Subject   string // DN in strongSwan's notation, "C=CH, O=Org, CN=gw"
	DNS       []string
	IPs       []netip.Addr
	Emails    []string
	Key       KeyType       // default ECDSA P-256
	KeyPair   crypto.Signer // use this key instead of generating one
	NotBefore time.Time     // default an hour ago
	NotAfter  time.Time     // default NotBefore plus Lifetime
	Lifetime  time.Duration
	// KeyUsage defaults to digitalSignature for end entities and
	// keyCertSign|cRLSign|digitalSignature for CAs; NoKeyUsage leaves the
	// extension out.
	KeyUsage   x509.KeyUsage
	NoKeyUsage bool
	// ExtKeyUsage defaults to none for CAs, and for end entities to
	// serverAuth, clientAuth and ikeIntermediate (what Windows, macOS and
	// strongSwan's docs ask of a gateway); NoExtKeyUsage leaves it out.
	ExtKeyUsage           []x509.ExtKeyUsage
	UnknownExtKeyUsage    []asn1.ObjectIdentifier
	NoExtKeyUsage         bool
	MaxPathLen            int // CAs: a pathLenConstraint when above 0, none otherwise
	CRLDistributionPoints []string
	// SignatureAlgorithm of the issuer's signature; 0 picks the issuer
	// key's default (x509.SHA256WithRSAPSS for RSA-PSS signed chains).
	SignatureAlgorithm x509.SignatureAlgorithm
	Serial             *big.Int
}

// Expired returns the template made valid for a year that ended a day ago.
func (t Template) Expired() Template {
	now := time.Now().Truncate(time.Second)
	t.NotBefore, t.NotAfter = now.Add(-366*24*time.Hour), now.Add(-24*time.Hour)
	return t
}

// NotYetValid returns the template made valid for a year from tomorrow.
func (t Template) NotYetValid() Template {
	now := time.Now().Truncate(time.Second)
	t.NotBefore, t.NotAfter = now.Add(24*time.Hour), now.Add(366*24*time.Hour)
	return t
}

var oidIKEIntermediate = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 8, 2, 2}

// NewRoot makes a self-signed root CA.
func NewRoot(t Template) (*Cert, error) {
	if t.Subject == "" {
		t.Subject = "C=CH, O=spugate lab, CN=spugate lab root CA"
	}
	if t.Lifetime == 0 {
		t.Lifetime = 10 * 365 * 24 * time.Hour
	}
	return make1(t, true, nil)
}

// NewIntermediate makes a CA certificate issued by ca.
func (ca *Cert) NewIntermediate(t Template) (*Cert, error) {
	if t.Subject == "" {
		t.Subject = "C=CH, O=spugate lab, CN=spugate lab intermediate CA"
	}
	if t.Lifetime == 0 {
		t.Lifetime = 5 * 365 * 24 * time.Hour
	}
	return make1(t, true, ca)
}

// Issue makes an end-entity certificate issued by ca.
func (ca *Cert) Issue(t Template) (*Cert, error) {
	if t.Lifetime == 0 {
		t.Lifetime = 365 * 24 * time.Hour
	}
	return make1(t, false, ca)
}

func serial() (*big.Int, error) {
	// 127 bits keep it positive and within 20 octets (RFC 5280 4.1.2.2).
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func make1(t Template, isCA bool, issuer *Cert) (*Cert, error) {
	key := t.KeyPair
	var err error
	if key == nil {
		if key, err = GenerateKey(t.Key); err != nil {
			return nil, err
		}
	}
	if t.Subject == "" {
		switch {
		case len(t.DNS) > 0:
			t.Subject = "CN=" + t.DNS[0]
		case len(t.IPs) > 0:
			t.Subject = "CN=" + t.IPs[0].String()
		case len(t.Emails) > 0:
			t.Subject = "CN=" + t.Emails[0]
		default:
			return nil, fmt.Errorf("labca: a certificate needs a subject or a subjectAltName")
		}
	}
	subject, err := pki.ParseDN(t.Subject)
	if err != nil {
		return nil, err
	}
	if t.NotBefore.IsZero() {
		t.NotBefore = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	if t.NotAfter.IsZero() {
		t.NotAfter = t.NotBefore.Add(t.Lifetime)
	}
	sn := t.Serial
	if sn == nil {
		if sn, err = serial(); err != nil {
			return nil, err
		}
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pubDER)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		RawSubject:            subject,
		NotBefore:             t.NotBefore,
		NotAfter:              t.NotAfter,
		DNSNames:              t.DNS,
		EmailAddresses:        t.Emails,
		SubjectKeyId:          skid,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		CRLDistributionPoints: t.CRLDistributionPoints,
		SignatureAlgorithm:    t.SignatureAlgorithm,
	}
	for _, a := range t.IPs {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(a.AsSlice()))
	}
	switch {
	case t.NoKeyUsage:
	case t.KeyUsage != 0:
		tmpl.KeyUsage = t.KeyUsage
	case isCA:
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	default:
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	switch {
	case t.NoExtKeyUsage:
	case len(t.ExtKeyUsage) > 0 || len(t.UnknownExtKeyUsage) > 0:
		tmpl.ExtKeyUsage, tmpl.UnknownExtKeyUsage = t.ExtKeyUsage, t.UnknownExtKeyUsage
	case !isCA:
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		tmpl.UnknownExtKeyUsage = []asn1.ObjectIdentifier{oidIKEIntermediate}
	}
	if isCA && t.MaxPathLen > 0 {
		tmpl.MaxPathLen = t.MaxPathLen
	} else {
		tmpl.MaxPathLen = -1
	}
	parent, signer := tmpl, key
	if issuer != nil {
		parent, signer = issuer.Cert, issuer.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("labca: %s: %w", t.Subject, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &Cert{Cert: c, Key: key}, nil
}

// subjectKeyID is RFC 5280 4.2.1.2 method 1: the SHA-1 of the
// subjectPublicKey bits, as strongSwan and OpenSSL compute it.
func subjectKeyID(spki []byte) ([]byte, error) {
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, err
	}
	h := sha1.Sum(info.PublicKey.Bytes)
	return h[:], nil
}

// CRL makes a CRL of ca listing the revoked certificates, valid from
// thisUpdate (now if zero) to nextUpdate (a week later if zero), with CRL
// number number.
func (ca *Cert) CRL(revoked []*x509.Certificate, number int64, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	if thisUpdate.IsZero() {
		thisUpdate = time.Now().Add(-time.Minute).Truncate(time.Second)
	}
	if nextUpdate.IsZero() {
		nextUpdate = thisUpdate.Add(7 * 24 * time.Hour)
	}
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(number),
		ThisUpdate: thisUpdate,
		NextUpdate: nextUpdate,
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   c.SerialNumber,
			RevocationTime: thisUpdate,
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("labca: CRL of %s: %w", pki.FormatDN(ca.Cert.RawSubject), err)
	}
	return der, nil
}

// WriteCertPEM writes certificates as PEM, mode 0644.
func WriteCertPEM(path string, certs ...*x509.Certificate) error {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return writeFile(path, out, 0o644)
}

// WriteCRLPEM writes a DER CRL as PEM, mode 0644.
func WriteCRLPEM(path string, der []byte) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)
}

// WriteKeyPEM writes a private key as unencrypted PKCS#8 PEM, mode 0600
// whatever the umask.
func WriteKeyPEM(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("labca: %s: %w", path, err)
	}
	defer clear(der)
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// writeFile writes through a temporary file in the same directory and
// renames it into place, so that a reader (a Reload) never sees half a
// file, and the mode is set before any data is in it.
func writeFile(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("labca: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("labca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("labca: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("labca: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("labca: %w", err)
	}
	return nil
}
