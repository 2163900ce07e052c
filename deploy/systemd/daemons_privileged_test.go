package systemd_test

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/internal/sdnotify"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// boundingSet is setpriv's --bounding-set for a unit's
// CapabilityBoundingSet: what root keeps under the unit.
func boundingSet(t *testing.T, unit string) string {
	t.Helper()
	v := directive(t, unit, "CapabilityBoundingSet")
	if len(v) != 1 {
		t.Fatalf("%s: CapabilityBoundingSet %q", unit, v)
	}
	set := []string{"-all"}
	for _, c := range strings.Fields(v[0]) {
		set = append(set, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	return strings.Join(set, ",")
}

// service is a daemon started as its unit starts it: with the unit's
// capability bounding set, no new privileges, and a NOTIFY_SOCKET and
// WATCHDOG_USEC of the test's.
type service struct {
	t      *testing.T
	name   string
	proc   *lab.Proc
	notify *sdnotify.Receiver
}

func start(t *testing.T, h *lab.Host, unit, name string, argv ...string) *service {
	t.Helper()
	r, err := sdnotify.Listen(filepath.Join(t.TempDir(), "notify"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	// CapabilityBoundingSet= and NoNewPrivileges=yes. Not LimitMEMLOCK=:
	// raising it takes CAP_SYS_RESOURCE, which a test in a container may
	// not have; the daemons work under a small limit (8 MiB here), the
	// UMEM by CAP_IPC_LOCK, the BPF maps charged to the cgroup.
	argv = append([]string{"setpriv", "--bounding-set=" + boundingSet(t, unit), "--no-new-privs"}, argv...)
	// 400 ms: a keep-alive every 200 ms, several within the test.
	p, err := h.Start(name, argv, lab.StartOptions{Env: []string{"NOTIFY_SOCKET=" + r.Path(), "WATCHDOG_USEC=400000"}})
	if err != nil {
		t.Fatal(err)
	}
	return &service{t: t, name: name, proc: p, notify: r}
}

// expect waits for a message with the line want (a prefix), skipping
// keep-alives, and returns it.
func (s *service) expect(want string, within time.Duration) []string {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg, err := s.notify.Receive(100 * time.Millisecond)
		if err != nil {
			if exited, err := s.proc.Exited(); exited && want != "STOPPING=1" {
				s.t.Fatalf("%s exited (%v) before %s\n%s", s.name, err, want, s.proc.Log())
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("%s: no %s within %v\n%s", s.name, want, within, s.proc.Log())
			}
			continue
		}
		if slices.ContainsFunc(msg, func(l string) bool { return strings.HasPrefix(l, want) }) {
			return msg
		}
		if !slices.Equal(msg, []string{"WATCHDOG=1"}) {
			s.t.Fatalf("%s: %q before %s\n%s", s.name, msg, want, s.proc.Log())
		}
	}
}

// stop sends SIGTERM and wants STOPPING=1 and a clean exit.
func (s *service) stop() {
	s.t.Helper()
	if err := s.proc.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatal(err)
	}
	s.expect("STOPPING=1", 10*time.Second)
	if ok, err := s.proc.Wait(15 * time.Second); !ok || err != nil {
		s.t.Errorf("%s: exit after SIGTERM: %v %v\n%s", s.name, ok, err, s.proc.Log())
	}
}

// gateway is one end: spud and iked each run as their unit runs them.
type gateway struct {
	spud, iked *service
	spudSock   string
	ikedSock   string
	dir        string
}

func startGateway(t *testing.T, h *lab.Host, bin string, local, remote netip.Addr, localID, remoteID string, lanA, lanB netip.Prefix) *gateway {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "spugate-"+h.NS+"-units")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	g := &gateway{spudSock: filepath.Join(dir, "spud.sock"), ikedSock: filepath.Join(dir, "iked.sock"), dir: dir}
	g.spud = start(t, h, "spud.service", "spud", filepath.Join(bin, "spud"), "-i", "wan0,lan0", "-protected", "lan0",
		"-socket", g.spudSock, "-key-file", filepath.Join(dir, "anchor.key"))
	g.spud.expect("READY=1", 30*time.Second)
	// READY=1 means served: the SA API answers at once.
	c, err := api.Dial(g.spudSock)
	if err != nil {
		t.Fatalf("spud ready but its SA API is not: %v", err)
	}
	if _, err := c.Version(); err != nil {
		t.Fatalf("spud ready but its SA API is not: %v", err)
	}
	c.Close()
	g.spud.expect("WATCHDOG=1", 2*time.Second)

	secrets := fmt.Sprintf("ike:\n  s:\n    id: [%s, %s]\n    secret: %q\n", localID, remoteID, "lab pre-shared key, 32 bytes long")
	conf := fmt.Sprintf(`spud: %s
control: %s
secrets: secrets.yaml
connections:
  tun:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    local:
      auth: psk
      id: %s
    remote:
      auth: psk
      id: %s
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: aes128gcm16
`, g.spudSock, g.ikedSock, local, remote, localID, remoteID, lanA, lanB)
	for name, body := range map[string]string{"iked.yaml": conf, "secrets.yaml": secrets} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	g.iked = start(t, h, "iked.service", "iked", filepath.Join(bin, "iked"), "-config", filepath.Join(dir, "iked.yaml"),
		"-state", filepath.Join(dir, "state"), "-vici", filepath.Join(dir, "vici.sock")) // two ikeds on one machine: not both at the default
	g.iked.expect("READY=1", 30*time.Second)
	g.iked.expect("WATCHDOG=1", 2*time.Second)
	return g
}

// TestPrivilegedUnitsRun starts two gateways' spud and iked as
// spud.service and iked.service start them: the units' capability
// bounding sets (without CAP_SYS_ADMIN) and no new privileges. Each
// daemon says READY=1 once it serves and keeps the watchdog; a tunnel
// comes up and carries a ping; iked's reload is RELOADING=1 with
// MONOTONIC_USEC, then READY=1; SIGTERM is STOPPING=1 and a clean exit.
func TestPrivilegedUnitsRun(t *testing.T) {
	privileged.Require(t, "ip", "setpriv", "ping")
	bin, err := daemons.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := lab.NewLine(lab.Options{}, lab.LineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			ln.MarkFailed()
			t.Log(ln.Report())
		}
		ln.Close()
	}()
	p := ln.Plan
	a := startGateway(t, ln.GwA, bin, p.GwAWan4, p.GwBWan4, "gw-a.example", "gw-b.example", p.LanA4, p.LanB4)
	b := startGateway(t, ln.GwB, bin, p.GwBWan4, p.GwAWan4, "gw-b.example", "gw-a.example", p.LanB4, p.LanA4)

	c, err := ikectl.Dial(a.ikedSock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Initiate(ikectl.Initiate{Conn: "tun", Timeout: 20 * time.Second}); err != nil {
		t.Fatalf("initiate: %v\n%s\n%s", err, a.iked.proc.Log(), b.iked.proc.Log())
	}
	if out, err := ln.ClientA.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", p.ClientB4.String()); err != nil {
		t.Fatalf("ping through the tunnel: %v\n%s", err, out)
	}

	// The operators' calls spuctl version and log-level make.
	if v, err := c.Version(); err != nil || v.Version == "" {
		t.Errorf("iked version: %+v %v", v, err)
	}
	if lv, err := c.LogLevel("debug"); err != nil || lv != "debug" {
		t.Errorf("iked log level: %q %v", lv, err)
	}
	sc, err := api.Dial(a.spudSock)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if lv, err := sc.LogLevel("warn"); err != nil || lv != "warn" {
		t.Errorf("spud log level: %q %v", lv, err)
	}

	if err := a.iked.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	msg := a.iked.expect("RELOADING=1", 5*time.Second)
	if !slices.ContainsFunc(msg, func(l string) bool { return strings.HasPrefix(l, "MONOTONIC_USEC=") }) {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", msg)
	}
	msg = a.iked.expect("READY=1", 10*time.Second)
	if !slices.Contains(msg, "STATUS=configuration reloaded") {
		t.Errorf("reload: %q, want STATUS=configuration reloaded", msg)
	}
	// A configuration that does not load: still READY=1 (iked serves on
	// with the running one), the reason in STATUS=.
	if err := os.WriteFile(filepath.Join(a.dir, "iked.yaml"), []byte("connections: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.iked.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	a.iked.expect("RELOADING=1", 5*time.Second)
	msg = a.iked.expect("READY=1", 10*time.Second)
	if !slices.ContainsFunc(msg, func(l string) bool { return strings.HasPrefix(l, "STATUS=reload failed: ") }) {
		t.Errorf("failed reload: %q, want STATUS=reload failed: ...", msg)
	}
	if _, err := c.Version(); err != nil {
		t.Errorf("iked after a failed reload: %v", err)
	}

	for _, g := range []*gateway{a, b} {
		g.iked.stop()
		g.spud.stop()
	}
}
