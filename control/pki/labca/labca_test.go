package labca_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

func TestMakeCAAndIssueGateway(t *testing.T) {
	old := syscall.Umask(0) // modes must not depend on the umask
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := labca.MakeCA(dir, labca.CAOptions{Subject: "C=CH, O=Test, CN=Test Root", Key: labca.ECDSAP384})
	if err != nil {
		t.Fatal(err)
	}
	if got := pki.FormatDN(ca.Cert.RawSubject); got != "C=CH, O=Test, CN=Test Root" {
		t.Fatalf("subject %q", got)
	}
	mode := func(p string) os.FileMode {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return st.Mode().Perm()
	}
	if m := mode(filepath.Join(dir, labca.CAKeyFile)); m != 0o600 {
		t.Fatalf("ca.key mode %04o", m)
	}
	if m := mode(filepath.Join(dir, labca.CACertFile)); m != 0o644 {
		t.Fatalf("ca.pem mode %04o", m)
	}
	if _, err := labca.MakeCA(dir, labca.CAOptions{}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("MakeCA replaced a CA: %v", err)
	}
	store, err := pki.NewStore(pki.StoreConfig{CAFiles: []string{filepath.Join(dir, labca.CACertFile)}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		identity string
		sans     []string
		key      labca.KeyType
		ids      []pki.ID
		file     string
	}{
		{"gw.site.example", []string{"198.18.0.1", "2001:db8::1"}, labca.RSA2048, []pki.ID{
			{Type: pki.IDFQDN, Data: []byte("gw.site.example")},
			{Type: pki.IDIPv4, Data: netip.MustParseAddr("198.18.0.1").AsSlice()},
			{Type: pki.IDIPv6, Data: netip.MustParseAddr("2001:db8::1").AsSlice()},
		}, "gw.site.example"},
		{"@moon.site.example", nil, labca.Ed25519, []pki.ID{{Type: pki.IDFQDN, Data: []byte("moon.site.example")}}, "moon.site.example"},
		{"carol@site.example", nil, labca.ECDSAP256, []pki.ID{{Type: pki.IDRFC822, Data: []byte("carol@site.example")}}, "carol_site.example"},
		{"C=CH, O=Test, CN=sun", []string{"sun.site.example"}, labca.ECDSAP256, []pki.ID{{Type: pki.IDFQDN, Data: []byte("sun.site.example")}}, "C_CH__O_Test__CN_sun"},
	}
	for _, c := range cases {
		t.Run(c.identity, func(t *testing.T) {
			certPath, keyPath, err := labca.IssueGateway(dir, labca.IssueOptions{Identity: c.identity, SANs: c.sans, Key: c.key})
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(certPath) != c.file+".pem" {
				t.Fatalf("file %s", certPath)
			}
			if m := mode(keyPath); m != 0o600 {
				t.Fatalf("key mode %04o", m)
			}
			cred, err := pki.LoadCredential(certPath, keyPath, store)
			if err != nil {
				t.Fatal(err)
			}
			ids := c.ids
			if strings.Contains(c.identity, "=") {
				der, _ := pki.ParseDN(c.identity)
				ids = append(ids, pki.ID{Type: pki.IDDN, Data: der})
			}
			for _, id := range ids {
				if _, err := store.VerifyPeer([]pki.CertPayload{{Encoding: pki.CertX509Signature, Data: cred.Leaf.Raw}}, id, nil); err != nil {
					t.Fatalf("%v: %v", id, err)
				}
			}
		})
	}
}

func TestVariants(t *testing.T) {
	root, err := labca.NewRoot(labca.Template{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Issue(labca.Template{}); err == nil {
		t.Fatal("a certificate with no name was made")
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := labca.WriteCertPEM(caFile, root.Cert); err != nil {
		t.Fatal(err)
	}
	store, err := pki.NewStore(pki.StoreConfig{CAFiles: []string{caFile}})
	if err != nil {
		t.Fatal(err)
	}
	id := pki.ID{Type: pki.IDFQDN, Data: []byte("x.example")}
	base := labca.Template{DNS: []string{"x.example"}}
	for _, c := range []struct {
		t    labca.Template
		want pki.Reason
	}{
		{base, pki.ReasonNone},
		{base.Expired(), pki.ReasonExpired},
		{base.NotYetValid(), pki.ReasonNotYetValid},
	} {
		for _, kt := range labca.KeyTypes {
			tm := c.t
			tm.Key = kt
			leaf, err := root.Issue(tm)
			if err != nil {
				t.Fatalf("%s: %v", kt, err)
			}
			_, err = store.VerifyPeer([]pki.CertPayload{{Encoding: pki.CertX509Signature, Data: leaf.Cert.Raw}}, id, nil)
			if got := pki.ReasonOf(err); got != c.want {
				t.Fatalf("%s: %v, want %v", kt, err, c.want)
			}
		}
	}
	if _, err := labca.GenerateKey("dsa"); err == nil {
		t.Fatal("unknown key type accepted")
	}
}
