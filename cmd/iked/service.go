package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/sdnotify"
)

// serving tells systemd (Type=notify) that iked serves: its configuration
// is loaded, spud answered and its IKE and control sockets are open. Under
// WatchdogSec it keeps the watchdog while the control socket answers.
func serving(ctx context.Context, log *slog.Logger, d *iked.Daemon) {
	notify(log, sdnotify.Ready())
	go sdnotify.Watchdog(ctx, log, func() error { return answers(d.Config().Control) })
}

// reload reloads the configuration between RELOADING=1 and READY=1, so
// that systemctl reload waits for it; a configuration that does not load
// is logged and said in STATUS=, and the running one kept (iked.service
// runs iked -check-config first, which fails the reload itself).
func reload(log *slog.Logger, d *iked.Daemon) {
	notify(log, sdnotify.Reloading())
	if _, err := d.Reload(); err != nil {
		log.Error("iked: reload failed, keeping the running configuration", "err", err.Error())
		notify(log, sdnotify.Send("READY=1", "STATUS=reload failed: "+err.Error()))
		return
	}
	notify(log, sdnotify.Send("READY=1", "STATUS=configuration reloaded"))
}

// stopping tells systemd iked is stopping.
func stopping(log *slog.Logger) { notify(log, sdnotify.Stopping()) }

func notify(log *slog.Logger, err error) {
	if err != nil {
		log.Warn("iked: systemd notification", "err", err.Error())
	}
}

// answers asks iked's own control socket for its version.
func answers(socket string) error {
	c, err := ikectl.Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetTimeout(5 * time.Second)
	if _, err := c.Version(); err != nil {
		return fmt.Errorf("control socket %s: %w", socket, err)
	}
	return nil
}

// checkOnly is iked -check-config: it loads the configuration as a start
// or a reload would, and exits 0 if it is good, 1 with its errors if not.
func checkOnly(path string) {
	cfg, err := config.Load(path, task.ConfigChecker{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "iked: %v\n", err)
		os.Exit(1)
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(os.Stderr, "iked: warning: %s\n", w)
	}
	fmt.Printf("iked: %s: configuration good: %d connections\n", path, len(cfg.Connections))
	os.Exit(0)
}
