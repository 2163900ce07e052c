package promserve

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestListenEmpty(t *testing.T) {
	if ln, err := Listen(""); ln != nil || err != nil {
		t.Errorf("Listen(\"\") = %v, %v: want nothing opened", ln, err)
	}
	if _, err := Listen("127.0.0.1:notaport"); err == nil || !strings.HasPrefix(err.Error(), "-metrics 127.0.0.1:notaport: ") {
		t.Errorf("bad address: %v, want an error naming -metrics and the address", err)
	}
}

func TestCheckPerTunnel(t *testing.T) {
	for n, ok := range map[int]bool{0: true, 1: true, MaxPerTunnel: true, -1: false, MaxPerTunnel + 1: false} {
		if err := CheckPerTunnel(n); (err == nil) != ok {
			t.Errorf("CheckPerTunnel(%d) = %v", n, err)
		}
	}
}

// TestServeWarns: a loopback address is logged as info, any other as a
// warning that the endpoint is unauthenticated; both serve /metrics.
func TestServeWarns(t *testing.T) {
	for _, c := range []struct {
		addr, level string
	}{{"127.0.0.1:0", "level=INFO"}, {"[::1]:0", "level=INFO"}, {":0", "level=WARN"}} {
		ln, err := Listen(c.addr)
		if err != nil {
			t.Skipf("%s: %v", c.addr, err)
		}
		var logs bytes.Buffer
		s := Serve(ln, Registry("test"), "test", slog.New(slog.NewTextHandler(&logs, nil)))
		if !strings.Contains(logs.String(), c.level) || (c.level == "level=WARN") != strings.Contains(logs.String(), "without authentication") {
			t.Errorf("%s: logged %q, want %s", c.addr, logs.String(), c.level)
		}
		url := "http://" + s.Addr().String() + "/metrics"
		if c.addr == ":0" {
			url = "http://127.0.0.1:" + s.Addr().String()[strings.LastIndex(s.Addr().String(), ":")+1:] + "/metrics"
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "spugate_test_build_info") {
			t.Errorf("%s: scrape without build info:\n%.300s", c.addr, body)
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
	var s *Server
	if s.Close() != nil {
		t.Error("nil Server's Close failed")
	}
}
