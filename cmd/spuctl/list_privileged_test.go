package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
	"golang.org/x/sys/unix"
)

// BenchmarkPrivilegedSAList runs spuctl sa list, the binary as an operator
// runs it, against a real spud holding many SAs: SPUGATE_LIST_SAS inbound
// SAs (default 20,000; the figure is taken with 1000000),
// installed through the SA API over a few connections, many sa.add in
// flight on each. It reports the listing's wall time and the CPU time of
// spuctl and of spud meanwhile, per million SAs, text and -json (every
// line counted), spud's less what it burns idle (spud-net), and spud's
// resident memory per SA.
func BenchmarkPrivilegedSAList(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("SPUGATE_LIST_SAS")); err == nil && v > 0 {
		n = v
	}
	ln := labtest.Line(b, lab.LineOptions{})
	s, err := daemons.StartSpud(ln.GwA, daemons.SpudOptions{SPUs: 2})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Stop() })
	rss0 := procRSS(s.Proc.PID)
	start := time.Now()
	if err := installSAs(s.Socket, ln.Plan.GwAWan4, n); err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	rss := procRSS(s.Proc.PID)
	b.Logf("%d SAs installed in %v (%.0f/s); spud's RSS %d MiB, %.0f bytes an SA over the empty spud's", n, took.Round(time.Millisecond),
		float64(n)/took.Seconds(), rss>>20, float64(rss-rss0)/float64(n))
	bin, err := daemons.Binaries()
	if err != nil {
		b.Fatal(err)
	}
	// What spud burns without a listing (its SPUs' idle passes, the
	// lifetime sweeps over every SA, the collector), taken out of its
	// listing CPU as spud-net: at 200,000 SAs it was about half of it.
	idle0, t0 := procCPU(s.Proc.PID), time.Now()
	time.Sleep(5 * time.Second)
	idleRate := float64(procCPU(s.Proc.PID)-idle0) / float64(time.Since(t0))
	b.Logf("spud idle: %.1f%% of a core", 100*idleRate)
	for _, asJSON := range []bool{false, true} {
		b.Run(fmt.Sprintf("json=%v", asJSON), func(b *testing.B) {
			args := []string{"-s", s.Socket, "sa", "list"}
			if asJSON {
				args = append(args, "-json")
			}
			var wall, cpu, spud time.Duration
			for b.Loop() {
				spud0 := procCPU(s.Proc.PID)
				t0 := time.Now()
				lines, c, err := runCounting(filepath.Join(bin, "spuctl"), args...)
				wall += time.Since(t0)
				spud += procCPU(s.Proc.PID) - spud0
				cpu += c
				if err != nil {
					b.Fatal(err)
				}
				if want := n * (3 - btoi(asJSON)*2); lines != want {
					b.Fatalf("%d lines, want %d", lines, want)
				}
			}
			per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) / float64(n) * 1e6 }
			b.ReportMetric(per(wall), "s/1M")
			b.ReportMetric(per(cpu), "spuctl-cpu-s/1M")
			b.ReportMetric(per(spud), "spud-cpu-s/1M")
			b.ReportMetric(per(spud-time.Duration(idleRate*float64(wall))), "spud-net-cpu-s/1M")
			b.ReportMetric(float64(n), "sas")
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// installSAs installs n inbound SAs with local as their local end over a
// few connections, many requests in flight on each.
func installSAs(sock string, local netip.Addr, n int) error {
	const conns, inFlight = 4, 32
	key := make([]byte, ipsec.AES128GCM16.EncKeyLen())
	var wg sync.WaitGroup
	errs := make(chan error, conns*inFlight)
	next := make(chan int, 1024)
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
	}()
	for range conns {
		c, err := api.Dial(sock)
		if err != nil {
			return err
		}
		defer c.Close()
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					remote := netip.AddrFrom4([4]byte{198, 19, byte(i >> 16), byte(i >> 8)})
					rts := ipsec.PrefixSelector(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), 0)
					// Rotated, so that the SPIs' top bits, their logical
					// SPU, spread the SAs over the SPUs.
					sa := &api.SA{SPI: bits.RotateLeft32(0x10000+uint32(i), -8), Dir: api.In, Local: local, Remote: remote, Mode: api.Tunnel,
						Suite: ipsec.AES128GCM16, EncKey: key, ReqID: uint32(i + 1), Name: "list/" + strconv.Itoa(i),
						LocalTS:  []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.128.0/24"), 0)},
						RemoteTS: []ipsec.Selector{rts}}
					err := c.AddSA(sa)
					for try := 0; try < 5 && stalled(err); try++ {
						// An SPU that did not take the command in time
						// (this machine's other loads): the SA may or may
						// not be in; again, and its being there is fine.
						time.Sleep(time.Second)
						if err = c.AddSA(sa); errors.Is(err, unixrpc.ErrExists) {
							err = nil
						}
					}
					if err != nil {
						errs <- fmt.Errorf("SA %d of %d: %w", i, n, err)
						for range next {
						}
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs)
}

// stalled reports whether err is spud's SPU not taking a command in
// time.
func stalled(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "did not run a command") || strings.Contains(err.Error(), "command queue full"))
}

// runCounting runs a command, counting the lines of its output, and
// returns them with the command's CPU time.
func runCounting(name string, args ...string) (int, time.Duration, error) {
	cmd := exec.Command(name, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	lines := 0
	r := bufio.NewReaderSize(out, 1<<20)
	buf := make([]byte, 1<<20)
	for {
		k, err := r.Read(buf)
		lines += bytes.Count(buf[:k], []byte{'\n'})
		if err != nil {
			break
		}
	}
	err = cmd.Wait()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return lines, cpu, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return lines, cpu, nil
}

// procCPU is the CPU time process pid has used, user and system.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command's name, which ends at the last ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ, which Linux fixes for /proc
	return time.Duration(ut+st) * time.Second / hz
}

// procRSS is the resident memory of process pid, in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(unix.Getpagesize())
}
