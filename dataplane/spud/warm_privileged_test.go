package spud_test

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// warmCounts sums the SPUs' warm SAs and cooled counts of a spud's stats.
func warmCounts(t *testing.T, s *daemons.Spud) (warm int, cooled uint64) {
	t.Helper()
	st, err := s.Client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, spu := range st.SPUs {
		warm += spu.WarmSAs
		cooled += spu.Cooled
	}
	return warm, cooled
}

// TestPrivilegedCipherIdle: with -cipher-idle 1s, the two SAs a ping
// warmed on gw-a are warm in its stats, cooled within a few seconds
// without traffic (counted, in spuctl stats and its -json too), and the
// tunnel carries the next ping as before; -cipher-idle 0 keeps them warm.
func TestPrivilegedCipherIdle(t *testing.T) {
	for _, idle := range []string{"1s", "0"} {
		t.Run("cipher-idle="+idle, func(t *testing.T) {
			p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{Args: []string{"-cipher-idle", idle}})
			pl := p.ln.Plan
			tn := newTunnel(31, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
			install(t, p, tn)
			defer remove(t, p, tn)
			if warm, cooled := warmCounts(t, p.a); warm != 0 || cooled != 0 {
				t.Fatalf("before any packet: %d warm, %d cooled", warm, cooled)
			}
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
			if warm, _ := warmCounts(t, p.a); warm != 2 {
				t.Fatalf("after a ping: %d warm SAs, want 2", warm)
			}
			// An SA is cooled between one and two idle periods after its
			// last packet, and the SPU's sweep may take a turn more.
			deadline := time.Now().Add(5 * time.Second)
			for time.Now().Before(deadline) {
				if warm, _ := warmCounts(t, p.a); warm == 0 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			warm, cooled := warmCounts(t, p.a)
			if idle == "0" {
				if warm != 2 || cooled != 0 {
					t.Errorf("-cipher-idle 0, 5 s idle: %d warm, %d cooled; want 2, 0", warm, cooled)
				}
			} else if warm != 0 || cooled != 2 {
				t.Errorf("-cipher-idle 1s, 5 s idle: %d warm, %d cooled; want 0, 2", warm, cooled)
			}
			out, err := p.a.Spuctl("stats")
			if err != nil || !strings.Contains(out, "warm") || !strings.Contains(out, "cooled") {
				t.Errorf("spuctl stats: %v\n%s", err, out)
			}
			out, err = p.a.Spuctl("stats", "-json")
			var st api.Stats
			if err != nil || json.Unmarshal([]byte(out), &st) != nil || len(st.SPUs) == 0 {
				t.Fatalf("spuctl stats -json: %v\n%s", err, out)
			}
			var jc uint64
			for _, s := range st.SPUs {
				jc += s.Cooled
			}
			if jc != cooled || !strings.Contains(out, `"warm_sas"`) {
				t.Errorf("spuctl stats -json: cooled %d, want %d\n%s", jc, cooled, out)
			}
			mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
			if warm, _ := warmCounts(t, p.a); warm != 2 {
				t.Errorf("after the next ping: %d warm SAs, want 2", warm)
			}
		})
	}
}
