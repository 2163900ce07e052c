package manager

import (
	"errors"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
)

// TestRetransmitThenGiveUp sends a request the peer never answers: it goes
// out again at Timeout*Base^n after each try, and after the last try the
// IKE SA fails with RETRANSMIT_TIMEOUT and its task learns the end.
func TestRetransmitThenGiveUp(t *testing.T) {
	e := newFakeEnv(t)
	e.set.RetransmitTimeout, e.set.RetransmitBase, e.set.RetransmitTries = time.Second, 2, 3
	m := established(t, e)
	tk := &fakeTask{kind: task.KindInfo}
	m.Queue(tk)
	m.Initiate()
	if !m.Busy() || tk.built != 1 || len(e.sent) != 1 || m.IKE.InFlight == nil {
		t.Fatalf("request not sent: busy %v, built %d, sent %d", m.Busy(), tk.built, len(e.sent))
	}
	first := e.sent[0].Data
	// Sent at 0 s, again at 1, 3, 7 s; given up at 15 s.
	var at []time.Duration
	for i := 0; i < 10 && !m.Destroyed(); i++ {
		d := m.Deadline()
		e.now = d
		m.Tick(d)
		if !m.Destroyed() {
			at = append(at, d.Sub(epoch))
		}
	}
	want := []time.Duration{time.Second, 3 * time.Second, 7 * time.Second}
	if len(at) != len(want) {
		t.Fatalf("retransmitted at %v, want %v", at, want)
	}
	for i := range want {
		if at[i] != want[i] {
			t.Fatalf("retransmitted at %v, want %v", at, want)
		}
	}
	if len(e.sent) != 4 {
		t.Fatalf("%d datagrams sent, want 4", len(e.sent))
	}
	for _, d := range e.sent[1:] {
		if string(d.Data) != string(first) {
			t.Fatal("a retransmission differs from the request")
		}
	}
	if !m.Destroyed() || e.now.Sub(epoch) != 15*time.Second {
		t.Fatalf("destroyed %v at %v, want at 15s", m.Destroyed(), e.now.Sub(epoch))
	}
	if e.failure == nil || e.failure.Reason != stats.RetransmitTimeout || tk.aborted == nil {
		t.Fatalf("failure %+v, task aborted %v", e.failure, tk.aborted)
	}
	if n := e.counters.Get(stats.Retransmissions); n != 3 {
		t.Fatalf("%d retransmissions counted, want 3", n)
	}
}

// TestResponseEndsRetransmission answers a request after one
// retransmission: the task processes it once, the message ID moves on,
// and no timer is left but the one that lets the ciphers go once idle.
func TestResponseEndsRetransmission(t *testing.T) {
	e := newFakeEnv(t)
	m := established(t, e)
	tk := &fakeTask{kind: task.KindInfo}
	m.Queue(tk)
	m.Initiate()
	d := m.Deadline()
	e.now = d
	m.Tick(d)
	if len(e.sent) != 2 {
		t.Fatalf("%d datagrams sent, want the request and one retransmission", len(e.sent))
	}
	respond(t, e, m)
	if m.Busy() || tk.processed != 1 || m.IKE.MsgIDOut != 2 || m.IKE.InFlight != nil {
		t.Fatalf("after the response: busy %v, processed %d, msgid %d, in flight %v", m.Busy(), tk.processed,
			m.IKE.MsgIDOut, m.IKE.InFlight)
	}
	if d, want := m.Deadline(), e.now.Add(CachedResponseTime); !d.Equal(want) {
		t.Fatalf("Deadline %v after the response, want the ciphers' idle time %v", d.Sub(epoch), want.Sub(epoch))
	}
}

// TestIdleCiphers: an IKE SA idle for CachedResponseTime lets its SK
// ciphers go and keeps its keys; its next exchange makes them again and
// goes through, both ways.
func TestIdleCiphers(t *testing.T) {
	e := newFakeEnv(t)
	m := established(t, e)
	exchange := func() {
		t.Helper()
		tk := &fakeTask{kind: task.KindInfo}
		m.Queue(tk)
		m.Initiate()
		if !m.Busy() {
			t.Fatal("request not sent")
		}
		// Sent long after the peer last spoke: the ciphers stay for the
		// response, rather than being let go at once.
		if d := m.Deadline(); !d.After(e.now) || m.IKE.In == nil {
			t.Fatalf("request outstanding: Deadline %v, now %v, cipher %v", d.Sub(epoch), e.now.Sub(epoch), m.IKE.In)
		}
		_, peer, err := m.IKE.Keys.Ciphers(m.IKE.Initiator)
		if err != nil {
			t.Fatal(err)
		}
		if req, err := message.Decode(e.sent[len(e.sent)-1].Data); err != nil || req.Decrypt(peer) != nil {
			t.Fatal("the request does not open with the peer's cipher")
		}
		respond(t, e, m)
		if m.Busy() || tk.processed != 1 {
			t.Fatalf("response not processed: busy %v, processed %d", m.Busy(), tk.processed)
		}
	}
	exchange()
	if m.IKE.Out == nil || m.IKE.In == nil {
		t.Fatal("no ciphers after an exchange")
	}
	e.now = m.Deadline()
	m.Tick(e.now)
	if m.IKE.Out != nil || m.IKE.In != nil || m.IKE.Keys == nil {
		t.Fatalf("idle for %v: ciphers %v %v, keys %v; want the keys only", CachedResponseTime, m.IKE.Out, m.IKE.In, m.IKE.Keys)
	}
	if d := m.Deadline(); !d.IsZero() {
		t.Fatalf("Deadline %v once idle, want none", d.Sub(epoch))
	}
	e.now = e.now.Add(time.Hour)
	exchange()
	if m.Destroyed() || m.IKE.MsgIDOut != 3 {
		t.Fatalf("after idling: destroyed %v, msgid %d", m.Destroyed(), m.IKE.MsgIDOut)
	}
}

// TestDPD checks liveness: no sign of the peer for dpd_delay sends an
// empty INFORMATIONAL, an answer puts the next check dpd_delay after it,
// and an unanswered one ends the IKE SA with DPD_TIMEOUT.
func TestDPD(t *testing.T) {
	e := newFakeEnv(t)
	e.set.RetransmitTimeout, e.set.RetransmitBase, e.set.RetransmitTries = time.Second, 2, 2
	m := established(t, e)
	m.dpdDelay = 30 * time.Second
	if d := m.Deadline(); d.Sub(epoch) != 30*time.Second {
		t.Fatalf("first check at %v, want 30s", d.Sub(epoch))
	}
	e.now = epoch.Add(30 * time.Second)
	m.Tick(e.now)
	if !m.Busy() || m.req.exchange != message.Informational || len(e.sent) != 1 || e.counters.Get(stats.DPDChecks) != 1 {
		t.Fatalf("no liveness check sent: busy %v, sent %d", m.Busy(), len(e.sent))
	}
	e.now = e.now.Add(500 * time.Millisecond)
	respond(t, e, m)
	if m.Busy() {
		t.Fatal("liveness check still outstanding after the answer")
	}
	if d, want := m.Deadline(), e.now.Add(30*time.Second); !d.Equal(want) {
		t.Fatalf("next check at %v, want %v", d.Sub(epoch), want.Sub(epoch))
	}

	// The next check goes unanswered.
	for i := 0; i < 10 && !m.Destroyed(); i++ {
		d := m.Deadline()
		e.now = d
		m.Tick(d)
	}
	if !m.Destroyed() || e.failure == nil || e.failure.Reason != stats.DPDTimeout {
		t.Fatalf("destroyed %v, failure %+v, want DPD_TIMEOUT", m.Destroyed(), e.failure)
	}
	if n := e.counters.Get(stats.DPDChecks); n != 2 {
		t.Fatalf("%d liveness checks, want 2", n)
	}
}

// TestDPDCountsESP checks that inbound ESP, as the data plane counts it,
// postpones the liveness check: the count is sampled every dpd_delay/2.
func TestDPDCountsESP(t *testing.T) {
	e := newFakeEnv(t)
	dp := &usageDP{in: map[uint32]uint64{}}
	e.dp = dp
	m := established(t, e)
	m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, SPIIn: 0xc0000001}}
	m.dpdDelay = 30 * time.Second
	// ESP arrives all along: no check for 5 minutes.
	// The first sample is due at once (Deadline in the past: the worker
	// ticks now).
	step := func(esp bool) {
		if d := m.Deadline(); d.After(e.now) {
			if esp {
				dp.in[0xc0000001] += uint64(d.Sub(e.now) / time.Second)
			}
			e.now = d
		}
		m.Tick(e.now)
	}
	for e.now.Before(epoch.Add(5 * time.Minute)) {
		step(true)
	}
	if n := e.counters.Get(stats.DPDChecks); n != 0 || m.Busy() {
		t.Fatalf("%d liveness checks while ESP arrived", n)
	}
	// ESP stops: a check within 1.5 dpd_delay.
	stop := e.now
	for e.counters.Get(stats.DPDChecks) == 0 && e.now.Before(stop.Add(time.Minute)) {
		step(false)
	}
	if e.counters.Get(stats.DPDChecks) != 1 || e.now.Sub(stop) > 45*time.Second {
		t.Fatalf("liveness check %v after ESP stopped (%d checks), want within 45s", e.now.Sub(stop),
			e.counters.Get(stats.DPDChecks))
	}
}

// TestDPDSampleFailureDoesNotSpin: while the data plane cannot say how
// many packets arrived (spud restarting), the sample is tried again every
// dpd_delay/2; its due time used to stay in the past, so that Deadline
// did too and the worker spun.
func TestDPDSampleFailureDoesNotSpin(t *testing.T) {
	e := newFakeEnv(t)
	dp := &usageDP{in: map[uint32]uint64{}, fail: errors.New("not connected to spud")}
	e.dp = dp
	m := established(t, e)
	m.IKE.Children = []*sa.ChildSA{{Name: "net", State: sa.ChildInstalled, SPIIn: 0xc0000001}}
	m.dpdDelay = 30 * time.Second
	for i := range 10 {
		// The first sample is due at once (a Deadline in the past).
		d := later(m.Deadline(), e.now)
		e.now = d
		m.Tick(d)
		if m.Destroyed() {
			break
		}
		if n := m.Deadline(); !n.After(d) {
			t.Fatalf("tick %d at %v: Deadline stays %v while the samples fail", i, d.Sub(epoch), n.Sub(epoch))
		}
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
