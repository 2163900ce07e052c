package iked_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
	"github.com/spugate/spugate/testbed/strongswan"
)

// certPKI is the lab PKI of the certificate interop test, made with
// strongSwan's own pki tool (an implementation independent of ours): one
// root, an ECDSA intermediate and an RSA-4096 intermediate under it, the
// gateways' certificates, and the bad ones for the refusals.
type certPKI struct {
	root, im, imRSA *strongswan.Cert
	gw              map[string]*strongswan.Cert // "gw-a/<key type>"
	expired         *strongswan.Cert
	rogue           *strongswan.Cert // gw-b from a CA nobody trusts
	revoked         *strongswan.Cert
	crl             *strongswan.CRL
}

func makeCertPKI(t *testing.T, ln *lab.Line) *certPKI {
	t.Helper()
	p, err := strongswan.NewPKI(filepath.Join(ln.LogDir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	must := func(c *strongswan.Cert, err error) *strongswan.Cert {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	k := &certPKI{gw: map[string]*strongswan.Cert{}}
	k.root = must(p.NewCA("root", strongswan.CertOptions{DN: "C=CH, O=spugate lab, CN=lab root CA"}))
	k.im = must(p.NewIntermediate("im", k.root, strongswan.CertOptions{DN: "C=CH, O=spugate lab, CN=lab intermediate"}))
	k.imRSA = must(p.NewIntermediate("im-rsa", k.root, strongswan.CertOptions{Key: strongswan.RSA4096, DN: "C=CH, O=spugate lab, CN=lab RSA intermediate"}))
	gwOpts := func(id string, kt strongswan.KeyType) strongswan.CertOptions {
		return strongswan.CertOptions{Key: kt, DN: "C=CH, O=spugate lab, CN=" + id, SANs: []string{id}, Flags: []string{"serverAuth", "ikeIntermediate"}}
	}
	for _, kt := range []strongswan.KeyType{strongswan.ECDSA256, strongswan.RSA3072, strongswan.Ed25519, strongswan.RSA4096} {
		issuer := k.im
		if kt == strongswan.RSA4096 {
			issuer = k.imRSA
		}
		for _, g := range []struct{ name, id string }{{"gw-a", strongswan.IDGwA}, {"gw-b", strongswan.IDGwB}} {
			k.gw[g.name+"/"+string(kt)] = must(p.NewCert(g.name+"-"+string(kt), issuer, gwOpts(g.id, kt)))
		}
	}
	o := gwOpts(strongswan.IDGwB, strongswan.ECDSA256)
	o.NotBefore, o.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	k.expired = must(p.NewCert("gw-b-expired", k.im, o))
	rogueCA := must(p.NewCA("rogue", strongswan.CertOptions{DN: "C=CH, O=elsewhere, CN=rogue CA"}))
	k.rogue = must(p.NewCert("gw-b-rogue", rogueCA, gwOpts(strongswan.IDGwB, strongswan.ECDSA256)))
	k.revoked = must(p.NewCert("gw-b-revoked", k.im, gwOpts(strongswan.IDGwB, strongswan.ECDSA256)))
	if k.crl, err = p.NewCRL("im", k.im, []*strongswan.Cert{k.revoked}, strongswan.CRLOptions{}); err != nil {
		t.Fatal(err)
	}
	return k
}

// spugateCerts writes gw-a's credentials into dir's swanctl-like folders
// (replacing what was there): its certificate with the chain above it, its
// key (0600), the root as the only trust anchor, and CRLs.
func spugateCerts(t *testing.T, dir string, own *strongswan.Cert, k *certPKI, crls ...*strongswan.CRL) {
	t.Helper()
	os.RemoveAll(dir)
	write := func(sub, name string, data []byte, mode os.FileMode) {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, sub, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	var chain []byte
	for _, c := range own.Chain() {
		chain = append(chain, c.CertPEM...)
	}
	write("x509", "gw-a.pem", chain, 0o644)
	write("private", "gw-a.key", own.KeyPEM, 0o600)
	write("x509ca", "root.pem", k.root.CertPEM, 0o644)
	write("x509crl", ".keep", nil, 0o644)
	os.Remove(filepath.Join(dir, "x509crl", ".keep"))
	for _, c := range crls {
		write("x509crl", c.Name+".crl", c.PEM, 0o644)
	}
}

// certYAML is gw-a's configuration with certificates.
func certYAML(ln *lab.Line, dir, localAuth, remoteID string) string {
	sc := spugateConf(ln, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	sc.global = fmt.Sprintf("pki:\n  x509: %[1]s/x509\n  x509ca: %[1]s/x509ca\n  x509crl: %[1]s/x509crl\n  private: %[1]s/private\n", dir)
	y := sc.yaml()
	y = strings.Replace(y, "    local:\n      auth: psk\n", "    local:\n      auth: "+localAuth+"\n      certs: gw-a.pem\n", 1)
	y = strings.Replace(y, "    remote:\n      auth: psk\n      id: "+strongswan.IDGwB, "    remote:\n      auth: pubkey\n      id: \""+remoteID+"\"", 1)
	return y
}

// charonCertConf is charon's configuration on gw-b with a certificate.
func charonCertConf(t *testing.T, ln *lab.Line, own *strongswan.Cert, k *certPKI, localAuth string) strongswan.Config {
	t.Helper()
	cfg := charonConf(t, ln, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	cfg.Secrets = strongswan.Secrets{}
	c := &cfg.Conns[0]
	c.Local.Auth, c.Remote.Auth = localAuth, "pubkey"
	c.Local.Certs = []string{cfg.Files.AddIdentity(own)}
	c.Remote.CACerts = []string{cfg.Files.AddCA(k.root)}
	return cfg
}

// TestPrivilegedInteropCertificates runs spugate (gw-a) against strongSwan's
// charon (gw-b) with certificates from one lab CA with intermediates, made
// by strongSwan's pki: ECDSA P-256, RSA-3072 with RSASSA-PSS (RFC 7427),
// Ed25519, and RSA-4096 whose IKE_AUTH messages need fragments at the
// default 1280 bytes; RFC 7296's method 1 and RFC 4754's method 9 with a
// charon that does not speak RFC 7427; each with spugate as initiator and
// as responder and traffic both ways. Then the refusals, each with its reason in iked's log,
// AUTHENTICATION_FAILED on the wire and no SA: an expired certificate, one
// from an unknown CA, a revoked one (CRL), and an identity that is not the
// configured one.
func TestPrivilegedInteropCertificates(t *testing.T) {
	strongswan.Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true, GatewayLinks: lab.LinkOptions{Queues: 2}}, "ping")
	k := makeCertPKI(t, ln)
	dir := filepath.Join(ln.LogDir, "spugate-certs")
	a := &gw{name: "gw-a", host: ln.GwA}
	s, err := daemons.StartSpud(ln.GwA, daemons.SpudOptions{SPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	a.spud = s
	t.Cleanup(func() { s.Stop() })
	ecdsaA, ecdsaB := k.gw["gw-a/"+string(strongswan.ECDSA256)], k.gw["gw-b/"+string(strongswan.ECDSA256)]
	ib := &interopbed{ln: ln, a: a}
	ib.cfg = charonCertConf(t, ln, ecdsaB, k, "pubkey")
	c, err := strongswan.Start(ln.GwB, ib.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ib.c = c
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(ib.c.Report())
		}
		ib.c.Stop()
	})
	spugateCerts(t, dir, ecdsaA, k)
	a.start(t, certYAML(ln, dir, "pubkey", strongswan.IDGwB), "")
	// swanctl --list-certs over VICI shows iked's certificates: its own
	// with its key, and the CAs.
	if _, err := os.Stat(swanctlPath); err == nil {
		out, err := swanctl(t, a.iked.VICI, "--list-certs")
		for _, want := range []string{"CN=" + strongswan.IDGwA + `"`, "has private key", `CN=lab root CA"`, "CN=lab intermediate"} {
			if err != nil || !strings.Contains(out, want) {
				t.Errorf("swanctl --list-certs lacks %q (%v):\n%s", want, err, out)
			}
		}
		t.Logf("swanctl --list-certs:\n%s", out)
	}

	for _, kc := range []struct {
		name      string
		key       strongswan.KeyType
		authS     string // gw-a's local auth
		authC     string // charon's local auth
		schemeS   string // what spugate signs with
		schemeC   string // what charon signs with, as spugate names it
		charonLog string // charon's name of spugate's scheme
		fragments bool
		classic   bool // charon without RFC 7427 (signature_authentication = no)
	}{
		{"ecdsa-p256", strongswan.ECDSA256, "pubkey", "pubkey", "ecdsa-sha256", "ecdsa-sha256", "ECDSA_WITH_SHA256_DER", false, false},
		{"rsa3072-pss", strongswan.RSA3072, "rsa/pss", "rsa/pss-sha256", "rsa/pss-sha256", "rsa/pss-sha256", "RSA_EMSA_PSS_SHA2_256", false, false},
		{"ed25519", strongswan.Ed25519, "pubkey", "pubkey", "ed25519", "ed25519", "ED25519", false, false},
		{"rsa4096-fragmented", strongswan.RSA4096, "pubkey", "pubkey", "rsa-sha384", "rsa-sha384", "RSA_EMSA_PKCS1_SHA2_384", true, false},
		{"rsa3072-method-1", strongswan.RSA3072, "pubkey", "pubkey", "rsa-sha1", "rsa-sha1", "RSA signature", false, true},
		{"ecdsa-p256-method-9", strongswan.ECDSA256, "pubkey", "pubkey", "ecdsa-256", "ecdsa-256", "ECDSA-256 signature", false, true},
	} {
		t.Run(kc.name, func(t *testing.T) {
			ownA, ownB := k.gw["gw-a/"+string(kc.key)], k.gw["gw-b/"+string(kc.key)]
			spugateCerts(t, dir, ownA, k)
			cc := charonCertConf(t, ln, ownB, k, kc.authC)
			if kc.classic {
				cc.Settings.Extra = map[string]string{"signature_authentication": "no"}
			}
			reconfigureCerts(t, ib, cc, certYAML(ln, dir, kc.authS, strongswan.IDGwB))
			for _, role := range []string{"spugate-initiates", "charon-initiates"} {
				t.Run(role, func(t *testing.T) {
					defer teardown(t, ib)
					logC, logS := len(ib.c.Log()), len(a.iked.Proc.Log())
					start := time.Now()
					if role == "spugate-initiates" {
						a.spuctl(t, "initiate", "tun")
						if _, err := ib.c.WaitEstablished("site", "net", 10*time.Second); err != nil {
							t.Fatal(err)
						}
					} else if err := ib.c.Initiate("net", 10*time.Second); err != nil {
						t.Fatal(err)
					}
					t.Logf("%s, %s: tunnel up in %v", kc.name, role, time.Since(start).Round(100*time.Microsecond))
					ours := a.sas(t)
					if len(ours) != 1 || ours[0].AuthLocal != kc.schemeS || ours[0].AuthRemote != kc.schemeC {
						t.Fatalf("spugate's IKE SAs: %+v, want signing %s and %s", ours, kc.schemeS, kc.schemeC)
					}
					re := regexp.MustCompile(`authentication of '` + regexp.QuoteMeta(strongswan.IDGwA) + `' with ` + kc.charonLog + `[A-Z0-9_]* successful`)
					if !waitFor(2*time.Second, func() bool { return re.MatchString(ib.c.Log()[logC:]) }) {
						t.Errorf("charon's log lacks %s:\n%s", re, tail(ib.c.Log()[logC:], 40))
					}
					// charon checked our chain through the intermediate we sent
					// or it held, and we checked charon's through the one it sent.
					if l := a.iked.Proc.Log()[logS:]; !strings.Contains(l, "peer authenticated with a certificate") {
						t.Errorf("iked's log lacks the peer's certificate:\n%s", tail(l, 30))
					}
					if kc.fragments {
						// Both ways: charon reassembled ours, we reassembled its.
						if !regexp.MustCompile(`received fragment #\d+ of [2-9], `).MatchString(ib.c.Log()[logC:]) {
							t.Errorf("charon received no fragments of ours:\n%s", tail(ib.c.Log()[logC:], 40))
						}
						if l := a.iked.Proc.Log()[logS:]; !strings.Contains(l, "message reassembled") || !regexp.MustCompile(`fragments=[2-9]`).MatchString(l) {
							t.Errorf("iked neither sent nor reassembled fragments:\n%s", tail(l, 30))
						}
					}
					p := ln.Plan
					pingUp(t, ln.ClientA, p.ClientA4, p.ClientB4)
					mustPing(t, ln.ClientB, p.ClientB4, p.ClientA4)
					if role == "spugate-initiates" {
						if err := ib.c.Terminate("site"); err != nil {
							t.Fatal(err)
						}
					} else {
						a.spuctl(t, "terminate", "tun")
					}
				})
			}
		})
	}

	for _, r := range []struct {
		name      string
		charonOwn *strongswan.Cert
		crl       bool
		remoteID  string
		reason    string // in iked's log and ike-stats
		roles     []string
	}{
		{"expired", k.expired, false, strongswan.IDGwB, "cert_expired", []string{"spugate-initiates", "charon-initiates"}},
		{"unknown-ca", k.rogue, false, strongswan.IDGwB, "cert_unknown_ca", []string{"spugate-initiates", "charon-initiates"}},
		{"revoked", k.revoked, true, strongswan.IDGwB, "cert_revoked", []string{"spugate-initiates", "charon-initiates"}},
		{"id-mismatch", ecdsaB, false, "*.other.example", "peer_id_mismatch", []string{"spugate-initiates", "charon-initiates"}},
	} {
		t.Run("refuse-"+r.name, func(t *testing.T) {
			var crls []*strongswan.CRL
			if r.crl {
				crls = append(crls, k.crl)
			}
			spugateCerts(t, dir, ecdsaA, k, crls...)
			cc := charonCertConf(t, ln, r.charonOwn, k, "pubkey")
			reconfigureCerts(t, ib, cc, certYAML(ln, dir, "pubkey", r.remoteID))
			for _, role := range r.roles {
				t.Run(role, func(t *testing.T) {
					defer teardown(t, ib)
					before := ikeStat(t, a, r.reason)
					logC, logS := len(ib.c.Log()), len(a.iked.Proc.Log())
					if role == "spugate-initiates" {
						if out, err := a.iked.Spuctl("initiate", "tun"); err == nil {
							t.Errorf("spugate's initiate succeeded: %s", out)
						}
					} else if err := ib.c.Initiate("net", 10*time.Second); err == nil {
						t.Errorf("charon's initiate succeeded")
					}
					if !waitFor(5*time.Second, func() bool { return strings.Contains(a.iked.Proc.Log()[logS:], "reason="+r.reason) }) {
						t.Errorf("iked's log lacks reason=%s:\n%s", r.reason, tail(a.iked.Proc.Log()[logS:], 30))
					}
					if got := ikeStat(t, a, r.reason); got != before+1 {
						t.Errorf("ike-stats %s: %d, want %d", r.reason, got, before+1)
					}
					// AUTHENTICATION_FAILED on the wire: charon logs what it got,
					// in our IKE_AUTH response or, when we initiated, in an
					// INFORMATIONAL after its IKE_AUTH response.
					want := regexp.MustCompile(`received AUTHENTICATION_FAILED notify error|parsed INFORMATIONAL request \d+ \[ N\(AUTH_FAILED\) \]`)
					if !waitFor(5*time.Second, func() bool { return want.MatchString(ib.c.Log()[logC:]) }) {
						t.Errorf("charon did not receive AUTHENTICATION_FAILED:\n%s", tail(ib.c.Log()[logC:], 30))
					}
				})
			}
		})
	}
}

// teardown ends whatever a subtest left: charon's IKE SAs and ours, and
// checks nothing remains in spud or charon.
func teardown(t *testing.T, ib *interopbed) {
	t.Helper()
	ib.c.Terminate("site")
	ib.a.iked.Spuctl("terminate", "tun")
	gone(t, ib.a)
	ib.charonGone(t)
}

// reconfigureCerts loads new configurations into charon and iked.
func reconfigureCerts(t *testing.T, ib *interopbed, cc strongswan.Config, yaml string) {
	t.Helper()
	if err := ib.c.Reload(cc); err != nil {
		t.Fatal(err)
	}
	ib.cfg = cc
	if err := ib.a.iked.WriteConfig(yaml, ""); err != nil {
		t.Fatal(err)
	}
	ib.a.spuctl(t, "reload")
}

// ikeStat reads one failure counter from spuctl ike-stats.
func ikeStat(t *testing.T, g *gw, reason string) int {
	t.Helper()
	out := g.spuctl(t, "ike-stats")
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(reason) + `\s+(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}
