package task

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
)

// viaStateFile passes f through JSON, as the state file keeps it.
func viaStateFile(t *testing.T, f *sa.InFlight) *sa.InFlight {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var out sa.InFlight
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return &out
}

func snapshotJSON(t *testing.T, s Snapshotter) string {
	t.Helper()
	b, err := json.Marshal(s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestResumeChildCreate(t *testing.T) {
	h := newHarness(t)
	conn := h.env.cfg.Connections["tun"]
	orig := NewChildCreateI(conn, conn.Children["net"], nil)
	c := h.ctx(message.CreateChildSA)
	if err := orig.Build(c, &message.Message{}); err != nil {
		t.Fatal(err)
	}
	if orig.ke == nil || orig.spi == 0 || len(orig.nonce) == 0 {
		t.Fatalf("Build made no KE, SPI or nonce")
	}
	got, err := Resume(c, viaStateFile(t, orig.Snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	cr, ok := got.(*ChildCreateI)
	if !ok {
		t.Fatalf("resumed a %T, want *ChildCreateI", got)
	}
	// The rebuilt task describes the same request, and its key exchange
	// is the same one (the peer's KE answers our public key).
	if a, b := snapshotJSON(t, orig), snapshotJSON(t, cr); a != b {
		t.Errorf("resumed task differs:\n%s\n%s", a, b)
	}
	if !bytes.Equal(cr.ke.PublicKey(), orig.ke.PublicKey()) {
		t.Errorf("resumed key exchange has another public key")
	}
	if cr.child != conn.Children["net"] || cr.Replaces != nil {
		t.Errorf("resumed child %v, replaces %v", cr.child, cr.Replaces)
	}
}

func TestResumeChildRekey(t *testing.T) {
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	old := h.ike.Children[0]
	c := h.ctx(message.CreateChildSA)
	got, err := Resume(c, viaStateFile(t, &sa.InFlight{Task: inflightChildRekey, Reason: "time", Child: "net", OldSPI: old.SPIIn, SPI: 7}))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := got.(*ChildRekeyI)
	if !ok || r.Old != old || r.Reason != "time" || r.create == nil || r.create.Replaces != old || r.create.spi != 7 {
		t.Fatalf("resumed %#v", got)
	}
	if old.State != sa.ChildRekeying {
		t.Errorf("old Child SA %s, want REKEYING", old.State)
	}
	// Its Snapshot is the one it was resumed from.
	if f := r.Snapshot(); f.Task != inflightChildRekey || f.OldSPI != old.SPIIn || f.Reason != "time" {
		t.Errorf("snapshot %+v", f)
	}
}

func TestResumeDeletes(t *testing.T) {
	h := newHarness(t)
	h.createChild(t, message.CreateChildSA, childReq{})
	ch := h.ike.Children[0]
	c := h.ctx(message.Informational)
	del := NewChildDeleteI("expired", nil, ch)
	del.spis = []uint32{0x42}
	got, err := Resume(c, viaStateFile(t, del.Snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := got.(*ChildDeleteI); !ok || d.reason != "expired" || len(d.children) != 1 || d.children[0] != ch ||
		len(d.spis) != 1 || d.spis[0] != 0x42 {
		t.Errorf("resumed %#v", got)
	}
	got, err = Resume(c, viaStateFile(t, NewIKEDeleteI("reauth").Snapshot()))
	if d, ok := got.(*IKEDeleteI); err != nil || !ok || d.Reason() != "reauth" {
		t.Errorf("resumed %#v, %v", got, err)
	}
	got, err = Resume(c, viaStateFile(t, (&DPDI{}).Snapshot()))
	if _, ok := got.(*DPDI); err != nil || !ok {
		t.Errorf("resumed %#v, %v", got, err)
	}
}

func TestResumeIKERekey(t *testing.T) {
	h := newHarness(t)
	ke, err := suite.NewKeyExchange(suite.GroupCurve25519)
	if err != nil {
		t.Fatal(err)
	}
	orig := &IKERekeyI{Reason: "time", spi: 0xabcdef, group: suite.GroupCurve25519, ke: ke, nonce: []byte{1, 2, 3}}
	got, err := Resume(h.ctx(message.CreateChildSA), viaStateFile(t, orig.Snapshot()))
	if err != nil {
		t.Fatal(err)
	}
	r, ok := got.(*IKERekeyI)
	if !ok || r.spi != orig.spi || r.Reason != "time" || !bytes.Equal(r.ke.PublicKey(), ke.PublicKey()) || !bytes.Equal(r.nonce, orig.nonce) {
		t.Errorf("resumed %#v", got)
	}
}

// A task that cannot be rebuilt is Abandoned, with the reason.
func TestResumeAbandons(t *testing.T) {
	for _, c := range []struct {
		f    sa.InFlight
		want string
	}{
		{sa.InFlight{Task: inflightChildCreate, Child: "gone"}, "no longer configured"},
		{sa.InFlight{Task: inflightChildRekey, Child: "net", OldSPI: 0x1234}, "is gone"},
		{sa.InFlight{Task: inflightIKERekey}, "without its key exchange"},
		{sa.InFlight{Task: "what"}, `unknown task "what"`},
	} {
		h := newHarness(t)
		got, err := Resume(h.ctx(message.CreateChildSA), &c.f)
		if _, ok := got.(*Abandoned); !ok || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: resumed %T, %v; want Abandoned, %q", c.f.Task, got, err, c.want)
		}
	}
}
