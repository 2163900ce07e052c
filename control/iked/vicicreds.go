package iked

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/vici"
)

// viciCreds are the certificates, keys and authorities VICI clients
// loaded (swanctl --load-all loads the x509, x509ca, x509crl and private
// folders beside its swanctl.conf): a credential set beside the files
// iked's configuration names, consulted by connections loaded over VICI
// (their certs are data, not file names) and, for the CAs and CRLs, by
// every connection's peer verification. Kept in memory only, until iked
// stops or clear-creds, as charon's are. Under reloadMu.
type viciCreds struct {
	certs  []*x509.Certificate        // end entities (x509/), in load order
	cas    []*x509.Certificate        // x509ca/: anchors and intermediates
	crls   []*x509.RevocationList     // x509crl/
	keys   map[string]*pki.PrivateKey // by keyID
	kids   []string                   // keys in load order
	auths  map[string]*x509.Certificate
	anames []string

	// trust is the store made of the file's and these; base the file's
	// store it was made from (nil: none).
	trust *pki.Store
	base  *pki.Store
}

func (c *viciCreds) empty() bool {
	return len(c.certs) == 0 && len(c.cas) == 0 && len(c.crls) == 0 && len(c.kids) == 0 && len(c.anames) == 0
}

// caList is every CA VICI loaded: the x509ca folder's, then the
// authorities'.
func (c *viciCreds) caList() []*x509.Certificate {
	out := slices.Clone(c.cas)
	for _, n := range c.anames {
		out = append(out, c.auths[n])
	}
	return out
}

// storeFor makes the trust store of file's (nil: none) and cas and crls.
func storeFor(file *pki.Store, cas []*x509.Certificate, crls []*x509.RevocationList) (*pki.Store, error) {
	var sc pki.StoreConfig
	if file != nil {
		sc = file.Config()
	}
	for _, c := range cas {
		if selfSigned(c) {
			sc.CACerts = append(sc.CACerts, c)
		} else {
			sc.IntermediateCerts = append(sc.IntermediateCerts, c)
		}
	}
	sc.CRLs = append(sc.CRLs, crls...)
	return pki.NewStore(sc)
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// trustFor is the trust store in force with the file's store: the
// file's when VICI loaded no CA or CRL. The loads were checked by the
// same construction, so an error here is a file's CA file changed on
// disk; it is logged and the file's store serves.
func (d *Daemon) trustFor(file *pki.Store) *pki.Store {
	c := &d.overlay.creds
	if len(c.cas) == 0 && len(c.crls) == 0 && len(c.anames) == 0 {
		return file
	}
	if c.trust != nil && c.base == file {
		return c.trust
	}
	st, err := storeFor(file, c.caList(), c.crls)
	if err != nil {
		d.log.Warn("iked: certificates loaded over VICI left out of the trust store", "err", err.Error())
		return file
	}
	c.trust, c.base = st, file
	return st
}

// credsChanged puts changed credentials in force: a new trust store for
// every connection (the next verification uses it).
func (d *Daemon) credsChanged() error {
	d.overlay.creds.trust = nil
	_, err := d.apply(d.compose(d.fileCfg))
	return err
}

func fileTrust(cfg *config.Config) *pki.Store {
	if cfg == nil {
		return nil
	}
	return cfg.Trust
}

// LoadCert adds a certificate or CRL VICI loaded.
func (b viciBackend) LoadCert(kind vici.CertKind, data []byte) error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	if kind == vici.CertCRL {
		l, err := parseCRL(data)
		if err != nil {
			return err
		}
		// swanctl --load-creds sends every file each time: once each.
		if slices.ContainsFunc(c.crls, func(x *x509.RevocationList) bool { return bytes.Equal(x.Raw, l.Raw) }) {
			return nil
		}
		if _, err := storeFor(fileTrust(d.fileCfg), c.caList(), append(slices.Clone(c.crls), l)); err != nil {
			return err
		}
		c.crls = append(c.crls, l)
		return d.credsChanged()
	}
	certs, err := pki.ParseCertificates(data)
	if err != nil {
		return fmt.Errorf("malformed certificate: %v", err)
	}
	if kind == vici.CertEndEntity {
		for _, x := range certs {
			if !slices.ContainsFunc(c.certs, func(y *x509.Certificate) bool { return x.Equal(y) }) {
				c.certs = append(c.certs, x)
			}
		}
		return nil
	}
	var add []*x509.Certificate
	for _, x := range certs {
		if !slices.ContainsFunc(c.caList(), func(y *x509.Certificate) bool { return x.Equal(y) }) {
			add = append(add, x)
		}
	}
	if _, err := storeFor(fileTrust(d.fileCfg), append(c.caList(), add...), c.crls); err != nil {
		return err
	}
	c.cas = append(c.cas, add...)
	return d.credsChanged()
}

func parseCRL(data []byte) (*x509.RevocationList, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		var b *pem.Block
		for rest := data; ; {
			if b, rest = pem.Decode(rest); b == nil || b.Type == "X509 CRL" {
				break
			}
		}
		if b == nil {
			return nil, errors.New("malformed CRL: no X509 CRL block")
		}
		data = b.Bytes
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("malformed CRL: %v", err)
	}
	return l, nil
}

// LoadKey adds a private key VICI loaded: PEM as in the private folder,
// or DER as swanctl sends it (PKCS#1 for RSA, SEC1 for ECDSA, PKCS#8).
// Errors never quote the key.
func (b viciBackend) LoadKey(typ string, data []byte) (string, error) {
	k, err := parsePrivateKey(data)
	if err != nil {
		return "", err
	}
	if err := keyType(typ, k); err != nil {
		return "", err
	}
	id, err := keyID(k.Public())
	if err != nil {
		return "", err
	}
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	if c.keys == nil {
		c.keys = map[string]*pki.PrivateKey{}
	}
	if _, ok := c.keys[id]; !ok {
		c.kids = append(c.kids, id)
	}
	c.keys[id] = k
	d.log.Info("iked: private key loaded over VICI", "key", k.String(), "id", id)
	return id, nil
}

func parsePrivateKey(data []byte) (*pki.PrivateKey, error) {
	if bytes.Contains(data, []byte("-----BEGIN")) {
		return pki.ParsePrivateKeyPEM(data)
	}
	var key any
	var err error
	for _, parse := range []func([]byte) (any, error){
		x509.ParsePKCS8PrivateKey,
		func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) },
		func(b []byte) (any, error) { return x509.ParseECPrivateKey(b) },
	} {
		if key, err = parse(data); err == nil {
			break
		}
	}
	if err != nil {
		// The library's message is dropped: it may describe contents.
		return nil, errors.New("malformed private key: not an unencrypted PKCS#8, PKCS#1 or SEC1 key (DER or PEM)")
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("a %T cannot sign", key)
	}
	return pki.NewPrivateKey(s)
}

// keyType checks the key is of load-key's type (swanctl's folder).
func keyType(typ string, k *pki.PrivateKey) error {
	desc := k.String()
	want := map[string]string{"rsa": "RSA", "ecdsa": "ECDSA", "ed25519": "Ed25519"}[typ]
	if want != "" && !strings.HasPrefix(desc, want) {
		return fmt.Errorf("type %s but the data is an %s", typ, desc)
	}
	return nil
}

// keyID is the hex SHA-1 of the public key's subjectPublicKey bits, as
// charon's key ids are.
func keyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	var spki struct {
		Algorithm asn1.RawValue
		Key       asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return "", err
	}
	h := sha1.Sum(spki.Key.Bytes)
	return hex.EncodeToString(h[:]), nil
}

// UnloadKey removes a key VICI loaded; connections that use it keep it
// until they are loaded again, as charon's keep theirs referenced.
func (b viciBackend) UnloadKey(id string) error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	if _, ok := c.keys[id]; !ok {
		return fmt.Errorf("private key '%s' not found", id)
	}
	delete(c.keys, id)
	c.kids = slices.DeleteFunc(c.kids, func(k string) bool { return k == id })
	return nil
}

// KeyIDs are the ids of the keys VICI loaded.
func (b viciBackend) KeyIDs() []string {
	b.d.reloadMu.Lock()
	defer b.d.reloadMu.Unlock()
	return slices.Clone(b.d.overlay.creds.kids)
}

// LoadAuthority adds or replaces an authority: its CA certificate joins
// the trust store (iked fetches nothing, so the rest of charon's
// authority sections has no use and is refused by the server).
func (b viciBackend) LoadAuthority(name string, cacert []byte) error {
	certs, err := pki.ParseCertificates(cacert)
	if err != nil {
		return fmt.Errorf("cacert: malformed certificate: %v", err)
	}
	if len(certs) != 1 || !certs[0].IsCA {
		return fmt.Errorf("cacert: want one CA certificate, got %d certificates (the first %q, CA %v)", len(certs), pki.FormatDN(certs[0].RawSubject), certs[0].IsCA)
	}
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	next := map[string]*x509.Certificate{name: certs[0]}
	var cas []*x509.Certificate
	cas = append(cas, c.cas...)
	for _, n := range c.anames {
		if n != name {
			cas = append(cas, c.auths[n])
			next[n] = c.auths[n]
		}
	}
	if _, err := storeFor(fileTrust(d.fileCfg), append(cas, certs[0]), c.crls); err != nil {
		return err
	}
	if _, ok := c.auths[name]; !ok {
		c.anames = append(c.anames, name)
	}
	c.auths = next
	return d.credsChanged()
}

// UnloadAuthority removes an authority VICI loaded.
func (b viciBackend) UnloadAuthority(name string) error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	if _, ok := c.auths[name]; !ok {
		return fmt.Errorf("authority '%s' not found", name)
	}
	delete(c.auths, name)
	c.anames = slices.DeleteFunc(c.anames, func(n string) bool { return n == name })
	return d.credsChanged()
}

// Authorities are the authorities VICI loaded.
func (b viciBackend) Authorities() []vici.Authority {
	b.d.reloadMu.Lock()
	defer b.d.reloadMu.Unlock()
	c := &b.d.overlay.creds
	var out []vici.Authority
	for _, n := range c.anames {
		out = append(out, vici.Authority{Name: n, CACert: pki.FormatDN(c.auths[n].RawSubject)})
	}
	return out
}

// ClearCreds drops what VICI loaded of certificates, keys, authorities
// and pre-shared keys (swanctl --load-creds --clear); connections loaded
// with them keep theirs until loaded again.
func (b viciBackend) ClearCreds() error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.overlay.creds = viciCreds{}
	d.overlay.secrets = nil
	return d.credsChanged()
}

// viciCertBlobs takes load-conn's certs and cacerts (the files' data,
// as swanctl sends them) out of the connection's local and remote
// rounds, leaving placeholders iked's parser accepts as file names.
// It returns the rewritten tree and the data by round ("local",
// "remote") and key.
func viciCertBlobs(c *vici.Section) (*vici.Section, map[string][][]byte) {
	blobs := map[string][][]byte{}
	out := &vici.Section{}
	for _, e := range c.Elements {
		if e.Kind == vici.KindSection && (e.Name == "local" || e.Name == "remote" ||
			strings.HasPrefix(e.Name, "local-") || strings.HasPrefix(e.Name, "remote-")) {
			side := "local"
			if strings.HasPrefix(e.Name, "remote") {
				side = "remote"
			}
			round := &vici.Section{}
			for _, a := range e.Section.Elements {
				if (a.Name == "certs" || a.Name == "cacerts") && (a.Kind == vici.KindList || a.Kind == vici.KindValue) {
					items := a.List
					if a.Kind == vici.KindValue {
						items = []string{a.Value}
					}
					names := make([]string, len(items))
					for i, it := range items {
						blobs[side+"."+a.Name] = append(blobs[side+"."+a.Name], []byte(it))
						names[i] = fmt.Sprintf("vici-%s-%d", a.Name, i+1)
					}
					a = vici.Element{Name: a.Name, Kind: vici.KindList, List: names}
				}
				round.Elements = append(round.Elements, a)
			}
			e.Section = round
		}
		out.Elements = append(out.Elements, e)
	}
	return out, blobs
}

// viciConnCreds gives a connection loaded over VICI what iked's loader
// gives a file's: our credentials from its local certs (each matched to
// a key VICI loaded) and the peer policy from its remote id and
// cacerts, against the trust store in force. Under reloadMu.
func (d *Daemon) viciConnCreds(conn *config.Conn, blobs map[string][][]byte) error {
	c := &d.overlay.creds
	trust := d.trustFor(fileTrust(d.fileCfg))
	if a := conn.Local; a != nil && a.Method.PubKey() {
		a.Credentials = nil
		for i, blob := range blobs["local.certs"] {
			certs, err := pki.ParseCertificates(blob)
			if err != nil {
				return fmt.Errorf("local certs[%d]: malformed certificate: %v", i, err)
			}
			leaf := certs[0]
			var key *pki.PrivateKey
			for _, id := range c.kids {
				k := c.keys[id]
				if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(leaf.PublicKey) {
					key = k
					break
				}
			}
			if key == nil {
				return fmt.Errorf("local certs[%d]: no private key for %q loaded over VICI (load-key it first: swanctl loads the private folder before the connections)", i, pki.FormatDN(leaf.RawSubject))
			}
			// As the file's loader does: auth ecdsa with an RSA key
			// would only fail at every negotiation.
			if fam := a.Method.Family; fam != "" {
				want := map[string]string{"rsa": "RSA", "rsa/pss": "RSA", "ecdsa": "ECDSA", "ed25519": "Ed25519"}[fam]
				if !strings.HasPrefix(key.String(), want) {
					return fmt.Errorf("local auth %s needs an %s key, certs[%d]'s is an %s", fam, want, i, key)
				}
			}
			cred, err := pki.NewCredential(leaf, append(certs[1:], c.caList()...), key, trust)
			if err != nil {
				return fmt.Errorf("local certs[%d]: %v", i, err)
			}
			a.Credentials = append(a.Credentials, cred)
		}
		if len(a.Credentials) == 0 {
			return fmt.Errorf("local auth %s: no certs", a.Auth)
		}
		leaf := a.Credentials[0].Leaf
		if a.ID == "" {
			a.Identity = config.Identity{Type: config.IDDN, Data: slices.Clone(leaf.RawSubject), Text: pki.FormatDN(leaf.RawSubject)}
		} else {
			for i, cred := range a.Credentials {
				if err := pki.MatchCert(cred.Leaf, pki.ID{Type: a.Identity.Type, Data: a.Identity.Data}); err != nil {
					return fmt.Errorf("local id: %s is not in certs[%d] %q: %v", a.Identity, i, pki.FormatDN(cred.Leaf.RawSubject), err)
				}
			}
		}
	}
	if a := conn.Remote; a != nil && a.Method.PubKey() {
		pol := &pki.Policy{RemoteID: pki.ID{Type: a.Identity.Type, Data: a.Identity.Data}}
		for i, blob := range blobs["remote.cacerts"] {
			certs, err := pki.ParseCertificates(blob)
			if err != nil {
				return fmt.Errorf("remote cacerts[%d]: malformed certificate: %v", i, err)
			}
			for _, ca := range certs {
				if !ca.IsCA {
					return fmt.Errorf("remote cacerts[%d]: %q is not a CA certificate", i, pki.FormatDN(ca.RawSubject))
				}
			}
			pol.CACerts = append(pol.CACerts, certs...)
		}
		if len(pol.CACerts) == 0 {
			if trust == nil {
				return errors.New("remote: no trust anchor for the peer's certificate: load-cert the CA (swanctl's x509ca folder) or name it in cacerts")
			}
			if anchors, _, _ := trust.Counts(); anchors == 0 {
				return errors.New("remote: no trust anchor for the peer's certificate: load-cert the CA (swanctl's x509ca folder) or name it in cacerts")
			}
		}
		a.Policy = pol
	}
	return nil
}

// viciCerts are the certificates VICI loaded, for list-certs: the end
// entities (with has_privkey when a loaded key is theirs); the CAs are
// in the trust store in force.
func (d *Daemon) viciCerts() (certs []*x509.Certificate, hasKey []bool) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	c := &d.overlay.creds
	for _, x := range c.certs {
		own := false
		for _, k := range c.keys {
			if pub, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(x.PublicKey) {
				own = true
			}
		}
		certs, hasKey = append(certs, x), append(hasKey, own)
	}
	return certs, hasKey
}
