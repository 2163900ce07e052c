package iked

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/internal/version"
)

// iked answers version with its build, what spuctl version shows.
func TestVersionOp(t *testing.T) {
	c := listDaemon(t, 1, 0, 0)
	got, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if want := version.Get(); got != want {
		t.Errorf("version: %+v, want %+v", got, want)
	}
}

// log.level changes the level iked logs at, and answers it; a bad level
// is refused naming it, and an iked whose level is fixed says so.
func TestLogLevelOp(t *testing.T) {
	serve := func(lv *slog.LevelVar) *ikectl.Client {
		d := &Daemon{log: discard, opts: Options{Level: lv}, ctl: unixrpc.NewServer(discard)}
		d.operatorHandlers()
		path := filepath.Join(t.TempDir(), "iked.sock")
		if err := d.ctl.Listen(path); err != nil {
			t.Fatal(err)
		}
		go d.ctl.Serve()
		t.Cleanup(func() { d.ctl.Close() })
		c, err := ikectl.Dial(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	lv := new(slog.LevelVar)
	c := serve(lv)
	if got, err := c.LogLevel(""); err != nil || got != "info" {
		t.Errorf("ask: %q %v", got, err)
	}
	if got, err := c.LogLevel("debug"); err != nil || got != "debug" || lv.Level() != slog.LevelDebug {
		t.Errorf("set debug: %q %v, level %v", got, err, lv.Level())
	}
	if _, err := c.LogLevel("chatty"); err == nil || !strings.Contains(err.Error(), `"chatty"`) || lv.Level() != slog.LevelDebug {
		t.Errorf("set chatty: %v, level %v", err, lv.Level())
	}
	if _, err := serve(nil).LogLevel("debug"); err == nil || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("fixed level: %v", err)
	}
}
