package vici

import (
	"errors"
	"fmt"
	"strings"
)

// CertKind is what load-cert was given: swanctl's folder of the file.
type CertKind int

// Certificate kinds load-cert takes.
const (
	// CertEndEntity is an end entity's certificate (x509/: type X509,
	// flag NONE), ours when a loaded key matches it.
	CertEndEntity CertKind = iota
	// CertCA is a CA certificate (x509ca/: flag CA): self-signed ones
	// are trust anchors, the others intermediates.
	CertCA
	// CertCRL is a certificate revocation list (x509crl/: X509_CRL).
	CertCRL
)

// CredBackend is a ConfigBackend that also takes certificates, private
// keys and certification authorities from VICI clients (swanctl
// --load-all loads the x509, x509ca, x509crl and private folders and
// the authorities section before the connections), kept beside the
// daemon's own. Register serves load-cert, load-key, unload-key,
// get-keys, load-authority, unload-authority, get-authorities,
// list-authorities, flush-certs and clear-creds for one.
type CredBackend interface {
	ConfigBackend
	// LoadCert adds a certificate or CRL: data is DER or PEM, as
	// swanctl sends a file.
	LoadCert(kind CertKind, data []byte) error
	// LoadKey adds a private key of type typ (rsa, ecdsa, ed25519 or
	// any), DER or PEM, and returns its id (the hex SHA-1 of its public
	// key), the one get-keys lists and unload-key takes.
	LoadKey(typ string, data []byte) (id string, err error)
	UnloadKey(id string) error
	KeyIDs() []string
	// LoadAuthority adds or replaces the certification authority name,
	// whose CA certificate is cacert; UnloadAuthority removes one.
	LoadAuthority(name string, cacert []byte) error
	UnloadAuthority(name string) error
	Authorities() []Authority
	// ClearCreds drops every credential VICI loaded: certificates, keys,
	// authorities and pre-shared keys.
	ClearCreds() error
}

// Authority is a certification authority loaded over VICI: its name and
// its CA certificate's subject, as the daemon writes DNs.
type Authority struct {
	Name, CACert string
}

// EvListAuthority is the event list-authorities streams.
const EvListAuthority = "list-authority"

// certKind maps load-cert's type and flag, in the spellings of current
// swanctl (type X509 and flag NONE/CA, type X509_CRL) and of older ones
// (type x509, x509ca, x509crl), to a kind; what iked does not use is an
// error saying so.
func certKind(typ, flag string) (CertKind, error) {
	switch t, f := strings.ToUpper(typ), strings.ToUpper(flag); {
	case t == "X509" && (f == "" || f == "NONE"):
		return CertEndEntity, nil
	case t == "X509" && f == "CA", t == "X509CA":
		return CertCA, nil
	case t == "X509_CRL", t == "X509CRL":
		return CertCRL, nil
	case t == "X509" && (f == "AA" || f == "OCSP"):
		return 0, fmt.Errorf("not supported by iked: %s certificates (no attribute authorities, no OCSP)", flag)
	case t == "X509_AC", t == "X509AC", t == "X509AA", t == "OCSP_RESPONSE", t == "PUBKEY", t == "PGP":
		return 0, fmt.Errorf("not supported by iked: %s certificates (iked takes X509 and X509_CRL)", typ)
	case t == "":
		return 0, errors.New("missing certificate type")
	case t == "X509":
		return 0, fmt.Errorf("unknown X509 flag %q (want NONE or CA)", flag)
	}
	return 0, fmt.Errorf("unknown certificate type %q (want X509 or X509_CRL)", typ)
}

// registerCreds serves the credential commands.
func registerCreds(s *Server, b CredBackend) {
	s.Handle("load-cert", func(c *Call) (*Section, error) {
		kind, err := certKind(c.Req.Get("type"), c.Req.Get("flag"))
		if err != nil {
			return nil, fmt.Errorf("load-cert: %w", err)
		}
		data, ok := c.Req.Lookup("data")
		if !ok || data == "" {
			return nil, errors.New("load-cert: missing certificate data")
		}
		if err := b.LoadCert(kind, []byte(data)); err != nil {
			return nil, fmt.Errorf("load-cert: %w", err)
		}
		return Success(), nil
	})
	s.Handle("load-key", func(c *Call) (*Section, error) {
		typ := strings.ToLower(c.Req.Get("type"))
		switch typ {
		case "rsa", "ecdsa", "ed25519", "any":
		case "":
			return nil, errors.New("load-key: missing key type")
		case "ed448", "bliss":
			return nil, fmt.Errorf("load-key: not supported by iked: %s keys (iked signs with RSA, ECDSA and Ed25519)", typ)
		default:
			return nil, fmt.Errorf("load-key: unknown key type %q (want rsa, ecdsa, ed25519 or any)", c.Req.Get("type"))
		}
		data, ok := c.Req.Lookup("data")
		if !ok || data == "" {
			return nil, errors.New("load-key: missing private key data")
		}
		id, err := b.LoadKey(typ, []byte(data))
		if err != nil {
			return nil, fmt.Errorf("load-key: %w", err)
		}
		return Success().Set("id", id), nil
	})
	s.Handle("unload-key", func(c *Call) (*Section, error) {
		id := c.Req.Get("id")
		if id == "" {
			return nil, errors.New("unload-key: missing key id")
		}
		if err := b.UnloadKey(id); err != nil {
			return nil, fmt.Errorf("unload-key: %w", err)
		}
		return Success(), nil
	})
	s.Handle("get-keys", func(*Call) (*Section, error) {
		return (&Section{}).SetList("keys", orEmpty(b.KeyIDs())), nil
	})
	s.Handle("load-authority", func(c *Call) (*Section, error) {
		subs := c.Req.Subs()
		if len(subs) != 1 {
			return nil, fmt.Errorf("load-authority: want one authority section, got %d", len(subs))
		}
		name, a := subs[0].Name, subs[0].Section
		for _, e := range a.Elements {
			switch e.Name {
			case "cacert":
			case "crl_uris", "ocsp_uris", "cert_uri_base":
				return nil, fmt.Errorf("load-authority: %s: %s: not supported by iked: it fetches no CRLs or OCSP responses (put CRLs in x509crl)", name, e.Name)
			case "file", "handle", "slot", "module":
				return nil, fmt.Errorf("load-authority: %s: %s: not supported by iked: no smartcards (give cacert)", name, e.Name)
			default:
				return nil, fmt.Errorf("load-authority: %s: unknown key %s", name, e.Name)
			}
		}
		cacert, ok := a.Lookup("cacert")
		if !ok || cacert == "" {
			return nil, fmt.Errorf("load-authority: %s: missing cacert", name)
		}
		if err := b.LoadAuthority(name, []byte(cacert)); err != nil {
			return nil, fmt.Errorf("load-authority: %s: %w", name, err)
		}
		return Success(), nil
	})
	s.Handle("unload-authority", func(c *Call) (*Section, error) {
		name := c.Req.Get("name")
		if name == "" {
			return nil, errors.New("unload-authority: missing authority name")
		}
		if err := b.UnloadAuthority(name); err != nil {
			return nil, fmt.Errorf("unload-authority: %w", err)
		}
		return Success(), nil
	})
	s.Handle("get-authorities", func(*Call) (*Section, error) {
		names := []string{}
		for _, a := range b.Authorities() {
			names = append(names, a.Name)
		}
		return (&Section{}).SetList("authorities", names), nil
	})
	// One list-authority event each, as charon's: the CA's subject; no
	// URIs (iked fetches nothing, so none can be loaded).
	s.Events(EvListAuthority)
	s.Handle("list-authorities", func(c *Call) (*Section, error) {
		name := c.Req.Get("name")
		for _, a := range b.Authorities() {
			if name != "" && name != a.Name {
				continue
			}
			m := &Section{}
			m.AddSection(a.Name).Set("cacert", a.CACert).SetList("crl_uris", []string{}).SetList("ocsp_uris", []string{})
			if err := c.Emit(EvListAuthority, m); err != nil {
				return nil, err
			}
		}
		return &Section{}, nil
	})
	// charon's flush-certs empties its cache of certificates received
	// or fetched; iked keeps none (a peer's chain lives as long as its
	// verification), so there is nothing to flush and it says so.
	s.Handle("flush-certs", func(c *Call) (*Section, error) {
		switch t := strings.ToUpper(c.Req.Get("type")); t {
		case "", "ANY", "X509", "X509_CRL", "X509_AC", "OCSP_RESPONSE", "PUBKEY":
		default:
			return nil, fmt.Errorf("flush-certs: unknown certificate type %q", c.Req.Get("type"))
		}
		return Success(), nil
	})
	s.Handle("clear-creds", func(*Call) (*Section, error) {
		if err := b.ClearCreds(); err != nil {
			return nil, fmt.Errorf("clear-creds: %w", err)
		}
		return Success(), nil
	})
}
