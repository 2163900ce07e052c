package sa

import (
	"unsafe"

	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/suite"
)

// prf is PRF_HMAC_SHA2_256, computed here with crypto/hmac alone.
func prf(key []byte, data ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, d := range data {
		m.Write(d)
	}
	return m.Sum(nil)
}

// prfPlus is RFC 7296 2.13's prf+: T1 | T2 | ..., Tn = prf(K, Tn-1 | S | n).
func prfPlus(key, seed []byte, n int) []byte {
	var out, t []byte
	for i := byte(1); len(out) < n; i++ {
		t = prf(key, t, seed, []byte{i})
		out = append(out, t...)
	}
	return out[:n]
}

func ikeAlgorithms(t *testing.T) suite.Algorithms {
	t.Helper()
	ps, err := suite.ParseIKE("aes128gcm16-prfsha256-x25519")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ps[0].Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// pairOfSAs are the two ends of one IKE SA with the keys of one IKE_SA_INIT.
func pairOfSAs(t *testing.T) (i, r *IKESA, keys *suite.IKEKeys, ni, nr, gir []byte) {
	t.Helper()
	ni, nr, gir = bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32)
	keys, err := suite.DeriveIKEKeys(ikeAlgorithms(t), ni, nr, gir, 0x0102030405060708, 0x1112131415161718)
	if err != nil {
		t.Fatal(err)
	}
	i = &IKESA{Initiator: true, SPIi: 0x0102030405060708, SPIr: 0x1112131415161718}
	r = &IKESA{SPIi: i.SPIi, SPIr: i.SPIr}
	if err := i.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	if err := r.SetKeys(keys); err != nil {
		t.Fatal(err)
	}
	return i, r, keys, ni, nr, gir
}

// The keys an IKE SA holds are RFC 7296 2.14's: SKEYSEED = prf(Ni | Nr,
// g^ir), then prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) cut into SK_d, SK_ai,
// SK_ar, SK_ei, SK_er, SK_pi, SK_pr (no SK_a for AES-GCM; SK_e with its
// 4-byte salt).
func TestKeysAreRFC7296(t *testing.T) {
	i, _, _, ni, nr, gir := pairOfSAs(t)
	skeyseed := prf(append(append([]byte(nil), ni...), nr...), gir)
	var spis [16]byte
	binary.BigEndian.PutUint64(spis[:8], i.SPIi)
	binary.BigEndian.PutUint64(spis[8:], i.SPIr)
	const prfLen, encLen = 32, 16 + 4
	stream := prfPlus(skeyseed, append(append(append([]byte(nil), ni...), nr...), spis[:]...), prfLen+2*encLen+2*prfLen)
	next := func(n int) []byte { b := stream[:n]; stream = stream[n:]; return b }
	k := i.Keys
	for _, c := range []struct {
		name      string
		got, want []byte
	}{
		{"SK_d", k.SKd(), next(prfLen)},
		{"SK_ai", k.SKai(), nil},
		{"SK_ar", k.SKar(), nil},
		{"SK_ei", k.SKei(), next(encLen)},
		{"SK_er", k.SKer(), next(encLen)},
		{"SK_pi", k.SKpi(), next(prfLen)},
		{"SK_pr", k.SKpr(), next(prfLen)},
	} {
		if !bytes.Equal(c.got, c.want) {
			t.Errorf("%s = %x, want %x", c.name, c.got, c.want)
		}
	}
	// A Child SA's KEYMAT = prf+(SK_d, Ni | Nr) (no PFS): the first
	// 20 bytes are the initiator's outbound AES-GCM key and salt.
	child, err := suite.ParseESP("aes128gcm16")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := child[0].Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	ck, err := k.ChildKeys(ca, nil, ni, nr)
	if err != nil {
		t.Fatal(err)
	}
	keymat := prfPlus(k.SKd(), append(append([]byte(nil), ni...), nr...), 2*encLen)
	if out, _ := ck.Outbound(true); !bytes.Equal(out, keymat[:encLen]) {
		t.Errorf("initiator's outbound Child SA key %x, want %x", out, keymat[:encLen])
	}
	if in, _ := ck.Inbound(true); !bytes.Equal(in, keymat[encLen:]) {
		t.Errorf("initiator's inbound Child SA key %x, want %x", in, keymat[encLen:])
	}
}

// SetKeys gives each end the ciphers of its role: what the initiator
// seals, the responder opens, and not the initiator itself.
func TestSetKeysRoles(t *testing.T) {
	i, r, keys, _, _, _ := pairOfSAs(t)
	aad := []byte("ike header and sk payload header")
	// The initiator sends with SK_ei (RFC 7296 2.14), whoever holds it.
	ei, err := suite.NewSKCipher(keys.Alg, keys.SKei(), keys.SKai())
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := i.Out.Seal(append([]byte(nil), aad...), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ei.Open(aad, sealed[len(aad):]); err != nil {
		t.Errorf("the initiator does not send with SK_ei: %v", err)
	}
	for _, c := range []struct {
		name          string
		from, to, not *IKESA
	}{{"initiator to responder", i, r, i}, {"responder to initiator", r, i, r}} {
		sealed, err := c.from.Out.Seal(append([]byte(nil), aad...), []byte("inner payloads"))
		if err != nil {
			t.Fatal(err)
		}
		body := sealed[len(aad):]
		if got, err := c.to.In.Open(aad, body); err != nil || string(got) != "inner payloads" {
			t.Errorf("%s: open: %q, %v", c.name, got, err)
		}
		if _, err := c.not.In.Open(aad, body); err == nil {
			t.Errorf("%s: the sender's own inbound cipher opened it", c.name)
		}
	}
}

// An IKE SA comes back from the state file with its keys, and its
// ciphers are rebuilt from them; the states are stored as numbers.
func TestStateFileRoundTrip(t *testing.T) {
	i, r, _, _, _, _ := pairOfSAs(t)
	i.State, i.ConnName = Established, "tun"
	i.Local, i.Remote = netip.MustParseAddrPort("198.18.0.1:4500"), netip.MustParseAddrPort("198.18.0.2:4500")
	i.Children = []*ChildSA{{Name: "net", State: ChildRekeyed, SPIIn: 0xc0000001, SPIOut: 0x0badcafe, ReqID: 3}}
	i.Created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := json.Marshal(i)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"state":2`, `"state":5`, `"spi_i":"72623859790382856"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("state file lacks %s: %s", want, b)
		}
	}
	var back IKESA
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Out != nil || back.In != nil {
		t.Fatal("ciphers in the state file")
	}
	if err := back.RestoreCiphers(); err != nil {
		t.Fatal(err)
	}
	if back.State != Established || back.Children[0].State != ChildRekeyed || back.SPIi != i.SPIi || back.Remote != i.Remote {
		t.Errorf("restored %+v", back)
	}
	aad := []byte("hdr")
	sealed, err := back.Out.Seal(append([]byte(nil), aad...), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.In.Open(aad, sealed[len(aad):]); err != nil {
		t.Errorf("restored IKE SA's cipher: the peer cannot open: %v", err)
	}
	if err := (&IKESA{}).RestoreCiphers(); err == nil {
		t.Error("RestoreCiphers without keys succeeded")
	}
}

func TestSPIsByRole(t *testing.T) {
	i := &IKESA{Initiator: true, SPIi: 1, SPIr: 2}
	r := &IKESA{SPIi: 1, SPIr: 2}
	if i.OurSPI() != 1 || i.PeerSPI() != 2 || r.OurSPI() != 2 || r.PeerSPI() != 1 {
		t.Errorf("initiator ours/peer %d/%d, responder %d/%d", i.OurSPI(), i.PeerSPI(), r.OurSPI(), r.PeerSPI())
	}
	if got := i.SPIs(); got != "0000000000000001_i 0000000000000002_r" {
		t.Errorf("SPIs() = %q", got)
	}
	if got := (&ChildSA{SPIIn: 0xc1, SPIOut: 0xab}).SPIs(); got != "000000c1_i 000000ab_o" {
		t.Errorf("ChildSA.SPIs() = %q", got)
	}
	if (&IKESA{}).NAT() || !(&IKESA{NATLocal: true}).NAT() || !(&IKESA{NATRemote: true}).NAT() {
		t.Error("NAT() is not NATLocal or NATRemote")
	}
}

func TestChildren(t *testing.T) {
	a := &ChildSA{Name: "a", SPIIn: 1, SPIOut: 11, State: ChildRekeyed}
	b := &ChildSA{Name: "a", SPIIn: 2, SPIOut: 12, State: ChildInstalled, Replaces: 1}
	c := &ChildSA{Name: "a", SPIIn: 3, SPIOut: 13, State: ChildInstalled, Replaces: 1, Redundant: true}
	ike := &IKESA{Children: []*ChildSA{a, c, b}}
	if ike.ChildByInSPI(2) != b || ike.ChildByOutSPI(11) != a || ike.ChildByInSPI(11) != nil || ike.ChildByOutSPI(1) != nil {
		t.Error("ChildByInSPI or ChildByOutSPI finds the wrong Child SA")
	}
	// The redundant replacement is passed over.
	if got := ike.Successor(a); got != b {
		t.Errorf("Successor = %v, want the non-redundant replacement", got)
	}
	if ike.Successor(b) != nil {
		t.Error("a Child SA nobody replaces has a successor")
	}
	b.State = ChildDeleted
	if ike.Successor(a) != nil {
		t.Error("a deleted replacement is a successor")
	}
	ike.RemoveChild(c)
	if len(ike.Children) != 2 || ike.Children[0] != a || ike.Children[1] != b {
		t.Errorf("RemoveChild left %v", ike.Children)
	}
	ike.RemoveChild(c)
	if len(ike.Children) != 2 {
		t.Error("removing an absent Child SA changed the list")
	}
	for s, live := range map[ChildState]bool{ChildCreating: true, ChildInstalled: true, ChildRekeying: true,
		ChildDeleting: false, ChildDeleted: false, ChildRekeyed: false} {
		if got := (&ChildSA{State: s}).Live(); got != live {
			t.Errorf("%s: Live() = %v", s, got)
		}
	}
}

// The names of the states are in logs and spuctl's output.
func TestStateNames(t *testing.T) {
	for s, want := range map[IKEState]string{Created: "CREATED", Connecting: "CONNECTING", Established: "ESTABLISHED",
		Deleting: "DELETING", Destroyed: "DESTROYED", Rekeyed: "REKEYED", -1: "IKEState(-1)", 99: "IKEState(99)"} {
		if got := s.String(); got != want {
			t.Errorf("IKEState(%d) = %q, want %q", int(s), got, want)
		}
	}
	for s, want := range map[ChildState]string{ChildCreating: "CREATING", ChildInstalled: "INSTALLED", ChildRekeying: "REKEYING",
		ChildDeleting: "DELETING", ChildDeleted: "DELETED", ChildRekeyed: "REKEYED", -1: "ChildState(-1)", 99: "ChildState(99)"} {
		if got := s.String(); got != want {
			t.Errorf("ChildState(%d) = %q, want %q", int(s), got, want)
		}
	}
}

// TestLayout: the IKE SA and the Child SA stay within the size classes
// their field order was chosen for (a million of each); a new field that
// crosses one should find a place among the small ones, or say why not
// and raise the figure here.
func TestLayout(t *testing.T) {
	if n := unsafe.Sizeof(IKESA{}); n > 576 {
		t.Errorf("IKESA is %d bytes, over its 576-byte size class", n)
	}
	if n := unsafe.Sizeof(ChildSA{}); n > 256 {
		t.Errorf("ChildSA is %d bytes, over its 256-byte size class", n)
	}
}
