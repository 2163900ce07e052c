package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/spud"
	"github.com/spugate/spugate/internal/sdnotify"
)

// serving tells systemd (Type=notify) that spud serves: its XDP program
// is attached and its SA API listens, so iked, ordered after it, may
// start. Under WatchdogSec it keeps the watchdog while the SA API answers.
func serving(ctx context.Context, log *slog.Logger, socket string) {
	if err := sdnotify.Ready(); err != nil {
		log.Warn("spud: systemd notification", "err", err.Error())
	}
	go sdnotify.Watchdog(ctx, log, func() error { return answers(socket) })
}

// stopping tells systemd spud is stopping.
func stopping(log *slog.Logger) {
	if err := sdnotify.Stopping(); err != nil {
		log.Warn("spud: systemd notification", "err", err.Error())
	}
}

// answers asks spud's own SA API for its version: what iked and spuctl
// need of spud beyond its SPUs, which go on without it.
func answers(socket string) error {
	c, err := api.Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()
	c.Timeout = 5 * time.Second
	if _, err := c.Version(); err != nil {
		return fmt.Errorf("SA API at %s: %w", socket, err)
	}
	return nil
}

// checkOnly is spud -check: it says whether spud would start with cfg, and
// exits 0 if so, 1 with the reasons if not.
func checkOnly(cfg spud.Config) {
	if err := spud.Check(cfg); err != nil {
		fail("check failed:\n%v", err)
	}
	fmt.Printf("spud: check passed: %d interfaces, the steering program loads\n", len(cfg.Interfaces))
	os.Exit(0)
}
