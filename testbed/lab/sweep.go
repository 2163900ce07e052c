package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// live labs of this process, closed by the signal handler.
var live struct {
	sync.Mutex
	labs    map[*Lab]struct{}
	started bool
}

func registerLive(l *Lab) {
	live.Lock()
	defer live.Unlock()
	if live.labs == nil {
		live.labs = map[*Lab]struct{}{}
	}
	live.labs[l] = struct{}{}
	if !live.started {
		live.started = true
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "lab: %v: removing labs before exit\n", sig)
			CloseAll()
			os.Exit(128 + int(sig.(syscall.Signal)))
		}()
	}
}

func unregisterLive(l *Lab) {
	live.Lock()
	delete(live.labs, l)
	live.Unlock()
}

// CloseAll closes every lab of this process that is still open.
func CloseAll() {
	live.Lock()
	labs := make([]*Lab, 0, len(live.labs))
	for l := range live.labs {
		labs = append(labs, l)
	}
	live.Unlock()
	for _, l := range labs {
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "lab %s: %v\n", l.RunID, err)
		}
	}
}

// Sweep removes the namespaces, processes and state files of lab runs whose
// owner process is gone, and returns the run IDs it removed. Runs whose
// owner is alive are left alone, so two concurrent runs never disturb each
// other.
func Sweep(logf func(string, ...any)) ([]string, error) {
	return sweep(context.Background(), execRunner, logf)
}

func sweep(ctx context.Context, run runner, logf func(string, ...any)) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	nss, err := listNS(ctx, run)
	if err != nil {
		// No iproute2 or no privilege: nothing of ours can exist either.
		return nil, nil
	}
	byRun := map[string][]string{}
	for _, ns := range nss {
		if id, _, ok := parseNSName(ns); ok {
			byRun[id] = append(byRun[id], ns)
		}
	}
	// State files of runs whose namespaces are all gone still need removing.
	files, _ := filepath.Glob(filepath.Join(StateDir, "*.json"))
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".json")
		if _, seen := byRun[id]; !seen && runIDRe.MatchString(id) {
			byRun[id] = nil
		}
	}
	var removed []string
	var errs []error
	for id, nss := range byRun {
		if runAlive(id) {
			continue
		}
		if logf != nil {
			logf("lab: removing leftovers of dead run %s: %v", id, nss)
		}
		for _, ns := range nss {
			if err := killNSPids(run, ns); err != nil {
				errs = append(errs, err)
			}
			if _, err := run(ctx, "ip", "netns", "del", ns); err != nil && !isNoSuchNS(err) {
				errs = append(errs, err)
			}
		}
		if st, ok := readState(id); ok && st.LogDir != "" && strings.Contains(st.LogDir, "spugate-lab-"+id) {
			os.RemoveAll(st.LogDir)
		}
		os.Remove(filepath.Join(StateDir, id+".json"))
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

func readState(runID string) (runState, bool) {
	var st runState
	b, err := os.ReadFile(filepath.Join(StateDir, runID+".json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return st, false
	}
	return st, true
}

// runAlive reports whether the process that made run runID still exists.
// A run without a readable state file is dead: New writes it before making
// any namespace.
func runAlive(runID string) bool {
	st, ok := readState(runID)
	if !ok || st.PID <= 0 {
		return false
	}
	if syscall.Kill(st.PID, 0) != nil {
		return false
	}
	// The PID may have been reused by an unrelated process.
	return procStartTime(st.PID) == st.StartTime
}

// procStartTime is field 22 of /proc/PID/stat, or 0.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields restart after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// killNSPids SIGKILLs the processes still inside namespace ns. Only lab
// namespaces are passed here, and everything in them was started by a lab
// run: never a process of anyone else.
func killNSPids(run runner, ns string) error {
	if _, _, ok := parseNSName(ns); !ok {
		return fmt.Errorf("lab: refusing to kill processes of foreign namespace %q", ns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := run(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return nil // namespace already gone
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return nil
}
