package spu

import (
	"bytes"
	"errors"
	"github.com/spugate/spugate/ipsec"
	"testing"

	"github.com/spugate/spugate/dataplane/anchor"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/iphdr"
	"github.com/spugate/spugate/dataplane/steer"
)

// shimmed puts the steering metadata in front of frame, as the shim
// carrier's program does.
func shimmed(m steer.Meta, frame []byte) []byte {
	b := make([]byte, steer.MetaSize+len(frame))
	m.Put(b)
	copy(b[steer.MetaSize:], frame)
	return b
}

// outbound gives gw-a the outbound SA and policy of lan-a to lan-b, and
// returns the metadata the steering program writes for their cleartext.
func outbound(t *testing.T, a *gateway) steer.Meta {
	t.Helper()
	aOut, _, _, _ := mirroredSAs(ipsec.AES128GCM16)
	if _, _, err := a.e.AddSA(aOut); err != nil {
		t.Fatal(err)
	}
	pol, logical, _, err := a.e.AddPolicy(api.Policy{ReqID: 1, Action: api.Protect, Local: gwA, Remote: gwB,
		LocalTS: []ipsec.Selector{ipsec.PrefixSelector(lanA, 0)}, RemoteTS: []ipsec.Selector{ipsec.PrefixSelector(lanB, 0)}})
	if err != nil {
		t.Fatal(err)
	}
	return steer.Meta{LogicalSPU: logical, Class: steer.ClassCleartext, PolicyID: pol.ID, L3Offset: 14, L4Offset: 34}
}

// fakeClassifier answers every frame with one Meta, or err.
type fakeClassifier struct {
	m     steer.Meta
	err   error
	calls int
}

func (c *fakeClassifier) Classify(frame []byte, ifindex uint32, queue int) (steer.Meta, error) {
	c.calls++
	return c.m, c.err
}

// TestCarriers sends the same cleartext through gw-a with the metadata
// carried each way the steering programs carry it: in front of the frame
// (shim carrier, and meta carrier where the driver had no metadata room),
// and nowhere (none carrier: the SPU classifies). Each must come out as
// the same ESP packet; a frame the classifier refuses is a counted drop.
func TestCarriers(t *testing.T) {
	fn, err := anchor.NewFunction(anchor.HashKey{1, 2, 3}, 16)
	if err != nil {
		t.Fatal(err)
	}
	frame := udpFrame(hostA, hostB, []byte("carried"))
	for _, tc := range []struct {
		name    string
		carrier steer.Carrier
		shim    bool
	}{
		{"shim", steer.CarrierShim, true},
		{"meta-with-shim", steer.CarrierMeta, true},
		{"none", steer.CarrierNone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cls := &fakeClassifier{}
			cfg := Config{SPUs: 2, Carrier: tc.carrier}
			if tc.carrier == steer.CarrierNone {
				cfg.NewClassifier = func() Classifier { return cls }
			}
			a := newGatewayWith(t, gwA, lanA, fn, cfg)
			m := outbound(t, a)
			cls.m = m
			in := frame
			if tc.shim {
				in = shimmed(m, frame)
			}
			for q := range a.lan {
				a.lan[q].SetSteer(func(pkt, meta []byte) bool { return true }) // no metadata area written
				if !a.lan[q].Inject(in) {
					t.Fatal("inject refused")
				}
			}
			a.step()
			a.step()
			esp := a.takeWAN()
			if len(esp) != 2 {
				t.Fatalf("%d ESP frames out of 2 (stats %+v)", len(esp), a.e.SPUStats())
			}
			for _, f := range esp {
				if f[14+9] != iphdr.ProtoESP || !bytes.Equal(f[0:6], macWire[:]) {
					t.Errorf("not an ESP frame to the next hop: % x", f[:40])
				}
			}
			if tc.carrier == steer.CarrierNone {
				if cls.calls != 2 {
					t.Errorf("classifier called %d times, want 2", cls.calls)
				}
				cls.err = errors.New("not steered")
				a.lan[0].Inject(frame)
				a.step()
				if d := dropsOf(a)["unsteered"]; d != 1 {
					t.Errorf("unsteered drops %d, want 1", d)
				}
			}
		})
	}
}

// TestMetaCarrierIgnoresMagicMAC: a frame whose destination MAC happens to
// spell the metadata's magic is not taken for a shim: its EtherType sits
// where a shim's L3 offset would, and no steered EtherType reads as one.
func TestMetaCarrierIgnoresMagicMAC(t *testing.T) {
	frame := udpFrame(hostA, hostB, []byte("x"))
	copy(frame, []byte{0x53, 0x50, 0x47, 0x31, 0, 0})
	buf := make([]byte, 256+len(frame))
	copy(buf[256:], frame)
	want := steer.Meta{LogicalSPU: 3, Class: steer.ClassCleartext, PolicyID: 9, L3Offset: 14, L4Offset: 34}
	want.Put(buf[256-steer.MetaSize:])
	got, shim, err := steer.CarrierMeta.ReadMeta(buf, 256, len(frame))
	if err != nil || shim != 0 || got != want {
		t.Errorf("ReadMeta = %+v, shim %d, %v; want %+v from the metadata area", got, shim, err, want)
	}
	if _, _, err := steer.CarrierMeta.ReadMeta(buf, 256, len(frame)); err == nil {
		t.Error("the metadata area's magic was not cleared after reading")
	}
}

func dropsOf(g *gateway) map[string]uint64 {
	d := map[string]uint64{}
	for _, s := range g.e.SPUStats() {
		for k, v := range s.Drops {
			d[k] += v
		}
	}
	return d
}

// TestShimPathAllocatesNothing: the shim carrier's read and trim on the
// per-packet path.
func TestShimPathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	fn, _ := anchor.NewFunction(anchor.HashKey{1, 2, 3}, 16)
	a := newGatewayWith(t, gwA, lanA, fn, Config{SPUs: 2, Carrier: steer.CarrierShim})
	m := outbound(t, a)
	anchorSPU := a.e.physical(m.LogicalSPU)
	in := shimmed(m, udpFrame(hostA, hostB, make([]byte, 64)))
	a.lan[anchorSPU].SetSteer(func(pkt, meta []byte) bool { return true })
	a.wan[anchorSPU].SetSink(func([]byte) {})
	a.lan[anchorSPU].Inject(in)
	a.step()
	allocs := testing.AllocsPerRun(200, func() {
		a.lan[anchorSPU].Inject(in)
		a.e.spus[anchorSPU].iterate()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per packet", allocs)
	}
	if st := a.e.SPUStats(); st[anchorSPU].Encap < 200 {
		t.Errorf("encapsulated %d", st[anchorSPU].Encap)
	}
}
