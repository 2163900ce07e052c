package manager

import (
	"net/netip"
	"strings"
	"testing"
)

// TestLogger: a line of the IKE SA's logger carries its attributes first,
// as they are when it is written (the peer's new address), then those of
// With, then the line's own; it is enabled as the worker's logger is.
func TestLogger(t *testing.T) {
	e := newFakeEnv(t)
	m := established(t, e)
	m.IKE.ConnName = "tun"
	m.Logger().Info("one", "k", 1)
	m.IKE.Remote = netip.MustParseAddrPort("198.18.0.9:4500")
	m.Logger().With("child", "net").Info("two", "k", 2)
	m.Logger().With("a", 1).With("b", 2).Warn("three")
	lines := strings.Split(strings.TrimSpace(e.logBuf.String()), "\n")
	want := []string{
		`level=INFO msg=one ike_id=1 conn=tun spis="0000000000001111_i 0000000000002222_r" peer=198.18.0.2:500 k=1`,
		`level=INFO msg=two ike_id=1 conn=tun spis="0000000000001111_i 0000000000002222_r" peer=198.18.0.9:4500 child=net k=2`,
		`level=WARN msg=three ike_id=1 conn=tun spis="0000000000001111_i 0000000000002222_r" peer=198.18.0.9:4500 a=1 b=2`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), e.logBuf.String())
	}
	for i, l := range lines {
		if _, rest, _ := strings.Cut(l, " "); rest != want[i] {
			t.Errorf("line %d:\n%s\nwant\n%s", i, rest, want[i])
		}
	}
	if m.Logger().Enabled(t.Context(), -8) != e.log.Enabled(t.Context(), -8) {
		t.Error("Enabled differs from the worker's logger")
	}
}
