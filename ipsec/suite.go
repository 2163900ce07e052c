// Package ipsec holds the IPsec vocabulary that both planes speak, so that
// each concept has one type and one spelling from iked's configuration and
// proposals to spud's ESP engine: the traffic selector (Selector, with its
// one parser, formatter and matcher) and the ESP cipher suite (Suite, with
// its key lengths).
package ipsec

import (
	"fmt"
)

// Suite is an ESP cipher suite: the encryption and integrity transforms of
// an SA. Its text form is strongSwan's ESP proposal keyword
// ("aes128gcm16"), in the SA API as in logs.
//
// Key material is laid out as IKEv2 derives it (RFC 7296 section 2.17):
// for the AEAD suites the encryption key is the cipher key followed by the
// 4-byte salt; for the CBC suites it is the AES key, and the integrity key
// the HMAC key.
type Suite uint8

const (
	// SuiteInvalid is the zero Suite: no suite was negotiated or given.
	// It names itself "invalid" but is not one of Suites, so MarshalText
	// refuses it and ParseSuite never returns it without an error.
	SuiteInvalid Suite = iota
	// AES128GCM16 is AES-GCM with a 128-bit key and a 16-byte ICV (RFC
	// 4106; IKEv2 ENCR_AES_GCM_16): 16+4 bytes of key.
	AES128GCM16
	// AES192GCM16 is the same with a 192-bit key: 24+4 bytes.
	AES192GCM16
	// AES256GCM16 is the same with a 256-bit key: 32+4 bytes.
	AES256GCM16
	// ChaCha20Poly1305 is RFC 7634: 32+4 bytes of key.
	ChaCha20Poly1305
	// AES128SHA256 is AES-CBC (RFC 3602) with a 128-bit key and
	// HMAC-SHA2-256-128 (RFC 4868): 16 bytes of encryption key, 32 of
	// integrity key.
	AES128SHA256
	// AES256SHA256 is the same with a 256-bit AES key.
	AES256SHA256
	numSuites
)

var suiteNames = [numSuites]string{
	SuiteInvalid:     "invalid",
	AES128GCM16:      "aes128gcm16",
	AES192GCM16:      "aes192gcm16",
	AES256GCM16:      "aes256gcm16",
	ChaCha20Poly1305: "chacha20poly1305",
	AES128SHA256:     "aes128-sha256",
	AES256SHA256:     "aes256-sha256",
}

// Suites are the valid suites, in the order of their constants.
var Suites = []Suite{AES128GCM16, AES192GCM16, AES256GCM16, ChaCha20Poly1305, AES128SHA256, AES256SHA256}

// String is the suite's strongSwan ESP keyword, the text ParseSuite
// reads, "invalid" for SuiteInvalid and "suite(N)" for a value outside
// the constants.
func (s Suite) String() string {
	if s < numSuites {
		return suiteNames[s]
	}
	return fmt.Sprintf("suite(%d)", uint8(s))
}

// ParseSuite returns the suite of a strongSwan ESP keyword, as String
// writes it.
func ParseSuite(name string) (Suite, error) {
	for _, s := range Suites {
		if suiteNames[s] == name {
			return s, nil
		}
	}
	return SuiteInvalid, fmt.Errorf("unknown ESP suite %q", name)
}

// Valid reports whether s is one of Suites.
func (s Suite) Valid() bool { return s > SuiteInvalid && s < numSuites }

// MarshalText writes the suite's keyword.
func (s Suite) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, fmt.Errorf("ipsec: %s is not a suite", s)
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads a suite's keyword.
func (s *Suite) UnmarshalText(b []byte) error {
	v, err := ParseSuite(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// AEAD reports whether the suite is an AEAD (GCM or ChaCha20-Poly1305).
func (s Suite) AEAD() bool { return s >= AES128GCM16 && s <= ChaCha20Poly1305 }

// SaltLen is the salt at the end of an AEAD suite's key (RFC 4106, 7634).
const SaltLen = 4

// EncKeyLen is the length of the encryption key, salt included.
func (s Suite) EncKeyLen() int {
	switch s {
	case AES128GCM16:
		return 16 + SaltLen
	case AES192GCM16:
		return 24 + SaltLen
	case AES256GCM16, ChaCha20Poly1305:
		return 32 + SaltLen
	case AES128SHA256:
		return 16
	case AES256SHA256:
		return 32
	}
	return 0
}

// IntegKeyLen is the length of the integrity key (0 for AEAD suites).
func (s Suite) IntegKeyLen() int {
	if s == AES128SHA256 || s == AES256SHA256 {
		return 32
	}
	return 0
}

// IVLen is the length of the IV carried in each ESP packet.
func (s Suite) IVLen() int {
	if s.AEAD() {
		return 8
	}
	return 16
}
