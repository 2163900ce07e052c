package pki_test

import (
	"crypto/x509"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// lab is a small PKI written to a temporary directory: root -> intermediate
// -> gateway leaf.
type lab struct {
	dir    string
	root   *labca.Cert
	im     *labca.Cert
	leaf   *labca.Cert
	caFile string
	imFile string
}

const (
	leafDN    = "C=CH, O=spugate lab, CN=gw.site.example"
	leafFQDN  = "gw.site.example"
	leafEmail = "ops@site.example"
)

var (
	leafIPv4 = netip.MustParseAddr("198.18.0.1")
	leafIPv6 = netip.MustParseAddr("2001:db8::1")
)

func newLab(t testing.TB, kt labca.KeyType) *lab {
	t.Helper()
	root, err := labca.NewRoot(labca.Template{Key: kt})
	if err != nil {
		t.Fatal(err)
	}
	im, err := root.NewIntermediate(labca.Template{Key: kt})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := im.Issue(leafTemplate(kt))
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{dir: t.TempDir(), root: root, im: im, leaf: leaf}
	l.caFile = filepath.Join(l.dir, "ca.pem")
	l.imFile = filepath.Join(l.dir, "im.pem")
	if err := labca.WriteCertPEM(l.caFile, root.Cert); err != nil {
		t.Fatal(err)
	}
	if err := labca.WriteCertPEM(l.imFile, im.Cert); err != nil {
		t.Fatal(err)
	}
	return l
}

func leafTemplate(kt labca.KeyType) labca.Template {
	return labca.Template{
		Subject: leafDN,
		Key:     kt,
		DNS:     []string{leafFQDN},
		IPs:     []netip.Addr{leafIPv4, leafIPv6},
		Emails:  []string{leafEmail},
	}
}

func (l *lab) store(t testing.TB, cfg pki.StoreConfig) *pki.Store {
	t.Helper()
	if cfg.CAFiles == nil {
		cfg.CAFiles = []string{l.caFile}
	}
	s, err := pki.NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payloads(certs ...*x509.Certificate) []pki.CertPayload {
	var out []pki.CertPayload
	for _, c := range certs {
		out = append(out, pki.CertPayload{Encoding: pki.CertX509Signature, Data: c.Raw})
	}
	return out
}

func fqdn(s string) pki.ID { return pki.ID{Type: pki.IDFQDN, Data: []byte(s)} }

func dnID(t testing.TB, s string) pki.ID {
	t.Helper()
	der, err := pki.ParseDN(s)
	if err != nil {
		t.Fatal(err)
	}
	return pki.ID{Type: pki.IDDN, Data: der}
}

func wantReason(t testing.TB, err error, want pki.Reason) {
	t.Helper()
	if got := pki.ReasonOf(err); got != want {
		t.Fatalf("reason %v, want %v (error: %v)", got, want, err)
	}
}

func fixedNow(t time.Time) func() time.Time { return func() time.Time { return t } }
