package manager

import (
	"testing"
	"time"
	"unsafe"
)

// TestLayout: a Manager stays within the size class its fields were
// chosen for (a million IKE SAs hold one each); a new field that crosses
// it should go to seldom, or say why not and raise the figure here.
func TestLayout(t *testing.T) {
	if n := unsafe.Sizeof(Manager{}); n > 160 {
		t.Errorf("Manager is %d bytes, over its 160-byte size class", n)
	}
}

// TestInstants: times made instants and back are the same times, in the
// same order, the zero time first.
func TestInstants(t *testing.T) {
	now := instantEpoch.Add(100 * 365 * 24 * time.Hour) // time.Now at start
	times := []time.Time{{}, epoch, epoch.Add(time.Nanosecond), now, now.Add(time.Hour), time.Now(), time.Now().Add(90 * 24 * time.Hour)}
	for i, a := range times {
		if back := at(a).t(); !back.Equal(a) {
			t.Errorf("%v is %v again", a, back)
		}
		for _, b := range times[i+1:] {
			if (at(a) < at(b)) != a.Before(b) {
				t.Errorf("%v < %v, instants %d < %d", a, b, at(a), at(b))
			}
		}
	}
	if at(time.Time{}) != 0 || at(instantEpoch) == 0 {
		t.Error("only the zero time is instant 0")
	}
}
