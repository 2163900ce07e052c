package api

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/spugate/spugate/ipsec"
)

// fillAll sets every field of v, recursively, to a value that is not its
// zero, so that a field the packed encoding leaves out reads back zero.
func fillAll(v reflect.Value, n int) {
	switch v.Type() {
	case reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{198, 18, 0, byte(n)})))
		return
	case reflect.TypeFor[ipsec.Suite]():
		v.Set(reflect.ValueOf(ipsec.AES256SHA256))
		return
	case reflect.TypeFor[Dir]():
		v.Set(reflect.ValueOf(Out))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillAll(v.Field(i), n+i+1)
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fillAll(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fillAll(v.Index(i), n+i)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(reflect.ValueOf("replay"), reflect.ValueOf(uint64(n)))
	case reflect.String:
		v.SetString("name \"x\" é")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(-int64(n) - 1)
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(n) + 200)
	default:
		panic("fillAll: no value for " + v.Type().String())
	}
}

// Every field of SAState goes through the packed encoding and back: a
// field added to SA or SAState without its place in AppendPackedSA and the
// reader fails here, rather than vanishing from spuctl sa list.
func TestPackedSACoversEveryField(t *testing.T) {
	var full SAState
	fillAll(reflect.ValueOf(&full).Elem(), 1)
	for name, s := range map[string]SAState{"every field": full, "zero": {}, "empty slices": {SA: SA{EncKey: []byte{}, LocalTS: []ipsec.Selector{}}, Stats: SAStats{Drops: map[string]uint64{}}}} {
		b := AppendPackedSA(nil, &s)
		// A long entry (its length in two bytes) followed by another.
		s2 := s
		s2.Name = string(make([]byte, 300))
		b = AppendPackedSA(b, &s2)
		got, err := DecodePackedSAs(b, nil)
		if err != nil || len(got) != 2 {
			t.Fatalf("%s: %d SAs, %v", name, len(got), err)
		}
		if !reflect.DeepEqual(got[0], s) || !reflect.DeepEqual(got[1], s2) {
			t.Errorf("%s: packed and back\n%+v\nwant\n%+v", name, got[0], s)
		}
		j1, _ := json.Marshal(got[0])
		j2, _ := json.Marshal(s)
		if string(j1) != string(j2) {
			t.Errorf("%s: JSON of the decoded SA\n%s\nwant\n%s", name, j1, j2)
		}
		// Every truncation is an error, never a panic.
		for i := range len(b) - 1 {
			if _, err := DecodePackedSAs(b[:i], nil); err == nil && i != 0 && i != len(b)-len(AppendPackedSA(nil, &s2)) {
				t.Errorf("%s: truncated to %d bytes: no error", name, i)
			}
		}
	}
}

// A decoder skips what a newer spud appends to an entry.
func TestPackedSASkipsNewerFields(t *testing.T) {
	s := SAState{SA: SA{SPI: 0x1234, Dir: In, Name: "a"}, SPU: 1}
	b := AppendPackedSA(nil, &s)
	entry := append(append([]byte{}, b[1:]...), 9, 9, 9)
	nb := append([]byte{byte(len(entry))}, entry...)
	nb = AppendPackedSA(nb, &s)
	got, err := DecodePackedSAs(nb, nil)
	if err != nil || len(got) != 2 || !reflect.DeepEqual(got[0], s) || !reflect.DeepEqual(got[1], s) {
		t.Fatalf("%+v %v", got, err)
	}
}

func FuzzDecodePackedSAs(f *testing.F) {
	var full SAState
	fillAll(reflect.ValueOf(&full).Elem(), 1)
	f.Add(AppendPackedSA(nil, &full))
	f.Fuzz(func(t *testing.T, b []byte) {
		DecodePackedSAs(b, nil) // must not panic
	})
}
