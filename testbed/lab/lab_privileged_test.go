package lab_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

func ping(t *testing.T, h *lab.Host, dst netip.Addr) {
	t.Helper()
	out, err := h.Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", dst.String())
	if err != nil {
		t.Errorf("%s: ping %s: %v\n%s", h.Name, dst, err, out)
	}
}

func TestPrivilegedLineEndToEnd(t *testing.T) {
	var runID string
	var leftovers func() ([]string, error)
	t.Run("line", func(t *testing.T) {
		ln := labtest.Line(t, lab.LineOptions{GatewayLinks: lab.LinkOptions{Queues: 2, Threaded: true}}, "ping")
		runID, leftovers = ln.RunID, ln.Leftovers
		p := ln.Plan
		ping(t, ln.ClientA, p.ClientB4)
		ping(t, ln.ClientA, p.ClientB6)
		ping(t, ln.ClientB, p.ClientA4)
		ping(t, ln.ClientB, p.ClientA6)
		// The gateways' links have the queues asked for.
		out, err := ln.GwA.Exec("ls", "/sys/class/net/wan0/queues")
		if err != nil || !strings.Contains(string(out), "rx-1") {
			t.Errorf("gw-a wan0 queues: %v %s", err, out)
		}
	})
	if leftovers == nil {
		return // skipped
	}
	left, err := leftovers()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Fatalf("run %s left behind: %v", runID, left)
	}
}

func TestPrivilegedLineThroughNAT(t *testing.T) {
	ln := labtest.Line(t, lab.LineOptions{NAT: true}, "ping")
	p := ln.Plan
	ping(t, ln.ClientA, p.ClientB4)
	ping(t, ln.ClientA, p.ClientB6)
	// gw-b sees gw-a's traffic from the NAT's outside address.
	var got netip.Addr
	err := ln.GwB.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: p.GwBWan4.AsSlice(), Port: 4500})
		if err != nil {
			return err
		}
		defer c.Close()
		done := make(chan error, 1)
		go func() {
			_, err := ln.GwA.Exec("bash", "-c", fmt.Sprintf("echo hi > /dev/udp/%s/4500", p.GwBWan4))
			done <- err
		}()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 64)
		_, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		got = from.Addr().Unmap()
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != p.NatOut4 {
		t.Errorf("gw-b saw gw-a's datagram from %s, want the NAT's %s", got, p.NatOut4)
	}
	if err := ln.FlushNAT(); err != nil {
		t.Errorf("flush NAT: %v", err)
	}
}

func TestPrivilegedProcesses(t *testing.T) {
	l := labtest.New(t, "sleep")
	h, err := l.AddHost("h1", false)
	if err != nil {
		t.Fatal(err)
	}
	// A process that ignores SIGTERM is still stopped (by SIGKILL).
	stubborn, err := h.Start("stubborn", []string{"sh", "-c", "trap '' TERM; echo started; while :; do sleep 0.1; done"}, lab.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	short, err := h.Start("short", []string{"sh", "-c", "echo bye; exit 3"}, lab.StartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exited, err := short.Wait(5 * time.Second); !exited || err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("short: exited %v, %v", exited, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stubborn.Log(), "started") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := stubborn.Stop(); err != nil {
		t.Fatal(err)
	}
	if exited, _ := stubborn.Exited(); !exited {
		t.Error("stubborn process still running after Stop")
	}
	if !strings.Contains(short.Log(), "bye") {
		t.Errorf("short's log: %q", short.Log())
	}
	// The process really ran in the host's namespace.
	out, err := h.Exec("ip", "-o", "link")
	if err != nil || strings.Contains(string(out), "eth0") || !strings.Contains(string(out), "lo") {
		t.Errorf("host sees links %q (%v)", out, err)
	}
}

// TestPrivilegedCrashLeftoversAreSwept runs a child that builds a lab and
// dies by SIGKILL (no cleanup at all), and one that is interrupted by
// SIGINT (cleanup by the handler); then checks that a new lab's sweep
// removes the first's namespaces and that the second left nothing.
func TestPrivilegedCrashLeftoversAreSwept(t *testing.T) {
	privileged.Require(t, "ip")
	if os.Getenv("SPUGATE_LAB_CHILD") != "" {
		t.Skip("inside the child")
	}
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run", "^TestLabChild$", "-test.v")
			cmd.Env = append(os.Environ(), "SPUGATE_LAB_CHILD=1")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			// The child prints its run ID once its lab is built.
			buf := make([]byte, 4096)
			var runID string
			var seen strings.Builder
			deadline := time.Now().Add(30 * time.Second)
			for runID == "" && time.Now().Before(deadline) {
				n, err := stdout.Read(buf)
				seen.Write(buf[:n])
				if i := strings.Index(seen.String(), "RUNID="); i >= 0 && len(seen.String()) >= i+12 {
					runID = seen.String()[i+6 : i+12]
				}
				if err != nil {
					break
				}
			}
			if runID == "" {
				t.Fatalf("child never reported its lab: %q", seen.String())
			}
			if n := countNS(t, runID); n != 2 {
				t.Fatalf("child's lab has %d namespaces, want 2", n)
			}
			cmd.Process.Signal(sig)
			cmd.Wait()
			if sig == syscall.SIGKILL {
				if n := countNS(t, runID); n != 2 {
					t.Fatalf("after SIGKILL, %d namespaces, want the 2 leftovers", n)
				}
				removed, err := lab.Sweep(t.Logf)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(strings.Join(removed, " "), runID) {
					t.Errorf("sweep removed %v, not %s", removed, runID)
				}
			}
			if n := countNS(t, runID); n != 0 {
				t.Errorf("after %v and sweep, %d namespaces of run %s remain", sig, n, runID)
			}
			if _, err := os.Stat(lab.StateDir + "/" + runID + ".json"); !os.IsNotExist(err) {
				t.Errorf("state file of run %s remains", runID)
			}
		})
	}
}

func countNS(t *testing.T, runID string) int {
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(out), lab.NamePrefix+runID+"-")
}

// TestLabChild is the child of TestPrivilegedCrashLeftoversAreSwept.
func TestLabChild(t *testing.T) {
	if os.Getenv("SPUGATE_LAB_CHILD") == "" {
		t.Skip("only run as the child of TestPrivilegedCrashLeftoversAreSwept")
	}
	l, err := lab.New(lab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := l.AddHost("a", false)
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Link(a, "eth0", b, "eth0", lab.LinkOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Start("sleeper", []string{"sleep", "60"}, lab.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RUNID=%s\n", l.RunID)
	os.Stdout.Sync()
	time.Sleep(60 * time.Second)
}

func TestPrivilegedLineThroughRouter(t *testing.T) {
	ln := labtest.Line(t, lab.LineOptions{Router: true}, "ping")
	p := ln.Plan
	ping(t, ln.ClientA, p.ClientB4)
	ping(t, ln.ClientB, p.ClientA4)
	ping(t, ln.ClientA, p.ClientB6)
	ping(t, ln.GwB, p.GwAWan4)
}

// TestPrivilegedNATProbe keeps lab.MissingNAT honest: NAT tests skip on its
// word, so a probe that fails for its own reasons (a syntax error, say)
// would skip them everywhere. Its answer must agree with building a line
// through a NAT box.
func TestPrivilegedNATProbe(t *testing.T) {
	privileged.Require(t, "ip", "ethtool", "nft", "conntrack")
	why := lab.MissingNAT()
	l := labtest.New(t)
	_, err := lab.BuildLine(l, lab.LineOptions{NAT: true})
	if (why == "") != (err == nil) {
		t.Errorf("the probe says %q, building a line through NAT: %v", why, err)
	}
}
