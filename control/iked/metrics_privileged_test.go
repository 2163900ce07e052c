package iked_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// The metrics endpoints and Prometheus of the lab, on loopback inside
// gw-a's namespace (each namespace has a loopback of its own).
const (
	spudMetrics = "127.0.0.1:9814"
	ikedMetrics = "127.0.0.1:9815"
	promAddr    = "127.0.0.1:9090"
)

// TestPrivilegedMetricsPrometheus: Debian's Prometheus, in gw-a's
// namespace, scrapes gw-a's spud and iked (-metrics on loopback there);
// after a tunnel is up and a known number of pings went through it, a
// query of Prometheus's HTTP API returns those packets in spud's series
// (the SPUs' encapsulations, the tunnel's outbound SA) and the IKE SA in
// iked's; promtool passes both endpoints' real scrapes.
func TestPrivilegedMetricsPrometheus(t *testing.T) {
	for _, p := range []string{"prometheus", "promtool"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s not installed (Debian package prometheus; deploy/deps.sh installs it)", p)
		}
	}
	tb := newTestbedSpud(t, lab.LineOptions{}, nil, daemons.SpudOptions{SPUs: testbedSPUs,
		Args: []string{"-metrics", spudMetrics, "-metrics-per-tunnel", "16"}})
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec, "-metrics", ikedMetrics, "-metrics-per-tunnel", "16")
	tb.b.start(t, cb.yaml(), sec)
	tb.tunnelUp(t)
	h := tb.a.host
	if log := tb.a.spud.Proc.Log(); !strings.Contains(log, "serving metrics") || strings.Contains(log, "without authentication") {
		t.Errorf("spud's start-up log does not say where it serves metrics, on loopback:\n%s", tail(log, 20))
	}

	for _, addr := range []string{spudMetrics, ikedMetrics} {
		body, _, err := nsGet(h, "http://"+addr+"/metrics", "")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("promtool check metrics on %s's scrape: %v\n%s", addr, err, out)
		}
		_, ctype, err := nsGet(h, "http://"+addr+"/metrics", "application/openmetrics-text;version=1.0.0")
		if err != nil || !strings.HasPrefix(ctype, "application/openmetrics-text") {
			t.Errorf("%s: OpenMetrics asked for, %q answered (%v)", addr, ctype, err)
		}
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: spud
    static_configs: [{targets: ["%s"]}]
  - job_name: iked
    static_configs: [{targets: ["%s"]}]
`, spudMetrics, ikedMetrics)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom, err := h.Start("prometheus", []string{"prometheus", "--config.file=" + filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"), "--web.listen-address=" + promAddr,
		"--storage.tsdb.retention.time=1h"}, lab.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- prometheus ---\n%s", tail(prom.Log(), 40))
		}
		prom.Stop()
	})

	encap := `sum(spugate_spud_spu_encap_packets_total{job="spud"})`
	tunnelOut := `sum(spugate_spud_tunnel_sa_packets_total{job="spud",dir="out"})`
	before := map[string]float64{}
	for _, q := range []string{encap, tunnelOut} {
		v, ok := promWait(t, h, q, 30*time.Second, func(float64) bool { return true })
		if !ok {
			t.Fatalf("Prometheus has no %s after 30s (up: %v)", q, promValues(t, h, "up"))
		}
		before[q] = v
	}
	const pings = 100
	out, _ := tb.ln.ClientA.Exec("ping", "-n", "-q", "-i", "0.02", "-W", "2", "-c", strconv.Itoa(pings),
		"-I", tb.ln.Plan.ClientA4.String(), tb.ln.Plan.ClientB4.String())
	m := receivedRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping: %s", out)
	}
	answered, _ := strconv.Atoi(string(m[1]))
	t.Logf("%d pings sent, %d answered", pings, answered)
	if answered == 0 {
		t.Fatalf("no ping answered through the tunnel: %s", out)
	}
	for _, q := range []string{encap, tunnelOut} {
		// gw-a encapsulated every echo request that reached it: at least
		// those answered (all, unless a loaded machine lost some on the
		// way), and nothing else crosses the tunnel meanwhile (a few for
		// slack).
		v, ok := promWait(t, h, q, 20*time.Second, func(v float64) bool { return v >= before[q]+float64(answered) })
		if d := v - before[q]; !ok || d > pings+5 {
			t.Errorf("Prometheus: %s rose by %v after %d pings (%d answered), want %d to %d", q, d, pings, answered, answered, pings+5)
		} else {
			t.Logf("Prometheus: %s rose by %v after %d pings", q, d, pings)
		}
	}
	if v, ok := promWait(t, h, `spugate_iked_ike_sas{job="iked",state="ESTABLISHED"}`, 10*time.Second, func(v float64) bool { return v == 1 }); !ok {
		t.Errorf("Prometheus: iked's established IKE SAs %v, want 1", v)
	}
	if v, ok := promWait(t, h, `spugate_iked_conn_child_sas{job="iked",conn="tun"}`, 10*time.Second, func(v float64) bool { return v == 1 }); !ok {
		t.Errorf("Prometheus: iked's Child SAs of tun %v, want 1", v)
	}
	if v, ok := promWait(t, h, `sum(spugate_iked_spud_calls_total{job="iked"})`, 10*time.Second, func(v float64) bool { return v > 0 }); !ok {
		t.Errorf("Prometheus: iked's SA API calls %v, want some", v)
	}
	// Every query of the Grafana dashboard evaluates on this Prometheus
	// (2.42, Debian's), and the traffic panels show the lab's.
	exprs := dashboardExprs(t)
	withData := 0
	for _, e := range exprs {
		body, _, err := nsGet(h, "http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(e), "")
		if err != nil || !strings.Contains(body, `"status":"success"`) {
			t.Errorf("dashboard query %s: %v %.300s", e, err, body)
			continue
		}
		if !strings.Contains(body, `"result":[]`) {
			withData++
		}
	}
	t.Logf("dashboard: %d queries evaluated, %d with data", len(exprs), withData)
	for _, e := range []string{`sum by (instance) (rate(spugate_spud_spu_encap_packets_total{instance=~".*"}[1m]))`,
		`sum by (instance, state) (spugate_iked_ike_sas{instance=~".*"}) > 0`} {
		if !slices.Contains(exprs, e) {
			t.Errorf("dashboard: no query %s", e)
		} else if vs := promValues(t, h, e); len(vs) == 0 || vs[0] <= 0 {
			t.Errorf("dashboard query %s: %v, want the lab's", e, vs)
		}
	}
}

// dashboardExprs is deploy/grafana/spugate.json's queries with Grafana's
// variables as it would set them for every instance and a 1m interval.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "spugate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/spugate.json: %v", err)
	}
	r := strings.NewReplacer("$__rate_interval", "1m", "$spud", ".*", "$iked", ".*")
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, r.Replace(tg.Expr))
		}
	}
	return out
}

// nsGet fetches url from inside h's namespace (the connection is made
// there; net/http's own dialer would run on another thread), with an
// Accept header if one is given, and returns the body and Content-Type.
func nsGet(h *lab.Host, rawURL, accept string) (body, ctype string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", err
	}
	var conn net.Conn
	if err := h.Do(func() error {
		conn, err = net.DialTimeout("tcp", u.Host, 5*time.Second)
		return err
	}); err != nil {
		return "", "", fmt.Errorf("%s: %w", rawURL, err)
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
	req, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		conn.Close()
		return "", "", err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		conn.Close()
		return "", "", fmt.Errorf("%s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("%s: %s: %.200s", rawURL, resp.Status, b)
	}
	return string(b), resp.Header.Get("Content-Type"), err
}

// promValues runs an instant query on the lab's Prometheus and returns
// its samples' values.
func promValues(t *testing.T, h *lab.Host, query string) []float64 {
	t.Helper()
	body, _, err := nsGet(h, "http://"+promAddr+"/api/v1/query?query="+url.QueryEscape(query), "")
	if err != nil {
		return nil
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("Prometheus query %s: %v: %.300s", query, err, body)
	}
	var out []float64
	for _, s := range r.Data.Result {
		if str, ok := s.Value[1].(string); ok {
			if v, err := strconv.ParseFloat(str, 64); err == nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// promWait queries until the query has one sample that ok accepts, or d
// passes; it returns the last value seen.
func promWait(t *testing.T, h *lab.Host, query string, d time.Duration, ok func(float64) bool) (float64, bool) {
	t.Helper()
	last := -1.0
	done := waitFor(d, func() bool {
		vs := promValues(t, h, query)
		if len(vs) != 1 {
			return false
		}
		last = vs[0]
		if !ok(last) {
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
	return last, done
}
