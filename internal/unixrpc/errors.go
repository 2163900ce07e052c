package unixrpc

import (
	"errors"
	"fmt"
)

// Code says what kind of refusal an error response is, so that a client
// can act on it (an SA that is not there need not be deleted again) without
// reading the text, which is for people.
type Code string

// The codes a server sends. A client may receive one it does not know
// from a newer server; it treats it as CodeFailed.
const (
	// CodeBadRequest: the request cannot be served as sent: an unknown
	// operation or protocol version, a body that does not decode, fields
	// that do not validate.
	CodeBadRequest Code = "bad_request"
	// CodeNotFound: what the request names does not exist.
	CodeNotFound Code = "not_found"
	// CodeExists: what the request would create exists already.
	CodeExists Code = "exists"
	// CodeExhausted: the server has run out of something the request
	// needs (free SPIs, room in a queue).
	CodeExhausted Code = "exhausted"
	// CodeUnavailable: the server cannot serve the request now (a part of
	// it is stopped, stalled or not connected); the same request may
	// succeed later.
	CodeUnavailable Code = "unavailable"
	// CodeTooLarge: the reply would exceed MaxMessage; the request
	// failed, the connection stays (ask for less).
	CodeTooLarge Code = "too_large"
	// CodeInternal: the server failed, not the request (a handler
	// panicked, a reply did not encode).
	CodeInternal Code = "internal"
	// CodeFailed: refused for a reason that has no code of its own; also
	// what an error without a code (from an older peer) reads as.
	CodeFailed Code = "failed"
)

// Error is an error response: its code and the server's text. A Client's
// call returns it wrapped in the peer's and the operation's names;
// errors.As finds it, and errors.Is matches it against the sentinels
// (ErrNotFound...) by code.
type Error struct {
	Code    Code   // what kind of refusal
	Message string // the server's text, for people
}

// Error returns the server's text.
func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error of the same code, which makes the
// sentinels match any error of their code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// The sentinels of the codes, for errors.Is on the client and for
// handlers to wrap: fmt.Errorf("policy %d: %w", id, unixrpc.ErrNotFound)
// reads "policy 7: not found" and is sent with CodeNotFound.
var (
	// ErrBadRequest is the sentinel of CodeBadRequest.
	ErrBadRequest = &Error{Code: CodeBadRequest, Message: "bad request"}
	// ErrNotFound is the sentinel of CodeNotFound.
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrExists is the sentinel of CodeExists.
	ErrExists = &Error{Code: CodeExists, Message: "exists"}
	// ErrExhausted is the sentinel of CodeExhausted.
	ErrExhausted = &Error{Code: CodeExhausted, Message: "exhausted"}
	// ErrUnavailable is the sentinel of CodeUnavailable.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "unavailable"}
	// ErrTooLarge is the sentinel of CodeTooLarge.
	ErrTooLarge = &Error{Code: CodeTooLarge, Message: "too large"}
	// ErrInternal is the sentinel of CodeInternal.
	ErrInternal = &Error{Code: CodeInternal, Message: "internal error"}
	// ErrFailed is the sentinel of CodeFailed.
	ErrFailed = &Error{Code: CodeFailed, Message: "failed"}
)

// sentinels are the sentinels by code, for Errorf.
var sentinels = map[Code]*Error{
	CodeBadRequest:  ErrBadRequest,
	CodeTooLarge:    ErrTooLarge,
	CodeNotFound:    ErrNotFound,
	CodeExists:      ErrExists,
	CodeExhausted:   ErrExhausted,
	CodeUnavailable: ErrUnavailable,
	CodeInternal:    ErrInternal,
	CodeFailed:      ErrFailed,
}

// ErrClosed is in the chain of every error of a call that got no answer
// because the connection is lost (the server went away, or Close was
// called): the server is gone, as opposed to refusing (an *Error).
var ErrClosed = errors.New("unixrpc: connection closed")

// closedError is the error of calls on a lost connection: its text names
// the peer and the cause, and errors.Is finds both ErrClosed and the cause.
type closedError struct {
	peer  string
	cause error
}

// Error names the peer and why the connection ended.
func (e *closedError) Error() string {
	return fmt.Sprintf("unixrpc: connection to %s lost: %v", e.peer, e.cause)
}

// Unwrap gives ErrClosed and the cause.
func (e *closedError) Unwrap() []error { return []error{ErrClosed, e.cause} }

// codedError is a handler's error with a code but a text of its own.
type codedError struct {
	code Code
	err  error
}

// Error is the formatted text, without the code.
func (e *codedError) Error() string { return e.err.Error() }

// Unwrap gives the code's sentinel, which CodeOf and errors.Is find, and
// the formatted error with what it wraps.
func (e *codedError) Unwrap() []error { return []error{sentinels[e.code], e.err} }

// Errorf formats an error as fmt.Errorf does (%w included) and gives it
// code, for a handler whose text does not end in the sentinel's: the
// response carries exactly the formatted text. code must be one of the
// constants above.
func Errorf(code Code, format string, args ...any) error {
	if sentinels[code] == nil {
		code = CodeFailed
	}
	return &codedError{code: code, err: fmt.Errorf(format, args...)}
}

// CodeOf is the code an error is sent with: that of the first *Error in
// its chain (a sentinel it wraps, or an error received from another
// server and passed on), CodeFailed if there is none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		return e.Code
	}
	return CodeFailed
}
