package spudmetrics

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/spu"
	"github.com/spugate/spugate/internal/promserve"
)

// fake is a spud of two SPUs, one AF_XDP socket each, and n SAs.
type fake struct {
	sas   []api.SAState
	pages int
}

func newFake(n int) *fake {
	f := &fake{}
	for i := range n {
		dir := api.In
		if i%2 == 1 {
			dir = api.Out
		}
		f.sas = append(f.sas, api.SAState{SA: api.SA{SPI: uint32(0x1000 + i), Dir: dir, Remote: netip.MustParseAddr("198.18.0.2"),
			Name: fmt.Sprintf("iked/site/net/%d", i/2)}, Stats: api.SAStats{Packets: uint64(i), Bytes: uint64(100 * i)}})
	}
	return f
}

func (f *fake) Stats() api.Stats {
	return api.Stats{
		SPUs: []api.SPUStats{
			{ID: 0, CPU: 0, RxPackets: 10, TxPackets: 9, Encap: 5, Decap: 4, HandoffOut: 2, HandoffIn: 1, Busy: 0.25,
				Drops: map[string]uint64{"no_route": 1, "sa": 2, "sa_replay": 2}},
			{ID: 1, CPU: 1, RxPackets: 20, TxPackets: 19, Encap: 7, Decap: 8, Drops: map[string]uint64{"no_sa": 1}},
		},
		Drops:   map[string]uint64{"no_route": 1, "sa": 2, "sa_replay": 2, "no_sa": 1},
		XDP:     map[string]uint64{"redirect_esp": 12, "pass_ike": 3},
		Links:   map[string]uint64{"wan0 rx_dropped": 4},
		Sockets: []api.SocketStats{{Interface: "wan0", Queue: 0, Rx: 30, Tx: 28, RxDropped: 1, FillEmpty: 2, TxFull: 3}},
		Carrier: "meta",
	}
}

func (f *fake) SPUList() api.SPUList {
	return api.SPUList{Logical: 256, MapGen: 1, SPUs: []api.SPUInfo{
		{ID: 0, CPU: 0, State: "active", SAs: (len(f.sas) + 1) / 2, Policies: 1, Tunnels: 1},
		{ID: 1, CPU: 1, State: "active", SAs: len(f.sas) / 2, Policies: 0, Tunnels: 0},
	}}
}

func (f *fake) SAPage(after uint64, limit int) spu.Page[api.SAState] {
	f.pages++
	start := int(after)
	end := min(start+limit, len(f.sas))
	if start >= end {
		return spu.Page[api.SAState]{Next: after}
	}
	return spu.Page[api.SAState]{Entries: f.sas[start:end], Next: uint64(end), More: end < len(f.sas)}
}

func TestCollectorLint(t *testing.T) {
	for _, per := range []int{0, 3} {
		problems, err := testutil.CollectAndLint(New(newFake(6), per))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("per-tunnel %d: %s: %s", per, p.Metric, p.Text)
		}
	}
}

func TestCollectorValues(t *testing.T) {
	c := New(newFake(6), 0)
	want := `
# HELP spugate_spud_spu_rx_packets_total Frames an SPU received from its AF_XDP sockets.
# TYPE spugate_spud_spu_rx_packets_total counter
spugate_spud_spu_rx_packets_total{spu="0"} 10
spugate_spud_spu_rx_packets_total{spu="1"} 20
# HELP spugate_spud_spu_drops_total Packets an SPU dropped, all causes (spugate_spud_drops_total has them by reason).
# TYPE spugate_spud_spu_drops_total counter
spugate_spud_spu_drops_total{spu="0"} 3
spugate_spud_spu_drops_total{spu="1"} 1
# HELP spugate_spud_spu_sas SAs (inbound and outbound) an SPU holds.
# TYPE spugate_spud_spu_sas gauge
spugate_spud_spu_sas{spu="0"} 3
spugate_spud_spu_sas{spu="1"} 3
# HELP spugate_spud_socket_rx_frames_total Frames an AF_XDP socket received.
# TYPE spugate_spud_socket_rx_frames_total counter
spugate_spud_socket_rx_frames_total{interface="wan0",queue="0"} 30
# HELP spugate_spud_link_errors_total The kernel's drop and error counters of the data-plane interfaces (before or after spud), by kind.
# TYPE spugate_spud_link_errors_total counter
spugate_spud_link_errors_total{interface="wan0",kind="rx_dropped"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "spugate_spud_spu_rx_packets_total", "spugate_spud_spu_drops_total",
		"spugate_spud_spu_sas", "spugate_spud_socket_rx_frames_total", "spugate_spud_link_errors_total"); err != nil {
		t.Error(err)
	}
	// Every reason and verdict, zero included; SA drops apart.
	for name, n := range map[string]int{"spugate_spud_drops_total": int(spu.NumDrops), "spugate_spud_sa_drops_total": len(saDropNames),
		"spugate_spud_xdp_packets_total": len(xdpNames), "spugate_spud_tunnel_sa_packets_total": 0} {
		if got := testutil.CollectAndCount(c, name); got != n {
			t.Errorf("%s: %d series, want %d", name, got, n)
		}
	}
	for _, m := range []struct {
		name, label string
		want        float64
	}{{"spugate_spud_drops_total", "sa", 2}, {"spugate_spud_drops_total", "no_route", 1}, {"spugate_spud_sa_drops_total", "replay", 2},
		{"spugate_spud_xdp_packets_total", "redirect_esp", 12}, {"spugate_spud_xdp_packets_total", "pass_no_policy", 0}} {
		if got := value(t, c, m.name, m.label); got != m.want {
			t.Errorf("%s{%s} = %v, want %v", m.name, m.label, got, m.want)
		}
	}
}

// value is the series of name whose one label is label.
func value(t *testing.T, c *Collector, name, label string) float64 {
	t.Helper()
	reg := promserve.Registry("spud", c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("%s{%s} not found", name, label)
	return 0
}

// TestPerTunnelCap: at most the cap's SAs, read no further than it, the
// rest counted.
func TestPerTunnelCap(t *testing.T) {
	f := newFake(2500)
	c := New(f, 1200)
	if got := testutil.CollectAndCount(c, "spugate_spud_tunnel_sa_packets_total"); got != 1200 {
		t.Errorf("%d per-tunnel series, want 1200", got)
	}
	f.pages = 0
	want := `
# HELP spugate_spud_tunnel_sas_omitted SAs left out of the per-tunnel series by the -metrics-per-tunnel cap.
# TYPE spugate_spud_tunnel_sas_omitted gauge
spugate_spud_tunnel_sas_omitted 1300
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "spugate_spud_tunnel_sas_omitted"); err != nil {
		t.Error(err)
	}
	if f.pages != 2 {
		t.Errorf("%d pages read for 1200 of 2500 SAs, want 2", f.pages)
	}
	want = `
# HELP spugate_spud_tunnel_sa_bytes_total Bytes an SA passed (-metrics-per-tunnel).
# TYPE spugate_spud_tunnel_sa_bytes_total counter
spugate_spud_tunnel_sa_bytes_total{dir="in",name="iked/site/net/0",remote="",spi="0x00001000"} 0
spugate_spud_tunnel_sa_bytes_total{dir="out",name="iked/site/net/0",remote="198.18.0.2",spi="0x00001001"} 100
`
	if err := testutil.CollectAndCompare(New(newFake(2), 5), strings.NewReader(want), "spugate_spud_tunnel_sa_bytes_total"); err != nil {
		t.Error(err)
	}
}

// TestOpenMetrics: the handler answers OpenMetrics to a scraper that asks
// for it (as Prometheus does), the classic text format otherwise.
func TestOpenMetrics(t *testing.T) {
	srv := httptest.NewServer(promserve.Handler(promserve.Registry("spud", New(newFake(4), 2)), nil))
	defer srv.Close()
	for _, c := range []struct{ accept, ctype, tail string }{
		{"application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "application/openmetrics-text", "# EOF\n"},
		{"", "text/plain", "\n"},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, c.ctype) {
			t.Errorf("Accept %q: Content-Type %q, want %s", c.accept, ct, c.ctype)
		}
		if !strings.HasSuffix(string(body), c.tail) || !strings.Contains(string(body), "spugate_spud_spu_rx_packets_total") {
			t.Errorf("Accept %q: body ends %q", c.accept, body[max(0, len(body)-40):])
		}
		if !strings.Contains(string(body), "spugate_spud_build_info{") || !strings.Contains(string(body), "go_goroutines") {
			t.Errorf("Accept %q: no build info or Go runtime series", c.accept)
		}
	}
}

// TestPromtool runs Debian's promtool (package prometheus) on a scrape:
// the linter Prometheus's own users run on an exporter.
func TestPromtool(t *testing.T) {
	CheckWithPromtool(t, promserve.Handler(promserve.Registry("spud", New(newFake(4), 2)), nil))
}

// CheckWithPromtool scrapes h in the classic text format (the one promtool
// reads) and fails t with what `promtool check metrics` says of it.
func CheckWithPromtool(t *testing.T, h http.Handler) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (Debian package prometheus; deploy/deps.sh installs it)")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = rec.Body
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
