package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spugate/spugate/dataplane/api"
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
