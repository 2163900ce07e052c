package config

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/goccy/go-yaml/parser"

	"github.com/spugate/spugate/control/pki"
)

// Fragment sizes: the IP packet of an IKE fragment.
const (
	DefaultFragmentSize = 1280
	MinFragmentSize     = 576
)

// PKIPaths are where certificates, CRLs and keys live, as swanctl's
// folders: relative to the configuration's folder (or absolute), each
// defaulting to its own name. Every file of x509ca and x509crl is loaded;
// a connection's certs and cacerts name files in x509 and x509ca.
type PKIPaths struct {
	// X509 holds our certificates (local certs). A file may hold the
	// intermediates after our certificate.
	X509 string `yaml:"x509"`
	// X509CA holds CA certificates: self-signed ones are trust anchors,
	// the others intermediates that complete chains (strongSwan trusts
	// both as anchors; we want a path to a self-signed anchor, or to a
	// connection's cacerts).
	X509CA string `yaml:"x509ca"`
	// X509CRL holds CRLs, checked for every chain (relaxed: a CA without
	// a CRL is accepted).
	X509CRL string `yaml:"x509crl"`
	// Private holds our private keys, matched to certificates by public
	// key; each must be mode 0600 or 0400. The secrets file may name more
	// (private: {name: {file: ...}}).
	Private string `yaml:"private"`
}

func (p PKIPaths) dir(base, v, def string) string {
	if v == "" {
		v = def
	}
	if filepath.IsAbs(v) {
		return v
	}
	return filepath.Join(base, v)
}

// files lists the regular files of a folder, sorted; a missing folder is
// empty.
func files(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// resolve finds a file named in the configuration: absolute, in its
// folder, or next to the configuration.
func resolve(name, folder, base string) (string, error) {
	if filepath.IsAbs(name) {
		if _, err := os.Stat(name); err != nil {
			return "", err
		}
		return name, nil
	}
	for _, d := range []string{folder, base} {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in %s or %s", name, folder, base)
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// loadPKI loads the trust store and the credentials of connections that
// authenticate with certificates. src is the configuration's text, for
// the lines of errors.
func (c *Config) loadPKI(src []byte) []error {
	need := false
	for _, name := range c.Order {
		conn := c.Connections[name]
		need = need || conn.Local.Method.PubKey() || conn.Remote.Method.PubKey()
	}
	if !need {
		return nil
	}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return []error{fmt.Errorf("config: %s: %v", filepath.Base(c.Path), err)}
	}
	v := &validator{file: file, name: filepath.Base(c.Path)}
	base := filepath.Dir(c.Path)
	x509Dir := c.PKI.dir(base, c.PKI.X509, "x509")
	caDir := c.PKI.dir(base, c.PKI.X509CA, "x509ca")
	crlDir := c.PKI.dir(base, c.PKI.X509CRL, "x509crl")
	keyDir := c.PKI.dir(base, c.PKI.Private, "private")

	var cfg pki.StoreConfig
	caFiles, err := files(caDir)
	if err != nil {
		v.errf([]any{"pki", "x509ca"}, "%v", err)
	}
	for _, f := range caFiles {
		certs, err := pki.LoadCertificates(f)
		if err != nil {
			v.errf([]any{"pki", "x509ca"}, "%v", err)
			continue
		}
		if selfSigned(certs[0]) {
			cfg.CAFiles = append(cfg.CAFiles, f)
		} else {
			cfg.IntermediateFiles = append(cfg.IntermediateFiles, f)
		}
	}
	if cfg.CRLFiles, err = files(crlDir); err != nil {
		v.errf([]any{"pki", "x509crl"}, "%v", err)
	}
	if len(v.errs) > 0 {
		return v.errs
	}
	if c.Trust, err = pki.NewStore(cfg); err != nil {
		v.errf([]any{"pki"}, "%v", err)
		return v.errs
	}

	// Our private keys: the private folder and the secrets file's.
	var keys []*pki.PrivateKey
	keyFiles, err := files(keyDir)
	if err != nil {
		v.errf([]any{"pki", "private"}, "%v", err)
	}
	for _, f := range c.KeyFiles {
		p, err := resolve(f, keyDir, base)
		if err != nil {
			v.errf([]any{"secrets"}, "private key %v", err)
			continue
		}
		keyFiles = append(keyFiles, p)
	}
	for _, f := range keyFiles {
		k, err := pki.LoadPrivateKey(f)
		if err != nil {
			v.errf([]any{"pki", "private"}, "%v", err)
			continue
		}
		keys = append(keys, k)
	}
	if len(v.errs) > 0 {
		return v.errs
	}

	for _, name := range c.Order {
		conn := c.Connections[name]
		at := []any{"connections", name}
		if conn.Local.Method.PubKey() {
			v.localCreds(conn, append(at, "local"), x509Dir, base, keys, c.Trust)
		}
		if conn.Remote.Method.PubKey() {
			v.remotePolicy(conn, append(at, "remote"), caDir, base, c.Trust)
		}
	}
	return v.errs
}

func (v *validator) localCreds(conn *Conn, at []any, x509Dir, base string, keys []*pki.PrivateKey, store *pki.Store) {
	path := func(k ...any) []any { return append(append([]any(nil), at...), k...) }
	a := conn.Local
	for i, name := range a.Certs {
		p, err := resolve(name, x509Dir, base)
		if err != nil {
			v.errf(path("certs", i), "%v", err)
			continue
		}
		certs, err := pki.LoadCertificates(p)
		if err != nil {
			v.errf(path("certs", i), "%v", err)
			continue
		}
		leaf := certs[0]
		var key *pki.PrivateKey
		for _, k := range keys {
			if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(leaf.PublicKey) {
				key = k
				break
			}
		}
		if key == nil {
			v.errf(path("certs", i), "%s: no private key for %q in the private folder or the secrets file", name, pki.FormatDN(leaf.RawSubject))
			continue
		}
		if err := checkFamily(a.Method, key); err != nil {
			v.errf(path("auth"), "%s: %v", name, err)
			continue
		}
		cred, err := pki.NewCredential(leaf, certs[1:], key, store)
		if err != nil {
			v.errf(path("certs", i), "%s: %v", name, err)
			continue
		}
		a.Credentials = append(a.Credentials, cred)
	}
	if len(a.Credentials) == 0 {
		return
	}
	leaf := a.Credentials[0].Leaf
	if a.ID == "" {
		a.Identity = Identity{Type: IDDN, Data: append([]byte(nil), leaf.RawSubject...), Text: pki.FormatDN(leaf.RawSubject)}
		return
	}
	// A peer following RFC 4945 refuses an identity our certificate does
	// not hold: say so now rather than at every negotiation.
	for i, cred := range a.Credentials {
		if err := pki.MatchCert(cred.Leaf, pki.ID{Type: a.Identity.Type, Data: a.Identity.Data}); err != nil {
			v.errf(path("id"), "%s is not in certificate %s: %v", a.Identity, a.Certs[i], err)
		}
	}
}

// checkFamily refuses a key that the round's auth value excludes
// (auth: ecdsa with an RSA certificate).
func checkFamily(m AuthMethod, key *pki.PrivateKey) error {
	if m.Family == "" {
		return nil
	}
	want := map[string]string{"rsa": "RSA", "rsa/pss": "RSA", "ecdsa": "ECDSA", "ed25519": "Ed25519"}[m.Family]
	got := ""
	switch key.Public().(type) {
	case *rsa.PublicKey:
		got = "RSA"
	case *ecdsa.PublicKey:
		got = "ECDSA"
	case ed25519.PublicKey:
		got = "Ed25519"
	}
	if got != want {
		return fmt.Errorf("auth %s needs an %s key, the certificate's is %s", m.Family, want, key)
	}
	return nil
}

func (v *validator) remotePolicy(conn *Conn, at []any, caDir, base string, store *pki.Store) {
	path := func(k ...any) []any { return append(append([]any(nil), at...), k...) }
	a := conn.Remote
	pol := &pki.Policy{RemoteID: pki.ID{Type: a.Identity.Type, Data: a.Identity.Data}}
	for i, name := range a.CACerts {
		p, err := resolve(name, caDir, base)
		if err != nil {
			v.errf(path("cacerts", i), "%v", err)
			continue
		}
		certs, err := pki.LoadCertificates(p)
		if err != nil {
			v.errf(path("cacerts", i), "%v", err)
			continue
		}
		for _, ca := range certs {
			if !ca.IsCA {
				v.errf(path("cacerts", i), "%s: %q is not a CA certificate", name, pki.FormatDN(ca.RawSubject))
			}
		}
		pol.CACerts = append(pol.CACerts, certs...)
	}
	if len(pol.CACerts) == 0 {
		if anchors, _, _ := store.Counts(); anchors == 0 {
			v.errf(path(), "no trust anchor for the peer's certificate: put the CA certificate in the x509ca folder or name it in cacerts")
		}
	}
	a.Policy = pol
}

// SameConn reports whether two loaded connections are configured alike,
// ignoring the certificates and keys loaded for them: a reload that only
// renews a certificate, a key or a CA file keeps the connection's IKE SAs
// (the new credentials serve the next negotiation), as strongSwan does.
func SameConn(a, b *Conn) bool {
	if a == nil || b == nil {
		return a == b
	}
	strip := func(c *Conn) Conn {
		x := *c
		for _, p := range []**Auth{&x.Local, &x.Remote} {
			if *p != nil {
				au := **p
				au.Credentials, au.Policy = nil, nil
				*p = &au
			}
		}
		return x
	}
	sa, sb := strip(a), strip(b)
	return reflect.DeepEqual(&sa, &sb)
}
