package strongswan

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// KeyType is a key algorithm and size pki --gen makes.
type KeyType string

// Key types. pki (5.9.8, openssl plugin) makes all of them, Ed25519 CAs
// included.
const (
	ECDSA256 KeyType = "ecdsa-256"
	ECDSA384 KeyType = "ecdsa-384"
	RSA2048  KeyType = "rsa-2048"
	RSA3072  KeyType = "rsa-3072"
	RSA4096  KeyType = "rsa-4096"
	Ed25519  KeyType = "ed25519"
)

func (k KeyType) genArgs() ([]string, error) {
	switch k {
	case ECDSA256:
		return []string{"--type", "ecdsa", "--size", "256"}, nil
	case ECDSA384:
		return []string{"--type", "ecdsa", "--size", "384"}, nil
	case RSA2048:
		return []string{"--type", "rsa", "--size", "2048"}, nil
	case RSA3072:
		return []string{"--type", "rsa", "--size", "3072"}, nil
	case RSA4096:
		return []string{"--type", "rsa", "--size", "4096"}, nil
	case Ed25519:
		return []string{"--type", "ed25519"}, nil
	}
	return nil, fmt.Errorf("pki: key type %q unknown", k)
}

// IsRSA reports whether k is an RSA key type.
func (k KeyType) IsRSA() bool { return strings.HasPrefix(string(k), "rsa-") }

// PKI makes keys, certificates and CRLs with strongSwan's pki tool into
// a directory (t.TempDir() or a lab's log directory). Everything is PEM.
type PKI struct {
	Dir string
}

// NewPKI returns a PKI writing into dir, which it creates.
func NewPKI(dir string) (*PKI, error) {
	if _, err := os.Stat(PKIPath); err != nil {
		return nil, fmt.Errorf("pki: %s missing (Debian package strongswan-pki): %w", PKIPath, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &PKI{Dir: dir}, nil
}

// CertOptions shape a certificate. Zero values give an ECDSA P-256 key,
// "CN=<name>, O=spugate lab", no SANs, valid from now for three years.
type CertOptions struct {
	Key KeyType
	// KeyPEM reuses an existing private key instead of generating one.
	KeyPEM []byte
	DN     string
	// SANs are subjectAltNames: IP addresses, DNS names, emails
	// (pki tells them apart by their form).
	SANs []string
	// Flags are extendedKeyUsage and other pki flags: serverAuth,
	// clientAuth, ikeIntermediate, crlSign, ocspSigning.
	Flags []string
	// NotBefore and NotAfter set the validity (UTC, second precision);
	// zero NotBefore is now, zero NotAfter is NotBefore + Lifetime.
	NotBefore time.Time
	NotAfter  time.Time
	// Lifetime default 3 years.
	Lifetime time.Duration
	// PSS signs the certificate with RSASSA-PSS (RSA issuers only).
	PSS bool
	// Digest for the signature (sha256, sha384, sha512...); default
	// follows the issuer's key.
	Digest string
	// PathLen, when set (>= 0 through a pointer), limits a CA's path.
	PathLen *int
	// CRLURIs are CRL distribution points to include.
	CRLURIs []string
	// Args are further pki arguments, as pki --issue/--self take them.
	Args []string
}

// Cert is a certificate with its private key.
type Cert struct {
	Name     string
	Key      KeyType
	DN       string
	SANs     []string
	Serial   string // lower-case hex, as given to pki
	IsCA     bool
	Issuer   *Cert // nil for a self-signed certificate
	CertPEM  []byte
	KeyPEM   []byte
	CertPath string
	KeyPath  string
}

// CRL is a certificate revocation list.
type CRL struct {
	Name   string
	Issuer *Cert
	PEM    []byte
	Path   string
}

// NewCA makes a self-signed root CA.
func (p *PKI) NewCA(name string, o CertOptions) (*Cert, error) {
	return p.make(name, nil, true, o)
}

// NewIntermediate makes an intermediate CA signed by issuer.
func (p *PKI) NewIntermediate(name string, issuer *Cert, o CertOptions) (*Cert, error) {
	if issuer == nil {
		return nil, errors.New("pki: intermediate without issuer")
	}
	return p.make(name, issuer, true, o)
}

// NewCert makes an end-entity certificate signed by issuer.
func (p *PKI) NewCert(name string, issuer *Cert, o CertOptions) (*Cert, error) {
	if issuer == nil {
		return nil, errors.New("pki: certificate without issuer")
	}
	return p.make(name, issuer, false, o)
}

func (p *PKI) make(name string, issuer *Cert, ca bool, o CertOptions) (*Cert, error) {
	if !fileNameRe.MatchString(name) {
		return nil, fmt.Errorf("pki: name %q: want %s", name, fileNameRe)
	}
	if o.Key == "" {
		o.Key = ECDSA256
	}
	if o.DN == "" {
		o.DN = "CN=" + name + ", O=spugate lab"
	}
	serial := make([]byte, 8)
	if _, err := rand.Read(serial); err != nil {
		return nil, err
	}
	serial[0] &= 0x7f // a positive INTEGER without a leading zero byte
	serial[0] |= 0x10
	c := &Cert{Name: name, Key: o.Key, DN: o.DN, SANs: o.SANs, Serial: hex.EncodeToString(serial), IsCA: ca, Issuer: issuer,
		CertPath: filepath.Join(p.Dir, name+".pem"), KeyPath: filepath.Join(p.Dir, name+".key")}
	if o.KeyPEM != nil {
		c.KeyPEM = o.KeyPEM
	} else {
		gen, err := o.Key.genArgs()
		if err != nil {
			return nil, err
		}
		key, err := runPKI(append([]string{"--gen", "--outform", "pem"}, gen...)...)
		if err != nil {
			return nil, fmt.Errorf("pki: key for %s: %w", name, err)
		}
		c.KeyPEM = key
	}
	if err := os.WriteFile(c.KeyPath, c.KeyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var args []string
	if issuer == nil {
		args = []string{"--self", "--in", c.KeyPath, "--type", "priv"}
	} else {
		if o.PSS && !issuer.Key.IsRSA() {
			return nil, fmt.Errorf("pki: %s: PSS asked but issuer %s has a %s key", name, issuer.Name, issuer.Key)
		}
		args = []string{"--issue", "--in", c.KeyPath, "--type", "priv", "--cacert", issuer.CertPath, "--cakey", issuer.KeyPath}
	}
	if o.PSS && issuer == nil && !o.Key.IsRSA() {
		return nil, fmt.Errorf("pki: %s: PSS asked for a %s key", name, o.Key)
	}
	args = append(args, "--dn", o.DN, "--serial", c.Serial, "--outform", "pem")
	for _, s := range o.SANs {
		args = append(args, "--san", s)
	}
	for _, f := range o.Flags {
		args = append(args, "--flag", f)
	}
	if ca {
		args = append(args, "--ca")
	}
	if o.PathLen != nil {
		args = append(args, "--pathlen", fmt.Sprint(*o.PathLen))
	}
	for _, u := range o.CRLURIs {
		args = append(args, "--crl", u)
	}
	if o.PSS {
		args = append(args, "--rsa-padding", "pss")
	}
	if o.Digest != "" {
		args = append(args, "--digest", o.Digest)
	}
	if !o.NotBefore.IsZero() || !o.NotAfter.IsZero() {
		nb, na := o.NotBefore, o.NotAfter
		if nb.IsZero() {
			nb = time.Now()
		}
		if na.IsZero() {
			life := o.Lifetime
			if life <= 0 {
				life = 3 * 365 * 24 * time.Hour
			}
			na = nb.Add(life)
		}
		const form = "%Y-%m-%d %H:%M:%S"
		args = append(args, "--dateform", form,
			"--not-before", nb.UTC().Format(time.DateTime), "--not-after", na.UTC().Format(time.DateTime))
	} else if o.Lifetime > 0 {
		days := int((o.Lifetime + 24*time.Hour - 1) / (24 * time.Hour))
		args = append(args, "--lifetime", fmt.Sprint(days))
	}
	args = append(args, o.Args...)
	cert, err := runPKI(args...)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate %s: %w", name, err)
	}
	c.CertPEM = cert
	if err := os.WriteFile(c.CertPath, cert, 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return c, nil
}

// CRLOptions shape a CRL.
type CRLOptions struct {
	// Reason for every revocation: key-compromise (default),
	// ca-compromise, affiliation-changed, superseded,
	// cessation-of-operation, certificate-hold.
	Reason string
	// Lifetime until nextUpdate; default pki's 15 days.
	Lifetime time.Duration
	PSS      bool
	Args     []string
}

// NewCRL makes a CRL signed by issuer revoking the given certificates.
func (p *PKI) NewCRL(name string, issuer *Cert, revoked []*Cert, o CRLOptions) (*CRL, error) {
	if !fileNameRe.MatchString(name) {
		return nil, fmt.Errorf("pki: name %q: want %s", name, fileNameRe)
	}
	if issuer == nil || !issuer.IsCA {
		return nil, fmt.Errorf("pki: CRL %s needs a CA issuer", name)
	}
	reason := o.Reason
	if reason == "" {
		reason = "key-compromise"
	}
	args := []string{"--signcrl", "--cacert", issuer.CertPath, "--cakey", issuer.KeyPath, "--outform", "pem"}
	for _, r := range revoked {
		if r.Issuer != issuer {
			return nil, fmt.Errorf("pki: CRL %s by %s cannot revoke %s, issued by another CA", name, issuer.Name, r.Name)
		}
		args = append(args, "--reason", reason, "--serial", r.Serial)
	}
	if o.Lifetime > 0 {
		args = append(args, "--lifetime", fmt.Sprint(int((o.Lifetime+24*time.Hour-1)/(24*time.Hour))))
	}
	if o.PSS {
		args = append(args, "--rsa-padding", "pss")
	}
	args = append(args, o.Args...)
	out, err := runPKI(args...)
	if err != nil {
		return nil, fmt.Errorf("pki: CRL %s: %w", name, err)
	}
	crl := &CRL{Name: name, Issuer: issuer, PEM: out, Path: filepath.Join(p.Dir, name+".crl.pem")}
	if err := os.WriteFile(crl.Path, out, 0o644); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return crl, nil
}

// Verify checks cert's chain up to the trusted root ca with pki --verify
// (intermediates are taken from cert's issuers), and against crls. It
// returns pki's output as the error when the certificate is not valid.
func (p *PKI) Verify(cert, ca *Cert, crls ...*CRL) error {
	args := []string{"--verify", "--in", cert.CertPath, "--cacert", ca.CertPath}
	for is := cert.Issuer; is != nil && is != ca; is = is.Issuer {
		args = append(args, "--cacert", is.CertPath)
	}
	for _, c := range crls {
		args = append(args, "--crl", c.Path)
	}
	out, err := runPKI(args...)
	if err != nil {
		return fmt.Errorf("pki: verify %s: %w", cert.Name, err)
	}
	if !bytes.Contains(out, []byte("certificate trusted")) {
		return fmt.Errorf("pki: verify %s: %s", cert.Name, bytes.TrimSpace(out))
	}
	return nil
}

// Print returns pki --print of the certificate, for reports.
func (c *Cert) Print() (string, error) {
	out, err := runPKI("--print", "--in", c.CertPath)
	return string(out), err
}

// Chain returns c and the intermediates above it, up to but excluding
// the self-signed root: what a peer sends in its CERT payloads.
func (c *Cert) Chain() []*Cert {
	var out []*Cert
	for x := c; x != nil && x.Issuer != nil; x = x.Issuer {
		out = append(out, x)
	}
	return out
}

// Root returns the self-signed certificate at the top of c's chain.
func (c *Cert) Root() *Cert {
	x := c
	for x.Issuer != nil {
		x = x.Issuer
	}
	return x
}

// AddIdentity puts c and its key in the instance's x509/ and private/
// folders and the intermediates above it in x509ca/, so that charon can
// send its whole chain (the root stays with the relying party). It
// returns the certificate's file name for Auth.Certs.
func (f *Files) AddIdentity(c *Cert) string {
	f.X509 = put(f.X509, c.Name+".pem", c.CertPEM)
	f.Private = put(f.Private, c.Name+".key", c.KeyPEM)
	for _, is := range c.Chain()[1:] {
		f.X509CA = put(f.X509CA, is.Name+".pem", is.CertPEM)
	}
	return c.Name + ".pem"
}

// AddCA trusts ca (x509ca/) and returns its file name for Auth.CACerts.
func (f *Files) AddCA(ca *Cert) string {
	f.X509CA = put(f.X509CA, ca.Name+".pem", ca.CertPEM)
	return ca.Name + ".pem"
}

// AddCRL puts crl in x509crl/.
func (f *Files) AddCRL(crl *CRL) {
	f.X509CRL = put(f.X509CRL, crl.Name+".pem", crl.PEM)
}

func put(m map[string][]byte, name string, data []byte) map[string][]byte {
	if m == nil {
		m = map[string][]byte{}
	}
	m[name] = data
	return m
}

// runPKI runs pki and returns its stdout. pki's stderr carries noise
// (Debian's TPM plugin cannot load its library) and goes into the error
// only when pki fails.
func runPKI(args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, PKIPath, args...)
	// Dates are given in UTC; pki reads them as local time.
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("pki %s: %w: %s %s", args[0], err, bytes.TrimSpace(stdout.Bytes()), pkiNoise(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// pkiNoise drops the TPM plugin's complaints from pki's stderr.
func pkiNoise(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if l == "" || strings.Contains(l, "TPM 2.0") || strings.Contains(l, "plugin 'tpm'") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "; ")
}
