package api

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testSA() SA {
	return SA{SPI: 0xc0010001, Dir: Out, Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2"),
		Mode: Tunnel, Suite: ipsec.AES128GCM16, EncKey: make([]byte, 20), ReqID: 1}
}

func TestSAValidate(t *testing.T) {
	sa := testSA()
	if err := sa.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*SA){
		"reserved spi":  func(s *SA) { s.SPI = 7 },
		"dir":           func(s *SA) { s.Dir = "sideways" },
		"key length":    func(s *SA) { s.EncKey = make([]byte, 16) },
		"suite":         func(s *SA) { s.Suite = ipsec.SuiteInvalid },
		"integ key":     func(s *SA) { s.Suite = ipsec.AES128SHA256; s.EncKey = make([]byte, 16) },
		"family":        func(s *SA) { s.Remote = netip.MustParseAddr("2001:db8::2") },
		"encap port":    func(s *SA) { s.Encap = &Encap{LocalPort: 4500} },
		"mode":          func(s *SA) { s.Mode = "" },
		"replay window": func(s *SA) { s.ReplayWindow = 1 << 20 },
	} {
		s := testSA()
		mut(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: invalid SA accepted", name)
		} else if !strings.Contains(err.Error(), "0x") {
			t.Errorf("%s: error %q does not name the SA", name, err)
		}
	}
	r := sa.Redacted()
	if len(r.EncKey) != 0 || len(sa.EncKey) == 0 {
		t.Error("Redacted kept the key or changed the original")
	}
}

func TestFraming(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, &Message{ID: 3, Op: OpHello, Body: json.RawMessage(`{"client":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMessage(&buf)
	if err != nil || m.ID != 3 || m.Op != OpHello || m.V != Version {
		t.Fatalf("round trip: %+v, %v", m, err)
	}
	for name, frame := range map[string][]byte{
		"zero length": {0, 0, 0, 0},
		"huge length": {0x7f, 0, 0, 0},
		"truncated":   {0, 0, 0, 10, '{'},
		"not json":    append([]byte{0, 0, 0, 3}, "abc"...),
	} {
		if _, err := ReadMessage(bytes.NewReader(frame)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzReadMessage(f *testing.F) {
	var buf bytes.Buffer
	WriteMessage(&buf, &Message{ID: 1, Op: OpSAAdd, Body: json.RawMessage(`{"spi":4096}`)})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b))
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
		if err == nil && len(b) >= 4 && int(binary.BigEndian.Uint32(b)) > MaxMessage {
			t.Fatal("oversized frame accepted")
		}
		if err == nil {
			var sa SA
			Decode(m.Body, &sa) // must not panic
		}
	})
}

func startServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := NewServer(nil)
	s.AllowUID = os.Getuid()
	path := filepath.Join(t.TempDir(), "spud.sock")
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestServerClient(t *testing.T) {
	s, path := startServer(t)
	var added []SA
	s.Handle(OpSAAdd, func(body json.RawMessage) (any, error) {
		var sa SA
		if err := Decode(body, &sa); err != nil {
			return nil, err
		}
		if err := sa.Validate(); err != nil {
			return nil, err
		}
		added = append(added, sa)
		return nil, nil
	})
	s.Handle(OpHello, func(json.RawMessage) (any, error) {
		return HelloReply{Version: Version, Server: "test", Logical: 256}, nil
	})
	s.Handle(OpStats, func(json.RawMessage) (any, error) { panic("bug") })

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := NewServer(nil).Listen(path); err == nil {
		t.Error("a second server took over a live socket")
	}

	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, err := c.Hello("test")
	if err != nil || h.Logical != 256 {
		t.Fatalf("hello: %+v %v", h, err)
	}
	sa := testSA()
	if err := c.AddSA(&sa); err != nil {
		t.Fatal(err)
	}
	sa.EncKey = sa.EncKey[:3]
	err = c.AddSA(&sa)
	var apiErr *Error
	if !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "encryption key") {
		t.Errorf("bad SA: %v", err)
	}
	if len(added) != 1 || added[0].SPI != 0xc0010001 {
		t.Errorf("handler saw %v", added)
	}
	if err := c.Call("no.such.op", nil, nil); err == nil || !strings.Contains(err.Error(), "unknown operation") {
		t.Errorf("unknown op: %v", err)
	}
	if err := c.Call(OpSAAdd, map[string]any{"spi": 4096, "typo_field": 1}, nil); err == nil || !strings.Contains(err.Error(), "typo_field") {
		t.Errorf("unknown field: %v", err)
	}
	if _, err := c.Stats(); err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("panicking handler: %v", err)
	}
	// The connection survived the panic.
	if _, err := c.Hello("again"); err != nil {
		t.Errorf("after panic: %v", err)
	}
}

func TestEventsAndLoss(t *testing.T) {
	s, path := startServer(t)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ev, err := c.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	s.Publish(EventSoftLifetime, SAEvent{SAID: SAID{SPI: 0x1234, Dir: Out}, Bytes: 99})
	select {
	case e := <-ev:
		var body SAEvent
		json.Unmarshal(e.Body, &body)
		if e.Kind != EventSoftLifetime || body.SPI != 0x1234 || body.Bytes != 99 {
			t.Errorf("event %s %+v", e.Kind, body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// Unsubscribed connections get nothing; a flood is bounded.
	for i := 0; i < 3*eventQueue; i++ {
		s.Publish(EventAcquire, Acquire{PolicyID: uint32(i)})
	}
	n, lost := 0, false
	deadline := time.After(10 * time.Second)
	for n < eventQueue {
		select {
		case e := <-ev:
			n++
			if e.Kind == EventLost {
				lost = true
			}
		case <-deadline:
			t.Fatalf("only %d events arrived", n)
		}
	}
	_ = lost // loss depends on scheduling; boundedness is what matters
	select {
	case e := <-other.events:
		t.Errorf("unsubscribed connection got %s", e.Kind)
	default:
	}
}

func TestClientSeesConnectionLoss(t *testing.T) {
	s, path := startServer(t)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the server closing")
	}
	if _, err := c.Hello("x"); err == nil {
		t.Error("call on a lost connection succeeded")
	}
}
