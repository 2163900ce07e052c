package strongswan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"
)

// VICI is charon's control protocol (src/libcharon/plugins/vici/README.md
// in strongSwan): 32-bit length-prefixed segments carrying typed packets,
// whose messages are trees of sections, key/values and lists. The harness
// speaks it directly rather than parsing `swanctl --list-sas --raw`, whose
// output does not quote values: an identity such as "CN=a b" cannot be
// told from the next key.

// Packet types.
const (
	viciCmdRequest    = 0
	viciCmdResponse   = 1
	viciCmdUnknown    = 2
	viciEventRegister = 3
	viciEventUnreg    = 4
	viciEventConfirm  = 5
	viciEventUnknown  = 6
	viciEvent         = 7
)

// Message element types.
const (
	elSectionStart = 1
	elSectionEnd   = 2
	elKeyValue     = 3
	elListStart    = 4
	elListItem     = 5
	elListEnd      = 6
)

// viciMaxSegment is the protocol's limit on a segment (512 KiB).
const viciMaxSegment = 512 * 1024

// viciMaxDepth bounds section nesting; charon's deepest message (list-sa
// with child SAs) nests four levels.
const viciMaxDepth = 32

// Kind tells what a Section element is.
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

// Set appends a key/value (request building).
func (s *Section) Set(key, value string) *Section {
	s.Elements = append(s.Elements, Element{Name: key, Kind: KindValue, Value: value})
	return s
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

// encodeMessage appends the wire form of s.
func encodeMessage(dst []byte, s *Section) ([]byte, error) {
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
			if e.Section != nil {
				if dst, err = encodeMessage(dst, e.Section); err != nil {
					return nil, err
				}
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

// decodeMessage parses a message. Everything it is given comes from a
// socket, so every length is checked and nesting is bounded.
func decodeMessage(b []byte) (*Section, error) {
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
			if len(stack) > viciMaxDepth {
				return nil, fmt.Errorf("vici: sections nested deeper than %d", viciMaxDepth)
			}
			sub := &Section{}
			cur.Elements = append(cur.Elements, Element{Name: n, Kind: KindSection, Section: sub})
			stack = append(stack, sub)
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
			cur.Elements = append(cur.Elements, Element{Name: n, Kind: KindValue, Value: v})
		case elListStart:
			n, err := name()
			if err != nil {
				return nil, err
			}
			cur.Elements = append(cur.Elements, Element{Name: n, Kind: KindList})
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

// viciConn is one client connection. The protocol allows one active
// command per connection; a viciConn is not safe for concurrent use.
type viciConn struct {
	c net.Conn
}

// dialVICI connects to charon's socket. charon listens with a backlog
// of 3, so concurrent clients (many initiates in flight) see EAGAIN
// until its accept thread catches up: retry that until timeout.
func dialVICI(path string, timeout time.Duration) (*viciConn, error) {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		c, err := net.DialTimeout("unix", path, time.Until(deadline))
		if err == nil {
			return &viciConn{c: c}, nil
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("vici: %w", err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Millisecond)
	}
}

func (v *viciConn) Close() error { return v.c.Close() }

func (v *viciConn) writePacket(typ byte, name string, msg *Section) error {
	pkt := []byte{0, 0, 0, 0, typ}
	if name != "" {
		if len(name) > 255 {
			return fmt.Errorf("vici: packet name %q too long", name)
		}
		pkt = append(pkt, byte(len(name)))
		pkt = append(pkt, name...)
	}
	if msg != nil {
		var err error
		if pkt, err = encodeMessage(pkt, msg); err != nil {
			return err
		}
	}
	if len(pkt)-4 > viciMaxSegment {
		return fmt.Errorf("vici: %s request of %d bytes exceeds the segment limit", name, len(pkt)-4)
	}
	binary.BigEndian.PutUint32(pkt, uint32(len(pkt)-4))
	_, err := v.c.Write(pkt)
	return err
}

// readPacket returns a packet's type, its name (named types) and its
// message (types that carry one).
func (v *viciConn) readPacket() (byte, string, *Section, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(v.c, hdr[:]); err != nil {
		return 0, "", nil, fmt.Errorf("vici: read: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > viciMaxSegment {
		return 0, "", nil, fmt.Errorf("vici: segment length %d out of 1..%d", n, viciMaxSegment)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(v.c, buf); err != nil {
		return 0, "", nil, fmt.Errorf("vici: read: %w", err)
	}
	return parsePacket(buf)
}

// parsePacket splits a segment into type, name and message.
func parsePacket(buf []byte) (byte, string, *Section, error) {
	if len(buf) == 0 {
		return 0, "", nil, errors.New("vici: empty packet")
	}
	typ, rest := buf[0], buf[1:]
	var name string
	switch typ {
	case viciCmdRequest, viciEventRegister, viciEventUnreg, viciEvent:
		if len(rest) == 0 || int(rest[0]) > len(rest)-1 {
			return 0, "", nil, fmt.Errorf("vici: packet type %d: bad name length", typ)
		}
		name, rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	case viciCmdResponse, viciCmdUnknown, viciEventConfirm, viciEventUnknown:
	default:
		return 0, "", nil, fmt.Errorf("vici: unknown packet type %d", typ)
	}
	switch typ {
	case viciCmdRequest, viciCmdResponse, viciEvent:
		msg, err := decodeMessage(rest)
		if err != nil {
			return 0, "", nil, err
		}
		return typ, name, msg, nil
	}
	return typ, name, nil, nil
}

// call runs command cmd. With event set it registers for that event
// first, collects every event until the response and unregisters; events
// may come interleaved with the response, as the protocol allows.
func (v *viciConn) call(cmd string, req *Section, event string, deadline time.Time) (*Section, []*Section, error) {
	if err := v.c.SetDeadline(deadline); err != nil {
		return nil, nil, err
	}
	var events []*Section
	if event != "" {
		if err := v.writePacket(viciEventRegister, event, nil); err != nil {
			return nil, nil, err
		}
		if err := v.await(viciEventConfirm, event, &events); err != nil {
			return nil, nil, fmt.Errorf("vici: register %s: %w", event, err)
		}
	}
	if req == nil {
		req = &Section{}
	}
	if err := v.writePacket(viciCmdRequest, cmd, req); err != nil {
		return nil, nil, err
	}
	var resp *Section
	for resp == nil {
		typ, name, msg, err := v.readPacket()
		if err != nil {
			return nil, events, fmt.Errorf("vici: %s: %w", cmd, err)
		}
		switch typ {
		case viciEvent:
			if name == event {
				events = append(events, msg)
			}
		case viciCmdResponse:
			resp = msg
		case viciCmdUnknown:
			return nil, events, fmt.Errorf("vici: command %s unknown to charon", cmd)
		default:
			return nil, events, fmt.Errorf("vici: %s: unexpected packet type %d", cmd, typ)
		}
	}
	if event != "" {
		if err := v.writePacket(viciEventUnreg, event, nil); err != nil {
			return resp, events, err
		}
		if err := v.await(viciEventConfirm, event, &events); err != nil {
			return resp, events, fmt.Errorf("vici: unregister %s: %w", event, err)
		}
	}
	return resp, events, nil
}

// await reads until a packet of type want, keeping events named event.
func (v *viciConn) await(want byte, event string, events *[]*Section) error {
	for {
		typ, name, msg, err := v.readPacket()
		if err != nil {
			return err
		}
		switch {
		case typ == want:
			return nil
		case typ == viciEvent:
			if name == event {
				*events = append(*events, msg)
			}
		case typ == viciEventUnknown:
			return errors.New("event unknown to charon")
		default:
			return fmt.Errorf("unexpected packet type %d", typ)
		}
	}
}
