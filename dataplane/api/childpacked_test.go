package api

import (
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
)

// Every field of a child.add comes back from the packed encoding as it
// went in, nil apart from empty, keys included; a request cut short, with
// a byte more in an entry or after it, is an error naming the part, never
// a panic. A field added to SA, Policy or ChildAdd fails the field counts
// until the encoding has it.
func TestPackedChildAddCoversEveryField(t *testing.T) {
	for typ, n := range map[reflect.Type]int{reflect.TypeFor[SA](): 17, reflect.TypeFor[Policy](): 10, reflect.TypeFor[ChildAdd](): 4} {
		if typ.NumField() != n {
			t.Errorf("%s has %d fields, the packed child.add %d: add the new ones to it", typ, typ.NumField(), n)
		}
	}
	var full ChildAdd
	fillAll(reflect.ValueOf(&full).Elem(), 1)
	partial := *validChild()
	partial.Out, partial.Policy = nil, nil
	partial.In.LocalTS, partial.In.IntegKey = []ipsec.Selector{}, []byte{}
	empty := *validChild()
	empty.Policy.Interfaces = []string{}
	for name, r := range map[string]*ChildAdd{"every field": &full, "in only": &partial, "empty lists": &empty} {
		b := AppendPackedChildAdd(nil, r)
		got, err := DecodePackedChildAdd(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("%s: packed and back\n%+v\nwant\n%+v", name, got, r)
		}
		for i := range len(b) {
			if _, err := DecodePackedChildAdd(b[:i]); err == nil {
				t.Errorf("%s: cut to %d of %d bytes: no error", name, i, len(b))
			}
		}
		if _, err := DecodePackedChildAdd(append(b, 0)); err == nil || !strings.Contains(err.Error(), "1 bytes after the request") {
			t.Errorf("%s: a byte after the request: %v", name, err)
		}
	}
	// A field more in the inbound SA's entry (a newer client's).
	b := AppendPackedChildAdd(nil, &partial)
	longer := append([]byte{b[0], b[1] + 1}, b[2:2+int(b[1])]...)
	longer = append(append(longer, 7), b[2+int(b[1]):]...)
	if _, err := DecodePackedChildAdd(longer); err == nil || !strings.Contains(err.Error(), "inbound sa: 1 bytes after the fields this spud knows") {
		t.Errorf("a field more in the inbound SA: %v", err)
	}
}

// PackedBody takes what json.Marshal makes of a PackedRequest, and leaves
// any other body to JSON.
func TestPackedBody(t *testing.T) {
	want := AppendPackedChildAdd(nil, validChild())
	body, _ := json.Marshal(PackedRequest{Packed: want})
	if b, ok, err := PackedBody(body); !ok || err != nil || string(b) != string(want) {
		t.Errorf("PackedBody(%s): %x %v %v", body, b, ok, err)
	}
	if _, ok, err := PackedBody([]byte(`{"packed":"!!"}`)); !ok || err == nil {
		t.Errorf("bad base64: ok %v, %v", ok, err)
	}
	for _, other := range []string{`{"logical":1,"in":{}}`, `{"packed":""`, `{"packed": "AA=="}`, `"}`} {
		if _, ok, _ := PackedBody([]byte(other)); ok {
			t.Errorf("PackedBody(%s) took it", other)
		}
	}
}

// In front of a spud older than the packed child.add (it refuses the
// field), AddChild sends the request again in JSON and sends JSON from
// then on; a spud that takes it gets it packed.
func TestAddChildPackedFallback(t *testing.T) {
	for _, older := range []bool{false, true} {
		s, path := startServer(t)
		var mu sync.Mutex
		var bodies []string
		s.Handle(OpChildAdd, func(body json.RawMessage) (any, error) {
			mu.Lock()
			bodies = append(bodies, string(body))
			mu.Unlock()
			var req ChildAdd
			if b, ok, err := PackedBody(body); ok && !older {
				r, err2 := DecodePackedChildAdd(b)
				if err != nil || err2 != nil {
					return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%v %v", err, err2)
				}
				req = *r
			} else if err := unixrpc.Decode(body, &req); err != nil {
				return nil, err
			}
			return ChildAddReply{PolicyID: req.In.ReqID}, nil
		})
		c, err := Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if r, err := c.AddChild(validChild()); err != nil || r.PolicyID != 5 {
				t.Fatalf("older %v: %+v %v", older, r, err)
			}
		}
		c.Close()
		packedSent := 0
		for _, b := range bodies {
			if strings.HasPrefix(b, `{"packed":`) {
				packedSent++
			}
		}
		if want := map[bool][2]int{false: {2, 2}, true: {3, 1}}[older]; len(bodies) != want[0] || packedSent != want[1] {
			t.Errorf("older %v: %d requests, %d packed; want %d, %d", older, len(bodies), packedSent, want[0], want[1])
		}
	}
}
