package worker

import (
	"testing"
	"time"
)

func TestRefusalsWindow(t *testing.T) {
	var r refusals
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range 5 {
		r.add(t0)
	}
	if got := r.recent(t0.Add(500 * time.Millisecond)); got != 5 {
		t.Errorf("same window: %d", got)
	}
	if got := r.recent(t0.Add(1500 * time.Millisecond)); got != 5 {
		t.Errorf("next window keeps the last one's count: %d", got)
	}
	if got := r.recent(t0.Add(2500 * time.Millisecond)); got != 0 {
		t.Errorf("two windows later: %d", got)
	}
	r.add(t0.Add(10 * time.Second))
	if got := r.recent(t0.Add(10 * time.Second)); got != 1 {
		t.Errorf("after a long gap: %d", got)
	}
}
