package sa

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/ipsec"
)

// goldenState is the IKE SA whose binary state testdata/state-v1.hex
// holds, as the code before IKEKeys and ChildKeys became one buffer each
// wrote it: an established PSK tunnel with AES-CBC and HMAC-SHA-256 (all
// seven IKE keys and all four Child SA keys present).
func goldenState(t *testing.T) *IKESA {
	alg := suite.Algorithms{Protocol: suite.ProtocolIKE, Encr: suite.EncrAESCBC, EncrKeyBits: 128, Integ: suite.IntegHMACSHA256128, PRF: suite.PRFHMACSHA256, Group: suite.GroupCurve25519}
	keys, err := suite.DeriveIKEKeys(alg, []byte("nonce-i"), []byte("nonce-r"), []byte("shared secret"), 0x1122334455667788, 0x99aabbccddeeff00)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := suite.ParseIKE("aes128-sha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1796000000, 123456789).UTC()
	s := &IKESA{UniqueID: 7, ConnName: "site-b", SPIi: 0x1122334455667788, SPIr: 0x99aabbccddeeff00, State: Established,
		Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.19.0.2:500"), Logical: 3, Anchored: true,
		Proposal: ps[0], LocalID: config.Identity{Type: 2, Data: []byte("gw-b.example"), Text: "gw-b.example"},
		RemoteID: config.Identity{Type: 2, Data: []byte("gw-a.example"), Text: "gw-a.example"}, AuthLocal: "psk", AuthRemote: "psk",
		MsgIDIn: 2, Keys: keys, Created: at, Established: at, RekeyAt: at.Add(time.Hour), ExpireAt: at.Add(2 * time.Hour)}
	ca := suite.Algorithms{Protocol: suite.ProtocolESP, Encr: suite.EncrAESCBC, EncrKeyBits: 128, Integ: suite.IntegHMACSHA256128}
	ck, err := suite.DeriveChildKeys(suite.PRFHMACSHA256, keys.SKd(), ca, nil, []byte("child-ni"), []byte("child-nr"))
	if err != nil {
		t.Fatal(err)
	}
	lts := []ipsec.Selector{{From: netip.MustParseAddr("10.1.0.0"), To: netip.MustParseAddr("10.1.255.255")}}
	rts := []ipsec.Selector{{From: netip.MustParseAddr("10.2.0.0"), To: netip.MustParseAddr("10.2.255.255")}}
	s.Children = []*ChildSA{{UniqueID: 8, ReqID: 1, SPIIn: 0xc0000001, SPIOut: 0xc0000002, State: ChildInstalled, Name: "lan", Alg: ca, Keys: ck,
		LocalTS: lts, RemoteTS: rts, PolicyIDs: []uint32{1, 2}, Installed: at, RekeyAt: at.Add(time.Hour), ExpireAt: at.Add(2 * time.Hour)}}
	return s
}

// TestStateGolden: a state written before the keys' layout changed reads
// back as the IKE SA it was, keys included, and the code writes the same
// bytes for it: the binary form did not change with the layout.
func TestStateGolden(t *testing.T) {
	h, err := os.ReadFile("testdata/state-v1.hex")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	want := goldenState(t)
	var got IKESA
	if err := got.UnmarshalBinary(golden); err != nil {
		t.Fatal(err)
	}
	wantN := *want
	normalize(reflect.ValueOf(&wantN))
	normalize(reflect.ValueOf(&got))
	if d := diff(reflect.ValueOf(&wantN), reflect.ValueOf(&got), "IKESA"); d != "" {
		t.Errorf("golden state: %s", d)
	}
	if !bytes.Equal(got.Children[0].Keys.IntegR(), want.Children[0].Keys.IntegR()) || len(got.Keys.SKpr()) != 32 {
		t.Error("golden state: keys differ")
	}
	b, err := want.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, golden) {
		t.Errorf("the state written now differs from the golden one:\n%x\n%x", b, golden)
	}
}
