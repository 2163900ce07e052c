// Command iked is spugate's IKEv2 daemon (see package control/iked).
//
//	iked -config /etc/spugate/iked.yaml [-state /run/spugate/iked.state] [-log-level info]
//	     [-vici /run/spugate/vici.sock] [-vici-group GROUP]
//	     [-gogc 50] [-memory-limit 4GiB] [-heap-profile /tmp/iked.heap]
//	     [-metrics 127.0.0.1:9815 [-metrics-per-tunnel N]]
//
// SIGHUP reloads the configuration; SIGINT and SIGTERM stop iked and leave
// its SAs in spud and its state on disk, so that the next iked takes them
// over without dropping traffic (spuctl terminate deletes SAs). With
// -heap-profile, SIGUSR1 writes a heap profile of what iked holds there
// (go tool pprof -sample_index=inuse_space), after a collection.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/control/ikedmetrics"
	"github.com/spugate/spugate/internal/daemonlog"
	"github.com/spugate/spugate/internal/gomem"
	"github.com/spugate/spugate/internal/promserve"
	"github.com/spugate/spugate/internal/version"
)

func main() {
	cfgPath := flag.String("config", "/etc/spugate/iked.yaml", "configuration file")
	state := flag.String("state", iked.DefaultStateDir, "folder of the persisted IKE SAs (tmpfs, 0700)")
	grace := flag.Duration("grace", iked.DefaultGrace, "how long SAs no IKE SA owns are kept after a start before they are deleted")
	level := flag.String("log-level", "info", "debug, info, warn or error (spuctl log-level changes it at run time)")
	logFormat := flag.String("log-format", "text", "log format: text (key=value) or json (one object a line)")
	checkConfig := flag.Bool("check-config", false, "load and check the configuration (and its secrets and certificates), without starting; exit 0 if it is good, 1 with its errors (file:line: field) if not")
	gogc := flag.String("gogc", "", fmt.Sprintf("GC target percent: the heap may grow by this share of the live heap between collections, or off (default $GOGC, else %d)", gomem.DefaultGCPercent))
	heapProfile := flag.String("heap-profile", "", "on SIGUSR1, write a heap profile to this file")
	metrics := flag.String("metrics", "", promserve.AddrUsage)
	perTunnel := flag.Int("metrics-per-tunnel", 0, promserve.PerTunnelUsage+"; a tunnel here is a connection")
	viciSock := flag.String("vici", iked.DefaultVICI, "unix socket of strongSwan's VICI protocol, for swanctl --uri unix://PATH and govici (\"\" or off: none)")
	viciGroup := flag.String("vici-group", "", "group allowed to use the VICI socket (mode 0660; default: root only, 0600)")
	memLimit := flag.String("memory-limit", "", "soft memory limit of the Go runtime: bytes, or with B, KiB, MiB, GiB or TiB (default $GOMEMLIMIT, else none)")
	showVer := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "iked: unexpected argument %q (the configuration is -config FILE)\n", flag.Arg(0))
		os.Exit(2)
	}
	if *showVer {
		fmt.Println(version.Line("iked"))
		return
	}
	mem, err := gomem.Settings(*gogc, *memLimit)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iked: %v\n", err)
		os.Exit(2)
	}
	if err := promserve.CheckPerTunnel(*perTunnel); err != nil {
		fmt.Fprintf(os.Stderr, "iked: %v\n", err)
		os.Exit(2)
	}
	mem.Apply()
	log, lv, err := daemonlog.New(os.Stderr, *logFormat, *level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "iked: %v\n", err)
		os.Exit(2)
	}
	if *checkConfig {
		checkOnly(*cfgPath)
	}
	slog.SetDefault(log)
	daemonlog.Startup(log, "iked", flag.CommandLine)
	log.Info("iked: runtime memory settings", "settings", mem.String())
	if *viciSock == "off" {
		*viciSock = ""
	}
	ln, err := promserve.Listen(*metrics)
	if err != nil {
		log.Error("iked: start failed", "err", err.Error())
		os.Exit(1)
	}
	d, err := iked.Start(iked.Options{ConfigPath: *cfgPath, StateDir: *state, Grace: *grace, Log: log, VICI: *viciSock, VICIGroup: *viciGroup, Level: lv})
	if err != nil {
		log.Error("iked: start failed", "err", err.Error())
		os.Exit(1)
	}
	var m *promserve.Server
	if ln != nil {
		m = ikedmetrics.Serve(ln, d, *perTunnel, log)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		for range hup {
			reload(log, d)
		}
	}()
	if *heapProfile != "" {
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				if err := writeHeapProfile(*heapProfile); err != nil {
					log.Error("iked: heap profile", "err", err.Error())
				} else {
					log.Info("iked: heap profile written", "file", *heapProfile)
				}
			}
		}()
	}
	serving(ctx, log, d)
	d.Wait(ctx)
	log.Info("iked: stopping")
	stopping(log)
	m.Close() // before the daemon, which a scrape reads
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Error("iked: stop timed out")
	}
}

// writeHeapProfile writes the live heap's profile to path, after a
// collection so that it shows what is held, not garbage.
func writeHeapProfile(path string) error {
	runtime.GC()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}
