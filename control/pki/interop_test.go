package pki_test

// Cross-checks against independent implementations: strongSwan's `pki`
// tool (the peer spugate interoperates with) and OpenSSL. Each test skips,
// saying why, when its tool is not installed.

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/pki/labca"
)

func need(t *testing.T, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s is not installed: %v", tool, err)
	}
	return p
}

// run runs a tool and returns its standard output and its standard error
// without the noise of strongSwan's TPM plugin.
func run(t *testing.T, stdin []byte, name string, args ...string) (stdout []byte, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err = cmd.Run()
	var keep []string
	for _, line := range strings.Split(e.String(), "\n") {
		if !strings.Contains(line, "TPM") && !strings.Contains(line, "plugin 'tpm'") && line != "" {
			keep = append(keep, line)
		}
	}
	return o.Bytes(), strings.Join(keep, "\n"), err
}

func mustRun(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, stderr, err := run(t, stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr)
	}
	return out
}

func TestStrongSwanVerifiesLabChains(t *testing.T) {
	pkiTool := need(t, "pki")
	for _, kt := range labca.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			l := newLab(t, kt)
			gw := filepath.Join(l.dir, "gw.pem")
			if err := labca.WriteCertPEM(gw, l.leaf.Cert); err != nil {
				t.Fatal(err)
			}
			out, stderr, err := run(t, nil, pkiTool, "--verify", "--in", gw, "--cacert", l.caFile, "--cacert", l.imFile)
			if err != nil || !strings.Contains(string(out)+stderr, "certificate trusted") {
				t.Fatalf("strongSwan refused the chain: %v\n%s%s", err, out, stderr)
			}
			// The CRL we make is one strongSwan honours.
			der, err := l.im.CRL([]*x509.Certificate{l.leaf.Cert}, 1, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			crl := filepath.Join(l.dir, "im.crl")
			if err := labca.WriteCRLPEM(crl, der); err != nil {
				t.Fatal(err)
			}
			out, stderr, err = run(t, nil, pkiTool, "--verify", "--in", gw, "--cacert", l.caFile, "--cacert", l.imFile, "--crl", crl)
			if err == nil || !strings.Contains(string(out)+stderr, "revoked") {
				t.Fatalf("strongSwan did not see the revocation: %v\n%s%s", err, out, stderr)
			}
			// Negative control: the wrong anchor.
			other := newLab(t, kt)
			if _, _, err := run(t, nil, pkiTool, "--verify", "--in", gw, "--cacert", other.caFile); err == nil {
				t.Fatal("strongSwan trusted a chain to another root: the check above cannot fail")
			}
		})
	}
}

// strongSwan's own CA, intermediate and gateway certificate, made with
// `pki --gen/--self/--issue`, must pass our chain verification.
func TestVerifyStrongSwanMadeChains(t *testing.T) {
	pkiTool := need(t, "pki")
	// sigAlg is the scheme whose AUTH AlgorithmIdentifier must equal
	// strongSwan's certificate signatureAlgorithm: strongSwan builds both
	// with the same function (signature_params_build), so this checks our
	// RFC 7427 encodings against an independent implementation.
	cases := []struct {
		name    string
		gen     []string
		padding string
		sigAlg  pki.Scheme
	}{
		{"rsa", []string{"--type", "rsa", "--size", "2048"}, "pkcs1", pki.RSAPKCS1SHA256},
		{"rsa-pss", []string{"--type", "rsa", "--size", "3072"}, "pss", pki.RSAPSSSHA256},
		{"ecdsa-p256", []string{"--type", "ecdsa", "--size", "256"}, "", pki.ECDSASHA256},
		{"ecdsa-p384", []string{"--type", "ecdsa", "--size", "384"}, "", pki.ECDSASHA384},
		{"ed25519", []string{"--type", "ed25519"}, "", pki.Ed25519},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			pad := []string{}
			if c.padding != "" {
				pad = []string{"--rsa-padding", c.padding}
			}
			key := func(name string) string {
				p := filepath.Join(dir, name+".key")
				if err := os.WriteFile(p, mustRun(t, nil, pkiTool, append(append([]string{"--gen"}, c.gen...), "--outform", "pem")...), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			write := func(name string, data []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, data, 0o644); err != nil {
					t.Fatal(err)
				}
				return p
			}
			caKey, imKey, gwKey := key("ca"), key("im"), key("gw")
			ca := write("ca.pem", mustRun(t, nil, pkiTool, append([]string{"--self", "--in", caKey, "--dn", "C=CH, O=strongSwan, CN=strongSwan CA", "--ca", "--outform", "pem"}, pad...)...))
			imPub := mustRun(t, nil, pkiTool, "--pub", "--in", imKey)
			im := write("im.pem", mustRun(t, imPub, pkiTool, append([]string{"--issue", "--cacert", ca, "--cakey", caKey, "--dn", "C=CH, O=strongSwan, CN=strongSwan Intermediate", "--ca", "--outform", "pem"}, pad...)...))
			gwPub := mustRun(t, nil, pkiTool, "--pub", "--in", gwKey)
			gw := write("gw.pem", mustRun(t, gwPub, pkiTool, append([]string{"--issue", "--cacert", im, "--cakey", imKey,
				"--dn", "C=CH, O=strongSwan, CN=moon.strongswan.org", "--san", "moon.strongswan.org", "--san", "198.18.1.1",
				"--flag", "serverAuth", "--flag", "ikeIntermediate", "--outform", "pem"}, pad...)...))

			s, err := pki.NewStore(pki.StoreConfig{CAFiles: []string{ca}})
			if err != nil {
				t.Fatal(err)
			}
			imCerts, err := pki.LoadCertificates(im)
			if err != nil {
				t.Fatal(err)
			}
			gwCerts, err := pki.LoadCertificates(gw)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []pki.ID{fqdn("moon.strongswan.org"), {Type: pki.IDIPv4, Data: []byte{198, 18, 1, 1}}, dnID(t, "C=CH, O=strongSwan, CN=moon.strongswan.org")} {
				if _, err := s.VerifyPeer(payloads(gwCerts[0], imCerts[0]), id, nil); err != nil {
					t.Fatalf("%v: %v", id, err)
				}
			}
			// strongSwan's key loads as our credential and signs AUTH.
			cred, err := pki.LoadCredential(gw, gwKey, nil)
			if err != nil {
				t.Fatal(err)
			}
			sch, err := pki.ChooseScheme(cred.Key.Public(), true, pki.AnnouncedHashes, pki.SignOptions{RSAPSS: c.padding == "pss"})
			if err != nil {
				t.Fatal(err)
			}
			m, data, err := pki.Sign(cred.Key, []byte("octets"), sch)
			if err != nil {
				t.Fatal(err)
			}
			if err := pki.Verify(gwCerts[0], m, data, []byte("octets"), nil); err != nil {
				t.Fatal(err)
			}
			for _, cert := range []*x509.Certificate{gwCerts[0], imCerts[0]} {
				if got := signatureAlgorithm(t, cert.Raw); !bytes.Equal(got, c.sigAlg.AlgorithmIdentifier()) {
					t.Fatalf("strongSwan's AlgorithmIdentifier for %v\n%x\nours\n%x", c.sigAlg, got, c.sigAlg.AlgorithmIdentifier())
				}
			}
		})
	}
}

// signatureAlgorithm returns the DER signatureAlgorithm of a certificate.
func signatureAlgorithm(t *testing.T, der []byte) []byte {
	var c struct {
		TBS    asn1.RawValue
		SigAlg asn1.RawValue
		Sig    asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		t.Fatal(err)
	}
	return c.SigAlg.FullBytes
}

// RFC 7296 3.7 names a CA by "the SHA-1 hash of the Subject Public Key Info
// element"; strongSwan's `pki --keyid` prints both candidate hashes and
// its CERTREQ uses the subjectPublicKeyInfo one (KEYID_PUBKEY_INFO_SHA1).
func TestCertReqHashMatchesStrongSwan(t *testing.T) {
	pkiTool := need(t, "pki")
	for _, kt := range []labca.KeyType{labca.RSA2048, labca.ECDSAP256, labca.Ed25519} {
		t.Run(string(kt), func(t *testing.T) {
			l := newLab(t, kt)
			spki := strings.TrimSpace(string(mustRun(t, nil, pkiTool, "--keyid", "--type", "x509", "--in", l.caFile, "--id", "spki", "--format", "hex")))
			spk := strings.TrimSpace(string(mustRun(t, nil, pkiTool, "--keyid", "--type", "x509", "--in", l.caFile, "--id", "spk", "--format", "hex")))
			h := pki.KeyHash(l.root.Cert)
			if got := hex.EncodeToString(h[:]); got != spki {
				t.Fatalf("KeyHash %s, strongSwan's subjectPublicKeyInfo keyid %s", got, spki)
			}
			if spki == spk {
				t.Fatal("the two strongSwan hashes are equal: the test cannot tell them apart")
			}
			// Our SKI (and strongSwan's subjkey) is the other hash.
			if got := hex.EncodeToString(l.root.Cert.SubjectKeyId); got != spk {
				t.Fatalf("subjectKeyIdentifier %s, strongSwan's subjkey %s", got, spk)
			}
			req := pki.CertReqData([]*x509.Certificate{l.root.Cert})
			if hex.EncodeToString(req) != spki {
				t.Fatalf("CERTREQ data %x", req)
			}
		})
	}
}

// Signatures made by OpenSSL over the same octets verify with Verify:
// RSASSA-PSS with salt length = digest length (pkeyutl), ecdsa-with-SHA384
// and Ed25519.
func TestOpenSSLSignaturesVerify(t *testing.T) {
	openssl := need(t, "openssl")
	dir := t.TempDir()
	octets := []byte("ResponderSignedOctets = RealMessage2 | NonceIData | MACedIDForR")
	octFile := filepath.Join(dir, "octets")
	if err := os.WriteFile(octFile, octets, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		kt     labca.KeyType
		scheme pki.Scheme
		sign   func(key string) []string
	}{
		{labca.RSA2048, pki.RSAPSSSHA256, func(key string) []string {
			digest := filepath.Join(dir, "digest")
			sum := sha256Sum(octets)
			if err := os.WriteFile(digest, sum, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"pkeyutl", "-sign", "-inkey", key, "-in", digest,
				"-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"}
		}},
		{labca.RSA3072, pki.RSAPKCS1SHA512, func(key string) []string {
			return []string{"dgst", "-sha512", "-sign", key, octFile}
		}},
		{labca.ECDSAP384, pki.ECDSASHA384, func(key string) []string {
			return []string{"dgst", "-sha384", "-sign", key, octFile}
		}},
		{labca.Ed25519, pki.Ed25519, func(key string) []string {
			return []string{"pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", octFile}
		}},
	}
	for _, c := range cases {
		t.Run(c.scheme.String(), func(t *testing.T) {
			k, err := labca.GenerateKey(c.kt)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := filepath.Join(dir, string(c.kt)+".key")
			if err := labca.WriteKeyPEM(keyFile, k); err != nil {
				t.Fatal(err)
			}
			sig := mustRun(t, nil, openssl, c.sign(keyFile)...)
			ai := c.scheme.AlgorithmIdentifier()
			data := append(append([]byte{byte(len(ai))}, ai...), sig...)
			if err := pki.VerifyKey(k.Public(), pki.AuthDigitalSignature, data, octets, nil); err != nil {
				t.Fatal(err)
			}
			// And OpenSSL verifies ours (negative control: tampered octets).
			_, ours, err := pki.Sign(k, octets, c.scheme)
			if err != nil {
				t.Fatal(err)
			}
			sigFile := filepath.Join(dir, "sig")
			if err := os.WriteFile(sigFile, ours[1+len(ai):], 0o644); err != nil {
				t.Fatal(err)
			}
			pubFile := filepath.Join(dir, "pub.pem")
			mustRun(t, nil, openssl, "pkey", "-in", keyFile, "-pubout", "-out", pubFile)
			verify := func(in string) error {
				var args []string
				switch c.scheme {
				case pki.RSAPSSSHA256:
					digest := filepath.Join(dir, "vdigest")
					b, _ := os.ReadFile(in)
					os.WriteFile(digest, sha256Sum(b), 0o644)
					args = []string{"pkeyutl", "-verify", "-pubin", "-inkey", pubFile, "-in", digest, "-sigfile", sigFile,
						"-pkeyopt", "digest:sha256", "-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"}
				case pki.RSAPKCS1SHA512:
					args = []string{"dgst", "-sha512", "-verify", pubFile, "-signature", sigFile, in}
				case pki.ECDSASHA384:
					args = []string{"dgst", "-sha384", "-verify", pubFile, "-signature", sigFile, in}
				case pki.Ed25519:
					args = []string{"pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", pubFile, "-sigfile", sigFile, "-in", in}
				}
				_, _, err := run(t, nil, openssl, args...)
				return err
			}
			if err := verify(octFile); err != nil {
				t.Fatalf("OpenSSL refused our %v signature: %v", c.scheme, err)
			}
			bad := filepath.Join(dir, "bad")
			os.WriteFile(bad, append(bytes.Clone(octets), 'x'), 0o644)
			if err := verify(bad); err == nil {
				t.Fatal("OpenSSL accepted a signature over other octets: the check cannot fail")
			}
		})
	}
}
