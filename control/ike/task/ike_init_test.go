package task

import (
	"bytes"
	"encoding/binary"
	"github.com/spugate/spugate/control/config"
	"reflect"
	"testing"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
)

// initRequest is a peer's IKE_SA_INIT request offering ike, with a KE of
// group g (a real one for CURVE_25519, zeros otherwise).
func initRequest(t *testing.T, ike string, g suite.GroupID) (*message.Message, *peer) {
	t.Helper()
	ps, err := suite.ParseIKE(ike)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{nonce: bytes.Repeat([]byte{0x17}, 32)}
	data := make([]byte, suite.PublicKeyLen(g))
	if g == suite.GroupCurve25519 {
		if p.ke, err = suite.NewKeyExchange(g); err != nil {
			t.Fatal(err)
		}
		data = p.ke.PublicKey()
	}
	return &message.Message{Payloads: []message.Payload{&message.SA{Proposals: ps}, &message.KE{Group: g, Data: data},
		&message.Nonce{Data: p.nonce}}}, p
}

// newResponderIKE makes the harness's IKE SA a fresh responder one, as
// the worker hands it to IKEInitR (no cookie asked: below the threshold).
func (h *harness) newResponderIKE() {
	h.ike = &sa.IKESA{SPIi: 0x1111, SPIr: 0x2222, Local: ourAddr, Remote: peerAddr, State: sa.Created}
}

func TestIKEInitRAccepts(t *testing.T) {
	h := newHarness(t)
	h.newResponderIKE()
	req, p := initRequest(t, "aes128gcm16-prfsha256-x25519", suite.GroupCurve25519)
	task := &IKEInitR{}
	c := h.ctx(message.IKESAInit)
	if st := task.Process(c, req); st != Done {
		t.Fatalf("Process: %s (%v)", st, c.Failure)
	}
	resp := &message.Message{}
	if st := task.Build(c, resp); st != Done {
		t.Fatalf("Build: %s", st)
	}
	saP, _ := message.Find(resp.Payloads, message.PayloadSA).(*message.SA)
	keP, _ := message.Find(resp.Payloads, message.PayloadKE).(*message.KE)
	nP, _ := message.Find(resp.Payloads, message.PayloadNonce).(*message.Nonce)
	if saP == nil || keP == nil || nP == nil || message.Find(resp.Payloads, message.PayloadNotify) != nil {
		t.Fatalf("response %v, want SA, KE and Nonce, no notify", resp.Payloads)
	}
	if h.ike.ConnName != "tun" || !bytes.Equal(h.ike.Handshake().Ni, p.nonce) || !bytes.Equal(h.ike.Handshake().Nr, nP.Data) || len(h.ike.Handshake().Nr) != NonceLen {
		t.Errorf("IKE SA: conn %q, Ni %x, Nr %x", h.ike.ConnName, h.ike.Handshake().Ni, h.ike.Handshake().Nr)
	}
	// The initiator derives the same keys from our answer.
	gir, err := p.ke.SharedSecret(keP.Data)
	if err != nil {
		t.Fatal(err)
	}
	alg, err := saP.Proposals[0].Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	want, err := suite.DeriveIKEKeys(alg, p.nonce, nP.Data, gir, 0x1111, 0x2222)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.ike.Keys, want) {
		t.Errorf("responder's keys differ from the initiator's")
	}
	if h.ike.In == nil || h.ike.Out == nil {
		t.Errorf("no SK ciphers")
	}
}

func TestIKEInitRInvalidKE(t *testing.T) {
	h := newHarness(t)
	h.newResponderIKE()
	req, _ := initRequest(t, "aes128gcm16-prfsha256-ecp256-x25519", suite.GroupECP256)
	task := &IKEInitR{}
	c := h.ctx(message.IKESAInit)
	if st := task.Process(c, req); st != Reject {
		t.Fatalf("Process: %s, want reject", st)
	}
	resp := &message.Message{}
	if st := task.Build(c, resp); st != Reject {
		t.Fatalf("Build: %s, want reject", st)
	}
	if len(resp.Payloads) != 1 {
		t.Fatalf("response %v, want only INVALID_KE_PAYLOAD", resp.Payloads)
	}
	n, _ := resp.Payloads[0].(*message.Notify)
	if n == nil || n.NotifyType != message.InvalidKEPayload || len(n.Data) != 2 ||
		suite.GroupID(binary.BigEndian.Uint16(n.Data)) != suite.GroupCurve25519 {
		t.Fatalf("response %v, want INVALID_KE_PAYLOAD naming CURVE_25519", resp.Payloads)
	}
	if h.ike.Keys != nil || (h.ike.HS != nil && h.ike.HS.Nr != nil) {
		t.Errorf("keys or nonce kept for a rejected request")
	}
	if got := h.env.stats.Failures(stats.InvalidKE); got != 1 {
		t.Errorf("INVALID_KE counted %d times", got)
	}
	// Not a failure of an IKE SA: none exists for the initiator yet.
	if c.Failure != nil {
		t.Errorf("failure recorded: %v", c.Failure.Err)
	}
	h.logHas(t, "peer's KE is of another group", "peer_group=ECP_256")
}

func TestIKEInitRRejects(t *testing.T) {
	for _, c := range []struct {
		name   string
		ike    string
		g      suite.GroupID
		modify func(*harness, *message.Message)
		want   message.NotifyType
		reason stats.Reason
	}{
		{"no proposal", "aes256gcm16-prfsha384-x25519", suite.GroupCurve25519, nil, message.NoProposalChosen, stats.NoProposalChosen},
		{"no connection", "aes128gcm16-prfsha256-x25519", suite.GroupCurve25519,
			func(h *harness, _ *message.Message) { h.ike.Remote = ourAddr }, message.NoProposalChosen, stats.NoProposalChosen},
		{"no nonce", "aes128gcm16-prfsha256-x25519", suite.GroupCurve25519,
			func(_ *harness, m *message.Message) { m.Payloads = m.Payloads[:2] }, message.InvalidSyntax, stats.InvalidSyntax},
		{"short nonce", "aes128gcm16-prfsha256-x25519", suite.GroupCurve25519,
			func(_ *harness, m *message.Message) { m.Payloads[2] = &message.Nonce{Data: make([]byte, 15)} }, message.InvalidSyntax, stats.InvalidSyntax},
		// Bad KE data is refused before any key pair is made (keyPairs).
		// (suite's TestCheckPeerKE has the value checks of each group.)
		{"short KE", "aes128gcm16-prfsha256-x25519", suite.GroupCurve25519,
			func(_ *harness, m *message.Message) { m.Payloads[1].(*message.KE).Data = make([]byte, 31) }, message.InvalidSyntax, stats.InvalidKEData},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			h.newResponderIKE()
			req, _ := initRequest(t, c.ike, c.g)
			if c.modify != nil {
				c.modify(h, req)
			}
			task := &IKEInitR{}
			ctx := h.ctx(message.IKESAInit)
			if st := task.Process(ctx, req); st != Reject {
				t.Fatalf("Process: %s, want reject", st)
			}
			resp := &message.Message{}
			task.Build(ctx, resp)
			if n, _ := message.Find(resp.Payloads, message.PayloadNotify).(*message.Notify); n == nil || n.NotifyType != c.want || len(resp.Payloads) != 1 {
				t.Fatalf("response %v, want only %s", resp.Payloads, c.want)
			}
			if ctx.Failure == nil || ctx.Failure.Reason != c.reason || ctx.Failure.Notify != c.want {
				t.Errorf("failure %+v, want %s with %s", ctx.Failure, c.reason, c.want)
			}
			if c.reason == stats.InvalidKEData && h.env.keyPairs != 0 {
				t.Errorf("%d key pairs made for a request with bad KE data", h.env.keyPairs)
			}
		})
	}
}

// TestProposalsParsedOnce guards the proposal cache: a setup looks up its
// connection's proposals without parsing (allocating) them again, and
// the cached lists are what the parser returns.
func TestProposalsParsedOnce(t *testing.T) {
	conn := &config.Conn{Name: "c", Proposals: []string{"aes128gcm16-prfsha256-x25519"}}
	child := &config.Child{Name: "ch", ESPProposals: []string{"aes128gcm16"}}
	want, _ := suite.ParseIKE(conn.Proposals[0])
	got, err := IKEProposals(conn)
	if err != nil || suite.FormatProposals(got) != suite.FormatProposals(want) {
		t.Fatalf("IKEProposals: %s, %v; want %s", suite.FormatProposals(got), err, suite.FormatProposals(want))
	}
	if _, err := ESPProposals(conn, child); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		IKEProposals(conn)
		ESPProposals(conn, child)
	}); n != 0 {
		t.Errorf("looking up parsed proposals allocates %v times, want 0", n)
	}
	if _, err := IKEProposals(&config.Conn{Name: "bad", Proposals: []string{"nonsense"}}); err == nil {
		t.Error("IKEProposals accepted nonsense")
	}
}
