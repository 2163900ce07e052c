package daemonlog

import (
	"bytes"
	"encoding/json"
	"flag"
	"strings"
	"testing"
)

// json is one object per line with the level changed at run time; text is
// slog's key=value lines; bad values name the flag.
func TestNew(t *testing.T) {
	var b bytes.Buffer
	log, lv, err := New(&b, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("hidden")
	log.Info("shown", "k", 1)
	if got, _ := SetLevel(lv, "DEBUG"); got != "debug" {
		t.Errorf("SetLevel: %q", got)
	}
	log.Debug("now shown")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines %q", lines)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] == nil {
			t.Errorf("not a JSON record: %q %v", l, err)
		}
	}
	if got, _ := SetLevel(lv, ""); got != "debug" {
		t.Errorf("query: %q", got)
	}
	if _, err := SetLevel(lv, "loud"); err == nil || !strings.Contains(err.Error(), `"loud"`) {
		t.Errorf("SetLevel(loud): %v", err)
	}
	b.Reset()
	log, _, err = New(&b, "text", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("w")
	if got := b.String(); !strings.Contains(got, "level=WARN msg=w") || strings.Contains(got, "hidden") {
		t.Errorf("text: %q", got)
	}
	if _, _, err := New(&b, "xml", "info"); err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("xml: %v", err)
	}
	if _, _, err := New(&b, "text", "loud"); err == nil || !strings.Contains(err.Error(), "-log-level") {
		t.Errorf("loud: %v", err)
	}
}

// The start-up line has the build and every flag's value.
func TestStartup(t *testing.T) {
	var b bytes.Buffer
	log, _, _ := New(&b, "json", "info")
	fs := flag.NewFlagSet("spud", flag.ContinueOnError)
	fs.String("i", "", "")
	fs.Int("spus", 0, "")
	fs.Bool("version", false, "")
	if err := fs.Parse([]string{"-i", "wan0,lan0"}); err != nil {
		t.Fatal(err)
	}
	Startup(log, "spud", fs)
	var m struct {
		Msg     string            `json:"msg"`
		Version string            `json:"version"`
		Flags   map[string]string `json:"flags"`
	}
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("%v: %s", err, b.String())
	}
	if m.Msg != "spud: starting" || m.Version == "" || m.Flags["i"] != "wan0,lan0" || m.Flags["spus"] != "0" {
		t.Errorf("start-up line: %s", b.String())
	}
	if _, ok := m.Flags["version"]; ok {
		t.Errorf("-version in the start-up line: %s", b.String())
	}
}
