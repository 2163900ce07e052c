package iked_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedIKEFollowsTheSPUMap: 32 tunnels over 16 gateway address
// pairs between gateways with 4 SPUs (4 IKE workers each): every IKE SA
// lives on the worker of its tunnel's anchor SPU, its IKE datagrams reach
// that worker's socket (no handoff), and when spud drains an SPU, adds it
// back and loses one to a fault, the IKE SAs follow their Child SAs to the
// new SPUs with their state: same IKE and Child SPIs, message IDs going on,
// DPD exchanges still answered, Child SA rekeys on migrated tunnels still
// succeed, numbered traffic through it all without loss.
func TestPrivilegedIKEFollowsTheSPUMap(t *testing.T) {
	const n, pairs = 32, 16
	testbedSPUs = 4
	defer func() { testbedSPUs = 2 }()
	wanA := ipList(netip.MustParseAddr("198.18.0.100"), pairs)
	wanB := ipList(netip.MustParseAddr("198.18.0.200"), pairs)
	cliA := ipList(netip.MustParseAddr("198.18.1.100"), n)
	cliB := ipList(netip.MustParseAddr("198.18.2.100"), n)
	tb := newTestbedWith(t, lab.LineOptions{}, func(ln *lab.Line) {
		addAddrs(t, ln.GwA, "wan0", wanA, 24)
		addAddrs(t, ln.GwB, "wan0", wanB, 24)
		addAddrs(t, ln.ClientA, "eth0", cliA, 24)
		addAddrs(t, ln.ClientB, "eth0", cliB, 24)
	})
	conns := func(a bool) string {
		var b strings.Builder
		b.WriteString("retransmit_timeout: 1s\nretransmit_tries: 4\nblock_threshold: 1000\ncookie_threshold_ip: 1000\nconnections:\n")
		for i := range n {
			l, r, lid, rid, lts, rts, start := wanA[i%pairs], wanB[i%pairs], "gw-a.example", "gw-b.example", cliA[i], cliB[i], "start"
			if !a {
				l, r, lid, rid, lts, rts, start = r, l, rid, lid, rts, lts, "none"
			}
			// Child SAs rekey every 20 s (gw-a) so that some rekeys fall
			// on migrated tunnels; DPD every 2 s keeps IKE traffic going.
			rekey := "0"
			if a {
				rekey = "20s"
			}
			fmt.Fprintf(&b, "  t%02d:\n    local_addrs: %s\n    remote_addrs: %s\n    proposals: aes128gcm16-prfsha256-x25519\n"+
				"    dpd_delay: 2s\n    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n    children:\n      net:\n"+
				"        local_ts: %s/32\n        remote_ts: %s/32\n        start_action: %s\n        rekey_time: %s\n        rand_time: 0\n",
				i, l, r, lid, rid, lts, rts, start, rekey)
		}
		return b.String()
	}
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.b.start(t, conns(false), sec, "-log-level", "info")
	tb.a.start(t, conns(true), sec, "-log-level", "info")
	up := func() int {
		c := 0
		for _, s := range tb.a.sas(t) {
			if s.State == "ESTABLISHED" && len(s.Children) == 1 && s.Children[0].State == "INSTALLED" {
				c++
			}
		}
		return c
	}
	if !waitFor(60*time.Second, func() bool { return up() == n }) {
		t.Fatalf("%d of %d tunnels up after 60 s", up(), n)
	}
	hello, err := tb.a.spud.Client.Hello("test")
	if err != nil {
		t.Fatal(err)
	}
	var hk anchor.HashKey
	copy(hk[:], hello.AnchorKey)
	fn, _ := anchor.NewFunction(hk, hello.Logical)
	// checkPlacement: every IKE SA on the worker of its anchor, by spud's
	// current map; returns IKE SPIs and Child SPIs by connection.
	checkPlacement := func(what string) map[string]string {
		l, err := tb.a.spud.Client.SPUs()
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]string{}
		perWorker := map[int]int{}
		for _, s := range tb.a.sas(t) {
			want := l.Map[fn.Logical(s.Local.Addr(), s.Remote.Addr())]
			if s.Worker != want {
				t.Errorf("%s: %s's IKE SA on worker %d, its anchor is SPU %d", what, s.Conn, s.Worker, want)
			}
			perWorker[s.Worker]++
			var child string
			for _, c := range s.Children {
				child += fmt.Sprintf("%08x/%08x ", c.SPIIn, c.SPIOut)
			}
			ids[s.Conn] = s.SPIi + "_" + s.SPIr + " " + child
		}
		t.Logf("%s: IKE SAs per worker %v", what, perWorker)
		return ids
	}
	before := checkPlacement("established")
	// Each tunnel's Child SAs sit in spud on the SPU of its IKE SA's worker.
	worker := map[string]int{}
	for _, s := range tb.a.sas(t) {
		for _, c := range s.Children {
			worker[fmt.Sprintf("%08x", c.SPIIn)] = s.Worker
			worker[fmt.Sprintf("%08x", c.SPIOut)] = s.Worker
		}
	}
	sas, _ := tb.a.dump(t)
	for _, sa := range sas {
		if w, ok := worker[fmt.Sprintf("%08x", sa.SPI)]; ok && w != sa.SPU {
			t.Errorf("sa 0x%08x on spu %d, its IKE SA on worker %d", sa.SPI, sa.SPU, w)
		}
	}
	if len(perWorkerOf(tb.a.sas(t))) < 3 {
		t.Logf("note: tunnels landed on fewer than 3 of 4 workers")
	}
	// Numbered traffic through 8 tunnels while the map changes.
	var flows []*flow.Flow
	for i := 0; i < 8; i++ {
		f, err := flow.Start(flow.Options{From: tb.ln.ClientA, To: tb.ln.ClientB, Src: cliA[i], Dst: cliB[i],
			Port: uint16(9100 + i), Rate: 100, Duration: 12 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, f)
	}
	stats0 := ikeStats(t, tb.a)
	for _, step := range []struct {
		what string
		args []string
	}{
		{"drain spu 1", []string{"spu", "drain", "1"}},
		{"add spu 1", []string{"spu", "add", "1"}},
		{"fault in spu 2", []string{"spu", "fail", "2"}},
	} {
		time.Sleep(3 * time.Second)
		tb.a.spuctl(t, step.args...)
		// iked follows spud's event; give it a moment.
		if !waitFor(5*time.Second, func() bool {
			l, _ := tb.a.spud.Client.SPUs()
			st := ikeStats(t, tb.a)
			return l != nil && fmt.Sprint(st.MapLogical) == fmt.Sprint(l.Map)
		}) {
			t.Fatalf("%s: iked did not follow spud's map", step.what)
		}
		// An IKE SA being moved is on neither worker for a moment: wait
		// for all of them to be listed again (one lost stays lost).
		waitFor(10*time.Second, func() bool { return len(tb.a.sas(t)) == n })
		after := checkPlacement(step.what)
		for conn, id := range before {
			if after[conn] == "" {
				t.Errorf("%s: %s's IKE SA is gone", step.what, conn)
				continue
			}
			// Child SPIs change only by a rekey (every 20 s), IKE SPIs never.
			if strings.Fields(after[conn])[0] != strings.Fields(id)[0] {
				t.Errorf("%s: %s's IKE SA changed: %s -> %s", step.what, conn, id, after[conn])
			}
		}
	}
	var lost, got uint64
	for _, f := range flows {
		r := f.Wait()
		lost += r.LostCount
		got += r.Received
	}
	t.Logf("8 tunnels of numbered traffic across drain, add and fault: %d received, %d lost", got, lost)
	if lost > 0 {
		t.Errorf("lost %d packets", lost)
	}
	st := ikeStats(t, tb.a)
	t.Logf("gw-a iked: %d IKE SAs moved between workers; handoffs %d -> %d", st.Migrations, stats0.Counters["handoffs"], st.Counters["handoffs"])
	if st.Migrations == 0 {
		t.Error("no IKE SA moved between workers")
	}
	if st.Counters["handoffs"] != stats0.Counters["handoffs"] {
		t.Errorf("IKE datagrams reached the wrong worker %d times (the selector should steer them)", st.Counters["handoffs"]-stats0.Counters["handoffs"])
	}
	for _, w := range st.Workers {
		t.Logf("worker %d (spu %d): %d IKE SAs, %d datagrams, %d handed in", w.ID, w.SPU, w.IKESAs, w.Datagrams, w.HandedIn)
	}
	// Rekeys that fell on migrated tunnels: wait for every Child SA to
	// have rekeyed at least once since the start, IKE SAs unchanged.
	if !waitFor(30*time.Second, func() bool {
		now := checkPlacementQuiet(t, tb.a)
		for conn, id := range before {
			if now[conn] == "" || strings.Fields(now[conn])[1] == strings.Fields(id)[1] {
				return false
			}
		}
		return true
	}) {
		t.Error("not every Child SA rekeyed after the migrations")
	}
	if failed := ikeStats(t, tb.a).Failures; len(failed) > 0 {
		t.Errorf("IKE failures: %v", failed)
	}
	if got := udpEcho(t, tb.ln.ClientA, tb.ln.ClientB, cliA, cliB); got != n {
		t.Errorf("after the migrations and rekeys: traffic through %d of %d tunnels", got, n)
	}
}

func perWorkerOf(sas []ikectl.IKESA) map[int]int {
	m := map[int]int{}
	for _, s := range sas {
		m[s.Worker]++
	}
	return m
}

func checkPlacementQuiet(t *testing.T, g *gw) map[string]string {
	ids := map[string]string{}
	for _, s := range g.sas(t) {
		var child string
		for _, c := range s.Children {
			child += fmt.Sprintf("%08x/%08x ", c.SPIIn, c.SPIOut)
		}
		ids[s.Conn] = s.SPIi + "_" + s.SPIr + " " + child
	}
	return ids
}

func ikeStats(t *testing.T, g *gw) *ikectl.Stats {
	t.Helper()
	st, err := g.iked.Client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st
}
