package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"io"
	"math/big"
)

// MinRSABits is the shortest RSA modulus we sign or verify with.
const MinRSABits = 2048

// Sign signs the octets the IKE layer built (InitiatorSignedOctets or
// ResponderSignedOctets, RFC 7296 2.15) with our private key under the
// scheme ChooseScheme picked, and returns the AUTH method and the AUTH
// payload's data: for method 14 the length-prefixed AlgorithmIdentifier and
// the signature; for 9/10/11 r||s of fixed size (RFC 4754); for 1 the
// PKCS#1 v1.5 SHA-1 signature.
func Sign(key crypto.Signer, octets []byte, scheme Scheme) (method uint8, authData []byte, err error) {
	return signWith(rand.Reader, key, octets, scheme)
}

func signWith(rnd io.Reader, key crypto.Signer, octets []byte, scheme Scheme) (uint8, []byte, error) {
	if scheme == SchemeNone || scheme >= numSchemes {
		return 0, nil, fail(ReasonUnsupportedScheme, "cannot sign with scheme %v", scheme)
	}
	info := &schemes[scheme]
	pub := key.Public()
	if kindOf(pub) != info.key {
		return 0, nil, fail(ReasonUnsupportedScheme, "scheme %v needs an %s key, not %s", scheme, info.key, kindOf(pub))
	}
	if info.curve != nil && pub.(*ecdsa.PublicKey).Curve != info.curve {
		return 0, nil, fail(ReasonUnsupportedScheme, "scheme %v needs curve %s, not %s", scheme, info.curve.Params().Name, pub.(*ecdsa.PublicKey).Curve.Params().Name)
	}
	if rk, ok := pub.(*rsa.PublicKey); ok && rk.N.BitLen() < MinRSABits {
		return 0, nil, fail(ReasonWeakKey, "%d bit RSA key is below %d bits", rk.N.BitLen(), MinRSABits)
	}
	var sig []byte
	var err error
	switch {
	case info.key == keyEd25519:
		sig, err = key.Sign(rnd, octets, crypto.Hash(0))
	case info.pss:
		sig, err = key.Sign(rnd, digest(info.hash, octets), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: info.hash})
	default:
		sig, err = key.Sign(rnd, digest(info.hash, octets), info.hash)
	}
	if err != nil {
		// Signer errors name the operation, not the key; wrapped as is.
		return 0, nil, failWrap(ReasonUnsupportedScheme, err, "signing with %v failed", scheme)
	}
	if info.curve != nil {
		if sig, err = derToFixed(sig, coordSize(info.curve.Params().BitSize)); err != nil {
			return 0, nil, failWrap(ReasonMalformed, err, "ECDSA signature from the signer does not parse")
		}
	}
	if info.method != AuthDigitalSignature {
		return info.method, sig, nil
	}
	out := make([]byte, 0, 1+len(info.algID)+len(sig))
	out = append(out, byte(len(info.algID)))
	out = append(out, info.algID...)
	out = append(out, sig...)
	return AuthDigitalSignature, out, nil
}

func digest(h crypto.Hash, msg []byte) []byte {
	hh := h.New()
	hh.Write(msg)
	return hh.Sum(nil)
}

func coordSize(bits int) int { return (bits + 7) / 8 }

type ecdsaSig struct{ R, S *big.Int }

func derToFixed(der []byte, size int) ([]byte, error) {
	var s ecdsaSig
	rest, err := asn1.Unmarshal(der, &s)
	if err != nil || len(rest) != 0 {
		return nil, err
	}
	out := make([]byte, 2*size)
	if s.R.Sign() <= 0 || s.S.Sign() <= 0 || len(s.R.Bytes()) > size || len(s.S.Bytes()) > size {
		return nil, asn1.StructuralError{Msg: "ECDSA signature values out of range"}
	}
	s.R.FillBytes(out[:size])
	s.S.FillBytes(out[size:])
	return out, nil
}

// MaxAuthData bounds the AUTH payload data we look at: the largest
// signature we verify (RSA 16384 bits) with room for an AlgorithmIdentifier.
const MaxAuthData = 2048 + 256

// ParseAuth splits a received AUTH payload into the scheme and the
// signature, without verifying anything: for method 14 it reads the
// length-prefixed AlgorithmIdentifier (RFC 7427 3). For logging, and used by
// Verify.
func ParseAuth(method uint8, authData []byte) (Scheme, []byte, error) {
	s, sig, _, err := parseAuth(method, authData)
	return s, sig, err
}

func parseAuth(method uint8, authData []byte) (Scheme, []byte, int, error) {
	if len(authData) > MaxAuthData {
		return SchemeNone, nil, 0, fail(ReasonMalformed, "AUTH data of %d bytes exceeds %d", len(authData), MaxAuthData)
	}
	switch method {
	case AuthRSA:
		return RSAPKCS1SHA1, authData, 0, nil
	case AuthECDSA256:
		return ECDSA256, authData, 0, nil
	case AuthECDSA384:
		return ECDSA384, authData, 0, nil
	case AuthECDSA521:
		return ECDSA521, authData, 0, nil
	case AuthDigitalSignature:
	default:
		return SchemeNone, nil, 0, fail(ReasonUnsupportedScheme, "AUTH method %d is not a signature method we implement", method)
	}
	if len(authData) < 1 {
		return SchemeNone, nil, 0, fail(ReasonMalformed, "empty AUTH data for method 14")
	}
	n := int(authData[0])
	if n < 2 || 1+n >= len(authData) {
		return SchemeNone, nil, 0, fail(ReasonMalformed, "AUTH AlgorithmIdentifier length %d does not fit %d bytes of AUTH data", n, len(authData))
	}
	p, err := parseAlgorithmIdentifier(authData[1 : 1+n])
	if err != nil {
		return SchemeNone, nil, 0, err
	}
	return p.scheme, authData[1+n:], p.salt, nil
}

// Verify checks a peer's AUTH payload (method and data) over the octets the
// IKE layer built, with the public key of the peer's verified end-entity
// certificate. allowed, when not empty, is the set of schemes we accept
// from this peer (strongSwan's remote signature constraints, or the hashes
// we announced): any other is refused with ReasonSchemeNotAllowed before
// any signature work. Errors carry ReasonUnsupportedScheme (a method or
// algorithm we do not implement, or one that does not fit the key),
// ReasonWeakKey, ReasonMalformed or ReasonBadSignature.
func Verify(cert *x509.Certificate, method uint8, authData, octets []byte, allowed []Scheme) error {
	if cert == nil {
		return fail(ReasonMalformed, "no certificate to verify AUTH with")
	}
	return VerifyKey(cert.PublicKey, method, authData, octets, allowed)
}

// VerifyKey is Verify with a bare public key (a raw key configured for the
// peer, or a certificate's).
func VerifyKey(pub crypto.PublicKey, method uint8, authData, octets []byte, allowed []Scheme) error {
	scheme, sig, salt, err := parseAuth(method, authData)
	if err != nil {
		return err
	}
	if len(allowed) > 0 {
		ok := false
		for _, a := range allowed {
			ok = ok || a == scheme
		}
		if !ok {
			return fail(ReasonSchemeNotAllowed, "peer signed with %v, which is not among the allowed %v", scheme, allowed)
		}
	}
	info := &schemes[scheme]
	if kindOf(pub) != info.key {
		return fail(ReasonUnsupportedScheme, "peer signed with %v but its key is %s", scheme, kindOf(pub))
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return fail(ReasonWeakKey, "peer's %d bit RSA key is below %d bits", k.N.BitLen(), MinRSABits)
		}
		d := digest(info.hash, octets)
		if info.pss {
			err = rsa.VerifyPSS(k, info.hash, d, sig, &rsa.PSSOptions{SaltLength: salt, Hash: info.hash})
		} else {
			err = rsa.VerifyPKCS1v15(k, info.hash, d, sig)
		}
	case *ecdsa.PublicKey:
		d := digest(info.hash, octets)
		if info.curve != nil {
			if k.Curve != info.curve {
				return fail(ReasonUnsupportedScheme, "AUTH method %d needs curve %s, peer's key is on %s", info.method, info.curve.Params().Name, k.Curve.Params().Name)
			}
			size := coordSize(k.Curve.Params().BitSize)
			if len(sig) != 2*size {
				return fail(ReasonBadSignature, "ECDSA signature of %d bytes, want %d", len(sig), 2*size)
			}
			r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
			if !ecdsa.Verify(k, d, r, s) {
				err = errVerify
			}
		} else if !ecdsa.VerifyASN1(k, d, sig) {
			err = errVerify
		}
	case ed25519.PublicKey:
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, octets, sig) {
			err = errVerify
		}
	}
	if err != nil {
		return fail(ReasonBadSignature, "%v signature does not verify", scheme)
	}
	return nil
}

var errVerify = asn1.StructuralError{Msg: "verification failed"}
