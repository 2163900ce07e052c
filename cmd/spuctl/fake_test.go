package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/internal/version"
	"github.com/spugate/spugate/ipsec"
)

// fill sets every field of v (a pointer) to a value that is not zero, so
// that the JSON of a listing has every field, omitempty ones too: strings
// "x", numbers 7, one entry in each list and map, addresses, times and
// suites that marshal.
func fill(v any) {
	fillValue(reflect.ValueOf(v).Elem())
}

var (
	addrType     = reflect.TypeFor[netip.Addr]()
	addrPortType = reflect.TypeFor[netip.AddrPort]()
	timeType     = reflect.TypeFor[time.Time]()
	suiteType    = reflect.TypeFor[ipsec.Suite]()
)

func fillValue(v reflect.Value) {
	switch v.Type() {
	case addrType:
		v.Set(reflect.ValueOf(netip.MustParseAddr("198.18.0.1")))
		return
	case addrPortType:
		v.Set(reflect.ValueOf(netip.MustParseAddrPort("198.18.0.1:500")))
		return
	case timeType:
		v.Set(reflect.ValueOf(time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)))
		return
	case suiteType:
		v.Set(reflect.ValueOf(ipsec.AES128GCM16))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fillValue(p.Elem())
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillValue(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillValue(k)
		fillValue(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fillValue(v.Field(i))
			}
		}
	}
}

// filled returns a T with every field set.
func filled[T any]() T {
	var v T
	fill(&v)
	return v
}

// fakeSpud is an SA API server at a socket in a test's folder, answering
// the listing operations with filled entries; fakeIked is the same for
// iked's control socket. Each answers version with this build's Info.
func fakeSpud(t *testing.T) string {
	t.Helper()
	s := fakeServer(t, "spud.sock")
	s.Handle(api.OpHello, func(json.RawMessage) (any, error) {
		h := filled[api.HelloReply]()
		h.Version = api.Version
		return h, nil
	})
	s.Handle(api.OpSADump, func(json.RawMessage) (any, error) {
		sa := filled[api.SAState]()
		sa.Dir = api.Out
		return api.SADump{SAs: []api.SAState{sa}}, nil
	})
	s.Handle(api.OpPolicyDump, func(json.RawMessage) (any, error) {
		p := filled[api.PolicyState]()
		p.Action = api.Protect
		return api.PolicyDump{Policies: []api.PolicyState{p}}, nil
	})
	s.Handle(api.OpStats, func(json.RawMessage) (any, error) { return filled[api.Stats](), nil })
	s.Handle(api.OpSPUList, func(json.RawMessage) (any, error) { return filled[api.SPUList](), nil })
	return serve(t, s, "spud.sock")
}

func fakeIked(t *testing.T) string {
	t.Helper()
	s := fakeServer(t, "iked.sock")
	s.Handle(ikectl.OpConns, func(json.RawMessage) (any, error) {
		return ikectl.Conns{Conns: []ikectl.Conn{filled[ikectl.Conn]()}}, nil
	})
	s.Handle(ikectl.OpSAs, func(json.RawMessage) (any, error) {
		sa := filled[ikectl.IKESA]()
		sa.Conn = "tun"
		return ikectl.SAs{IKESAs: []ikectl.IKESA{sa}}, nil
	})
	s.Handle(ikectl.OpLoadStatus, func(json.RawMessage) (any, error) { return filled[ikectl.LoadResult](), nil })
	s.Handle(ikectl.OpStats, func(json.RawMessage) (any, error) { return filled[ikectl.Stats](), nil })
	return serve(t, s, "iked.sock")
}

func fakeServer(t *testing.T, _ string) *unixrpc.Server {
	s := unixrpc.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.AllowUID = os.Getuid()
	s.Handle(api.OpVersion, func(json.RawMessage) (any, error) { return version.Get(), nil })
	level := "info"
	s.Handle(api.OpLogLevel, func(m json.RawMessage) (any, error) {
		var l api.LogLevel
		if err := json.Unmarshal(m, &l); err != nil {
			return nil, err
		}
		if l.Level != "" {
			level = l.Level
		}
		return api.LogLevel{Level: level}, nil
	})
	return s
}

func serve(t *testing.T, s *unixrpc.Server, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return path
}

// spuctl runs spuctl's command line in the test, its exit status, stdout
// and stderr returned.
func spuctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// jsonPaths collects the fields of a decoded JSON value as dotted paths,
// a list's entries as "[]": {"a":{"b":1},"c":[{"d":2}]} gives a, a.b, c,
// c[].d. The paths under a documented map (maps, by its path) are not
// descended into: their keys are data (counter names), not fields.
func jsonPaths(v any, prefix string, maps map[string]bool, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if maps[prefix] {
			return
		}
		for k, e := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			jsonPaths(e, p, maps, out)
		}
	case []any:
		for _, e := range x {
			jsonPaths(e, prefix+"[]", maps, out)
		}
	}
}

func sortedKeys(m map[string]bool) []string {
	l := make([]string, 0, len(m))
	for k := range m {
		l = append(l, k)
	}
	sort.Strings(l)
	return l
}

// docSchemas reads the JSON schemas of docs/operations.md's "## spuctl"
// section: under each "#### `spuctl CMD -o json`" heading, a table whose
// rows start with a field's path in backquotes and its type; a type that
// starts with "map" is an object whose keys are data.
func docSchemas(t *testing.T) map[string]docSchema {
	t.Helper()
	b, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n## spuctl")
	if i < 0 {
		t.Fatal("docs/operations.md has no \"## spuctl\" section")
	}
	text = text[i+1:]
	if j := strings.Index(text[3:], "\n## "); j >= 0 {
		text = text[:j+3]
	}
	schemas := map[string]docSchema{}
	var cur string
	for line := range strings.SplitSeq(text, "\n") {
		if h, ok := strings.CutPrefix(line, "#### `spuctl "); ok {
			cur, _, _ = strings.Cut(h, " -o json`")
			schemas[cur] = docSchema{fields: map[string]bool{}, maps: map[string]bool{}, optional: map[string]bool{}}
			continue
		}
		if cur == "" || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		field := strings.Trim(strings.TrimSpace(cells[1]), "`")
		schemas[cur].fields[field] = true
		typ := strings.TrimSpace(cells[2])
		if strings.HasPrefix(typ, "map") {
			schemas[cur].maps[field] = true
		}
		if strings.Contains(typ, "optional") {
			schemas[cur].optional[field] = true
		}
	}
	return schemas
}

// docSchema is one command's documented JSON fields.
type docSchema struct {
	fields map[string]bool // dotted paths, lists' entries as []
	maps   map[string]bool // those whose keys are data
	// optional are left out when zero: the fakes fill them, but a
	// version's commit, say, may be unknown.
	optional map[string]bool
}

// check decodes a command's JSON output (one object, or one a line) and
// compares its fields with the documented ones: each field written is
// documented, each documented field is written (the fakes fill every
// field but the optional ones they cannot know).
func (d docSchema) check(t *testing.T, cmd, out string, lines bool) {
	t.Helper()
	var objs []string
	if lines {
		objs = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	} else {
		objs = []string{out}
	}
	got := map[string]bool{}
	for _, o := range objs {
		var v any
		if err := json.Unmarshal([]byte(o), &v); err != nil {
			t.Errorf("%s: %v: %q", cmd, err, o)
			return
		}
		if _, ok := v.(map[string]any); !ok {
			t.Errorf("%s: %q is not a JSON object", cmd, o)
			return
		}
		jsonPaths(v, "", d.maps, got)
	}
	for _, p := range sortedKeys(got) {
		if !d.fields[p] {
			t.Errorf("%s -o json: field %q is not in docs/operations.md", cmd, p)
		}
	}
	for _, p := range sortedKeys(d.fields) {
		if !got[p] && !d.optional[p] {
			t.Errorf("%s -o json: docs/operations.md lists %q, which it does not write", cmd, p)
		}
	}
	if len(d.fields) == 0 {
		t.Errorf("%s: docs/operations.md documents no fields", cmd)
	}
}
