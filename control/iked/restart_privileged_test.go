package iked_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/lab"
)

var statsRe = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingFlood runs ping for about d at 50 pings a second in the background;
// the result is sent, received.
func pingFlood(h *lab.Host, src, dst netip.Addr, d time.Duration) <-chan [2]int {
	out := make(chan [2]int, 1)
	n := int(d / (20 * time.Millisecond))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
		defer cancel()
		b, _ := h.ExecContext(ctx, "ping", "-n", "-i", "0.02", "-W", "1", "-c", strconv.Itoa(n), "-I", src.String(), dst.String())
		m := statsRe.FindSubmatch(b)
		if m == nil {
			out <- [2]int{-1, -1}
			return
		}
		s, _ := strconv.Atoi(string(m[1]))
		r, _ := strconv.Atoi(string(m[2]))
		out <- [2]int{s, r}
	}()
	return out
}

// TestPrivilegedIkedRestart kills iked on gw-a with SIGKILL during
// traffic and starts it again: traffic never stops, the restored IKE SA
// answers liveness checks, replaces its Child SA at its rekey time and is
// deleted normally; what spud held under iked's name that no IKE SA owns
// is removed after the grace period, and what others installed stays.
func TestPrivilegedIkedRestart(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	for _, c := range []*conf{&ca, &cb} {
		c.connExtra = "    dpd_delay: 3s\n"
		c.childExtra = "        rekey_time: 12s\n        life_time: 40s\n        rand_time: 2s\n"
	}
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec, "-grace", "2s")
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	before := tb.a.sas(t)
	if len(before) != 1 || len(before[0].Children) != 1 {
		t.Fatalf("before: %+v", before)
	}
	// An orphan under iked's name (a Child SA iked installed but never
	// persisted) and a manually keyed SA that is not iked's.
	for _, s := range []*api.SA{
		{SPI: 0x00abcdef, Dir: api.In, Local: pl.GwAWan4, Remote: pl.GwBWan4, Mode: api.Tunnel, Suite: ipsec.AES128GCM16,
			EncKey: make([]byte, 20), ReqID: 999, Name: "iked/tun/net/999"},
		{SPI: 0x00abcdee, Dir: api.In, Local: pl.GwAWan4, Remote: pl.GwBWan4, Mode: api.Tunnel, Suite: ipsec.AES128GCM16,
			EncKey: make([]byte, 20), ReqID: 998, Name: "static"},
	} {
		if err := tb.a.spud.Client.AddSA(s); err != nil {
			t.Fatal(err)
		}
	}

	flood := pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 6*time.Second)
	time.Sleep(time.Second)
	if err := tb.a.iked.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	restart := time.Now()
	if err := tb.a.iked.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("iked back after %v", time.Since(restart))
	res := <-flood
	t.Logf("ping during the crash and restart: %d sent, %d received", res[0], res[1])
	if res[0] <= 0 || res[1] != res[0] {
		t.Errorf("traffic stopped: %d of %d pings came back", res[1], res[0])
	}
	after := tb.a.sas(t)
	if len(after) != 1 || after[0].SPIi != before[0].SPIi || len(after[0].Children) != 1 ||
		after[0].Children[0].SPIIn != before[0].Children[0].SPIIn {
		t.Fatalf("after the restart: %+v, before %+v", after, before)
	}
	if !strings.Contains(tb.a.iked.Proc.Log(), "IKE SA restored") {
		t.Errorf("no restore logged")
	}
	// The orphan goes after the grace period; the static SA stays.
	if !waitFor(10*time.Second, func() bool {
		sas, _ := tb.a.dump(t)
		for _, s := range sas {
			if s.SPI == 0x00abcdef {
				return false
			}
		}
		return true
	}) {
		t.Errorf("the orphan SA was not removed")
	}
	sas, _ := tb.a.dump(t)
	static := false
	for _, s := range sas {
		static = static || s.SPI == 0x00abcdee
	}
	if !static {
		t.Errorf("an SA that is not iked's was removed")
	}
	tb.a.spud.Client.DelSA(api.SAID{SPI: 0x00abcdee, Dir: api.In})

	// The restored IKE SA replaces its Child SA at its rekey time (10-12 s
	// after it was installed) and keeps passing traffic meanwhile.
	flood = pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 14*time.Second)
	replaced := waitFor(20*time.Second, func() bool {
		l := tb.a.sas(t)
		return len(l) == 1 && len(l[0].Children) == 1 && l[0].Children[0].SPIIn != before[0].Children[0].SPIIn &&
			l[0].Children[0].State == "INSTALLED"
	})
	res = <-flood
	if !replaced {
		t.Errorf("Child SA not replaced after the restart: %+v", tb.a.sas(t))
	}
	t.Logf("ping across the replacement: %d sent, %d received", res[0], res[1])
	if res[0] <= 0 || res[1] < res[0]-1 {
		t.Errorf("traffic lost across the Child SA replacement: %d of %d", res[1], res[0])
	}
	if st := tb.a.spuctl(t, "ike-stats"); strings.Contains(st, "dpd_timeout") || strings.Contains(st, "invalid_message_id") {
		t.Errorf("liveness checks or message ids broke after the restart:\n%s", st)
	}
	tb.a.spuctl(t, "terminate", "tun")
	gone(t, tb.a, tb.b)
}

// TestPrivilegedIkedSpudRestart restarts spud under iked: iked reconnects
// and installs its SAs and policies again.
func TestPrivilegedIkedSpudRestart(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	tb.startPSK(t, nil)
	tb.tunnelUp(t)
	// The outage: pings every 20 ms across a SIGKILL of spud and its
	// restart at once; each lost one is 20 ms without the tunnel.
	flood := pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 8*time.Second)
	time.Sleep(time.Second)
	if err := tb.b.spud.Proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tb.b.spud.Proc.Wait(5 * time.Second)
	killed := time.Now()
	_, err := restartSpud(tb.b)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spud restarted in %v", time.Since(killed))
	res := <-flood
	t.Logf("spud SIGKILLed and restarted under traffic: %d of %d pings lost, an outage of about %v",
		res[0]-res[1], res[0], time.Duration(res[0]-res[1])*20*time.Millisecond)
	if res[1] <= 0 {
		t.Errorf("no ping came back across spud's restart")
	}
	if !waitFor(15*time.Second, func() bool {
		sas, pols := tb.b.dump(t)
		return len(sas) == 2 && len(pols) == 1
	}) {
		sas, pols := tb.b.dump(t)
		t.Fatalf("after spud's restart: %d SAs, %d policies", len(sas), len(pols))
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
	// iked says how long spud was away.
	if m := awayRe.FindStringSubmatch(tb.b.iked.Proc.Log()); m == nil {
		t.Error(`iked did not report the outage ("reconnected to spud" with away=)`)
	} else {
		t.Logf("iked: spud away for %s", m[1])
	}
}

var awayRe = regexp.MustCompile(`msg="iked: reconnected to spud" away=(\S+)`)

// TestPrivilegedIkedSpudDisconnect cuts iked's SA API connections while
// both daemons run (as a dump too big for a frame once did): the tunnel
// carries traffic throughout, iked reconnects and resyncs, and a Child SA
// rekey afterwards installs its SAs through the new connections.
func TestPrivilegedIkedSpudDisconnect(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	tb.startPSK(t, nil)
	tb.tunnelUp(t)
	before := tb.b.sas(t)
	if len(before) != 1 || len(before[0].Children) != 1 {
		t.Fatalf("before: %+v", before)
	}
	// One SA API call on each connection, so that every worker has one.
	tb.b.spuctl(t, "list-sas")

	flood := pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 3*time.Second)
	time.Sleep(500 * time.Millisecond)
	n := cutUnixClients(t, tb.b.iked.Proc.PID)
	if n == 0 {
		t.Fatal("iked has no connection to spud to cut")
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(tb.b.iked.Proc.Log(), `msg="iked: reconnected to spud"`) }) {
		t.Fatalf("iked did not reconnect after %d connections were cut", n)
	}
	res := <-flood
	t.Logf("%d SA API connections cut; pings across it: %d of %d lost", n, res[0]-res[1], res[0])
	if res[0] <= 0 || res[1] < res[0]-1 {
		t.Errorf("traffic lost while the SA API connections were cut: %d of %d", res[0]-res[1], res[0])
	}

	tb.b.spuctl(t, "rekey", "tun")
	if !waitFor(10*time.Second, func() bool {
		l := tb.b.sas(t)
		return len(l) == 1 && len(l[0].Children) == 1 && l[0].Children[0].SPIIn != before[0].Children[0].SPIIn &&
			l[0].Children[0].State == "INSTALLED"
	}) {
		t.Fatalf("no Child SA rekey after the reconnection: %+v", tb.b.sas(t))
	}
	if !waitFor(5*time.Second, func() bool {
		sas, _ := tb.b.dump(t)
		for _, s := range sas {
			if s.SPI == tb.b.sas(t)[0].Children[0].SPIIn {
				return true
			}
		}
		return false
	}) {
		t.Error("the rekeyed Child SA's inbound SA is not in spud")
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
	if st := tb.b.spuctl(t, "ike-stats"); strings.Contains(st, "data_plane_error") {
		t.Errorf("SA API calls failed after the reconnection:\n%s", st)
	}
}

// cutUnixClients shuts down the connected unix stream sockets of process
// pid that have no name (its client connections: iked's to spud), through
// copies taken with pidfd_getfd: the process sees its peer hang up.
func cutUnixClients(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		t.Fatal(err)
	}
	clients := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		// Num RefCount Protocol Flags Type St Inode [Path]
		f := strings.Fields(l)
		if len(f) == 7 && f[4] == "0001" && f[5] == "03" {
			clients[f[6]] = true
		}
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v (needs Linux 5.3)", err)
	}
	defer unix.Close(pidfd)
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") || !clients[strings.Trim(link[len("socket:"):], "[]")] {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		dup, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			t.Skipf("pidfd_getfd: %v (needs Linux 5.6)", err)
		}
		if err := unix.Shutdown(dup, unix.SHUT_RDWR); err != nil {
			t.Errorf("shutdown of fd %d: %v", fd, err)
		}
		unix.Close(dup)
		n++
	}
	return n
}
