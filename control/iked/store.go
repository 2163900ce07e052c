package iked

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spugate/spugate/control/ike/sa"
)

// stateStore keeps one file per IKE SA, named by our SPI, holding its keys:
// the folder is 0700 and the files 0600, written to a temporary name and
// renamed, so that a crash leaves either the old or the new state.
type stateStore struct {
	dir string
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
	return &stateStore{dir: dir}, nil
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
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

func (s *stateStore) remove(ike *sa.IKESA) {
	os.Remove(s.path(ike))
}

// load reads every persisted IKE SA; unreadable files are reported and
// removed, so that one bad file does not stop the restart.
func (s *stateStore) load() ([]*sa.IKESA, []error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, []error{fmt.Errorf("state folder %s: %w", s.dir, err)}
	}
	var out []*sa.IKESA
	var errs []error
	for _, e := range ents {
		p := filepath.Join(s.dir, e.Name())
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(p)
			continue
		}
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("state %s: %w", e.Name(), err))
			continue
		}
		var ike sa.IKESA
		if err := json.Unmarshal(b, &ike); err != nil {
			errs = append(errs, fmt.Errorf("state %s: %w", e.Name(), err))
			os.Remove(p)
			continue
		}
		if err := ike.RestoreCiphers(); err != nil {
			errs = append(errs, fmt.Errorf("state %s: %w", e.Name(), err))
			os.Remove(p)
			continue
		}
		out = append(out, &ike)
	}
	return out, errs
}
