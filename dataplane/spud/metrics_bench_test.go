package spud_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/spugate/spugate/dataplane/spud"
	"github.com/spugate/spugate/dataplane/spudmetrics"
	"github.com/spugate/spugate/internal/promserve"
)

// BenchmarkMetricsScrape is one scrape of spud's /metrics in OpenMetrics
// (collect, encode, as Prometheus asks for it) on a started spud of two
// SPUs holding 10,000 SAs: without per-tunnel series, and with all
// 10,000 SAs' (-metrics-per-tunnel 10000, the cap). It reports the
// scrape's size.
func BenchmarkMetricsScrape(b *testing.B) {
	d := spud.MetricsTestDaemon(b, 10000)
	for _, per := range []int{0, 10000} {
		b.Run(fmt.Sprintf("sas=10000/per-tunnel=%d", per), func(b *testing.B) {
			h := promserve.Handler(promserve.Registry("spud", spudmetrics.New(spudmetrics.FromDaemon(d), per)),
				slog.New(slog.NewTextHandler(io.Discard, nil)))
			req := httptest.NewRequest("GET", "/metrics", nil)
			req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
			var size int
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("scrape: %d %s", rec.Code, rec.Body)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
