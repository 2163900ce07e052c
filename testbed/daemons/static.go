package daemons

import (
	"crypto/rand"
	"fmt"
	"math/bits"
	"net/netip"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// StaticTunnel is a manually keyed tunnel between two spuds: the four SAs
// and two policies that `ip xfrm` would take, with random keys.
type StaticTunnel struct {
	ReqID        uint32
	AEnd, BEnd   netip.Addr     // tunnel endpoints on A and B
	ANets, BNets []netip.Prefix // the networks behind each
	Suite        ipsec.Suite
	Encap        bool // UDP-encapsulated ESP on port 4500
	SPIAB, SPIBA uint32
	KeyAB, KeyBA []byte
	IntAB, IntBA []byte
	Policies     [2]uint32 // on A, then B, once installed
}

// NewStaticTunnel returns a tunnel with fresh random keys and SPIs derived
// from reqid. Inbound ESP is anchored on the logical SPU its SPI's top bits
// name, so the SPIs carry reqid there (0x1000 + reqid<<4 + 1 or 2, rotated
// right by 12 bits: the top byte is reqid's low byte): manually keyed
// tunnels spread over the logical SPUs as IKE's do, rather than all
// landing on logical SPU 0.
func NewStaticTunnel(reqid uint32, aEnd, bEnd netip.Addr, aNets, bNets []netip.Prefix, suite ipsec.Suite, encap bool) *StaticTunnel {
	enc, integ := suite.EncKeyLen(), suite.IntegKeyLen()
	tn := &StaticTunnel{ReqID: reqid, AEnd: aEnd, BEnd: bEnd, ANets: aNets, BNets: bNets, Suite: suite, Encap: encap,
		SPIAB: bits.RotateLeft32(0x1000+reqid<<4+1, -12), SPIBA: bits.RotateLeft32(0x1000+reqid<<4+2, -12)}
	tn.KeyAB, tn.KeyBA = random(enc), random(enc)
	if integ > 0 {
		tn.IntAB, tn.IntBA = random(integ), random(integ)
	}
	return tn
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("gateway: crypto/rand: " + err.Error())
	}
	return b
}

func tsOf(ps []netip.Prefix) []ipsec.Selector {
	var out []ipsec.Selector
	for _, p := range ps {
		out = append(out, ipsec.PrefixSelector(p, 0))
	}
	return out
}

// SAs returns the four SAs: A's outbound and inbound, B's outbound and
// inbound.
func (tn *StaticTunnel) SAs() (aOut, aIn, bOut, bIn *api.SA) {
	mk := func(spi uint32, dir api.Dir, local, remote netip.Addr, enc, integ []byte, lts, rts []netip.Prefix) *api.SA {
		sa := &api.SA{SPI: spi, Dir: dir, Local: local, Remote: remote, Mode: api.Tunnel, Suite: tn.Suite,
			EncKey: enc, IntegKey: integ, ReqID: tn.ReqID, LocalTS: tsOf(lts), RemoteTS: tsOf(rts), Name: fmt.Sprintf("static-%d", tn.ReqID)}
		if tn.Encap {
			sa.Encap = &api.Encap{LocalPort: 4500, RemotePort: 4500}
		}
		return sa
	}
	aOut = mk(tn.SPIAB, api.Out, tn.AEnd, tn.BEnd, tn.KeyAB, tn.IntAB, tn.ANets, tn.BNets)
	aIn = mk(tn.SPIBA, api.In, tn.AEnd, tn.BEnd, tn.KeyBA, tn.IntBA, tn.ANets, tn.BNets)
	bOut = mk(tn.SPIBA, api.Out, tn.BEnd, tn.AEnd, tn.KeyBA, tn.IntBA, tn.BNets, tn.ANets)
	bIn = mk(tn.SPIAB, api.In, tn.BEnd, tn.AEnd, tn.KeyAB, tn.IntAB, tn.BNets, tn.ANets)
	return
}

// Install adds the SAs (inbound first, as a rekey would) and the outbound
// policies on both sides.
func (tn *StaticTunnel) Install(a, b *Spud) error {
	aOut, aIn, bOut, bIn := tn.SAs()
	for _, x := range []struct {
		c  *api.Client
		sa *api.SA
	}{{a.Client, aIn}, {b.Client, bIn}, {a.Client, aOut}, {b.Client, bOut}} {
		if err := x.c.AddSA(x.sa); err != nil {
			return fmt.Errorf("tunnel %d: add %s sa 0x%x: %w", tn.ReqID, x.sa.Dir, x.sa.SPI, err)
		}
	}
	for i, side := range []struct {
		c          *api.Client
		local, rem netip.Addr
		lts, rts   []netip.Prefix
	}{{a.Client, tn.AEnd, tn.BEnd, tn.ANets, tn.BNets}, {b.Client, tn.BEnd, tn.AEnd, tn.BNets, tn.ANets}} {
		r, err := side.c.AddPolicy(&api.Policy{ReqID: tn.ReqID, Action: api.Protect, Local: side.local, Remote: side.rem,
			LocalTS: tsOf(side.lts), RemoteTS: tsOf(side.rts), Name: fmt.Sprintf("static-%d", tn.ReqID)})
		if err != nil {
			return fmt.Errorf("tunnel %d: add policy: %w", tn.ReqID, err)
		}
		tn.Policies[i] = r.ID
	}
	return nil
}

// Remove deletes the policies and SAs.
func (tn *StaticTunnel) Remove(a, b *Spud) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if tn.Policies[0] != 0 {
		keep(a.Client.DelPolicy(tn.Policies[0]))
		keep(b.Client.DelPolicy(tn.Policies[1]))
	}
	keep(a.Client.DelSA(api.SAID{SPI: tn.SPIAB, Dir: api.Out, Remote: tn.BEnd}))
	keep(a.Client.DelSA(api.SAID{SPI: tn.SPIBA, Dir: api.In}))
	keep(b.Client.DelSA(api.SAID{SPI: tn.SPIBA, Dir: api.Out, Remote: tn.AEnd}))
	keep(b.Client.DelSA(api.SAID{SPI: tn.SPIAB, Dir: api.In}))
	return first
}
