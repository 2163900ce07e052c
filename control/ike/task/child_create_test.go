package task

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/ts"
	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// childReq is a peer's CREATE_CHILD_SA request; the zero value asks for
// the child "net" with PFS, as the peer's configuration would.
type childReq struct {
	esp      string
	tsi, tsr []string
	keGroup  suite.GroupID
	noKE     bool
	noNonce  bool
	noSA     bool
	rekeySPI uint32
	// spi is the peer's SPI (peerSPI if zero).
	spi uint32
}

// peerSPI is the peer's inbound SPI, our outbound one.
const peerSPI = 0x0badcafe

// peer is what the peer keeps of its request, to check our answer.
type peer struct {
	ke    *suite.KeyExchange
	nonce []byte
}

func (h *harness) childRequest(t *testing.T, r childReq) (*message.Message, *peer) {
	t.Helper()
	if r.esp == "" {
		r.esp = "aes128gcm16-x25519"
	}
	if r.tsi == nil {
		r.tsi = []string{"198.18.2.0/24"}
	}
	if r.tsr == nil {
		r.tsr = []string{"198.18.1.0/24"}
	}
	if r.keGroup == 0 {
		r.keGroup = suite.GroupCurve25519
	}
	ps, err := suite.ParseESP(r.esp)
	if err != nil {
		t.Fatal(err)
	}
	if r.spi == 0 {
		r.spi = peerSPI
	}
	var spi [4]byte
	binary.BigEndian.PutUint32(spi[:], r.spi)
	req := &message.Message{}
	p := &peer{nonce: bytes.Repeat([]byte{0x5a}, 32)}
	if r.rekeySPI != 0 {
		var o [4]byte
		binary.BigEndian.PutUint32(o[:], r.rekeySPI)
		req.Inner = append(req.Inner, &message.Notify{Protocol: suite.ProtocolESP, SPI: o[:], NotifyType: message.RekeySA})
	}
	if !r.noSA {
		req.Inner = append(req.Inner, &message.SA{Proposals: suite.WithSPI(ps, spi[:])})
	}
	if !r.noNonce {
		req.Inner = append(req.Inner, &message.Nonce{Data: p.nonce})
	}
	if !r.noKE {
		if r.keGroup == suite.GroupCurve25519 {
			if p.ke, err = suite.NewKeyExchange(r.keGroup); err != nil {
				t.Fatal(err)
			}
			req.Inner = append(req.Inner, &message.KE{Group: r.keGroup, Data: p.ke.PublicKey()})
		} else {
			req.Inner = append(req.Inner, &message.KE{Group: r.keGroup, Data: make([]byte, suite.PublicKeyLen(r.keGroup))})
		}
	}
	req.Inner = append(req.Inner, &message.TS{Selectors: sels(t, r.tsi...)}, &message.TS{Responder: true, Selectors: sels(t, r.tsr...)})
	return req, p
}

// createChild runs ChildCreateR on a request as one CREATE_CHILD_SA
// exchange and returns the response.
func (h *harness) createChild(t *testing.T, x message.ExchangeType, r childReq) (*ChildCreateR, *message.Message, *peer) {
	t.Helper()
	req, p := h.childRequest(t, r)
	task := &ChildCreateR{}
	c := h.ctx(x)
	if st := task.Process(c, req); st != Done {
		t.Fatalf("Process: %s, want done", st)
	}
	resp := &message.Message{}
	if st := task.Build(c, resp); st != Done {
		t.Fatalf("Build: %s, want done", st)
	}
	return task, resp, p
}

func notifyIn(resp *message.Message) *message.Notify {
	n, _ := message.Find(resp.Inner, message.PayloadNotify).(*message.Notify)
	return n
}

// refused checks that the response is the notify want and nothing else,
// and that nothing stayed in the data plane or in the IKE SA.
func (h *harness) refused(t *testing.T, resp *message.Message, want message.NotifyType) *message.Notify {
	t.Helper()
	n := notifyIn(resp)
	if n == nil || n.NotifyType != want || len(resp.Inner) != 1 {
		t.Fatalf("response %v, want only %s", resp.Inner, want)
	}
	if len(h.env.dp.SAs) != 0 || len(h.env.dp.Policies) != 0 {
		t.Errorf("left in the data plane: %v, policies %v", h.env.dp.SAs, h.env.dp.Policies)
	}
	if len(h.ike.Children) != 0 {
		t.Errorf("left in the IKE SA: %d Child SAs", len(h.ike.Children))
	}
	if got := h.env.stats.Get(stats.ChildSAsInstalled); got != 0 {
		t.Errorf("%d Child SAs counted as installed", got)
	}
	return n
}

func TestChildCreateRAccepts(t *testing.T) {
	h := newHarness(t)
	task, resp, p := h.createChild(t, message.CreateChildSA, childReq{})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
	}
	saP, _ := message.Find(resp.Inner, message.PayloadSA).(*message.SA)
	nP, _ := message.Find(resp.Inner, message.PayloadNonce).(*message.Nonce)
	keP, _ := message.Find(resp.Inner, message.PayloadKE).(*message.KE)
	tsiP, _ := message.Find(resp.Inner, message.PayloadTSi).(*message.TS)
	tsrP, _ := message.Find(resp.Inner, message.PayloadTSr).(*message.TS)
	if saP == nil || nP == nil || keP == nil || tsiP == nil || tsrP == nil {
		t.Fatalf("response lacks SA, Nonce, KE, TSi or TSr: %v", resp.Inner)
	}
	if len(saP.Proposals) != 1 || len(saP.Proposals[0].SPI) != 4 {
		t.Fatalf("response SA %v, want one proposal with our SPI", saP.Proposals)
	}
	spiIn := binary.BigEndian.Uint32(saP.Proposals[0].SPI)
	if keP.Group != suite.GroupCurve25519 {
		t.Errorf("KE group %s, want CURVE_25519", keP.Group)
	}
	if !ts.Equal(tsiP.Selectors, sels(t, "198.18.2.0/24")) || !ts.Equal(tsrP.Selectors, sels(t, "198.18.1.0/24")) {
		t.Errorf("TS %s === %s, want them as proposed", ipsec.Selectors(tsiP.Selectors), ipsec.Selectors(tsrP.Selectors))
	}
	if len(h.ike.Children) != 1 || h.ike.Children[0] != task.installed {
		t.Fatalf("IKE SA has %d Child SAs, want the one installed", len(h.ike.Children))
	}
	ch := h.ike.Children[0]
	if ch.Name != "net" || ch.SPIIn != spiIn || ch.SPIOut != peerSPI || ch.State != sa.ChildInstalled || ch.Initiator {
		t.Errorf("Child SA %+v", ch)
	}
	// The peer derives the same keys from its nonce, ours and its half of
	// the Diffie-Hellman exchange (RFC 7296 2.17): what it sends with is
	// what we receive with.
	gir, err := p.ke.SharedSecret(keP.Data)
	if err != nil {
		t.Fatal(err)
	}
	alg, err := saP.Proposals[0].Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := h.ike.Keys.ChildKeys(alg, gir, p.nonce, nP.Data)
	if err != nil {
		t.Fatal(err)
	}
	pe, _ := pk.Outbound(true)
	oe, _ := ch.Keys.Inbound(false)
	if len(pe) == 0 || !bytes.Equal(pe, oe) {
		t.Errorf("our inbound key %x, the peer's outbound key %x", oe, pe)
	}
	if len(h.env.dp.SAs) != 2 || len(h.env.dp.Policies) != 1 {
		t.Errorf("data plane: %d SAs, %d policies, want 2 and 1", len(h.env.dp.SAs), len(h.env.dp.Policies))
	}
	if in, ok := h.env.dp.SAs[api.SAID{SPI: spiIn, Dir: api.In}]; !ok || in.ReqID != ch.ReqID || in.Suite != ipsec.AES128GCM16 {
		t.Errorf("inbound SA %+v (present %v)", in, ok)
	}
	if got := h.env.stats.Get(stats.ChildSAsInstalled); got != 1 {
		t.Errorf("%d Child SAs counted as installed, want 1", got)
	}
	h.logHas(t, "child sa installed", "child=net")
}

func TestChildCreateRNoProposalChosen(t *testing.T) {
	h := newHarness(t)
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{esp: "chacha20poly1305-x25519"})
	h.refused(t, resp, message.NoProposalChosen)
	if h.env.dp.allocs != 0 {
		t.Errorf("%d SPIs allocated for a refused proposal", h.env.dp.allocs)
	}
	if got := h.env.stats.Failures(stats.NoProposalChosen); got != 1 {
		t.Errorf("NO_PROPOSAL_CHOSEN counted %d times", got)
	}
	h.logHas(t, "child sa failed", "notify=NO_PROPOSAL_CHOSEN", "no ESP proposal chosen")
}

func TestChildCreateRTSUnacceptable(t *testing.T) {
	h := newHarness(t)
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{tsi: []string{"10.0.0.0/8"}})
	h.refused(t, resp, message.TSUnacceptable)
	if got := h.env.stats.Failures(stats.TSUnacceptable); got != 1 {
		t.Errorf("TS_UNACCEPTABLE counted %d times", got)
	}
	h.logHas(t, "notify=TS_UNACCEPTABLE", `no child of \"tun\" accepts`)
}

// confTwoChildren has a child "host" that matches a request for one
// address of ours exactly, and "net", listed first, that would narrow it.
var confTwoChildren = strings.Replace(confYAML, "remote_ts: 198.18.3.0/24", "remote_ts: 198.18.0.0/16", 1)

func TestChildCreateRNarrows(t *testing.T) {
	h := newHarness(t)
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{tsi: []string{"198.18.0.0/16"}})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
	}
	tsiP, _ := message.Find(resp.Inner, message.PayloadTSi).(*message.TS)
	if !ts.Equal(tsiP.Selectors, sels(t, "198.18.2.0/24")) {
		t.Errorf("TSi %s, want it narrowed to 198.18.2.0/24", ipsec.Selectors(tsiP.Selectors))
	}
	if ch := h.ike.Children[0]; !ts.Equal(ch.RemoteTS, sels(t, "198.18.2.0/24")) {
		t.Errorf("Child SA's remote TS %s", ipsec.Selectors(ch.RemoteTS))
	}
}

func TestChildCreateRPrefersExactMatch(t *testing.T) {
	for _, c := range []struct {
		esp, want string
	}{
		// Both children agree: the one that needs no narrowing wins,
		// though listed second.
		{"aes128gcm16-x25519,aes256gcm16", "host"},
		// Only the narrowing one agrees on the proposal.
		{"aes128gcm16-x25519", "net"},
	} {
		h := newHarnessConf(t, confTwoChildren)
		_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{esp: c.esp, tsi: []string{"198.18.0.0/16"}, tsr: []string{"198.18.1.7/32"}})
		if n := notifyIn(resp); n != nil {
			t.Fatalf("%s: refused with %s: %s", c.esp, n.NotifyType, h.log.String())
		}
		if got := h.ike.Children[0].Name; got != c.want {
			t.Errorf("offered %s: child %q, want %q", c.esp, got, c.want)
		}
	}
}

func TestChildCreateRPFSGroupMismatch(t *testing.T) {
	for name, r := range map[string]childReq{
		"other group": {esp: "aes128gcm16-ecp256-x25519", keGroup: suite.GroupECP256},
		"no KE":       {noKE: true},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			_, resp, _ := h.createChild(t, message.CreateChildSA, r)
			n := h.refused(t, resp, message.InvalidKEPayload)
			if len(n.Data) != 2 || suite.GroupID(binary.BigEndian.Uint16(n.Data)) != suite.GroupCurve25519 {
				t.Errorf("INVALID_KE_PAYLOAD data %x, want the group we want (CURVE_25519)", n.Data)
			}
			if h.env.dp.allocs != 0 {
				t.Errorf("%d SPIs allocated", h.env.dp.allocs)
			}
			if got := h.env.stats.Failures(stats.InvalidKE); got != 1 {
				t.Errorf("INVALID_KE counted %d times", got)
			}
		})
	}
}

func TestChildCreateRSPIAllocationFails(t *testing.T) {
	h := newHarness(t)
	h.env.dp.failAlloc = errRefused
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
	h.refused(t, resp, message.NoAdditionalSAs)
	if got := h.env.stats.Failures(stats.DataPlane); got != 1 {
		t.Errorf("data plane failure counted %d times", got)
	}
	h.logHas(t, "notify=NO_ADDITIONAL_SAS", "allocate SPI: refused by the test")
}

func TestChildCreateRInstallFailureLeavesNothing(t *testing.T) {
	for name, fail := range map[string]func(*fakeDP){
		"inbound":  func(d *fakeDP) { d.failAdd[api.In] = errRefused },
		"outbound": func(d *fakeDP) { d.failAdd[api.Out] = errRefused },
		"policy":   func(d *fakeDP) { d.failPolicy = errRefused },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			fail(h.env.dp)
			_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{})
			h.refused(t, resp, message.NoAdditionalSAs)
			h.logHas(t, "notify=NO_ADDITIONAL_SAS", "refused by the test")
		})
	}
}

func TestChildCreateRRefusals(t *testing.T) {
	for _, c := range []struct {
		name  string
		r     childReq
		setup func(*harness)
		want  message.NotifyType
	}{
		{"no SA", childReq{noSA: true}, nil, message.InvalidSyntax},
		{"no nonce", childReq{noNonce: true}, nil, message.InvalidSyntax},
		{"IKE SA deleting", childReq{}, func(h *harness) { h.ike.State = sa.Deleting }, message.TemporaryFailure},
		{"IKE SA rekeyed", childReq{}, func(h *harness) { h.ike.State = sa.Rekeyed }, message.TemporaryFailure},
		{"connection gone", childReq{}, func(h *harness) { h.ike.ConnName = "gone" }, message.NoProposalChosen},
		{"rekey of an unknown Child SA", childReq{rekeySPI: 0x12345678}, nil, message.ChildSANotFound},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			if c.setup != nil {
				c.setup(h)
			}
			_, resp, _ := h.createChild(t, message.CreateChildSA, c.r)
			n := h.refused(t, resp, c.want)
			if c.want == message.ChildSANotFound && binary.BigEndian.Uint32(n.SPI) != 0x12345678 {
				t.Errorf("CHILD_SA_NOT_FOUND names SPI %x", n.SPI)
			}
		})
	}
}

func TestChildCreateRInIKEAuth(t *testing.T) {
	// Childless (RFC 6023): nothing answered.
	h := newHarness(t)
	_, resp, _ := h.createChild(t, message.IKEAuth, childReq{noSA: true})
	if len(resp.Inner) != 0 {
		t.Errorf("childless IKE_AUTH answered %v", resp.Inner)
	}
	// Not authenticated: nothing answered, nothing installed.
	h = newHarness(t)
	h.ike.State = sa.Connecting
	_, resp, _ = h.createChild(t, message.IKEAuth, childReq{})
	if len(resp.Inner) != 0 || len(h.env.dp.SAs) != 0 {
		t.Errorf("unauthenticated IKE_AUTH answered %v, installed %d SAs", resp.Inner, len(h.env.dp.SAs))
	}
	// The first Child SA: keys from the IKE SA's nonces, no KE even if
	// the child has PFS.
	h = newHarness(t)
	_, resp, _ = h.createChild(t, message.IKEAuth, childReq{esp: "aes128gcm16", noKE: true, noNonce: true})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
	}
	if message.Find(resp.Inner, message.PayloadKE) != nil || message.Find(resp.Inner, message.PayloadNonce) != nil {
		t.Errorf("IKE_AUTH response with KE or Nonce: %v", resp.Inner)
	}
	ch := h.ike.Children[0]
	want, err := h.ike.Keys.ChildKeys(ch.Alg, nil, h.ike.Handshake().Ni, h.ike.Handshake().Nr)
	if err != nil {
		t.Fatal(err)
	}
	we, _ := want.Inbound(false)
	ge, _ := ch.Keys.Inbound(false)
	if !bytes.Equal(we, ge) {
		t.Errorf("first Child SA's keys are not from the IKE SA's nonces")
	}
}

func TestChildCreateRRekey(t *testing.T) {
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	old := h.ike.Children[0]
	// The peer rekeys it, naming it by its inbound SPI (our outbound).
	_, resp, _ := h.createChild(t, message.CreateChildSA, childReq{rekeySPI: old.SPIOut, spi: peerSPI + 1})
	if n := notifyIn(resp); n != nil {
		t.Fatalf("refused with %s: %s", n.NotifyType, h.log.String())
	}
	if len(h.ike.Children) != 2 {
		t.Fatalf("%d Child SAs, want 2", len(h.ike.Children))
	}
	ch := h.ike.Children[1]
	if ch.Replaces != old.SPIIn || ch.ReqID != old.ReqID || !ch.OutPending {
		t.Errorf("new Child SA: replaces %08x, reqid %d, out pending %v; want %08x, %d, true", ch.Replaces, ch.ReqID, ch.OutPending, old.SPIIn, old.ReqID)
	}
	if old.State != sa.ChildRekeyed {
		t.Errorf("old Child SA %s, want REKEYED", old.State)
	}
	// The outbound SA waits for the peer's DELETE of the old one.
	if _, ok := h.env.dp.SAs[api.SAID{SPI: peerSPI + 1, Dir: api.Out, Remote: peerAddr.Addr()}]; ok {
		t.Errorf("rekey's outbound SA installed at once")
	}
	if _, ok := h.env.dp.SAs[api.SAID{SPI: ch.SPIIn, Dir: api.In}]; !ok {
		t.Errorf("rekey's inbound SA not installed")
	}
	// A rekey of a Child SA on its way out waits.
	old.State = sa.ChildDeleting
	_, resp, _ = h.createChild(t, message.CreateChildSA, childReq{rekeySPI: old.SPIOut})
	if n := notifyIn(resp); n == nil || n.NotifyType != message.TemporaryFailure {
		t.Errorf("rekey of a deleting Child SA answered %v, want TEMPORARY_FAILURE", resp.Inner)
	}
}
