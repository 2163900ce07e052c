// Package unixrpc is the JSON-over-unix-socket RPC that spud's SA API
// (dataplane/api) and iked's control socket (control/iked/ikectl) both
// speak: a socket that only root may open (mode 0600, and the peer's
// credentials are checked), carrying length-prefixed, versioned messages.
//
// # Wire format (version 1)
//
// Every message is a 4-byte big-endian length N (at most MaxMessage) followed
// by N bytes of one JSON object:
//
//	request   {"v":1, "id":7, "op":"sa.add", "body":{...}}
//	response  {"v":1, "id":7, "ok":true, "body":{...}}
//	          {"v":1, "id":7, "error":"sa spi 0x0000c001 in: exists", "code":"exists"}
//	event     {"v":1, "event":"lifetime.soft", "body":{...}}   (id absent)
//
// A client may send several requests before reading responses; responses
// carry the request's id and come in order. Events are sent only to
// connections that asked for them with events.subscribe (OpSubscribe),
// between responses, never inside one. A request with an unknown op or a
// version the server does not speak gets an error response; a malformed
// frame closes the connection. A body that is not JSON in a well-formed
// envelope fails where it is decoded: that request (CodeBadRequest) or
// that call, not the connection.
//
// A frame whose length has its top bit set (DataFrame) carries bytes of
// its own encoding after the JSON object, sent and read as they are
// (Message.Data): its N bytes are a 4-byte big-endian length J, J bytes of
// the JSON object, and the N-4-J bytes of the data. A listing's page of a
// hundred thousand entries is megabytes that base64 in a JSON string would
// make a third larger, and that each side would scan, escape and copy; a
// server sends such a frame only as the reply to a request that asked for
// one (an encoding its client names), so that a client older than it, for
// which the top bit is a length out of range, never gets one.
//
// An error response carries the server's text in "error" and what kind of
// refusal it is in "code" (see Code). The code sits beside the text rather
// than replacing it so that a peer of an older build, which knows only the
// text, still reads the other's errors: spud and iked restart, and are
// upgraded, independently.
package unixrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Version is the protocol version this package speaks.
const Version = 1

// MaxMessage bounds one message. A reply that would exceed it fails alone
// (CodeTooLarge), the connection intact: what may be large is paged by
// its API (spud's dumps, iked's sas.list).
const MaxMessage = 16 << 20

// DataFrame is the bit of a frame's length that says the frame carries
// Message.Data after its JSON object.
const DataFrame = 1 << 31

// errMessageTooLarge marks a message WriteMessage refused to send: the
// connection is intact.
var errMessageTooLarge = errors.New("too large to send")

// envelope is room for a message's fields around its body.
const envelope = 4 << 10

// initialFrameBuf is what ReadMessage allocates before a frame's bytes
// arrive: a frame longer than it gets its whole buffer once that much has
// come, so that a page of megabytes is read into one buffer, not copied
// from buffer to buffer as it grows.
const initialFrameBuf = 256 << 10

// OpSubscribe asks the server for its events, which then follow on the
// connection; it has no body either way.
const OpSubscribe = "events.subscribe"

// EventLost tells a subscriber that it was too slow and lost events; its
// body is LostEvents.
const EventLost = "events.lost"

// LostEvents says how many events a slow subscriber missed.
type LostEvents struct {
	Count uint64 `json:"count"` // events dropped since the last EventLost
}

// Message is one frame on the socket.
type Message struct {
	V  int    `json:"v"`            // protocol version: Version
	ID uint64 `json:"id,omitempty"` // request id, echoed by the response; 0 for events
	Op string `json:"op,omitempty"` // request: the operation
	OK bool   `json:"ok,omitempty"` // response: served (Body is the reply), else Error says why
	// Error is the text of an error response.
	Error string `json:"error,omitempty"`
	// Code says what kind of error Error is; a peer of an older build
	// sends none (CodeUnknown).
	Code  Code            `json:"code,omitempty"`
	Event string          `json:"event,omitempty"` // event: its kind
	Body  json.RawMessage `json:"body,omitempty"`  // request, reply or event body
	// Data is what the frame carries after its JSON object (DataFrame),
	// nil for a frame of JSON only. Read, it aliases the frame's buffer,
	// which nothing else holds.
	Data []byte `json:"-"`
}

// WriteMessage writes one frame. The envelope is written field by field
// and the body appended as it is, not marshalled again: a dump's page is
// megabytes that json.Marshal of the Message would scan and copy once
// more. The bytes are those json.Marshal(m) gives for a compact body (every
// body here is one: json.Marshal's, or a handler's own json.RawMessage).
// Data, if any, follows in the same frame (DataFrame), written as it is,
// not copied into the envelope's buffer.
func WriteMessage(w io.Writer, m *Message) error {
	m.V = Version
	n := len(m.Body) + len(m.Data)
	if n > MaxMessage {
		return fmt.Errorf("unixrpc: message of more than %d bytes exceeds %d: %w", n, MaxMessage, errMessageTooLarge)
	}
	hdr := 4
	if m.Data != nil {
		hdr = 8
	}
	b := make([]byte, hdr, hdr+envelope/4+len(m.Error)+len(m.Body))
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, int64(m.V), 10)
	if m.ID != 0 {
		b = append(b, `,"id":`...)
		b = strconv.AppendUint(b, m.ID, 10)
	}
	b = appendField(b, "op", m.Op)
	if m.OK {
		b = append(b, `,"ok":true`...)
	}
	b = appendField(b, "error", m.Error)
	b = appendField(b, "code", string(m.Code))
	b = appendField(b, "event", m.Event)
	if len(m.Body) > 0 {
		b = append(b, `,"body":`...)
		b = append(b, m.Body...)
	}
	b = append(b, '}')
	size := len(b) - 4 + len(m.Data)
	if size > MaxMessage {
		return fmt.Errorf("unixrpc: message of %d bytes exceeds %d: %w", size, MaxMessage, errMessageTooLarge)
	}
	if m.Data == nil {
		binary.BigEndian.PutUint32(b, uint32(size))
		_, err := w.Write(b)
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(size)|DataFrame)
	binary.BigEndian.PutUint32(b[4:], uint32(len(b)-8))
	if _, err := w.Write(b); err != nil {
		return err
	}
	_, err := w.Write(m.Data)
	return err
}

// appendField appends ,"key":"value" unless value is empty (omitempty),
// the value escaped as json.Marshal escapes it.
func appendField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	q, _ := json.Marshal(value) // a string always marshals
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return append(b, q...)
}

// bodyKey starts the body in a frame: it can only be the key itself,
// since a quote inside a JSON string is escaped, and it is the last field
// of every message (json.Marshal writes Message's fields in order, and so
// does WriteMessage).
var bodyKey = []byte(`,"body":`)

// ReadMessage reads one frame. A length over MaxMessage, a short frame or
// bad JSON is an error after which the stream cannot be trusted.
func ReadMessage(r io.Reader) (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	withData := n&DataFrame != 0
	n &^= DataFrame
	if n == 0 || n > MaxMessage {
		return nil, fmt.Errorf("unixrpc: frame length %d out of range (1..%d)", n, MaxMessage)
	}
	b, err := readFrame(r, int(n))
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("unixrpc: frame of %d bytes: %w", n, err)
	}
	var data []byte
	if withData {
		if len(b) < 4 || int(binary.BigEndian.Uint32(b)) > len(b)-4 {
			return nil, fmt.Errorf("unixrpc: frame of %d bytes: its JSON object's length runs past it", n)
		}
		j := 4 + int(binary.BigEndian.Uint32(b))
		b, data = b[4:j:j], b[j:]
	}
	m, err := decodeEnvelope(b)
	if err != nil {
		return nil, err
	}
	m.Data = data
	return m, nil
}

// readFrame reads a frame's n bytes. The buffer grows with what arrives,
// not with what the length announces: a peer that announces 16 MiB and
// sends nothing pins initialFrameBuf; one that sent that much gets a
// buffer of the whole frame at once.
func readFrame(r io.Reader, n int) ([]byte, error) {
	first := min(n, initialFrameBuf)
	b := make([]byte, first)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	if first == n {
		return b, nil
	}
	whole := make([]byte, n)
	copy(whole, b)
	_, err := io.ReadFull(r, whole[first:])
	return whole, err
}

// decodeEnvelope decodes a frame's JSON object.
func decodeEnvelope(b []byte) (*Message, error) {
	var m Message
	// The envelope is decoded without its body, which stays in the frame's
	// buffer for whoever decodes it: json.Unmarshal of the whole frame
	// would scan the body twice (validation, then RawMessage's copy) before
	// its receiver decodes it a third time. A body that is not JSON is
	// then its receiver's decode error (a bad request, a bad reply), which
	// costs that message only. A frame of another shape (hand-written, a
	// body not last) is decoded whole.
	if i := bytes.Index(b, bodyKey); i > 0 && b[len(b)-1] == '}' {
		head := append(b[:i:i], '}')
		if parseHead(head, &m) {
			m.Body = json.RawMessage(bytes.TrimSpace(b[i+len(bodyKey) : len(b)-1]))
			if len(m.Body) > 0 {
				return &m, nil
			}
		}
		m = Message{}
		if err := json.Unmarshal(head, &m); err == nil {
			m.Body = json.RawMessage(bytes.TrimSpace(b[i+len(bodyKey) : len(b)-1]))
			if len(m.Body) > 0 {
				return &m, nil
			}
		}
		m = Message{}
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("unixrpc: frame is not a message: %w", err)
	}
	return &m, nil
}

// parseHead decodes a message's envelope (its fields but the body) in the
// form WriteMessage gives it: no spaces, each known field once, numbers
// of digits alone, strings of printable ASCII without escapes. It reports
// false, m then undefined, for anything else, which json.Unmarshal
// decodes as before: reflection over the envelope was a tenth of an SA
// API call's CPU on either side, for fields a loop reads in a few dozen
// nanoseconds. Its result is json.Unmarshal's wherever it reports true
// (FuzzReadMessage checks).
func parseHead(b []byte, m *Message) bool {
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return false
	}
	b = b[1 : len(b)-1]
	var seen uint8
	for len(b) > 0 {
		if b[0] != '"' {
			return false
		}
		k := bytes.IndexByte(b[1:], '"')
		if k < 0 || len(b) < k+3 || b[k+2] != ':' {
			return false
		}
		// The field's bit in seen; a switch on string(bytes) allocates
		// nothing.
		var bit uint8
		switch string(b[1 : k+1]) {
		case "v":
			bit = 1
		case "id":
			bit = 2
		case "ok":
			bit = 4
		case "op":
			bit = 8
		case "error":
			bit = 16
		case "code":
			bit = 32
		case "event":
			bit = 64
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		b = b[k+3:]
		switch bit {
		case 1, 2:
			n := 0
			for n < len(b) && b[n] >= '0' && b[n] <= '9' {
				n++
			}
			if n == 0 || n > 18 || (n > 1 && b[0] == '0') {
				return false
			}
			var v uint64
			for _, c := range b[:n] {
				v = v*10 + uint64(c-'0')
			}
			if bit == 1 {
				m.V = int(v)
			} else {
				m.ID = v
			}
			b = b[n:]
		case 4:
			switch {
			case bytes.HasPrefix(b, []byte("true")):
				m.OK, b = true, b[4:]
			case bytes.HasPrefix(b, []byte("false")):
				m.OK, b = false, b[5:]
			default:
				return false
			}
		default:
			if len(b) == 0 || b[0] != '"' {
				return false
			}
			n := 1
			for n < len(b) && b[n] != '"' {
				if b[n] < 0x20 || b[n] >= 0x7f || b[n] == '\\' {
					return false
				}
				n++
			}
			if n == len(b) {
				return false
			}
			v := string(b[1:n])
			switch bit {
			case 8:
				m.Op = v
			case 16:
				m.Error = v
			case 32:
				m.Code = Code(v)
			default:
				m.Event = v
			}
			b = b[n+1:]
		}
		if len(b) > 0 {
			if b[0] != ',' || len(b) == 1 {
				return false
			}
			b = b[1:]
		}
	}
	return true
}
