package iked_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/control/ikedmetrics"
	"github.com/spugate/spugate/internal/promserve"
)

// BenchmarkMetricsScrape is one scrape of iked's /metrics in OpenMetrics
// (counters, a census of the workers, encoding) with 10,000 IKE SAs and
// as many Child SAs on two workers, over 100 connections: without
// per-connection series and with them; and with 100,000 IKE SAs, where
// the census holds each worker for its share of them. It reports the
// scrape's size.
func BenchmarkMetricsScrape(b *testing.B) {
	for _, c := range []struct{ n, per int }{{10000, 0}, {10000, 10000}, {100000, 0}} {
		b.Run(fmt.Sprintf("ike_sas=%d/per-tunnel=%d", c.n, c.per), func(b *testing.B) {
			d := iked.CensusTestDaemon(b, 2, c.n, 100)
			h := promserve.Handler(promserve.Registry("iked", ikedmetrics.New(d, c.per)), slog.New(slog.NewTextHandler(io.Discard, nil)))
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
