package message

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"

	"github.com/spugate/spugate/control/ike/suite"
)

// Payload is one decoded payload, or one to encode. The concrete types are
// *SA, *KE, *ID, *Cert, *CertReq, *Auth, *Nonce, *Notify, *Delete,
// *VendorID, *TS, *CP, *EAP and *Unknown. SK and SKF are not payloads of a
// chain: a decoded message exposes them as Message.Encrypted, and Encode
// builds them from Message.Inner.
//
// Byte slices in decoded payloads alias the buffer given to Decode (or the
// decrypted plaintext); copy what outlives it.
type Payload interface {
	Type() PayloadType
	appendBody(b []byte) ([]byte, error)
}

// KE is a Key Exchange payload (RFC 7296 3.4).
type KE struct {
	Group suite.GroupID
	Data  []byte
}

// ID is an Identification payload, IDi or IDr (RFC 7296 3.5).
type ID struct {
	Responder bool // IDr, else IDi
	IDType    IDType
	Data      []byte
}

// Cert is a Certificate payload (RFC 7296 3.6).
type Cert struct {
	Encoding CertEncoding
	Data     []byte
}

// CertReq is a Certificate Request payload (RFC 7296 3.7); for X.509 the
// data is a list of 20-byte SHA-1 hashes of trusted CA public keys.
type CertReq struct {
	Encoding CertEncoding
	Data     []byte
}

// Auth is an Authentication payload (RFC 7296 3.8).
type Auth struct {
	Method AuthMethod
	Data   []byte
}

// Nonce is a Nonce payload (RFC 7296 3.9): 16 to 256 bytes.
type Nonce struct{ Data []byte }

// Notify is a Notify payload (RFC 7296 3.10).
type Notify struct {
	Protocol   suite.Protocol // ProtocolNone unless the notify is about an SA
	SPI        []byte
	NotifyType NotifyType
	Data       []byte
}

// Delete is a Delete payload (RFC 7296 3.11): no SPI for the IKE SA, the
// 4-byte inbound SPIs (of the sender) for ESP or AH.
type Delete struct {
	Protocol suite.Protocol
	SPIs     []uint32
}

// VendorID is a Vendor ID payload (RFC 7296 3.12).
type VendorID struct{ Data []byte }

// TS is a Traffic Selector payload, TSi or TSr (RFC 7296 3.13).
type TS struct {
	Responder bool // TSr, else TSi
	Selectors []ipsec.Selector
}

// CP is a Configuration payload (RFC 7296 3.15).
type CP struct {
	CfgType    CfgType
	Attributes []CPAttribute
}

// CPAttribute is one configuration attribute; Value is empty in a request
// for any value.
type CPAttribute struct {
	Type  CPAttrType
	Value []byte
}

// EAP is an EAP payload (RFC 7296 3.16), kept opaque: Data is the whole EAP
// message (Code, Identifier, Length, Type, data).
type EAP struct{ Data []byte }

// Unknown is a payload of a type this package does not know, with the
// critical bit clear, kept so that it is skipped rather than lost.
type Unknown struct {
	PayloadType PayloadType
	Critical    bool
	Body        []byte
}

// Type implements Payload: PayloadSA, 33.
func (*SA) Type() PayloadType { return PayloadSA }

// Type implements Payload: PayloadKE, 34.
func (*KE) Type() PayloadType { return PayloadKE }

// Type implements Payload: PayloadCERT, 37.
func (*Cert) Type() PayloadType { return PayloadCERT }

// Type implements Payload: PayloadCERTREQ, 38.
func (*CertReq) Type() PayloadType { return PayloadCERTREQ }

// Type implements Payload: PayloadAUTH, 39.
func (*Auth) Type() PayloadType { return PayloadAUTH }

// Type implements Payload: PayloadNonce, 40.
func (*Nonce) Type() PayloadType { return PayloadNonce }

// Type implements Payload: PayloadNotify, 41.
func (*Notify) Type() PayloadType { return PayloadNotify }

// Type implements Payload: PayloadDelete, 42.
func (*Delete) Type() PayloadType { return PayloadDelete }

// Type implements Payload: PayloadVendorID, 43.
func (*VendorID) Type() PayloadType { return PayloadVendorID }

// Type implements Payload: PayloadCP, 47.
func (*CP) Type() PayloadType { return PayloadCP }

// Type implements Payload: PayloadEAP, 48.
func (*EAP) Type() PayloadType { return PayloadEAP }

// Type implements Payload: the type the payload was received with, whose
// critical bit was clear.
func (u *Unknown) Type() PayloadType {
	return u.PayloadType
}

// Type is IDi or IDr.
func (p *ID) Type() PayloadType {
	if p.Responder {
		return PayloadIDr
	}
	return PayloadIDi
}

// Type is TSi or TSr.
func (p *TS) Type() PayloadType {
	if p.Responder {
		return PayloadTSr
	}
	return PayloadTSi
}

// Body is the ID payload without its generic header (ID Type, three
// reserved bytes, data): RestOfInitIDPayload / RestOfRespIDPayload of
// RFC 7296 section 2.15, the input of MACedIDForI/R.
func (p *ID) Body() []byte {
	b, _ := p.appendBody(nil)
	return b
}

// NewID returns an ID payload for an address (ID_IPV4_ADDR or
// ID_IPV6_ADDR).
func NewID(responder bool, addr netip.Addr) *ID {
	if addr.Is4() {
		a := addr.As4()
		return &ID{Responder: responder, IDType: IDIPv4Addr, Data: a[:]}
	}
	a := addr.As16()
	return &ID{Responder: responder, IDType: IDIPv6Addr, Data: a[:]}
}

// String shows the identity as a reader knows it: an address, an FQDN or
// e-mail address as text, anything else (a DN, a key ID) as its type and
// hex bytes.
func (p *ID) String() string {
	switch p.IDType {
	case IDIPv4Addr, IDIPv6Addr:
		if a, ok := netip.AddrFromSlice(p.Data); ok {
			return a.String()
		}
	case IDFQDN, IDRFC822Addr:
		return string(p.Data)
	}
	return fmt.Sprintf("%s %x", p.IDType, p.Data)
}

// Find returns the first payload of type t in ps, or nil.
func Find(ps []Payload, t PayloadType) Payload {
	for _, p := range ps {
		if p.Type() == t {
			return p
		}
	}
	return nil
}

// FindNotify returns the first Notify of type t in ps, or nil.
func FindNotify(ps []Payload, t NotifyType) *Notify {
	for _, p := range ps {
		if n, ok := p.(*Notify); ok && n.NotifyType == t {
			return n
		}
	}
	return nil
}

// Encoding of the bodies (after the 4-byte generic payload header).

func (p *KE) appendBody(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint16(b, uint16(p.Group))
	b = append(b, 0, 0)
	return append(b, p.Data...), nil
}

func (p *ID) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(p.IDType), 0, 0, 0)
	return append(b, p.Data...), nil
}

func (p *Cert) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(p.Encoding)), p.Data...), nil
}

func (p *CertReq) appendBody(b []byte) ([]byte, error) {
	return append(append(b, byte(p.Encoding)), p.Data...), nil
}

func (p *Auth) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(p.Method), 0, 0, 0)
	return append(b, p.Data...), nil
}

func (p *Nonce) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

func (p *Notify) appendBody(b []byte) ([]byte, error) {
	if len(p.SPI) > 255 {
		return nil, fmt.Errorf("SPI of %d bytes", len(p.SPI))
	}
	b = append(b, byte(p.Protocol), byte(len(p.SPI)))
	b = binary.BigEndian.AppendUint16(b, uint16(p.NotifyType))
	b = append(b, p.SPI...)
	return append(b, p.Data...), nil
}

func (p *Delete) appendBody(b []byte) ([]byte, error) {
	size := 4
	if p.Protocol == suite.ProtocolIKE {
		size = 0
		if len(p.SPIs) != 0 {
			return nil, errors.New("SPIs in an IKE SA delete")
		}
	}
	if len(p.SPIs) > 0xffff {
		return nil, fmt.Errorf("%d SPIs", len(p.SPIs))
	}
	b = append(b, byte(p.Protocol), byte(size))
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.SPIs)))
	for _, s := range p.SPIs {
		b = binary.BigEndian.AppendUint32(b, s)
	}
	return b, nil
}

func (p *VendorID) appendBody(b []byte) ([]byte, error) { return append(b, p.Data...), nil }

func (p *TS) appendBody(b []byte) ([]byte, error) {
	if len(p.Selectors) == 0 || len(p.Selectors) > 255 {
		return nil, fmt.Errorf("%d traffic selectors", len(p.Selectors))
	}
	b = append(b, byte(len(p.Selectors)), 0, 0, 0)
	for i, s := range p.Selectors {
		if !s.From.IsValid() || !s.To.IsValid() || s.From.Is4() != s.To.Is4() || s.From.Is4In6() || s.To.Is4In6() {
			return nil, fmt.Errorf("selector %d: addresses %v-%v not of one family", i+1, s.From, s.To)
		}
		typ, n := TSIPv6AddrRange, 40
		if s.From.Is4() {
			typ, n = TSIPv4AddrRange, 16
		}
		b = append(b, byte(typ), s.Proto)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
		b = binary.BigEndian.AppendUint16(b, s.FromPort)
		b = binary.BigEndian.AppendUint16(b, s.ToPort)
		b = append(b, s.From.AsSlice()...)
		b = append(b, s.To.AsSlice()...)
	}
	return b, nil
}

func (p *CP) appendBody(b []byte) ([]byte, error) {
	b = append(b, byte(p.CfgType), 0, 0, 0)
	for _, a := range p.Attributes {
		if a.Type > 0x7fff || len(a.Value) > 0xffff {
			return nil, fmt.Errorf("attribute %d of %d bytes", a.Type, len(a.Value))
		}
		b = binary.BigEndian.AppendUint16(b, uint16(a.Type))
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.Value)))
		b = append(b, a.Value...)
	}
	return b, nil
}

func (p *EAP) appendBody(b []byte) ([]byte, error)     { return append(b, p.Data...), nil }
func (p *Unknown) appendBody(b []byte) ([]byte, error) { return append(b, p.Body...), nil }

// Decoding of the bodies. Each returns an error without prefix; the chain
// decoder names the payload.

type bodyDecoder func(body []byte) (Payload, error)

var decoders = map[PayloadType]bodyDecoder{
	PayloadSA:       decodeSA,
	PayloadKE:       decodeKE,
	PayloadIDi:      func(b []byte) (Payload, error) { return decodeID(b, false) },
	PayloadIDr:      func(b []byte) (Payload, error) { return decodeID(b, true) },
	PayloadCERT:     decodeCert,
	PayloadCERTREQ:  decodeCertReq,
	PayloadAUTH:     decodeAuth,
	PayloadNonce:    decodeNonce,
	PayloadNotify:   decodeNotify,
	PayloadDelete:   decodeDelete,
	PayloadVendorID: func(b []byte) (Payload, error) { return &VendorID{Data: b}, nil },
	PayloadTSi:      func(b []byte) (Payload, error) { return decodeTS(b, false) },
	PayloadTSr:      func(b []byte) (Payload, error) { return decodeTS(b, true) },
	PayloadCP:       decodeCP,
	PayloadEAP:      decodeEAP,
}

func short(body []byte, min int) error {
	if len(body) < min {
		return fmt.Errorf("length %d below minimum %d", len(body)+4, min+4)
	}
	return nil
}

func decodeKE(b []byte) (Payload, error) {
	if err := short(b, 5); err != nil {
		return nil, err
	}
	return &KE{Group: suite.GroupID(binary.BigEndian.Uint16(b)), Data: b[4:]}, nil
}

func decodeID(b []byte, responder bool) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	p := &ID{Responder: responder, IDType: IDType(b[0]), Data: b[4:]}
	switch {
	case p.IDType == IDIPv4Addr && len(p.Data) != 4:
		return nil, fmt.Errorf("ID_IPV4_ADDR of %d bytes", len(p.Data))
	case p.IDType == IDIPv6Addr && len(p.Data) != 16:
		return nil, fmt.Errorf("ID_IPV6_ADDR of %d bytes", len(p.Data))
	case p.IDType != IDNull && len(p.Data) == 0:
		return nil, fmt.Errorf("empty %s", p.IDType)
	}
	return p, nil
}

func decodeCert(b []byte) (Payload, error) {
	if err := short(b, 2); err != nil {
		return nil, err
	}
	return &Cert{Encoding: CertEncoding(b[0]), Data: b[1:]}, nil
}

func decodeCertReq(b []byte) (Payload, error) {
	if err := short(b, 1); err != nil {
		return nil, err
	}
	return &CertReq{Encoding: CertEncoding(b[0]), Data: b[1:]}, nil
}

func decodeAuth(b []byte) (Payload, error) {
	if err := short(b, 5); err != nil {
		return nil, err
	}
	return &Auth{Method: AuthMethod(b[0]), Data: b[4:]}, nil
}

func decodeNonce(b []byte) (Payload, error) {
	if len(b) < 16 || len(b) > 256 {
		return nil, fmt.Errorf("nonce of %d bytes outside 16..256", len(b))
	}
	return &Nonce{Data: b}, nil
}

func decodeNotify(b []byte) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	spiSize := int(b[1])
	if len(b) < 4+spiSize {
		return nil, fmt.Errorf("SPI size %d exceeds the %d bytes left", spiSize, len(b)-4)
	}
	return &Notify{
		Protocol:   suite.Protocol(b[0]),
		NotifyType: NotifyType(binary.BigEndian.Uint16(b[2:])),
		SPI:        b[4 : 4+spiSize],
		Data:       b[4+spiSize:],
	}, nil
}

func decodeDelete(b []byte) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	p := &Delete{Protocol: suite.Protocol(b[0])}
	spiSize, n := int(b[1]), int(binary.BigEndian.Uint16(b[2:]))
	switch p.Protocol {
	case suite.ProtocolIKE:
		if spiSize != 0 || n != 0 || len(b) != 4 {
			return nil, fmt.Errorf("IKE SA delete with SPI size %d, %d SPIs, %d bytes", spiSize, n, len(b))
		}
	case suite.ProtocolESP, suite.ProtocolAH:
		if spiSize != 4 {
			return nil, fmt.Errorf("%s delete with SPI size %d, want 4", p.Protocol, spiSize)
		}
		if n == 0 || len(b) != 4+4*n {
			return nil, fmt.Errorf("%d SPIs in %d bytes", n, len(b)-4)
		}
		p.SPIs = make([]uint32, n)
		for i := range p.SPIs {
			p.SPIs[i] = binary.BigEndian.Uint32(b[4+4*i:])
		}
	default:
		return nil, fmt.Errorf("delete for protocol %d", b[0])
	}
	return p, nil
}

func decodeTS(b []byte, responder bool) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	n := int(b[0])
	if n == 0 {
		return nil, errors.New("no traffic selectors")
	}
	p := &TS{Responder: responder, Selectors: make([]ipsec.Selector, 0, min(n, len(b)/16))}
	off := 4
	for i := 1; i <= n; i++ {
		if len(b)-off < 4 {
			return nil, fmt.Errorf("selector %d: truncated", i)
		}
		typ, l := TSType(b[off]), int(binary.BigEndian.Uint16(b[off+2:]))
		alen := 0
		switch typ {
		case TSIPv4AddrRange:
			alen = 4
		case TSIPv6AddrRange:
			alen = 16
		default:
			return nil, fmt.Errorf("selector %d: unsupported TS type %d", i, typ)
		}
		if l != 8+2*alen {
			return nil, fmt.Errorf("selector %d: length %d, want %d", i, l, 8+2*alen)
		}
		if len(b)-off < l {
			return nil, fmt.Errorf("selector %d: length %d exceeds the %d bytes left", i, l, len(b)-off)
		}
		s := ipsec.Selector{
			Proto:    b[off+1],
			FromPort: binary.BigEndian.Uint16(b[off+4:]),
			ToPort:   binary.BigEndian.Uint16(b[off+6:]),
		}
		s.From, _ = netip.AddrFromSlice(b[off+8 : off+8+alen])
		s.To, _ = netip.AddrFromSlice(b[off+8+alen : off+8+2*alen])
		p.Selectors = append(p.Selectors, s)
		off += l
	}
	if off != len(b) {
		return nil, fmt.Errorf("%d bytes after %d selectors", len(b)-off, n)
	}
	return p, nil
}

// maxCPAttributes bounds the attributes of a CP payload (a 64 KiB payload
// could otherwise hold 16k of them); real ones carry a handful.
const maxCPAttributes = 256

func decodeCP(b []byte) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	p := &CP{CfgType: CfgType(b[0])}
	off := 4
	for i := 1; off < len(b); i++ {
		if i > maxCPAttributes {
			return nil, fmt.Errorf("more than %d attributes", maxCPAttributes)
		}
		if len(b)-off < 4 {
			return nil, fmt.Errorf("attribute %d: truncated", i)
		}
		t, l := binary.BigEndian.Uint16(b[off:]), int(binary.BigEndian.Uint16(b[off+2:]))
		if t&0x8000 != 0 {
			return nil, fmt.Errorf("attribute %d: reserved bit set", i)
		}
		if len(b)-off-4 < l {
			return nil, fmt.Errorf("attribute %d: length %d exceeds the %d bytes left", i, l, len(b)-off-4)
		}
		p.Attributes = append(p.Attributes, CPAttribute{Type: CPAttrType(t), Value: b[off+4 : off+4+l]})
		off += 4 + l
	}
	return p, nil
}

func decodeEAP(b []byte) (Payload, error) {
	if err := short(b, 4); err != nil {
		return nil, err
	}
	if l := int(binary.BigEndian.Uint16(b[2:])); l != len(b) {
		return nil, fmt.Errorf("EAP length field %d but %d bytes", l, len(b))
	}
	return &EAP{Data: b}, nil
}
