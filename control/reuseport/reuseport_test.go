package reuseport

import (
	"net"
	"net/netip"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
)

// TestRuleCounter checks that each rule of anchor.IKELogical has its
// counter, named as iked's status shows it.
func TestRuleCounter(t *testing.T) {
	for by, want := range map[int]string{
		anchor.ByResponderSPI: "by_responder_spi",
		anchor.ByInitiatorSPI: "by_initiator_spi",
		anchor.ByFirstContact: "first_contact",
		anchor.ByAddresses:    "by_addresses",
	} {
		if got := RuleCounter(by).String(); got != want {
			t.Errorf("RuleCounter(%d) = %s, want %s", by, got, want)
		}
	}
	if c := RuleCounter(-1); c != NumCounters {
		t.Errorf("RuleCounter(-1) = %v, want NumCounters", c)
	}
}

// TestNATTGroup checks that only a group on the NAT-T port is told to look
// for the non-ESP marker, on a Steerer without a program (no privileges).
func TestNATTGroup(t *testing.T) {
	free := func() uint16 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port)
	}
	sel := newUnsteered("test")
	defer sel.Close()
	ike, natt := free(), free()
	sel.SetNATTPort(natt)
	for _, tc := range []struct {
		port uint16
		want bool
	}{{ike, false}, {natt, true}} {
		g, err := sel.Listen(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tc.port), []uint16{0})
		if err != nil {
			t.Fatal(err)
		}
		if g.NATT() != tc.want {
			t.Errorf("group on port %d (NAT-T port %d): NATT %v", tc.port, natt, g.NATT())
		}
		g.Close()
	}
	if newUnsteered("test").nattPort != DefaultNATTPort {
		t.Error("a new Steerer's NAT-T port is not 4500")
	}
}
