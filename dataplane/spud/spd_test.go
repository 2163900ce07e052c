package spud

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/steer"
)

// fakeSPD is the steering program's SPD: the policy id of each entry.
type fakeSPD map[spdKey]uint32

func (f fakeSPD) SetPolicy(p steer.Policy) error { f[keyOf(p)] = p.ID; return nil }
func (f fakeSPD) DeletePolicy(ifindex int, local, remote netip.Prefix) error {
	k := spdKeyOf(ifindex, local, remote)
	if _, ok := f[k]; !ok {
		return fmt.Errorf("no entry %v", k)
	}
	delete(f, k)
	return nil
}

// Policies with the same selectors, added and removed in every order:
// the entry names the newest policy left, and goes with the last one.
func TestSPDEntriesShared(t *testing.T) {
	l, r := netip.MustParsePrefix("198.18.1.0/24"), netip.MustParsePrefix("198.18.2.0/24")
	pol := func(id uint32) steer.Policy { return steer.Policy{Ifindex: 3, Local: l, Remote: r, ID: id} }
	other := steer.Policy{Ifindex: 3, Local: l, Remote: netip.MustParsePrefix("198.18.3.0/24"), ID: 9}
	ids := []uint32{1, 2, 3}
	// Every order of deleting the three.
	for _, order := range [][]int{{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			prog := fakeSPD{}
			var s spdEntries
			for _, id := range ids {
				if err := s.add(prog, pol(id)); err != nil {
					t.Fatal(err)
				}
			}
			s.add(prog, other)
			left := map[uint32]bool{1: true, 2: true, 3: true}
			for _, i := range order {
				if err := s.del(prog, pol(ids[i])); err != nil {
					t.Fatal(err)
				}
				delete(left, ids[i])
				newest := uint32(0)
				for _, id := range ids {
					if left[id] {
						newest = id
					}
				}
				got, ok := prog[keyOf(pol(0))]
				switch {
				case newest == 0 && ok:
					t.Errorf("after deleting %v: entry %d stays with no policy", order, got)
				case newest != 0 && got != newest:
					t.Errorf("after deleting policy %d: entry names %d (present %v), want the newest left, %d", ids[i], got, ok, newest)
				}
				if prog[keyOf(other)] != 9 {
					t.Errorf("a policy with other selectors lost its entry")
				}
			}
		})
	}
	// Deleting what is not there changes nothing.
	prog := fakeSPD{}
	var s spdEntries
	s.add(prog, pol(1))
	if err := s.del(prog, pol(7)); err != nil || prog[keyOf(pol(1))] != 1 {
		t.Errorf("deleting an unknown policy: %v %v", err, prog)
	}
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
	if len(s.by) != 0 {
		t.Errorf("the refused entry is kept: %v", s.by)
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
