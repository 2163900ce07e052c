package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// listPages prints each page as it comes (text, or one JSON object a
// line that decodes back), and stops at an error with what came before
// it printed.
func TestListPages(t *testing.T) {
	pages := func(fail bool) func(func([]api.PolicyState, error) bool) {
		return func(yield func([]api.PolicyState, error) bool) {
			for p := 0; p < 3; p++ {
				page := []api.PolicyState{{Policy: api.Policy{ID: uint32(2*p + 1), Action: api.Bypass}}, {Policy: api.Policy{ID: uint32(2*p + 2), Action: api.Discard}}}
				if !yield(page, nil) {
					return
				}
			}
			if fail {
				yield(nil, errors.New("spud: policy.dump: connection lost"))
			}
		}
	}
	var out bytes.Buffer
	if err := listPages(&out, pages(false), true, printPolicy, marshalJSON[api.PolicyState]); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&out)
	n := 0
	for sc.Scan() {
		var p api.PolicyState
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.ID != uint32(n+1) {
			t.Fatalf("line %d %q: %v", n, sc.Text(), err)
		}
		n++
	}
	if n != 6 {
		t.Errorf("%d lines of JSON, want 6", n)
	}
	out.Reset()
	err := listPages(&out, pages(true), false, printPolicy, marshalJSON[api.PolicyState])
	if err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("error: %v", err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != 6 || !strings.HasPrefix(out.String(), "policy 1 bypass") {
		t.Errorf("printed before the error:\n%s", out.String())
	}
}

// printSAfmt is printSA as it was written with fmt: printSA's output must
// stay the same, byte for byte.
func printSAfmt(w *bufio.Writer, s api.SAState) {
	src, dst := s.Local, s.Remote
	if s.Dir == api.In {
		src, dst = dst, src
	}
	extra := ""
	if s.Encap != nil {
		extra += fmt.Sprintf(" udp-encap %d->%d", s.Encap.LocalPort, s.Encap.RemotePort)
	}
	if s.ESN {
		extra += " esn"
	}
	if s.Dir == api.Out && s.Active {
		extra += " active"
	}
	name := ""
	if s.Name != "" {
		name = " " + s.Name
	}
	fmt.Fprintf(w, "sa 0x%08x %-3s %s -> %s %s %s reqid %d spu %d (logical %s)%s%s\n",
		s.SPI, s.Dir, src, dst, s.Suite, s.Mode, s.ReqID, s.SPU, logical(s.Logical), extra, name)
	fmt.Fprintf(w, "    packets %d bytes %d seq %d", s.Stats.Packets, s.Stats.Bytes, s.Stats.Seq)
	if len(s.Stats.Drops) > 0 {
		fmt.Fprintf(w, " drops: %s", kv(s.Stats.Drops))
	}
	fmt.Fprintln(w)
	if len(s.LocalTS)+len(s.RemoteTS) > 0 {
		fmt.Fprintf(w, "    selectors %s === %s\n", tsList(s.LocalTS), tsList(s.RemoteTS))
	}
}

func listSAs(n int) []api.SAState {
	sas := make([]api.SAState, n)
	for i := range sas {
		remote := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
		s := &sas[i]
		s.SA = api.SA{SPI: 0x100000 + uint32(i), Dir: api.In, Local: netip.MustParseAddr("198.18.0.1"), Remote: remote,
			Mode: api.Tunnel, Suite: ipsec.AES128GCM16, EncKey: []byte{}, ReqID: uint32(i/2 + 1), Name: "peer/child",
			LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)},
			RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(remote, 32), 0)}}
		lg := i % 1024
		s.SPU, s.Logical, s.Stats = i%2, &lg, api.SAStats{Packets: uint64(i), Bytes: uint64(i) * 1400, Seq: uint64(i)}
		switch i % 4 {
		case 1:
			s.Dir, s.Active, s.ESN = api.Out, true, true
			s.Encap = &api.Encap{LocalPort: 4500, RemotePort: 61000}
		case 2:
			s.Stats.Drops = map[string]uint64{"replay": 3, "auth": 1}
			s.Mode = api.Transport
		case 3:
			s.Dir, s.Name, s.LocalTS, s.RemoteTS = api.Out, "", nil, nil
			s.Remote = netip.MustParseAddr("2001:db8::1")
			s.Local = netip.MustParseAddr("2001:db8::2")
		}
	}
	return sas
}

func TestPrintSAAsFmt(t *testing.T) {
	for _, s := range listSAs(8) {
		var a, b bytes.Buffer
		wa, wb := bufio.NewWriter(&a), bufio.NewWriter(&b)
		printSA(wa, s)
		printSAfmt(wb, s)
		wa.Flush()
		wb.Flush()
		if a.String() != b.String() {
			t.Errorf("printSA:\n%s\nfmt's:\n%s", a.String(), b.String())
		}
	}
}

// BenchmarkPrintSAs: spuctl sa list's printing of a page, text and
// -json, to io.Discard and to a file.
func BenchmarkPrintSAs(b *testing.B) {
	page := listSAs(api.MaxPage)
	f, err := os.Create(filepath.Join(b.TempDir(), "list"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for _, out := range []struct {
		name string
		w    io.Writer
	}{{"discard", io.Discard}, {"file", f}} {
		for _, asJSON := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/json=%v", out.name, asJSON), func(b *testing.B) {
				for b.Loop() {
					pages := func(yield func([]api.SAState, error) bool) { yield(page, nil) }
					if err := listPages(out.w, pages, asJSON, printSA, appendSAJSON); err != nil {
						b.Fatal(err)
					}
				}
				perEntry := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / float64(len(page))
				b.ReportMetric(perEntry, "ns/sa")
				b.ReportMetric(perEntry*1e6/1e9, "s/1M")
			})
		}
	}
}

// SAs spud could not read end the listing with a line that says how many
// and why, text or JSON, and fail it.
func TestListPagesIncomplete(t *testing.T) {
	pages := func(yield func([]api.SAState, error) bool) {
		if yield(listSAs(2), nil) {
			yield(nil, &api.Incomplete{Missing: 3, Reason: "spu 1: failed, stopped"})
		}
	}
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		err := listPages(&out, pages, asJSON, printSA, appendSAJSON)
		var inc *api.Incomplete
		if !errors.As(err, &inc) || inc.Missing != 3 {
			t.Errorf("json %v: error %v", asJSON, err)
		}
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		last := lines[len(lines)-1]
		want := "# 3 SAs not listed: spu 1: failed, stopped"
		if asJSON {
			want = `{"missing":3,"missing_reason":"spu 1: failed, stopped"}`
		}
		if last != want || len(lines) < 3 {
			t.Errorf("json %v: %d lines, the last %q, want %q", asJSON, len(lines), last, want)
		}
	}
}
