package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Message is an IKEv2 message: the header, the cleartext payloads and,
// when protected, the Encrypted (SK) or Encrypted Fragment (SKF) payload.
//
// Decode fills Header, Payloads, Encrypted and Raw; Decrypt then fills
// Inner. Encode reads Header (Exchange, Flags, SPIs, MessageID), Payloads
// and Inner.
type Message struct {
	Header Header
	// Payloads are the payloads outside SK, in order.
	Payloads []Payload
	// Inner are the payloads inside SK, in order.
	Inner []Payload
	// Encrypted is the SK or SKF payload of a decoded message, nil if the
	// message has none.
	Encrypted *Encrypted
	// Raw is the datagram the message was decoded from (after the non-ESP
	// marker). It is what AUTH signs for IKE_SA_INIT (RealMessage1/2).
	Raw []byte
}

// Encrypted is a received SK or SKF payload, still encrypted.
type Encrypted struct {
	// Fragment is set for an SKF payload (RFC 7383).
	Fragment bool
	// NextPayload is the type of the first inner payload (of the first
	// fragment for SKF; 0 in the other fragments).
	NextPayload PayloadType
	// FragmentNumber and TotalFragments are those of an SKF payload.
	FragmentNumber, TotalFragments uint16
	// Offset is the position of the payload's generic header in Raw.
	Offset int
	// Body is IV | ciphertext | ICV.
	Body []byte
}

// HeaderLen is the length of the payload header that the associated data
// ends with: 4 for SK, 8 for SKF (with Fragment Number and Total Fragments).
func (e *Encrypted) HeaderLen() int {
	if e.Fragment {
		return 8
	}
	return 4
}

// AAD returns the bytes from the IKE header through the SK/SKF payload
// header: the associated data of an AEAD (RFC 5282 section 5.1, RFC 7383
// section 2.5.3), the start of the data an integrity algorithm covers.
func (m *Message) AAD() []byte {
	if m.Encrypted == nil {
		return nil
	}
	return m.Raw[:m.Encrypted.Offset+m.Encrypted.HeaderLen()]
}

// UnsupportedCriticalError reports a payload of an unknown type with the
// critical bit set (RFC 7296 section 2.5): the message must be rejected,
// and a request answered with UNSUPPORTED_CRITICAL_PAYLOAD carrying the
// type (see NotifyFor).
type UnsupportedCriticalError struct {
	PayloadType PayloadType
	Index       int
	Encrypted   bool
}

// Error names the payload by its position and type, and whether it was
// inside SK.
func (e *UnsupportedCriticalError) Error() string {
	where := "payload"
	if e.Encrypted {
		where = "encrypted payload"
	}
	return fmt.Sprintf("ike: %s %d (%s): unsupported critical payload", where, e.Index, e.PayloadType)
}

// NotifyFor maps a decoding error to the error notify a responder sends
// back and its data: UNSUPPORTED_CRITICAL_PAYLOAD with the one-byte payload
// type, INVALID_MAJOR_VERSION, else INVALID_SYNTAX. Whether to answer at
// all (never to a response, not to unauthenticated garbage) is the state
// machine's decision.
func NotifyFor(err error) (NotifyType, []byte) {
	var uc *UnsupportedCriticalError
	if errors.As(err, &uc) {
		return UnsupportedCriticalPayload, []byte{byte(uc.PayloadType)}
	}
	var mv *MajorVersionError
	if errors.As(err, &mv) {
		return InvalidMajorVersion, nil
	}
	return InvalidSyntax, nil
}

// Decode parses a datagram (for UDP 4500, after StripNonESPMarker): the
// header, the cleartext payloads and, if present, the SK or SKF payload,
// which must be the last payload. It is strict: every length is checked,
// an unknown payload with the critical bit fails with
// *UnsupportedCriticalError, an unknown one without it is kept as
// *Unknown. The payloads alias b; b must not be reused while m is in use.
func Decode(b []byte) (*Message, error) {
	h, err := DecodeHeader(b)
	if err != nil {
		return nil, err
	}
	m := &Message{Header: h, Raw: b}
	m.Payloads, m.Encrypted, err = decodeChain(b, HeaderLen, h.NextPayload, false)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeInner decodes a decrypted payload chain whose first payload has
// type first (the Next Payload field of the SK payload, or of the first
// SKF fragment).
func DecodeInner(plain []byte, first PayloadType) ([]Payload, error) {
	ps, _, err := decodeChain(plain, 0, first, true)
	return ps, err
}

func decodeChain(b []byte, off int, next PayloadType, inner bool) ([]Payload, *Encrypted, error) {
	where := "payload"
	if inner {
		where = "encrypted payload"
	}
	var ps []Payload
	if n := countChain(b, off, next); n > 0 {
		ps = make([]Payload, 0, n)
	}
	for idx := 1; next != PayloadNone; idx++ {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("ike: %s %d (%s): %s", where, idx, next, fmt.Sprintf(format, args...))
		}
		if len(b)-off < 4 {
			return nil, nil, fail("truncated: %d bytes left, need 4", len(b)-off)
		}
		np, critical := PayloadType(b[off]), b[off+1]&0x80 != 0
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < 4 {
			return nil, nil, fail("length %d below minimum 4", plen)
		}
		if plen > len(b)-off {
			return nil, nil, fail("length %d exceeds the %d bytes left", plen, len(b)-off)
		}
		body := b[off+4 : off+plen]
		if next == PayloadSK || next == PayloadSKF {
			if inner {
				return nil, nil, fail("encrypted payload inside an encrypted payload")
			}
			if off+plen != len(b) {
				return nil, nil, fail("not the last payload: %d bytes follow", len(b)-off-plen)
			}
			e := &Encrypted{NextPayload: np, Offset: off, Body: body}
			if next == PayloadSKF {
				if len(body) < 4 {
					return nil, nil, fail("length %d below minimum 8", plen)
				}
				e.Fragment = true
				e.FragmentNumber = binary.BigEndian.Uint16(body)
				e.TotalFragments = binary.BigEndian.Uint16(body[2:])
				e.Body = body[4:]
				if e.FragmentNumber == 0 || e.TotalFragments == 0 || e.FragmentNumber > e.TotalFragments {
					return nil, nil, fail("fragment %d of %d", e.FragmentNumber, e.TotalFragments)
				}
			}
			if len(e.Body) == 0 {
				return nil, nil, fail("no encrypted data")
			}
			return ps, e, nil
		}
		if idx > MaxPayloads {
			return nil, nil, fail("more than %d payloads", MaxPayloads)
		}
		dec := decoders[next]
		if dec == nil {
			if critical {
				return nil, nil, &UnsupportedCriticalError{PayloadType: next, Index: idx, Encrypted: inner}
			}
			ps = append(ps, &Unknown{PayloadType: next, Body: body})
		} else {
			p, err := dec(body)
			if err != nil {
				return nil, nil, fail("%v", err)
			}
			ps = append(ps, p)
		}
		off += plen
		next = np
	}
	if off != len(b) {
		return nil, nil, fmt.Errorf("ike: %d bytes after the last %s", len(b)-off, where)
	}
	return ps, nil, nil
}

// countChain is how many payloads before an SK or SKF payload the chain
// at off holds, as far as its lengths are sound (decodeChain checks
// them), at most MaxPayloads: the slice of payloads is made at its size
// rather than grown (three or four allocations for a message).
func countChain(b []byte, off int, next PayloadType) int {
	n := 0
	for next != PayloadNone && next != PayloadSK && next != PayloadSKF && n < MaxPayloads && len(b)-off >= 4 {
		plen := int(binary.BigEndian.Uint16(b[off+2:]))
		if plen < 4 {
			break
		}
		n++
		next = PayloadType(b[off])
		off += plen
	}
	return n
}

// Opener decrypts SK payloads; *suite.SKCipher implements it.
type Opener interface {
	// Open authenticates and decrypts body (IV | ciphertext | ICV) given
	// the message bytes through the payload header, and returns the
	// plaintext without padding.
	Open(aad, body []byte) ([]byte, error)
}

// Sealer encrypts SK payloads; *suite.SKCipher implements it.
type Sealer interface {
	// SealedLen is the body length Seal produces for n plaintext bytes.
	SealedLen(n int) int
	// Seal appends IV | ciphertext | ICV to msg, the message through the
	// payload header with final lengths.
	Seal(msg, plaintext []byte) ([]byte, error)
}

// Decrypt authenticates and decrypts the SK payload with the IKE SA's
// inbound cipher and decodes the inner payloads into m.Inner.
func (m *Message) Decrypt(c Opener) error {
	if m.Encrypted == nil {
		return errors.New("ike: message has no SK payload")
	}
	if m.Encrypted.Fragment {
		return errors.New("ike: message is a fragment (SKF); use DecryptFragment and Reassemble")
	}
	plain, err := c.Open(m.AAD(), m.Encrypted.Body)
	if err != nil {
		return fmt.Errorf("ike: SK payload: %w", err)
	}
	m.Inner, err = DecodeInner(plain, m.Encrypted.NextPayload)
	return err
}

// Fragment is a decrypted SKF payload (RFC 7383).
type Fragment struct {
	Number, Total uint16
	// NextPayload is the first inner payload type, from fragment 1.
	NextPayload PayloadType
	// Data is this fragment's part of the inner payload chain.
	Data []byte
}

// DecryptFragment authenticates and decrypts one SKF payload. Fragments
// are each protected on their own; the caller collects those of a message
// (same Message ID) and gives them to Reassemble.
func (m *Message) DecryptFragment(c Opener) (*Fragment, error) {
	e := m.Encrypted
	if e == nil || !e.Fragment {
		return nil, errors.New("ike: message has no SKF payload")
	}
	plain, err := c.Open(m.AAD(), e.Body)
	if err != nil {
		return nil, fmt.Errorf("ike: SKF payload %d/%d: %w", e.FragmentNumber, e.TotalFragments, err)
	}
	return &Fragment{Number: e.FragmentNumber, Total: e.TotalFragments, NextPayload: e.NextPayload, Data: plain}, nil
}

// Reassemble concatenates the decrypted fragments of one message, in any
// order, and decodes the inner payload chain. It requires exactly the
// fragments 1..Total, all announcing the same Total. Buffering fragments
// and bounding their number and memory is the caller's.
func Reassemble(frags []*Fragment) ([]Payload, error) {
	if len(frags) == 0 {
		return nil, errors.New("ike: reassembly: no fragments")
	}
	fs := append([]*Fragment(nil), frags...)
	sort.Slice(fs, func(i, j int) bool { return fs[i].Number < fs[j].Number })
	total := fs[0].Total
	n := 0
	for i, f := range fs {
		if f.Total != total {
			return nil, fmt.Errorf("ike: reassembly: fragment %d announces %d fragments, fragment %d announced %d", f.Number, f.Total, fs[0].Number, total)
		}
		if int(f.Number) != i+1 {
			return nil, fmt.Errorf("ike: reassembly: fragment %d missing or duplicated", i+1)
		}
		n += len(f.Data)
	}
	if len(fs) != int(total) {
		return nil, fmt.Errorf("ike: reassembly: %d of %d fragments", len(fs), total)
	}
	plain := make([]byte, 0, n)
	for _, f := range fs {
		plain = append(plain, f.Data...)
	}
	return DecodeInner(plain, fs[0].NextPayload)
}

// Encode builds the message: the header, the cleartext payloads and, when
// c is not nil, an SK payload holding the inner payloads encrypted with c
// (the IKE SA's outbound cipher). Lengths and Next Payload fields are
// filled in. IKE_SA_INIT is encoded with c nil; every later exchange needs
// c, even with no inner payload (an empty INFORMATIONAL request).
func (m *Message) Encode(c Sealer) ([]byte, error) {
	if c == nil && len(m.Inner) != 0 {
		return nil, errors.New("ike: encode: inner payloads without a cipher")
	}
	// The payloads are encoded into pooled scratch and the message is
	// allocated once, at its size: a setup encodes four messages and
	// keeps each (for retransmission), and growing buffers for them was
	// a tenth of what a setup allocated.
	sb := getScratch()
	defer putScratch(sb)
	b := append((*sb)[:0], make([]byte, HeaderLen)...)
	encType := PayloadNone
	if c != nil {
		encType = PayloadSK
	}
	b, err := appendChain(b, m.Payloads, encType)
	if err != nil {
		return nil, err
	}
	*sb = b
	h := m.Header
	h.NextPayload = encType
	if len(m.Payloads) > 0 {
		h.NextPayload = m.Payloads[0].Type()
	}
	if c == nil {
		h.Length = uint32(len(b))
		h.put(b)
		return append([]byte(nil), b...), nil
	}
	pb := getScratch()
	// The plaintext may hold what only the SK payload should show.
	defer func() { clear(*pb); putScratch(pb) }()
	plain, err := appendChain((*pb)[:0], m.Inner, PayloadNone)
	if err != nil {
		return nil, err
	}
	*pb = plain
	return sealInto(b, h, c, plain, firstType(m.Inner), 0, 0)
}

// scratch holds *[]byte encoding buffers between messages.
var scratch = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxScratch bounds the buffers kept: a message with certificates may be
// tens of kilobytes, rarely.
const maxScratch = 16 << 10

func getScratch() *[]byte { return scratch.Get().(*[]byte) }

func putScratch(b *[]byte) {
	if cap(*b) <= maxScratch {
		*b = (*b)[:0]
		scratch.Put(b)
	}
}

func firstType(ps []Payload) PayloadType {
	if len(ps) == 0 {
		return PayloadNone
	}
	return ps[0].Type()
}

// sealInto appends an SK (fragNum 0) or SKF payload sealing plain to the
// header and cleartext chain in b, and fills the lengths.
func sealInto(b []byte, h Header, c Sealer, plain []byte, next PayloadType, fragNum, fragTotal uint16) ([]byte, error) {
	hdr := 4
	if fragNum != 0 {
		hdr = 8
	}
	sealed := c.SealedLen(len(plain))
	plen := hdr + sealed
	if plen > 0xffff {
		return nil, fmt.Errorf("ike: encode: encrypted payload of %d bytes exceeds 65535", plen)
	}
	total := len(b) + plen
	out := make([]byte, len(b), total)
	copy(out, b)
	typ := PayloadSK
	if fragNum != 0 {
		typ = PayloadSKF
	}
	out = append(out, byte(next), 0)
	out = binary.BigEndian.AppendUint16(out, uint16(plen))
	if fragNum != 0 {
		out = binary.BigEndian.AppendUint16(out, fragNum)
		out = binary.BigEndian.AppendUint16(out, fragTotal)
	}
	h.Length = uint32(total)
	if h.NextPayload == PayloadNone || h.NextPayload == PayloadSK || h.NextPayload == PayloadSKF {
		h.NextPayload = typ
	}
	h.put(out)
	out, err := c.Seal(out, plain)
	if err != nil {
		return nil, fmt.Errorf("ike: encode: %w", err)
	}
	if len(out) != total {
		return nil, fmt.Errorf("ike: encode: cipher produced %d bytes, announced %d", len(out)-len(b)-hdr, sealed)
	}
	return out, nil
}

// appendChain encodes payloads with their generic headers; the last one's
// Next Payload is last.
func appendChain(b []byte, ps []Payload, last PayloadType) ([]byte, error) {
	for i, p := range ps {
		next := last
		if i+1 < len(ps) {
			next = ps[i+1].Type()
		}
		start := len(b)
		crit := byte(0)
		if u, ok := p.(*Unknown); ok && u.Critical {
			crit = 0x80
		}
		b = append(b, byte(next), crit, 0, 0)
		var err error
		b, err = p.appendBody(b)
		if err != nil {
			return nil, fmt.Errorf("ike: encode: payload %d (%s): %w", i+1, p.Type(), err)
		}
		if len(b)-start > 0xffff {
			return nil, fmt.Errorf("ike: encode: payload %d (%s) of %d bytes exceeds 65535", i+1, p.Type(), len(b)-start)
		}
		binary.BigEndian.PutUint16(b[start+2:], uint16(len(b)-start))
	}
	return b, nil
}

// EncodeFragments builds the message as Encrypted Fragment payloads (RFC
// 7383 section 2.5), each datagram at most maxLen bytes (the IKE message,
// without IP and UDP headers or the non-ESP marker: for a 1280-byte IPv6
// path with UDP 4500, maxLen = 1280 - 40 - 8 - 4). The inner payload chain
// is cut into pieces, each encrypted and authenticated on its own with its
// Fragment Number and Total Fragments in the associated data; cleartext
// payloads, if any, go in the first fragment only. Use it once
// IKEV2_FRAGMENTATION_SUPPORTED was exchanged and the message from Encode
// is larger than the path allows; retransmit the same datagrams.
func (m *Message) EncodeFragments(c Sealer, maxLen int) ([][]byte, error) {
	if c == nil {
		return nil, errors.New("ike: encode fragments: no cipher")
	}
	clear, err := appendChain(nil, m.Payloads, PayloadSKF)
	if err != nil {
		return nil, err
	}
	plain, err := appendChain(nil, m.Inner, PayloadNone)
	if err != nil {
		return nil, err
	}
	// capacity returns the most plaintext a fragment can carry next to
	// fixed bytes of header and cleartext payloads.
	capacity := func(fixed int) int {
		k := maxLen - fixed - 8
		for k > 0 && c.SealedLen(k) > maxLen-fixed-8 {
			k--
		}
		return k
	}
	k1, k := capacity(HeaderLen+len(clear)), capacity(HeaderLen)
	if k1 < 1 || k < 1 {
		return nil, fmt.Errorf("ike: encode fragments: %d bytes leave no room for data", maxLen)
	}
	var pieces [][]byte
	rest := plain
	first := min(k1, len(rest))
	pieces = append(pieces, rest[:first])
	rest = rest[first:]
	for len(rest) > 0 {
		n := min(k, len(rest))
		pieces = append(pieces, rest[:n])
		rest = rest[n:]
	}
	if len(pieces) > 0xffff {
		return nil, fmt.Errorf("ike: encode fragments: %d fragments", len(pieces))
	}
	total := uint16(len(pieces))
	out := make([][]byte, 0, len(pieces))
	for i, piece := range pieces {
		h := m.Header
		b := make([]byte, HeaderLen, HeaderLen+len(clear))
		next := PayloadNone
		if i == 0 {
			b = append(b, clear...)
			next = firstType(m.Inner)
			if len(m.Payloads) > 0 {
				h.NextPayload = m.Payloads[0].Type()
			} else {
				h.NextPayload = PayloadSKF
			}
		} else {
			h.NextPayload = PayloadSKF
		}
		d, err := sealInto(b, h, c, piece, next, uint16(i+1), total)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
