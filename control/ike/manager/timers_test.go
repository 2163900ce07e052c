package manager

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
)

// timerCase arms one timer of a fresh established IKE SA and nothing
// else: arm returns when the timer is due, fired tells whether it ran.
type timerCase struct {
	arm   func(t *testing.T, e *fakeEnv, m *Manager) time.Time
	fired func(e *fakeEnv, m *Manager) bool
}

const in = 10 * time.Second

// timerCases has at least one case per entry of timers, by name; a name
// may have several (name/variant).
var timerCases = map[string]timerCase{
	"retransmit": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.req = &request{id: 1, exchange: message.Informational, packets: [][]byte{{1, 2, 3}}, next: e.now.Add(in)}
			return m.req.next
		},
		fired: func(e *fakeEnv, m *Manager) bool { return e.counters.Get(stats.Retransmissions) == 1 },
	},
	"fragments": {
		arm: func(t *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.rareW().frags.get(false, DefaultSettings()).Add(e.now, 1, &message.Fragment{Number: 1, Total: 2, NextPayload: message.PayloadNotify, Data: []byte{1}})
			if r, _ := m.Reassembling(); r == 0 {
				t.Fatal("fragment not held")
			}
			return m.rare().frags.deadline()
		},
		fired: func(e *fakeEnv, m *Manager) bool { return e.counters.Failures(stats.FragmentTimeout) == 1 },
	},
	"half-open": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.State = sa.Connecting
			m.SetHalfOpen(e.now.Add(in))
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return m.Destroyed() && e.failure != nil && e.failure.Reason == stats.HalfOpenTimeout
		},
	},
	"deferred": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.QueueAt(&fakeTask{kind: task.KindInfo}, e.now.Add(in))
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return m.Busy() && m.Deferred() == 0 },
	},
	"drain": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.Draining = []sa.DrainingSA{{SPI: 0xc0000042, Name: "net", Until: e.now.Add(in)}}
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return len(m.IKE.Draining) == 0 && e.counters.Get(stats.InboundDrained) == 1
		},
	},
	"rekeyed": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.State = sa.Rekeyed
			m.IKE.RekeyedUntil = e.now.Add(in)
			return m.IKE.RekeyedUntil
		},
		fired: func(e *fakeEnv, m *Manager) bool { return m.Destroyed() && e.failure == nil },
	},
	"cached-response": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.LastResponse = [][]byte{{1, 2, 3}}
			m.lastRecv = at(e.now.Add(in - CachedResponseTime))
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return m.IKE.LastResponse == nil },
	},
	// An idle IKE SA lets its SK ciphers go; its next message makes them
	// again from the keys (TestIdleCiphers).
	"cached-response/ciphers": {
		arm: func(t *testing.T, e *fakeEnv, m *Manager) time.Time {
			if _, _, err := m.IKE.Ciphers(); err != nil {
				t.Fatal(err)
			}
			m.lastRecv = at(e.now.Add(in - CachedResponseTime))
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return m.IKE.Out == nil && m.IKE.In == nil },
	},
	"ike-expire": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.ExpireAt = e.now.Add(in)
			return m.IKE.ExpireAt
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return e.counters.Get(stats.IKESAsExpired) == 1 && m.queued(task.KindIKEDelete, nil)
		},
	},
	"dpd-sample": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			e.dp = &usageDP{in: map[uint32]uint64{}}
			m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, SPIIn: 0xc0000001}}
			m.dpdDelay = 4 * in
			m.sampledAt = at(e.now.Add(in - m.dpdDelay/2))
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return m.sampledAt.t().Equal(e.now) },
	},
	"dpd": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.dpdDelay = in
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return e.counters.Get(stats.DPDChecks) == 1 && m.Busy() },
	},
	"keepalive": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.NATLocal = true
			e.set.KeepaliveInterval = in
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return e.counters.Get(stats.Keepalives) == 1 && len(e.sent) == 1 && string(e.sent[0].Data) == "\xff"
		},
	},
	"children/rekey": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, RekeyAt: e.now.Add(in)}}
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return slices.Contains(e.events, "child rekey due net") && m.IKE.Children[0].RekeyAt.IsZero()
		},
	},
	"children/expire": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, ExpireAt: e.now.Add(in)}}
			return e.now.Add(in)
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return slices.Contains(e.events, "child expired net") && m.IKE.Children[0].ExpireAt.IsZero()
		},
	},
	"children/outbound-limit": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			at := e.now.Add(in)
			m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, OutPending: true,
				Installed: at.Add(-m.outPendingLimit())}}
			return at
		},
		fired: func(e *fakeEnv, m *Manager) bool { return !m.IKE.Children[0].OutPending },
	},
	"children/outbound-probe": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			e.dp = &usageDP{in: map[uint32]uint64{0xc0000001: 3}}
			m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, OutPending: true, SPIIn: 0xc0000001,
				Installed: e.now}}
			m.armProbe()
			return e.now.Add(task.OutPendingProbe)
		},
		fired: func(e *fakeEnv, m *Manager) bool { return !m.IKE.Children[0].OutPending },
	},
	"reauth": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.ReauthAt = e.now.Add(in)
			return m.IKE.ReauthAt
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return slices.Contains(e.events, "reauth due") && m.IKE.ReauthAt.IsZero()
		},
	},
	"ike-rekey": {
		arm: func(_ *testing.T, e *fakeEnv, m *Manager) time.Time {
			m.IKE.RekeyAt = e.now.Add(in)
			return m.IKE.RekeyAt
		},
		fired: func(e *fakeEnv, m *Manager) bool {
			return m.IKE.RekeyAt.IsZero() && strings.Contains(e.logBuf.String(), "IKE SA rekey due")
		},
	},
}

// notTimers are entries of the table that arm nothing themselves.
var notTimers = map[string]bool{"arm-probe": true}

func timerEntry(name string) *timer {
	for i := range timers {
		if timers[i].name == name {
			return &timers[i]
		}
	}
	return nil
}

// TestTimerCasesCoverTable checks that every entry of the table has a
// case below, and every case an entry: a timer added to or dropped from
// the table without its test fails here.
func TestTimerCasesCoverTable(t *testing.T) {
	seen := map[string]bool{}
	for i := range timers {
		name := timers[i].name
		if seen[name] {
			t.Errorf("timer %q listed twice", name)
		}
		seen[name] = true
		if notTimers[name] {
			continue
		}
		found := false
		for c := range timerCases {
			if c == name || strings.HasPrefix(c, name+"/") {
				found = true
			}
		}
		if !found {
			t.Errorf("timer %q has no test case", name)
		}
	}
	for c := range timerCases {
		if name, _, _ := strings.Cut(c, "/"); timerEntry(name) == nil {
			t.Errorf("test case %q: no such timer", c)
		}
	}
}

// TestTimerFires arms each timer alone: Deadline names its time, a Tick
// just before does nothing, a Tick at it fires it.
func TestTimerFires(t *testing.T) {
	for name, c := range timerCases {
		t.Run(name, func(t *testing.T) {
			e := newFakeEnv(t)
			m := established(t, e)
			at := c.arm(t, e, m)
			if at.IsZero() || !at.After(e.now) {
				t.Fatalf("armed at %v, not after now %v", at, e.now)
			}
			entry, _, _ := strings.Cut(name, "/")
			if w := timerEntry(entry).when(m); !w.Equal(at) {
				t.Errorf("timer %s: when %v, want %v", entry, w, at)
			}
			if d := m.Deadline(); !d.Equal(at) {
				t.Fatalf("Deadline %v, want %v", d, at)
			}
			before := at.Add(-time.Nanosecond)
			e.now = before
			m.Tick(before)
			if len(e.events) > 0 || c.fired(e, m) {
				t.Fatalf("Tick %v before due: fired (events %q)", at.Sub(before), e.events)
			}
			if d := m.Deadline(); !d.Equal(at) {
				t.Fatalf("after an early Tick, Deadline %v, want %v", d, at)
			}
			e.now = at
			m.Tick(at)
			if !c.fired(e, m) {
				t.Fatalf("Tick at the deadline: not fired (events %q)", e.events)
			}
		})
	}
}

// TestDeadlineMovesOn checks, from each armed timer on, that each Tick at
// the Deadline consumes it: a
// Deadline that a Tick leaves where it was would make the worker spin.
func TestDeadlineMovesOn(t *testing.T) {
	for name, c := range timerCases {
		t.Run(name, func(t *testing.T) {
			e := newFakeEnv(t)
			m := established(t, e)
			c.arm(t, e, m)
			// 30 ticks: the retransmissions and the give-up of a request a
			// timer started; a keepalive goes on for ever.
			for i := 0; i < 30; i++ {
				d := m.Deadline()
				if d.IsZero() {
					break
				}
				if d.Before(e.now) {
					t.Fatalf("Deadline %v before now %v", d.Sub(epoch), e.now.Sub(epoch))
				}
				e.now = d
				m.Tick(d)
				if n := m.Deadline(); !n.IsZero() && !n.After(d) {
					t.Fatalf("tick %d at %v: Deadline stays %v (due timers: %v)", i, d.Sub(epoch), n.Sub(epoch), due(m, d))
				}
			}
		})
	}
}

// due names the timers due at now.
func due(m *Manager, now time.Time) []string {
	var names []string
	for i := range timers {
		if w := timers[i].when(m); !w.IsZero() && !now.Before(w) {
			names = append(names, timers[i].name)
		}
	}
	return names
}

// TestDestroyStopsTimers arms every timer at once, destroys the IKE SA,
// and checks that no timer is left and a Tick past them all does nothing.
func TestDestroyStopsTimers(t *testing.T) {
	e := newFakeEnv(t)
	m := established(t, e)
	var last time.Time
	var children []*sa.ChildSA
	for name, c := range timerCases {
		if name == "half-open" || name == "rekeyed" {
			continue // other states; below
		}
		if at := c.arm(t, e, m); at.After(last) {
			last = at
		}
		children = append(children, m.IKE.Children...)
	}
	m.IKE.Children = children
	if m.Deadline().IsZero() {
		t.Fatal("no deadline with every timer armed")
	}
	m.Destroy("test")
	if !m.Destroyed() || e.destroyed != 1 {
		t.Fatalf("destroyed %v, Destroyed hook called %d times", m.Destroyed(), e.destroyed)
	}
	if d := m.Deadline(); !d.IsZero() {
		t.Fatalf("destroyed: Deadline %v, want none", d)
	}
	events, sent := len(e.events), len(e.sent)
	snap := e.counters.Snapshot()
	e.now = last.Add(time.Hour)
	m.Tick(e.now)
	if len(e.events) != events || len(e.sent) != sent {
		t.Fatalf("Tick after destroy acted: %q", e.events[events:])
	}
	if !reflect.DeepEqual(e.counters.Snapshot(), snap) {
		t.Fatal("Tick after destroy counted")
	}

	for _, name := range []string{"half-open", "rekeyed"} {
		e := newFakeEnv(t)
		m := established(t, e)
		at := timerCases[name].arm(t, e, m)
		m.Destroy("test")
		events := len(e.events)
		e.now = at.Add(time.Hour)
		m.Tick(e.now)
		if d := m.Deadline(); !d.IsZero() || len(e.events) != events {
			t.Fatalf("%s: after destroy, Deadline %v, events %q", name, d, e.events[events:])
		}
	}
}
