package worker_test

import (
	"bytes"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
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
	// Rekeys: of the Child SA (REKEY_SA for the responder's first Child SA,
	// whose outbound SPI is c0000001 in the simulation) and of the IKE SA,
	// and a DELETE of that Child SA.
	for _, ps := range rekeySeeds() {
		f.Add(ps.ex, ps.first, ps.plain)
	}
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
			b, err := m.Encode(sealer(ike))
			if err != nil {
				return
			}
			nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: b})
		}
		s.RunFor(time.Minute)
	})
}

type innerSeed struct {
	ex, first uint8
	plain     []byte
}

// plainInner encodes payloads as the plaintext of an SK payload.
func plainInner(ex message.ExchangeType, ps ...message.Payload) innerSeed {
	m := &message.Message{Header: message.Header{Exchange: ex, Flags: message.FlagInitiator}, Payloads: ps}
	b, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return innerSeed{ex: uint8(ex), first: b[16], plain: b[28:]}
}

func rekeySeeds() []innerSeed {
	esp, _ := suite.ParseESP("aes128gcm16")
	ike, _ := suite.ParseIKE("aes128gcm16-prfsha256-x25519")
	spi := []byte{0xc0, 0, 0, 1}
	sel := []ipsec.Selector{{Proto: 0, FromPort: 0, ToPort: 65535, From: netip.MustParseAddr("198.18.1.0"), To: netip.MustParseAddr("198.18.1.255")}}
	sel2 := []ipsec.Selector{{Proto: 0, FromPort: 0, ToPort: 65535, From: netip.MustParseAddr("198.18.2.0"), To: netip.MustParseAddr("198.18.2.255")}}
	nonce := &message.Nonce{Data: make([]byte, 32)}
	return []innerSeed{
		plainInner(message.CreateChildSA, &message.Notify{Protocol: suite.ProtocolESP, SPI: spi, NotifyType: message.RekeySA},
			&message.SA{Proposals: suite.WithSPI(esp, []byte{1, 2, 3, 4})}, nonce, &message.TS{Selectors: sel},
			&message.TS{Responder: true, Selectors: sel2}),
		plainInner(message.CreateChildSA, &message.SA{Proposals: suite.WithSPI(ike, []byte{1, 2, 3, 4, 5, 6, 7, 8})}, nonce,
			&message.KE{Group: suite.GroupCurve25519, Data: bytes.Repeat([]byte{9}, 32)}),
		plainInner(message.Informational, &message.Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{0xc0000001}}),
		plainInner(message.Informational, &message.Delete{Protocol: suite.ProtocolIKE}),
	}
}
