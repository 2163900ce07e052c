package iked_test

import (
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/strongswan"
)

// flowRate is the rate of each numbered UDP flow of the rekey tests: well
// within what the 2-core machine forwards through two spuds, so that any
// loss is the tunnel's.
const flowRate = 250

// bothFlows starts a numbered UDP flow each way between the clients.
func bothFlows(t *testing.T, ln *lab.Line, d time.Duration) (ab, ba *flow.Flow) {
	t.Helper()
	p := ln.Plan
	// The path must be up end to end first (the gateways' neighbours
	// resolved): what the flows measure is the rekeys, not the start.
	for _, x := range []struct {
		h        *lab.Host
		src, dst netip.Addr
	}{{ln.ClientA, p.ClientA4, p.ClientB4}, {ln.ClientB, p.ClientB4, p.ClientA4}} {
		if !waitFor(5*time.Second, func() bool { return ping(t, x.h, x.src, x.dst, 1) == 1 }) {
			t.Fatalf("%s -> %s: no ping through the tunnel", x.src, x.dst)
		}
	}
	var err error
	rcvbufStart = map[*lab.Host]uint64{ln.ClientA: rcvbufErrors(ln.ClientA), ln.ClientB: rcvbufErrors(ln.ClientB)}
	flowStart = time.Now()
	if ab, err = flow.Start(flow.Options{From: ln.ClientA, To: ln.ClientB, Src: p.ClientA4, Dst: p.ClientB4, Rate: flowRate,
		Duration: d, Size: 200, Port: 7801, Drain: 2 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if ba, err = flow.Start(flow.Options{From: ln.ClientB, To: ln.ClientA, Src: p.ClientB4, Dst: p.ClientA4, Rate: flowRate,
		Duration: d, Size: 200, Port: 7802, Drain: 2 * time.Second}); err != nil {
		ab.Stop()
		ab.Wait()
		t.Fatal(err)
	}
	return ab, ba
}

// counters returns iked's counters on a gateway.
func (g *gw) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	st, err := g.iked.Client.Stats()
	if err != nil {
		t.Fatalf("%s: ike-stats: %v", g.name, err)
	}
	return st.Counters
}

func delta(after, before map[string]uint64, k string) uint64 { return after[k] - before[k] }

var logTimeRe = regexp.MustCompile(`time=(\S+)`)

// rekeyEvent is a rekey one side initiated, from its log.
type rekeyEvent struct {
	at   time.Time
	side string
	what string
}

// initiatedRekeys lists the rekeys whose new SA stood, as the initiators'
// logs show them, in time order.
func initiatedRekeys(gws ...*gw) []rekeyEvent {
	var out []rekeyEvent
	for _, g := range gws {
		for _, l := range strings.Split(g.iked.Proc.Log(), "\n") {
			what := ""
			switch {
			case strings.Contains(l, `msg="child sa rekeyed"`) && strings.Contains(l, "role=initiator"):
				what = "child"
			case strings.Contains(l, `msg="IKE SA rekeyed"`) && strings.Contains(l, "initiator=true"):
				what = "ike"
			default:
				continue
			}
			m := logTimeRe.FindStringSubmatch(l)
			if m == nil {
				continue
			}
			at, err := time.Parse(time.RFC3339Nano, m[1])
			if err != nil {
				continue
			}
			out = append(out, rekeyEvent{at: at, side: g.name, what: what})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

func sequence(ev []rekeyEvent, what string) string {
	var s []string
	for _, e := range ev {
		if e.what == what {
			s = append(s, strings.TrimPrefix(e.side, "gw-"))
		}
	}
	return strings.Join(s, " ")
}

// settled waits until a gateway holds one IKE SA with one Child SA and
// spud one SA pair (the last rekey's old inbound SA drained), and returns
// the Child SA.
func settled(t *testing.T, g *gw) ikectl.ChildSA {
	t.Helper()
	var last string
	if !waitFor(10*time.Second, func() bool {
		l := g.sas(t)
		sas, pols := g.dump(t)
		last = fmt.Sprintf("%d IKE SAs, %d SAs, %d policies in spud", len(l), len(sas), len(pols))
		return len(l) == 1 && len(l[0].Children) == 1 && l[0].Children[0].State == "INSTALLED" && len(sas) == 2 && len(pols) == 1
	}) {
		t.Fatalf("%s did not settle: %s\n%s", g.name, last, g.spuctl(t, "list-sas"))
	}
	return g.sas(t)[0].Children[0]
}

// flowStart is when bothFlows last started the flows, to put lost
// sequence numbers on the clock of the logs; rcvbufStart the receivers'
// socket overflow counts then.
var (
	flowStart   time.Time
	rcvbufStart map[*lab.Host]uint64
)

// rcvbufErrors reads a host's UDP receive buffer overflows
// (/proc/net/snmp RcvbufErrors): datagrams the kernel delivered to the
// flow's receiver socket and dropped because the receiver (the test
// process, on a busy shared machine) did not read in time. Those are not
// the tunnel's losses.
func rcvbufErrors(h *lab.Host) uint64 {
	out, err := h.Exec("cat", "/proc/net/snmp")
	if err != nil {
		return 0
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				var v uint64
				fmt.Sscan(f[i], &v)
				return v
			}
		}
	}
	return 0
}

// lossTimes turns lost sequence numbers into time ranges.
func lossTimes(lost []uint64) string {
	var b strings.Builder
	for i := 0; i < len(lost); {
		j := i
		for j+1 < len(lost) && lost[j+1] == lost[j]+1 {
			j++
		}
		at := flowStart.Add(time.Duration(lost[i]) * time.Second / flowRate)
		fmt.Fprintf(&b, " %d packets from %s;", j-i+1, at.Format("15:04:05.000"))
		i = j + 1
	}
	return b.String()
}

// checkFlows waits for the flows (the first received at receivers[0] and
// so on) and wants no packet lost or duplicated, apart from what the
// receivers' own sockets overflowed (counted, reported).
func checkFlows(t *testing.T, what string, receivers []*lab.Host, fs ...*flow.Flow) []flow.Result {
	t.Helper()
	var out []flow.Result
	for i, f := range fs {
		r := f.Wait()
		out = append(out, r)
		overflow := rcvbufErrors(receivers[i]) - rcvbufStart[receivers[i]]
		t.Logf("%s flow %d: %s; receiver socket overflows %d", what, i, r, overflow)
		if r.Received == 0 || r.LostCount > overflow || r.Duplicates > 0 {
			t.Errorf("%s flow %d: %s, receiver socket overflows %d (lost:%s)", what, i, r, overflow, lossTimes(r.Lost))
			if lossReport != nil {
				t.Log(lossReport())
			}
		}
	}
	return out
}

// TestPrivilegedRekey runs spugate against spugate in one lab: a 60 s
// flow each way across Child SA rekeys every 10 s and IKE SA rekeys every
// 30 s, taken in turn by both sides; rekeys by bytes and by packets on
// spud's lifetime events; and rekey collisions with the same lifetime on
// both sides. No packet of the numbered flows may be lost or duplicated.
func TestPrivilegedRekey(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	for _, c := range []*conf{&ca, &cb} {
		c.connExtra = "    rekey_time: 30s\n    over_time: 15s\n    rand_time: 0s\n"
		c.childExtra = "        rekey_time: 9s\n        life_time: 30s\n        rand_time: 0s\n"
	}
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)

	t.Run("lifetimes-60s", func(t *testing.T) {
		tb.a.spuctl(t, "initiate", "tun")
		beforeA, beforeB := tb.a.counters(t), tb.b.counters(t)
		logA, logB := len(tb.a.iked.Proc.Log()), len(tb.b.iked.Proc.Log())
		ab, ba := bothFlows(t, tb.ln, 60*time.Second)
		checkFlows(t, "60 s", []*lab.Host{tb.ln.ClientB, tb.ln.ClientA}, ab, ba)
		// Started: every rekey a side's timer began, including those that
		// collided with the peer's and lost.
		startedA := strings.Count(tb.a.iked.Proc.Log()[logA:], `msg="child sa rekey due"`)
		startedB := strings.Count(tb.b.iked.Proc.Log()[logB:], `msg="child sa rekey due"`)
		afterA, afterB := tb.a.counters(t), tb.b.counters(t)
		childA, childB := delta(afterA, beforeA, "child_rekeys_initiated"), delta(afterB, beforeB, "child_rekeys_initiated")
		ikeA, ikeB := delta(afterA, beforeA, "ike_rekeys_initiated"), delta(afterB, beforeB, "ike_rekeys_initiated")
		ev := initiatedRekeys(tb.a, tb.b)
		t.Logf("Child SA rekeys: %d by gw-a, %d by gw-b, in order: %s", childA, childB, sequence(ev, "child"))
		t.Logf("IKE SA rekeys: %d by gw-a, %d by gw-b, in order: %s", ikeA, ikeB, sequence(ev, "ike"))
		t.Logf("collisions: child %d/%d, ike %d/%d", afterA["child_rekey_collisions"], afterB["child_rekey_collisions"],
			afterA["ike_rekey_collisions"], afterB["ike_rekey_collisions"])
		t.Logf("Child SA rekeys started: %d by gw-a, %d by gw-b (a collision starts one on each side)", startedA, startedB)
		if childA+childB < 5 || startedA < 2 || startedB < 2 {
			t.Errorf("Child SA rekeys: %d+%d stood, %d and %d started; want at least 5, started by both sides",
				childA, childB, startedA, startedB)
		}
		if ikeA+ikeB < 1 {
			t.Errorf("no IKE SA rekey in 60 s")
		}
		if retired := delta(afterA, beforeA, "child_sas_rekeyed"); retired != childA+childB {
			t.Errorf("gw-a retired %d Child SAs for %d rekeys", retired, childA+childB)
		}
		sa, sb := settled(t, tb.a), settled(t, tb.b)
		if sa.SPIIn != sb.SPIOut || sa.SPIOut != sb.SPIIn {
			t.Errorf("Child SAs do not pair: %08x/%08x and %08x/%08x", sa.SPIIn, sa.SPIOut, sb.SPIIn, sb.SPIOut)
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})

	t.Run("bytes-and-packets", func(t *testing.T) {
		// Only gw-a has the limits, so that one side rekeys on each event.
		for _, lim := range []struct{ extra, counter, reason string }{
			{"        rekey_time: 0s\n        rekey_bytes: 200k\n        life_bytes: 4m\n", "child_rekeys_initiated", "reason=rekey_bytes"},
			{"        rekey_time: 0s\n        rekey_packets: 600\n        life_packets: 8000\n", "child_rekeys_initiated", "reason=rekey_packets"},
		} {
			a, b := ca, cb
			a.childExtra = lim.extra
			b.childExtra = "        rekey_time: 0s\n"
			a.connExtra, b.connExtra = "    rekey_time: 0s\n", "    rekey_time: 0s\n"
			tb.reconfigure(t, a, b, sec, sec)
			tb.a.spuctl(t, "initiate", "tun")
			logA := len(tb.a.iked.Proc.Log())
			before := tb.a.counters(t)
			// 250 pps of 200-byte datagrams each way: about 57 kB/s and 250
			// packets/s through each of gw-a's SAs, a rekey every 3.6 s
			// (bytes) or 2.4 s (packets).
			ab, ba := bothFlows(t, tb.ln, 12*time.Second)
			checkFlows(t, lim.reason, []*lab.Host{tb.ln.ClientB, tb.ln.ClientA}, ab, ba)
			after := tb.a.counters(t)
			n := delta(after, before, lim.counter)
			t.Logf("%s: %d rekeys in 12 s", lim.reason, n)
			if n < 3 || !strings.Contains(tb.a.iked.Proc.Log()[logA:], lim.reason) {
				t.Errorf("%s: %d rekeys on spud's events in 12 s", lim.reason, n)
			}
			tb.a.spuctl(t, "terminate", "tun")
			gone(t, tb.a, tb.b)
		}
		tb.reconfigure(t, ca, cb, sec, sec)
	})

	t.Run("reauth", func(t *testing.T) {
		// gw-a reauthenticates every 8 s (a new IKE SA and Child SA, then
		// the old IKE SA deleted), make before break.
		a, b := ca, cb
		a.connExtra = "    rekey_time: 0s\n    reauth_time: 8s\n    over_time: 10s\n    rand_time: 0s\n"
		b.connExtra = "    rekey_time: 0s\n"
		a.childExtra, b.childExtra = "        rekey_time: 0s\n", "        rekey_time: 0s\n"
		tb.reconfigure(t, a, b, sec, sec)
		tb.a.spuctl(t, "initiate", "tun")
		first := tb.a.sas(t)[0]
		before := tb.a.counters(t)
		ab, ba := bothFlows(t, tb.ln, 18*time.Second)
		checkFlows(t, "reauth", []*lab.Host{tb.ln.ClientB, tb.ln.ClientA}, ab, ba)
		n := delta(tb.a.counters(t), before, "ike_sas_reauthenticated")
		t.Logf("%d reauthentications in 18 s", n)
		if n < 2 {
			t.Errorf("%d reauthentications in 18 s with reauth_time 8s", n)
		}
		settled(t, tb.a)
		settled(t, tb.b)
		if now := tb.a.sas(t)[0]; now.SPIi == first.SPIi {
			t.Errorf("IKE SA not replaced")
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})

	t.Run("collisions", func(t *testing.T) {
		// The same Child SA lifetime and no jitter on both sides. Left
		// alone they mostly take turns (the responder of a rekey installs
		// first, so its timer fires first) and collide only when both
		// timers fire within a round trip. To make every round collide,
		// both ikeds are frozen (SIGSTOP) across the rekey time and thawed
		// together: each fires its due timer and sends its request before
		// the other's can arrive.
		a, b := ca, cb
		a.connExtra, b.connExtra = "    rekey_time: 0s\n", "    rekey_time: 0s\n"
		tb.reconfigure(t, a, b, sec, sec)
		tb.a.spuctl(t, "initiate", "tun")
		before := []map[string]uint64{tb.a.counters(t), tb.b.counters(t)}
		const rounds = 3
		ab, ba := bothFlows(t, tb.ln, rounds*9*time.Second+6*time.Second)
		for r := range rounds {
			// RekeyIn is rounded to the second: freeze a second either side.
			due := time.Now().Add(tb.a.sas(t)[0].Children[0].RekeyIn)
			time.Sleep(time.Until(due.Add(-time.Second)))
			freeze(t, syscall.SIGSTOP, tb.a, tb.b)
			time.Sleep(time.Until(due.Add(time.Second)))
			freeze(t, syscall.SIGCONT, tb.a, tb.b)
			t.Logf("round %d: both ikeds frozen across %s", r, due.Format("15:04:05"))
			time.Sleep(2 * time.Second)
		}
		res := checkFlows(t, "collisions", []*lab.Host{tb.ln.ClientB, tb.ln.ClientA}, ab, ba)
		after := []map[string]uint64{tb.a.counters(t), tb.b.counters(t)}
		total := uint64(0)
		for i, g := range []*gw{tb.a, tb.b} {
			c := delta(after[i], before[i], "child_rekey_collisions")
			total += c
			t.Logf("%s: %d collisions settled by the nonces, %d of its rekeys stood, %d TEMPORARY_FAILURE sent", g.name, c,
				delta(after[i], before[i], "child_rekeys_initiated"), delta(after[i], before[i], "temporary_failures_sent"))
		}
		if total < rounds {
			t.Errorf("%d collisions seen in %d rounds", total, rounds)
		}
		t.Logf("loss across %d collision rounds: %d and %d packets", rounds, res[0].LostCount, res[1].LostCount)
		sa, sb := settled(t, tb.a), settled(t, tb.b)
		if sa.SPIIn != sb.SPIOut || sa.SPIOut != sb.SPIIn {
			t.Errorf("Child SAs do not pair after the collisions")
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})
}

// freeze stops or continues the ikeds (by PID).
func freeze(t *testing.T, sig syscall.Signal, gws ...*gw) {
	t.Helper()
	for _, g := range gws {
		if err := g.iked.Proc.Signal(sig); err != nil {
			t.Fatalf("%s: signal %v: %v", g.name, sig, err)
		}
	}
}

var conntrackSportRe = regexp.MustCompile(`src=(\S+) dst=(\S+) sport=4500 dport=4500 .*src=\S+ dst=\S+ sport=4500 dport=(\d+)`)

// natPort returns the outside port the NAT box maps gw-a's port 4500 to.
func natPort(t *testing.T, ln *lab.Line) (uint16, bool) {
	t.Helper()
	out, err := ln.NAT.Exec("conntrack", "-L", "-p", "udp")
	if err != nil {
		t.Logf("conntrack -L: %v", err)
		return 0, false
	}
	for _, l := range strings.Split(string(out), "\n") {
		if m := conntrackSportRe.FindStringSubmatch(l); m != nil && m[1] == ln.Plan.GwAWan4.String() {
			var p uint16
			fmt.Sscan(m[3], &p)
			return p, true
		}
	}
	return 0, false
}

// TestPrivilegedRekeyNAT puts gw-a behind the lab's NAT box (nftables
// masquerade): the tunnel comes up through it with ESP in UDP 4500, NAT
// keepalives keep the mapping alive over an idle period longer than the
// NAT's UDP timeout, and a forced mapping change (the NAT's conntrack
// flushed, with random port allocation so that the mapping gets a new
// port) is survived: gw-a's next liveness check (it stops receiving ESP,
// dpd_delay 2 s) moves gw-b's SAs to the new port.
func TestPrivilegedRekeyNAT(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{NAT: true})
	ln := tb.ln
	pl := ln.Plan
	// Short UDP timeouts on the NAT box, and random ports for new mappings.
	if _, err := ln.NAT.Exec("sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout=5", "net.netfilter.nf_conntrack_udp_timeout_stream=5"); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.NAT.Exec("sh", "-c", `nft flush chain ip spugate_nat postrouting && nft add rule ip spugate_nat postrouting oifname "out0" masquerade random`); err != nil {
		t.Fatal(err)
	}
	ca, cb := tb.confs()
	cb.remoteAddrs = "%any"
	ca.global = "keep_alive: 2s\n"
	ca.connExtra = "    dpd_delay: 30s\n"
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, ln.ClientB, pl.ClientB4, pl.ClientA4)
	lb := tb.b.sas(t)
	if len(lb) != 1 || !lb[0].NATRemote || lb[0].Remote.Addr() != pl.NatOut4 || lb[0].Local.Port() != 4500 || !lb[0].Children[0].Encap {
		t.Fatalf("gw-b's view of the tunnel through the NAT: %+v", lb)
	}
	port0 := lb[0].Remote.Port()
	sas, _ := tb.b.dump(t)
	for _, s := range sas {
		if s.Encap == nil || s.Encap.LocalPort != 4500 {
			t.Errorf("gw-b's SA %08x %s is not ESP in UDP 4500: %+v", s.SPI, s.Dir, s.Encap)
		}
	}

	t.Run("keepalives-keep-the-mapping", func(t *testing.T) {
		before := tb.a.counters(t)["nat_keepalives"]
		time.Sleep(12 * time.Second) // idle: no traffic, no DPD (30 s)
		ka := tb.a.counters(t)["nat_keepalives"] - before
		p, ok := natPort(t, ln)
		t.Logf("after 12 s idle (NAT UDP timeout 5 s): %d keepalives, mapping %v to port %d (was %d)", ka, ok, p, port0)
		if ka < 4 || !ok || p != port0 {
			t.Errorf("mapping not kept: %d keepalives, mapping present %v, port %d (was %d)", ka, ok, p, port0)
		}
		// gw-b reaches gw-a first, through the mapping the keepalives kept.
		if n := ping(t, ln.ClientB, pl.ClientB4, pl.ClientA4, 3); n != 3 {
			t.Errorf("gw-b -> gw-a after the idle period: %d of 3 pings", n)
		}
	})

	t.Run("mapping-change", func(t *testing.T) {
		// DPD every 2 s on gw-a: a reload replaces the tunnel.
		a := ca
		a.connExtra = "    dpd_delay: 2s\n"
		if err := tb.a.iked.WriteConfig(a.yaml(), sec); err != nil {
			t.Fatal(err)
		}
		tb.a.spuctl(t, "reload")
		tb.a.spuctl(t, "initiate", "tun")
		pingUp(t, ln.ClientB, pl.ClientB4, pl.ClientA4)
		before := tb.b.sas(t)[0].Remote
		ab, ba := bothFlows(t, ln, 20*time.Second)
		time.Sleep(6 * time.Second)
		flushed := time.Now()
		if err := ln.FlushNAT(); err != nil {
			t.Fatal(err)
		}
		var after netip.AddrPort
		moved := waitFor(10*time.Second, func() bool {
			l := tb.b.sas(t)
			if len(l) == 1 {
				after = l[0].Remote
			}
			return after.IsValid() && after != before
		})
		recovered := time.Since(flushed)
		ra, rb := ab.Wait(), ba.Wait()
		t.Logf("mapping change: gw-b saw gw-a move from %s to %s %v after the flush (moved %v)", before, after, recovered.Round(10*time.Millisecond), moved)
		t.Logf("gw-a -> gw-b: %s", ra)
		t.Logf("gw-b -> gw-a: %s; %d packets lost = %v at %d pps", rb, rb.LostCount,
			(time.Duration(rb.LostCount) * time.Second / flowRate).Round(time.Millisecond), flowRate)
		if !moved {
			t.Fatalf("gw-b did not follow the new mapping (still %s)", tb.b.sas(t)[0].Remote)
		}
		if ra.Received == 0 || rb.Received == 0 || ra.Duplicates > 0 || rb.Duplicates > 0 {
			t.Errorf("flows across the mapping change: %s / %s", ra, rb)
		}
		// At most the outage: the liveness check comes 2 to 3 s (dpd_delay
		// to 1.5 dpd_delay) after the last ESP arrived.
		if rb.LostCount > 4*flowRate || ra.LostCount > 4*flowRate {
			t.Errorf("lost %d / %d packets across the mapping change", ra.LostCount, rb.LostCount)
		}
		sas, _ := tb.b.dump(t)
		for _, s := range sas {
			if s.Dir == "out" && (s.Encap == nil || s.Encap.RemotePort != after.Port()) {
				t.Errorf("gw-b's outbound SA %08x still goes to port %+v", s.SPI, s.Encap)
			}
		}
		mustPing(t, ln.ClientB, pl.ClientB4, pl.ClientA4)
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})
}

// TestPrivilegedRekeyCharon runs spugate against strongSwan's charon
// (kernel-libipsec, ESP in UDP 4500) with a Child SA lifetime of about
// 10 s and an IKE SA lifetime of 30 s on both sides, during a 60 s flow
// each way: both sides rekey, and no packet is lost or duplicated.
func TestPrivilegedRekeyCharon(t *testing.T) {
	ib := newInteropbed(t)
	a := ib.a
	base := interopSuites[0]
	cc := charonConf(t, ib.ln, base.ike, base.esp, func(c *strongswan.Conn) {
		// No jitter; charon's over_time explicit (its default, 10% of a
		// short rekey_time, ends the old IKE SA during its own rekey).
		c.RekeyTime, c.OverTime, c.RandTime = 30*time.Second, 15*time.Second, -1
		c.Children[0].RekeyTime, c.Children[0].LifeTime, c.Children[0].RandTime = 9*time.Second, 30*time.Second, -1
	})
	sc := spugateConf(ib.ln, base.ike, base.esp)
	sc.connExtra = "    rekey_time: 30s\n    over_time: 15s\n    rand_time: 0s\n"
	sc.childExtra = "        rekey_time: 9s\n        life_time: 30s\n        rand_time: 0s\n"
	ib.reconfigure(t, cc, sc, secrets(interopPSK, strongswan.IDGwA, strongswan.IDGwB))
	a.spuctl(t, "initiate", "tun")
	if _, err := ib.c.WaitEstablished("site", "net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
	before := a.counters(t)
	logC, logS := len(ib.c.Log()), len(a.iked.Proc.Log())
	ab, ba := bothFlows(t, ib.ln, 60*time.Second)
	// Both sides' timers are equal, and which of two equal timers fires
	// first is a race of milliseconds (charon's Child SA timer usually: it
	// counts from its request, iked's from its install), as is which of two
	// colliding IKE rekeys survives (nonces). So that each side surely
	// initiates both kinds against the other's responder, each is also asked
	// once, as an operator would: charon's Child SA rekey at 20 s; the IKE SA
	// timers collide at 30 s; spugate's IKE rekey at 40 s, charon's at 45 s;
	// spugate's Child SA rekey at 50 s.
	time.Sleep(20 * time.Second)
	if out, err := ib.c.Swanctl("--rekey", "--child", "net"); err != nil {
		t.Errorf("swanctl --rekey --child net: %v\n%s", err, out)
	}
	time.Sleep(20 * time.Second)
	a.spuctl(t, "rekey", "tun", "--ike-sa")
	time.Sleep(5 * time.Second)
	if out, err := ib.c.Swanctl("--rekey", "--ike", "site"); err != nil {
		t.Errorf("swanctl --rekey --ike site: %v\n%s", err, out)
	}
	time.Sleep(5 * time.Second)
	a.spuctl(t, "rekey", "tun", "net")
	checkFlows(t, "60 s with charon", []*lab.Host{ib.ln.ClientB, ib.ln.ClientA}, ab, ba)
	after := a.counters(t)
	ours := delta(after, before, "child_rekeys_initiated")
	all := delta(after, before, "child_sas_rekeyed")
	oursIKE := delta(after, before, "ike_rekeys_initiated")
	allIKE := delta(after, before, "ike_sas_rekeyed")
	t.Logf("Child SA rekeys: %d, %d by spugate, %d by charon; IKE SA rekeys: %d, %d by spugate, %d by charon; collisions %d/%d",
		all, ours, all-ours, allIKE, oursIKE, allIKE-oursIKE, after["child_rekey_collisions"], after["ike_rekey_collisions"])
	t.Logf("in order: child %s; ike %s", sequence(initiatedRekeys(a), "child"), sequence(initiatedRekeys(a), "ike"))
	started := strings.Count(a.iked.Proc.Log()[logS:], `msg="child sa rekey due"`)
	t.Logf("spugate's timer started %d Child SA rekeys (a collision starts one on each side)", started)
	if all < 5 || ours == 0 || all-ours == 0 {
		t.Errorf("Child SA rekeys: %d, %d by spugate (%d by its timer); want at least 5, by both sides", all, ours, started)
	}
	if allIKE < 1 {
		t.Errorf("no IKE SA rekey in 60 s")
	}
	if oursIKE < 1 || allIKE-oursIKE < 1 {
		t.Errorf("IKE SA rekeys: %d by spugate, %d by charon; want both", oursIKE, allIKE-oursIKE)
	}
	if cl := ib.c.Log()[logC:]; !strings.Contains(cl, "rekeyed between") {
		t.Errorf("charon's log shows no IKE_SA rekey")
	}
	sas, err := ib.c.WaitSAs(func(s []strongswan.IKESA) bool {
		return len(s) == 1 && len(s[0].Children) == 1 && s[0].Children[0].State == "INSTALLED"
	}, 10*time.Second)
	if err != nil {
		t.Errorf("charon after the rekeys: %v %+v", err, sas)
	}
	ch := settled(t, a)
	if err == nil && (sas[0].Children[0].SPIIn != ch.SPIOut || sas[0].Children[0].SPIOut != ch.SPIIn) {
		t.Errorf("charon's Child SA %08x/%08x, ours %08x/%08x", sas[0].Children[0].SPIIn, sas[0].Children[0].SPIOut, ch.SPIIn, ch.SPIOut)
	}
	a.spuctl(t, "terminate", "tun")
	gone(t, a)
	ib.charonGone(t)
}
