package iked

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/ipsec"
)

// tunnelIKESA is an established IKE SA with one Child SA and a cached
// IKE_AUTH response, the size of a tunnel's state.
func tunnelIKESA(t testing.TB, spi uint64) *sa.IKESA {
	ike := testIKESA(t, spi)
	now := time.Now()
	ike.Created, ike.Established, ike.RekeyAt, ike.ExpireAt = now, now, now.Add(time.Hour), now.Add(2*time.Hour)
	ike.LocalID = config.Identity{Type: 2, Data: []byte("gw-a.example"), Text: "gw-a.example"}
	ike.RemoteID = config.Identity{Type: 2, Data: []byte("gw-b.example"), Text: "gw-b.example"}
	ike.AuthLocal, ike.AuthRemote = "psk", "psk"
	resp := make([]byte, 260)
	rand.Read(resp)
	ike.LastResponse = [][]byte{resp}
	ca := suite.Algorithms{Protocol: suite.ProtocolESP, Encr: suite.EncrAESGCM16, EncrKeyBits: 128}
	ck, err := suite.DeriveChildKeys(suite.PRFHMACSHA256, ike.Keys.SKd(), ca, nil, make([]byte, 32), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	ike.Children = []*sa.ChildSA{{UniqueID: 8, Name: "net", State: sa.ChildInstalled, ReqID: 3, SPIIn: 0xc1234567, SPIOut: 0xc7654321, Alg: ca, Keys: ck,
		LocalTS:   []ipsec.Selector{{From: netip.MustParseAddr("10.0.0.0"), To: netip.MustParseAddr("10.0.0.255")}},
		RemoteTS:  []ipsec.Selector{{From: netip.MustParseAddr("10.1.0.0"), To: netip.MustParseAddr("10.1.0.255")}},
		PolicyIDs: []uint32{12, 13}, Installed: now}}
	return ike
}

func newTestStore(t testing.TB, dir string) *stateStore {
	t.Helper()
	s, err := openStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	// fdatasync on the disk of the temporary folder costs milliseconds a
	// write; TestStateStore keeps it.
	s.durable = false
	return s
}

// bySPI indexes what a load restored.
func bySPI(ikes []*sa.IKESA) map[uint64]*sa.IKESA {
	m := map[uint64]*sa.IKESA{}
	for _, ike := range ikes {
		m[ike.OurSPI()] = ike
	}
	return m
}

// sameShard returns n SPIs from spi on that all go to one segment.
func sameShard(s *stateStore, spi uint64, n int) []uint64 {
	sh := s.shardOf(spi)
	var ids []uint64
	for id := spi; len(ids) < n; id++ {
		if s.shardOf(id) == sh {
			ids = append(ids, id)
		}
	}
	return ids
}

func TestStateStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	s.durable = true
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("state folder mode %04o", fi.Mode().Perm())
	}
	ike := testIKESA(t, 0x1122334455667788)
	if err := s.save(ike); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, segName(s.shardOf(ike.OurSPI()).n)))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state segment: %v mode %v", err, fi.Mode())
	}
	got, errs, err := s.load()
	if err != nil || len(got) != 1 || len(errs) != 0 {
		t.Fatalf("load: %d IKE SAs, errors %v, %v", len(got), errs, err)
	}
	r := got[0]
	if r.SPIi != ike.SPIi || r.MsgIDOut != 5 || r.MsgIDIn != 3 || r.Out == nil || r.In == nil || len(r.LastResponse) != 1 {
		t.Errorf("restored %+v", r)
	}
	// The restored ciphers open what the original sealed.
	msg := []byte("header-and-sk-payload-header")
	b, err := ike.Out.Seal(append([]byte(nil), msg...), []byte("inner"))
	if err != nil {
		t.Fatal(err)
	}
	peer := *ike
	peer.Initiator = false
	if err := peer.RestoreCiphers(); err != nil {
		t.Fatal(err)
	}
	if p, err := peer.In.Open(msg, b[len(msg):]); err != nil || string(p) != "inner" {
		t.Errorf("restored keys do not match: %v", err)
	}
	// The newest write is the state.
	ike.MsgIDOut = 9
	if err := s.save(ike); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.load(); len(got) != 1 || got[0].MsgIDOut != 9 {
		t.Errorf("after a second write: %d restored, want the newer", len(got))
	}
	// A state that could not be written sets its older record aside: not
	// restored, but reported lost once.
	if err := s.discard(ike); err != nil {
		t.Fatal(err)
	}
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 1 {
		t.Errorf("after a discard: %d restored, lost %v; want none and one", len(got), lost)
	}
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 0 {
		t.Errorf("a stale state is reported twice: %d, %v", len(got), lost)
	}
	if err := s.discard(ike); err != nil {
		t.Errorf("discarding what is gone: %v", err)
	}
	// A write that works again clears the stale record.
	s.save(ike)
	s.discard(ike)
	s.save(ike)
	if got, lost, _ := s.load(); len(got) != 1 || len(lost) != 0 {
		t.Errorf("after a write that worked again: %d restored, lost %v", len(got), lost)
	}
	// So does a removal.
	s.discard(ike)
	s.remove(ike)
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 0 {
		t.Errorf("after a discard and a removal: %d restored, lost %v", len(got), lost)
	}
	s.save(ike)
	s.remove(ike)
	if got, _, _ := s.load(); len(got) != 0 {
		t.Errorf("removed state still loads")
	}
	os.Chmod(dir, 0o755)
	if _, err := openStore(dir, nil); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("a loose state folder was not tightened: %04o", fi.Mode().Perm())
	}
}

// TestStateStoreTornAppend cuts a segment at every byte of its last record,
// an IKE SA's newer state, as a crash mid-append would: every other record
// reads back, the IKE SA comes back with its previous state, the torn
// record is reported and cut off.
func TestStateStoreTornAppend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	ids := sameShard(s, 0x100, 4)
	for _, id := range ids {
		if err := s.save(testIKESA(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	seg := filepath.Join(dir, segName(s.shardOf(ids[0]).n))
	before, _ := os.ReadFile(seg)
	upd := testIKESA(t, ids[1])
	upd.MsgIDOut = 77
	if err := s.save(upd); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(seg)
	// The update marked the previous record dead, which the torn append
	// would not have done yet.
	s.close()
	d := filepath.Join(t.TempDir(), "state")
	for cut := len(before); cut < len(after); cut++ {
		os.RemoveAll(d)
		os.MkdirAll(d, 0o700)
		torn := append(append([]byte(nil), before...), after[len(before):cut]...)
		os.WriteFile(filepath.Join(d, filepath.Base(seg)), torn, 0o600)
		ts := newTestStore(t, d)
		got, lost, err := ts.load()
		if err != nil {
			t.Fatal(err)
		}
		m := bySPI(got)
		if len(m) != len(ids) {
			t.Fatalf("cut at %d: %d IKE SAs restored, want %d", cut, len(m), len(ids))
		}
		if m[ids[1]].MsgIDOut != 5 {
			t.Errorf("cut at %d: the IKE SA of the torn record came back with message ID %d, want its previous state's 5", cut, m[ids[1]].MsgIDOut)
		}
		if want := min(1, cut-len(before)); len(lost) != want {
			t.Fatalf("cut at %d: lost %v, want %d", cut, lost, want)
		}
		if len(lost) == 1 && !strings.Contains(lost[0].Error(), "torn by a crash") {
			t.Errorf("cut at %d: the torn record is reported as %v", cut, lost[0])
		}
		// Cut off: not reported again, and the next append is read.
		if err := ts.save(upd); err != nil {
			t.Fatal(err)
		}
		got, lost, _ = ts.load()
		if m := bySPI(got); len(m) != len(ids) || m[ids[1]].MsgIDOut != 77 || len(lost) != 0 {
			t.Fatalf("cut at %d, then a write: %d restored, lost %v", cut, len(m), lost)
		}
	}
	// The whole record read back is the newer state.
	s2 := newTestStore(t, dir)
	got, lost, _ := s2.load()
	if m := bySPI(got); len(m) != len(ids) || m[ids[1]].MsgIDOut != 77 || len(lost) != 0 {
		t.Errorf("untorn: %d restored, lost %v", len(m), lost)
	}
}

// TestStateStoreCorruptRecord corrupts a record in the middle of a segment:
// only its IKE SA is lost, the bytes are kept as evidence, the records after
// it read back, and it is not reported twice.
func TestStateStoreCorruptRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	ids := sameShard(s, 0x200, 5)
	for _, id := range ids {
		if err := s.save(tunnelIKESA(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	sh := s.shardOf(ids[2])
	l := sh.index[ids[2]]
	seg := filepath.Join(dir, segName(sh.n))
	s.close()
	b, _ := os.ReadFile(seg)
	orig := append([]byte(nil), b[l.off():l.off()+int64(l.size())]...)
	b[l.off()+100] ^= 0x55
	os.WriteFile(seg, b, 0o600)
	s = newTestStore(t, dir)
	got, lost, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	m := bySPI(got)
	if len(m) != 4 || m[ids[2]] != nil {
		t.Errorf("restored %d IKE SAs (the corrupted one: %v), want the 4 others", len(m), m[ids[2]] != nil)
	}
	if len(lost) != 1 || !strings.Contains(lost[0].Error(), fmt.Sprintf("%016x", ids[2])) || !strings.Contains(lost[0].Error(), "kept as") {
		t.Fatalf("lost %v, want the corrupted record named and kept", lost)
	}
	ev, _ := filepath.Glob(filepath.Join(dir, "*"+corruptSuffix))
	if len(ev) != 1 {
		t.Fatalf("evidence %v, want one file", ev)
	}
	if e, _ := os.ReadFile(ev[0]); len(e) != len(orig) || bytes.Equal(e, orig) {
		t.Errorf("the evidence is %d bytes, want the %d of the corrupted record as they are", len(e), len(orig))
	}
	if got, lost, _ := s.load(); len(got) != 4 || len(lost) != 0 {
		t.Errorf("second load: %d restored, lost %v", len(got), lost)
	}
	// A segment that is not one at all is set aside whole.
	s.close()
	os.WriteFile(seg, []byte("garbage"), 0o600)
	s = newTestStore(t, dir)
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 1 || !strings.Contains(lost[0].Error(), "kept as") {
		t.Errorf("a foreign segment: %d restored, lost %v", len(got), lost)
	}
	// A record whose payload does not decode is kept as NNNN.json.corrupt.
	bad := []byte(`{"spi_i":"x"}`)
	if err := s.put(0x300, bad); err != nil {
		t.Fatal(err)
	}
	if got, lost, _ := s.load(); len(got) != 0 || len(lost) != 1 {
		t.Errorf("an undecodable record: %d restored, lost %v", len(got), lost)
	}
	if e, _ := os.ReadFile(s.legacyPath(0x300) + corruptSuffix); !bytes.Equal(e, bad) {
		t.Errorf("the undecodable record was not kept: %q", e)
	}
}

// TestStateStoreCompaction writes, rewrites and removes IKE SAs of one
// segment from several goroutines, as the workers do, until it was
// compacted several times: the segment stays within its bound of garbage,
// and a load restores exactly the last state of each IKE SA.
func TestStateStoreCompaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	const writers, perWriter, rounds = 4, 20, 40
	ids := sameShard(s, 0x400, writers*perWriter)
	sh := s.shardOf(ids[0])
	proto := tunnelIKESA(t, 1)
	want := make([]map[uint64]uint32, writers)
	var wg sync.WaitGroup
	compactions := 0
	var mu sync.Mutex
	for w := range writers {
		want[w] = map[uint64]uint32{}
		wg.Go(func() {
			mine := ids[w*perWriter : (w+1)*perWriter]
			for r := range rounds {
				for i, id := range mine {
					ike := *proto
					ike.SPIi, ike.SPIr = id, id+1
					ike.MsgIDOut = uint32(r)
					if (r+i)%7 == 3 {
						s.remove(&ike)
						delete(want[w], id)
						continue
					}
					if err := s.save(&ike); err != nil {
						t.Error(err)
						return
					}
					want[w][id] = uint32(r)
					mu.Lock()
					sh.mu.Lock()
					if sh.garbage == 0 {
						compactions++
					}
					if sh.end > sh.live+max(sh.live/compactShare, compactMin)+int64(len(segMagic))+4096 {
						t.Errorf("segment of %d bytes with %d live: garbage past its bound", sh.end, sh.live)
					}
					sh.mu.Unlock()
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if compactions < 2 {
		t.Errorf("%d compactions: the test did not compact", compactions)
	}
	got, lost, err := s.load()
	if err != nil || len(lost) != 0 {
		t.Fatal(err, lost)
	}
	m := bySPI(got)
	n := 0
	for w := range writers {
		for id, r := range want[w] {
			n++
			if ike := m[id]; ike == nil || ike.MsgIDOut != r {
				t.Errorf("IKE SA %x: restored %v, want message ID %d", id, ike != nil, r)
			}
		}
	}
	if len(m) != n {
		t.Errorf("%d restored, want %d", len(m), n)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(sh.n)+".compact")); err == nil {
		t.Errorf("a compaction left its file")
	}
}

// TestStateStoreMigration reads the files of the per-IKE-SA store of
// earlier versions, moves them to the segments, and handles their stale,
// temporary and corrupt ones as that store did.
func TestStateStoreMigration(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	var spis []uint64
	for i := range 10 {
		ike := tunnelIKESA(t, 0x5000+uint64(i)*0x1111)
		b, _ := json.Marshal(ike)
		os.WriteFile(s.legacyPath(ike.OurSPI()), b, 0o600)
		spis = append(spis, ike.OurSPI())
	}
	os.WriteFile(filepath.Join(dir, "x.json.tmp"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(dir, "0000000000000abc.json.stale"), []byte("{}"), 0o600)
	got, lost, err := s.load()
	if err != nil || len(got) != 10 || len(lost) != 2 {
		t.Fatalf("load: %d IKE SAs, errors %v, %v", len(got), lost, err)
	}
	if !strings.Contains(fmt.Sprint(lost), "kept as bad.json.corrupt") {
		t.Errorf("the corrupt file's error does not say where it is: %v", lost)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bad.json.corrupt")); err != nil || string(b) != "{" {
		t.Errorf("the unreadable state file was not kept aside: %q %v", b, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.json*"))
	if len(left) != 1 {
		t.Errorf("files left after the migration: %v, want the corrupt one", left)
	}
	got, lost, _ = s.load()
	m := bySPI(got)
	for _, spi := range spis {
		if m[spi] == nil || m[spi].Out == nil {
			t.Errorf("IKE SA %x not restored from the segments", spi)
		}
	}
	if len(got) != 10 || len(lost) != 0 {
		t.Errorf("second load: %d restored, lost %v", len(got), lost)
	}
	for _, spi := range spis {
		sh := s.shardOf(spi)
		l := sh.index[spi]
		var first [1]byte
		if _, err := sh.f.ReadAt(first[:], l.off()+recHeader); err != nil || first[0] != sa.StateVersion {
			t.Errorf("IKE SA %x moved to the segments as %q, want a binary state (%v)", spi, first, err)
		}
	}
}

// BenchmarkStateStorePersist is the cost of a worker's persist: an IKE SA of
// a tunnel (one Child SA, a cached response) rewritten among 10,000 others.
func BenchmarkStateStorePersist(b *testing.B) {
	s := newTestStore(b, filepath.Join(b.TempDir(), "state"))
	ike := tunnelIKESA(b, 1)
	for i := range 10000 {
		ike.SPIi = uint64(i) + 1
		s.save(ike)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ike.SPIi = uint64(i%10000) + 1
		ike.MsgIDOut++
		if err := s.save(ike); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkStateStoreLoad is the start-up cost of a tunnel: reading back
// 10,000 IKE SAs of tunnels (decoding, rebuilding ciphers, indexing); the
// figure is per load of them all.
func BenchmarkStateStoreLoad(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "state")
	s := newTestStore(b, dir)
	ike := tunnelIKESA(b, 1)
	const n = 10000
	for i := range n {
		ike.SPIi = uint64(i)*0x9e3779b97f4a7c15 | 1
		if err := s.save(ike); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		got, lost, err := s.load()
		if err != nil || len(lost) != 0 || len(got) != n {
			b.Fatalf("load: %d restored, lost %v, %v", len(got), lost, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/IKE-SA")
}

// TestStateStoreScale measures the store at STATE_SCALE IKE SAs (100000,
// 1000000) on a tmpfs of its own (as root; else the temporary folder):
// storage per IKE SA (the segments' bytes, du, and the tmpfs's df) and the
// time to write and to read them all back. It is a measurement, not run
// by default.
func TestStateStoreScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("STATE_SCALE"))
	if n == 0 {
		t.Skip("STATE_SCALE unset")
	}
	mnt := t.TempDir()
	tmpfs := exec.Command("mount", "-t", "tmpfs", "-o", "size=8g,mode=0700", "tmpfs", mnt).Run() == nil
	if tmpfs {
		t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	}
	df := func() string {
		out, _ := exec.Command("df", "-B1", "--output=used", mnt).Output()
		f := strings.Fields(string(out))
		return f[len(f)-1]
	}
	used0 := df()
	dir := filepath.Join(mnt, "state")
	s := newTestStore(t, dir)
	ike := tunnelIKESA(t, 1)
	js, _ := json.Marshal(ike)
	bin, _ := ike.MarshalBinary()
	start := time.Now()
	for i := range n {
		ike.SPIi = uint64(i)*0x9e3779b97f4a7c15 | 1
		if err := s.save(ike); err != nil {
			t.Fatal(err)
		}
	}
	wrote := time.Since(start)
	s.close()
	du, _ := exec.Command("du", "-sb", dir).Output()
	duk, _ := exec.Command("du", "-sk", dir).Output()
	used1 := df()
	u0, _ := strconv.ParseInt(used0, 10, 64)
	u1, _ := strconv.ParseInt(used1, 10, 64)
	duB, _ := strconv.ParseInt(strings.Fields(string(du))[0], 10, 64)
	t.Logf("%d IKE SAs, %d bytes of state each (%d as JSON), %d a record: wrote in %v (%v each); du -sb %d (%.0f B/IKE SA), du -sk %s KiB; tmpfs %v: df used %d bytes (%.0f B/IKE SA)",
		n, len(bin), len(js), len(bin)+recHeader, wrote, wrote/time.Duration(n), duB, float64(duB)/float64(n), strings.Fields(string(duk))[0], tmpfs, u1-u0, float64(u1-u0)/float64(n))
	s = newTestStore(t, dir)
	start = time.Now()
	got, lost, err := s.load()
	if err != nil || len(lost) != 0 || len(got) != n {
		t.Fatalf("load: %d restored, lost %d, %v", len(got), len(lost), err)
	}
	t.Logf("read back %d IKE SAs in %v", n, time.Since(start))
}

// jsonRecord is id's record of the previous version: the IKE SA as JSON.
func jsonRecord(t *testing.T, ike *sa.IKESA) []byte {
	js, err := json.Marshal(ike)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := encodeRecordFunc(nil, ike.OurSPI(), func(b []byte) ([]byte, error) { return append(b, js...), nil })
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestStateStoreBinary: records are binary states, a tunnel's within its
// budget; a segment of the previous version (SPUGST01, JSON records) is
// read, takes the new header before a binary record is appended, and its
// JSON records are replaced by binary ones as their IKE SAs are written.
func TestStateStoreBinary(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s := newTestStore(t, dir)
	ike := tunnelIKESA(t, 0x7000)
	if err := s.save(ike); err != nil {
		t.Fatal(err)
	}
	sh := s.shardOf(ike.OurSPI())
	l := sh.index[ike.OurSPI()]
	if l.size() > 700 {
		t.Errorf("a tunnel's record is %d bytes, want at most 700", l.size())
	}
	s.close()
	seg, _ := os.ReadFile(filepath.Join(dir, segName(sh.n)))
	if !bytes.HasPrefix(seg, []byte(segMagic)) || seg[l.off()+recHeader] != sa.StateVersion {
		t.Fatalf("segment %q..., record payload starts with %#x: not a binary record", seg[:8], seg[l.off()+recHeader])
	}
	got, lost, err := s.load()
	if err != nil || len(got) != 1 || len(lost) != 0 || got[0].Out == nil || got[0].Children[0].Keys == nil {
		t.Fatalf("load: %d restored, lost %v, %v", len(got), lost, err)
	}

	// A segment as the previous version wrote it.
	dir = filepath.Join(t.TempDir(), "state")
	s = newTestStore(t, dir)
	ids := sameShard(s, 0x8000, 3)
	old := []byte(segMagicJSON)
	for _, id := range ids {
		old = append(old, jsonRecord(t, tunnelIKESA(t, id))...)
	}
	p := filepath.Join(dir, segName(s.shardOf(ids[0]).n))
	if err := os.WriteFile(p, old, 0o600); err != nil {
		t.Fatal(err)
	}
	got, lost, err = s.load()
	if m := bySPI(got); err != nil || len(m) != 3 || len(lost) != 0 || m[ids[1]].Out == nil || len(m[ids[1]].Children) != 1 {
		t.Fatalf("a JSON segment: %d restored, lost %v, %v", len(got), lost, err)
	}
	if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte(segMagic)) {
		t.Errorf("the JSON segment kept its header %q", b[:8])
	}
	upd := tunnelIKESA(t, ids[1])
	upd.MsgIDOut = 42
	if err := s.save(upd); err != nil {
		t.Fatal(err)
	}
	got, lost, _ = s.load()
	if m := bySPI(got); len(m) != 3 || len(lost) != 0 || m[ids[1]].MsgIDOut != 42 || m[ids[0]].Out == nil {
		t.Fatalf("JSON and binary records: %d restored, lost %v", len(m), lost)
	}
	recs, _, _ := parseSegment(must(os.ReadFile(p)))
	formats := map[string]int{}
	for _, r := range recs {
		if r.mark == markLive {
			formats[stateFormat(r.payload)]++
		}
	}
	if formats["json"] != 2 || formats["state"] != 1 {
		t.Errorf("live records by format %v, want the 2 untouched JSON and the rewritten one binary", formats)
	}

	// A binary record that does not decode is kept as NNNN.state.corrupt.
	bad, _ := tunnelIKESA(t, 0x9000).MarshalBinary()
	bad = bad[:len(bad)-1]
	if err := s.put(0x9000, bad); err != nil {
		t.Fatal(err)
	}
	got, lost, _ = s.load()
	if len(got) != 3 || len(lost) != 1 || !strings.Contains(lost[0].Error(), "ike sa state: ") || !strings.Contains(lost[0].Error(), "kept as 0000000000009000.state.corrupt") {
		t.Fatalf("an undecodable binary record: %d restored, lost %v", len(got), lost)
	}
	if e, _ := os.ReadFile(filepath.Join(dir, "0000000000009000.state.corrupt")); !bytes.Equal(e, bad) {
		t.Errorf("the undecodable record was not kept as it was")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
