package packed

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Entries of every length frame the same way, long ones included (their
// length takes more than one byte and the fields move once).
func TestEntryRoundTrip(t *testing.T) {
	var b []byte
	want := []string{"", "a", strings.Repeat("x", 127), strings.Repeat("y", 128), strings.Repeat("z", 70000)}
	for _, w := range want {
		b = AppendEntry(b, func(b []byte) []byte {
			b = AppendString(b, w)
			b = AppendBool(b, true)
			b = AppendBytes(b, nil)
			return append(AppendCount(b, 3, false), 1, 2, 3) // a count of 3 needs 3 bytes behind it at least
		})
	}
	d := Reader{B: b}
	for _, w := range want {
		e := Reader{B: d.Entry()}
		got, ok, nb := e.String(), e.Bool(), e.Bytes()
		n, isNil := e.Count()
		e.Raw(3)
		if got != w || !ok || nb != nil || n != 3 || isNil || e.Err != nil {
			t.Fatalf("entry of %d bytes: %d bytes, %v, %v, %d %v, %v", len(w), len(got), ok, nb, n, isNil, e.Err)
		}
	}
	if d.Err != nil || len(d.B) != 0 {
		t.Fatalf("after the entries: %v, %d bytes left", d.Err, len(d.B))
	}
}

// A truncated or lying input is an error that sticks, never a panic or an
// allocation the input could not fill.
func TestShortInput(t *testing.T) {
	b := AppendEntry(nil, func(b []byte) []byte { return AppendBytes(b, bytes.Repeat([]byte{1}, 300)) })
	for i := range len(b) {
		d := Reader{B: b[:i]}
		e := Reader{B: d.Entry()}
		e.Bytes()
		if d.Err == nil && e.Err == nil {
			t.Fatalf("%d of %d bytes read without an error", i, len(b))
		}
	}
	d := Reader{B: AppendCount(nil, 1<<40, false)}
	if n, isNil := d.Count(); n != 0 || !isNil || !errors.Is(d.Err, ErrShort) {
		t.Fatalf("a count of 2^40 in 6 bytes: %d, %v, %v", n, isNil, d.Err)
	}
	d = Reader{B: []byte{0xff, 0xff, 0x07}}
	if d.U16(); d.Err == nil {
		t.Fatal("a varint past 16 bits read as a uint16")
	}
	if d.Uvarint(); !errors.Is(d.Err, ErrShort) {
		t.Fatalf("the first error does not stick: %v", d.Err)
	}
}

// TestEntries counts whole entries and stops at one that runs past the page.
func TestEntries(t *testing.T) {
	var b []byte
	for i := range 3 {
		b = AppendEntry(b, func(b []byte) []byte { return append(b, make([]byte, 100*i)...) })
	}
	for cut, want := range map[int]int{len(b): 3, len(b) - 1: 2, 1: 1, 0: 0} {
		if got := Entries(b[:cut]); got != want {
			t.Errorf("Entries of %d of %d bytes: %d, want %d", cut, len(b), got, want)
		}
	}
}
