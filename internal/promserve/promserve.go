// Package promserve serves a daemon's Prometheus metrics on its -metrics
// address: /metrics in the OpenMetrics text format when the scraper asks for
// it (Prometheus does), else in the classic text format.
//
// The endpoint has no authentication, as is usual for exporters: it is
// meant for loopback, or for a management network a firewall keeps to the
// Prometheus servers. A non-loopback address is accepted (a Prometheus on
// another host must reach it) but logged as a warning at start-up.
package promserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spugate/spugate/internal/version"
)

// AddrUsage is the -metrics flag's help text, the same for both daemons.
const AddrUsage = "serve Prometheus metrics (OpenMetrics) on this address's /metrics, such as 127.0.0.1:9814 (default: off); unauthenticated: an address other than loopback is logged as a warning"

// MaxPerTunnel bounds -metrics-per-tunnel: each tunnel is a few series, and
// a scrape of more would cost Prometheus more than the tunnels are worth
// one by one (the totals are always there).
const MaxPerTunnel = 10000

// PerTunnelUsage is the -metrics-per-tunnel flag's help text.
var PerTunnelUsage = fmt.Sprintf("also export per-tunnel series for at most this many tunnels (0: none; at most %d; those past it are counted, not shown)", MaxPerTunnel)

// CheckPerTunnel refuses a -metrics-per-tunnel out of range.
func CheckPerTunnel(n int) error {
	if n < 0 || n > MaxPerTunnel {
		return fmt.Errorf("-metrics-per-tunnel %d: want 0..%d", n, MaxPerTunnel)
	}
	return nil
}

// Listen opens the -metrics address before the daemon starts, so that an
// address in use fails the start rather than a daemon already serving;
// an empty addr (no -metrics) opens nothing and returns nil.
func Listen(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics %s: %w", addr, err)
	}
	return ln, nil
}

// Loopback reports whether a listener's address is reachable from this
// host only.
func Loopback(a net.Addr) bool {
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// Registry returns a registry holding cs and what every Go exporter
// exports: the Go runtime's and the process's series (go_*, process_*)
// and spugate_<prog>_build_info.
func Registry(prog string, cs ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	v := version.Get()
	commit := v.Commit
	if v.Modified {
		commit += "+modified"
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "spugate_" + prog + "_build_info",
		Help:        "The build of the running " + prog + " (always 1): its version, commit and Go toolchain.",
		ConstLabels: prometheus.Labels{"version": v.Version, "commit": commit, "goversion": v.Go},
	})
	build.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), build)
	for _, c := range cs {
		reg.MustRegister(c)
	}
	return reg
}

// Server is a running metrics endpoint.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan struct{}
}

// Handler is the /metrics handler of reg: OpenMetrics when negotiated,
// errors of a collector logged and the rest still served.
func Handler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slogPrinter{log},
		ErrorHandling:     promhttp.ContinueOnError,
		// A scrape that waits behind another gains nothing: Prometheus
		// times out anyway, and each costs a pass over the SAs.
		MaxRequestsInFlight: 2,
		Timeout:             30 * time.Second,
	})
}

// Serve serves reg on ln until Close, and logs where, with a warning when
// ln is not loopback-only.
func Serve(ln net.Listener, reg *prometheus.Registry, prog string, log *slog.Logger) *Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", Handler(reg, log))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "%s: metrics at /metrics\n", prog)
	})
	s := &Server{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}}
	if Loopback(ln.Addr()) {
		log.Info(prog+": serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	} else {
		log.Warn(prog+": serving metrics beyond this host, without authentication: keep the address to a management network or firewall it", "addr", ln.Addr().String(), "path", "/metrics")
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(prog+": metrics server stopped", "addr", ln.Addr().String(), "err", err.Error())
		}
	}()
	return s
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops serving, letting a scrape under way finish for a second. A
// nil Server (no -metrics) has nothing to close.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

// slogPrinter is promhttp's error log on the daemon's logger.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics: " + fmt.Sprint(v...)) }
