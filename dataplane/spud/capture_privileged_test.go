package spud_test

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedCapture runs spuctl capture, the binary as an operator
// does, on a gateway while pings cross a tunnel, and has Debian's tshark
// read the file: the tunnel's ESP with its SPIs at esp-in and esp-out,
// the ICMP cleartext at clear-in and clear-out; then a drop with its
// reason (unknown_spi, no_sa),
// written to standard output (-w -) and read by tshark from a pipe.
func TestPrivilegedCapture(t *testing.T) {
	privileged.Require(t, "tshark")
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{})
	pl := p.ln.Plan
	tn := newTunnel(7, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	install(t, p, tn)
	// A second tunnel between the same endpoints.
	install(t, p, newTunnel(8, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA6}, []netip.Prefix{pl.LanB6}, ipsec.AES128GCM16, false))
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	bin, err := daemons.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	spuctl := filepath.Join(bin, "spuctl")
	file := filepath.Join(t.TempDir(), "tunnel.pcapng")
	// Start a capture and wait for spuctl to say it runs.
	start := func(args ...string) (*exec.Cmd, *strings.Builder) {
		t.Helper()
		cmd := exec.Command(spuctl, append([]string{"-s", p.a.Socket, "capture"}, args...)...)
		var out strings.Builder
		cmd.Stdout = &out
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stderr)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "spuctl: capturing") {
			cmd.Wait()
			t.Fatalf("spuctl capture %v: %q", args, sc.Text())
		}
		go func() {
			for sc.Scan() {
				t.Log(sc.Text())
			}
		}()
		return cmd, &out
	}
	cmd, _ := start("--reqid", "7", "--count", "12", "--duration", "30s", "-w", file)
	if n := ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 3); n != 3 {
		t.Errorf("%d of 3 pings came back while capturing", n)
	}
	t0 := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spuctl capture: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("spuctl capture took %v to stop at its count", d)
	}
	tshark := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command("tshark", append([]string{"-n", "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name",
			"-e", "esp.spi", "-e", "icmp.type"}, args...)...).Output()
		if err != nil {
			t.Fatalf("tshark %v: %v", args, err)
		}
		return strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	lines := tshark("-r", file)
	t.Logf("tshark -r %s:\n%s", file, strings.Join(lines, "\n"))
	if len(lines) != 12 {
		t.Errorf("tshark read %d packets, want 12", len(lines))
	}
	seen := map[string]int{}
	for _, l := range lines {
		f := strings.Split(l, "|")
		if len(f) != 3 {
			t.Fatalf("tshark line %q", l)
		}
		point := f[0][strings.Index(f[0], " ")+1:]
		seen[point]++
		switch point {
		case "esp-out":
			if f[1] != fmt.Sprintf("0x%08x", tn.SPIAB) {
				t.Errorf("esp-out with spi %s, want 0x%08x", f[1], tn.SPIAB)
			}
		case "esp-in":
			if f[1] != fmt.Sprintf("0x%08x", tn.SPIBA) {
				t.Errorf("esp-in with spi %s, want 0x%08x", f[1], tn.SPIBA)
			}
		case "clear-in", "clear-out":
			// Echo requests go in, replies come out.
			if want := map[string]string{"clear-in": "8", "clear-out": "0"}[point]; f[2] != want || f[1] != "" {
				t.Errorf("%s: icmp type %q spi %q, want ICMP type %s in the clear", point, f[2], f[1], want)
			}
		default:
			t.Errorf("a packet on interface %q", f[0])
		}
	}
	for _, pt := range []string{"esp-in", "clear-out", "clear-in", "esp-out"} {
		if seen[pt] != 3 {
			t.Errorf("%d packets at %s, want 3 (%v)", seen[pt], pt, seen)
		}
	}

	// Drops with their reason, to standard output: the replies of the
	// tunnel once gw-a's inbound SA is gone (unknown_spi: the second
	// tunnel keeps gw-a's endpoint one the steering program takes ESP
	// for), then its requests once the outbound SA is gone too (no_sa).
	if err := p.a.Client.DelSA(api.SAID{SPI: tn.SPIBA, Dir: api.In}); err != nil {
		t.Fatal(err)
	}
	cmd, out := start("--point", "drop", "--count", "3", "--duration", "30s", "-w", "-")
	ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 1)
	if err := p.a.Client.DelSA(api.SAID{SPI: tn.SPIAB, Dir: api.Out, Remote: tn.BEnd}); err != nil {
		t.Fatal(err)
	}
	ping(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4, 1)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spuctl capture -w -: %v", err)
	}
	ts := exec.Command("tshark", "-n", "-r", "-", "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name",
		"-e", "esp.spi", "-e", "icmp.type")
	ts.Stdin = strings.NewReader(out.String())
	got, err := ts.Output()
	if err != nil {
		t.Fatalf("tshark -r -: %v", err)
	}
	t.Logf("tshark -r -:\n%s", got)
	for _, want := range []string{fmt.Sprintf("drop unknown_spi|0x%08x|\n", tn.SPIBA), "drop no_sa||8\n"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("tshark -r - read no packet on an interface \"spuN %s\"", strings.TrimSpace(want))
		}
	}

	// ^C ends a capture without limits: the file is whole, and spud
	// takes the next capture at once.
	cmd, _ = start("-w", file)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("spuctl capture after ^C: %v", err)
	}
	tshark("-r", file)

	// A second capture and an unknown tunnel are refused clearly.
	c, err := api.Dial(p.a.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.CaptureStart(api.CaptureStart{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CaptureStart(api.CaptureStart{}); err == nil || !strings.Contains(err.Error(), "one at a time") {
		t.Errorf("a second capture: %v", err)
	}
	if _, err := c.CaptureStart(api.CaptureStart{Tunnel: "nosuch"}); err == nil || !strings.Contains(err.Error(), `"nosuch": no SA has this name`) {
		t.Errorf("capture of an unknown tunnel: %v", err)
	}
	if err := c.CaptureStop(st.ID); err != nil {
		t.Error(err)
	}
}
