package iked

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// serveSpud plays spud for a test: a server on a socket of its own that
// answers the operations of h (more can be added with Handle), closed at
// the test's end. It returns the server and its socket's path: path, or
// a new one if path is empty.
func serveSpud(tb testing.TB, path string, h map[string]unixrpc.HandlerFunc) (*unixrpc.Server, string) {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "spud.sock")
	}
	srv := unixrpc.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	for op, f := range h {
		srv.Handle(op, f)
	}
	if err := srv.Listen(path); err != nil {
		tb.Fatal(err)
	}
	go srv.Serve()
	tb.Cleanup(func() { srv.Close() })
	return srv, path
}

// connectDP is a data plane connected to the spud at path, as a worker's
// is, that dials it again when the connection is lost.
func connectDP(tb testing.TB, path string) *spudDP {
	tb.Helper()
	dp := &spudDP{path: func() string { return path }}
	c, err := api.Dial(path)
	if err != nil {
		tb.Fatal(err)
	}
	dp.c.Store(c)
	tb.Cleanup(func() {
		if c := dp.c.Load(); c != nil {
			c.Close()
		}
	})
	return dp
}
