package ikedmetrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spugate/spugate/dataplane/spudmetrics"
)

// Dashboard is deploy/grafana/spugate.json's expressions, with Grafana's
// variables replaced as Grafana would for all instances and a 1m rate
// interval: what the lab test queries a real Prometheus with too.
func Dashboard(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "spugate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/spugate.json: %v", err)
	}
	var out []string
	r := strings.NewReplacer("$__rate_interval", "1m", "$spud", ".*", "$iked", ".*")
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, r.Replace(tg.Expr))
		}
	}
	return out
}

var seriesRe = regexp.MustCompile(`spugate_[a-z_]+`)
var descNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

// TestDashboard: every series the dashboard names is one the collectors
// export, and promtool parses every expression (as recording rules).
func TestDashboard(t *testing.T) {
	known := map[string]bool{}
	ch := make(chan *prometheus.Desc, 1000)
	New(nil, 1).Describe(ch)
	spudmetrics.New(nil, 1).Describe(ch)
	close(ch)
	for d := range ch {
		if m := descNameRe.FindStringSubmatch(d.String()); m != nil {
			known[m[1]] = true
		}
	}
	known["spugate_spud_build_info"], known["spugate_iked_build_info"] = true, true
	exprs := Dashboard(t)
	if len(exprs) < 20 {
		t.Fatalf("%d expressions in the dashboard", len(exprs))
	}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		for _, s := range seriesRe.FindAllString(e, -1) {
			if !known[s] {
				t.Errorf("dashboard: %s is not a series spud or iked exports (in %s)", s, e)
			}
		}
		q, _ := json.Marshal(e)
		fmt.Fprintf(&rules, "      - record: dashboard:expr%d\n        expr: %s\n", i, q)
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool not installed (Debian package prometheus; deploy/deps.sh installs it)")
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}
