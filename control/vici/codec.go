// Package vici is strongSwan's VICI protocol (the Versatile IKE Control
// Interface of charon's vici plugin, described in strongSwan's
// src/libcharon/plugins/vici/README.md): the message codec, the packet
// framing, and a server that answers the commands and raises the events
// swanctl and govici use, on top of a Backend (iked). spugate's testbed
// speaks it as a client to drive charon with the same codec.
//
// On the wire a packet is a segment: a 32-bit big-endian length (at most
// MaxSegment) and that many bytes, the first the packet type, then a
// name for the named types, then a message: a sequence of elements
// (sections, key/values, lists) that nest to at most MaxDepth sections.
// Everything decoded comes from a peer, so every length is checked and
// nothing a peer sends makes the decoder panic (FuzzParsePacket).
package vici

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// PacketType is the first byte of a packet.
type PacketType uint8

// Packet types.
const (
	CmdRequest    PacketType = 0 // named: a command, with a message
	CmdResponse   PacketType = 1 // the command's answer, with a message
	CmdUnknown    PacketType = 2 // the command is not known
	EventRegister PacketType = 3 // named: deliver this event to me
	EventUnreg    PacketType = 4 // named: stop delivering it
	EventConfirm  PacketType = 5 // (un)registration done
	EventUnknown  PacketType = 6 // no such event
	Event         PacketType = 7 // named: an event, with a message
)

// String names the type as the VICI README does (CMD_REQUEST...).
func (t PacketType) String() string {
	switch t {
	case CmdRequest:
		return "CMD_REQUEST"
	case CmdResponse:
		return "CMD_RESPONSE"
	case CmdUnknown:
		return "CMD_UNKNOWN"
	case EventRegister:
		return "EVENT_REGISTER"
	case EventUnreg:
		return "EVENT_UNREGISTER"
	case EventConfirm:
		return "EVENT_CONFIRM"
	case EventUnknown:
		return "EVENT_UNKNOWN"
	case Event:
		return "EVENT"
	}
	return fmt.Sprintf("packet type %d", uint8(t))
}

// named reports whether packets of type t carry a name.
func (t PacketType) named() bool {
	return t == CmdRequest || t == EventRegister || t == EventUnreg || t == Event
}

// hasMessage reports whether packets of type t carry a message.
func (t PacketType) hasMessage() bool {
	return t == CmdRequest || t == CmdResponse || t == Event
}

// Message element types.
const (
	elSectionStart = 1
	elSectionEnd   = 2
	elKeyValue     = 3
	elListStart    = 4
	elListItem     = 5
	elListEnd      = 6
)

// MaxSegment is the protocol's limit on a segment (512 KiB), charon's.
const MaxSegment = 512 * 1024

// MaxDepth bounds section nesting; charon's deepest message (list-sa
// with child SAs) nests four levels.
const MaxDepth = 32

// Kind tells what an Element is.
type Kind uint8

// Element kinds.
const (
	KindValue Kind = iota + 1
	KindList
	KindSection
)

// Element is one named entry of a Section, in message order.
type Element struct {
	Name    string
	Kind    Kind
	Value   string   // KindValue
	List    []string // KindList
	Section *Section // KindSection
}

// Section is a VICI message tree: the message itself or one of its
// sections. The protocol keeps order (the IKE SAs of list-sa, the child
// SAs of an IKE SA), so elements are a slice, not a map.
type Section struct {
	Elements []Element
}

// Get returns the value of key, or "" when absent or not a value.
func (s *Section) Get(key string) string {
	v, _ := s.Lookup(key)
	return v
}

// Lookup returns the value of key and whether there is one.
func (s *Section) Lookup(key string) (string, bool) {
	if s == nil {
		return "", false
	}
	for _, e := range s.Elements {
		if e.Name == key && e.Kind == KindValue {
			return e.Value, true
		}
	}
	return "", false
}

// List returns the list called key, or nil.
func (s *Section) List(key string) []string {
	if s == nil {
		return nil
	}
	for _, e := range s.Elements {
		if e.Name == key && e.Kind == KindList {
			return e.List
		}
	}
	return nil
}

// Sub returns the sub-section called name, or nil.
func (s *Section) Sub(name string) *Section {
	if s == nil {
		return nil
	}
	for _, e := range s.Elements {
		if e.Name == name && e.Kind == KindSection {
			return e.Section
		}
	}
	return nil
}

// Subs returns the sub-sections in order.
func (s *Section) Subs() []Element {
	if s == nil {
		return nil
	}
	var out []Element
	for _, e := range s.Elements {
		if e.Kind == KindSection {
			out = append(out, e)
		}
	}
	return out
}

// Set appends a key/value.
func (s *Section) Set(key, value string) *Section {
	s.Elements = append(s.Elements, Element{Name: key, Kind: KindValue, Value: value})
	return s
}

// SetList appends a list (even an empty one: charon sends local-ts
// lists that way).
func (s *Section) SetList(key string, items []string) *Section {
	s.Elements = append(s.Elements, Element{Name: key, Kind: KindList, List: items})
	return s
}

// AddSection appends a sub-section called name and returns it.
func (s *Section) AddSection(name string) *Section {
	sub := &Section{}
	s.Elements = append(s.Elements, Element{Name: name, Kind: KindSection, Section: sub})
	return sub
}

// String renders the tree in swanctl's --pretty style, for reports.
func (s *Section) String() string {
	var b strings.Builder
	s.pretty(&b, 0)
	return b.String()
}

func (s *Section) pretty(b *strings.Builder, depth int) {
	ind := strings.Repeat("  ", depth)
	for _, e := range s.Elements {
		switch e.Kind {
		case KindValue:
			fmt.Fprintf(b, "%s%s = %s\n", ind, e.Name, e.Value)
		case KindList:
			fmt.Fprintf(b, "%s%s = [%s]\n", ind, e.Name, strings.Join(e.List, ", "))
		case KindSection:
			fmt.Fprintf(b, "%s%s {\n", ind, e.Name)
			e.Section.pretty(b, depth+1)
			fmt.Fprintf(b, "%s}\n", ind)
		}
	}
}

// AppendMessage appends the wire form of s. It fails on a name longer
// than 255 bytes, a value longer than 65535, nesting deeper than MaxDepth
// or an element of no kind; the segment limit is AppendPacket's.
func AppendMessage(dst []byte, s *Section) ([]byte, error) {
	return appendMessage(dst, s, 0)
}

func appendMessage(dst []byte, s *Section, depth int) ([]byte, error) {
	if s == nil {
		return dst, nil
	}
	if depth > MaxDepth {
		return nil, fmt.Errorf("vici: sections nested deeper than %d", MaxDepth)
	}
	var err error
	for _, e := range s.Elements {
		if len(e.Name) > 255 {
			return nil, fmt.Errorf("vici: element name of %d bytes exceeds 255", len(e.Name))
		}
		switch e.Kind {
		case KindValue:
			dst = append(dst, elKeyValue, byte(len(e.Name)))
			dst = append(dst, e.Name...)
			if dst, err = appendValue(dst, e.Value); err != nil {
				return nil, fmt.Errorf("vici: %s: %w", e.Name, err)
			}
		case KindList:
			dst = append(dst, elListStart, byte(len(e.Name)))
			dst = append(dst, e.Name...)
			for _, it := range e.List {
				dst = append(dst, elListItem)
				if dst, err = appendValue(dst, it); err != nil {
					return nil, fmt.Errorf("vici: %s: %w", e.Name, err)
				}
			}
			dst = append(dst, elListEnd)
		case KindSection:
			dst = append(dst, elSectionStart, byte(len(e.Name)))
			dst = append(dst, e.Name...)
			if dst, err = appendMessage(dst, e.Section, depth+1); err != nil {
				return nil, err
			}
			dst = append(dst, elSectionEnd)
		default:
			return nil, fmt.Errorf("vici: element %q of unknown kind %d", e.Name, e.Kind)
		}
	}
	return dst, nil
}

func appendValue(dst []byte, v string) ([]byte, error) {
	if len(v) > 0xffff {
		return nil, fmt.Errorf("value of %d bytes exceeds 65535", len(v))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(v)))
	return append(dst, v...), nil
}

// DecodeMessage parses a message. Every length is checked against b and
// nesting is bounded by MaxDepth; an error says what is wrong and at
// which offset.
func DecodeMessage(b []byte) (*Section, error) {
	root := &Section{}
	stack := []*Section{root}
	var list *Element // open list, in the current section
	off := 0
	name := func() (string, error) {
		if off >= len(b) {
			return "", fmt.Errorf("vici: name length missing at offset %d", off)
		}
		n := int(b[off])
		off++
		if off+n > len(b) {
			return "", fmt.Errorf("vici: name of %d bytes at offset %d overruns the message", n, off)
		}
		s := string(b[off : off+n])
		off += n
		return s, nil
	}
	value := func() (string, error) {
		if off+2 > len(b) {
			return "", fmt.Errorf("vici: value length missing at offset %d", off)
		}
		n := int(binary.BigEndian.Uint16(b[off:]))
		off += 2
		if off+n > len(b) {
			return "", fmt.Errorf("vici: value of %d bytes at offset %d overruns the message", n, off)
		}
		s := string(b[off : off+n])
		off += n
		return s, nil
	}
	for off < len(b) {
		t := b[off]
		off++
		cur := stack[len(stack)-1]
		if list != nil && t != elListItem && t != elListEnd {
			return nil, fmt.Errorf("vici: element type %d inside list %q", t, list.Name)
		}
		switch t {
		case elSectionStart:
			n, err := name()
			if err != nil {
				return nil, err
			}
			if len(stack) > MaxDepth {
				return nil, fmt.Errorf("vici: sections nested deeper than %d", MaxDepth)
			}
			stack = append(stack, cur.AddSection(n))
		case elSectionEnd:
			if len(stack) == 1 {
				return nil, fmt.Errorf("vici: section end at offset %d without a section", off-1)
			}
			stack = stack[:len(stack)-1]
		case elKeyValue:
			n, err := name()
			if err != nil {
				return nil, err
			}
			v, err := value()
			if err != nil {
				return nil, err
			}
			cur.Set(n, v)
		case elListStart:
			n, err := name()
			if err != nil {
				return nil, err
			}
			// Nothing else is appended to cur while the list is open, so
			// the pointer stays good.
			cur.Elements = append(cur.Elements, Element{Name: n, Kind: KindList, List: []string{}})
			list = &cur.Elements[len(cur.Elements)-1]
		case elListItem:
			if list == nil {
				return nil, fmt.Errorf("vici: list item at offset %d outside a list", off-1)
			}
			v, err := value()
			if err != nil {
				return nil, err
			}
			list.List = append(list.List, v)
		case elListEnd:
			if list == nil {
				return nil, fmt.Errorf("vici: list end at offset %d outside a list", off-1)
			}
			list = nil
		default:
			return nil, fmt.Errorf("vici: unknown element type %d at offset %d", t, off-1)
		}
	}
	if list != nil {
		return nil, fmt.Errorf("vici: list %q not closed", list.Name)
	}
	if len(stack) != 1 {
		return nil, fmt.Errorf("vici: %d sections not closed", len(stack)-1)
	}
	return root, nil
}

// Packet is one VICI packet: its type, its name (named types) and its
// message (types that carry one; nil is an empty message).
type Packet struct {
	Type PacketType
	Name string
	Msg  *Section
}

// ErrSegmentTooLarge is AppendPacket's error for a packet whose segment
// would exceed MaxSegment.
var ErrSegmentTooLarge = errors.New("vici: segment exceeds 512 KiB")

// AppendPacket appends p as a segment (length prefix included).
func AppendPacket(dst []byte, p Packet) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, byte(p.Type))
	if p.Type.named() {
		if p.Name == "" || len(p.Name) > 255 {
			return nil, fmt.Errorf("vici: %s name %q: 1 to 255 bytes", p.Type, p.Name)
		}
		dst = append(dst, byte(len(p.Name)))
		dst = append(dst, p.Name...)
	}
	if p.Type.hasMessage() {
		var err error
		if dst, err = AppendMessage(dst, p.Msg); err != nil {
			return nil, err
		}
	}
	n := len(dst) - start - 4
	if n > MaxSegment {
		return nil, fmt.Errorf("%w: %s %s of %d bytes", ErrSegmentTooLarge, p.Type, p.Name, n)
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(n))
	return dst, nil
}

// ParsePacket parses a segment's content (without its length prefix).
func ParsePacket(buf []byte) (Packet, error) {
	if len(buf) == 0 {
		return Packet{}, errors.New("vici: empty packet")
	}
	p := Packet{Type: PacketType(buf[0])}
	rest := buf[1:]
	if p.Type > Event {
		return Packet{}, fmt.Errorf("vici: unknown packet type %d", buf[0])
	}
	if p.Type.named() {
		if len(rest) == 0 || rest[0] == 0 || int(rest[0]) > len(rest)-1 {
			return Packet{}, fmt.Errorf("vici: %s: bad name length", p.Type)
		}
		p.Name, rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	}
	if p.Type.hasMessage() {
		msg, err := DecodeMessage(rest)
		if err != nil {
			if p.Name != "" {
				return Packet{}, fmt.Errorf("%s %s: %w", p.Type, p.Name, err)
			}
			return Packet{}, err
		}
		p.Msg = msg
	} else if len(rest) > 0 {
		return Packet{}, fmt.Errorf("vici: %s %s: %d bytes after the packet", p.Type, p.Name, len(rest))
	}
	return p, nil
}

// ReadPacket reads one segment from r and parses it. A segment length of
// 0 or above MaxSegment is an error before anything is allocated for it.
func ReadPacket(r io.Reader) (Packet, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Packet{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxSegment {
		return Packet{}, fmt.Errorf("vici: segment length %d out of 1..%d", n, MaxSegment)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return Packet{}, fmt.Errorf("vici: segment of %d bytes: %w", n, err)
	}
	return ParsePacket(buf)
}

// WritePacket writes p to w in one Write.
func WritePacket(w io.Writer, p Packet) error {
	b, err := AppendPacket(nil, p)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
