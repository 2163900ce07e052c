package lab

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestNSNameRoundTrip(t *testing.T) {
	id := newRunID()
	if !runIDRe.MatchString(id) {
		t.Fatalf("run ID %q does not match its own pattern", id)
	}
	if a, b := newRunID(), newRunID(); a == b {
		t.Fatalf("two run IDs collide: %s", a)
	}
	for _, host := range []string{"gw-a", "client-b", "nat", "h1"} {
		gotID, gotHost, ok := parseNSName(nsName(id, host))
		if !ok || gotID != id || gotHost != host {
			t.Errorf("parseNSName(nsName(%q, %q)) = %q, %q, %v", id, host, gotID, gotHost, ok)
		}
	}
}

func TestParseNSNameRejectsForeignNames(t *testing.T) {
	for _, name := range []string{
		"", "spg-", "spg-abc", "spg-abcdef", "spg-abcdef-", "spg-ABCDEF-gw", "spg-abcdeg-gw",
		"blue", "spgabcdef-gw", "xspg-abcdef-gw", "spg-abcdef-GW", "spg-abcdef-has space",
	} {
		if id, host, ok := parseNSName(name); ok {
			t.Errorf("parseNSName(%q) accepted it as run %q host %q", name, id, host)
		}
	}
}

func TestNameChecks(t *testing.T) {
	if err := checkHostName("client-a"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "Client", "1gw", "a b", strings.Repeat("a", 33)} {
		if checkHostName(bad) == nil {
			t.Errorf("host name %q accepted", bad)
		}
	}
	if err := checkIfName("wan0"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "0eth", "sixteen-chars-xx", "a/b"} {
		if checkIfName(bad) == nil {
			t.Errorf("interface name %q accepted", bad)
		}
	}
}

func TestLabAddressesStayInTheBenchmarkRanges(t *testing.T) {
	p := DefaultPlan()
	for _, a := range []string{p.ClientA4.String(), p.GwAWan4.String(), p.NatOut4.String(), p.ClientB6.String(), p.NatIn6Addr.String()} {
		if err := checkLabAddr(mustPrefix(a)); err != nil {
			t.Error(err)
		}
	}
	for _, bad := range []string{"10.0.0.1/8", "192.0.2.1/24", "2001:db9::1/64", "8.8.8.8/32"} {
		if checkLabAddr(mustPrefix(bad)) == nil {
			t.Errorf("address %s outside the lab ranges accepted", bad)
		}
	}
}

// fakeNet stands in for iproute2: it keeps a set of namespaces and records
// every command, so cleanup can be checked without privilege.
type fakeNet struct {
	mu       sync.Mutex
	ns       map[string]bool
	cmds     []string
	failDel  string // a namespace whose deletion fails once
	failOnce bool
}

func (f *fakeNet) run(_ context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	line := name + " " + strings.Join(args, " ")
	f.cmds = append(f.cmds, line)
	if name != "ip" {
		return nil, nil
	}
	switch {
	case len(args) >= 2 && args[0] == "netns" && args[1] == "list":
		var b strings.Builder
		for n := range f.ns {
			b.WriteString(n + " (id: 0)\n")
		}
		return []byte(b.String()), nil
	case len(args) == 3 && args[0] == "netns" && args[1] == "add":
		f.ns[args[2]] = true
	case len(args) == 3 && args[0] == "netns" && args[1] == "del":
		if args[2] == f.failDel && !f.failOnce {
			f.failOnce = true
			return nil, errors.New("Device or resource busy")
		}
		if !f.ns[args[2]] {
			return nil, errors.New("Cannot remove namespace file: No such file or directory")
		}
		delete(f.ns, args[2])
	case len(args) == 3 && args[0] == "netns" && args[1] == "pids":
		if !f.ns[args[2]] {
			return nil, errors.New("No such file or directory")
		}
	}
	return nil, nil
}

func (f *fakeNet) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func withStateDir(t *testing.T) {
	old := StateDir
	StateDir = t.TempDir()
	t.Cleanup(func() { StateDir = old })
}

func TestCloseRemovesEverythingAndKeepsGoingOnErrors(t *testing.T) {
	withStateDir(t)
	f := &fakeNet{ns: map[string]bool{}}
	l, err := newLab(Options{NoSignalHandler: true}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"client-a", "gw-a", "gw-b", "client-b"} {
		if _, err := l.AddHost(h, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.AddHost("gw-a", false); err == nil {
		t.Error("duplicate host accepted")
	}
	f.failDel = nsName(l.RunID, "gw-a")
	err = l.Close()
	if err == nil || !strings.Contains(err.Error(), "gw-a") {
		t.Errorf("Close error = %v, want the failed deletion of gw-a", err)
	}
	// Every other namespace was still deleted.
	if got := f.count("ip netns del"); got != 4 {
		t.Errorf("%d namespace deletions, want 4", got)
	}
	if _, err := os.Stat(filepath.Join(StateDir, l.RunID+".json")); !os.IsNotExist(err) {
		t.Errorf("state file still there after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.AddHost("late", false); err == nil {
		t.Error("AddHost after Close accepted")
	}
}

func TestSweepRemovesOnlyDeadRuns(t *testing.T) {
	withStateDir(t)
	f := &fakeNet{ns: map[string]bool{"blue": true, "spg-notarun-x": true}}
	// A live run: this process.
	live, err := newLab(Options{NoSignalHandler: true, NoSweep: true}, f.run)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := live.AddHost("gw-a", true); err != nil {
		t.Fatal(err)
	}
	// A dead run: its state names a PID that cannot exist.
	dead := "abc123"
	f.ns[nsName(dead, "gw-a")] = true
	f.ns[nsName(dead, "client-a")] = true
	b, _ := json.Marshal(runState{RunID: dead, PID: 1 << 30, StartTime: 1})
	if err := os.WriteFile(filepath.Join(StateDir, dead+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A run with no state file at all (crashed before writing, or wiped).
	orphan := "0f0f0f"
	f.ns[nsName(orphan, "nat")] = true
	// A state file whose namespaces are already gone.
	stale := "dddddd"
	b, _ = json.Marshal(runState{RunID: stale, PID: 1 << 30})
	os.WriteFile(filepath.Join(StateDir, stale+".json"), b, 0o644)

	removed, err := sweep(context.Background(), f.run, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(sorted(removed), ",")
	if want := strings.Join(sorted([]string{dead, orphan, stale}), ","); got != want {
		t.Errorf("swept runs %s, want %s", got, want)
	}
	for ns := range f.ns {
		if id, _, ok := parseNSName(ns); ok && id != live.RunID {
			t.Errorf("namespace %s of a dead run survived the sweep", ns)
		}
	}
	for _, keep := range []string{"blue", "spg-notarun-x", nsName(live.RunID, "gw-a")} {
		if !f.ns[keep] {
			t.Errorf("sweep removed %s, which is not a dead run's", keep)
		}
	}
	if _, err := os.Stat(filepath.Join(StateDir, stale+".json")); !os.IsNotExist(err) {
		t.Error("stale state file survived the sweep")
	}
	live.Close()
}

func TestKillNSPidsRefusesForeignNamespaces(t *testing.T) {
	f := &fakeNet{ns: map[string]bool{"blue": true}}
	if err := killNSPids(f.run, "blue"); err == nil {
		t.Fatal("killNSPids accepted a namespace that is not a lab's")
	}
	if f.count("ip netns pids") != 0 {
		t.Fatal("killNSPids looked inside a foreign namespace")
	}
}

func TestProcStartTimeOfSelf(t *testing.T) {
	if procStartTime(os.Getpid()) == 0 {
		t.Skip("no /proc here")
	}
	if procStartTime(1<<30) != 0 {
		t.Error("start time of a PID that cannot exist")
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	slices.Sort(out)
	return out
}

func mustPrefix(s string) netip.Prefix {
	if !strings.Contains(s, "/") {
		a := netip.MustParseAddr(s)
		return netip.PrefixFrom(a, a.BitLen())
	}
	return netip.MustParsePrefix(s)
}
