package iked_test

import (
	"context"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
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
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
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
}
