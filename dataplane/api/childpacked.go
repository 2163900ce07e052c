package api

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"

	"github.com/spugate/spugate/internal/packed"
)

// PackedRequest is the body of a request in the packed encoding:
// {"packed":"<base64>"}. child.add takes one (AppendPackedChildAdd):
// decoding a Child SA's two SAs and policy from JSON was ~40% of what
// spud spends on a child.add (netip addresses and selectors through their
// text methods, keys through base64 in reflection). A spud older than it
// refuses the field (CodeBadRequest: unknown field "packed"), and Client
// sends JSON on that connection from then on.
//
// Unlike a dump's entries, a request's are read strictly: bytes after the
// fields this spud knows are a bad request (a newer client's field, which
// must not be dropped unread), as an unknown JSON field is.
type PackedRequest struct {
	Packed []byte `json:"packed"` // the request, packed
}

// packedPrefix and packedSuffix frame what json.Marshal makes of a
// PackedRequest, which spud reads without reflection.
var (
	packedPrefix = []byte(`{"packed":"`)
	packedSuffix = []byte(`"}`)
)

// PackedBody returns the packed bytes of a request body in the form
// json.Marshal gives a PackedRequest; ok is false for any other body
// (JSON of the request itself), and err says why the bytes of one in that
// form do not decode.
func PackedBody(body []byte) (b []byte, ok bool, err error) {
	if !bytes.HasPrefix(body, packedPrefix) || !bytes.HasSuffix(body, packedSuffix) || len(body) < len(packedPrefix)+len(packedSuffix) {
		return nil, false, nil
	}
	enc := body[len(packedPrefix) : len(body)-len(packedSuffix)]
	b = make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(b, enc)
	if err != nil {
		return nil, true, fmt.Errorf("packed request: %w", err)
	}
	return b[:n], true, nil
}

// AppendPackedChildAdd appends r in the packed encoding: its logical SPU,
// then its inbound SA, its outbound SA and its policy as entries (the
// last two behind a count, 0 for none), keys included.
func AppendPackedChildAdd(b []byte, r *ChildAdd) []byte {
	b = binary.AppendVarint(b, int64(r.Logical))
	b = packed.AppendEntry(b, func(b []byte) []byte { return appendPackedRequestSA(b, &r.In) })
	b = packed.AppendCount(b, 1, r.Out == nil)
	if r.Out != nil {
		b = packed.AppendEntry(b, func(b []byte) []byte { return appendPackedRequestSA(b, r.Out) })
	}
	b = packed.AppendCount(b, 1, r.Policy == nil)
	if r.Policy != nil {
		b = packed.AppendEntry(b, func(b []byte) []byte { return appendPackedPolicy(b, r.Policy) })
	}
	return b
}

// appendPackedRequestSA writes every field of an SA, in the order of the
// type's fields; packedReader.requestSA reads them back.
func appendPackedRequestSA(b []byte, s *SA) []byte {
	b = binary.AppendUvarint(b, uint64(s.SPI))
	b = packed.AppendString(b, string(s.Dir))
	b = appendAddr(b, s.Local)
	b = appendAddr(b, s.Remote)
	b = appendOptInt(b, s.Logical)
	b = packed.AppendString(b, string(s.Mode))
	b = appendSuite(b, s.Suite)
	b = packed.AppendBytes(b, s.EncKey)
	b = packed.AppendBytes(b, s.IntegKey)
	b = packed.AppendBool(b, s.ESN)
	b = binary.AppendVarint(b, int64(s.ReplayWindow))
	b = packed.AppendCount(b, 1, s.Encap == nil)
	if s.Encap != nil {
		b = binary.AppendUvarint(b, uint64(s.Encap.LocalPort))
		b = binary.AppendUvarint(b, uint64(s.Encap.RemotePort))
	}
	b = binary.AppendUvarint(b, uint64(s.ReqID))
	b = appendSelectors(b, s.LocalTS)
	b = appendSelectors(b, s.RemoteTS)
	b = binary.AppendUvarint(b, s.Lifetime.SoftBytes)
	b = binary.AppendUvarint(b, s.Lifetime.HardBytes)
	b = binary.AppendUvarint(b, s.Lifetime.SoftPackets)
	b = binary.AppendUvarint(b, s.Lifetime.HardPackets)
	return packed.AppendString(b, s.Name)
}

// appendPackedPolicy writes every field of a policy, in the order of the
// type's fields.
func appendPackedPolicy(b []byte, p *Policy) []byte {
	b = binary.AppendUvarint(b, uint64(p.ID))
	b = binary.AppendUvarint(b, uint64(p.ReqID))
	b = packed.AppendString(b, string(p.Action))
	b = appendAddr(b, p.Local)
	b = appendAddr(b, p.Remote)
	b = appendOptInt(b, p.Logical)
	b = appendSelectors(b, p.LocalTS)
	b = appendSelectors(b, p.RemoteTS)
	b = packed.AppendCount(b, len(p.Interfaces), p.Interfaces == nil)
	for _, n := range p.Interfaces {
		b = packed.AppendString(b, n)
	}
	return packed.AppendString(b, p.Name)
}

// DecodePackedChildAdd reads what AppendPackedChildAdd wrote. Anything
// short, malformed or left over is an error naming the part.
func DecodePackedChildAdd(b []byte) (*ChildAdd, error) {
	r := &ChildAdd{}
	d := packedReader{Reader: packed.Reader{B: b}}
	r.Logical = int(d.Varint())
	if err := d.strictEntry("inbound sa", func(e *packedReader) { e.requestSA(&r.In) }); err != nil {
		return nil, err
	}
	if _, isNil := d.Count(); !isNil {
		r.Out = &SA{}
		if err := d.strictEntry("outbound sa", func(e *packedReader) { e.requestSA(r.Out) }); err != nil {
			return nil, err
		}
	}
	if _, isNil := d.Count(); !isNil {
		r.Policy = &Policy{}
		if err := d.strictEntry("policy", func(e *packedReader) { e.policy(r.Policy) }); err != nil {
			return nil, err
		}
	}
	if d.Err != nil {
		return nil, fmt.Errorf("packed child.add: %w", d.Err)
	}
	if len(d.B) > 0 {
		return nil, fmt.Errorf("packed child.add: %d bytes after the request (a newer client's?)", len(d.B))
	}
	return r, nil
}

// strictEntry reads one entry with fields, which must read it to its end.
func (d *packedReader) strictEntry(what string, fields func(*packedReader)) error {
	e := packedReader{Reader: packed.Reader{B: d.Entry()}}
	if d.Err != nil {
		return fmt.Errorf("packed child.add: %s: %w", what, d.Err)
	}
	fields(&e)
	if e.Err != nil {
		return fmt.Errorf("packed child.add: %s: %w", what, e.Err)
	}
	if len(e.B) > 0 {
		return fmt.Errorf("packed child.add: %s: %d bytes after the fields this spud knows (a newer client's?)", what, len(e.B))
	}
	return nil
}

func (d *packedReader) requestSA(s *SA) {
	s.SPI = d.U32()
	s.Dir = d.dir()
	s.Local = d.addr()
	s.Remote = d.addr()
	s.Logical = d.optInt()
	s.Mode = d.mode()
	s.Suite = d.suite()
	s.EncKey = d.Bytes()
	s.IntegKey = d.Bytes()
	s.ESN = d.Bool()
	s.ReplayWindow = int(d.Varint())
	if _, isNil := d.Count(); !isNil {
		s.Encap = &Encap{LocalPort: d.U16(), RemotePort: d.U16()}
	}
	s.ReqID = d.U32()
	s.LocalTS = d.selectors()
	s.RemoteTS = d.selectors()
	s.Lifetime = Lifetime{SoftBytes: d.Uvarint(), HardBytes: d.Uvarint(), SoftPackets: d.Uvarint(), HardPackets: d.Uvarint()}
	s.Name = d.String()
}

func (d *packedReader) policy(p *Policy) {
	p.ID = d.U32()
	p.ReqID = d.U32()
	switch a := d.String(); a {
	case string(Protect):
		p.Action = Protect
	case string(Bypass):
		p.Action = Bypass
	case string(Discard):
		p.Action = Discard
	default:
		p.Action = Action(a)
	}
	p.Local = d.addr()
	p.Remote = d.addr()
	p.Logical = d.optInt()
	p.LocalTS = d.selectors()
	p.RemoteTS = d.selectors()
	if n, isNil := d.Count(); !isNil {
		p.Interfaces = make([]string, 0, n)
		for range n {
			p.Interfaces = append(p.Interfaces, d.String())
		}
	}
	p.Name = d.String()
}
