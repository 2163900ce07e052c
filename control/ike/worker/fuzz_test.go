package worker_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
)

// recorded runs a full negotiation, a CREATE_CHILD_SA, a liveness check
// and deletes, and returns every datagram, as fuzz seeds.
func recorded(t testing.TB) [][]byte {
	var out [][]byte
	s, na, nb := pairTB(t, twoChildren, twoChildren)
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		out = append(out, append([]byte(nil), d.Data...))
		return iketest.Fate{}
	}
	na.Worker.Initiate("tun", "", nil)
	s.RunFor(10 * time.Second)
	nb.Worker.Initiate("tun", "", nil)
	s.RunFor(10 * time.Second)
	return out
}

// FuzzResponder feeds arbitrary datagrams to a responder, on port 500 and
// on 4500: it must never panic, and what it keeps must stay bounded.
func FuzzResponder(f *testing.F) {
	for _, b := range recorded(f) {
		f.Add(b, false)
		f.Add(message.AddNonESPMarker(b), true)
	}
	ca, cb := configs(f, nil, nil)
	f.Fuzz(func(t *testing.T, b []byte, natt bool) {
		s, _, nb := newPair(t, ca, cb)
		port := uint16(500)
		if natt {
			port = 4500
		}
		d := manager.Datagram{Local: netip.AddrPortFrom(addrB, port), Remote: netip.AddrPortFrom(addrA, port), Data: b}
		nb.Worker.Receive(d)
		nb.Worker.Receive(d) // and its retransmission
		s.RunFor(40 * time.Second)
		if nb.Worker.Len() != 0 {
			t.Fatalf("a half-open IKE SA outlived its timeout")
		}
	})
}

// FuzzEstablishedResponder sends arbitrary inner payloads, properly
// encrypted, to the responder of an established IKE SA in every exchange:
// the tasks must cope with any payload combination the codec accepts.
func FuzzEstablishedResponder(f *testing.F) {
	for _, b := range recorded(f) {
		m, err := message.Decode(b)
		if err != nil || m.Encrypted == nil {
			continue
		}
		f.Add(uint8(m.Header.Exchange), uint8(m.Encrypted.NextPayload), m.Encrypted.Body[:min(len(m.Encrypted.Body), 64)])
	}
	// Plain inner chains: a DELETE of an unknown ESP SPI, an empty one.
	f.Add(uint8(message.Informational), uint8(message.PayloadDelete), []byte{0, 0, 0, 12, 3, 4, 0, 1, 1, 2, 3, 4})
	f.Add(uint8(message.CreateChildSA), uint8(message.PayloadNotify), []byte{0, 0, 0, 8, 0, 0, 0x40, 9})
	ca, cb := configs(f, twoChildren, twoChildren)
	f.Fuzz(func(t *testing.T, ex, first uint8, plain []byte) {
		inner, err := message.DecodeInner(plain, message.PayloadType(first))
		if err != nil {
			return
		}
		s, na, nb := newPair(t, ca, cb)
		na.Worker.Initiate("tun", "", nil)
		s.RunFor(time.Second)
		ms := na.Worker.Managers()
		if len(ms) != 1 || ms[0].IKE.State != sa.Established {
			t.Fatal("setup failed")
		}
		ike := ms[0].IKE
		for _, exch := range []message.ExchangeType{message.ExchangeType(ex), message.IKEAuth, message.CreateChildSA, message.Informational} {
			m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: exch, Flags: message.FlagInitiator,
				MessageID: ike.MsgIDOut}, Inner: inner}
			ike.MsgIDOut++
			b, err := m.Encode(ike.Out)
			if err != nil {
				return
			}
			nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: b})
		}
		s.RunFor(time.Minute)
	})
}
