package message_test

import (
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/suite"
)

// Example walks through what an IKE state machine does with these
// packages: build and send IKE_SA_INIT, let the responder decode it and
// choose a proposal, derive the keys on both sides, then protect IKE_AUTH
// with them.
func Example() {
	// Initiator: configured proposals, a key exchange for the first group.
	proposals, err := suite.ParseIKE("aes256gcm16-prfsha384-ecp384,aes128-sha256-x25519")
	if err != nil {
		panic(err)
	}
	kei, _ := suite.NewKeyExchange(proposals[0].Groups()[0])
	ni := make([]byte, 32)
	rand.Read(ni)
	local, remote := netip.MustParseAddrPort("198.18.0.1:500"), netip.MustParseAddrPort("198.18.0.2:500")
	spii := uint64(0x0123456789abcdef)
	natdS := message.NATDetectionHash(spii, 0, local)
	natdD := message.NATDetectionHash(spii, 0, remote)
	req := &message.Message{
		Header: message.Header{SPIi: spii, Exchange: message.IKESAInit, Flags: message.FlagInitiator},
		Payloads: []message.Payload{
			&message.SA{Proposals: proposals},
			&message.KE{Group: kei.Group(), Data: kei.PublicKey()},
			&message.Nonce{Data: ni},
			&message.Notify{NotifyType: message.NATDetectionSourceIP, Data: natdS[:]},
			&message.Notify{NotifyType: message.NATDetectionDestinationIP, Data: natdD[:]},
			&message.Notify{NotifyType: message.IKEv2FragmentationSupported},
		},
	}
	datagram, err := req.Encode(nil) // IKE_SA_INIT is not encrypted
	if err != nil {
		panic(err)
	}

	// Responder: decode, check the exchange's rules, choose a proposal.
	in, err := message.Decode(datagram)
	if err != nil {
		notify, _ := message.NotifyFor(err) // e.g. INVALID_SYNTAX
		fmt.Println("reject with", notify)
		return
	}
	if err := message.Validate(in); err != nil {
		panic(err)
	}
	ours, _ := suite.ParseIKE("aes128-sha256-x25519,aes256gcm16-prfsha384-ecp384")
	peerKE := message.Find(in.Payloads, message.PayloadKE).(*message.KE)
	chosen, err := suite.Select(ours, message.Find(in.Payloads, message.PayloadSA).(*message.SA).Proposals,
		suite.SelectPolicy{KEGroup: peerKE.Group})
	if err != nil {
		fmt.Println("answer NO_PROPOSAL_CHOSEN")
		return
	}
	fmt.Println("chosen:", chosen)
	alg, _ := chosen.Algorithms()
	ker, _ := suite.NewKeyExchange(alg.Group)
	girR, err := ker.SharedSecret(peerKE.Data)
	if err != nil {
		panic(err)
	}
	nr := make([]byte, 32)
	rand.Read(nr)
	spir := uint64(0xfedcba9876543210)
	peerNi := message.Find(in.Payloads, message.PayloadNonce).(*message.Nonce).Data
	respKeys, _ := suite.DeriveIKEKeys(alg, peerNi, nr, girR, spii, spir)

	// Initiator, on the response (not encoded here): same keys.
	girI, _ := kei.SharedSecret(ker.PublicKey())
	initKeys, _ := suite.DeriveIKEKeys(alg, ni, nr, girI, spii, spir)

	// IKE_AUTH request, protected with SK_ei/SK_ai.
	out, _, _ := initKeys.Ciphers(true)
	idi := &message.ID{IDType: message.IDFQDN, Data: []byte("a.spugate.test")}
	octets, _ := initKeys.SignedOctets(true, datagram, nr, idi.Body())
	authData, _ := suite.PSKAuth(alg.PRF, []byte("secret"), octets)
	auth := &message.Message{
		Header: message.Header{SPIi: spii, SPIr: spir, Exchange: message.IKEAuth, Flags: message.FlagInitiator, MessageID: 1},
		Inner:  []message.Payload{idi, &message.Auth{Method: message.AuthSharedKeyMIC, Data: authData}},
	}
	datagram2, _ := auth.Encode(out)

	// Responder: decode, decrypt with its inbound cipher, verify the AUTH.
	_, fromI, _ := respKeys.Ciphers(false)
	m, _ := message.Decode(datagram2)
	if err := m.Decrypt(fromI); err != nil {
		panic(err)
	}
	id := message.Find(m.Inner, message.PayloadIDi).(*message.ID)
	got := message.Find(m.Inner, message.PayloadAUTH).(*message.Auth)
	octets2, _ := respKeys.SignedOctets(true, in.Raw, nr, id.Body())
	fmt.Println(m.Header.Exchange, "from", id, "authenticated:", suite.VerifyPSKAuth(alg.PRF, []byte("secret"), octets2, got.Data))
	// Output:
	// chosen: IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384
	// IKE_AUTH from a.spugate.test authenticated: true
}
