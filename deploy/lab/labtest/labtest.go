// Package labtest ties deploy/lab to a testing.TB: the lab is removed in
// t.Cleanup (which also runs after a panic), its processes' logs and every
// host's addresses and routes are printed when the test failed, and the test
// fails if anything of the run is left behind.
package labtest

import (
	"testing"

	"github.com/spugate/spugate/deploy/lab"
	"github.com/spugate/spugate/internal/privileged"
)

// New returns an empty lab owned by t. It skips t without privilege.
func New(t testing.TB, commands ...string) *lab.Lab {
	t.Helper()
	privileged.Require(t, append([]string{"ip"}, commands...)...)
	l, err := lab.New(lab.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	own(t, l)
	return l
}

// Line builds the standard line owned by t. It skips t without privilege.
func Line(t testing.TB, lo lab.LineOptions, commands ...string) *lab.Line {
	t.Helper()
	if lo.NAT {
		commands = append(commands, "nft", "conntrack")
	}
	l := New(t, commands...)
	ln, err := lab.BuildLine(l, lo)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func own(t testing.TB, l *lab.Lab) {
	t.Cleanup(func() {
		if t.Failed() {
			l.MarkFailed()
			t.Log(l.Report())
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab %s: cleanup: %v", l.RunID, err)
		}
		left, err := l.Leftovers()
		if err != nil {
			t.Errorf("lab %s: listing leftovers: %v", l.RunID, err)
		}
		if len(left) > 0 {
			t.Errorf("lab %s: left behind after cleanup: %v", l.RunID, left)
		}
	})
}
