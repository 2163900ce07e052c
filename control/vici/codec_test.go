package vici

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// readmeExample is the encoding example of strongSwan's VICI README.
var readmeExample = []byte{
	3, 4, 'k', 'e', 'y', '1', 0, 6, 'v', 'a', 'l', 'u', 'e', '1',
	1, 8, 's', 'e', 'c', 't', 'i', 'o', 'n', '1',
	1, 11, 's', 'u', 'b', '-', 's', 'e', 'c', 't', 'i', 'o', 'n',
	3, 4, 'k', 'e', 'y', '2', 0, 6, 'v', 'a', 'l', 'u', 'e', '2',
	2,
	4, 5, 'l', 'i', 's', 't', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '2',
	6,
	2,
}

func TestDecodeReadme(t *testing.T) {
	s, err := DecodeMessage(readmeExample)
	if err != nil {
		t.Fatal(err)
	}
	if s.Get("key1") != "value1" || s.Sub("section1").Sub("sub-section").Get("key2") != "value2" {
		t.Errorf("decoded %s", s)
	}
	if l := s.Sub("section1").List("list1"); !reflect.DeepEqual(l, []string{"item1", "item2"}) {
		t.Errorf("list1 = %q", l)
	}
	enc, err := AppendMessage(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, readmeExample) {
		t.Errorf("re-encoded\n%v\nwant\n%v", enc, readmeExample)
	}
}

func TestRoundTrip(t *testing.T) {
	m := (&Section{}).Set("empty", "").Set("bin", "\x00\xff\n").SetList("none", []string{}).SetList("l", []string{"a", ""})
	sub := m.AddSection("s")
	sub.AddSection("deeper").Set("k", strings.Repeat("v", 0xffff))
	for _, typ := range []PacketType{CmdRequest, CmdResponse, Event} {
		p := Packet{Type: typ, Msg: m}
		if typ.named() {
			p.Name = "list-sa"
		}
		b, err := AppendPacket(nil, p)
		if err != nil {
			t.Fatal(err)
		}
		if n := binary.BigEndian.Uint32(b); int(n) != len(b)-4 {
			t.Fatalf("length prefix %d, segment %d", n, len(b)-4)
		}
		got, err := ReadPacket(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if got.Type != typ || got.Name != p.Name || !reflect.DeepEqual(got.Msg, m) {
			t.Errorf("%s: round trip changed the packet", typ)
		}
	}
	for _, typ := range []PacketType{CmdUnknown, EventConfirm, EventUnknown} {
		b, _ := AppendPacket(nil, Packet{Type: typ})
		if got, err := ReadPacket(bytes.NewReader(b)); err != nil || got.Type != typ || got.Msg != nil {
			t.Errorf("%s: %+v %v", typ, got, err)
		}
	}
}

func TestEncodeLimits(t *testing.T) {
	long := strings.Repeat("n", 256)
	for name, m := range map[string]*Section{
		"long name":  (&Section{}).Set(long, "v"),
		"long value": (&Section{}).Set("k", strings.Repeat("v", 0x10000)),
		"long item":  (&Section{}).SetList("k", []string{strings.Repeat("v", 0x10000)}),
		"no kind":    {Elements: []Element{{Name: "x"}}},
	} {
		if _, err := AppendMessage(nil, m); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	deep := &Section{}
	for s, i := deep, 0; i <= MaxDepth+1; i++ {
		s = s.AddSection("d")
	}
	if _, err := AppendMessage(nil, deep); err == nil {
		t.Error("too deep: no error")
	}
	// A message above 512 KiB is refused, not sent to be refused.
	big := &Section{}
	for i := 0; i < 9; i++ {
		big.Set("k", strings.Repeat("v", 0xffff))
	}
	if _, err := AppendPacket(nil, Packet{Type: CmdResponse, Msg: big}); !errors.Is(err, ErrSegmentTooLarge) {
		t.Errorf("big: %v", err)
	}
	if _, err := AppendPacket(nil, Packet{Type: Event, Msg: big}); err == nil {
		t.Error("event without a name: no error")
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"unclosed section": {1, 1, 'a'},
		"stray end":        {2},
		"unclosed list":    {4, 1, 'l'},
		"item outside":     {5, 0, 0},
		"list end outside": {6},
		"kv in list":       {4, 1, 'l', 3, 1, 'k', 0, 0, 6},
		"section in list":  {4, 1, 'l', 1, 1, 's', 2, 6},
		"name overrun":     {3, 9, 'k'},
		"value overrun":    {3, 1, 'k', 0, 9, 'v'},
		"no value length":  {3, 1, 'k', 0},
		"unknown type":     {9},
		"no name length":   {1},
		"too deep":         bytes.Repeat([]byte{1, 0}, MaxDepth+2),
	} {
		if _, err := DecodeMessage(b); err == nil {
			t.Errorf("%s: no error", name)
		} else if !strings.HasPrefix(err.Error(), "vici: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParsePacket(t *testing.T) {
	p, err := ParsePacket(append([]byte{byte(Event), 7, 'l', 'i', 's', 't', '-', 's', 'a'}, readmeExample...))
	if err != nil || p.Type != Event || p.Name != "list-sa" || p.Msg.Get("key1") != "value1" {
		t.Errorf("event: %+v %v", p, err)
	}
	if p, err := ParsePacket([]byte{byte(EventConfirm)}); err != nil || p.Type != EventConfirm || p.Msg != nil {
		t.Errorf("confirm: %+v %v", p, err)
	}
	for _, b := range [][]byte{
		{}, {byte(Event)}, {byte(Event), 5, 'a'}, {42}, {byte(CmdResponse), 2},
		{byte(EventRegister), 0},                 // empty name
		{byte(EventConfirm), 1},                  // trailing bytes
		{byte(CmdRequest), 1, 'x', 3, 1, 'k', 0}, // bad message
	} {
		if _, err := ParsePacket(b); err == nil {
			t.Errorf("%v: no error", b)
		}
	}
}

func TestReadPacketLimits(t *testing.T) {
	for _, n := range []uint32{0, MaxSegment + 1, 1 << 31} {
		b := binary.BigEndian.AppendUint32(nil, n)
		if _, err := ReadPacket(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "segment length") {
			t.Errorf("length %d: %v", n, err)
		}
	}
	// A segment cut short.
	b := binary.BigEndian.AppendUint32(nil, 10)
	if _, err := ReadPacket(bytes.NewReader(append(b, 1, 2))); err == nil {
		t.Error("short segment: no error")
	}
}

// FuzzParsePacket feeds the server's parser what a client could send:
// it must never panic, and what it accepts must encode back to an
// equal packet.
func FuzzParsePacket(f *testing.F) {
	f.Add(append([]byte{byte(Event), 7, 'l', 'i', 's', 't', '-', 's', 'a'}, readmeExample...))
	f.Add(append([]byte{byte(CmdRequest), 8, 'l', 'i', 's', 't', '-', 's', 'a', 's'}, readmeExample...))
	f.Add([]byte{byte(EventRegister), 10, 'i', 'k', 'e', '-', 'u', 'p', 'd', 'o', 'w', 'n'})
	f.Add([]byte{byte(CmdResponse)})
	f.Add([]byte{byte(EventConfirm)})
	f.Add([]byte{byte(CmdRequest), 1, 'x', 4, 1, 'l', 5, 0, 1, 'x', 6, 1, 0, 1, 0, 2, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > MaxSegment {
			return
		}
		p, err := ParsePacket(b)
		if err != nil {
			return
		}
		enc, err := AppendPacket(nil, p)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		p2, err := ParsePacket(enc[4:])
		if err != nil {
			t.Fatalf("parse of re-encoding: %v", err)
		}
		if !reflect.DeepEqual(p, p2) {
			t.Fatalf("round trip changed the packet:\n%+v\n%+v", p, p2)
		}
	})
}
