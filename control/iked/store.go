package iked

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/spugate/spugate/control/ike/sa"
)

// stateStore keeps one file per IKE SA, named by our SPI, holding its keys:
// the folder is 0700 and the files 0600, written to a temporary name and
// renamed, so that a crash leaves either the old or the new state. On a
// folder on disk (not tmpfs) the file and the folder are synced before
// the write counts, so that a power loss leaves either too.
type stateStore struct {
	dir     string
	durable bool
}

func openStore(dir string) (*stateStore, error) {
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
	return &stateStore{dir: dir, durable: durable}, nil
}

func (s *stateStore) path(ike *sa.IKESA) string {
	return filepath.Join(s.dir, fmt.Sprintf("%016x.json", ike.OurSPI()))
}

func (s *stateStore) save(ike *sa.IKESA) error {
	b, err := json.Marshal(ike)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	p := s.path(ike)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && s.durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return err
	}
	os.Remove(p + staleSuffix)
	if s.durable {
		return s.syncDir()
	}
	return nil
}

// syncDir makes the folder's entries (a rename) durable.
func (s *stateStore) syncDir() error {
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// discard sets an IKE SA's file aside (as NAME.stale) after its newer
// state could not be written: restored after a crash, the older state (old
// message IDs, keys a rekey replaced) would break the tunnel worse than
// none. A rename needs no space on a full disk. The restore counts a stale
// file as a lost state, which keeps the SAs in spud for the peer to
// replace (see Daemon.sweep).
func (s *stateStore) discard(ike *sa.IKESA) error {
	p := s.path(ike)
	if err := os.Rename(p, p+staleSuffix); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func (s *stateStore) remove(ike *sa.IKESA) {
	os.Remove(s.path(ike))
	os.Remove(s.path(ike) + staleSuffix)
}

// load reads every persisted IKE SA. What it cannot restore is reported
// in lost, one error each: a file that cannot be read or decoded is kept
// aside as NAME.corrupt (the evidence, for the operator, not read again);
// a stale one (discard) is removed once reported. One bad file does not
// stop the restart.
func (s *stateStore) load() (ikes []*sa.IKESA, lost []error, err error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("state folder %s: %w", s.dir, err)
	}
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
	}
	return ikes, lost, nil
}

// Suffixes of the state files that are not restored: one that could not be
// read, and one whose IKE SA changed since it was written (discard).
const (
	corruptSuffix = ".corrupt"
	staleSuffix   = ".stale"
)
