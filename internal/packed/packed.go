// Package packed is the compact encoding of the SA API's and iked's
// listing pages (sa.dump, sas.list): entries framed by their length, so
// that a reader skips the fields a newer writer added after the ones it
// knows; varints; counts written as n+1 with 0 for nil, as JSON tells null
// from an empty list. The entries themselves are written and read by the
// packages that own their types (dataplane/api, control/iked/ikectl) with
// these pieces.
package packed

import (
	"encoding/binary"
	"errors"
)

// ErrShort is a field or entry that runs past the bytes it was given.
var ErrShort = errors.New("truncated")

// AppendEntry appends what fields writes behind its length. The length is
// not known before: room for a short one, moved once if it is longer.
func AppendEntry(b []byte, fields func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, 0)
	b = fields(b)
	n := len(b) - start - 1
	if n < 0x80 {
		b[start] = byte(n)
		return b
	}
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	b = append(b, l[:k-1]...)
	copy(b[start+k:], b[start+1:start+1+n])
	copy(b[start:], l[:k])
	return b
}

// Entries counts the whole entries at the start of a page of entries (each
// behind its length), so that a reader sizes its output once; it stops at
// the first that runs past the page, which the reader then reports.
func Entries(b []byte) int {
	n := 0
	for len(b) > 0 {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			break
		}
		b = b[k+int(l):]
		n++
	}
	return n
}

// AppendString appends s behind its length.
func AppendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// AppendBytes appends v behind its length plus one, 0 for nil.
func AppendBytes(b, v []byte) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v))+1)
	return append(b, v...)
}

// AppendCount appends the count of a list as n+1, 0 for nil.
func AppendCount(b []byte, n int, isNil bool) []byte {
	if isNil {
		return append(b, 0)
	}
	return binary.AppendUvarint(b, uint64(n)+1)
}

// AppendBool appends v as a byte.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// Reader reads an entry's fields from B. The first error sticks in Err and
// the reads after it give zeros, so that a decoder reads every field and
// checks Err once.
type Reader struct {
	B   []byte
	Err error
}

// Fail records ErrShort (unless an error is already there) and stops
// reading.
func (d *Reader) Fail() {
	if d.Err == nil {
		d.Err = ErrShort
	}
	d.B = nil
}

// Uvarint reads an unsigned varint.
func (d *Reader) Uvarint() uint64 {
	v, k := binary.Uvarint(d.B)
	if k <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[k:]
	return v
}

// Varint reads a signed varint.
func (d *Reader) Varint() int64 {
	v, k := binary.Varint(d.B)
	if k <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[k:]
	return v
}

// Byte reads one byte.
func (d *Reader) Byte() byte {
	if len(d.B) == 0 {
		d.Fail()
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Bool reads what AppendBool wrote.
func (d *Reader) Bool() bool { return d.Byte() != 0 }

// Raw reads n bytes; they alias B.
func (d *Reader) Raw(n uint64) []byte {
	if n > uint64(len(d.B)) {
		d.Fail()
		return nil
	}
	v := d.B[:n]
	d.B = d.B[n:]
	return v
}

// Entry reads a length and that many bytes (aliasing B): a string's bytes,
// or a whole entry of AppendEntry.
func (d *Reader) Entry() []byte { return d.Raw(d.Uvarint()) }

// String reads what AppendString wrote.
func (d *Reader) String() string { return string(d.Entry()) }

// Bytes reads what AppendBytes wrote, as a copy.
func (d *Reader) Bytes() []byte {
	n := d.Uvarint()
	if n == 0 {
		return nil
	}
	return append([]byte{}, d.Raw(n-1)...)
}

// Count reads what AppendCount wrote. It is bounded by the bytes left
// (every element takes one at least), so that a lying count cannot make
// the caller allocate more than the input could fill.
func (d *Reader) Count() (n int, isNil bool) {
	c := d.Uvarint()
	if c == 0 {
		return 0, true
	}
	if c-1 > uint64(len(d.B)) {
		d.Fail()
		return 0, true
	}
	return int(c - 1), false
}

// U16 reads a varint that must fit 16 bits.
func (d *Reader) U16() uint16 {
	v := d.Uvarint()
	if v > 0xffff {
		d.Fail()
	}
	return uint16(v)
}

// U32 reads a varint that must fit 32 bits.
func (d *Reader) U32() uint32 {
	v := d.Uvarint()
	if v > 0xffffffff {
		d.Fail()
	}
	return uint32(v)
}
