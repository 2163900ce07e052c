package spud_test

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/ipsec"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// hostPolicy is a protect policy from p's LAN to the host 198.19.0.0+i
// (nothing lives there: it only takes a steering entry), reqid 1000+i.
func hostPolicy(pl lab.Plan, i int) *api.Policy {
	a := netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	return &api.Policy{ReqID: uint32(1000 + i), Action: api.Protect, Local: pl.GwAWan4, Remote: pl.GwBWan4,
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(pl.LanA4, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(netip.PrefixFrom(a, 32), 0)},
		Name: fmt.Sprintf("filler-%d", i)}
}

// TestPrivilegedPolicyTableFull: spud with -max-policies 8 says so when it
// starts, takes a tunnel's policy and seven more, and refuses the ninth
// IPv4 policy with code exhausted and a text naming the limit and the
// flag, counted in spuctl stats; the refused policy is nowhere (not in the
// dump, not steered), the tunnel still carries traffic, and deleting a
// policy makes room for the refused one.
func TestPrivilegedPolicyTableFull(t *testing.T) {
	p := startPair(t, lab.LineOptions{}, daemons.SpudOptions{Args: []string{"-max-policies", "8"}})
	pl := p.ln.Plan
	if log := p.a.Proc.Log(); !strings.Contains(log, "max_policies=8 spd_sources=32") {
		t.Errorf("spud's start-up line does not give the sizes:\n%s", log)
	}
	tn := newTunnel(30, pl.GwAWan4, pl.GwBWan4, []netip.Prefix{pl.LanA4}, []netip.Prefix{pl.LanB4}, ipsec.AES128GCM16, false)
	install(t, p, tn)
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	var ids []uint32
	for i := range 7 {
		r, err := p.a.Client.AddPolicy(hostPolicy(pl, i))
		if err != nil {
			t.Fatalf("policy %d of 8: %v", i+2, err)
		}
		ids = append(ids, r.ID)
	}
	_, err := p.a.Client.AddPolicy(hostPolicy(pl, 7))
	want := "spud: policy.add: policy table full: 8 IPv4 policies (raise -max-policies)"
	if !errors.Is(err, unixrpc.ErrExhausted) || !strings.Contains(fmt.Sprint(err), want) {
		t.Fatalf("ninth policy: %v (code %s), want code exhausted and %q", err, unixrpc.CodeOf(err), want)
	}
	t.Logf("ninth policy refused: %v", err)
	pols, err := p.a.Client.DumpPolicies()
	if err != nil {
		t.Fatal(err)
	}
	for _, ps := range pols {
		if ps.Name == "filler-7" {
			t.Errorf("the refused policy is in the dump: %+v", ps)
		}
	}
	if len(pols) != 8 {
		t.Errorf("%d policies in the dump, want 8", len(pols))
	}
	st, err := p.a.Client.Stats()
	if err != nil || st.Refused["policy_table_full"] != 1 {
		t.Errorf("stats: refused %v (%v), want policy_table_full 1", st.Refused, err)
	}
	if out, err := p.a.Spuctl("stats"); err != nil || !strings.Contains(out, "refused: policy_table_full=1") {
		t.Errorf("spuctl stats: %v\n%s", err, out)
	}
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	mustPing(t, p.ln.ClientB, netip.Addr{}, pl.ClientA4)
	if err := p.a.Client.DelPolicy(ids[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.a.Client.AddPolicy(hostPolicy(pl, 7)); err != nil {
		t.Errorf("the refused policy, after a delete made room: %v", err)
	}
	mustPing(t, p.ln.ClientA, netip.Addr{}, pl.ClientB4)
	remove(t, p, tn)
}

// rssKiB is a process's resident set.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// bpfMapBytes is the kernel memory of the BPF maps a process holds open,
// as fdinfo reports it (memlock: the maps' actual usage on kernels since
// 6.4), each map counted once however many descriptors it has.
func bpfMapBytes(t *testing.T, pid int) uint64 {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var total uint64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		var id string
		var mem uint64
		for l := range strings.SplitSeq(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "map_id:":
				id = f[1]
			case "memlock:":
				mem, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
		if id != "" && !seen[id] {
			seen[id] = true
			total += mem
		}
	}
	return total
}

// TestPrivilegedHundredThousandPolicies: a spud of the default size takes
// 100,000 IPv4 policies, six times the 16,384 the steering program held
// before it was sized from -max-policies; the time and spud's resident
// memory per thousand policies are logged, and the kernel memory of its
// BPF maps per policy.
func TestPrivilegedHundredThousandPolicies(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 100,000 policies take tens of seconds")
	}
	ln := labtest.Line(t, lab.LineOptions{}, "ping")
	s, err := daemons.StartSpud(ln.GwA, daemons.SpudOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	const n = 100_000
	before := rssKiB(t, s.Proc.PID)
	mapsBefore := bpfMapBytes(t, s.Proc.PID)
	start, lap := time.Now(), time.Now()
	for i := range n {
		if _, err := s.Client.AddPolicy(hostPolicy(ln.Plan, i)); err != nil {
			t.Fatalf("policy %d of %d: %v", i+1, n, err)
		}
		// The cost of an add must not grow with the table.
		if (i+1)%25_000 == 0 {
			t.Logf("policies %6d-%6d: %.1f µs each, spud RSS %d KiB", i+1-25_000, i+1,
				float64(time.Since(lap).Microseconds())/25_000, rssKiB(t, s.Proc.PID))
			lap = time.Now()
		}
	}
	took := time.Since(start)
	after := rssKiB(t, s.Proc.PID)
	l, err := s.Client.SPUs()
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for _, spu := range l.SPUs {
		held += spu.Policies
	}
	st, err := s.Client.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if held != n || len(st.Refused) != 0 {
		t.Errorf("SPUs hold %d policies, want %d; refused %v", held, n, st.Refused)
	}
	t.Logf("%d policies in %v (%.1f µs each); spud RSS %d -> %d KiB, %.0f KiB per 1,000 policies",
		n, took.Round(time.Millisecond), float64(took.Microseconds())/n, before, after, float64(after-before)/(n/1000))
	mapsAfter := bpfMapBytes(t, s.Proc.PID)
	t.Logf("BPF maps: %d -> %d KiB, %.0f bytes per policy", mapsBefore>>10, mapsAfter>>10,
		float64(int64(mapsAfter)-int64(mapsBefore))/n)
}
