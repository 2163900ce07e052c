package iked

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/control/ike/sa"
)

// stateStore keeps the IKE SAs' states in shardCount segment files (a file
// per IKE SA cost a 4 KiB tmpfs page, an inode and a dentry each: 5 GiB at
// a million). Each segment is a log of records, [magic | payload length |
// crc32c | our SPI | payload], the payload the IKE SA's binary state
// (sa.IKESA.AppendBinary; JSON in segments of the previous version, still
// read, and told apart by its first byte, '{'); an IKE SA
// always goes to the same segment (by a hash of our SPI), and its newest
// record is its state. A write appends a record and only then marks the
// previous one dead in place (four bytes of an allocated page: a delete
// and a discard need no space on a full disk). A crash mid-append leaves a
// torn tail and the previous record live; a crash between the append and
// the mark leaves two live ones, of which the later wins. A segment whose
// garbage (dead records) exceeds a compactShare of its live bytes, and
// compactMin, is rewritten with its live records to a new file renamed
// into place, so the cost of a write is its own record and compactShare
// times as many bytes copied, amortized, whatever the number of IKE SAs. The folder is 0700 and the files 0600; on a folder on disk (not
// tmpfs) an append is synced before the write counts, and a new file and
// a rename with their folder, so that a power loss leaves either state.
type stateStore struct {
	dir     string
	durable bool
	log     *slog.Logger
	shards  [shardCount]shard
}

// shard is one segment file and the index of its records. Its lock orders
// the appends, marks and compactions of the IKE SAs that hash to it: the
// workers write in parallel to different shards.
type shard struct {
	mu  sync.Mutex
	st  *stateStore
	n   int
	f   *os.File // opened on first use
	end int64    // where the next record goes
	// index is the live record of each IKE SA by our SPI, stale the
	// records set aside by discard (kept, marked, until the IKE SA is
	// written again or removed, so that a restart reports them lost).
	index map[uint64]recLoc
	stale map[uint64]recLoc
	// live and garbage are the bytes of live (and stale) and of dead or
	// unreadable records; a failed compaction is not tried again before
	// garbage reaches retryAt.
	live, garbage, retryAt int64
	buf                    []byte
}

// recLoc packs a record's offset (40 bits) and its length with the header
// (24 bits): an index entry at a million IKE SAs is a map slot of 16 bytes.
type recLoc uint64

func mkLoc(off int64, n int) recLoc { return recLoc(uint64(off)<<24 | uint64(n)) }
func (l recLoc) off() int64         { return int64(l >> 24) }
func (l recLoc) size() int          { return int(l & (1<<24 - 1)) }

const (
	// shardCount segment files: at a million IKE SAs each is ~30 MiB, whose
	// compaction stalls the writers of that shard for a few milliseconds.
	shardCount = 64
	// segMagic starts every segment (a format version). A segment of the
	// previous version, whose records are all JSON, gets this one in place
	// when it is restored, before a binary record is appended to it: an
	// older iked then sets the segment aside whole, rather than each of
	// its records it cannot decode.
	segMagic = "SPUGST02"
	// segMagicJSON started the segments whose records were all JSON.
	segMagicJSON = "SPUGST01"
	// recMagic starts every record: after a corrupted stretch the reader
	// looks for the next one to resynchronize.
	recMagic uint32 = 0x53505231 // "SPR1"
	// recHeader is magic, payload length, crc and our SPI.
	recHeader = 20
	// maxPayload keeps a record's length in recLoc's 24 bits.
	maxPayload = 1<<24 - 1 - recHeader
	// A record's stored crc is its crc32c xor its mark: live records carry
	// none, stale and dead ones these.
	markLive  uint32 = 0
	markStale uint32 = 0x7374616c // "stal"
	markDead  uint32 = 0x64656164 // "dead"
	// compactMin is the garbage below which a segment is not compacted.
	compactMin = 256 << 10
	// compactShare: a segment is compacted once its garbage exceeds
	// 1/compactShare of its live bytes. A setup writes an IKE SA three or
	// four times (its record is garbage by the end three times over), so
	// that at 1 (garbage up to the live bytes) a million idle tunnels held
	// 1.5 times their state on average, up to twice; at 4, 1.125 times and
	// up to 1.25, for four times the bytes copied by compactions, a few
	// microseconds per setup.
	compactShare = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func openStore(dir string, log *slog.Logger) (*stateStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("iked: state folder %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("iked: state folder %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("iked: state folder %s is not a folder", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("iked: state folder %s has mode %04o and cannot be made 0700: %w", dir, fi.Mode().Perm(), err)
		}
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("iked: state folder %s is owned by uid %d, not by us", dir, st.Uid)
	}
	var fs unix.Statfs_t
	durable := true
	if err := unix.Statfs(dir, &fs); err == nil && (fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC) {
		durable = false
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &stateStore{dir: dir, durable: durable, log: log}
	for i := range s.shards {
		s.shards[i] = shard{st: s, n: i, index: map[uint64]recLoc{}, stale: map[uint64]recLoc{}}
	}
	return s, nil
}

// close closes the segment files; the store is not used after.
func (s *stateStore) close() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		if sh.f != nil {
			sh.f.Close()
			sh.f = nil
		}
		sh.mu.Unlock()
	}
}

func (s *stateStore) shardOf(id uint64) *shard {
	// Fibonacci hashing: our SPIs may carry structure in their low bits.
	return &s.shards[(id*0x9e3779b97f4a7c15)>>58]
}

func segName(n int) string { return fmt.Sprintf("shard-%02d.seg", n) }

// legacyPath is the file of an IKE SA in the store of earlier versions,
// still read at restore (migration), and, with corruptSuffix, the evidence
// of a JSON record that could not be decoded.
func (s *stateStore) legacyPath(id uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x.json", id))
}

// file opens the shard's segment, creating it with its header.
func (sh *shard) file() (*os.File, error) {
	if sh.f != nil {
		return sh.f, nil
	}
	p := filepath.Join(sh.st.dir, segName(sh.n))
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	end := fi.Size()
	if end < int64(len(segMagic)) {
		if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
			f.Truncate(0)
			f.Close()
			return nil, err
		}
		end = int64(len(segMagic))
		if sh.st.durable {
			if err := f.Sync(); err != nil {
				f.Close()
				return nil, err
			}
			if err := sh.st.syncDir(); err != nil {
				f.Close()
				return nil, err
			}
		}
	}
	sh.f, sh.end = f, end
	return f, nil
}

// encodeRecordFunc appends id's record of the payload enc appends to b.
func encodeRecordFunc(b []byte, id uint64, enc func([]byte) ([]byte, error)) ([]byte, error) {
	h := len(b)
	b = binary.LittleEndian.AppendUint32(b, recMagic)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint64(b, id)
	b, err := enc(b)
	if err != nil {
		return b[:h], fmt.Errorf("encode: %w", err)
	}
	n := len(b) - h - recHeader
	if n > maxPayload {
		return b[:h], fmt.Errorf("encode: %d bytes, more than a record holds (%d)", n, maxPayload)
	}
	binary.LittleEndian.PutUint32(b[h+4:], uint32(n))
	binary.LittleEndian.PutUint32(b[h+8:], recCRC(b[h:]))
	return b, nil
}

// recCRC is the crc32c of a record's length, id and payload.
func recCRC(rec []byte) uint32 {
	c := crc32.Update(0, castagnoli, rec[4:8])
	return crc32.Update(c, castagnoli, rec[12:])
}

// save writes the IKE SA's binary state, encoded in place in its shard's
// record buffer.
func (s *stateStore) save(ike *sa.IKESA) error {
	return s.write(ike.OurSPI(), func(b []byte) ([]byte, error) { return ike.AppendBinary(b) })
}

// put appends id's record of payload and makes it the live one.
func (s *stateStore) put(id uint64, payload []byte) error {
	return s.write(id, func(b []byte) ([]byte, error) { return append(b, payload...), nil })
}

// write appends id's record of the payload that enc appends and makes it
// the live one.
func (s *stateStore) write(id uint64, enc func([]byte) ([]byte, error)) error {
	sh := s.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	f, err := sh.file()
	if err != nil {
		return err
	}
	sh.buf, err = encodeRecordFunc(sh.buf[:0], id, enc)
	if err != nil {
		return err
	}
	at := sh.end
	_, err = f.WriteAt(sh.buf, at)
	if err == nil && s.durable {
		err = unix.Fdatasync(int(f.Fd()))
	}
	if err != nil {
		// A torn record must not be taken for the state: cutting it off
		// needs no space.
		if terr := f.Truncate(at); terr != nil {
			err = fmt.Errorf("%w (and the partial record could not be cut off: %v)", err, terr)
		}
		return err
	}
	sh.end += int64(len(sh.buf))
	sh.live += int64(len(sh.buf))
	sh.kill(id)
	sh.index[id] = mkLoc(at, len(sh.buf))
	sh.maybeCompact()
	return nil
}

// kill marks id's live and stale records dead.
func (sh *shard) kill(id uint64) {
	for _, m := range []struct {
		recs map[uint64]recLoc
		from uint32
	}{{sh.index, markLive}, {sh.stale, markStale}} {
		l, ok := m.recs[id]
		if !ok {
			continue
		}
		delete(m.recs, id)
		sh.live -= int64(l.size())
		sh.garbage += int64(l.size())
		if err := sh.mark(l, m.from, markDead); err != nil {
			// Left live, it is older than the newer record (which wins at
			// restore) or comes back as a deleted IKE SA's state, which the
			// restore ends as any IKE SA its peer no longer knows.
			sh.st.log.Error("iked: a replaced or deleted IKE SA state could not be marked dead", "spi", fmt.Sprintf("%016x", id), "err", err.Error())
		}
	}
}

// mark changes a record's mark in place.
func (sh *shard) mark(l recLoc, from, to uint32) error {
	var c [4]byte
	if _, err := sh.f.ReadAt(c[:], l.off()+8); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(c[:], binary.LittleEndian.Uint32(c[:])^from^to)
	_, err := sh.f.WriteAt(c[:], l.off()+8)
	return err
}

func (sh *shard) maybeCompact() {
	if sh.garbage < compactMin || sh.garbage*compactShare <= sh.live || sh.garbage < sh.retryAt {
		return
	}
	if err := sh.compact(); err != nil {
		// Garbage costs space, not state: try again once as much again
		// has piled up.
		sh.retryAt = 2 * sh.garbage
		sh.st.log.Error("iked: state segment not compacted; its garbage stays until it is", "segment", segName(sh.n),
			"garbage_bytes", sh.garbage, "live_bytes", sh.live, "err", err.Error())
	}
}

// compact rewrites the segment with its live and stale records, in their
// order, to a new file renamed into place. A crash before the rename
// leaves the old segment and a *.compact file the restore removes.
func (sh *shard) compact() error {
	s := sh.st
	p := filepath.Join(s.dir, segName(sh.n))
	tmp := p + ".compact"
	nf, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	type ent struct {
		id    uint64
		l     recLoc
		stale bool
	}
	ents := make([]ent, 0, len(sh.index)+len(sh.stale))
	for id, l := range sh.index {
		ents = append(ents, ent{id, l, false})
	}
	for id, l := range sh.stale {
		ents = append(ents, ent{id, l, true})
	}
	slices.SortFunc(ents, func(a, b ent) int { return int(a.l.off() - b.l.off()) })
	fail := func(err error) error {
		nf.Close()
		os.Remove(tmp)
		return err
	}
	w := bufio.NewWriterSize(nf, 256<<10)
	w.WriteString(segMagic)
	off := int64(len(segMagic))
	moved := make([]recLoc, len(ents))
	var rec []byte
	for i, e := range ents {
		rec = slices.Grow(rec[:0], e.l.size())[:e.l.size()]
		if _, err := sh.f.ReadAt(rec, e.l.off()); err != nil {
			return fail(err)
		}
		if _, err := w.Write(rec); err != nil {
			return fail(err)
		}
		moved[i] = mkLoc(off, len(rec))
		off += int64(len(rec))
	}
	if err := w.Flush(); err != nil {
		return fail(err)
	}
	if s.durable {
		if err := nf.Sync(); err != nil {
			return fail(err)
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		return fail(err)
	}
	if s.durable {
		if err := s.syncDir(); err != nil {
			// The rename is done: the new file is the segment, synced or not.
			s.log.Warn("iked: state folder not synced after a compaction", "err", err.Error())
		}
	}
	sh.f.Close()
	sh.f, sh.end, sh.garbage, sh.retryAt = nf, off, 0, 0
	for i, e := range ents {
		if e.stale {
			sh.stale[e.id] = moved[i]
		} else {
			sh.index[e.id] = moved[i]
		}
	}
	return nil
}

// syncDir makes the folder's entries (a new file, a rename) durable.
func (s *stateStore) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// discard sets an IKE SA's state aside after its newer state could not be
// written: restored after a crash, the older state (old message IDs, keys
// a rekey replaced) would break the tunnel worse than none. Marking its
// record stale needs no space on a full disk. The restore counts a stale
// record as a lost state, which keeps the SAs in spud for the peer to
// replace (see Daemon.sweep); a later write of the IKE SA or its removal
// makes it dead.
func (s *stateStore) discard(ike *sa.IKESA) error {
	id := ike.OurSPI()
	sh := s.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	l, ok := sh.index[id]
	if !ok {
		return nil
	}
	if err := sh.mark(l, markLive, markStale); err != nil {
		return err
	}
	if s.durable {
		if err := unix.Fdatasync(int(sh.f.Fd())); err != nil {
			return err
		}
	}
	delete(sh.index, id)
	sh.stale[id] = l
	return nil
}

// remove forgets an IKE SA: its records are marked dead, their space
// reclaimed by a later compaction.
func (s *stateStore) remove(ike *sa.IKESA) {
	id := ike.OurSPI()
	sh := s.shardOf(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.kill(id)
	sh.maybeCompact()
}

// segRec is a readable record of a segment.
type segRec struct {
	id      uint64
	mark    uint32
	loc     recLoc
	payload []byte
}

// segBad is a stretch of a segment that holds no readable record: a record
// torn by a crash (at the end) or corrupted.
type segBad struct {
	off, end int64
	// id is the IKE SA the stretch's first record names, if its header
	// is whole (it may be corrupted too).
	id    uint64
	hasID bool
}

// parseSegment reads a segment's records in order, and the stretches that
// hold none. After a corrupted stretch it resynchronizes on the next
// readable record.
func parseSegment(b []byte) (recs []segRec, bad []segBad, err error) {
	if !bytes.HasPrefix(b, []byte(segMagic)) && !bytes.HasPrefix(b, []byte(segMagicJSON)) {
		return nil, nil, fmt.Errorf("not a state segment (no %s or %s header)", segMagic, segMagicJSON)
	}
	var magic [4]byte
	binary.LittleEndian.PutUint32(magic[:], recMagic)
	// read returns the record at off, if it is whole and its crc matches
	// one of the marks.
	read := func(off int) (segRec, bool) {
		if len(b)-off < recHeader || binary.LittleEndian.Uint32(b[off:]) != recMagic {
			return segRec{}, false
		}
		n := int(binary.LittleEndian.Uint32(b[off+4:]))
		if n > maxPayload || len(b)-off-recHeader < n {
			return segRec{}, false
		}
		rec := b[off : off+recHeader+n]
		mark := binary.LittleEndian.Uint32(rec[8:]) ^ recCRC(rec)
		if mark != markLive && mark != markStale && mark != markDead {
			return segRec{}, false
		}
		return segRec{id: binary.LittleEndian.Uint64(rec[12:]), mark: mark, loc: mkLoc(int64(off), len(rec)), payload: rec[recHeader:]}, true
	}
	for off := len(segMagic); off < len(b); {
		if r, ok := read(off); ok {
			recs = append(recs, r)
			off += r.loc.size()
			continue
		}
		sb := segBad{off: int64(off), end: int64(len(b))}
		if len(b)-off >= recHeader && binary.LittleEndian.Uint32(b[off:]) == recMagic {
			sb.id, sb.hasID = binary.LittleEndian.Uint64(b[off+12:]), true
		}
		next := len(b)
		for at := off + 1; at < len(b); {
			i := bytes.Index(b[at:], magic[:])
			if i < 0 {
				break
			}
			if _, ok := read(at + i); ok {
				next = at + i
				break
			}
			at += i + 1
		}
		sb.end = int64(next)
		bad = append(bad, sb)
		off = next
	}
	return recs, bad, nil
}

// load reads every persisted IKE SA, the segments in parallel. What it
// cannot restore is reported in lost, one error each: an unreadable
// stretch of a segment (a record torn by a crash, or corrupted) is kept
// aside as SEGMENT.OFFSET.corrupt and cut out of the segment; a record
// that cannot be decoded as NNNN.state.corrupt (NNNN.json.corrupt for
// the JSON of the previous version); a stale record (discard) is
// marked dead once reported. The previous record of an IKE SA whose newer
// record was torn is restored: the write of that newer one never returned.
// Files of earlier versions (one per IKE SA, NNNN.json) are read too and
// written to the segments. One bad record does not stop the restart.
func (s *stateStore) load() (ikes []*sa.IKESA, lost []error, err error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("state folder %s: %w", s.dir, err)
	}
	s.close()
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".compact") {
			os.Remove(filepath.Join(s.dir, e.Name()))
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan int, shardCount)
	for i := range shardCount {
		next <- i
	}
	close(next)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				got, l := s.shards[i].load()
				mu.Lock()
				ikes = append(ikes, got...)
				lost = append(lost, l...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	got, l := s.migrate(ents)
	return append(ikes, got...), append(lost, l...), nil
}

// load reads the shard's segment, rebuilds its index and cuts out what it
// cannot read.
func (sh *shard) load() (ikes []*sa.IKESA, lost []error) {
	s := sh.st
	name := segName(sh.n)
	p := filepath.Join(s.dir, name)
	*sh = shard{st: s, n: sh.n, index: map[uint64]recLoc{}, stale: map[uint64]recLoc{}}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err == nil {
		var recs []segRec
		var bad []segBad
		if recs, bad, err = parseSegment(b); err == nil {
			return sh.restore(b, recs, bad)
		}
	}
	// The whole file is unreadable: set it aside, start the shard anew.
	if rerr := os.Rename(p, p+corruptSuffix); rerr != nil {
		err = fmt.Errorf("%w (and it could not be kept aside: %v)", err, rerr)
	} else {
		err = fmt.Errorf("%w: kept as %s%s", err, name, corruptSuffix)
	}
	return nil, []error{fmt.Errorf("state segment %s: %w", name, err)}
}

func (sh *shard) restore(b []byte, recs []segRec, bad []segBad) (ikes []*sa.IKESA, lost []error) {
	s := sh.st
	name := segName(sh.n)
	f, err := sh.file()
	if err != nil {
		return nil, []error{fmt.Errorf("state segment %s: %w", name, err)}
	}
	sh.end = int64(len(b))
	if bytes.HasPrefix(b, []byte(segMagicJSON)) {
		// We read either header and any record: the new header is for an
		// older iked, which would take each binary record for a corrupted
		// one; its states are still ours to restore if it cannot be set.
		if _, err := f.WriteAt([]byte(segMagic), 0); err != nil {
			s.log.Error("iked: the header of a state segment of the previous version could not be updated; an older iked would not read its new records",
				"segment", name, "err", err.Error())
		}
	}
	last := map[uint64]int{}
	for i, r := range recs {
		last[r.id] = i
	}
	cut := false
	for _, sb := range bad {
		ev := fmt.Sprintf("%s.%d%s", name, sb.off, corruptSuffix)
		what := "corrupted"
		if sb.end == int64(len(b)) {
			what = "torn by a crash or corrupted"
		}
		err := fmt.Errorf("state segment %s: %d unreadable bytes at offset %d (a record %s)", name, sb.end-sb.off, sb.off, what)
		if sb.hasID {
			err = fmt.Errorf("%w, of IKE SA %016x if its header is right", err, sb.id)
		}
		if werr := os.WriteFile(filepath.Join(s.dir, ev), b[sb.off:sb.end], 0o600); werr != nil {
			err = fmt.Errorf("%w (and it could not be kept aside: %v)", err, werr)
		} else {
			err = fmt.Errorf("%w: kept as %s", err, ev)
		}
		lost = append(lost, err)
		sh.garbage += sb.end - sb.off
		cut = true
	}
	for i, r := range recs {
		if last[r.id] != i || r.mark == markDead {
			// Older than the IKE SA's newest record, or dead: a crash came
			// before the older one was marked dead, or the mark is there.
			sh.garbage += int64(r.loc.size())
			if r.mark != markDead {
				sh.mark(r.loc, r.mark, markDead)
			}
			continue
		}
		if r.mark == markStale {
			lost = append(lost, fmt.Errorf("state of IKE SA %016x: not restored: a later change of the IKE SA could not be written", r.id))
			sh.garbage += int64(r.loc.size())
			if err := sh.mark(r.loc, markStale, markDead); err != nil {
				s.log.Error("iked: a stale IKE SA state could not be marked dead; it will be reported again", "spi", fmt.Sprintf("%016x", r.id), "err", err.Error())
			}
			continue
		}
		ike, err := decodeState(r.payload)
		if err != nil {
			ev := fmt.Sprintf("%016x.%s%s", r.id, stateFormat(r.payload), corruptSuffix)
			if werr := os.WriteFile(filepath.Join(s.dir, ev), r.payload, 0o600); werr != nil {
				err = fmt.Errorf("%w (and it could not be kept aside: %v)", err, werr)
			} else {
				err = fmt.Errorf("%w: kept as %s", err, ev)
			}
			lost = append(lost, fmt.Errorf("state of IKE SA %016x in %s: %w", r.id, name, err))
			sh.garbage += int64(r.loc.size())
			sh.mark(r.loc, markLive, markDead)
			continue
		}
		sh.index[r.id] = r.loc
		sh.live += int64(r.loc.size())
		ikes = append(ikes, ike)
	}
	switch {
	case cut && len(bad) == 1 && bad[0].end == int64(len(b)):
		// A torn tail, the usual mark of a crash: cut it off.
		if err := f.Truncate(bad[0].off); err != nil {
			lost = append(lost, fmt.Errorf("state segment %s: its torn end could not be cut off: %w", name, err))
			break
		}
		sh.end = bad[0].off
		sh.garbage -= bad[0].end - bad[0].off
	case cut || (sh.garbage >= compactMin && sh.garbage*compactShare > sh.live):
		if err := sh.compact(); err != nil {
			lost = append(lost, fmt.Errorf("state segment %s: not compacted, its unreadable records will be reported again: %w", name, err))
		}
	}
	return ikes, lost
}

// decodeState decodes a record's payload, a binary state or the JSON of
// the previous version, and rebuilds its ciphers.
func decodeState(payload []byte) (*sa.IKESA, error) {
	var ike sa.IKESA
	var err error
	if stateFormat(payload) == "json" {
		err = json.Unmarshal(payload, &ike)
	} else {
		err = ike.UnmarshalBinary(payload)
	}
	if err == nil {
		err = ike.RestoreCiphers()
	}
	if err != nil {
		return nil, err
	}
	return &ike, nil
}

// stateFormat names the format of a record's payload: "json" (it starts
// with '{') or "state" (binary), the extension of its evidence.
func stateFormat(payload []byte) string {
	if len(payload) > 0 && payload[0] == '{' {
		return "json"
	}
	return "state"
}

// migrate reads the state files of earlier versions (one per IKE SA),
// writes them to the segments (as binary states) and removes them. A file that cannot be read
// or decoded is kept aside as NAME.corrupt (the evidence, for the operator,
// not read again); a stale one (discard) is removed once reported.
func (s *stateStore) migrate(ents []os.DirEntry) (ikes []*sa.IKESA, lost []error) {
	bad := func(name string, err error) {
		p := filepath.Join(s.dir, name)
		if rerr := os.Rename(p, p+corruptSuffix); rerr != nil {
			err = fmt.Errorf("%w (and it could not be kept aside: %v)", err, rerr)
		} else {
			err = fmt.Errorf("%w: kept as %s%s", err, name, corruptSuffix)
		}
		lost = append(lost, fmt.Errorf("state %s: %w", name, err))
	}
	for _, e := range ents {
		p := filepath.Join(s.dir, e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".tmp"):
			os.Remove(p)
			continue
		case strings.HasSuffix(e.Name(), staleSuffix):
			lost = append(lost, fmt.Errorf("state %s: not restored: a later change of the IKE SA could not be written", e.Name()))
			os.Remove(p)
			continue
		case !strings.HasSuffix(e.Name(), ".json"):
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			bad(e.Name(), err)
			continue
		}
		var ike sa.IKESA
		if err := json.Unmarshal(b, &ike); err != nil {
			bad(e.Name(), err)
			continue
		}
		if err := ike.RestoreCiphers(); err != nil {
			bad(e.Name(), err)
			continue
		}
		ikes = append(ikes, &ike)
		// The file goes only once its state is in a segment: until then
		// it is read again at the next start.
		if err := s.save(&ike); err != nil {
			s.log.Error("iked: an IKE SA state file of an earlier version could not be moved to the segments; it stays and is read again at the next start",
				"file", e.Name(), "err", err.Error())
			continue
		}
		os.Remove(p)
	}
	return ikes, lost
}

// Suffixes of the state files that are not restored: one that could not be
// read, and (in the store of earlier versions) one whose IKE SA changed
// since it was written (discard).
const (
	corruptSuffix = ".corrupt"
	staleSuffix   = ".stale"
)

// segmentStats reads the segments of a state folder without changing
// them: their live, stale and dead records, and their unreadable bytes.
// For tests and benchmarks.
func segmentStats(dir string) (live, stale, dead int, unreadable int64, err error) {
	for n := range shardCount {
		b, err := os.ReadFile(filepath.Join(dir, segName(n)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, 0, 0, 0, err
		}
		recs, bad, err := parseSegment(b)
		if err != nil {
			return 0, 0, 0, 0, fmt.Errorf("%s: %w", segName(n), err)
		}
		last := map[uint64]uint32{}
		for _, r := range recs {
			last[r.id] = r.mark
		}
		dead += len(recs)
		for _, m := range last {
			switch m {
			case markLive:
				live++
				dead--
			case markStale:
				stale++
				dead--
			}
		}
		for _, sb := range bad {
			unreadable += sb.end - sb.off
		}
	}
	return live, stale, dead, unreadable, nil
}
