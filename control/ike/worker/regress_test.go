package worker_test

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/worker"
)

// header decodes the IKE header of a datagram (no NAT-T in these tests).
func header(d manager.Datagram) (message.Header, bool) {
	h, err := message.DecodeHeader(d.Data)
	return h, err == nil
}

// dropFirst drops, once each, the first datagram from a node that match.
type dropFirst struct {
	delay time.Duration
	rules []*dropRule
}

type dropRule struct {
	from     *iketest.Node
	exchange message.ExchangeType
	response bool
	done     bool
}

func (f *dropFirst) fate(d manager.Datagram, from *iketest.Node) iketest.Fate {
	h, ok := header(d)
	for _, r := range f.rules {
		if ok && !r.done && r.from == from && h.Exchange == r.exchange && h.IsResponse() == r.response {
			r.done = true
			return iketest.Fate{Drop: true}
		}
	}
	return iketest.Fate{Delay: f.delay}
}

// TestCollisionLostMessagesOutboundInstalled is the regression test for
// "outbound SA not installed after a collision plus a lost message": both
// sides rekey at once, and the first response to each rekey and the first
// DELETE of each side are lost. Whoever wins, both sides end up sending
// through the winner's Child SA, and no packet is lost meanwhile.
func TestCollisionLostMessagesOutboundInstalled(t *testing.T) {
	for seed := range 6 {
		t.Run(string(rune('a'+seed)), func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			na.Seed(byte(40 + seed))
			nb.Seed(byte(60 + seed))
			delay(s, 10*time.Millisecond)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ab, ba := flows(s, na, nb, 10*time.Millisecond, 40*time.Second)
			s.RunFor(time.Second)
			f := &dropFirst{delay: 10 * time.Millisecond}
			for _, n := range []*iketest.Node{na, nb} {
				f.rules = append(f.rules, &dropRule{from: n, exchange: message.CreateChildSA, response: true},
					&dropRule{from: n, exchange: message.Informational})
			}
			s.Filter = f.fate
			collide(t, na, nb, false)
			s.RunFor(39 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			for _, r := range f.rules {
				if !r.done {
					t.Errorf("rule %+v never matched: the scenario did not happen", *r)
				}
			}
		})
	}
}

// TestCollisionTSUnacceptable: both sides rekey at once, and one side's
// configuration changed so that it refuses the other's rekey with
// TS_UNACCEPTABLE. The refused side keeps the peer's replacement (which
// the peer completes and keeps) instead of retrying or deleting anything.
func TestCollisionTSUnacceptable(t *testing.T) {
	for seed := range 4 {
		t.Run(string(rune('a'+seed)), func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			na.Seed(byte(80 + seed))
			nb.Seed(byte(90 + seed))
			delay(s, 10*time.Millisecond)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ab, ba := flows(s, na, nb, 10*time.Millisecond, 20*time.Second)
			s.RunFor(time.Second)
			// gw-b now protects another network: a's rekey (with the old
			// selectors) is refused; b's own rekey keeps the old selectors.
			_, cb := configs(t, nil, func(o *confOpts) { o.localTS = "198.18.7.0/24" })
			nb.Cfg = cb
			collide(t, na, nb, false)
			s.RunFor(19 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			if na.Counters.Failures(stats.TSUnacceptable) != 1 || nb.Counters.Failures(stats.TSUnacceptable) != 1 {
				t.Errorf("TS_UNACCEPTABLE counted %d / %d", na.Counters.Failures(stats.TSUnacceptable), nb.Counters.Failures(stats.TSUnacceptable))
			}
			if got := nb.Counters.Get(stats.ChildRekeysInitiated); got != 1 {
				t.Errorf("gw-b's rekey did not stand (%d)", got)
			}
			if na.Counters.Get(stats.RekeyRetries) != 0 {
				t.Errorf("gw-a retried its refused rekey although the peer's replaced the Child SA")
			}
		})
	}
}

// TestDeleteJustAfterRekey is the regression test for a peer that answers
// our rekey and then deletes the old Child SA itself about 0.5 ms later
// (the initiator should): the DELETE arrives 0.5 ms after the response or
// 0.5 ms before it. Our new Child SA stands and nothing is lost.
func TestDeleteJustAfterRekey(t *testing.T) {
	for _, deleteFirst := range []bool{false, true} {
		name := "delete-after-response"
		if deleteFirst {
			name = "delete-before-response"
		}
		t.Run(name, func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			delay(s, 5*time.Millisecond)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ab, ba := flows(s, na, nb, 5*time.Millisecond, 20*time.Second)
			s.RunFor(time.Second)
			oldB := nb.Worker.List()[0].Children[0]
			answered := false
			s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
				h, _ := header(d)
				switch {
				case from == nb && h.Exchange == message.CreateChildSA && h.IsResponse():
					answered = true
					if deleteFirst {
						return iketest.Fate{Delay: 5*time.Millisecond + time.Millisecond}
					}
				case from == nb && h.Exchange == message.Informational && !h.IsResponse():
					return iketest.Fate{Delay: 5 * time.Millisecond}
				}
				return iketest.Fate{Delay: 5 * time.Millisecond}
			}
			na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
			if !s.RunUntil(time.Second, func() bool { return answered }) {
				t.Fatal("no rekey response")
			}
			s.RunFor(500 * time.Microsecond)
			if n := nb.Worker.Terminate(worker.Target{Conn: "tun", ChildID: oldB.UniqueID}, nil); n != 1 {
				t.Fatalf("gw-b deletes %d", n)
			}
			s.RunFor(19 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			if got := na.Counters.Get(stats.ChildRekeysInitiated); got != 1 {
				t.Errorf("gw-a's rekey did not stand")
			}
		})
	}
}

// TestPeerStartsTwoRekeys is the regression test for a peer that rekeys
// the same Child SA twice (seen with peers whose collision handling is
// broken): both requests are answered, the later replacement is the one
// sent through once the peer deletes the old Child SA, the earlier one
// never gets an outbound SA and goes when the peer deletes it (or at its
// life time).
func TestPeerStartsTwoRekeys(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ike := na.Worker.Managers()[0].IKE
	old := ike.Children[0]
	var resp []*message.Message
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if from == nb {
			if m, err := message.Decode(d.Data); err == nil && m.Header.IsResponse() && m.Decrypt(opener(ike)) == nil {
				resp = append(resp, m)
			}
			return iketest.Fate{Drop: true} // gw-a's manager is played by the test
		}
		return iketest.Fate{}
	}
	send := func(ex message.ExchangeType, inner ...message.Payload) *message.Message {
		t.Helper()
		m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: ex,
			Flags: message.FlagInitiator, MessageID: ike.MsgIDOut}, Inner: inner}
		ike.MsgIDOut++
		b, err := m.Encode(sealer(ike))
		if err != nil {
			t.Fatal(err)
		}
		resp = nil
		nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: b})
		s.RunFor(time.Millisecond)
		if len(resp) != 1 {
			t.Fatalf("%d responses", len(resp))
		}
		return resp[0]
	}
	props, _ := suite.ParseESP("aes128gcm16")
	rekey := func(newSPI uint32) {
		t.Helper()
		var o, n [4]byte
		binary.BigEndian.PutUint32(o[:], old.SPIIn)
		binary.BigEndian.PutUint32(n[:], newSPI)
		r := send(message.CreateChildSA, &message.Notify{Protocol: suite.ProtocolESP, SPI: o[:], NotifyType: message.RekeySA},
			&message.SA{Proposals: suite.WithSPI(props, n[:])}, &message.Nonce{Data: make([]byte, 32)},
			&message.TS{Selectors: old.LocalTS}, &message.TS{Responder: true, Selectors: old.RemoteTS})
		if message.Find(r.Inner, message.PayloadSA) == nil {
			t.Fatalf("rekey refused: %v", r.Inner)
		}
	}
	del := func(spis ...uint32) {
		t.Helper()
		send(message.Informational, &message.Delete{Protocol: suite.ProtocolESP, SPIs: spis})
	}
	rekey(0xaaaa0001)
	rekey(0xaaaa0002)
	l := nb.Worker.List()[0]
	if len(l.Children) != 3 {
		t.Fatalf("gw-b after two rekeys:\n%s", dumpIKE(nb.Worker.List()))
	}
	first, second := l.Children[1], l.Children[2]
	if !first.Redundant || first.State != sa.ChildRekeyed || second.Redundant || !second.OutPending {
		t.Fatalf("gw-b after two rekeys:\n%s", dumpIKE(nb.Worker.List()))
	}
	del(old.SPIIn)
	if _, ok := nb.DP.Find(0xaaaa0002, "out"); !ok {
		t.Errorf("the second replacement has no outbound SA after the old one's deletion")
	}
	if _, ok := nb.DP.Find(0xaaaa0001, "out"); ok {
		t.Errorf("the superseded replacement got an outbound SA")
	}
	if out, _ := nb.DP.ActiveOut(second.ReqID); out.SPI != 0xaaaa0002 {
		t.Errorf("gw-b sends through %08x", out.SPI)
	}
	if _, pols := nb.DP.Counts(); pols != 1 {
		t.Errorf("%d policies", pols)
	}
	// The peer deletes the superseded one; a peer that does not is cleaned
	// up at its life time.
	del(0xaaaa0001)
	l = nb.Worker.List()[0]
	if len(l.Children) != 1 || l.Children[0].SPIOut != 0xaaaa0002 || l.Children[0].OutPending {
		t.Errorf("gw-b at the end:\n%s", dumpIKE(nb.Worker.List()))
	}
	if !strings.Contains(nb.Logs(), "peer rekeys the child sa again") {
		t.Errorf("the second rekey was not logged")
	}
}

// TestRekeyCrossesDelete: we rekey a Child SA while the peer deletes it;
// the Child SA is gone on both sides afterwards, with nothing left in the
// data planes, and the IKE SA lives on.
func TestRekeyCrossesDelete(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	delay(s, 10*time.Millisecond)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
	nb.Worker.Terminate(worker.Target{Conn: "tun", Child: "net"}, nil)
	s.RunFor(10 * time.Second)
	for _, n := range []*iketest.Node{na, nb} {
		l := live(n)
		if len(l) != 1 || len(l[0].Children) != 0 {
			t.Errorf("%s:\n%s", n.Name, dumpIKE(n.Worker.List()))
		}
	}
	noSAs(t, na, nb)
	if nb.Counters.Get(stats.TemporaryFailures) != 1 {
		t.Errorf("gw-b did not answer the rekey of the Child SA it deletes with TEMPORARY_FAILURE")
	}
}
