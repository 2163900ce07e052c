// Command iked is spugate's IKEv2 daemon (see package control/iked).
//
//	iked -config /etc/spugate/iked.yaml [-state /run/spugate/iked.state] [-log-level info]
//
// SIGHUP reloads the configuration; SIGINT and SIGTERM stop iked and leave
// its SAs in spud and its state on disk, so that the next iked takes them
// over without dropping traffic (spuctl terminate deletes SAs).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spugate/spugate/control/iked"
)

func main() {
	cfgPath := flag.String("config", "/etc/spugate/iked.yaml", "configuration file")
	state := flag.String("state", iked.DefaultStateDir, "folder of the persisted IKE SAs (tmpfs, 0700)")
	grace := flag.Duration("grace", iked.DefaultGrace, "how long SAs no IKE SA owns are kept after a start before they are deleted")
	level := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "iked: -log-level %q: %v\n", *level, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	slog.SetDefault(log)
	d, err := iked.Start(iked.Options{ConfigPath: *cfgPath, StateDir: *state, Grace: *grace, Log: log})
	if err != nil {
		log.Error("iked: start failed", "err", err.Error())
		os.Exit(1)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		for range hup {
			if _, err := d.Reload(); err != nil {
				log.Error("iked: reload failed, keeping the running configuration", "err", err.Error())
			}
		}
	}()
	d.Wait(ctx)
	log.Info("iked: stopping")
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		log.Error("iked: stop timed out")
	}
}
