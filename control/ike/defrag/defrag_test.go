package defrag

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/message"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func frag(n, total int, data string) *message.Fragment {
	f := &message.Fragment{Number: uint16(n), Total: uint16(total), Data: []byte(data)}
	if n == 1 {
		f.NextPayload = message.PayloadIDi
	}
	return f
}

func TestOutOfOrderAndDuplicates(t *testing.T) {
	b := New(Limits{})
	steps := []struct {
		n    int
		want Result
	}{{3, Incomplete}, {1, Incomplete}, {3, Duplicate}, {1, Duplicate}, {2, Complete}}
	var out []*message.Fragment
	for _, s := range steps {
		var r Result
		out, r = b.Add(t0, 7, frag(s.n, 3, string(rune('a'+s.n-1))))
		if r != s.want {
			t.Fatalf("fragment %d: %s, want %s", s.n, r, s.want)
		}
	}
	var got []byte
	for i, f := range out {
		if int(f.Number) != i+1 {
			t.Fatalf("fragment %d at %d", f.Number, i)
		}
		got = append(got, f.Data...)
	}
	if string(got) != "abc" {
		t.Errorf("reassembled %q", got)
	}
	if _, _, _, _, ok := b.Pending(); ok {
		t.Error("buffer not empty after completion")
	}
}

func TestDataIsCopied(t *testing.T) {
	b := New(Limits{})
	d := []byte("xyz")
	b.Add(t0, 1, &message.Fragment{Number: 1, Total: 2, Data: d})
	d[0] = '!'
	out, r := b.Add(t0, 1, frag(2, 2, "w"))
	if r != Complete || string(out[0].Data) != "xyz" {
		t.Fatalf("%s %q", r, out[0].Data)
	}
}

func TestRefragmentation(t *testing.T) {
	b := New(Limits{})
	b.Add(t0, 1, frag(1, 2, "a"))
	// The sender retransmits with smaller fragments: more of them.
	if _, r := b.Add(t0, 1, frag(1, 3, "x")); r != Incomplete {
		t.Fatalf("larger total: %s", r)
	}
	if _, have, total, _, _ := b.Pending(); have != 1 || total != 3 {
		t.Fatalf("after re-fragmentation %d of %d", have, total)
	}
	// A late fragment of the first attempt is ignored.
	if _, r := b.Add(t0, 1, frag(2, 2, "b")); r != Stale {
		t.Fatalf("smaller total: %s", r)
	}
	b.Add(t0, 1, frag(2, 3, "y"))
	if out, r := b.Add(t0, 1, frag(3, 3, "z")); r != Complete || len(out) != 3 {
		t.Fatalf("%s %d", r, len(out))
	}
}

func TestNewMessageIDReplaces(t *testing.T) {
	b := New(Limits{})
	b.Add(t0, 1, frag(1, 2, "a"))
	if _, r := b.Add(t0, 2, frag(2, 2, "b")); r != Incomplete {
		t.Fatal(r)
	}
	if id, have, _, _, _ := b.Pending(); id != 2 || have != 1 {
		t.Errorf("pending id %d have %d", id, have)
	}
}

func TestLimits(t *testing.T) {
	b := New(Limits{MaxFragments: 4, MaxBytes: 10, Timeout: time.Second})
	if _, r := b.Add(t0, 1, frag(1, 5, "a")); r != OverLimit {
		t.Errorf("5 fragments with a limit of 4: %s", r)
	}
	b.Add(t0, 1, frag(1, 3, "aaaa"))
	b.Add(t0, 1, frag(2, 3, "bbbb"))
	if _, r := b.Add(t0, 1, frag(3, 3, "ccc")); r != OverLimit {
		t.Errorf("11 bytes with a limit of 10: %s", r)
	}
	if _, _, _, _, ok := b.Pending(); ok {
		t.Error("over-limit message kept")
	}
	// Time: an incomplete message goes after Timeout.
	b.Add(t0, 1, frag(1, 2, "a"))
	if b.Expire(t0.Add(999 * time.Millisecond)) {
		t.Error("expired early")
	}
	if !b.Expire(t0.Add(time.Second)) {
		t.Error("not expired after the timeout")
	}
	b.Add(t0, 1, frag(1, 2, "a"))
	if _, r := b.Add(t0.Add(2*time.Second), 1, frag(2, 2, "b")); r != Incomplete {
		t.Errorf("fragment after the timeout joined the expired set: %s", r)
	}
}

// TestFlood sends a hostile stream: every fragment number of the largest
// allowed Total, many times, with the largest data, under changing message
// IDs; the buffer never holds more than its limits.
func TestFlood(t *testing.T) {
	l := Limits{MaxFragments: 16, MaxBytes: 4096, Timeout: time.Second}
	b := New(l)
	data := string(bytes.Repeat([]byte{1}, 1000))
	now := t0
	for i := range 100000 {
		now = now.Add(time.Millisecond)
		b.Add(now, uint32(i/5000), frag(i%16+1, 16, data))
		_, have, _, n, _ := b.Pending()
		if n > l.MaxBytes || have > l.MaxFragments {
			t.Fatalf("step %d: %d bytes in %d fragments", i, n, have)
		}
	}
}

// FuzzBuffer feeds arbitrary fragment sequences (message ID, number,
// total, data length, time step) and checks the invariants: the limits
// hold at every step, and a completed message is exactly fragments 1..Total
// of one Total, which message.Reassemble accepts as a set.
func FuzzBuffer(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 10, 0, 0, 2, 2, 0, 10, 0})
	f.Add([]byte{0, 2, 3, 0, 1, 0, 0, 1, 3, 0, 1, 0, 0, 1, 3, 0, 1, 0, 0, 3, 3, 0, 1, 0})
	f.Add([]byte{0, 1, 2, 0, 200, 5, 1, 1, 4, 1, 0, 31, 1, 4, 4, 0, 5, 0})
	f.Add(bytes.Repeat([]byte{3, 9, 9, 0xff, 0xff, 1}, 20))
	f.Add([]byte{0, 1, 2, 0, 200, 0, 4, 1, 2, 0, 200, 0, 5, 2, 2, 0, 200, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		// Two Buffers (bit 2 of the first byte) share a Budget smaller
		// than their MaxBytes together.
		budget := NewBudget(3000)
		l := Limits{MaxFragments: 8, MaxBytes: 2000, Timeout: 10 * time.Second, Budget: budget}
		bufs := [2]*Buffer{New(l), New(l)}
		now := t0
		for len(ops) >= 6 {
			op := ops[:6]
			ops = ops[6:]
			b := bufs[op[0]>>2&1]
			msgID := uint32(op[0] % 4)
			n, total := uint16(op[1]%12), uint16(op[2]%12)
			size := int(binary.BigEndian.Uint16(op[3:5])) % 3000
			now = now.Add(time.Duration(op[5]) * time.Second / 4)
			fr := &message.Fragment{Number: n, Total: total, Data: make([]byte, size), NextPayload: message.PayloadNotify}
			out, r := b.Add(now, msgID, fr)
			if _, have, tot, nb, ok := b.Pending(); ok && (nb > l.MaxBytes || have > tot || tot > l.MaxFragments) {
				t.Fatalf("limits broken: %d bytes, %d of %d fragments", nb, have, tot)
			}
			if r == Complete {
				if len(out) == 0 {
					t.Fatal("complete without fragments")
				}
				sum := 0
				for i, x := range out {
					if x == nil || int(x.Number) != i+1 || x.Total != out[0].Total || int(x.Total) != len(out) {
						t.Fatalf("completed set broken at %d", i)
					}
					sum += len(x.Data)
				}
				if sum > l.MaxBytes {
					t.Fatalf("completed set of %d bytes", sum)
				}
				// The set is what Reassemble wants; the chain inside is
				// zeros, which may or may not decode: only no panic.
				message.Reassemble(out)
			} else if out != nil {
				t.Fatalf("%s with fragments", r)
			}
			held := 0
			for _, x := range bufs {
				_, _, _, nb, _ := x.Pending()
				held += nb
			}
			if held != budget.Used() || held > budget.Max() {
				t.Fatalf("buffers hold %d bytes, the budget counts %d of %d", held, budget.Used(), budget.Max())
			}
		}
		bufs[0].Reset()
		bufs[1].Reset()
		if budget.Used() != 0 {
			t.Fatalf("%d bytes still counted after both Buffers were reset", budget.Used())
		}
	})
}

// TestBudget: Buffers sharing a Budget hold no more than it together; a
// fragment that would pass it drops its message, and every way a message
// ends (complete, expired, replaced, reset) gives its bytes back.
func TestBudget(t *testing.T) {
	bud := NewBudget(10)
	l := Limits{Timeout: time.Second, Budget: bud}
	a, b := New(l), New(l)
	if _, r := a.Add(t0, 1, frag(1, 2, "123456")); r != Incomplete || bud.Used() != 6 {
		t.Fatalf("a: %s, %d bytes used", r, bud.Used())
	}
	if _, r := b.Add(t0, 1, frag(1, 3, "1234")); r != Incomplete || bud.Used() != 10 {
		t.Fatalf("b: %s, %d bytes used", r, bud.Used())
	}
	// Full: b's next fragment drops b's message, a's stays.
	if _, r := b.Add(t0, 1, frag(2, 3, "x")); r != OverBudget || bud.Used() != 6 {
		t.Fatalf("b over the budget: %s, %d bytes used", r, bud.Used())
	}
	if _, _, _, _, ok := b.Pending(); ok {
		t.Fatal("b still collects the message that passed the budget")
	}
	if out, r := a.Add(t0, 1, frag(2, 2, "7890")); r != Complete || len(out) != 2 || bud.Used() != 0 {
		t.Fatalf("a completes: %s, %d bytes used", r, bud.Used())
	}
	// Expired, replaced by another message ID, reset.
	a.Add(t0, 2, frag(1, 2, "abc"))
	a.Add(t0.Add(2*time.Second), 3, frag(1, 2, "de"))
	if bud.Used() != 2 {
		t.Fatalf("after an expiry: %d bytes used, want 2", bud.Used())
	}
	a.Add(t0.Add(2*time.Second), 4, frag(1, 2, "fgh"))
	if bud.Used() != 3 {
		t.Fatalf("after a replacement: %d bytes used, want 3", bud.Used())
	}
	a.Reset()
	if bud.Used() != 0 {
		t.Fatalf("after Reset: %d bytes used", bud.Used())
	}
	// A lower bound applies to what comes next.
	bud.SetMax(2)
	if _, r := a.Add(t0, 5, frag(1, 2, "abc")); r != OverBudget || bud.Used() != 0 {
		t.Fatalf("after SetMax(2): %s, %d bytes used", r, bud.Used())
	}
}
