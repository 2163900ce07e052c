package ikedmetrics

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/internal/promserve"
)

// fake is an iked of two workers with n established IKE SAs, each with an
// installed Child SA, over conns connections.
type fake struct {
	st      stats.Counters
	n       int
	conns   int
	failing bool
}

func (f *fake) Stats() *stats.Counters { return &f.st }

func (f *fake) Census(perConn int) (*iked.Census, error) {
	if f.failing {
		return nil, errors.New("worker 1 does not take commands")
	}
	c := &iked.Census{QueueFullDrops: 1, Migrations: 2}
	c.IKESAs[sa.Established] = f.n
	c.IKESAs[sa.Connecting] = 1
	c.ChildSAs[sa.ChildInstalled] = f.n
	c.Workers = []iked.WorkerCensus{{ID: 0, SPU: 0, IKESAs: f.n / 2, Datagrams: 7, SpudWait: 1500 * time.Millisecond, SpudCalls: 3},
		{ID: 1, SPU: 1, IKESAs: f.n - f.n/2}}
	for i := range f.conns {
		if i >= perConn {
			c.ConnsOmitted++
			continue
		}
		c.Conns = append(c.Conns, iked.ConnCensus{Name: fmt.Sprintf("site%03d", i), IKESAs: 1, ChildSAs: 1})
	}
	return c, nil
}

// TestCounterHelp: every event counter has its HELP, so that a new one
// in control/ike/stats is a failing test here rather than a bare series.
func TestCounterHelp(t *testing.T) {
	for k := range stats.NumCounters {
		if counterHelp[k] == "" {
			t.Errorf("counter %s: no HELP in counterHelp", k)
		}
	}
}

func TestCollectorLint(t *testing.T) {
	for _, per := range []int{0, 3} {
		problems, err := testutil.CollectAndLint(New(&fake{n: 4, conns: 5}, per))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("per-tunnel %d: %s: %s", per, p.Metric, p.Text)
		}
	}
}

func TestCollectorValues(t *testing.T) {
	f := &fake{n: 4, conns: 5}
	f.st.Inc(stats.IKESAsEstablished)
	f.st.Inc(stats.ChildRekeyCollisions)
	f.st.Fail(stats.AuthFailed)
	f.st.Fail(stats.AuthFailed)
	c := New(f, 3)
	want := `
# HELP spugate_iked_ike_sas_established_total IKE SAs established (setups).
# TYPE spugate_iked_ike_sas_established_total counter
spugate_iked_ike_sas_established_total 1
# HELP spugate_iked_child_rekey_collisions_total Simultaneous rekeys of one Child SA by both sides (RFC 7296 2.8.1).
# TYPE spugate_iked_child_rekey_collisions_total counter
spugate_iked_child_rekey_collisions_total 1
# HELP spugate_iked_ike_sas IKE SAs by state.
# TYPE spugate_iked_ike_sas gauge
spugate_iked_ike_sas{state="CONNECTING"} 1
spugate_iked_ike_sas{state="CREATED"} 0
spugate_iked_ike_sas{state="DELETING"} 0
spugate_iked_ike_sas{state="DESTROYED"} 0
spugate_iked_ike_sas{state="ESTABLISHED"} 4
spugate_iked_ike_sas{state="REKEYED"} 0
# HELP spugate_iked_spud_wait_seconds_total Time a worker spent blocked on SA API calls to spud (over spugate_iked_spud_calls_total: their mean latency).
# TYPE spugate_iked_spud_wait_seconds_total counter
spugate_iked_spud_wait_seconds_total{spu="0",worker="0"} 1.5
spugate_iked_spud_wait_seconds_total{spu="1",worker="1"} 0
# HELP spugate_iked_conn_child_sas Installed Child SAs of a connection (-metrics-per-tunnel).
# TYPE spugate_iked_conn_child_sas gauge
spugate_iked_conn_child_sas{conn="site000"} 1
spugate_iked_conn_child_sas{conn="site001"} 1
spugate_iked_conn_child_sas{conn="site002"} 1
# HELP spugate_iked_conns_omitted Connections left out of the per-connection series by the -metrics-per-tunnel cap.
# TYPE spugate_iked_conns_omitted gauge
spugate_iked_conns_omitted 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "spugate_iked_ike_sas_established_total", "spugate_iked_child_rekey_collisions_total",
		"spugate_iked_ike_sas", "spugate_iked_spud_wait_seconds_total", "spugate_iked_conn_child_sas", "spugate_iked_conns_omitted"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "spugate_iked_failures_total"); n != int(stats.NumReasons) {
		t.Errorf("%d failure series, want every reason's %d", n, stats.NumReasons)
	}
	if n := testutil.CollectAndCount(New(f, 0), "spugate_iked_conn_ike_sas"); n != 0 {
		t.Errorf("%d per-connection series without -metrics-per-tunnel", n)
	}
}

// TestCensusError: a census that fails (a stuck worker) still serves the
// counters, and counts the failure.
func TestCensusError(t *testing.T) {
	f := &fake{failing: true}
	c := New(f, 0)
	for i := 1; i <= 2; i++ {
		want := fmt.Sprintf(`
# HELP spugate_iked_census_errors_total Scrapes whose census of the workers failed (a worker did not answer); its series are missing from those scrapes.
# TYPE spugate_iked_census_errors_total counter
spugate_iked_census_errors_total %d
`, i)
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "spugate_iked_census_errors_total"); err != nil {
			t.Error(err)
		}
	}
	if n := testutil.CollectAndCount(c, "spugate_iked_exchanges_initiated_total"); n != 1 {
		t.Errorf("counters not served when the census failed: %d", n)
	}
}

// TestPromtool runs Debian's promtool (package prometheus) on a scrape.
func TestPromtool(t *testing.T) {
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (Debian package prometheus; deploy/deps.sh installs it)")
	}
	rec := httptest.NewRecorder()
	promserve.Handler(promserve.Registry("iked", New(&fake{n: 4, conns: 2}, 2)), nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = rec.Body
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
