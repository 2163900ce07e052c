package manager

import (
	"bytes"
	"net/netip"
	"slices"
	"testing"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
)

// TestRestoreDropsAuthKeys: an IKE SA read back from a state written
// before IKE SAs dropped SK_pi and SK_pr comes back without them.
func TestRestoreDropsAuthKeys(t *testing.T) {
	e := newFakeEnv(t)
	alg := suite.Algorithms{Protocol: suite.ProtocolIKE, Encr: suite.EncrAESGCM16, EncrKeyBits: 128, PRF: suite.PRFHMACSHA256,
		Group: suite.GroupCurve25519}
	k, err := suite.DeriveIKEKeys(alg, bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 32), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	skd := slices.Clone(k.SKd())
	ike := &sa.IKESA{UniqueID: 1, Initiator: true, SPIi: 1, SPIr: 2, State: sa.Established, Keys: k,
		Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.18.0.2:500"),
		Created: e.now, Established: e.now}
	if err := ike.RestoreCiphers(); err != nil {
		t.Fatal(err)
	}
	Restore(ike, e)
	if k.SKpi() != nil || k.SKpr() != nil || !bytes.Equal(k.SKd(), skd) {
		t.Fatalf("restored keys: SK_pi %x, SK_pr %x, SK_d %x (want %x)", k.SKpi(), k.SKpr(), k.SKd(), skd)
	}
}
