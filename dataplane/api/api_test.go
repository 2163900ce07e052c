package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
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
		"logical":       func(s *SA) { s.Logical = Logical(-1) },
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

// TestLogical: the explicit anchor is checked against L with an error
// naming the SA, policy or request; it is left out of the JSON when not
// given, and a dump has one "logical", the embedded SA's or policy's.
func TestLogical(t *testing.T) {
	sa := testSA()
	if err := sa.ValidateLogical(256); err != nil {
		t.Errorf("no logical: %v", err)
	}
	for _, c := range []struct {
		l  int
		ok bool
	}{{0, true}, {255, true}, {256, false}, {-1, false}, {1 << 20, false}} {
		sa.Logical = Logical(c.l)
		err := sa.ValidateLogical(256)
		if (err == nil) != c.ok {
			t.Errorf("sa with logical %d: %v", c.l, err)
		}
		if err != nil && err.Error() != fmt.Sprintf("sa spi 0xc0010001 out: logical SPU %d out of range (0..255)", c.l) {
			t.Errorf("sa with logical %d: %q", c.l, err)
		}
		p := Policy{ID: 4, Name: "site-4", Logical: Logical(c.l)}
		if err := p.ValidateLogical(256); (err == nil) != c.ok || (err != nil && !strings.HasPrefix(err.Error(), "policy 4 (site-4): logical SPU")) {
			t.Errorf("policy with logical %d: %v", c.l, err)
		}
		r := SPIAllocRequest{Local: sa.Local, Remote: sa.Remote, Logical: Logical(c.l)}
		if err := r.Validate(256); (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), "198.18.0.1-198.18.0.2: logical SPU")) {
			t.Errorf("spi.alloc with logical %d: %v", c.l, err)
		}
	}
	if err := (&SPIAllocRequest{Local: sa.Local}).Validate(256); err == nil {
		t.Error("spi.alloc without the remote endpoint accepted")
	}
	sa.Logical = nil
	b, _ := json.Marshal(sa)
	if strings.Contains(string(b), "logical") {
		t.Errorf("an SA without logical has it in its JSON: %s", b)
	}
	sa.Logical = Logical(7)
	b, _ = json.Marshal(SAState{SA: sa, SPU: 1})
	if strings.Count(string(b), `"logical"`) != 1 || !strings.Contains(string(b), `"logical":7`) {
		t.Errorf("dump entry: %s", b)
	}
	var back SAState
	if err := json.Unmarshal(b, &back); err != nil || back.Logical == nil || *back.Logical != 7 {
		t.Errorf("dump entry read back: %+v, %v", back.Logical, err)
	}
	b, _ = json.Marshal(PolicyState{Policy: Policy{ID: 1, Logical: Logical(0)}})
	if !strings.Contains(string(b), `"logical":0`) {
		t.Errorf("policy dump entry on logical SPU 0: %s", b)
	}
}

func startServer(t *testing.T) (*unixrpc.Server, string) {
	t.Helper()
	s := unixrpc.NewServer(nil)
	s.AllowUID = os.Getuid()
	path := filepath.Join(t.TempDir(), "spud.sock")
	if err := s.Listen(path); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

// TestClient: the typed client speaks the SA API's operations and events,
// and spud's refusals reach it with their text and code.
func TestClient(t *testing.T) {
	s, path := startServer(t)
	var mu sync.Mutex
	added := map[uint32]bool{}
	s.Handle(OpSAAdd, func(body json.RawMessage) (any, error) {
		var sa SA
		if err := unixrpc.Decode(body, &sa); err != nil {
			return nil, err
		}
		if err := sa.Validate(); err != nil {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if added[sa.SPI] {
			return nil, fmt.Errorf("sa spi 0x%08x %s: %w", sa.SPI, sa.Dir, unixrpc.ErrExists)
		}
		added[sa.SPI] = true
		return nil, nil
	})
	s.Handle(OpSADel, func(body json.RawMessage) (any, error) {
		var id SAID
		if err := unixrpc.Decode(body, &id); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("sa spi 0x%08x %s: %w", id.SPI, id.Dir, unixrpc.ErrNotFound)
	})
	s.Handle(OpHello, func(json.RawMessage) (any, error) {
		return HelloReply{Version: Version, Server: "test", Logical: 256}, nil
	})

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
	if err := c.AddSA(&sa); !errors.Is(err, unixrpc.ErrExists) || err.Error() != "spud: sa.add: sa spi 0xc0010001 out: exists" {
		t.Errorf("second add: %v", err)
	}
	if err := c.DelSA(SAID{SPI: 0x1000, Dir: In}); !errors.Is(err, unixrpc.ErrNotFound) || err.Error() != "spud: sa.del: sa spi 0x00001000 in: not found" {
		t.Errorf("del: %v", err)
	}
	sa.EncKey = sa.EncKey[:3]
	err = c.AddSA(&sa)
	var rpcErr *unixrpc.Error
	if !errors.As(err, &rpcErr) || rpcErr.Code != unixrpc.CodeBadRequest || !strings.Contains(rpcErr.Message, "encryption key") {
		t.Errorf("bad SA: %v", err)
	}

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
}

// TestPagedDumps: DumpSAs and DumpPolicies fetch every page, SAPages gives
// them one at a time, a server whose cursor does not advance is an error
// rather than a loop, and SAStats splits a long list into requests of at
// most MaxQuery SAs.
func TestPagedDumps(t *testing.T) {
	s, path := startServer(t)
	const n = 10000
	var limits []int
	stuck := false
	s.Handle(OpSADump, func(body json.RawMessage) (any, error) {
		var req DumpRequest
		if err := unixrpc.Decode(body, &req); err != nil {
			return nil, err
		}
		limits = append(limits, req.Limit)
		lim := req.Limit
		if lim == 0 || lim > MaxPage {
			lim = MaxPage
		}
		var r SADump
		for i := int(req.After); i < n && len(r.SAs) < lim; i++ {
			r.SAs = append(r.SAs, SAState{SA: SA{SPI: uint32(i + 256), Dir: In, Suite: ipsec.AES128GCM16}})
			r.Next = uint64(i + 1)
		}
		r.More = r.Next < n
		if stuck {
			r.Next, r.More = req.After, true
		}
		return r, nil
	})
	s.Handle(OpPolicyDump, func(body json.RawMessage) (any, error) {
		var req DumpRequest
		if err := unixrpc.Decode(body, &req); err != nil {
			return nil, err
		}
		if req.After == 0 {
			return PolicyDump{Policies: []PolicyState{{Policy: Policy{ID: 1}}}, Next: 1, More: true}, nil
		}
		return PolicyDump{Policies: []PolicyState{{Policy: Policy{ID: 2}}}, Next: 2}, nil
	})
	var asked []int
	s.Handle(OpSAStats, func(body json.RawMessage) (any, error) {
		var req SAStatsRequest
		if err := unixrpc.Decode(body, &req); err != nil {
			return nil, err
		}
		return AnswerSAStats(&req, func(ids []SAID) ([]SAStatsEntry, error) {
			asked = append(asked, len(ids))
			var r []SAStatsEntry
			for _, id := range ids {
				r = append(r, SAStatsEntry{SAID: id, Found: id.SPI%2 == 0, Stats: SAStats{Packets: uint64(id.SPI)}})
			}
			return r, nil
		})
	})
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sas, err := c.DumpSAs(false)
	if err != nil || len(sas) != n {
		t.Fatalf("DumpSAs: %d SAs, %v", len(sas), err)
	}
	for i, sa := range sas {
		if sa.SPI != uint32(i+256) {
			t.Fatalf("SA %d has SPI %d", i, sa.SPI)
		}
	}
	if len(limits) != 3 {
		t.Errorf("%d requests for %d SAs of pages of %d", len(limits), n, MaxPage)
	}
	pages := 0
	for page, err := range c.SAPages(1000) {
		if err != nil || len(page) != 1000 {
			t.Fatalf("page %d: %d SAs, %v", pages, len(page), err)
		}
		if pages++; pages == 3 {
			break // a caller may stop early
		}
	}
	ps, err := c.DumpPolicies()
	if err != nil || len(ps) != 2 || ps[1].ID != 2 {
		t.Errorf("DumpPolicies: %+v %v", ps, err)
	}
	stuck = true
	if _, err := c.DumpSAs(false); err == nil || !strings.Contains(err.Error(), "no later cursor") {
		t.Errorf("a server stuck on one page: %v", err)
	}
	ids := make([]SAID, MaxQuery+10)
	for i := range ids {
		ids[i] = SAID{SPI: uint32(i + 256), Dir: In}
	}
	st, err := c.SAStats(ids)
	if err != nil || len(st) != len(ids) || len(asked) != 2 || asked[0] != MaxQuery {
		t.Fatalf("SAStats: %d answers, requests %v, %v", len(st), asked, err)
	}
	if !st[0].Found || st[1].Found || st[10].Stats.Packets != 266 || st[MaxQuery+9].SPI != uint32(MaxQuery+9+256) {
		t.Errorf("SAStats answers %+v %+v %+v", st[0], st[1], st[10])
	}
}

// TestOlderSpud: in front of a spud that knows packed pages but not as
// data, dumps fall back to packed1; in front of one older than both, and
// than packed sa.stats, to JSON; each once for the connection.
func TestOlderSpud(t *testing.T) {
	for _, knows := range []string{EncodingPacked, ""} {
		t.Run("knows "+knows, func(t *testing.T) {
			s, path := startServer(t)
			var encodings []string
			s.Handle(OpSADump, func(body json.RawMessage) (any, error) {
				var req struct {
					After    uint64 `json:"after,omitempty"`
					Limit    int    `json:"limit,omitempty"`
					Encoding string `json:"encoding,omitempty"`
				}
				if err := unixrpc.Decode(body, &req); err != nil {
					return nil, err
				}
				encodings = append(encodings, req.Encoding)
				if knows == "" && req.Encoding != "" {
					return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, `bad request body: json: unknown field "encoding"`)
				}
				if req.Encoding != "" && req.Encoding != knows {
					return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "dump: encoding %q not known (%s, or none for JSON)", req.Encoding, knows)
				}
				sa := SAState{SA: SA{SPI: uint32(req.After) + 256, Dir: In, Suite: ipsec.AES128GCM16, Name: "n"}}
				r := SADump{Next: req.After + 1, More: req.After < 2}
				if req.Encoding == EncodingPacked {
					r.Packed = AppendPackedSA(nil, &sa)
				} else {
					r.SAs = []SAState{sa}
				}
				return r, nil
			})
			s.Handle(OpSAStats, func(body json.RawMessage) (any, error) {
				var req struct {
					SAs []SAID `json:"sas"`
				}
				if err := unixrpc.Decode(body, &req); err != nil {
					return nil, err
				}
				r := SAStatsReply{}
				for _, id := range req.SAs {
					r.SAs = append(r.SAs, SAStatsEntry{SAID: id, Found: true, Stats: SAStats{Packets: uint64(id.SPI)}})
				}
				return r, nil
			})
			c, err := Dial(path)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for range 2 {
				sas, err := c.DumpSAs(false)
				if err != nil || len(sas) != 3 || sas[2].SPI != 258 || sas[2].Name != "n" {
					t.Fatalf("DumpSAs: %+v %v", sas, err)
				}
			}
			want := []string{EncodingPackedData}
			if knows == "" {
				want = append(want, EncodingPacked)
			}
			for range 6 {
				want = append(want, knows)
			}
			if !slices.Equal(encodings, want) {
				t.Errorf("encodings asked %q, want %q", encodings, want)
			}
			st, err := c.SAStats([]SAID{{SPI: 300, Dir: In}, {SPI: 301, Dir: Out, Remote: netip.MustParseAddr("198.18.0.2")}})
			if err != nil || len(st) != 2 || st[1].Stats.Packets != 301 || !st[1].Found || st[1].Remote.String() != "198.18.0.2" {
				t.Fatalf("SAStats: %+v %v", st, err)
			}
		})
	}
}

// The packed sa.stats: the SAs named and the answers, drops included, go
// through and back; truncated answers are errors.
func TestPackedSAStats(t *testing.T) {
	ids := []SAID{{SPI: 256, Dir: In}, {SPI: 0xffffffff, Dir: Out, Remote: netip.MustParseAddr("2001:db8::1")}, {SPI: 7, Dir: In}}
	var req SAStatsRequest
	for _, id := range ids {
		req.Packed = AppendPackedSAID(req.Packed, id)
	}
	got, err := DecodePackedSAIDs(req.Packed, nil, 3)
	if err != nil || !slices.Equal(got, ids) {
		t.Fatalf("ids: %+v %v", got, err)
	}
	if _, err := DecodePackedSAIDs(req.Packed, nil, 2); err == nil {
		t.Error("more than asked for: no error")
	}
	answers := []SAStatsEntry{{Found: true, Stats: SAStats{Packets: 1, Bytes: 1 << 40, Seq: 3, Drops: map[string]uint64{"replay": 9}}}, {}, {Found: true}}
	r, err := AnswerSAStats(&req, func(got []SAID) ([]SAStatsEntry, error) { return answers, nil })
	if err != nil {
		t.Fatal(err)
	}
	data := r.(unixrpc.WithData).Data
	out := make([]SAStatsEntry, 3)
	if err := DecodePackedStats(data, out); err != nil || !reflect.DeepEqual(out, answers) {
		t.Fatalf("answers: %+v %v", out, err)
	}
	for i := range len(data) {
		if err := DecodePackedStats(data[:i], out); err == nil {
			t.Errorf("answers truncated to %d bytes: no error", i)
		}
	}
}

// A packed page of SAs decodes with a few allocations for the page, none
// per SA.
func TestDecodePackedSAsAllocs(t *testing.T) {
	var b []byte
	for i := range 1000 {
		sa := SAState{SA: SA{SPI: uint32(i) + 256, Dir: In, Suite: ipsec.AES128GCM16, Name: fmt.Sprintf("tunnel-%d", i),
			Local: netip.MustParseAddr("198.18.0.1"), Remote: netip.MustParseAddr("198.18.0.2"), Logical: Logical(i % 256),
			Encap: &Encap{LocalPort: 4500, RemotePort: 4500}, EncKey: []byte{},
			LocalTS:  []ipsec.Selector{{From: netip.MustParseAddr("198.19.0.0"), To: netip.MustParseAddr("198.19.0.255"), ToPort: 65535}},
			RemoteTS: []ipsec.Selector{{From: netip.MustParseAddr("198.20.0.0"), To: netip.MustParseAddr("198.20.0.255"), ToPort: 65535}}},
			Stats: SAStats{Packets: uint64(i), Drops: map[string]uint64{}}}
		b = AppendPackedSA(b, &sa)
	}
	out := make([]SAState, 0, 1000)
	allocs := testing.AllocsPerRun(10, func() {
		var err error
		if out, err = DecodePackedSAs(b, out[:0]); err != nil || len(out) != 1000 {
			t.Fatal(err)
		}
	})
	if allocs > 10 {
		t.Errorf("%v allocations for a page of 1000 SAs", allocs)
	}
	if out[999].Name != "tunnel-999" || *out[999].Logical != 999%256 || out[999].Encap.LocalPort != 4500 || out[999].RemoteTS[0].From.String() != "198.20.0.0" {
		t.Errorf("SA 999: %+v", out[999])
	}
}
