package config

import (
	"fmt"
	"strings"

	"github.com/spugate/spugate/control/pki"
)

// AuthMethod is an authentication round's auth value parsed: a pre-shared
// key, or a public key signature with optional constraints.
type AuthMethod struct {
	// Kind is "psk" or "pubkey".
	Kind string
	// Family restricts the key type: "" (any), "rsa", "rsa/pss", "ecdsa"
	// or "ed25519".
	Family string
	// Schemes are the schemes named by hashes (rsa/pss-sha256,
	// ecdsa-sha384...), in the written order: for a local round the
	// schemes to sign with, in order of preference; for a remote round
	// those accepted. Empty when no hash was written.
	Schemes []pki.Scheme
}

// PubKey reports whether the round authenticates with a signature.
func (m AuthMethod) PubKey() bool { return m.Kind == "pubkey" }

// SignOptions steer pki.ChooseScheme for a local round: rsa/pss prefers
// RSASSA-PSS as strongSwan's does, hashes name the schemes in order.
func (m AuthMethod) SignOptions() pki.SignOptions {
	return pki.SignOptions{RSAPSS: m.Family == "rsa/pss", Schemes: m.Schemes}
}

// Accepted returns the schemes a remote round accepts from the peer, nil
// for any (pubkey): the named ones, or every scheme of the key family.
// An ecdsa-<hash> constraint also accepts the classic ECDSA method that
// uses that hash (RFC 4754), for peers without RFC 7427.
func (m AuthMethod) Accepted() []pki.Scheme {
	if !m.PubKey() {
		return nil
	}
	if len(m.Schemes) > 0 {
		out := append([]pki.Scheme(nil), m.Schemes...)
		for _, s := range m.Schemes {
			switch s {
			case pki.ECDSASHA256:
				out = append(out, pki.ECDSA256)
			case pki.ECDSASHA384:
				out = append(out, pki.ECDSA384)
			case pki.ECDSASHA512:
				out = append(out, pki.ECDSA521)
			}
		}
		return out
	}
	switch m.Family {
	case "rsa":
		return []pki.Scheme{pki.RSAPKCS1SHA1, pki.RSAPKCS1SHA256, pki.RSAPKCS1SHA384, pki.RSAPKCS1SHA512}
	case "rsa/pss":
		return []pki.Scheme{pki.RSAPSSSHA256, pki.RSAPSSSHA384, pki.RSAPSSSHA512}
	case "ecdsa":
		return []pki.Scheme{pki.ECDSA256, pki.ECDSA384, pki.ECDSA521, pki.ECDSASHA256, pki.ECDSASHA384, pki.ECDSASHA512}
	case "ed25519":
		return []pki.Scheme{pki.Ed25519}
	}
	return nil
}

var hashNames = map[string]string{"sha256": "sha256", "sha2_256": "sha256", "sha384": "sha384", "sha2_384": "sha384",
	"sha512": "sha512", "sha2_512": "sha512"}

// ParseAuthMethod reads an auth value in swanctl's notation: "psk", or a
// public key round "pubkey", "rsa", "rsa/pss", "ecdsa" or "ed25519",
// optionally followed by hash names ("rsa/pss-sha256-sha384",
// "pubkey-sha384", "ecdsa-sha256") that name the signature schemes, and
// optionally prefixed by "ike:" (the constraint then applies to the AUTH
// payload only; without it strongSwan also applies it to the certificate
// chain's signatures, which we do not: our rounds constrain AUTH only).
func ParseAuthMethod(s string) (AuthMethod, error) {
	orig := s
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "psk" {
		return AuthMethod{Kind: "psk"}, nil
	}
	s = strings.TrimPrefix(s, "ike:")
	parts := strings.Split(s, "-")
	m := AuthMethod{Kind: "pubkey"}
	switch parts[0] {
	case "pubkey":
	case "rsa", "rsa/pss", "ecdsa", "ed25519":
		m.Family = parts[0]
	default:
		return m, fmt.Errorf("%q: want psk, pubkey, rsa, rsa/pss, ecdsa or ed25519 (with optional -sha256, -sha384, -sha512)", orig)
	}
	for _, h := range parts[1:] {
		hash, ok := hashNames[h]
		if !ok {
			return m, fmt.Errorf("%q: unknown hash %q (want sha256, sha384 or sha512)", orig, h)
		}
		if m.Family == "ed25519" {
			return m, fmt.Errorf("%q: ed25519 takes no hash", orig)
		}
		var names []string
		switch m.Family {
		case "":
			names = []string{"rsa-" + hash, "rsa/pss-" + hash, "ecdsa-" + hash}
		default:
			names = []string{m.Family + "-" + hash}
		}
		for _, n := range names {
			sc, err := pki.ParseScheme(n)
			if err != nil {
				return m, fmt.Errorf("%q: %v", orig, err)
			}
			m.Schemes = append(m.Schemes, sc)
		}
	}
	return m, nil
}
