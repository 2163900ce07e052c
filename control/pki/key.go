package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"syscall"
)

// maxFile bounds what we read from a certificate, CRL or key file.
const maxFile = 4 << 20

// PrivateKey is our private key. It signs (crypto.Signer) and prints only
// its type and size, whatever the fmt verb, so that a stray log line cannot
// hold key material.
type PrivateKey struct {
	signer crypto.Signer
	desc   string
}

// Public returns the public key.
func (k *PrivateKey) Public() crypto.PublicKey { return k.signer.Public() }

// Sign implements crypto.Signer.
func (k *PrivateKey) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return k.signer.Sign(rand, digest, opts)
}

// String returns the key's type and size, never key material.
func (k *PrivateKey) String() string { return k.desc }

// Format prints the description for every verb.
func (k *PrivateKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.desc) }

// NewPrivateKey wraps a key we generated or got otherwise, after checking
// it is of a type and size we use: RSA of 2048 bits or more, ECDSA on
// P-256, P-384 or P-521, or Ed25519.
func NewPrivateKey(s crypto.Signer) (*PrivateKey, error) {
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinRSABits || pub.N.BitLen() > 16384 {
			return nil, fmt.Errorf("%d bit RSA key: want %d to 16384 bits", pub.N.BitLen(), MinRSABits)
		}
		return &PrivateKey{s, fmt.Sprintf("RSA-%d private key", pub.N.BitLen())}, nil
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return &PrivateKey{s, "ECDSA " + pub.Curve.Params().Name + " private key"}, nil
		}
		return nil, fmt.Errorf("ECDSA key on curve %s: want P-256, P-384 or P-521", pub.Curve.Params().Name)
	case ed25519.PublicKey:
		return &PrivateKey{s, "Ed25519 private key"}, nil
	}
	return nil, fmt.Errorf("%T keys are not supported", s.Public())
}

// LoadPrivateKey reads an unencrypted PEM private key: PKCS#8 ("PRIVATE
// KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). The file
// must be ours and neither group nor world accessible (mode 0600 or 0400):
// a key others can read is refused, naming the mode and the fix. No error
// holds any of the file's bytes.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("pki: private key %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("pki: private key %s is accessible by group or others (mode %04o); run: chmod 600 %s", path, perm, path)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("pki: private key %s is owned by uid %d, not by us (uid %d); run: chown %d %s", path, sys.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("pki: private key %s: %w", path, err)
	}
	defer clear(data)
	if len(data) > maxFile {
		return nil, fmt.Errorf("pki: private key %s is larger than %d bytes", path, maxFile)
	}
	k, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("pki: private key %s: %w", path, err)
	}
	return k, nil
}

// ParsePrivateKeyPEM parses the first private key block of PEM data (see
// LoadPrivateKey). Its errors never quote the data.
func ParsePrivateKeyPEM(data []byte) (*PrivateKey, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("no PEM private key block (want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
		}
		if _, enc := b.Headers["Proc-Type"]; enc || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("encrypted private keys are not supported; store it unencrypted with mode 0600 (openssl pkey -in KEY -out KEY.new)")
		}
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue // EC PARAMETERS, certificates bundled with the key...
		}
		clear(b.Bytes)
		if err != nil {
			// The library's message is dropped: it may describe contents.
			return nil, fmt.Errorf("%s block is not a valid key of that format", b.Type)
		}
		s, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s block holds a %T, which cannot sign", b.Type, key)
		}
		return NewPrivateKey(s)
	}
}

// ParseCertificates reads certificates from PEM ("CERTIFICATE" blocks, in
// order) or, if the data is not PEM, from one DER certificate.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no CERTIFICATE block")
	}
	return out, nil
}

// LoadCertificates reads a PEM (or DER) certificate file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return certs, nil
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("pki: %s is larger than %d bytes", path, maxFile)
	}
	return data, nil
}

// Credential is one of our identities: a certificate, the chain above it
// and the private key.
type Credential struct {
	Leaf          *x509.Certificate
	Intermediates []*x509.Certificate // the leaf's issuer first; no root
	Root          *x509.Certificate   // the trust anchor at the top, if known
	Key           *PrivateKey
}

// LoadCredential reads our certificate (a PEM file whose first certificate
// is ours and whose others may be intermediates), and our private key (see
// LoadPrivateKey), checks that they belong together, and completes the
// chain from the file's certificates and the store's intermediates and
// anchors (store may be nil).
func LoadCredential(certFile, keyFile string, store *Store) (*Credential, error) {
	certs, err := LoadCertificates(certFile)
	if err != nil {
		return nil, err
	}
	key, err := LoadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	c, err := NewCredential(certs[0], certs[1:], key, store)
	if err != nil {
		return nil, fmt.Errorf("pki: %s with %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// NewCredential assembles a credential from a certificate, extra candidate
// intermediates and the key, as LoadCredential does.
func NewCredential(leaf *x509.Certificate, extra []*x509.Certificate, key *PrivateKey, store *Store) (*Credential, error) {
	type eq interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := key.Public().(eq); !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("the private key does not belong to certificate %q", FormatDN(leaf.RawSubject))
	}
	cands := append([]*x509.Certificate(nil), extra...)
	anchors := map[*x509.Certificate]bool{}
	if store != nil {
		st := store.state.Load()
		cands = append(cands, st.intermediates...)
		for _, a := range st.anchors {
			cands = append(cands, a)
			anchors[a] = true
		}
	}
	c := &Credential{Leaf: leaf, Key: key}
	cur := leaf
	for depth := 0; depth < 8 && !isSelfSigned(cur) && !anchors[cur]; depth++ {
		var next *x509.Certificate
		for _, cand := range cands {
			if bytes.Equal(cur.RawIssuer, cand.RawSubject) && cur.CheckSignatureFrom(cand) == nil {
				next = cand
				break
			}
		}
		if next == nil {
			break
		}
		if anchors[next] || isSelfSigned(next) {
			c.Root = next
			break
		}
		c.Intermediates = append(c.Intermediates, next)
		cur = next
	}
	return c, nil
}

// isSelfSigned: issuer equals subject and the certificate's own key
// verifies its signature (CheckSignatureFrom would also demand a CA).
func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}
