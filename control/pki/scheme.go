package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// AUTH methods (RFC 7296 3.8, RFC 4754, RFC 7427).
const (
	AuthRSA              = 1  // RSASSA-PKCS1-v1_5 with SHA-1
	AuthPSK              = 2  // shared key MIC: not this package's
	AuthECDSA256         = 9  // P-256 with SHA-256, r||s
	AuthECDSA384         = 10 // P-384 with SHA-384, r||s
	AuthECDSA521         = 11 // P-521 with SHA-512, r||s
	AuthDigitalSignature = 14 // RFC 7427: AlgorithmIdentifier, then the signature
)

// Hash algorithm numbers of the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427,
// RFC 8420).
const (
	HashSHA1     = 1
	HashSHA256   = 2
	HashSHA384   = 3
	HashSHA512   = 4
	HashIdentity = 5 // the message itself: Ed25519/Ed448
)

// AnnouncedHashes is what we put in our SIGNATURE_HASH_ALGORITHMS notify,
// in this order. SHA-1 is not in it (strongSwan announces it; RFC 8247
// deprecates SHA-1 signatures, and nothing we verify under method 14 uses
// it), so a peer that honours the list never signs with SHA-1 except under
// the classic method 1.
var AnnouncedHashes = []uint16{HashSHA256, HashSHA384, HashSHA512, HashIdentity}

// HashAlgorithmsNotify returns the SIGNATURE_HASH_ALGORITHMS notification
// data for AnnouncedHashes: each number as two bytes, network order.
func HashAlgorithmsNotify() []byte {
	b := make([]byte, 2*len(AnnouncedHashes))
	for i, h := range AnnouncedHashes {
		binary.BigEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// MaxHashAlgorithms bounds the list a peer may announce.
const MaxHashAlgorithms = 64

// ParseHashAlgorithms reads a peer's SIGNATURE_HASH_ALGORITHMS notification
// data. Unknown numbers are kept (they are simply never chosen).
func ParseHashAlgorithms(data []byte) ([]uint16, error) {
	if len(data)%2 != 0 || len(data) == 0 || len(data) > 2*MaxHashAlgorithms {
		return nil, fail(ReasonMalformed, "SIGNATURE_HASH_ALGORITHMS of %d bytes: want 2 to %d, even", len(data), 2*MaxHashAlgorithms)
	}
	out := make([]uint16, len(data)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(data[2*i:])
	}
	return out, nil
}

// Scheme is a signature scheme for IKE AUTH: an AUTH method and, for method
// 14, the algorithm named by its AlgorithmIdentifier.
type Scheme uint8

// Schemes. The names in String follow strongSwan's constraint keywords
// loosely ("rsa/pss-sha256", "ecdsa-sha384", ...).
const (
	SchemeNone     Scheme = iota
	RSAPKCS1SHA1          // method 1
	ECDSA256              // method 9
	ECDSA384              // method 10
	ECDSA521              // method 11
	RSAPKCS1SHA256        // method 14, sha256WithRSAEncryption
	RSAPKCS1SHA384        // method 14, sha384WithRSAEncryption
	RSAPKCS1SHA512        // method 14, sha512WithRSAEncryption
	RSAPSSSHA256          // method 14, RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32
	RSAPSSSHA384          // method 14, RSASSA-PSS, SHA-384, MGF1-SHA-384, salt 48
	RSAPSSSHA512          // method 14, RSASSA-PSS, SHA-512, MGF1-SHA-512, salt 64
	ECDSASHA256           // method 14, ecdsa-with-SHA256, DER signature
	ECDSASHA384           // method 14, ecdsa-with-SHA384
	ECDSASHA512           // method 14, ecdsa-with-SHA512
	Ed25519               // method 14, id-Ed25519 (RFC 8420)
	numSchemes
)

type keyKind uint8

const (
	keyNone keyKind = iota
	keyRSA
	keyECDSA
	keyEd25519
)

func (k keyKind) String() string {
	return [...]string{"unknown", "RSA", "ECDSA", "Ed25519"}[k]
}

type schemeInfo struct {
	name   string
	method uint8
	key    keyKind
	hash   crypto.Hash // 0 for Ed25519 (the message itself)
	hashID uint16      // SIGNATURE_HASH_ALGORITHMS number; 0 for classic methods
	pss    bool
	curve  elliptic.Curve // classic ECDSA methods: the only curve allowed
	algID  []byte         // method 14: the DER AlgorithmIdentifier we send
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// The AlgorithmIdentifiers are those of RFC 7427 Appendix A (A.1.2-A.1.4,
// A.3.2-A.3.4, A.4.3 and its SHA-384/512 siblings) and RFC 8420 section 2:
// RSA with NULL parameters, ECDSA and Ed25519 without parameters, RSASSA-PSS
// with explicit hash, MGF1 and salt length and the default trailer left out,
// hash AlgorithmIdentifiers with NULL parameters (as strongSwan and OpenSSL
// write them).
var schemes = [numSchemes]schemeInfo{
	SchemeNone:     {name: "none"},
	RSAPKCS1SHA1:   {name: "rsa-sha1", method: AuthRSA, key: keyRSA, hash: crypto.SHA1},
	ECDSA256:       {name: "ecdsa-256", method: AuthECDSA256, key: keyECDSA, hash: crypto.SHA256, curve: elliptic.P256()},
	ECDSA384:       {name: "ecdsa-384", method: AuthECDSA384, key: keyECDSA, hash: crypto.SHA384, curve: elliptic.P384()},
	ECDSA521:       {name: "ecdsa-521", method: AuthECDSA521, key: keyECDSA, hash: crypto.SHA512, curve: elliptic.P521()},
	RSAPKCS1SHA256: {name: "rsa-sha256", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA256, hashID: HashSHA256, algID: mustHex("300d06092a864886f70d01010b0500")},
	RSAPKCS1SHA384: {name: "rsa-sha384", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA384, hashID: HashSHA384, algID: mustHex("300d06092a864886f70d01010c0500")},
	RSAPKCS1SHA512: {name: "rsa-sha512", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA512, hashID: HashSHA512, algID: mustHex("300d06092a864886f70d01010d0500")},
	RSAPSSSHA256: {name: "rsa/pss-sha256", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA256, hashID: HashSHA256, pss: true,
		algID: mustHex("304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120")},
	RSAPSSSHA384: {name: "rsa/pss-sha384", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA384, hashID: HashSHA384, pss: true,
		algID: mustHex("304106092a864886f70d01010a3034a00f300d06096086480165030402020500a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130")},
	RSAPSSSHA512: {name: "rsa/pss-sha512", method: AuthDigitalSignature, key: keyRSA, hash: crypto.SHA512, hashID: HashSHA512, pss: true,
		algID: mustHex("304106092a864886f70d01010a3034a00f300d06096086480165030402030500a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140")},
	ECDSASHA256: {name: "ecdsa-sha256", method: AuthDigitalSignature, key: keyECDSA, hash: crypto.SHA256, hashID: HashSHA256, algID: mustHex("300a06082a8648ce3d040302")},
	ECDSASHA384: {name: "ecdsa-sha384", method: AuthDigitalSignature, key: keyECDSA, hash: crypto.SHA384, hashID: HashSHA384, algID: mustHex("300a06082a8648ce3d040303")},
	ECDSASHA512: {name: "ecdsa-sha512", method: AuthDigitalSignature, key: keyECDSA, hash: crypto.SHA512, hashID: HashSHA512, algID: mustHex("300a06082a8648ce3d040304")},
	Ed25519:     {name: "ed25519", method: AuthDigitalSignature, key: keyEd25519, hashID: HashIdentity, algID: mustHex("300506032b6570")},
}

// String returns the scheme's name, the one ParseScheme reads and
// configurations constrain AUTH with, or scheme(n) outside the enum.
func (s Scheme) String() string {
	if s < numSchemes {
		return schemes[s].name
	}
	return fmt.Sprintf("scheme(%d)", uint8(s))
}

// Method is the AUTH method the scheme is sent with.
func (s Scheme) Method() uint8 {
	if s < numSchemes {
		return schemes[s].method
	}
	return 0
}

// HashID is the SIGNATURE_HASH_ALGORITHMS number of the scheme's hash, 0 for
// the classic methods (which need no announcement).
func (s Scheme) HashID() uint16 {
	if s < numSchemes {
		return schemes[s].hashID
	}
	return 0
}

// AlgorithmIdentifier returns the DER AlgorithmIdentifier a method 14 AUTH
// payload carries for the scheme, nil for the classic methods.
func (s Scheme) AlgorithmIdentifier() []byte {
	if s < numSchemes && schemes[s].algID != nil {
		return append([]byte(nil), schemes[s].algID...)
	}
	return nil
}

// ParseScheme is the inverse of String.
func ParseScheme(name string) (Scheme, error) {
	for i := Scheme(1); i < numSchemes; i++ {
		if schemes[i].name == name {
			return i, nil
		}
	}
	return SchemeNone, fmt.Errorf("pki: unknown signature scheme %q", name)
}

func kindOf(pub crypto.PublicKey) keyKind {
	switch pub.(type) {
	case *rsa.PublicKey:
		return keyRSA
	case *ecdsa.PublicKey:
		return keyECDSA
	case ed25519.PublicKey:
		return keyEd25519
	}
	return keyNone
}

// keyBits is the key size the way strongSwan's signature_schemes_for_key
// sees it: the modulus length, or the curve's order length.
func keyBits(pub crypto.PublicKey) int {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen()
	case *ecdsa.PublicKey:
		return k.Curve.Params().BitSize
	}
	return 0
}

// SignOptions are the local settings that steer ChooseScheme.
type SignOptions struct {
	// RSAPSS prefers RSASSA-PSS for RSA keys when the peer supports RFC
	// 7427, as strongSwan's charon.rsa_pss setting (off by default there).
	RSAPSS bool
	// Schemes, when not empty, are the configured schemes in order of
	// preference (strongSwan's "ike:" signature constraints on the local
	// auth round); only those fitting the key and the peer's hashes are
	// used, and RSAPSS does not matter then.
	Schemes []Scheme
}

// ChooseScheme picks the scheme to sign our AUTH payload with, as
// strongSwan's pubkey_authenticator does (5.9):
//
// If the peer supports RFC 7427 (rfc7427: it sent SIGNATURE_HASH_ALGORITHMS,
// listed in peerHashes), the first of these whose hash the peer announced:
// the configured schemes if any, else strongSwan's list for the key type and
// size: RSA up to 3072 bits PSS-SHA256, PSS-SHA384, PSS-SHA512 (only with
// RSAPSS), then PKCS#1 SHA-256, SHA-384, SHA-512 (keys above 3072 bits start
// at SHA-384, above 7680 at SHA-512, and try PKCS#1 SHA-384 and SHA-256
// last); ECDSA ecdsa-with-SHA256/384/512 from the hash that matches the
// curve upwards; Ed25519 only with the peer's Identity hash (5). No common
// hash is an error (strongSwan does not fall back to a classic method then).
//
// Otherwise the classic method: 1 (RSA with SHA-1) for RSA, 9/10/11 by the
// curve for ECDSA; Ed25519 has none and is an error.
func ChooseScheme(pub crypto.PublicKey, rfc7427 bool, peerHashes []uint16, opt SignOptions) (Scheme, error) {
	kind := kindOf(pub)
	if kind == keyNone {
		return SchemeNone, fail(ReasonUnsupportedScheme, "no signature scheme for a %T key", pub)
	}
	if !rfc7427 {
		switch kind {
		case keyRSA:
			return RSAPKCS1SHA1, nil
		case keyECDSA:
			switch keyBits(pub) {
			case 256:
				return ECDSA256, nil
			case 384:
				return ECDSA384, nil
			case 521:
				return ECDSA521, nil
			}
			return SchemeNone, fail(ReasonUnsupportedScheme, "%d bit ECDSA key has no classic AUTH method", keyBits(pub))
		}
		return SchemeNone, fail(ReasonUnsupportedScheme, "an %s key needs RFC 7427 signature authentication, which the peer did not announce", kind)
	}
	peerHas := func(id uint16) bool {
		for _, h := range peerHashes {
			if h == id {
				return true
			}
		}
		return false
	}
	var cands []Scheme
	if len(opt.Schemes) > 0 {
		for _, s := range opt.Schemes {
			if s < numSchemes && schemes[s].key == kind && schemes[s].method == AuthDigitalSignature {
				cands = append(cands, s)
			}
		}
	} else {
		cands = defaultSchemes(kind, keyBits(pub), opt.RSAPSS)
	}
	for _, s := range cands {
		if peerHas(schemes[s].hashID) {
			return s, nil
		}
	}
	return SchemeNone, fail(ReasonUnsupportedScheme, "no common hash algorithm to sign with an %s key (peer announced %v)", kind, peerHashes)
}

// defaultSchemes is strongSwan's signature_schemes_for_key plus the extra
// RSA PKCS#1 SHA-384 and SHA-256 its pubkey_authenticator appends.
func defaultSchemes(kind keyKind, bits int, pss bool) []Scheme {
	type entry struct {
		max int // largest key size for the entry, 0: any
		s   Scheme
	}
	var table []entry
	switch kind {
	case keyRSA:
		table = []entry{{3072, RSAPSSSHA256}, {7680, RSAPSSSHA384}, {0, RSAPSSSHA512},
			{3072, RSAPKCS1SHA256}, {7680, RSAPKCS1SHA384}, {0, RSAPKCS1SHA512}}
	case keyECDSA:
		table = []entry{{256, ECDSASHA256}, {384, ECDSASHA384}, {0, ECDSASHA512}}
	case keyEd25519:
		table = []entry{{0, Ed25519}}
	}
	var out []Scheme
	for _, e := range table {
		if schemes[e.s].pss && !pss {
			continue
		}
		if e.max == 0 || bits <= e.max {
			out = append(out, e.s)
		}
	}
	if kind == keyRSA {
		for _, s := range []Scheme{RSAPKCS1SHA384, RSAPKCS1SHA256} {
			found := false
			for _, o := range out {
				found = found || o == s
			}
			if !found {
				out = append(out, s)
			}
		}
	}
	return out
}

// Object identifiers of AlgorithmIdentifiers we parse.
var (
	oidRSAPSS        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECDSASHA256   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSASHA384   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSASHA512   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidEd25519       = asn1.ObjectIdentifier{1, 3, 101, 112}
)

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

func absentOrNull(p asn1.RawValue) bool {
	return len(p.FullBytes) == 0 || (p.Class == asn1.ClassUniversal && p.Tag == asn1.TagNull && len(p.Bytes) == 0)
}

// pssParams is what a received RSASSA-PSS AlgorithmIdentifier says.
type pssParams struct {
	scheme Scheme
	salt   int
}

// parseAlgorithmIdentifier maps a method 14 AlgorithmIdentifier to a scheme,
// and for RSASSA-PSS also returns the salt length the signer declared.
func parseAlgorithmIdentifier(der []byte) (pssParams, error) {
	var ai algorithmIdentifier
	rest, err := asn1.Unmarshal(der, &ai)
	if err != nil || len(rest) != 0 {
		return pssParams{}, failWrap(ReasonMalformed, err, "AUTH AlgorithmIdentifier of %d bytes does not parse", len(der))
	}
	simple := map[string]Scheme{
		oidSHA256WithRSA.String(): RSAPKCS1SHA256,
		oidSHA384WithRSA.String(): RSAPKCS1SHA384,
		oidSHA512WithRSA.String(): RSAPKCS1SHA512,
		oidECDSASHA256.String():   ECDSASHA256,
		oidECDSASHA384.String():   ECDSASHA384,
		oidECDSASHA512.String():   ECDSASHA512,
		oidEd25519.String():       Ed25519,
	}
	if s, ok := simple[ai.Algorithm.String()]; ok {
		// RFC 5758 and RFC 8410 say absent for ECDSA and Ed25519; NULL is
		// tolerated there, as some encoders write it.
		if !absentOrNull(ai.Parameters) {
			return pssParams{}, fail(ReasonUnsupportedScheme, "AlgorithmIdentifier %v has unexpected parameters", ai.Algorithm)
		}
		return pssParams{scheme: s}, nil
	}
	if !ai.Algorithm.Equal(oidRSAPSS) {
		return pssParams{}, fail(ReasonUnsupportedScheme, "signature algorithm %v is not supported", ai.Algorithm)
	}
	return parsePSSParams(ai.Parameters)
}

// parsePSSParams checks RSASSA-PSS-params (RFC 4055 3.1): the hash must be
// SHA-256, SHA-384 or SHA-512 (the SHA-1 default is refused), the mask
// generation MGF1 with the same hash, the trailer field 1. The salt length
// may be any positive value that the signer declares; we verify with
// exactly it.
func parsePSSParams(p asn1.RawValue) (pssParams, error) {
	var params struct {
		Hash    algorithmIdentifier `asn1:"explicit,tag:0,optional"`
		MGF     algorithmIdentifier `asn1:"explicit,tag:1,optional"`
		Salt    int                 `asn1:"explicit,tag:2,optional,default:20"`
		Trailer int                 `asn1:"explicit,tag:3,optional,default:1"`
	}
	if len(p.FullBytes) == 0 {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS without parameters (SHA-1) is not supported")
	}
	rest, err := asn1.Unmarshal(p.FullBytes, &params)
	if err != nil || len(rest) != 0 {
		return pssParams{}, failWrap(ReasonMalformed, err, "RSASSA-PSS parameters do not parse")
	}
	var out pssParams
	switch {
	case params.Hash.Algorithm.Equal(oidSHA256):
		out.scheme = RSAPSSSHA256
	case params.Hash.Algorithm.Equal(oidSHA384):
		out.scheme = RSAPSSSHA384
	case params.Hash.Algorithm.Equal(oidSHA512):
		out.scheme = RSAPSSSHA512
	default:
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS with hash %v is not supported", params.Hash.Algorithm)
	}
	if !absentOrNull(params.Hash.Parameters) {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS hash AlgorithmIdentifier has parameters")
	}
	if !params.MGF.Algorithm.Equal(oidMGF1) {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS mask generation %v is not MGF1", params.MGF.Algorithm)
	}
	var mgfHash algorithmIdentifier
	if rest, err := asn1.Unmarshal(params.MGF.Parameters.FullBytes, &mgfHash); err != nil || len(rest) != 0 {
		return pssParams{}, failWrap(ReasonMalformed, err, "RSASSA-PSS MGF1 parameters do not parse")
	}
	if !mgfHash.Algorithm.Equal(params.Hash.Algorithm) || !absentOrNull(mgfHash.Parameters) {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS MGF1 hash %v differs from the hash %v", mgfHash.Algorithm, params.Hash.Algorithm)
	}
	if params.Trailer != 1 {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS trailer field %d is not 1", params.Trailer)
	}
	if params.Salt <= 0 || params.Salt > 1024 {
		return pssParams{}, fail(ReasonUnsupportedScheme, "RSASSA-PSS salt length %d is not supported", params.Salt)
	}
	out.salt = params.Salt
	return out, nil
}
