package pki

import (
	"errors"
	"fmt"
)

// Reason says why a peer's certificate or AUTH payload was refused. The IKE
// layer logs and counts it, and answers AUTHENTICATION_FAILED whatever it is.
type Reason uint8

// Reasons. Their String names are stable: counters and logs use them.
const (
	ReasonNone              Reason = iota
	ReasonMalformed                // unparsable certificate, CERT/CERTREQ/AUTH data, or over the limits
	ReasonExpired                  // a certificate of the chain is past its notAfter
	ReasonNotYetValid              // a certificate of the chain is before its notBefore
	ReasonUnknownCA                // no chain to a trust anchor
	ReasonRevoked                  // listed in a CRL of its issuer
	ReasonIDMismatch               // the IKE identity is not in the certificate, or not the one configured
	ReasonKeyUsage                 // keyUsage or extendedKeyUsage forbid IKE authentication
	ReasonBadSignature             // the AUTH signature does not verify
	ReasonSchemeNotAllowed         // the signature scheme is not among those we accept from this peer
	ReasonUnsupportedScheme        // an AUTH method or AlgorithmIdentifier we do not implement, or a key of the wrong type for it
	ReasonCANotAllowed             // the chain is valid but passes through none of the connection's cacerts
	ReasonWeakKey                  // an RSA key shorter than 2048 bits
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:              "none",
	ReasonMalformed:         "malformed",
	ReasonExpired:           "expired",
	ReasonNotYetValid:       "not_yet_valid",
	ReasonUnknownCA:         "unknown_ca",
	ReasonRevoked:           "revoked",
	ReasonIDMismatch:        "id_mismatch",
	ReasonKeyUsage:          "key_usage",
	ReasonBadSignature:      "bad_signature",
	ReasonSchemeNotAllowed:  "scheme_not_allowed",
	ReasonUnsupportedScheme: "unsupported_scheme",
	ReasonCANotAllowed:      "ca_not_allowed",
	ReasonWeakKey:           "weak_key",
}

// String returns the reason's stable name (see the constants), or
// reason(n) outside the enum.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// NumReasons is the number of Reason values, for sizing counter arrays.
const NumReasons = int(numReasons)

// Error is a refusal with its Reason. Its text names the certificate or
// payload and the cause; it never holds key material.
type Error struct {
	Reason Reason
	Msg    string
	Err    error // the underlying library error, if any
}

// Error reads "pki: REASON: what: cause", the cause being the library's
// error when there is one.
func (e *Error) Error() string {
	if e.Err != nil {
		return "pki: " + e.Reason.String() + ": " + e.Msg + ": " + e.Err.Error()
	}
	return "pki: " + e.Reason.String() + ": " + e.Msg
}

// Unwrap returns the library error behind the refusal, if any, for
// errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.Err }

// ReasonOf returns the Reason carried by err, ReasonNone for nil, and
// ReasonMalformed for an error that carries none.
func ReasonOf(err error) Reason {
	if err == nil {
		return ReasonNone
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ReasonMalformed
}

func fail(r Reason, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...)}
}

func failWrap(r Reason, err error, format string, args ...any) *Error {
	return &Error{Reason: r, Msg: fmt.Sprintf(format, args...), Err: err}
}
