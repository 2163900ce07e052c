package scenario

import (
	"strings"
	"testing"
)

func TestParseIperf(t *testing.T) {
	ok := `warning: something on stderr
{"start":{"connected":[]},"intervals":[],"end":{"sum_sent":{"bytes":1250000000,"bits_per_second":2.1e9,"retransmits":17},"sum_received":{"bytes":1240000000,"bits_per_second":2.06e9}}}`
	gbps, retr, err := parseIperf(jsonPart([]byte(ok)))
	if err != nil || gbps != 2.06 || retr != 17 {
		t.Fatalf("%v Gbit/s, %d retransmits, %v", gbps, retr, err)
	}
	for _, bad := range []string{
		`{"start":{},"intervals":[],"end":{},"error":"unable to connect to server: Connection refused"}`,
		`{"end":{"sum_received":{"bits_per_second":0}}}`,
		`iperf3: error - unable to connect`,
	} {
		if _, _, err := parseIperf(jsonPart([]byte(bad))); err == nil || !strings.HasPrefix(err.Error(), "iperf3: ") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
