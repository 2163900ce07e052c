package main

import (
	"bufio"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// oddStrings need every kind of escape encoding/json has, and none.
var oddStrings = []string{"", "peer/child", `quote " and \ backslash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f", "\b\f\n\r\t",
	"ünïcödé ✓", "\u2028\u2029", "bad \xff\xfe utf-8 \xc3", "emoji 🛰", strings.Repeat("x", 300)}

// randomSAState fills every field of an SA's dump entry, each set, zero,
// nil or empty by chance.
func randomSAState(rng *rand.Rand) api.SAState {
	str := func() string {
		if rng.IntN(3) == 0 {
			b := make([]byte, rng.IntN(12))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			return string(b)
		}
		return oddStrings[rng.IntN(len(oddStrings))]
	}
	addr := func() netip.Addr {
		switch rng.IntN(5) {
		case 0:
			return netip.Addr{}
		case 1:
			return netip.AddrFrom16([16]byte{0xfe, 0x80, 15: byte(rng.IntN(256))}).WithZone([]string{"eth0", `we"ird<zone>`}[rng.IntN(2)])
		case 2:
			return netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 15: byte(rng.IntN(256))}) // 4in6
		case 3:
			var a [16]byte
			for i := range a {
				a[i] = byte(rng.IntN(256))
			}
			return netip.AddrFrom16(a)
		}
		return netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))})
	}
	bytes := func() []byte {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	sels := func() []ipsec.Selector {
		switch rng.IntN(3) {
		case 0:
			return nil
		case 1:
			return []ipsec.Selector{}
		}
		ts := make([]ipsec.Selector, 1+rng.IntN(3))
		for i := range ts {
			ts[i] = ipsec.Selector{Proto: uint8(rng.IntN(3) * 6), From: addr(), To: addr(), FromPort: uint16(rng.IntN(2) * rng.IntN(65536)), ToPort: uint16(rng.IntN(2) * rng.IntN(65536))}
		}
		return ts
	}
	u := func() uint64 { return rng.Uint64() >> rng.IntN(65) }
	var s api.SAState
	s.SPI = rng.Uint32()
	s.Dir = api.Dir([]string{"in", "out", "", str()}[rng.IntN(4)])
	s.Local, s.Remote = addr(), addr()
	if rng.IntN(2) == 0 {
		lg := rng.IntN(1<<16) - 100
		s.Logical = &lg
	}
	s.Mode = api.Mode([]string{"tunnel", "transport", str()}[rng.IntN(3)])
	s.Suite = ipsec.Suites[rng.IntN(len(ipsec.Suites))]
	s.EncKey, s.IntegKey = bytes(), bytes()
	s.ESN = rng.IntN(2) == 0
	s.ReplayWindow = []int{0, -1, 32, 65536}[rng.IntN(4)]
	if rng.IntN(2) == 0 {
		s.Encap = &api.Encap{LocalPort: uint16(rng.IntN(65536)), RemotePort: uint16(rng.IntN(2) * rng.IntN(65536))}
	}
	s.ReqID = rng.Uint32()
	s.LocalTS, s.RemoteTS = sels(), sels()
	s.Lifetime = api.Lifetime{SoftBytes: u() * uint64(rng.IntN(2)), HardBytes: u() * uint64(rng.IntN(2)), SoftPackets: u() * uint64(rng.IntN(2)), HardPackets: u() * uint64(rng.IntN(2))}
	s.Name = str()
	s.SPU = rng.IntN(64) - 1
	s.Active = rng.IntN(2) == 0
	s.Stats = api.SAStats{Packets: u(), Bytes: u(), Seq: u()}
	switch rng.IntN(3) {
	case 0:
		s.Stats.Drops = map[string]uint64{}
	case 1:
		s.Stats.Drops = map[string]uint64{}
		for range 1 + rng.IntN(5) {
			s.Stats.Drops[str()] = u()
		}
	}
	return s
}

// appendSAJSON writes json.Marshal's bytes for SAs of every shape: every
// field set or not, nil and empty slices and maps, zero, zoned and mapped
// addresses, strings that need each of encoding/json's escapes; and
// Marshal's error for a suite without a name.
func TestSAJSONAsMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 8))
	for i := range 20000 {
		s := randomSAState(rng)
		want, werr := json.Marshal(s)
		got, err := appendSAJSON([]byte("prefix"), &s)
		if err != nil || werr != nil {
			t.Fatalf("SA %d: %v / Marshal: %v", i, err, werr)
		}
		if string(got[6:]) != string(want) || string(got[:6]) != "prefix" {
			t.Fatalf("SA %d:\n got %s\nwant %s", i, got, want)
		}
	}
	// The sample reaches every field set and not set.
	s := randomSAState(rng)
	for range 1000 {
		if x := randomSAState(rng); x.Logical != nil && x.Encap != nil && len(x.IntegKey) > 0 && len(x.LocalTS) > 0 && len(x.RemoteTS) > 0 &&
			x.EncKey != nil && len(x.Stats.Drops) > 0 {
			s = x
			break
		}
	}
	v := reflect.ValueOf(s.SA)
	for i := range v.NumField() {
		if v.Field(i).IsZero() && v.Type().Field(i).Name != "ESN" && v.Type().Field(i).Name != "ReplayWindow" && v.Type().Field(i).Name != "Name" {
			t.Errorf("api.SA.%s is never filled by randomSAState alongside the others: fill it", v.Type().Field(i).Name)
		}
	}
	bad := api.SAState{SA: api.SA{SPI: 256, Suite: ipsec.SuiteInvalid}}
	_, werr := json.Marshal(bad)
	if _, err := appendSAJSON(nil, &bad); err == nil || err.Error() != werr.Error() {
		t.Errorf("invalid suite: %v, Marshal: %v", err, werr)
	}
}

// The -json listing's lines are what the Encoder wrote before, one a
// line.
func TestListSAsJSONAsEncoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 9))
	page := make([]api.SAState, 500)
	for i := range page {
		page[i] = randomSAState(rng)
	}
	var got, want strings.Builder
	pages := func(yield func([]api.SAState, error) bool) { yield(page, nil) }
	if err := listPages(&got, pages, true, printSA, appendSAJSON); err != nil {
		t.Fatal(err)
	}
	enc := json.NewEncoder(&want)
	for _, s := range page {
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	if got.String() != want.String() {
		t.Fatal("sa list -json differs from the Encoder's lines")
	}
}

// BenchmarkSAJSON: an SA of sa list -json, by appendSAJSON and by the
// Encoder as before.
func BenchmarkSAJSON(b *testing.B) {
	page := listSAs(api.MaxPage)
	b.Run("append", func(b *testing.B) {
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		pages := func(yield func([]api.SAState, error) bool) { yield(page, nil) }
		for b.Loop() {
			listPages(w, pages, true, printSA, appendSAJSON)
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(page))
		b.ReportMetric(per, "ns/sa")
		b.ReportMetric(per*1e6/1e9, "s/1M")
	})
	b.Run("encoder", func(b *testing.B) {
		w := bufio.NewWriterSize(io.Discard, 64<<10)
		enc := json.NewEncoder(w)
		for b.Loop() {
			for i := range page {
				enc.Encode(page[i])
			}
			w.Flush()
		}
		per := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(page))
		b.ReportMetric(per, "ns/sa")
		b.ReportMetric(per*1e6/1e9, "s/1M")
	})
}
