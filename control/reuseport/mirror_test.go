package reuseport

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestMirrorCounters checks the Go counters against enum spugate_rp_counter.
func TestMirrorCounters(t *testing.T) {
	b, err := os.ReadFile("../../bpf/include/spugate.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)enum spugate_rp_counter \{(.*?)\};`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("enum spugate_rp_counter not in header")
	}
	body := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(m[1], "")
	var names []string
	for _, part := range strings.Split(body, ",") {
		n, _, _ := strings.Cut(strings.TrimSpace(part), "=")
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	if len(names) != int(NumCounters)+1 || names[len(names)-1] != "SPUGATE_RP_MAX" {
		t.Fatalf("header counters %v, Go has %d", names, NumCounters)
	}
	for i, n := range names[:NumCounters] {
		if want := strings.ToLower(strings.TrimPrefix(n, "SPUGATE_RP_")); Counter(i).String() != want {
			t.Errorf("counter %d: Go %q, header %s", i, Counter(i), n)
		}
	}
	if !regexp.MustCompile(`#define SPUGATE_RP_GROUP_NATT 0x0*1\b`).Match(b) || groupNATT != 1 {
		t.Error("SPUGATE_RP_GROUP_NATT and groupNATT disagree")
	}
	if !strings.Contains(string(b), "#define SPUGATE_MAX_WORKERS 1024") || MaxWorkers != 1024 {
		t.Error("SPUGATE_MAX_WORKERS and MaxWorkers disagree")
	}
}
