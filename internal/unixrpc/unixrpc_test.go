package unixrpc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// item is a request body of the tests' server.
type item struct {
	Name string `json:"name"`
}

func TestFraming(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMessage(&buf, &Message{ID: 3, Op: "hello", Body: json.RawMessage(`{"client":"t"}`)}); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMessage(&buf)
	if err != nil || m.ID != 3 || m.Op != "hello" || m.V != Version {
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
	WriteMessage(&buf, &Message{ID: 1, Op: "item.add", Body: json.RawMessage(`{"name":"x"}`)})
	f.Add(buf.Bytes())
	buf.Reset()
	WriteMessage(&buf, &Message{ID: 1, Error: "item x: not found", Code: CodeNotFound})
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	buf.Reset()
	WriteMessage(&buf, &Message{ID: 1, OK: true, Body: json.RawMessage(`{"more":true}`), Data: []byte{1, 2, 3}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ReadMessage(bytes.NewReader(b))
		if err == nil && m == nil {
			t.Fatal("nil message without error")
		}
		if err == nil && len(b) >= 4 && int(binary.BigEndian.Uint32(b)&^DataFrame) > MaxMessage {
			t.Fatal("oversized frame accepted")
		}
		if err == nil {
			var it item
			Decode(m.Body, &it) // must not panic
		}
	})
}

// TestErrorWire: an error response carries the handler's text unchanged and
// its code beside it, and reads back as both.
func TestErrorWire(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("policy %d: %w", 7, ErrNotFound), `{"v":1,"id":9,"error":"policy 7: not found","code":"not_found"}`},
		{fmt.Errorf("sa spi 0x%08x in: %w", 0xc001, ErrExists), `{"v":1,"id":9,"error":"sa spi 0x0000c001 in: exists","code":"exists"}`},
		{Errorf(CodeBadRequest, "spi.alloc needs both tunnel endpoints"), `{"v":1,"id":9,"error":"spi.alloc needs both tunnel endpoints","code":"bad_request"}`},
		{errors.New("spu 3 is the last SPU in service"), `{"v":1,"id":9,"error":"spu 3 is the last SPU in service","code":"failed"}`},
		{fmt.Errorf("iked: %w", &Error{Code: "from_the_future", Message: "x"}), `{"v":1,"id":9,"error":"iked: x","code":"from_the_future"}`},
	} {
		var buf bytes.Buffer
		if err := WriteMessage(&buf, &Message{ID: 9, Error: c.err.Error(), Code: CodeOf(c.err)}); err != nil {
			t.Fatal(err)
		}
		if got := string(buf.Bytes()[4:]); got != c.want {
			t.Errorf("%v: wire %s, want %s", c.err, got, c.want)
		}
		m, err := ReadMessage(&buf)
		if err != nil || m.Error != c.err.Error() || m.Code != CodeOf(c.err) {
			t.Errorf("%v: read back %+v, %v", c.err, m, err)
		}
	}
	// A peer of an older build sends no code, and reads only the text.
	legacy := `{"v":1,"id":2,"error":"policy 7: exists"}`
	m, err := ReadMessage(bytes.NewReader(append(binary.BigEndian.AppendUint32(nil, uint32(len(legacy))), legacy...)))
	if err != nil || m.Code != "" || m.Error != "policy 7: exists" {
		t.Errorf("error without a code: %+v, %v", m, err)
	}
	var old struct {
		Error string `json:"error"`
	}
	b, _ := json.Marshal(&Message{ID: 2, Error: "policy 7: exists", Code: CodeExists})
	if err := json.Unmarshal(b, &old); err != nil || old.Error != "policy 7: exists" {
		t.Errorf("an older peer reads %q, %v", old.Error, err)
	}
}

func TestErrorIs(t *testing.T) {
	err := fmt.Errorf("spud: sa.del: %w", &Error{Code: CodeNotFound, Message: "sa spi 0x00001000 in: not found"})
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) || errors.Is(err, ErrClosed) {
		t.Errorf("%v: errors.Is by code wrong", err)
	}
	wrapped := Errorf(CodeBadRequest, "bad request body: %w", os.ErrInvalid)
	if !errors.Is(wrapped, ErrBadRequest) || !errors.Is(wrapped, os.ErrInvalid) || CodeOf(wrapped) != CodeBadRequest {
		t.Errorf("%v: Errorf lost its code or its cause", wrapped)
	}
	if wrapped.Error() != "bad request body: invalid argument" {
		t.Errorf("Errorf text %q", wrapped)
	}
	if CodeOf(Errorf("nonsense", "x")) != CodeFailed {
		t.Error("Errorf with an unknown code is not CodeFailed")
	}
}

func startServer(t *testing.T) (*Server, string) {
	t.Helper()
	s := NewServer(nil)
	s.AllowUID = os.Getuid()
	path := filepath.Join(t.TempDir(), "rpc.sock")
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestServerClient(t *testing.T) {
	s, path := startServer(t)
	var mu sync.Mutex
	var added []string
	s.Handle("item.add", func(body json.RawMessage) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		var it item
		if err := Decode(body, &it); err != nil {
			return nil, err
		}
		if it.Name == "" {
			return nil, errors.New("item: no name")
		}
		if len(added) > 0 && added[0] == it.Name {
			return nil, fmt.Errorf("item %s: %w", it.Name, ErrExists)
		}
		added = append(added, it.Name)
		return item{Name: strings.ToUpper(it.Name)}, nil
	})
	s.Handle("item.del", func(body json.RawMessage) (any, error) {
		var it item
		if err := Decode(body, &it); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("item %s: %w", it.Name, ErrNotFound)
	})
	s.Handle("stats", func(json.RawMessage) (any, error) { panic("bug") })

	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	if err := NewServer(nil).Listen(path); err == nil {
		t.Error("a second server took over a live socket")
	}

	c, err := Dial("spud", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var r item
	if err := c.Call("item.add", item{Name: "a"}, &r); err != nil || r.Name != "A" {
		t.Fatalf("item.add: %+v, %v", r, err)
	}
	mu.Lock()
	if len(added) != 1 || added[0] != "a" {
		t.Errorf("handler saw %v", added)
	}
	mu.Unlock()
	// Refusals keep the handler's text, gain the peer's and the op's
	// names, and carry their code across the socket.
	for _, tc := range []struct {
		op   string
		req  any
		text string
		is   error
	}{
		{"item.add", item{Name: "a"}, "spud: item.add: item a: exists", ErrExists},
		{"item.del", item{Name: "b"}, "spud: item.del: item b: not found", ErrNotFound},
		{"item.add", item{}, "spud: item.add: item: no name", ErrFailed},
		{"no.such.op", nil, `spud: no.such.op: unknown operation "no.such.op"`, ErrBadRequest},
		{"item.add", nil, "spud: item.add: missing request body", ErrBadRequest},
		{"item.add", map[string]any{"name": "c", "typo_field": 1}, `spud: item.add: bad request body: json: unknown field "typo_field"`, ErrBadRequest},
		{"stats", nil, "spud: stats: stats: internal error", ErrInternal},
	} {
		err := c.Call(tc.op, tc.req, nil)
		var re *Error
		if err == nil || err.Error() != tc.text || !errors.Is(err, tc.is) || !errors.As(err, &re) || errors.Is(err, ErrClosed) {
			t.Errorf("%s %v: %v, want %q with %s", tc.op, tc.req, err, tc.text, tc.is.(*Error).Code)
		}
	}
	// The connection survived the panic.
	if err := c.Call("item.add", item{Name: "d"}, nil); err != nil {
		t.Errorf("after panic: %v", err)
	}
}

func TestEventsAndLoss(t *testing.T) {
	s, path := startServer(t)
	c, err := Dial("spud", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	other, err := Dial("spud", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	ev, err := c.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	s.Publish("item.soft", item{Name: "x"})
	select {
	case e := <-ev:
		var body item
		json.Unmarshal(e.Body, &body)
		if e.Kind != "item.soft" || body.Name != "x" {
			t.Errorf("event %s %+v", e.Kind, body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	// Unsubscribed connections get nothing; a flood is bounded.
	for i := 0; i < 3*eventQueue; i++ {
		s.Publish("item.flood", item{Name: fmt.Sprint(i)})
	}
	n := 0
	deadline := time.After(10 * time.Second)
	for n < eventQueue {
		select {
		case <-ev:
			n++
		case <-deadline:
			t.Fatalf("only %d events arrived", n)
		}
	}
	// Loss depends on scheduling; boundedness is what matters.
	select {
	case e := <-other.events:
		t.Errorf("unsubscribed connection got %s", e.Kind)
	default:
	}
}

// TestClientSeesConnectionLoss: a server that went away is ErrClosed, not
// a refusal, for calls made after and calls waiting for their reply.
func TestClientSeesConnectionLoss(t *testing.T) {
	s, path := startServer(t)
	block := make(chan struct{})
	s.Handle("slow", func(json.RawMessage) (any, error) { <-block; return nil, nil })
	c, err := Dial("spud", path)
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- c.Call("slow", nil, nil) }()
	time.Sleep(50 * time.Millisecond)
	go func() { time.Sleep(100 * time.Millisecond); close(block) }()
	s.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client did not notice the server closing")
	}
	err = c.Call("hello", nil, nil)
	var re *Error
	if !errors.Is(err, ErrClosed) || errors.As(err, &re) || !strings.Contains(err.Error(), "connection to spud lost") {
		t.Errorf("call on a lost connection: %v", err)
	}
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("call waiting when the connection was lost: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("close of a lost connection: %v", err)
	}
}

// TestClientReadsErrorWithoutCode: a server of an older build sends only
// the text; the client reads it as CodeFailed.
func TestClientReadsErrorWithoutCode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		m, err := ReadMessage(c)
		if err != nil {
			return
		}
		WriteMessage(c, &Message{ID: m.ID, Error: "policy 7: not found"})
		ReadMessage(c) // until the client closes
	}()
	c, err := Dial("spud", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Call("policy.del", item{Name: "7"}, nil)
	var re *Error
	if !errors.As(err, &re) || re.Code != CodeFailed || !errors.Is(err, ErrFailed) || errors.Is(err, ErrNotFound) ||
		err.Error() != "spud: policy.del: policy 7: not found" {
		t.Errorf("error without a code: %v (%+v)", err, re)
	}
}

// A reply too large to send fails its request with CodeTooLarge; the
// connection, and the requests after it, go on. Sent, it broke the stream
// and took every request of the connection with it.
func TestReplyTooLargeFailsOneRequest(t *testing.T) {
	s, path := startServer(t)
	s.Handle("big", func(json.RawMessage) (any, error) { return strings.Repeat("x", MaxMessage), nil })
	s.Handle("small", func(json.RawMessage) (any, error) { return "ok", nil })
	c, err := Dial("test", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got string
	err = c.Call("big", nil, &got)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "exceeds the message limit") {
		t.Fatalf("big: %v", err)
	}
	if err := c.Call("small", nil, &got); err != nil || got != "ok" {
		t.Fatalf("the next request on the connection: %q %v", got, err)
	}
}

// A frame's buffer grows with what arrives, not with the length it
// announces.
func TestReadMessageAllocatesWhatArrives(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxMessage)
	r := bytes.NewReader(append(hdr[:], `{"v":1`...))
	var before, after runtimeMem
	before.read()
	_, err := ReadMessage(r)
	after.read()
	if err == nil {
		t.Fatal("a short frame was read")
	}
	if grew := after.total - before.total; grew > 1<<20 {
		t.Errorf("reading 6 bytes of a frame announced at %d allocated %d bytes", MaxMessage, grew)
	}
}

// The server holds at most MaxConns connections; one over is closed at
// once, and the ones it holds still work.
func TestConnectionLimit(t *testing.T) {
	s, path := startServer(t)
	s.Handle("small", func(json.RawMessage) (any, error) { return "ok", nil })
	var cs []*Client
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for range MaxConns {
		c, err := Dial("test", path)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	// Each is registered once a call is answered.
	var got string
	for _, c := range cs {
		if err := c.Call("small", nil, &got); err != nil {
			t.Fatal(err)
		}
	}
	over, err := Dial("test", path)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	if err := over.Call("small", nil, &got); !errors.Is(err, ErrClosed) {
		t.Errorf("connection %d: %v, want it closed", MaxConns+1, err)
	}
	if err := cs[0].Call("small", nil, &got); err != nil {
		t.Errorf("a held connection after the refusal: %v", err)
	}
}

// The socket is 0600 from the start, whatever the umask.
func TestListenMode(t *testing.T) {
	_, path := startServer(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want 0600 socket", fi.Mode())
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("the listen left %d entries beside the socket", len(ents)-1)
	}
}

type runtimeMem struct{ total uint64 }

func (m *runtimeMem) read() {
	var s runtime.MemStats
	runtime.ReadMemStats(&s)
	m.total = s.TotalAlloc
}

// WriteMessage writes the envelope by hand and the body as it is: the
// bytes are json.Marshal's, and ReadMessage's shortcut past the body reads
// back what a whole decode reads.
func TestFrameIsJSONMarshal(t *testing.T) {
	for _, m := range []*Message{
		{ID: 3, Op: "hello", Body: json.RawMessage(`{"client":"t"}`)},
		{ID: 1 << 40, OK: true, Body: json.RawMessage(`{"sas":[{"name":"a,\"body\":b"}],"more":true}`)},
		{ID: 9, Error: `policy 7 <"x"> & y: not found`, Code: CodeNotFound},
		{Event: "lifetime.soft", Body: json.RawMessage(`[1,2]`)},
		{ID: 2, OK: true},
	} {
		var buf bytes.Buffer
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(m)
		if got := buf.Bytes()[4:]; !bytes.Equal(got, want) {
			t.Errorf("frame\n%s\nwant json.Marshal's\n%s", got, want)
		}
		r, err := ReadMessage(&buf)
		if err != nil {
			t.Fatal(err)
		}
		var whole Message
		if err := json.Unmarshal(want, &whole); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*r, whole) && !(len(r.Body) == 0 && len(whole.Body) == 0) {
			t.Errorf("read %+v, a whole decode reads %+v", *r, whole)
		}
	}
}

// FuzzParseHead: where the envelope's fast decoder takes a head, it reads
// what json.Unmarshal reads from it; what it leaves to json.Unmarshal is
// anything it is not sure of.
func FuzzParseHead(f *testing.F) {
	for _, m := range []Message{
		{V: 1, ID: 7, Op: "child.add"},
		{V: 1, ID: 18446744073709551, OK: true},
		{V: 1, ID: 9, Error: "sa spi 0x0000c001 in: exists <&>", Code: CodeExists},
		{V: 1, Event: "lifetime.soft"},
	} {
		var buf bytes.Buffer
		WriteMessage(&buf, &m)
		f.Add(buf.Bytes()[4:])
	}
	for _, s := range []string{`{"v":1,"id":01}`, `{"v":1,"v":2}`, `{"V":1,"Op":"x"}`, `{"op":"a\"b"}`, `{"op":"é"}`, `{"ok":false,"id":3,}`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast Message
		if !parseHead(b, &fast) {
			return
		}
		var slow Message
		if err := json.Unmarshal(b, &slow); err != nil {
			t.Fatalf("%q: taken by parseHead as %+v, refused by json: %v", b, fast, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: parseHead %+v, json %+v", b, fast, slow)
		}
	})
}

// The envelope of every message WriteMessage writes for the SA API's
// requests and replies is decoded without reflection.
func TestParseHeadTakesWhatWriteMessageWrites(t *testing.T) {
	for _, m := range []Message{
		{ID: 7, Op: "child.add", Body: json.RawMessage(`{"packed":"AA=="}`)},
		{ID: 7, OK: true, Body: json.RawMessage(`{"policy_id":3,"logical":1,"spu":0}`)},
		{ID: 8, Error: "child.add: inbound sa 0x0000c001: exists", Code: CodeExists},
		{Event: "lifetime.soft", Body: json.RawMessage(`{"spi":1}`)},
	} {
		var buf bytes.Buffer
		if err := WriteMessage(&buf, &m); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()[4:]
		head := b
		if i := bytes.Index(b, bodyKey); i > 0 {
			head = append(b[:i:i], '}')
		}
		var got Message
		if !parseHead(head, &got) {
			t.Errorf("%s: left to json", b)
		}
		got.Body = m.Body
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%s: read %+v", b, got)
		}
	}
}

// A frame with data carries its JSON object and its data, each read back
// as written; a data frame whose object's length runs past it is refused.
func TestDataFrame(t *testing.T) {
	for _, data := range [][]byte{{}, {0, '}', '"'}, bytes.Repeat([]byte{0xfe}, initialFrameBuf+1000)} {
		var buf bytes.Buffer
		m := &Message{ID: 7, OK: true, Body: json.RawMessage(`{"next":3}`), Data: data}
		if err := WriteMessage(&buf, m); err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint32(buf.Bytes())&DataFrame == 0 {
			t.Fatal("no DataFrame bit")
		}
		r, err := ReadMessage(&buf)
		if err != nil || r.ID != 7 || !r.OK || string(r.Body) != `{"next":3}` || !bytes.Equal(r.Data, data) || r.Data == nil {
			t.Fatalf("round trip of %d bytes of data: %+v %v", len(data), r, err)
		}
	}
	var buf bytes.Buffer
	WriteMessage(&buf, &Message{ID: 1, Op: "x"})
	if r, err := ReadMessage(&buf); err != nil || r.Data != nil {
		t.Fatalf("a frame of JSON only has data %v (%v)", r.Data, err)
	}
	bad := []byte{0x80, 0, 0, 8, 0, 0, 0, 9, '{', '}', 0, 0}
	if _, err := ReadMessage(bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "runs past it") {
		t.Errorf("a JSON object longer than its frame: %v", err)
	}
}

// A handler's WithData reaches CallData; a reply whose data would exceed a
// frame fails alone, and Call ignores data.
func TestCallData(t *testing.T) {
	s, path := startServer(t)
	s.Handle("page", func(json.RawMessage) (any, error) {
		return WithData{Body: map[string]int{"next": 9}, Data: []byte("packed bytes")}, nil
	})
	s.Handle("empty", func(json.RawMessage) (any, error) { return WithData{}, nil })
	s.Handle("huge", func(json.RawMessage) (any, error) { return WithData{Data: make([]byte, MaxMessage)}, nil })
	c, err := Dial("test", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var r struct{ Next int }
	data, err := c.CallData("page", nil, &r)
	if err != nil || string(data) != "packed bytes" || r.Next != 9 {
		t.Fatalf("page: %q %+v %v", data, r, err)
	}
	if data, err := c.CallData("empty", nil, nil); err != nil || data == nil || len(data) != 0 {
		t.Fatalf("empty: %v %v", data, err)
	}
	if _, err := c.CallData("huge", nil, nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge: %v", err)
	}
	if err := c.Call("page", nil, &r); err != nil {
		t.Fatalf("page by Call after a refused one: %v", err)
	}
}
