package labca

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spugate/spugate/control/pki"
)

// Files of a CA directory made by MakeCA.
const (
	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
)

// CAOptions describe a CA for MakeCA.
type CAOptions struct {
	Subject  string        // default "C=CH, O=spugate lab, CN=spugate lab root CA"
	Key      KeyType       // default ECDSA P-256
	Lifetime time.Duration // default ten years
}

// MakeCA makes a root CA and writes it into dir (created 0755 if missing):
// ca.pem (0644) and ca.key (0600). It refuses to overwrite an existing
// ca.key, so that a CA is never silently replaced.
func MakeCA(dir string, o CAOptions) (*Cert, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("labca: %w", err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("labca: %s exists; remove it to make a new CA", keyPath)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("labca: %w", err)
	}
	ca, err := NewRoot(Template{Subject: o.Subject, Key: o.Key, Lifetime: o.Lifetime})
	if err != nil {
		return nil, err
	}
	if err := WriteKeyPEM(keyPath, ca.Key); err != nil {
		return nil, err
	}
	if err := WriteCertPEM(filepath.Join(dir, CACertFile), ca.Cert); err != nil {
		return nil, err
	}
	return ca, nil
}

// LoadCA reads a CA directory made by MakeCA.
func LoadCA(dir string) (*Cert, error) {
	certs, err := pki.LoadCertificates(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, err
	}
	key, err := pki.LoadPrivateKey(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, err
	}
	c, err := pki.NewCredential(certs[0], nil, key, nil)
	if err != nil {
		return nil, fmt.Errorf("labca: %s: %w", dir, err)
	}
	return &Cert{Cert: c.Leaf, Key: key}, nil
}

// IssueOptions describe a gateway certificate for IssueGateway.
type IssueOptions struct {
	// Identity is the gateway's IKE identity in strongSwan's notation: an
	// IP address (an iPAddress SAN), "@host" or a host name (a dNSName
	// SAN), "user@domain" (an rfc822Name SAN), or a DN "C=.., CN=.." (the
	// subject). It is put where RFC 4945 3.1 says a peer will look for it.
	Identity string
	// Subject overrides the subject DN (default "CN=<identity>").
	Subject string
	// SANs adds subjectAltNames, each written as an Identity.
	SANs     []string
	Key      KeyType       // default ECDSA P-256
	Lifetime time.Duration // default one year
	// Name is the base name of the files; default: the identity with
	// characters other than letters, digits, '.', '-' and '_' replaced.
	Name string
}

// IssueGateway issues a gateway certificate from the CA in dir and writes
// <name>.pem (the certificate, 0644) and <name>.key (0600) next to it.
func IssueGateway(dir string, o IssueOptions) (certPath, keyPath string, err error) {
	ca, err := LoadCA(dir)
	if err != nil {
		return "", "", err
	}
	t := Template{Subject: o.Subject, Key: o.Key, Lifetime: o.Lifetime}
	for _, id := range append([]string{o.Identity}, o.SANs...) {
		if err := addIdentity(&t, id); err != nil {
			return "", "", err
		}
	}
	if t.Subject == "" && strings.Contains(o.Identity, "=") {
		t.Subject = o.Identity
	}
	if t.Subject == "" {
		t.Subject = "CN=" + strings.TrimPrefix(o.Identity, "@")
	}
	c, err := ca.Issue(t)
	if err != nil {
		return "", "", err
	}
	name := o.Name
	if name == "" {
		name = fileName(o.Identity)
	}
	certPath = filepath.Join(dir, name+".pem")
	keyPath = filepath.Join(dir, name+".key")
	if err := WriteKeyPEM(keyPath, c.Key); err != nil {
		return "", "", err
	}
	if err := WriteCertPEM(certPath, c.Cert); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// addIdentity puts an identity into the template as RFC 4945 wants it.
func addIdentity(t *Template, id string) error {
	id = strings.TrimSpace(id)
	switch {
	case id == "":
		return fmt.Errorf("labca: empty identity")
	case strings.Contains(id, "="):
		// A DN: it is the subject; nothing to add as a SAN.
		if _, err := pki.ParseDN(id); err != nil {
			return err
		}
		if t.Subject == "" {
			t.Subject = id
		}
	default:
		if a, err := netip.ParseAddr(id); err == nil {
			t.IPs = append(t.IPs, a)
		} else if strings.HasPrefix(id, "@") {
			t.DNS = append(t.DNS, id[1:])
		} else if strings.Contains(id, "@") {
			t.Emails = append(t.Emails, id)
		} else {
			t.DNS = append(t.DNS, id)
		}
	}
	return nil
}

func fileName(id string) string {
	var b strings.Builder
	for _, r := range strings.TrimPrefix(id, "@") {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "gateway"
	}
	return b.String()
}
