package spu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/steer"
)

// moveAway returns the map with logical moved to the other SPU.
func moveAway(t *testing.T, e *Engine, logical uint16) *anchor.Map {
	t.Helper()
	entries := e.Map().Entries()
	entries[logical] = 1 - entries[logical]
	m, err := anchor.MapFromEntries(entries)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func espSeq(frame []byte) uint32 { return binary.BigEndian.Uint32(frame[14+20+4:]) }

// TestMigrationKeepsState moves a tunnel's logical SPU to the other SPU on
// both gateways: its SAs keep their sequence numbers and anti-replay
// windows (a packet from before the move is still a replay after it), and
// traffic goes on from the new SPU.
func TestMigrationKeepsState(t *testing.T) {
	a, b, logical, pol := setup(t)
	send := func() []byte {
		q := a.e.physical(logical)
		steerAs(a.lan[q], steer.ClassCleartext, logical, pol)
		a.lan[q].Inject(udpFrame(hostA, hostB, []byte("x")))
		a.step()
		a.step()
		out := a.takeWAN()
		if len(out) != 1 {
			t.Fatalf("gw-a sent %d frames, want 1", len(out))
		}
		return out[0]
	}
	deliver := func(esp []byte) int {
		q := b.e.physical(logical)
		steerAs(b.wan[q], steer.ClassESP, logical, 0)
		b.wan[q].Inject(esp)
		b.step()
		b.step()
		return len(b.takeLAN())
	}
	first := send()
	if deliver(first) != 1 {
		t.Fatal("first packet not delivered")
	}
	before := a.e.physical(logical)
	for _, g := range []*gateway{a, b} {
		moves, err := g.e.SetMap(moveAway(t, g.e, logical))
		if err != nil || len(moves) != 1 {
			t.Fatalf("SetMap: %v %v", moves, err)
		}
	}
	if a.e.physical(logical) == before {
		t.Fatal("map did not change")
	}
	for _, st := range a.e.DumpSAs() {
		if st.SPU != a.e.physical(logical) {
			t.Errorf("sa 0x%x still on spu %d", st.SPI, st.SPU)
		}
	}
	second := send()
	if espSeq(second) != espSeq(first)+1 {
		t.Errorf("sequence number after migration %d, before %d", espSeq(second), espSeq(first))
	}
	if deliver(second) != 1 {
		t.Error("packet after migration not delivered")
	}
	if deliver(first) != 0 {
		t.Error("a replay of a packet from before the migration was delivered")
	}
	if got := a.e.MapGen(); got != 1 {
		t.Errorf("map generation %d", got)
	}
}

// TestMigrationHoldsPacketsInFlight: packets that reach the new SPU before
// the SAs do are held and processed once the SAs arrive.
func TestMigrationHoldsPacketsInFlight(t *testing.T) {
	a, _, logical, pol := setup(t)
	p := a.e.physical(logical)
	q := 1 - p
	a.e.mig.to[logical].Store(int32(q) + 1)
	steerAs(a.lan[q], steer.ClassCleartext, logical, pol)
	entries := a.e.Map().Entries()
	entries[logical] = uint16(q)
	m, _ := anchor.MapFromEntries(entries)
	a.e.spuMap.Store(m)
	for i := 0; i < 3; i++ {
		a.lan[q].Inject(udpFrame(hostA, hostB, []byte{byte(i)}))
	}
	a.step()
	if n := len(a.takeWAN()); n != 0 || a.e.spus[q].held.used != 3 {
		t.Fatalf("sent %d, held %d", n, a.e.spus[q].held.used)
	}
	// Complete the move by hand: take, install, release.
	got := a.e.spus[p].t.extract(map[uint16]bool{logical: true})
	a.e.spus[q].t.install(got[logical])
	a.e.mig.to[logical].Store(0)
	a.e.spus[q].release(logical)
	a.step()
	if n := len(a.takeWAN()); n != 3 {
		t.Errorf("sent %d of the 3 held packets", n)
	}
}

// TestDrainAddAndFault runs the engine's goroutines: drain an SPU, add it
// back, then make one panic; the tunnel carries traffic throughout and its
// SAs are never renegotiated (same SPIs).
func TestDrainAddAndFault(t *testing.T) {
	a, _, logical, pol := setup(t)
	a.e.cfg.Spin = time.Millisecond
	a.e.Start()
	defer a.e.Stop()
	pass := func(what string) {
		t.Helper()
		// Any SPU's queue will do: handoff takes it to the anchor.
		for q := 0; q < 2; q++ {
			steerAs(a.lan[q], steer.ClassCleartext, logical, pol)
		}
		port := a.lan[0]
		if a.e.spus[0].State() == "failed" {
			port = a.lan[1]
		}
		port.Inject(udpFrame(hostA, hostB, []byte(what)))
		deadline := time.Now().Add(2 * time.Second)
		for time.Now().Before(deadline) {
			if len(a.takeWAN()) == 1 {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("%s: no ESP out (stats %+v)", what, a.e.SPUStats())
	}
	spis := func() map[uint32]bool {
		m := map[uint32]bool{}
		for _, s := range a.e.DumpSAs() {
			m[s.SPI] = true
		}
		return m
	}
	want := spis()
	pass("before")
	anchorSPU := a.e.physical(logical)
	if _, err := a.e.Drain(anchorSPU); err != nil {
		t.Fatal(err)
	}
	if a.e.physical(logical) == anchorSPU || a.e.spus[anchorSPU].io.nports.Load() != 0 {
		t.Fatal("drain left the tunnel or the sockets on the drained SPU")
	}
	pass("drained")
	if _, err := a.e.Add(anchorSPU); err != nil {
		t.Fatal(err)
	}
	if load := a.e.Map().Load(); load[0] != 8 || load[1] != 8 {
		t.Errorf("map after add back: %v", load)
	}
	pass("added back")
	victim := a.e.physical(logical)
	// A subscriber reacting to the event at once (as spud publishing the
	// map to iked does) must already see the map without the victim.
	type seen struct {
		ev   Event
		load map[uint16]int
	}
	failed := make(chan seen, 1)
	go func() {
		for ev := range a.e.Events {
			if ev.Kind == "spu.failed" {
				failed <- seen{ev, a.e.Map().Load()}
				return
			}
		}
	}()
	if err := a.e.InjectFault(victim); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for a.e.SPUState(victim) != "failed" || a.e.physical(logical) == victim {
		if time.Now().After(deadline) {
			t.Fatalf("spu %d not failed over: %s", victim, a.e.SPUState(victim))
		}
		time.Sleep(5 * time.Millisecond)
	}
	pass("after the fault")
	got := spis()
	for spi := range want {
		if !got[spi] {
			t.Errorf("sa 0x%x lost", spi)
		}
	}
	if a.e.Failures() != 1 {
		t.Errorf("failures %d", a.e.Failures())
	}
	select {
	case f := <-failed:
		if f.ev.SPU != victim {
			t.Errorf("event %+v", f.ev)
		}
		if f.load[uint16(victim)] != 0 {
			t.Errorf("spu.failed event came before the new map: spu %d still holds %d logical SPUs", victim, f.load[uint16(victim)])
		}
	case <-time.After(time.Second):
		t.Fatal("no spu.failed event")
	}
	_ = api.EventSPUFailed
}

// TestWatchdogDeclaresAStalledSPU: an SPU whose loop stops coming round
// while awake (here a command that blocks) is declared failed after the
// watchdog's deadline, and its tunnels move on.
func TestWatchdogDeclaresAStalledSPU(t *testing.T) {
	a, _, logical, _ := setup(t)
	a.e.cfg.WatchdogDeadline = 200 * time.Millisecond
	a.e.cfg.Spin = time.Second // stay awake: a sleeping SPU is not stalled
	a.e.Start()
	defer a.e.Stop()
	victim := a.e.physical(logical)
	release := make(chan struct{})
	go a.e.Do(victim, func(*SPU) { <-release })
	deadline := time.Now().Add(3 * time.Second)
	for a.e.SPUState(victim) != "failed" {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("stalled spu %d not declared failed", victim)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	// Its tunnels move once it comes back and sees it is stopped (or half a
	// watchdog period later, if it does not).
	for a.e.physical(logical) == victim && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a.e.physical(logical) == victim {
		t.Error("the stalled SPU kept its logical SPUs")
	}
	for _, st := range a.e.DumpSAs() {
		if st.SPU == victim {
			t.Errorf("sa 0x%x still on the stalled SPU", st.SPI)
		}
	}
}

// TestWatchdogKeepsTheLastSPU: a stall of the last SPU in service is not
// declared a failure (its tunnels would have nowhere to go, and spud no data
// plane left); it is logged, and the SPU goes on once it comes back.
func TestWatchdogKeepsTheLastSPU(t *testing.T) {
	a, _, logical, _ := setup(t)
	a.e.cfg.WatchdogDeadline = 200 * time.Millisecond
	a.e.cfg.Spin = time.Second
	a.e.Start()
	defer a.e.Stop()
	victim := a.e.physical(logical)
	if _, err := a.e.Drain(1 - victim); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	go a.e.Do(victim, func(*SPU) { <-release })
	time.Sleep(time.Second)
	close(release)
	if st := a.e.SPUState(victim); st == "failed" {
		t.Fatalf("the last SPU in service was declared failed")
	}
	if a.e.Failures() != 0 {
		t.Errorf("%d failures counted", a.e.Failures())
	}
	if err := a.e.Do(victim, func(*SPU) {}); err != nil {
		t.Errorf("the SPU does not run commands after its stall: %v", err)
	}
}

// TestFaultSalvagesHandoffs: frames that other SPUs handed to an SPU just
// before it failed are passed on to the tunnel's new anchor, not left in
// the dead SPU's rings.
func TestFaultSalvagesHandoffs(t *testing.T) {
	a, _, logical, pol := setup(t)
	victim := a.e.physical(logical)
	other := 1 - victim
	steerAs(a.lan[other], steer.ClassCleartext, logical, pol)
	for i := 0; i < 3; i++ {
		a.lan[other].Inject(udpFrame(hostA, hostB, []byte{byte(i)}))
	}
	a.e.spus[other].iterate() // handed to the victim's ring
	if n := a.e.spus[victim].peers.in[other].Len(); n != 3 {
		t.Fatalf("%d frames in the victim's ring, want 3", n)
	}
	a.e.fail(victim, "test")
	if a.e.physical(logical) != other {
		t.Fatal("the tunnel did not move")
	}
	a.e.spus[other].iterate()
	a.e.spus[other].iterate()
	if n := len(a.takeWAN()); n != 3 {
		t.Errorf("%d of the 3 frames in flight went out (stats %+v)", n, a.e.SPUStats())
	}
}
