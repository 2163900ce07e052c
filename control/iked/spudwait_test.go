package iked

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/sdnotify"
	"github.com/spugate/spugate/internal/unixrpc"
)

// syncBuffer is a log's output, read while the daemon writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// iked started with no spud says at once that it waits for spud, and at
// what socket, then again every few seconds; the start fails naming
// spud and its socket; systemd's status says what it waits for.
func TestStartWithoutSpudSaysSo(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "spud.sock")
	cfg := filepath.Join(dir, "iked.yaml")
	conf := "spud: " + sock + "\ncontrol: " + filepath.Join(dir, "iked.sock") + "\nsecrets: secrets.yaml\n" + `connections:
  tun:
    local_addrs: 198.18.0.1
    remote_addrs: 198.18.0.2
    local: {auth: psk, id: gw-a.example}
    remote: {auth: psk, id: gw-b.example}
    children:
      net: {local_ts: 198.18.1.0/24, remote_ts: 198.18.2.0/24}
`
	secrets := "ike:\n  s:\n    id: [gw-a.example, gw-b.example]\n    secret: \"lab pre-shared key, 32 bytes long\"\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.yaml"), []byte(secrets), 0o600); err != nil {
		t.Fatal(err)
	}
	// As systemd would see it: the status says what iked waits for.
	notify, err := sdnotify.Listen(filepath.Join(dir, "notify"))
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", notify.Path())
	var logged syncBuffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	const wait = 4 * time.Second
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		d, err := Start(Options{ConfigPath: cfg, StateDir: filepath.Join(dir, "state"), Log: log, SpudWait: wait})
		if d != nil {
			d.Close()
		}
		errc <- err
	}()
	want := "iked: waiting for spud at " + sock + " (SA API): connect: no such file or directory"
	for !strings.Contains(logged.String(), want) {
		if time.Since(start) > wait/2 {
			t.Fatalf("err %v; nothing logged %v into a %v wait for spud (want %q): %q", <-errc, time.Since(start), wait, want, logged.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := time.Since(start)
	if lines, err := notify.Receive(time.Second); err != nil || len(lines) != 1 || lines[0] != "STATUS=waiting for spud at "+sock+" (SA API): connect: no such file or directory" {
		t.Errorf("sd_notify: %v %q", err, lines)
	}
	err = <-errc
	if err == nil || !strings.Contains(err.Error(), "iked: spud (SA API) at "+sock+" not reachable in 4s: connect: no such file or directory (is spud running?") ||
		strings.Contains(err.Error(), "\n") {
		t.Errorf("start: %v", err)
	}
	if n := strings.Count(logged.String(), "waiting for spud at"); n != 2 {
		t.Errorf("%d waiting lines in %v, want 2 (at once, then after %v):\n%s", n, wait, spudWaitLogEvery, logged.String())
	}
	t.Logf("first line after %v; start failed after %v", first, time.Since(start))
}

// spud coming up while iked waits: dialSpud connects, and systemd's
// status stops saying it waits.
func TestDialSpudLate(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "spud.sock")
	notify, err := sdnotify.Listen(filepath.Join(dir, "notify"))
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", notify.Path())
	var logged syncBuffer
	type result struct {
		h   *api.HelloReply
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, h, err := dialSpud(context.Background(), slog.New(slog.NewTextHandler(&logged, nil)), sock, 10*time.Second)
		if c != nil {
			c.Close()
		}
		done <- result{h, err}
	}()
	if lines, err := notify.Receive(5 * time.Second); err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "STATUS=waiting for spud at "+sock) {
		t.Fatalf("sd_notify: %v %q", err, lines)
	}
	serveSpud(t, sock, map[string]unixrpc.HandlerFunc{api.OpHello: func(json.RawMessage) (any, error) {
		return api.HelloReply{Version: api.Version, Logical: 256}, nil
	}})
	r := <-done
	if r.err != nil || r.h == nil || r.h.Logical != 256 {
		t.Fatalf("dialSpud: %v %+v", r.err, r.h)
	}
	if lines, err := notify.Receive(5 * time.Second); err != nil || len(lines) != 1 || lines[0] != "STATUS=connected to spud at "+sock {
		t.Errorf("sd_notify after: %v %q", err, lines)
	}
	if n := strings.Count(logged.String(), "waiting for spud at"); n != 1 {
		t.Errorf("%d waiting lines:\n%s", n, logged.String())
	}
}

// A spud that answers, but not as iked expects, is named as such, not
// as one that is not running.
func TestDialSpudWrongVersion(t *testing.T) {
	_, sock := serveSpud(t, "", map[string]unixrpc.HandlerFunc{api.OpHello: func(json.RawMessage) (any, error) {
		return api.HelloReply{Version: api.Version + 1}, nil
	}})
	var logged syncBuffer
	_, _, err := dialSpud(context.Background(), slog.New(slog.NewTextHandler(&logged, nil)), sock, 300*time.Millisecond)
	want := fmt.Sprintf("iked: spud (SA API) at %s: hello: api: spud speaks version %d, we speak %d", sock, api.Version+1, api.Version)
	if err == nil || err.Error() != want {
		t.Errorf("dialSpud: %v, want %q", err, want)
	}
	if !strings.Contains(logged.String(), "waiting for spud at "+sock+" (SA API): api: spud speaks version") {
		t.Errorf("log: %s", logged.String())
	}
}
