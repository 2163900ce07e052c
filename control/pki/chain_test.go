package pki_test

import (
	"crypto/x509"
	"encoding/asn1"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

func TestVerifyPeerEveryKeyType(t *testing.T) {
	for _, kt := range labca.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			l := newLab(t, kt)
			s := l.store(t, pki.StoreConfig{})
			// The intermediate arrives as a CERT payload.
			pc, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(pc.Chain) != 3 || pc.Chain[2] != nil && !pc.Chain[2].Equal(l.root.Cert) || !pc.Leaf.Equal(l.leaf.Cert) {
				t.Fatalf("chain %v", pc.Chain)
			}
			// Without it, the store must know it.
			if _, err := s.VerifyPeer(payloads(l.leaf.Cert), fqdn(leafFQDN), nil); pki.ReasonOf(err) != pki.ReasonUnknownCA {
				t.Fatalf("without intermediate: %v", err)
			}
			s2 := l.store(t, pki.StoreConfig{IntermediateFiles: []string{l.imFile}})
			if _, err := s2.VerifyPeer(payloads(l.leaf.Cert), fqdn(leafFQDN), nil); err != nil {
				t.Fatalf("with the store's intermediate: %v", err)
			}
		})
	}
}

func TestVerifyPeerValidity(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	now := time.Now()
	s := l.store(t, pki.StoreConfig{})
	issue := func(nb, na time.Time) *x509.Certificate {
		tm := leafTemplate(labca.ECDSAP256)
		tm.NotBefore, tm.NotAfter = nb, na
		c, err := l.im.Issue(tm)
		if err != nil {
			t.Fatal(err)
		}
		return c.Cert
	}
	expired := issue(now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	_, err := s.VerifyPeer(payloads(expired, l.im.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonExpired)
	future := issue(now.Add(24*time.Hour), now.Add(48*time.Hour))
	_, err = s.VerifyPeer(payloads(future, l.im.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonNotYetValid)

	// An expired intermediate: crypto/x509 calls it an unknown authority;
	// the store must tell the real reason.
	root, err := labca.NewRoot(labca.Template{NotBefore: now.Add(-100 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	oldIM, err := root.NewIntermediate(labca.Template{NotBefore: now.Add(-72 * time.Hour), NotAfter: now.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tm := leafTemplate(labca.ECDSAP256)
	tm.NotBefore = now.Add(-70 * time.Hour)
	leaf, err := oldIM.Issue(tm)
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := labca.WriteCertPEM(rootFile, root.Cert); err != nil {
		t.Fatal(err)
	}
	s2 := l.store(t, pki.StoreConfig{CAFiles: []string{rootFile}})
	_, err = s2.VerifyPeer(payloads(leaf.Cert, oldIM.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonExpired)
	if !strings.Contains(err.Error(), "intermediate") {
		t.Errorf("error does not name the expired intermediate: %v", err)
	}
	// The same chain seen from the past is fine.
	past := l.store(t, pki.StoreConfig{CAFiles: []string{rootFile}, Now: fixedNow(now.Add(-50 * time.Hour))})
	if _, err := past.VerifyPeer(payloads(leaf.Cert, oldIM.Cert), fqdn(leafFQDN), nil); err != nil {
		t.Fatal(err)
	}

	// A root that is not valid yet.
	futureRoot, err := labca.NewRoot(labca.Template{NotBefore: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	futureLeaf, err := futureRoot.Issue(leafTemplate(labca.ECDSAP256))
	if err != nil {
		t.Fatal(err)
	}
	if err := labca.WriteCertPEM(rootFile, futureRoot.Cert); err != nil {
		t.Fatal(err)
	}
	s3 := l.store(t, pki.StoreConfig{CAFiles: []string{rootFile}})
	_, err = s3.VerifyPeer(payloads(futureLeaf.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonNotYetValid)
}

func TestVerifyPeerUnknownCA(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	other := newLab(t, labca.ECDSAP256)
	s := other.store(t, pki.StoreConfig{})
	_, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonUnknownCA)
	// A peer sending a self-signed certificate as its own CA gets nowhere.
	_, err = s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert, l.root.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonUnknownCA)
}

func TestVerifyPeerCRLAndReload(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	crlFile := filepath.Join(l.dir, "im.crl")
	writeCRL := func(ca *labca.Cert, n int64, revoked ...*x509.Certificate) {
		der, err := ca.CRL(revoked, n, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if err := labca.WriteCRLPEM(crlFile, der); err != nil {
			t.Fatal(err)
		}
	}
	other, err := l.im.Issue(labca.Template{DNS: []string{"other.site.example"}})
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(l.im, 1, other.Cert)
	s := l.store(t, pki.StoreConfig{CRLFiles: []string{crlFile}, IntermediateFiles: []string{l.imFile}})
	if _, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil); err != nil {
		t.Fatalf("leaf not yet revoked: %v", err)
	}
	_, err = s.VerifyPeer(payloads(other.Cert, l.im.Cert), fqdn("other.site.example"), nil)
	wantReason(t, err, pki.ReasonRevoked)

	// A new CRL revoking our leaf is picked up by Reload.
	writeCRL(l.im, 2, other.Cert, l.leaf.Cert)
	if _, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil); err != nil {
		t.Fatalf("before Reload: %v", err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, err = s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonRevoked)

	// A CRL signed by someone else with the same DN is refused at Reload,
	// and the store keeps the CRLs it had.
	impostor, err := l.root.NewIntermediate(labca.Template{})
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(impostor, 3)
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a CRL with a bad signature")
	}
	_, err = s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil)
	wantReason(t, err, pki.ReasonRevoked)

	// A revoked intermediate, by the root's CRL.
	rootCRL := filepath.Join(l.dir, "root.crl")
	der, err := l.root.CRL([]*x509.Certificate{l.im.Cert}, 1, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := labca.WriteCRLPEM(rootCRL, der); err != nil {
		t.Fatal(err)
	}
	s2 := l.store(t, pki.StoreConfig{CRLFiles: []string{rootCRL}})
	_, err = s2.VerifyPeer(payloads(other.Cert, l.im.Cert), fqdn("other.site.example"), nil)
	wantReason(t, err, pki.ReasonRevoked)
}

func TestReloadKeepsStateOnError(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	s := l.store(t, pki.StoreConfig{})
	if err := os.WriteFile(l.caFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("Reload accepted a broken CA file")
	}
	if _, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil); err != nil {
		t.Fatalf("old anchors lost: %v", err)
	}
	// A CA file may hold no CA.
	if err := labca.WriteCertPEM(l.caFile, l.leaf.Cert); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("Reload accepted an end entity as anchor: %v", err)
	}
}

func TestReloadConcurrent(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	crlFile := filepath.Join(l.dir, "im.crl")
	der, _ := l.im.CRL(nil, 1, time.Time{}, time.Time{})
	if err := labca.WriteCRLPEM(crlFile, der); err != nil {
		t.Fatal(err)
	}
	s := l.store(t, pki.StoreConfig{CRLFiles: []string{crlFile}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := range 20 {
		der, _ := l.im.CRL(nil, int64(i+2), time.Time{}, time.Time{})
		if err := labca.WriteCRLPEM(crlFile, der); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestVerifyPeerKeyUsage(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	s := l.store(t, pki.StoreConfig{})
	cases := []struct {
		name string
		tm   func(*labca.Template)
		want pki.Reason
	}{
		{"no KU, no EKU", func(tm *labca.Template) { tm.NoKeyUsage, tm.NoExtKeyUsage = true, true }, pki.ReasonNone},
		{"nonRepudiation only", func(tm *labca.Template) { tm.KeyUsage = x509.KeyUsageContentCommitment }, pki.ReasonNone},
		{"keyAgreement only", func(tm *labca.Template) { tm.KeyUsage = x509.KeyUsageKeyAgreement }, pki.ReasonKeyUsage},
		{"serverAuth", func(tm *labca.Template) { tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }, pki.ReasonNone},
		{"clientAuth", func(tm *labca.Template) { tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} }, pki.ReasonNone},
		{"anyExtendedKeyUsage", func(tm *labca.Template) { tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, pki.ReasonNone},
		{"ikeIntermediate", func(tm *labca.Template) {
			tm.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 8, 2, 2}}
		}, pki.ReasonNone},
		{"ipsecIKE", func(tm *labca.Template) {
			tm.UnknownExtKeyUsage = []asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 17}}
		}, pki.ReasonNone},
		{"codeSigning only", func(tm *labca.Template) { tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} }, pki.ReasonKeyUsage},
		{"emailProtection and ipsecUser", func(tm *labca.Template) {
			tm.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection, x509.ExtKeyUsageIPSECUser}
		}, pki.ReasonKeyUsage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tm := leafTemplate(labca.ECDSAP256)
			c.tm(&tm)
			leaf, err := l.im.Issue(tm)
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.VerifyPeer(payloads(leaf.Cert, l.im.Cert), fqdn(leafFQDN), nil)
			wantReason(t, err, c.want)
		})
	}
}

func TestVerifyPeerIdentity(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	s := l.store(t, pki.StoreConfig{})
	v4, v6 := leafIPv4.As4(), leafIPv6.As16()
	keyid := l.leaf.Cert.SubjectKeyId
	cases := []struct {
		name string
		id   pki.ID
		want pki.Reason
	}{
		{"ipv4", pki.ID{Type: pki.IDIPv4, Data: v4[:]}, pki.ReasonNone},
		{"ipv4 other", pki.ID{Type: pki.IDIPv4, Data: []byte{198, 18, 0, 2}}, pki.ReasonIDMismatch},
		{"ipv6", pki.ID{Type: pki.IDIPv6, Data: v6[:]}, pki.ReasonNone},
		{"ipv6 other", pki.ID{Type: pki.IDIPv6, Data: append(v6[:15:15], 2)}, pki.ReasonIDMismatch},
		{"ipv4 type with 16 bytes", pki.ID{Type: pki.IDIPv4, Data: v6[:]}, pki.ReasonIDMismatch},
		{"fqdn", fqdn(leafFQDN), pki.ReasonNone},
		{"fqdn case", fqdn("GW.Site.Example"), pki.ReasonNone},
		{"fqdn other", fqdn("gw2.site.example"), pki.ReasonIDMismatch},
		{"rfc822", pki.ID{Type: pki.IDRFC822, Data: []byte(leafEmail)}, pki.ReasonNone},
		{"rfc822 other", pki.ID{Type: pki.IDRFC822, Data: []byte("root@site.example")}, pki.ReasonIDMismatch},
		{"rfc822 is not the fqdn", pki.ID{Type: pki.IDRFC822, Data: []byte(leafFQDN)}, pki.ReasonIDMismatch},
		{"dn exact", pki.ID{Type: pki.IDDN, Data: l.leaf.Cert.RawSubject}, pki.ReasonNone},
		{"dn other string types and case", dnID(t, "C=CH, O=SPUGATE Lab, CN=GW.site.example"), pki.ReasonNone},
		{"dn other", dnID(t, "C=CH, O=spugate lab, CN=gw2.site.example"), pki.ReasonIDMismatch},
		{"dn reordered", dnID(t, "CN=gw.site.example, O=spugate lab, C=CH"), pki.ReasonIDMismatch},
		{"key id", pki.ID{Type: pki.IDKeyID, Data: keyid}, pki.ReasonNone},
		{"key id other", pki.ID{Type: pki.IDKeyID, Data: []byte{1, 2, 3}}, pki.ReasonIDMismatch},
		{"unsupported type", pki.ID{Type: 10, Data: []byte{0x30, 0}}, pki.ReasonIDMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), c.id, nil)
			wantReason(t, err, c.want)
		})
	}

	// RFC 4945: an FQDN identity is not matched against the CN.
	cnOnly, err := l.im.Issue(labca.Template{Subject: "CN=cn.site.example"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.VerifyPeer(payloads(cnOnly.Cert, l.im.Cert), fqdn("cn.site.example"), nil)
	wantReason(t, err, pki.ReasonIDMismatch)
}

func TestVerifyPeerRemoteIDPatterns(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	s := l.store(t, pki.StoreConfig{})
	cfgID := func(text string) pki.ID {
		id, err := config.ParseIdentity(text)
		if err != nil {
			t.Fatal(err)
		}
		return pki.ID{Type: id.Type, Data: id.Data}
	}
	peerDN := pki.ID{Type: pki.IDDN, Data: l.leaf.Cert.RawSubject}
	cases := []struct {
		pattern string
		peer    pki.ID
		want    pki.Reason
	}{
		{"%any", fqdn(leafFQDN), pki.ReasonNone},
		{"C=CH, O=spugate lab, CN=*.site.example", peerDN, pki.ReasonNone},
		{"C=CH, O=*, CN=*", peerDN, pki.ReasonNone},
		{"C=CH, O=spugate lab, CN=*.other.example", peerDN, pki.ReasonIDMismatch},
		{"C=CH, CN=*.site.example", peerDN, pki.ReasonIDMismatch}, // RDN count differs
		{"*.site.example", fqdn(leafFQDN), pki.ReasonNone},
		{"@*.SITE.example", fqdn(leafFQDN), pki.ReasonNone},
		{"*.other.example", fqdn(leafFQDN), pki.ReasonIDMismatch},
		{"*@site.example", pki.ID{Type: pki.IDRFC822, Data: []byte(leafEmail)}, pki.ReasonNone},
		{"*@other.example", pki.ID{Type: pki.IDRFC822, Data: []byte(leafEmail)}, pki.ReasonIDMismatch},
		{"198.18.0.1", pki.ID{Type: pki.IDIPv4, Data: []byte{198, 18, 0, 1}}, pki.ReasonNone},
		{"gw.site.example", peerDN, pki.ReasonIDMismatch}, // types differ
	}
	for _, c := range cases {
		t.Run(c.pattern, func(t *testing.T) {
			_, err := s.VerifyPeer(payloads(l.leaf.Cert, l.im.Cert), c.peer, &pki.Policy{RemoteID: cfgID(c.pattern)})
			wantReason(t, err, c.want)
		})
	}
}

func TestVerifyPeerCACerts(t *testing.T) {
	a := newLab(t, labca.ECDSAP256)
	b := newLab(t, labca.ECDSAP256)
	s, err := pki.NewStore(pki.StoreConfig{CAFiles: []string{a.caFile, b.caFile}})
	if err != nil {
		t.Fatal(err)
	}
	p := payloads(a.leaf.Cert, a.im.Cert)
	if _, err := s.VerifyPeer(p, fqdn(leafFQDN), &pki.Policy{CACerts: []*x509.Certificate{a.root.Cert}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.VerifyPeer(p, fqdn(leafFQDN), &pki.Policy{CACerts: []*x509.Certificate{a.im.Cert}}); err != nil {
		t.Fatalf("intermediate as cacert: %v", err)
	}
	_, err = s.VerifyPeer(p, fqdn(leafFQDN), &pki.Policy{CACerts: []*x509.Certificate{b.root.Cert}})
	wantReason(t, err, pki.ReasonCANotAllowed)
	// cacerts are trust anchors too, as in strongSwan.
	empty, err := pki.NewStore(pki.StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.VerifyPeer(p, fqdn(leafFQDN), &pki.Policy{CACerts: []*x509.Certificate{a.root.Cert}}); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyPeerBounds(t *testing.T) {
	l := newLab(t, labca.ECDSAP256)
	s := l.store(t, pki.StoreConfig{Limits: pki.Limits{MaxCerts: 3, MaxCertBytes: 4096, MaxTotalBytes: 6000}})
	id := fqdn(leafFQDN)
	many := payloads(l.leaf.Cert, l.im.Cert, l.im.Cert, l.im.Cert)
	_, err := s.VerifyPeer(many, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	_, err = s.VerifyPeer([]pki.CertPayload{{Encoding: pki.CertX509Signature, Data: make([]byte, 5000)}}, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	big := []pki.CertPayload{{Encoding: 12, Data: make([]byte, 4000)}, {Encoding: 12, Data: make([]byte, 4000)}}
	_, err = s.VerifyPeer(big, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	_, err = s.VerifyPeer([]pki.CertPayload{{Encoding: 12, Data: []byte("http://x")}}, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	_, err = s.VerifyPeer([]pki.CertPayload{{Encoding: pki.CertX509Signature, Data: []byte{0x30, 0x03, 1, 2, 3}}}, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	bad := payloads(l.leaf.Cert)
	bad = append(bad, pki.CertPayload{Encoding: pki.CertX509Signature, Data: l.im.Cert.Raw[:100]})
	_, err = s.VerifyPeer(bad, id, nil)
	wantReason(t, err, pki.ReasonMalformed)
	// Other encodings next to the certificates are ignored.
	mixed := append([]pki.CertPayload{{Encoding: pki.CertCRL, Data: []byte{0}}}, payloads(l.leaf.Cert, l.im.Cert)...)
	if _, err := s.VerifyPeer(mixed, id, nil); err != nil {
		t.Fatal(err)
	}
}
