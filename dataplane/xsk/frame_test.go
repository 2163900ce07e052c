package xsk

import (
	"bytes"
	"testing"
)

func TestFrameHelpers(t *testing.T) {
	f := Frame{Buf: make([]byte, 2048), Off: 256, Len: 0}
	if !f.SetPacket(256, []byte("inner")) || string(f.Packet()) != "inner" {
		t.Fatalf("SetPacket: %q", f.Packet())
	}
	copy(f.Buf[248:256], "METADATA")
	if string(f.Meta(8)) != "METADATA" || f.Meta(257) != nil || f.Meta(-1) != nil {
		t.Errorf("Meta: %q", f.Meta(8))
	}
	h := f.Prepend(6)
	if h == nil || f.Off != 250 || f.Len != 11 {
		t.Fatalf("Prepend: off %d len %d", f.Off, f.Len)
	}
	copy(h, "outer:")
	if string(f.Packet()) != "outer:inner" {
		t.Errorf("after Prepend: %q", f.Packet())
	}
	if f.Prepend(251) != nil || f.Off != 250 {
		t.Errorf("Prepend past the chunk start changed the frame")
	}
	if !f.Trim(6) || string(f.Packet()) != "inner" || f.Trim(6) || f.Trim(-1) {
		t.Errorf("Trim: %q", f.Packet())
	}
	if f.Headroom() != 256 || f.Tailroom() != 2048-256-5 {
		t.Errorf("room: %d %d", f.Headroom(), f.Tailroom())
	}
	if f.SetPacket(2047, []byte("xy")) || f.SetPacket(-1, nil) || f.SetPacket(2049, nil) {
		t.Errorf("SetPacket accepted a packet outside the chunk")
	}
	if !f.SetPacket(2046, []byte("xy")) || !bytes.Equal(f.Packet(), []byte("xy")) {
		t.Errorf("SetPacket at the end")
	}
}
