package worker_test

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

// The lab of these tests: a root CA, an intermediate under it that issues
// the gateways' certificates, and an unrelated root. Each gateway trusts
// the root only (x509ca), so the intermediate must travel in CERT payloads.
type certLab struct {
	root, inter, other *labca.Cert
}

var (
	labOnce sync.Once
	theLab  certLab
	labErr  error

	issuedMu sync.Mutex
	issued   = map[string]*labca.Cert{}
)

func getLab(t testing.TB) certLab {
	labOnce.Do(func() {
		if theLab.root, labErr = labca.NewRoot(labca.Template{Subject: "C=CH, O=spugate test, CN=test root"}); labErr != nil {
			return
		}
		if theLab.inter, labErr = theLab.root.NewIntermediate(labca.Template{Subject: "C=CH, O=spugate test, CN=test intermediate"}); labErr != nil {
			return
		}
		theLab.other, labErr = labca.NewRoot(labca.Template{Subject: "C=CH, O=elsewhere, CN=other root"})
	})
	if labErr != nil {
		t.Fatal(labErr)
	}
	return theLab
}

// gatewayCert issues (once per variant) a certificate for a gateway
// identity; keys are expensive, so variants are cached by name.
func gatewayCert(t testing.TB, issuer *labca.Cert, variant, id string, kt labca.KeyType, mod func(*labca.Template)) *labca.Cert {
	t.Helper()
	key := fmt.Sprintf("%p/%s/%s/%s", issuer, variant, id, kt)
	issuedMu.Lock()
	defer issuedMu.Unlock()
	if c := issued[key]; c != nil {
		return c
	}
	tmpl := labca.Template{Subject: "C=CH, O=spugate test, CN=" + id, DNS: []string{id}, Key: kt}
	if mod != nil {
		mod(&tmpl)
	}
	c, err := issuer.Issue(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	issued[key] = c
	return c
}

// certSide describes one gateway of a certificate test.
type certSide struct {
	local, remote      string // addresses
	id, remoteID       string
	localTS, remoteTS  string
	authLocal, authRem string // default pubkey
	cert               *labca.Cert
	chain              []*x509.Certificate // written after the certificate
	// more are further credentials (certs: gw.pem, gw1.pem...).
	more    []credFile
	trust   []*labca.Cert // x509ca; default the root
	cacerts []*labca.Cert // remote cacerts, written to x509ca too
	crl     []byte
	global  string
	extra   string
}

type credFile struct {
	cert  *labca.Cert
	chain []*x509.Certificate
}

func (s certSide) config(t testing.TB) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"x509", "x509ca", "x509crl", "private"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var certNames []string
	for i, c := range append([]credFile{{s.cert, s.chain}}, s.more...) {
		name := fmt.Sprintf("gw%d", i)
		must(labca.WriteCertPEM(filepath.Join(dir, "x509", name+".pem"), append([]*x509.Certificate{c.cert.Cert}, c.chain...)...))
		must(labca.WriteKeyPEM(filepath.Join(dir, "private", name+".key"), c.cert.Key))
		certNames = append(certNames, name+".pem")
	}
	for i, ca := range s.trust {
		must(labca.WriteCertPEM(filepath.Join(dir, "x509ca", fmt.Sprintf("ca%d.pem", i)), ca.Cert))
	}
	var cacerts []string
	for i, ca := range s.cacerts {
		name := fmt.Sprintf("cacert%d.pem", i)
		must(labca.WriteCertPEM(filepath.Join(dir, "x509ca", name), ca.Cert))
		cacerts = append(cacerts, name)
	}
	if s.crl != nil {
		must(labca.WriteCRLPEM(filepath.Join(dir, "x509crl", "ca.crl"), s.crl))
	}
	if s.authLocal == "" {
		s.authLocal = "pubkey"
	}
	if s.authRem == "" {
		s.authRem = "pubkey"
	}
	local := fmt.Sprintf("      auth: %s\n      id: %q\n", s.authLocal, s.id)
	if s.authLocal != "psk" {
		local += "      certs: " + strings.Join(certNames, ", ") + "\n"
	}
	remote := fmt.Sprintf("      auth: %s\n      id: %q\n", s.authRem, s.remoteID)
	if len(cacerts) > 0 {
		remote += "      cacerts: " + strings.Join(cacerts, ", ") + "\n"
	}
	yaml := fmt.Sprintf(`retransmit_timeout: 4s
pki:
  x509: %[1]s/x509
  x509ca: %[1]s/x509ca
  x509crl: %[1]s/x509crl
  private: %[1]s/private
%[2]sconnections:
  tun:
    local_addrs: %[3]s
    remote_addrs: %[4]s
    proposals: aes128gcm16-prfsha256-x25519
%[5]s    local:
%[6]s    remote:
%[7]s    children:
      net:
        local_ts: %[8]s
        remote_ts: %[9]s
        esp_proposals: aes128gcm16
`, dir, s.global, s.local, s.remote, s.extra, local, remote, s.localTS, s.remoteTS)
	secrets := ""
	if s.authLocal == "psk" || s.authRem == "psk" {
		secrets = fmt.Sprintf("ike:\n  a:\n    id: [%q, %q]\n    secret: shared\n", s.id, s.remoteID)
	}
	return iketest.WriteConfig(t, yaml, secrets)
}

// certPair builds gw-a and gw-b with certificates of key types ka and kb
// from the intermediate, each trusting the root; mod changes a side.
func certPair(t *testing.T, ka, kb labca.KeyType, modA, modB func(*certSide)) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	t.Helper()
	lab := getLab(t)
	a := certSide{local: addrA.String(), remote: addrB.String(), id: "gw-a.example", remoteID: "gw-b.example",
		localTS: "198.18.1.0/24", remoteTS: "198.18.2.0/24", trust: []*labca.Cert{lab.root}, chain: []*x509.Certificate{lab.inter.Cert}}
	b := certSide{local: addrB.String(), remote: addrA.String(), id: "gw-b.example", remoteID: "gw-a.example",
		localTS: "198.18.2.0/24", remoteTS: "198.18.1.0/24", trust: []*labca.Cert{lab.root}, chain: []*x509.Certificate{lab.inter.Cert}}
	a.cert = gatewayCert(t, lab.inter, "", a.id, ka, nil)
	b.cert = gatewayCert(t, lab.inter, "", b.id, kb, nil)
	if modA != nil {
		modA(&a)
	}
	if modB != nil {
		modB(&b)
	}
	return newPair(t, a.config(t), b.config(t))
}

func TestCertAuthEveryKeyType(t *testing.T) {
	cases := []struct {
		name   string
		ka, kb labca.KeyType
		authA  string
		wantA  string // the scheme gw-a signs with, as gw-b saw it
		wantB  string
	}{
		{"ecdsa-p256", labca.ECDSAP256, labca.ECDSAP256, "", "ecdsa-sha256", "ecdsa-sha256"},
		{"ecdsa-p384", labca.ECDSAP384, labca.ECDSAP256, "", "ecdsa-sha384", "ecdsa-sha256"},
		{"rsa2048-pkcs1", labca.RSA2048, labca.ECDSAP256, "", "rsa-sha256", "ecdsa-sha256"},
		{"rsa3072-pss", labca.RSA3072, labca.RSA3072, "rsa/pss", "rsa/pss-sha256", "rsa-sha256"},
		{"rsa-pss-sha384-constraint", labca.RSA2048, labca.Ed25519, "rsa/pss-sha384", "rsa/pss-sha384", "ed25519"},
		{"ed25519", labca.Ed25519, labca.Ed25519, "", "ed25519", "ed25519"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, na, nb := certPair(t, c.ka, c.kb, func(o *certSide) { o.authLocal = orDefault(c.authA, "pubkey") }, nil)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			established(t, na, nb)
			ia, ib := na.Worker.List()[0], nb.Worker.List()[0]
			if ia.AuthLocal != c.wantA || ib.AuthRemote != c.wantA || ib.AuthLocal != c.wantB || ia.AuthRemote != c.wantB {
				t.Errorf("schemes: a signs %s (b saw %s), b signs %s (a saw %s); want %s and %s",
					ia.AuthLocal, ib.AuthRemote, ib.AuthLocal, ia.AuthRemote, c.wantA, c.wantB)
			}
			if ib.RemoteID.String() != "gw-a.example" || ia.RemoteID.String() != "gw-b.example" {
				t.Errorf("identities %s / %s", ib.RemoteID, ia.RemoteID)
			}
			// Both sides sent CERTREQ (the root), so both sent their
			// certificate and the intermediate.
			for _, n := range []*iketest.Node{na, nb} {
				if !strings.Contains(n.Logs(), "certs_sent=2") || !strings.Contains(n.Logs(), "issuer=\"C=CH, O=spugate test, CN=test intermediate\"") {
					t.Errorf("%s: chain not sent or not verified through the intermediate", n.Name)
				}
			}
			// Two certificates, the AUTH and the Child SA's payloads exceed
			// 1280 bytes: the IKE_AUTH request is fragmented and reassembled
			// (the response too when it is as large).
			fa, fb := na.Counters.Get(stats.FragmentedMessages), nb.Counters.Get(stats.FragmentedMessages)
			if fa != 1 || nb.Counters.Get(stats.Reassembled) != fa || na.Counters.Get(stats.Reassembled) != fb {
				t.Errorf("fragmented %d/%d, reassembled %d/%d", fa, fb, na.Counters.Get(stats.Reassembled), nb.Counters.Get(stats.Reassembled))
			}
		})
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestCertAuthClassicMethods: a peer without RFC 7427 gets RFC 7296's
// method 1 (RSA with SHA-1) and RFC 4754's ECDSA methods; an Ed25519 key has
// no classic method, so that side cannot authenticate.
func TestCertAuthClassicMethods(t *testing.T) {
	noSig := func(o *certSide) { o.global = "signature_authentication: no\n" }
	t.Run("rsa-method-1", func(t *testing.T) {
		s, na, nb := certPair(t, labca.RSA2048, labca.ECDSAP384, nil, noSig)
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		established(t, na, nb)
		ia, ib := na.Worker.List()[0], nb.Worker.List()[0]
		if ia.AuthLocal != "rsa-sha1" || ib.AuthRemote != "rsa-sha1" || ib.AuthLocal != "ecdsa-384" || ia.AuthRemote != "ecdsa-384" {
			t.Errorf("schemes %s/%s and %s/%s, want rsa-sha1 (method 1) and ecdsa-384 (method 10)", ia.AuthLocal, ib.AuthRemote, ib.AuthLocal, ia.AuthRemote)
		}
	})
	t.Run("ed25519-without-rfc7427", func(t *testing.T) {
		s, na, nb := certPair(t, labca.Ed25519, labca.ECDSAP256, nil, noSig)
		err := initiate(t, s, na, 10*time.Second)
		if err == nil || na.Counters.Failures(stats.UnsupportedScheme) != 1 || !strings.Contains(err.Error(), "RFC 7427") {
			t.Fatalf("err %v, counters %+v", err, na.Counters.Snapshot())
		}
		s.RunFor(time.Minute)
		noSAs(t, na, nb)
	})
	t.Run("remote-constraint", func(t *testing.T) {
		// gw-b accepts only RSASSA-PSS from gw-a, which signs PKCS#1.
		s, na, nb := certPair(t, labca.RSA2048, labca.ECDSAP256, nil, func(o *certSide) { o.authRem = "rsa/pss" })
		failure(t, s, na, nb, stats.AuthFailed, stats.SchemeNotAllowed, "AUTHENTICATION_FAILED", "pki_reason=scheme_not_allowed")
	})
}

// TestCertReqHonoured: gw-a holds two certificates from two CAs, the
// other CA's first (its default); gw-b trusts ours only and names it in
// its CERTREQ, so gw-a picks the second credential. When gw-b asks for the
// intermediate itself (cacerts), gw-a sends its certificate alone.
func TestCertReqHonoured(t *testing.T) {
	lab := getLab(t)
	otherInter, err := lab.other.NewIntermediate(labca.Template{Subject: "C=CH, O=elsewhere, CN=other intermediate"})
	if err != nil {
		t.Fatal(err)
	}
	otherCert := gatewayCert(t, otherInter, "", "gw-a.example", labca.ECDSAP256, nil)
	twoCreds := func(o *certSide) {
		own := credFile{o.cert, o.chain}
		o.cert, o.chain = otherCert, []*x509.Certificate{otherInter.Cert}
		o.more = []credFile{own}
	}
	t.Run("root", func(t *testing.T) {
		s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, twoCreds, nil)
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		established(t, na, nb)
		if !strings.Contains(na.Logs(), `cert="C=CH, O=spugate test, CN=gw-a.example" certs_sent=2`) {
			t.Errorf("gw-a did not sign with the requested CA's certificate and chain:\n%s", grep(na.Logs(), "signing"))
		}
	})
	t.Run("intermediate", func(t *testing.T) {
		s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, twoCreds, func(o *certSide) { o.cacerts = []*labca.Cert{lab.inter} })
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		established(t, na, nb)
		if !strings.Contains(na.Logs(), `cert="C=CH, O=spugate test, CN=gw-a.example" certs_sent=1`) {
			t.Errorf("gw-a sent the CA gw-b asked for:\n%s", grep(na.Logs(), "signing"))
		}
	})
	t.Run("no-request-default", func(t *testing.T) {
		// send_certreq no on gw-b and send_cert always on gw-a: the
		// default (first) credential goes, from a CA gw-b does not trust.
		s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, func(o *certSide) { twoCreds(o); o.extra = "    send_cert: always\n" },
			func(o *certSide) { o.extra = "    send_certreq: no\n" })
		failure(t, s, na, nb, stats.AuthFailed, stats.CertUnknownCA, "AUTHENTICATION_FAILED", "pki_reason=unknown_ca")
	})
	t.Run("send-cert-never", func(t *testing.T) {
		s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, func(o *certSide) { o.extra = "    send_cert: never\n" }, nil)
		failure(t, s, na, nb, stats.AuthFailed, stats.CertMalformed, "AUTHENTICATION_FAILED", "reason=cert_malformed")
	})
}

func grep(logs, word string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestCertFailures: every refusal of a peer's certificate or AUTH ends the
// exchange with AUTHENTICATION_FAILED, leaves no SA on either side, and is
// counted and logged with its specific reason, whichever side refuses.
func TestCertFailures(t *testing.T) {
	lab := getLab(t)
	badA := func(variant string, mod func(*labca.Template)) func(*certSide) {
		return func(o *certSide) { o.cert = gatewayCert(t, lab.inter, variant, o.id, labca.ECDSAP256, mod) }
	}
	cases := []struct {
		name   string
		bad    func(*certSide) // applied to the side whose certificate is refused
		after  func(t *testing.T, cfg *config.Config)
		refuse stats.Reason
		pki    string
	}{
		{"expired", badA("expired", func(t *labca.Template) { *t = t.Expired() }), nil, stats.CertExpired, "expired"},
		{"not-yet-valid", badA("future", func(t *labca.Template) { *t = t.NotYetValid() }), nil, stats.CertNotYetValid, "not_yet_valid"},
		{"unknown-ca", func(o *certSide) {
			otherInter, err := lab.other.NewIntermediate(labca.Template{Subject: "CN=unknown intermediate"})
			if err != nil {
				t.Fatal(err)
			}
			o.cert = gatewayCert(t, otherInter, "", o.id, labca.ECDSAP256, nil)
			o.chain = []*x509.Certificate{otherInter.Cert}
			o.trust = append(o.trust, lab.other) // its own CA, so that it loads
		}, nil, stats.CertUnknownCA, "unknown_ca"},
		{"key-usage", badA("codesigning", func(t *labca.Template) { t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning} }),
			nil, stats.CertKeyUsage, "key_usage"},
		{"id-mismatch", nil, func(t *testing.T, cfg *config.Config) {
			// The gateway claims an identity its certificate does not hold
			// (the configuration refuses that at load; change it after).
			id, _ := config.ParseIdentity("gw-z.example")
			cfg.Connections["tun"].Local.Identity = id
		}, stats.CertIDMismatch, "id_mismatch"},
		{"bad-signature", nil, func(t *testing.T, cfg *config.Config) {
			k, err := labca.GenerateKey(labca.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			pk, err := pki.NewPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Connections["tun"].Local.Credentials[0].Key = pk
		}, stats.BadSignature, "bad_signature"},
	}
	for _, c := range cases {
		for _, refuser := range []string{"responder", "initiator"} {
			t.Run(c.name+"/"+refuser, func(t *testing.T) {
				// The refused side is gw-a when the responder refuses.
				modA, modB := c.bad, (func(*certSide))(nil)
				loose := func(o *certSide) { o.remoteID = "*.example" }
				if refuser == "initiator" {
					modA, modB = nil, c.bad
				}
				if c.name == "id-mismatch" {
					if refuser == "responder" {
						modB = loose
					} else {
						modA = loose
					}
				}
				s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, modA, modB)
				refused, refusing := na, nb
				if refuser == "initiator" {
					refused, refusing = nb, na
				}
				if c.after != nil {
					c.after(t, refused.Cfg)
				}
				want := fmt.Sprintf("pki_reason=%s", c.pki)
				if refuser == "responder" {
					failure(t, s, na, nb, stats.AuthFailed, c.refuse, "AUTHENTICATION_FAILED", want)
				} else {
					failure(t, s, na, nb, c.refuse, stats.AuthFailed, want, "AUTHENTICATION_FAILED")
				}
				if !strings.Contains(refusing.Logs(), "peer authentication failed") || !strings.Contains(refusing.Logs(), "conn=tun") {
					t.Errorf("%s: no log line with the connection and reason:\n%s", refusing.Name, grep(refusing.Logs(), "authentication failed"))
				}
				if n := refusing.Counters.Failures(c.refuse); n != 1 {
					t.Errorf("%s counted %d times", c.refuse, n)
				}
				if refusing.Counters.Get(stats.IKESAsEstablished) != 0 {
					t.Errorf("the refusing side established an IKE SA")
				}
			})
		}
	}
}

// TestCertRevoked: gw-b holds a CRL of the intermediate that lists gw-a's
// certificate.
func TestCertRevoked(t *testing.T) {
	lab := getLab(t)
	revoked := gatewayCert(t, lab.inter, "revoked", "gw-a.example", labca.ECDSAP256, nil)
	crl, err := lab.inter.CRL([]*x509.Certificate{revoked.Cert}, 1, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, func(o *certSide) { o.cert = revoked },
		func(o *certSide) { o.crl = crl })
	failure(t, s, na, nb, stats.AuthFailed, stats.CertRevoked, "AUTHENTICATION_FAILED", "pki_reason=revoked")

	// A certificate of the same CA that is not on the list passes.
	s, na, nb = certPair(t, labca.ECDSAP256, labca.ECDSAP256, nil, func(o *certSide) { o.crl = crl })
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
}

// TestCertWithPSK: one side signs, the other uses a pre-shared key (as
// swanctl allows: each round on its own).
func TestCertWithPSK(t *testing.T) {
	s, na, nb := certPair(t, labca.ECDSAP256, labca.ECDSAP256, func(o *certSide) { o.authRem = "psk" },
		func(o *certSide) { o.authLocal = "psk" })
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	ia := na.Worker.List()[0]
	if ia.AuthLocal != "ecdsa-sha256" || ia.AuthRemote != "psk" {
		t.Errorf("auth %s / %s", ia.AuthLocal, ia.AuthRemote)
	}
}

// BenchmarkEstablishCert measures the CPU cost of one IKE_SA_INIT +
// IKE_AUTH with a Child SA, both ends, over the in-memory network, with
// certificates of each key type (chain verification, signing and
// verifying both ways, fragments where needed); compare BenchmarkEstablish
// (PSK) in the same run.
func BenchmarkEstablishCert(b *testing.B) {
	for _, kt := range []labca.KeyType{labca.ECDSAP256, labca.RSA3072, labca.Ed25519, labca.RSA4096} {
		b.Run(string(kt), func(b *testing.B) {
			lab := getLab(b)
			side := func(id, remoteID, local, remote string) certSide {
				return certSide{local: local, remote: remote, id: id, remoteID: remoteID, localTS: "198.18.1.0/24", remoteTS: "198.18.2.0/24",
					trust: []*labca.Cert{lab.root}, chain: []*x509.Certificate{lab.inter.Cert}, cert: gatewayCert(b, lab.inter, "", id, kt, nil)}
			}
			a := side("gw-a.example", "gw-b.example", addrA.String(), addrB.String())
			bb := side("gw-b.example", "gw-a.example", addrB.String(), addrA.String())
			bb.localTS, bb.remoteTS = a.remoteTS, a.localTS
			ca, cb := a.config(b), bb.config(b)
			b.ReportAllocs()
			for b.Loop() {
				s, na, _ := newPair(b, ca, cb)
				if err := na.Worker.Initiate("tun", "", nil); err != nil {
					b.Fatal(err)
				}
				s.RunFor(time.Second)
				if na.Counters.Get(stats.ChildSAsInstalled) != 1 {
					b.Fatal("not established")
				}
			}
		})
	}
}
