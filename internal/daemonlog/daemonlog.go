// Package daemonlog is how spud and iked log: -log-format text or json
// (journald and log shippers take either), -log-level with a level that
// spuctl log-level changes at run time, and the one line at start-up that
// says which build runs with which settings.
package daemonlog

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spugate/spugate/internal/version"
)

// Formats are the values -log-format takes.
var Formats = []string{"text", "json"}

// New returns a logger writing to w in format ("text" or "json") at level
// ("debug", "info", "warn", "error", or slog's "info+2" form), and the
// level, which SetLevel changes while the logger runs. Errors name the
// flag.
func New(w io.Writer, format, level string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if _, err := SetLevel(lv, level); err != nil {
		return nil, nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), lv, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), lv, nil
	}
	return nil, nil, fmt.Errorf("-log-format %q: want %s", format, strings.Join(Formats, " or "))
}

// SetLevel sets lv to level and returns the level in force, lower case
// ("debug"); an empty level changes nothing and returns the one in force.
func SetLevel(lv *slog.LevelVar, level string) (string, error) {
	if level != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(level)); err != nil {
			return "", fmt.Errorf("log level %q: want debug, info, warn or error", level)
		}
		lv.Set(l)
	}
	return strings.ToLower(lv.Level().String()), nil
}

// Startup logs the one line that says what prog runs with: its build and
// the value of every flag of fs, set or default.
func Startup(log *slog.Logger, prog string, fs *flag.FlagSet) {
	v := version.Get()
	attrs := []any{"version", v.Version, "commit", v.Commit, "go", v.Go}
	var flags []any
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "version" {
			flags = append(flags, slog.String(f.Name, f.Value.String()))
		}
	})
	log.Info(prog+": starting", append(attrs, slog.Group("flags", flags...))...)
}
