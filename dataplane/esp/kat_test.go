package esp

// Known-answer tests from published vectors:
//   - the AES-GCM-ESP test cases of draft-mcgrew-gcm-test-01 (section 4),
//   - the ESP example of RFC 7634 (appendix A),
//   - HMAC-SHA-256 test cases of RFC 4231 (section 4) truncated to 128
//     bits and the HMAC-SHA-256-128 cases of RFC 4868 (section 2.7.2.2).

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"github.com/spugate/spugate/ipsec"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad hex in test vector: %v", err)
	}
	return b
}

// katSA returns an SA of suite with the given key material; the SPI is
// patched in afterwards because some vectors use reserved SPI values.
func katSA(t *testing.T, suite ipsec.Suite, dir Direction, enc []byte, spi uint32, esn bool) *SA {
	t.Helper()
	c, _ := pairConfig(pairOpts{suite: suite})
	c.Direction = dir
	c.EncKey = enc
	c.ESN = esn
	sa, err := NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	sa.spi = spi
	return sa
}

var gcmVectors = []struct {
	key, spi, seq, nonce, plaintext, packet string
}{
	{"4c80cdefbb5d10da906ac73c3613a634", "00004321", "8765432100000000", "2e443b684956ed7e3b244cfe",
		`45000048699a000080114db7c0a80102 c0a801010a9bf15638d3010000010000 00000000045f736970045f7564700373
		 69700963796265726369747902646b00 0021000101020201`,
		`00004321000000004956ed7e3b244cfe fecf537e729d5b07dc30df528dd22b76 8d1b98736696a6fd348509fa13ceac34
		 cfa2436f14a3f3cf65925bf1f4a13c5d 15b21e1884f5ff6247aeabb786b93bce 61bc17d768fd9732459018148f6cbe72
		 2fd04796562dfdb4`},
	{"feffe9928665731c6d6a8f9467308308", "0000a5f8", "0000000a", "cafebabefacedbaddecaf888",
		`4500003e698f000080114dccc0a80102 c0a801010a980035002a2343b2d00100 00010000000000000373697009637962
		 65726369747902646b00000100010001`,
		`0000a5f80000000afacedbaddecaf888 deb22cd9b07c72c16e3a65beeb8df304 a5a5897d33ae530f1ba76d5d114d2a5c
		 3de81827c10e9a4f51330d0eec416642 cfbb85a5b47e48a4ec3b9ba95d918bd1 83b70d3aa8bc6ee4c309e9d85a41ad4a`},
	{"abbccddef00112233445566778899aababbccddef00112233445566778899aab", "4a2cbfe3", "00000002", "112233440102030405060708",
		`4500003069a6400080062690c0a80102 9389155e0a9e008b2dc57ee000000000 7002400020bf0000020405b401010402
		 01020201`,
		`4a2cbfe3000000020102030405060708 ff425c9b724599df7a3bcd510194e00d 6a78107f1b0b1cbf06efae9d65a5d763
		 748a637985771d347f0545659f14e99d ef842d8eb335f4eecfdbf831824b4c49 15956c96`},
	{"00000000000000000000000000000000", "00000000", "00000001", "000000000000000000000000",
		`4500003c99c500008001cb7a40679318 010101010800075c0200440061626364 65666768696a6b6c6d6e6f7071727374
		 75767761626364656667686901020201`,
		`00000000000000010000000000000000 4688daf2f973a392732909c331d56d60 f694abaa414b5e7ff5fdcdfff5e9a284
		 456476492719ffb64de7d9dca1e1d894 bc3bd57873ed4d181d19d4d5c8c18af3 f821d496eeb096e98ad2b69e4799c71d`},
	{"3de09874b388e6491988d0c3607eae1f", "42f67e3f", "1010101010101010", "57690e434e280000a2fca1a3",
		`4500003c99c300008001cb7c40679318 010101010800085c0200430061626364 65666768696a6b6c6d6e6f7071727374
		 75767761626364656667686901020201`,
		`42f67e3f101010104e280000a2fca1a3 fba2caa4853cf9f0f22cb10d86dd83b0 fec75691cf1a04b00d1138ec9c357917
		 65acbd8701ad79845bf9fe3fba487bc9 1755e6662b4c8d0d1f5e22739530320a e0d731cc978ecafaeae88f00e80d6e48`},
	{"3de09874b388e6491988d0c3607eae1f", "42f67e3f", "1010101010101010", "57690e434e280000a2fca1a3",
		`4500001c42a200008001441f406793b6 e00000020a00f5ff01020201`,
		`42f67e3f101010104e280000a2fca1a3 fba2ca845e5df9f0f22c3e6e86dd831e 1fc65792cd1af9130e1379ed369f071f
		 35e034be95f112e4e7d05d35`},
	{"feffe9928665731c6d6a8f9467308308feffe9928665731c", "0000a5f8", "0000000a", "cafebabefacedbaddecaf888",
		`45000028a4ad4000400678800a01038f 0a010612802306b8cb712602dd6bb03e 501016d075680001`,
		`0000a5f80000000afacedbaddecaf888 a5b1f8066029aea40e598b8122de0242 0938b3ab33f828e687b8858b5bfbdbd0
		 315b27452144cc7795457b9652037f53 18027b5b4cd7a636`},
	{"abbccddef00112233445566778899aab", "00000100", "0000000000000001", "decaf888cafedebaceface74",
		`4500004933ba00007f119106c3fb1d10 c2b1d326c02831ce0035dd7b800302d5 00004e20001e8c18d75b81dc91baa047
		 6b91b924b280389d92c963bac046ec95 9b6266c04722b14923010101`,
		`0000010000000001cafedebaceface74 18a6fd42f72cbf4ab2a2ea901f73d814 e3e7f243d95412e1c349c1d2fbec168f
		 9190feebaf2cb01984e65863965d7472 b79da345e0e780191f0d2f0e0f496c22 6f2127b27db35724e7845d68651f57e6
		 5f354f75ff17015769623436`},
	{"abbccddef00112233445566778899aababbccddef00112233445566778899aab", "17405e67", "156f3126dd0db99b", "73616c74616e640169766563",
		`45080028732c00004006e9f90a010612 0a01038f06b88023dd6bafbecb712602 50101f646d540001`,
		`17405e67dd0db99b616e640169766563 f2d69ecdbd5a0d5b8d5ef38bad4da58d 1f278fde98ef67549d524a3018d9a57f
		 f4d3a31ce673119e451626c2415771e3 b7eebca614c89b35`},
	{"3de09874b388e6491988d0c3607eae1f", "42f67e3f", "1010101010101010", "57690e434e280000a2fca1a3",
		`45000049333e00007f119182c3fb1d10 c2b1d326c02831ce0035cb458003025b 000001e0001e8c18d65759d52284a035
		 2c71475c8880391c764d6e5ee0496b32 5ae270c03899493915010101`,
		`42f67e3f101010104e280000a2fca1a3 fba2cad12fc1f9f00d3cebf305410db8 3d7784b607323d220f24b0a97d541828
		 00cadb0f68d99ef0e0c0c89ae9bea888 4e52d65bc1afd0740f742444747b5b39 ab533163aad4550ee5160975cdb608c5
		 769189609763b8e18caa81e2`},
	{"abbccddef00112233445566778899aababbccddef00112233445566778899aab", "17405e67", "156f3126dd0db99b", "73616c74616e640169766563",
		`636973636f0172756c65730174686501 6e6574776501646566696e6501746865 746563686e6f6c6f6769657301746861
		 7477696c6c01646566696e65746f6d6f 72726f7701020201`,
		`17405e67dd0db99b616e640169766563 d4b7ed86a1777f2ea13d6973d324c69e 7b43f826fb56831226508bebd2dceb18
		 d0a6df10e5487df074113e14c641024e 3e6773d91a62ee429b043a10e3efe6b0 12a49363412364f8c0cac587f249e56b
		 11e24f30e44ccc76`},
	{"7d773d00c144c525ac619d18c84a3f47", "335467ae", "ffffffff", "d966426743457e9182443bc6",
		`01020201`,
		`335467aeffffffff43457e9182443bc6 437f866bcb3f699fe9b0822bac961c45 04bef270`},
	{"abbccddef00112233445566778899aab", "00000100", "0000000000000001", "decaf888cafedebaceface74",
		`746f016265016f72016e6f7401746f01 62650001`,
		`0000010000000001cafedebaceface74 29c9fc69a197d038ccdd14e2ddfcaa05 43332164412503524303ed3c6c5f2838
		 43af8c3e`},
	{"6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961", "796b6963", "ffffffffffffffff", "7475726e333021696765746d",
		`45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364 65666768696a6b6c6d6e6f7071727374
		 01020201`,
		`796b6963ffffffff333021696765746d f97ab2aa356d8edce17644ac8c78e25d d24dedbb29ebf1b64a274b39b49c3a86
		 4cd3d78ca4ae68a32b42458fb57dbe82 1dcc63b9d0937ba2945f669368661a32 9fb4c053`},
	{"3de09874b388e6491988d0c3607eae1f", "3f7ef642", "1010101010101010", "57690e434e280000a2fca1a3",
		`45000030da3a00008001df3bc0a80005 c0a800010800c6cd0200070061626364 65666768696a6b6c6d6e6f7071727374
		 01020201`,
		`3f7ef642101010104e280000a2fca1a3 fba2caa8c6c5f9f0f22ca54a061210ad 3f6e5791cf1aca210d117cec9c357917
		 65acbd8701ad79845bf9fe3fba487bc9 6321930684eecadb56912546e7a95c97 40d7cb05`},
	{"4c80cdefbb5d10da906ac73c3613a634", "00004321", "8765432100000007", "22433c644855ec7d3a234bfd",
		`0800c6cd020007006162636465666768 696a6b6c6d6e6f707172737401020201`,
		`00004321000000074855ec7d3a234bfd 74752e8aeb5d873cd7c0f4acc36c4bff 84b7d7b98f0ca8b6acda6894bc619069
		 ef9cbc28fe1b56a7c4e0d58c86cd2bc0`},
}

func TestKATDraftMcGrewGCM(t *testing.T) {
	suites := map[int]ipsec.Suite{16: ipsec.AES128GCM16, 24: ipsec.AES192GCM16, 32: ipsec.AES256GCM16}
	for i, v := range gcmVectors {
		key, nonce, pt, want := unhex(t, v.key), unhex(t, v.nonce), unhex(t, v.plaintext), unhex(t, v.packet)
		seqb := unhex(t, v.seq)
		spi := binary.BigEndian.Uint32(unhex(t, v.spi))
		esn := len(seqb) == 8
		var seq uint64
		if esn {
			seq = binary.BigEndian.Uint64(seqb)
		} else {
			seq = uint64(binary.BigEndian.Uint32(seqb))
		}
		enc := append(append([]byte(nil), key...), nonce[:4]...)

		// Seal: our framing (SPI, low sequence number, IV, AAD) must give the packet.
		out := katSA(t, suites[len(key)], Outbound, enc, spi, esn)
		esp := make([]byte, 16+len(pt)+icvLen)
		binary.BigEndian.PutUint32(esp[0:], spi)
		binary.BigEndian.PutUint32(esp[4:], uint32(seq))
		copy(esp[8:16], nonce[4:])
		copy(esp[16:], pt)
		binary.BigEndian.PutUint32(out.hot().seqHi[:], uint32(seq>>32))
		out.sealAEAD(out.hot(), esp, len(pt))
		if !bytes.Equal(esp, want) {
			t.Errorf("vector %d: sealed\n %x\nwant\n %x", i+1, esp, want)
			continue
		}

		// Open.
		in := katSA(t, suites[len(key)], Inbound, enc, spi, esn)
		got := append([]byte(nil), want...)
		binary.BigEndian.PutUint32(in.hot().seqHi[:], uint32(seq>>32))
		if !in.open(in.hot(), got, len(pt)) || !bytes.Equal(got[16:16+len(pt)], pt) {
			t.Errorf("vector %d: open failed or wrong plaintext", i+1)
		}
		if esn {
			// The ESN high half is authenticated though never sent.
			got = append([]byte(nil), want...)
			binary.BigEndian.PutUint32(in.hot().seqHi[:], uint32(seq>>32)+1)
			if in.open(in.hot(), got, len(pt)) {
				t.Errorf("vector %d: opened with wrong ESN high bits", i+1)
			}
		}
	}
}

// RFC 7634 appendix A: an ICMP echo request from 198.51.100.5 to 192.0.2.5
// in tunnel mode, SPI 0x01020304, sequence number 5, IV 0x1011121314151617.
var rfc7634 = struct {
	keymat, plaintext, ctextTag string
}{
	keymat: `80 81 82 83 84 85 86 87 88 89 8a 8b 8c 8d 8e 8f 90 91 92 93 94 95 96 97 98 99 9a 9b 9c 9d 9e 9f
	         a0 a1 a2 a3`,
	plaintext: `45 00 00 54 a6 f2 00 00 40 01 e7 78 c6 33 64 05 c0 00 02 05 08 00 5b 7a 3a 08 00 00 55 3b ec 10
	            00 07 36 27 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 14 15 16 17 18 19 1a 1b 1c 1d 1e 1f 20 21 22 23
	            24 25 26 27 28 29 2a 2b 2c 2d 2e 2f 30 31 32 33 34 35 36 37 01 02 02 04`,
	ctextTag: `24 03 94 28 b9 7f 41 7e 3c 13 75 3a 4f 05 08 7b 67 c3 52 e6 a7 fa b1 b9 82 d4 66 ef 40 7a e5 c6
	           14 ee 80 99 d5 28 44 eb 61 aa 95 df ab 4c 02 f7 2a a7 1e 7c 4c 4f 64 c9 be fe 2f ac c6 38 e8 f3
	           cb ec 16 3f ac 46 9b 50 27 73 f6 fb 94 e6 64 da 91 65 b8 28 29 f6 41 e0
	           76 aa a8 26 6b 7f b0 f7 b1 1b 36 99 07 e1 ad 43`,
}

func TestKATRFC7634(t *testing.T) {
	key, pt, ct := unhex(t, rfc7634.keymat), unhex(t, rfc7634.plaintext), unhex(t, rfc7634.ctextTag)
	iv := unhex(t, "1011121314151617")

	// Seal.
	out := katSA(t, ipsec.ChaCha20Poly1305, Outbound, key, 0x01020304, false)
	esp := make([]byte, 16+len(pt)+icvLen)
	binary.BigEndian.PutUint32(esp[0:], 0x01020304)
	binary.BigEndian.PutUint32(esp[4:], 5)
	copy(esp[8:], iv)
	copy(esp[16:], pt)
	out.sealAEAD(out.hot(), esp, len(pt))
	if !bytes.Equal(esp[16:], ct) {
		t.Fatalf("sealed\n %x\nwant\n %x", esp[16:], ct)
	}

	// Full decapsulation of the packet, behind an outer IPv4 header.
	c, _ := pairConfig(pairOpts{suite: ipsec.ChaCha20Poly1305})
	c.SPI, c.Direction, c.EncKey = 0x01020304, Inbound, key
	in, err := NewSA(c)
	if err != nil {
		t.Fatal(err)
	}
	espPkt := append(append(unhex(t, "01020304 00000005"), iv...), ct...)
	wire := ipv4Packet(gw4a, gw4b, 50, 0, false, espPkt)
	r := in.Decap(wire, 0, len(wire))
	if r.Verdict != Forward {
		t.Fatalf("decap: %v", r.Reason)
	}
	if got := wire[r.Off : r.Off+r.Len]; !bytes.Equal(got, pt[:84]) {
		t.Fatalf("inner\n %x\nwant\n %x", got, pt[:84])
	}
	// The same packet again is a replay.
	wire = ipv4Packet(gw4a, gw4b, 50, 0, false, espPkt)
	if r := in.Decap(wire, 0, len(wire)); r.Reason != Replay {
		t.Fatalf("second copy: %v", r.Reason)
	}
}

func TestKATHMACSHA256(t *testing.T) {
	rep := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	seq := func(from, to int) []byte {
		var b []byte
		for i := from; i <= to; i++ {
			b = append(b, byte(i))
		}
		return b
	}
	cases := []struct {
		name      string
		key, data []byte
		mac       string // the first 128 bits of HMAC-SHA-256
	}{
		// RFC 4231 section 4.
		{"4231-1", rep(0x0b, 20), []byte("Hi There"), "b0344c61d8db38535ca8afceaf0bf12b"},
		{"4231-2", []byte("Jefe"), []byte("what do ya want for nothing?"), "5bdcc146bf60754e6a042426089575c7"},
		{"4231-3", rep(0xaa, 20), rep(0xdd, 50), "773ea91e36800e46854db8ebd09181a7"},
		{"4231-4", seq(1, 25), rep(0xcd, 50), "82558a389a443c0ea4cc819899f2083a"},
		{"4231-5", rep(0x0c, 20), []byte("Test With Truncation"), "a3b6167473100ee06e0c796c2955552b"},
		{"4231-6", rep(0xaa, 131), []byte("Test Using Larger Than Block-Size Key - Hash Key First"), "60e431591ee0b67f0d8a26aacbf5b77f"},
		{"4231-7", rep(0xaa, 131), []byte("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm."), "9b09ffa71b942fcb27635fbcd5b0e944"},
		// RFC 4868 section 2.7.2.2: HMAC-SHA-256-128 with 32-byte keys, as ESP uses it.
		{"4868-AUTH256-1", rep(0x0b, 32), []byte("Hi There"), "198a607eb44bfbc69903a0f1cf2bbdc5"},
		{"4868-AUTH256-2", bytes.Repeat([]byte("Jefe"), 8), []byte("what do ya want for nothing?"), "167f928588c5cc2eef8e3093caa0e87c"},
		{"4868-AUTH256-3", rep(0xaa, 32), rep(0xdd, 50), "cdcb1220d1ecccea91e53aba3092f962"},
		{"4868-AUTH256-4", seq(1, 32), rep(0xcd, 50), "372efcf9b40b35c2115b1346903d2ef4"},
	}
	sa := katSA(t, ipsec.AES128GCM16, Outbound, make([]byte, 20), 0x1000, false)
	for _, c := range cases {
		w := sa.hot()
		w.cbc = &cbcState{mac: hmac.New(sha256.New, c.key)}
		if got := hex.EncodeToString(sa.cbcICV(w, c.data)[:icvLen]); got != c.mac {
			t.Errorf("%s: %s, want %s", c.name, got, c.mac)
		}
	}
}

// TestCBCWireFormat checks an AES-CBC/HMAC-SHA-256-128 packet against an
// independent composition of the standard library's primitives: the ICV is
// the truncated HMAC over SPI..ciphertext (plus the ESN high half), and the
// ciphertext is CBC under the IV in the packet.
func TestCBCWireFormat(t *testing.T) {
	for _, esn := range []bool{false, true} {
		out, _ := newPair(t, pairOpts{suite: ipsec.AES256SHA256, esn: esn})
		if esn {
			st := out.State()
			st.Seq = 0x1_0000_0041
			out.Restore(st)
		}
		pkt := innerPacket(false, 77)
		w := encapOne(t, out, pkt)
		esp := w[20:]
		enc, integ := testKeys(ipsec.AES256SHA256, 0x40)
		m := hmac.New(sha256.New, integ)
		m.Write(esp[:len(esp)-16])
		if esn {
			m.Write([]byte{0, 0, 0, 1})
		}
		if !bytes.Equal(m.Sum(nil)[:16], esp[len(esp)-16:]) {
			t.Fatalf("esn=%v: ICV is not HMAC-SHA-256-128 over the packet", esn)
		}
		got := cbcDecryptRef(t, enc, esp[8:24], esp[24:len(esp)-16])
		if !bytes.Equal(got[:77], pkt) || got[len(got)-1] != 4 {
			t.Fatalf("esn=%v: CBC plaintext %x", esn, got)
		}
	}
}
