package spud

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/spugate/spugate/dataplane/steer"
)

// fakeSPD is the steering program's SPD: the policies of each entry,
// oldest first, the last in the maps (steer.Program keeps them so).
type fakeSPD map[spdKey][]uint32

// spdKey is an entry's selectors.
type spdKey struct {
	ifindex       int
	local, remote netip.Prefix
}

func keyOf(p steer.Policy) spdKey { return spdKey{p.Ifindex, p.Local, p.Remote} }

func (f fakeSPD) SetPolicy(p steer.Policy) error {
	k := keyOf(p)
	f[k] = append(slices.DeleteFunc(f[k], func(id uint32) bool { return id == p.ID }), p.ID)
	return nil
}

func (f fakeSPD) RemovePolicy(p steer.Policy) error {
	k := keyOf(p)
	if l := slices.DeleteFunc(f[k], func(id uint32) bool { return id == p.ID }); len(l) > 0 {
		f[k] = l
	} else {
		delete(f, k)
	}
	return nil
}

// fullSPD refuses every SetPolicy as a full steering table does.
type fullSPD struct{ fakeSPD }

func (f fullSPD) SetPolicy(p steer.Policy) error {
	return fmt.Errorf("steer: policy %d: %w", p.ID, &steer.TableFullError{Map: "spd6_dst", IPv6: true, Size: 16384, Policies: 16384})
}

// A refused add leaves no trace: a later delete of the same policy does
// not touch the program, and the refusal reads in the operator's terms.
func TestSPDEntriesFull(t *testing.T) {
	prog := fullSPD{fakeSPD{}}
	var s spdEntries
	e := steer.Policy{Ifindex: 3, Local: netip.MustParsePrefix("2001:db8:1::/48"), Remote: netip.MustParsePrefix("2001:db8:2::/48"), ID: 4}
	err := s.add(prog, e)
	var full *steer.TableFullError
	if !errors.As(err, &full) {
		t.Fatalf("add: %v, want a *steer.TableFullError", err)
	}
	if len(prog.fakeSPD) != 0 {
		t.Errorf("the refused entry is kept: %v", prog.fakeSPD)
	}
	if err := s.del(prog, e); err != nil {
		t.Errorf("delete of the refused entry: %v", err)
	}
	if got, want := tableFullText(full), "policy table full: 16384 IPv6 policies (raise -max-policies)"; got != want {
		t.Errorf("refusal %q, want %q", got, want)
	}
	src := &steer.TableFullError{Map: "spd4_src", Size: 32, Policies: 7}
	if got, want := tableFullText(src), "policy table full: spd4_src holds 32 source entries, for 7 IPv4 policies (raise -max-policies)"; got != want {
		t.Errorf("refusal %q, want %q", got, want)
	}
}
