package spud

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/spugate/spugate/internal/version"
)

// spud answers version with its build, what spuctl version shows.
func TestVersionOp(t *testing.T) {
	_, c := apiDaemon(t)
	got, err := c.Version()
	if err != nil {
		t.Fatal(err)
	}
	if want := version.Get(); got != want {
		t.Errorf("version: %+v, want %+v", got, want)
	}
}

// log.level changes the level spud logs at, and answers it; a bad level
// is refused naming it, and a spud whose level is fixed says so.
func TestLogLevelOp(t *testing.T) {
	d, c := apiDaemon(t)
	if _, err := c.LogLevel("debug"); err == nil || !strings.Contains(err.Error(), "fixed") {
		t.Errorf("fixed level: %v", err)
	}
	lv := new(slog.LevelVar)
	d.cfg.Level = lv
	if got, err := c.LogLevel(""); err != nil || got != "info" {
		t.Errorf("ask: %q %v", got, err)
	}
	if got, err := c.LogLevel("WARN"); err != nil || got != "warn" || lv.Level() != slog.LevelWarn {
		t.Errorf("set warn: %q %v, level %v", got, err, lv.Level())
	}
	if _, err := c.LogLevel("chatty"); err == nil || !strings.Contains(err.Error(), `"chatty"`) || lv.Level() != slog.LevelWarn {
		t.Errorf("set chatty: %v, level %v", err, lv.Level())
	}
}
