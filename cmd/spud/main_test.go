package main

import (
	"strings"
	"testing"
	"time"
)

// -cipher-idle: 0 is never (Config's negative), a period of a second or
// more is taken as it is, anything shorter is refused naming the flag.
func TestCipherIdleFlag(t *testing.T) {
	for _, c := range []struct {
		in   time.Duration
		want time.Duration
		err  string
	}{
		{0, -1, ""},
		{30 * time.Second, 30 * time.Second, ""},
		{time.Second, time.Second, ""},
		{10 * time.Millisecond, 0, "-cipher-idle 10ms: want 0 (never) or at least 1s"},
		{-time.Second, 0, "-cipher-idle -1s: want 0 (never) or at least 1s"},
	} {
		got, err := cipherIdleFlag(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v: %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%v: %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
