package message

import (
	"bytes"
	"encoding/binary"
)

// CookieRetryOf reports whether retry is the IKE_SA_INIT request first
// sent again with a COOKIE notify as its first payload and "all other
// payloads unchanged" (RFC 7296 2.6): the same header but for its next
// payload and length fields, and the same bytes after the COOKIE. first
// may carry a COOKIE of its own (a retry that got a second COOKIE), retry
// must. Both are whole messages as received, without the non-ESP marker.
//
// A responder needs it when a retry reaches the IKE SA it made from
// another copy of the request: the initiator then authenticates the retry
// (the last IKE_SA_INIT it sent), so the responder must check its AUTH
// over that one.
func CookieRetryOf(retry, first []byte) bool {
	nr, rr, ok := afterCookie(retry)
	if !ok || len(first) < HeaderLen {
		return false
	}
	nf, rf, _ := afterCookie(first)
	return nr == nf && bytes.Equal(retry[:16], first[:16]) && bytes.Equal(retry[17:24], first[17:24]) && bytes.Equal(rr, rf)
}

// afterCookie returns the type of the first payload of a message after a
// leading COOKIE notify, and the bytes after that notify; without one, the
// message's first payload type and all its payloads.
func afterCookie(b []byte) (next byte, rest []byte, cookie bool) {
	if len(b) < HeaderLen {
		return 0, nil, false
	}
	next, rest = b[16], b[HeaderLen:]
	if PayloadType(next) != PayloadNotify || len(rest) < 8 {
		return next, rest, false
	}
	n := int(binary.BigEndian.Uint16(rest[2:4]))
	if n < 8 || n > len(rest) || NotifyType(binary.BigEndian.Uint16(rest[6:8])) != Cookie {
		return next, rest, false
	}
	return rest[0], rest[n:], true
}
