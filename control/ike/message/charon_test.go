package message

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/suite"
)

// The directories under testdata/charon hold exchanges between two
// strongSwan 5.9.8 charons recorded by testdata/charon/capture.sh: every
// IKE datagram, and the keys each charon logged. These tests decode
// charon's bytes, derive the keys with this module and compare them with
// charon's, decrypt every SK/SKF payload, verify charon's PSK AUTH and
// NAT-D hashes, and check that what we decode encodes back to the same
// bytes.

type datagram struct {
	src, dst netip.AddrPort
	data     []byte // IKE message, non-ESP marker removed
}

type charonCase struct {
	name    string
	params  map[string]string
	packets []datagram
	// keys holds each key charon "a" (the initiator) logged, by label, in
	// log order.
	keys map[string][][]byte
}

var (
	keyLine = regexp.MustCompile(`^a (\d+)\[(IKE|CHD)\] (.+?) => (\d+) bytes @ 0x[0-9a-f]+$`)
	hexLine = regexp.MustCompile(`^a (\d+)\[(IKE|CHD)\]\s+(\d+): (.*)$`)
)

func loadCharonCases(t *testing.T) []*charonCase {
	t.Helper()
	dirs, err := filepath.Glob("testdata/charon/*/packets.txt")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no recorded strongSwan exchanges: %v", err)
	}
	var out []*charonCase
	for _, p := range dirs {
		out = append(out, loadCharonCase(t, filepath.Dir(p)))
	}
	return out
}

func loadCharonCase(t *testing.T, dir string) *charonCase {
	t.Helper()
	c := &charonCase{name: filepath.Base(dir), params: map[string]string{}, keys: map[string][][]byte{}}
	caseTxt, err := os.ReadFile(filepath.Join(dir, "case.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(caseTxt), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			c.params[k] = v
		}
	}
	p := filepath.Join(dir, "packets.txt")
	pk, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(pk)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("%s: bad line %q", p, l)
		}
		d := datagram{src: netip.MustParseAddrPort(f[0]), dst: netip.MustParseAddrPort(f[1])}
		d.data, err = hex.DecodeString(f[2])
		if err != nil {
			t.Fatal(err)
		}
		if d.dst.Port() == 4500 || d.src.Port() == 4500 {
			if d.data, err = StripNonESPMarker(d.data); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
		c.packets = append(c.packets, d)
	}
	kf, err := os.Open(filepath.Join(dir, "keys.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	sc := bufio.NewScanner(kf)
	var label, thread string
	var want int
	var cur []byte
	for sc.Scan() {
		l := sc.Text()
		if m := keyLine.FindStringSubmatch(l); m != nil {
			label, thread, cur = m[3], m[1], nil
			want, _ = strconv.Atoi(m[4])
			continue
		}
		m := hexLine.FindStringSubmatch(l)
		if m == nil || label == "" || m[1] != thread {
			continue
		}
		off, _ := strconv.Atoi(m[3])
		if off != len(cur) {
			continue
		}
		n := min(16, want-len(cur))
		fields := strings.Fields(m[4])
		for _, h := range fields[:n] {
			b, _ := strconv.ParseUint(h, 16, 8)
			cur = append(cur, byte(b))
		}
		if len(cur) == want {
			c.keys[label] = append(c.keys[label], cur)
			label = ""
		}
	}
	return c
}

// ikeSA is what the test tracks per IKE SA while walking a capture.
type ikeSA struct {
	keys       *suite.IKEKeys
	fromI, toI *suite.SKCipher // open messages from the initiator / the responder
	outI, outR *suite.SKCipher
}

func TestCharonExchanges(t *testing.T) {
	for _, c := range loadCharonCases(t) {
		t.Run(c.name, func(t *testing.T) { checkCharonCase(t, c) })
	}
}

func checkCharonCase(t *testing.T, c *charonCase) {
	psk := []byte(c.params["psk"])
	msgs := make([]*Message, len(c.packets))
	for i, d := range c.packets {
		m, err := Decode(d.data)
		if err != nil {
			t.Fatalf("packet %d (%s -> %s): %v", i, d.src, d.dst, err)
		}
		msgs[i] = m
	}
	req, resp := msgs[0], msgs[1]
	if req.Header.Exchange != IKESAInit || resp.Header.Exchange != IKESAInit || !resp.Header.IsResponse() {
		t.Fatalf("capture does not start with IKE_SA_INIT: %s, %s", req.Header, resp.Header)
	}

	// IKE_SA_INIT carries no SK: what we decode must encode to charon's
	// exact bytes.
	for i, m := range msgs[:2] {
		enc, err := (&Message{Header: m.Header, Payloads: m.Payloads}).Encode(nil)
		if err != nil || !bytes.Equal(enc, m.Raw) {
			t.Errorf("IKE_SA_INIT %d does not re-encode to charon's bytes (%v)", i, err)
		}
		if err := Validate(m); err != nil {
			t.Errorf("IKE_SA_INIT %d: %v", i, err)
		}
	}

	// Our parser reads the same proposal string into the proposals charon
	// sent, transform for transform.
	offered := Find(req.Payloads, PayloadSA).(*SA).Proposals
	ours, err := suite.ParseIKE(c.params["ike"])
	if err != nil {
		t.Fatal(err)
	}
	if suite.FormatProposals(ours) != suite.FormatProposals(offered) {
		t.Errorf("proposals:\n ours   %s\n charon %s", suite.FormatProposals(ours), suite.FormatProposals(offered))
	}
	encOurs, _ := (&SA{Proposals: ours}).appendBody(nil)
	encTheirs, _ := Find(req.Payloads, PayloadSA).(*SA).appendBody(nil)
	if !bytes.Equal(encOurs, encTheirs) {
		t.Errorf("our SA payload for %q differs from charon's", c.params["ike"])
	}

	// The responder's choice: CheckResponse accepts it, and Select with the
	// same configuration (ours first, as charon's default) picks the same.
	chosen, err := suite.CheckResponse(offered, Find(resp.Payloads, PayloadSA).(*SA).Proposals)
	if err != nil {
		t.Fatal(err)
	}
	ke := Find(req.Payloads, PayloadKE).(*KE)
	sel, err := suite.Select(ours, offered, suite.SelectPolicy{KEGroup: ke.Group})
	if err != nil || sel.String() != chosen.String() || sel.Number != chosen.Number {
		t.Errorf("Select chose %s (#%d), charon %s (#%d) (%v)", sel, sel.Number, chosen, chosen.Number, err)
	}
	alg, err := chosen.Algorithms()
	if err != nil {
		t.Fatal(err)
	}

	// charon's public values pass our checks (point on the curve, range).
	for _, m := range msgs[:2] {
		k := Find(m.Payloads, PayloadKE).(*KE)
		kx, err := suite.NewKeyExchange(k.Group)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kx.SharedSecret(k.Data); err != nil {
			t.Errorf("charon's %s public value refused: %v", k.Group, err)
		}
	}

	// NAT detection: NATD_D_IP is the hash of the destination address;
	// charon with kernel-libipsec forces UDP encapsulation by sending a
	// random NATD_S_IP, so that one is not checked.
	spii := req.Header.SPIi
	if n := FindNotify(req.Payloads, NATDetectionDestinationIP); n == nil {
		t.Error("no NAT_DETECTION_DESTINATION_IP")
	} else if h := NATDetectionHash(spii, 0, c.packets[0].dst); !bytes.Equal(h[:], n.Data) {
		t.Errorf("NAT_DETECTION_DESTINATION_IP %x, we compute %x", n.Data, h)
	}
	if n := FindNotify(resp.Payloads, NATDetectionDestinationIP); n != nil {
		if h := NATDetectionHash(spii, resp.Header.SPIr, c.packets[1].dst); !bytes.Equal(h[:], n.Data) {
			t.Errorf("response NAT_DETECTION_DESTINATION_IP %x, we compute %x", n.Data, h)
		}
	}

	// Key derivation against charon's logged keys.
	ni := Find(req.Payloads, PayloadNonce).(*Nonce).Data
	nr := Find(resp.Payloads, PayloadNonce).(*Nonce).Data
	dh := c.keys["shared Diffie Hellman secret"]
	if len(dh) == 0 {
		t.Fatal("no DH secret in charon's log")
	}
	keys, err := suite.DeriveIKEKeys(alg, ni, nr, dh[0], spii, resp.Header.SPIr)
	if err != nil {
		t.Fatal(err)
	}
	compareIKEKeys(t, c, 0, keys)
	sas := map[[2]uint64]*ikeSA{}
	addSA := func(k *suite.IKEKeys, spii, spir uint64) {
		outI, toI, err := k.Ciphers(true)
		if err != nil {
			t.Fatal(err)
		}
		outR, fromI, _ := k.Ciphers(false)
		sas[[2]uint64{spii, spir}] = &ikeSA{keys: k, fromI: fromI, toI: toI, outI: outI, outR: outR}
	}
	addSA(keys, spii, resp.Header.SPIr)

	type fragKey struct {
		spis     [2]uint64
		id       uint32
		response bool
	}
	frags := map[fragKey][]*Fragment{}
	var authReq, authResp *Message
	ikeRekeys := 0
	var lastCreate *Message
	for i, m := range msgs[2:] {
		i += 2
		sa := sas[[2]uint64{m.Header.SPIi, m.Header.SPIr}]
		if sa == nil {
			t.Fatalf("packet %d: no keys for SPIs %016x/%016x", i, m.Header.SPIi, m.Header.SPIr)
		}
		open := sa.toI
		if m.Header.IsInitiator() {
			open = sa.fromI
		}
		if m.Encrypted == nil {
			t.Fatalf("packet %d: %s without SK", i, m.Header)
		}
		var plainRef []byte
		if m.Encrypted.Fragment {
			f, err := m.DecryptFragment(open)
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			k := fragKey{[2]uint64{m.Header.SPIi, m.Header.SPIr}, m.Header.MessageID, m.Header.IsResponse()}
			frags[k] = append(frags[k], f)
			if len(frags[k]) < int(f.Total) {
				continue
			}
			inner, err := Reassemble(frags[k])
			if err != nil {
				t.Fatalf("packet %d: %v", i, err)
			}
			t.Logf("%s reassembled from %d fragments", m.Header, f.Total)
			m.Inner = inner
		} else {
			if err := m.Decrypt(open); err != nil {
				t.Fatalf("packet %d (%s): %v", i, m.Header, err)
			}
			plainRef, _ = open.Open(m.AAD(), m.Encrypted.Body)
		}
		if err := Validate(m); err != nil {
			t.Errorf("packet %d: %v", i, err)
		}
		// What we decoded re-encodes to charon's inner bytes.
		if plainRef != nil {
			enc, err := appendChain(nil, m.Inner, PayloadNone)
			if err != nil || !bytes.Equal(enc, plainRef) {
				t.Errorf("packet %d (%s): inner payloads do not re-encode to charon's plaintext (%v)", i, m.Header, err)
			}
		}
		// And a message we encrypt with these keys decodes back the same.
		seal := sa.outR
		if m.Header.IsInitiator() {
			seal = sa.outI
		}
		again, err := (&Message{Header: m.Header, Payloads: m.Payloads, Inner: m.Inner}).Encode(seal)
		if err != nil {
			t.Fatalf("packet %d: encode: %v", i, err)
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("packet %d: decode of our encoding: %v", i, err)
		}
		if err := back.Decrypt(open); err != nil || !reflect.DeepEqual(back.Inner, m.Inner) {
			t.Errorf("packet %d: our encryption does not round-trip (%v)", i, err)
		}

		switch {
		case m.Header.Exchange == IKEAuth && !m.Header.IsResponse():
			authReq = m
		case m.Header.Exchange == IKEAuth && m.Header.IsResponse():
			authResp = m
		case m.Header.Exchange == CreateChildSA && !m.Header.IsResponse():
			lastCreate = m
		case m.Header.Exchange == CreateChildSA && m.Header.IsResponse():
			reqSA := Find(lastCreate.Inner, PayloadSA).(*SA)
			if reqSA.Proposals[0].Protocol != suite.ProtocolIKE {
				continue
			}
			// IKE SA rekey (RFC 7296 2.18): derive the new SA's keys with
			// the old SK_d and compare with charon's second key set.
			ikeRekeys++
			rsel, err := suite.CheckResponse(reqSA.Proposals, Find(m.Inner, PayloadSA).(*SA).Proposals)
			if err != nil {
				t.Fatal(err)
			}
			ralg, _ := rsel.Algorithms()
			var nspii, nspir uint64
			for _, b := range rsel.SPI {
				nspir = nspir<<8 | uint64(b)
			}
			for _, p := range reqSA.Proposals {
				if p.Number == rsel.Number {
					for _, b := range p.SPI {
						nspii = nspii<<8 | uint64(b)
					}
				}
			}
			if len(dh) <= ikeRekeys {
				t.Fatal("no DH secret logged for the IKE SA rekey")
			}
			nk, err := suite.DeriveRekeyedIKEKeys(sa.keys, ralg,
				Find(lastCreate.Inner, PayloadNonce).(*Nonce).Data, Find(m.Inner, PayloadNonce).(*Nonce).Data,
				dh[ikeRekeys], nspii, nspir)
			if err != nil {
				t.Fatal(err)
			}
			compareIKEKeys(t, c, ikeRekeys, nk)
			addSA(nk, nspii, nspir)
		}
	}
	if ikeRekeys != 1 {
		t.Errorf("%d IKE SA rekeys seen, want 1", ikeRekeys)
	}
	if authReq == nil || authResp == nil {
		t.Fatal("no IKE_AUTH exchange")
	}

	// PSK AUTH (RFC 7296 2.15) of the initiator, and of the responder when
	// it uses the PSK too.
	checkAuth := func(m *Message, initiator bool, realMessage, nonce []byte) {
		auth := Find(m.Inner, PayloadAUTH).(*Auth)
		idt := PayloadIDr
		if initiator {
			idt = PayloadIDi
		}
		id := Find(m.Inner, idt).(*ID)
		if auth.Method != AuthSharedKeyMIC {
			t.Logf("%s AUTH is %s, not checked", idt, auth.Method)
			return
		}
		octets, _ := keys.SignedOctets(initiator, realMessage, nonce, id.Body())
		if !suite.VerifyPSKAuth(alg.PRF, psk, octets, auth.Data) {
			t.Errorf("charon's %s AUTH does not verify", idt)
		}
		if suite.VerifyPSKAuth(alg.PRF, []byte("wrong"), octets, auth.Data) {
			t.Error("AUTH verifies with a wrong PSK")
		}
	}
	checkAuth(authReq, true, req.Raw, nr)
	if Find(authResp.Inner, PayloadAUTH) != nil {
		checkAuth(authResp, false, resp.Raw, ni)
	}

	// The Child SA of IKE_AUTH: KEYMAT = prf+(SK_d, Ni | Nr).
	respSA, _ := Find(authResp.Inner, PayloadSA).(*SA)
	if respSA == nil {
		t.Logf("IKE_AUTH response without SA (%v)", notifyTypes(authResp.Inner))
		return
	}
	reqSA := Find(authReq.Inner, PayloadSA).(*SA)
	csel, err := suite.CheckResponse(reqSA.Proposals, respSA.Proposals)
	if err != nil {
		t.Fatal(err)
	}
	// charon sends no KE transform in IKE_AUTH, even for a Child SA
	// configured with PFS: WithoutKE gives the same SA payload, and Select
	// with SkipKE makes charon's choice.
	espOurs, err := suite.ParseESP(c.params["esp"])
	if err != nil {
		t.Fatal(err)
	}
	espOurs = suite.WithSPI(suite.WithoutKE(espOurs), reqSA.Proposals[0].SPI)
	a, _ := (&SA{Proposals: espOurs}).appendBody(nil)
	b, _ := reqSA.appendBody(nil)
	if !bytes.Equal(a, b) {
		t.Errorf("IKE_AUTH SA payload: ours %s, charon's %s", suite.FormatProposals(espOurs), suite.FormatProposals(reqSA.Proposals))
	}
	if sel, err := suite.Select(espOurs, reqSA.Proposals, suite.SelectPolicy{SkipKE: true}); err != nil || sel.String() != csel.String() {
		t.Errorf("Child SA: Select chose %s, charon %s (%v)", sel, csel, err)
	}
	calg, err := csel.Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := keys.ChildKeys(calg, nil, ni, nr)
	if err != nil {
		t.Fatal(err)
	}
	for label, got := range map[string][]byte{
		"encryption initiator key": ck.EncrI(), "encryption responder key": ck.EncrR(),
		"integrity initiator key": ck.IntegI(), "integrity responder key": ck.IntegR(),
	} {
		logged := c.keys[label]
		if len(got) == 0 && len(logged) == 0 {
			continue
		}
		if len(logged) == 0 || !bytes.Equal(logged[0], got) {
			t.Errorf("Child SA %s differs from charon's", label)
		}
	}
}

func compareIKEKeys(t *testing.T, c *charonCase, n int, k *suite.IKEKeys) {
	t.Helper()
	for label, got := range map[string][]byte{
		"Sk_d secret": k.SKd(), "Sk_ai secret": k.SKai(), "Sk_ar secret": k.SKar(), "Sk_ei secret": k.SKei(),
		"Sk_er secret": k.SKer(), "Sk_pi secret": k.SKpi(), "Sk_pr secret": k.SKpr(),
	} {
		logged := c.keys[label]
		if len(got) == 0 && len(logged) <= n {
			continue
		}
		if len(logged) <= n {
			t.Errorf("key set %d: charon logged no %s", n, label)
			continue
		}
		if !bytes.Equal(logged[n], got) {
			t.Errorf("key set %d: %s %x, charon %x", n, label, got, logged[n])
		}
	}
}

func notifyTypes(ps []Payload) string {
	var s []string
	for _, p := range ps {
		if n, ok := p.(*Notify); ok {
			s = append(s, n.NotifyType.String())
		}
	}
	return fmt.Sprint(s)
}
