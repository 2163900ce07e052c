package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml"
)

// Secret is a pre-shared key and the identities it is for, as a swanctl.conf
// secrets.ike<suffix> section: it applies to an IKE SA whose local and
// remote identities are both among IDs (or, failing such a secret, one
// whose IDs hold the remote identity alone, or the local one).
type Secret struct {
	Name string
	IDs  []Identity
	key  []byte
}

// NewSecret makes a pre-shared key for the identities ids (swanctl.conf's
// notation), as VICI's load-shared hands one over: key is the secret
// itself, already decoded.
func NewSecret(name string, ids []string, key []byte) (*Secret, error) {
	if len(key) == 0 {
		return nil, fmt.Errorf("config: secret %q: empty", name)
	}
	s := &Secret{Name: name, key: append([]byte(nil), key...)}
	for _, t := range ids {
		id, err := ParseIdentity(t)
		if err != nil {
			return nil, fmt.Errorf("config: secret %q: %v", name, err)
		}
		s.IDs = append(s.IDs, id)
	}
	return s, nil
}

// Key returns the secret. Callers must not log it.
func (s *Secret) Key() []byte { return s.key }

// String never shows the key.
func (s *Secret) String() string { return fmt.Sprintf("secret %q (%d bytes)", s.Name, len(s.key)) }

type secretsFile struct {
	IKE map[string]struct {
		ID     List `yaml:"id"`
		Secret Text `yaml:"secret"`
	} `yaml:"ike"`
	// Private names private key files, as swanctl's secrets.private<name>
	// sections: file is relative to the private folder (or absolute).
	Private map[string]struct {
		File   string `yaml:"file"`
		Secret Text   `yaml:"secret"`
	} `yaml:"private"`
}

// secrets is a secrets file read.
type secrets struct {
	psks     []*Secret
	keyFiles []string
}

// LoadSecrets reads a secrets file. It refuses a file that group or others
// may read or write, or that someone other than us owns, since it holds
// keys.
func LoadSecrets(path string) ([]*Secret, error) {
	s, err := loadSecretsFile(path)
	if err != nil {
		return nil, err
	}
	return s.psks, nil
}

func loadSecretsFile(path string) (*secrets, error) {
	base := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: secrets: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("config: secrets: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("config: secrets file %s has mode %04o; it holds keys and must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("config: secrets file %s is owned by uid %d, not by us (uid %d)", path, st.Uid, os.Geteuid())
	}
	src := make([]byte, fi.Size())
	if _, err := f.ReadAt(src, 0); err != nil && fi.Size() > 0 {
		return nil, fmt.Errorf("config: secrets: %w", err)
	}
	var sf secretsFile
	if err := yaml.UnmarshalWithOptions(src, &sf, yaml.DisallowUnknownField()); err != nil {
		// go-yaml quotes the offending source line; a secret must not
		// appear in an error, so keep only the position and the cause.
		msg := oneLine(yaml.FormatError(err, false, false))
		return nil, fmt.Errorf("config: %s: %s", base, msg)
	}
	var out []*Secret
	for name, e := range sf.IKE {
		s := &Secret{Name: name}
		for _, t := range e.ID {
			id, err := ParseIdentity(t)
			if err != nil {
				return nil, fmt.Errorf("config: %s: ike %q: %v", base, name, err)
			}
			s.IDs = append(s.IDs, id)
		}
		key, err := decodeSecret(string(e.Secret))
		if err != nil {
			return nil, fmt.Errorf("config: %s: ike %q: secret: %v", base, name, err)
		}
		s.key = key
		out = append(out, s)
	}
	res := &secrets{psks: out}
	names := make([]string, 0, len(sf.Private))
	for name := range sf.Private {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		e := sf.Private[name]
		if e.Secret != "" {
			return nil, fmt.Errorf("config: %s: private %q: encrypted private keys are not supported (store it unencrypted, mode 0600)", base, name)
		}
		if e.File == "" {
			return nil, fmt.Errorf("config: %s: private %q: missing file", base, name)
		}
		res.keyFiles = append(res.keyFiles, e.File)
	}
	return res, nil
}

// decodeSecret reads strongSwan's secret notation: 0x<hex>, 0s<base64>, or
// the string itself.
func decodeSecret(s string) ([]byte, error) {
	switch {
	case s == "":
		return nil, errors.New("empty")
	case strings.HasPrefix(s, "0x"):
		b, err := hex.DecodeString(s[2:])
		if err != nil {
			return nil, errors.New("0x secret is not hex")
		}
		return b, nil
	case strings.HasPrefix(s, "0s"):
		b, err := base64.StdEncoding.DecodeString(s[2:])
		if err != nil {
			return nil, errors.New("0s secret is not base64")
		}
		return b, nil
	}
	return []byte(s), nil
}

// LookupPSK finds the pre-shared key for an IKE SA between local and remote
// (identities as sent or received on the wire).
func (c *Config) LookupPSK(local Identity, remoteType uint8, remoteData []byte) (*Secret, bool) {
	var best *Secret
	bestScore := 0
	for _, s := range c.SecretList {
		l, r := false, false
		for _, id := range s.IDs {
			if id.Type == local.Type && string(id.Data) == string(local.Data) {
				l = true
			}
			if id.Matches(remoteType, remoteData) {
				r = true
			}
		}
		score := 0
		switch {
		case l && r:
			score = 3
		case r:
			score = 2
		case l:
			score = 1
		}
		if len(s.IDs) == 0 {
			score = 1
		}
		if score > bestScore {
			best, bestScore = s, score
		}
	}
	return best, best != nil
}

// checkSecrets makes sure every PSK connection has a secret, so that a
// missing one is a load error and not a failed negotiation hours later.
func (c *Config) checkSecrets() error {
	var errs []error
	where := "file"
	if IsSwanctl(c.Path, nil) {
		where = "section"
	}
	for _, name := range c.Order {
		conn := c.Connections[name]
		if conn.Local == nil || conn.Remote == nil {
			continue
		}
		if conn.Local.Auth != "psk" && conn.Remote.Auth != "psk" {
			continue
		}
		r := conn.Remote.Identity
		if _, ok := c.LookupPSK(conn.Local.Identity, r.Type, r.Data); !ok {
			errs = append(errs, fmt.Errorf("config: connection %q: no secret for %s - %s in the secrets %s", name, conn.Local.Identity, r, where))
		}
	}
	return errors.Join(errs...)
}
