package iked_test

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// gw is one gateway of the lab: spud and iked.
type gw struct {
	name string
	host *lab.Host
	spud *daemons.Spud
	iked *daemons.Iked
}

// testbed is a lab line with spud on both gateways (iked is started per
// test, with its configuration).
type testbed struct {
	ln   *lab.Line
	a, b *gw
}

func newTestbed(t *testing.T, lo lab.LineOptions) *testbed {
	t.Helper()
	return newTestbedWith(t, lo, nil)
}

// newTestbedWith runs setup on the line before spud starts.
func newTestbedWith(t *testing.T, lo lab.LineOptions, setup func(ln *lab.Line)) *testbed {
	t.Helper()
	return newTestbedSpud(t, lo, setup, daemons.SpudOptions{SPUs: testbedSPUs})
}

// newTestbedSpud is newTestbedWith with spud's options.
func newTestbedSpud(t *testing.T, lo lab.LineOptions, setup func(ln *lab.Line), so daemons.SpudOptions) *testbed {
	t.Helper()
	if lo.GatewayLinks.Queues == 0 {
		lo.GatewayLinks.Queues = 2
	}
	lo.NoClearRoutes = true
	ln := labtest.Line(t, lo, "ping")
	tb := &testbed{ln: ln, a: &gw{name: "gw-a", host: ln.GwA}, b: &gw{name: "gw-b", host: ln.GwB}}
	if setup != nil {
		setup(ln)
	}
	for _, g := range []*gw{tb.a, tb.b} {
		s, err := daemons.StartSpud(g.host, so)
		if err != nil {
			t.Fatal(err)
		}
		g.spud = s
		t.Cleanup(func() { s.Stop() })
	}
	lossReport = func() string {
		var b strings.Builder
		for _, g := range []*gw{tb.a, tb.b} {
			st, _ := g.spud.Spuctl("stats")
			for _, l := range strings.Split(st, "\n") {
				if strings.HasPrefix(l, "drops") || strings.HasPrefix(l, "xdp") || strings.Contains(l, "rx_dropped") {
					fmt.Fprintf(&b, "%s spud: %s\n", g.name, l)
				}
			}
		}
		return b.String()
	}
	t.Cleanup(func() {
		lossReport = nil
		if t.Failed() {
			for _, g := range []*gw{tb.a, tb.b} {
				st, _ := g.spud.Spuctl("stats")
				t.Logf("%s spud stats:\n%s", g.name, st)
			}
		}
	})
	return tb
}

// testbedSPUs is the number of SPUs (and so IKE workers) of a testbed's
// gateways.
var testbedSPUs = 2

// start starts iked on a gateway with a configuration; it is stopped and
// its folder removed when the test ends.
func (g *gw) start(t *testing.T, config, secrets string, args ...string) {
	t.Helper()
	k, err := daemons.StartIked(g.spud, daemons.IkedOptions{Config: config, Secrets: secrets, Args: append([]string{"-log-level", "debug"}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	g.iked = k
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- iked on %s ---\n%s", g.name, tail(k.Proc.Log(), 120))
		}
		k.Stop()
		k.Cleanup()
	})
}

// startPSK starts iked on both gateways with the testbed's PSK
// configurations, changed by mod where it is not nil.
func (tb *testbed) startPSK(t *testing.T, mod func(a, b *conf)) {
	t.Helper()
	ca, cb := tb.confs()
	if mod != nil {
		mod(&ca, &cb)
	}
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)
}

// tunnelUp has gw-a initiate the tunnel and checks that it carries a ping.
func (tb *testbed) tunnelUp(t *testing.T) {
	t.Helper()
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, tb.ln.Plan.ClientA4, tb.ln.Plan.ClientB4)
}

// restartWithoutState kills the gateway's iked, removes its state folder
// (lost state) and starts it again.
func (g *gw) restartWithoutState(t *testing.T) {
	t.Helper()
	if err := g.iked.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(g.iked.StateDir); err != nil {
		t.Fatal(err)
	}
	if err := g.iked.Restart(); err != nil {
		t.Fatal(err)
	}
}

// loadResponder lets gw-b take many IKE SAs of the tunnel from gw-a's
// load initiator.
func loadResponder(_, b *conf) {
	b.connExtra = "    unique: never\n"
	b.global = "block_threshold: 100\ncookie_threshold_ip: 100\n"
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (g *gw) spuctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := g.iked.Spuctl(args...)
	if err != nil {
		t.Fatalf("%s: spuctl %s: %v\n%s", g.name, strings.Join(args, " "), err, out)
	}
	return out
}

func (g *gw) sas(t *testing.T) []ikectl.IKESA {
	t.Helper()
	l, err := g.iked.Client.SAs()
	if err != nil {
		t.Fatalf("%s: list-sas: %v", g.name, err)
	}
	return l
}

// dump returns spud's SAs and policies on a gateway.
func (g *gw) dump(t *testing.T) ([]api.SAState, []api.PolicyState) {
	t.Helper()
	sas, err := g.spud.Client.DumpSAs(false)
	if err != nil {
		t.Fatal(err)
	}
	pols, err := g.spud.Client.DumpPolicies()
	if err != nil {
		t.Fatal(err)
	}
	return sas, pols
}

// waitFor polls cond every 50 ms up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// lossReport, set while a testbed lives, says what the data planes
// dropped.
var lossReport func() string

var receivedRe = regexp.MustCompile(`(\d+) received`)

// ping sends count pings after one warm-up and returns how many came back.
func ping(t *testing.T, h *lab.Host, src, dst netip.Addr, count int) int {
	t.Helper()
	args := []string{"-n", "-i", "0.05", "-W", "2"}
	if src.IsValid() {
		args = append(args, "-I", src.String())
	}
	h.Exec("ping", append(append([]string{}, args...), "-c", "1", dst.String())...)
	out, _ := h.Exec("ping", append(args, "-c", strconv.Itoa(count), dst.String())...)
	m := receivedRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s: %s", dst, out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// mustPing wants 5 of 5 pings through; a loss on a loaded machine (the data
// plane's, not the tunnel's) gets one more round of 5, logged.
func mustPing(t *testing.T, h *lab.Host, src, dst netip.Addr) {
	t.Helper()
	n := ping(t, h, src, dst, 5)
	if n == 5 {
		return
	}
	t.Logf("%s -> %s: %d of 5 pings came back; once more", h.Name, dst, n)
	if lossReport != nil {
		t.Log(lossReport())
	}
	if n = ping(t, h, src, dst, 5); n != 5 {
		t.Errorf("%s -> %s: %d of 5 pings came back", h.Name, dst, n)
	}
}

// conf is one gateway's configuration of connection "tun".
type conf struct {
	local, remote     netip.Addr
	localID, remoteID string
	ike, esp          string
	localTS, remoteTS string
	connExtra         string
	childExtra        string
	global            string
	// retransmit, when set, replaces the retransmission settings (1 s,
	// 3 tries).
	retransmit string
	// remoteAddrs, when set, replaces remote in remote_addrs (e.g. %any).
	remoteAddrs string
}

func (c conf) yaml() string {
	if c.ike == "" {
		c.ike = "aes128gcm16-prfsha256-x25519"
	}
	if c.esp == "" {
		c.esp = "aes128gcm16"
	}
	remote := c.remote.String()
	if c.remoteAddrs != "" {
		remote = c.remoteAddrs
	}
	if c.retransmit == "" {
		c.retransmit = "retransmit_timeout: 1s\nretransmit_tries: 3\n"
	}
	return c.global + c.retransmit + fmt.Sprintf(`connections:
  tun:
    local_addrs: %s
    remote_addrs: %q
    proposals: %s
%s    local:
      auth: psk
      id: %s
    remote:
      auth: psk
      id: %s
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
%s`, c.local, remote, c.ike, c.connExtra, c.localID, c.remoteID, c.localTS, c.remoteTS, c.esp, c.childExtra)
}

func secrets(psk string, ids ...string) string {
	return fmt.Sprintf("ike:\n  s:\n    id: [%s]\n    secret: %q\n", strings.Join(ids, ", "), psk)
}

// confs returns matching configurations of gw-a and gw-b.
func (tb *testbed) confs() (a, b conf) {
	p := tb.ln.Plan
	a = conf{local: p.GwAWan4, remote: p.GwBWan4, localID: "gw-a.example", remoteID: "gw-b.example",
		localTS: p.LanA4.String() + "," + p.LanA6.String(), remoteTS: p.LanB4.String() + "," + p.LanB6.String()}
	b = conf{local: p.GwBWan4, remote: p.GwAWan4, localID: "gw-b.example", remoteID: "gw-a.example",
		localTS: p.LanB4.String() + "," + p.LanB6.String(), remoteTS: p.LanA4.String() + "," + p.LanA6.String()}
	return a, b
}

const psk = "lab pre-shared key, 32 bytes long"

func sasID(s api.SAState) api.SAID {
	id := api.SAID{SPI: s.SPI, Dir: s.Dir}
	if s.Dir == api.Out {
		id.Remote = s.Remote
	}
	return id
}

// restartSpud starts spud again on a gateway, with the same socket and key
// file, after it was stopped.
func restartSpud(g *gw) (*daemons.Spud, error) {
	s, err := daemons.StartSpud(g.host, daemons.SpudOptions{SPUs: 2})
	if err != nil {
		return nil, err
	}
	old := g.spud
	g.spud = s
	*old = *s
	return s, nil
}

// pingUp waits (up to 3 s) for a first ping to pass, then wants 5 of 5:
// charon with kernel-libipsec lists a Child SA as installed a moment before
// the route into its TUN device exists.
func pingUp(t *testing.T, h *lab.Host, src, dst netip.Addr) {
	t.Helper()
	waitFor(3*time.Second, func() bool { return ping(t, h, src, dst, 1) == 1 })
	mustPing(t, h, src, dst)
}
