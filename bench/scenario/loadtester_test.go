package scenario

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/strongswan"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis: fields count from
	// the last ')'.
	stat := "4242 (char on) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 33 0 100 0 0"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 325 * 10 * time.Millisecond; got != want {
		t.Errorf("cpu %v, want %v", got, want)
	}
	for _, bad := range []string{"4242 charon S 1", "4242 (charon) S 1 2 3", "4242 (c) S 1 4242 4242 0 -1 0 0 0 0 0 x 75 0"} {
		if _, err := parseStatCPU(bad); err == nil || !strings.HasPrefix(err.Error(), "cpu time:") {
			t.Errorf("%q: error %v", bad, err)
		}
	}
}

func TestLoadTesterThreads(t *testing.T) {
	for _, c := range []struct{ n, threads, iter int }{{10000, 4, 2500}, {2001, 3, 667}, {2, 2, 1}, {7, 1, 7}, {1, 1, 1}} {
		th, it := loadTesterThreads(c.n)
		if th != c.threads || it != c.iter || th*it != c.n {
			t.Errorf("%d: %d threads × %d, want %d × %d", c.n, th, it, c.threads, c.iter)
		}
	}
}

// TestLoadTesterConfig checks the load-generating charon: load-tester
// before kernel-netlink (else its fake kernel is not the one Child SAs go
// to), no kernel-libipsec, the plugin folder of deploy/load-tester.sh,
// and the settings the responders are configured to accept.
func TestLoadTesterConfig(t *testing.T) {
	ln := testLine()
	cfg := loadTesterConfig("/tmp/x", loadTesterLine(ln, 2000, 64))
	lt, kn := slices.Index(cfg.Plugins, "load-tester"), slices.Index(cfg.Plugins, "kernel-netlink")
	if lt < 0 || kn < 0 || lt > kn || slices.Contains(cfg.Plugins, "kernel-libipsec") {
		t.Errorf("plugins %v", cfg.Plugins)
	}
	if cfg.PluginDir != LoadTesterPlugins || cfg.Settings.InstallRoutes != "no" || cfg.Settings.ReuseIKESA != "no" {
		t.Errorf("plugin folder %q, install_routes %q", cfg.PluginDir, cfg.Settings.InstallRoutes)
	}
	s := cfg.Settings.Plugin["load-tester"]
	pl := ln.Plan
	for k, v := range map[string]string{
		"enable": "yes", "delay": "1", "initiators": "4", "iterations": "500", "init_limit": "64", "fake_kernel": "yes",
		"initiator_auth": "psk", "responder_auth": "psk", "initiator_id": loadTesterID, "responder_id": "gw-b.lab.example",
		"initiator": pl.GwAWan4.String(), "responder": pl.GwBWan4.String(),
		"initiator_tsi": pl.LanA4.String(), "initiator_tsr": pl.LanB4.String(),
		"preshared_key": string(loadTesterPSK), "proposal": ikeProposal, "esp": espProposal, "version": "2", "child_rekey": "0",
	} {
		if s[k] != v {
			t.Errorf("load-tester %s = %q, want %q", k, s[k], v)
		}
	}
	if !strings.Contains(loadTesterID, "%d") || !strings.HasPrefix(loadTesterMatch, "*.") ||
		!strings.HasSuffix(loadTesterID, loadTesterMatch[1:]) {
		t.Errorf("initiator identity %q does not fall under the responders' %q", loadTesterID, loadTesterMatch)
	}
}

// TestFakeKernelResponder checks charon:fake: load-tester lends its fake
// kernel, initiates nothing, and its own connection binds to loopback
// addresses no peer of the line uses.
func TestFakeKernelResponder(t *testing.T) {
	cr := strongswan.Config{Conns: []strongswan.Conn{{Name: "site", Remote: strongswan.Auth{ID: "gw-a.lab.example"}}},
		Secrets: strongswan.LinePSK([]byte("x"))}
	loadTesterPeer(&cr)
	fakeKernelResponder(&cr)
	s := cr.Settings.Plugin["load-tester"]
	if s["initiators"] != "0" || s["fake_kernel"] != "yes" || !strings.HasPrefix(s["responder"], "127.") || !strings.HasPrefix(s["initiator"], "127.") {
		t.Errorf("load-tester settings %v", s)
	}
	if cr.Conns[0].Remote.ID != loadTesterMatch || len(cr.Secrets.IKE) != 1 || len(cr.Secrets.IKE[0].IDs) != 0 ||
		string(cr.Secrets.IKE[0].Secret) != string(loadTesterPSK) {
		t.Errorf("peer %+v, secrets %+v", cr.Conns[0].Remote, cr.Secrets)
	}
	lt, kn := slices.Index(cr.Plugins, "load-tester"), slices.Index(cr.Plugins, "kernel-netlink")
	if lt < 0 || lt > kn || cr.PluginDir != LoadTesterPlugins {
		t.Errorf("plugins %v in %q", cr.Plugins, cr.PluginDir)
	}
}

// TestIkedConfig checks iked's side: the anchor, load-tester's identity
// (quoted: a bare * is a YAML alias) and key.
func TestIkedConfig(t *testing.T) {
	ln := testLine()
	conf, secrets := ikedConfig(ln, ln.GwB, "", false, ikedSide{Anchor: "ike-sa", RemoteID: loadTesterMatch, PSK: loadTesterPSK})
	for _, want := range []string{"ike_anchor: ike-sa\n", `remote: {auth: psk, id: "*.load.gw-a.lab.example"}`, "block_threshold: 1000000\n", "cookie_threshold_ip: 1000000\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if want := "ike:\n  site:\n    secret: 0x" + hex.EncodeToString(loadTesterPSK) + "\n"; secrets != want {
		t.Errorf("secrets %q, want %q", secrets, want)
	}
	conf, secrets = ikedConfig(ln, ln.GwB, "", false, ikedSide{})
	if strings.Contains(conf, "ike_anchor") || !strings.Contains(conf, `id: "gw-a.lab.example"`) || !strings.Contains(secrets, "id: [gw-a.lab.example, gw-b.lab.example]") {
		t.Errorf("default side:\n%s\n%s", conf, secrets)
	}
}

func TestIKECPURatios(t *testing.T) {
	runs := []IKERun{
		{Initiator: InitLoadTester, Responder: RespCharonFake, Auth: "psk", CPUPerSA: 0.5},
		{Initiator: InitLoadTester, Responder: RespIked, Auth: "psk", CPUPerSA: 0.4, DataPlaneCPUPerSA: 0.1},
		{Initiator: InitLoadTester, Responder: RespIkedIKESA, Auth: "psk", CPUPerSA: 0.2, DataPlaneCPUPerSA: 0.05},
		{Initiator: InitLoadTester, Responder: RespCharon, Auth: "psk", CPUPerSA: 2},
		// Failed runs and other initiators have no ratio.
		{Initiator: InitLoadTester, Responder: RespIked, Auth: "psk", CPUPerSA: 9, Error: "x"},
		{Initiator: "iked", Responder: RespIked, Auth: "psk", CPUPerSA: 1},
	}
	got := IKECPURatios(runs)
	if len(got) != 2 || got[0].Responder != RespIked || got[0].CPU != 0.5 || got[0].Ratio != 1 ||
		got[1].Responder != RespIkedIKESA || got[1].Ratio != 0.5 {
		t.Errorf("ratios %+v", got)
	}
	for _, n := range []string{RespIked, RespIkedIKESA, RespCharon, RespCharonFake} {
		if _, _, err := responderKind(n); err != nil {
			t.Error(err)
		}
	}
	if _, _, err := responderKind("racoon"); err == nil || !strings.Contains(err.Error(), "racoon") {
		t.Errorf("unknown responder: %v", err)
	}
}

func TestWorkerDeltas(t *testing.T) {
	before := []ikectl.WorkerStats{{ID: 0, Datagrams: 10, HandedIn: 1}, {ID: 1, Datagrams: 5}}
	after := []ikectl.WorkerStats{{ID: 0, SPU: 0, IKESAs: 600, Datagrams: 1210, HandedIn: 3}, {ID: 1, SPU: 1, IKESAs: 400, Datagrams: 805}}
	got := workerDeltas(before, after)
	want := []IKEWorker{{ID: 0, IKESAs: 600, Datagrams: 1200, HandedIn: 2}, {ID: 1, SPU: 1, IKESAs: 400, Datagrams: 800}}
	if !slices.Equal(got, want) {
		t.Errorf("workers %+v, want %+v", got, want)
	}
	if n := workersNote(got); n != "; workers (IKE SAs/datagrams): 0:600/1200 1:400/800" {
		t.Errorf("note %q", n)
	}
	before[0].SpudWaitNS, after[0].SpudWaitNS, after[1].SpudWaitNS = 1e6, 251e6, 2e6
	got = workerDeltas(before, after)
	if got[0].SpudWaitMS != 250 || got[1].SpudWaitMS != 2 {
		t.Errorf("time blocked on spud: %v and %v ms, want 250 and 2", got[0].SpudWaitMS, got[1].SpudWaitMS)
	}
	if n := workersNote(got); n != "; workers (IKE SAs/datagrams): 0:600/1200 1:400/800; blocked on spud (ms): 0:250 1:2" {
		t.Errorf("note %q", n)
	}
}

// testLine is a line's plan and gateways without a lab behind them.
func testLine() *lab.Line {
	return &lab.Line{Plan: lab.DefaultPlan(), GwA: &lab.Host{Name: "gw-a"}, GwB: &lab.Host{Name: "gw-b"}}
}
