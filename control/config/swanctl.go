package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spugate/spugate/control/config/swanconf"
)

// IsSwanctl reports whether the configuration at path, whose text is src,
// is written in strongSwan's swanctl.conf syntax rather than YAML: by its
// extension (.conf is swanctl's; .yaml and .yml are YAML), else by its
// first statement (`name {`, `key = value` or `include` are swanctl's).
func IsSwanctl(path string, src []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".conf":
		return true
	case ".yaml", ".yml":
		return false
	}
	for _, l := range bytes.Split(src, []byte("\n")) {
		l = bytes.TrimSpace(l)
		if len(l) == 0 || l[0] == '#' {
			continue
		}
		if bytes.HasPrefix(l, []byte("include ")) {
			return true
		}
		i := bytes.IndexAny(l, "{=:")
		return i > 0 && l[i] != ':'
	}
	return false
}

// The sections of a swanctl.conf that iked reads: connections and secrets
// as swanctl.conf(5) has them, and iked's own settings (spud, control,
// listen, ... as in the YAML) in an iked section, which strongSwan's
// swanctl ignores, so that one file serves both.
const ikedSection = "iked"

// loadSwanctl reads a swanctl.conf and the files it includes.
func loadSwanctl(path string, chk Checker) (*Config, error) {
	root, err := swanconf.ParseFile(path)
	if err != nil {
		if src, rerr := os.ReadFile(path); rerr == nil && !IsSwanctl("", src) {
			// A YAML file named .conf: say why it was read otherwise.
			return nil, fmt.Errorf("config: %w (read as swanctl.conf syntax for its .conf name; name iked's YAML .yaml)", err)
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	return fromSwanctl(path, root, chk, true)
}

// ParseSwanctl reads a configuration in swanctl.conf's syntax from memory
// (name is used in errors; include statements are refused): what Load
// does with a swanctl.conf, but without checking the file modes of the
// secrets or loading certificates.
func ParseSwanctl(name string, src []byte, chk Checker) (*Config, error) {
	root, err := swanconf.Parse(name, src)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return fromSwanctl(name, root, chk, false)
}

// swanctlDoc is a swanctl.conf as iked's YAML, and the way back from the
// YAML's keys to the file's elements.
type swanctlDoc struct {
	doc *swanconf.Doc
	// at maps a YAML key path (keys joined by NUL) to its line.
	at map[string]int
}

// fromSwanctl maps a swanctl.conf's tree onto iked's configuration: its
// connections are written as iked's YAML by swanconf.Doc (the mapping
// VICI's load-conn uses too) and read by iked's parser, whose errors are
// then made to name the swanctl.conf's file, line and key.
func fromSwanctl(path string, root *swanconf.Section, chk Checker, disk bool) (*Config, error) {
	var errs []error
	elemErr := func(e *swanconf.Element, keyPath, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %w", &swanconf.Error{Pos: e.Pos, Path: keyPath, Msg: fmt.Sprintf(format, args...)}))
	}
	var conns, secrets, iked *swanconf.Element
	for _, e := range root.Elements {
		switch {
		case e.Kind != swanconf.KindSection:
			elemErr(e, e.Name, "a value outside any section: swanctl.conf has connections, secrets (and iked's own iked) sections")
		case e.Name == "connections":
			conns = e
		case e.Name == "secrets":
			secrets = e
		case e.Name == ikedSection:
			iked = e
		case e.Name == "pools":
			if len(e.Section.Elements) > 0 {
				elemErr(e, e.Name, "address pools (virtual IPs) are not supported")
			}
		case e.Name == "authorities":
			if len(e.Section.Elements) > 0 {
				elemErr(e, e.Name, "authorities are not supported: put CA certificates in x509ca and CRLs in x509crl next to %s", filepath.Base(path))
			}
		default:
			elemErr(e, e.Name, "unknown section (swanctl.conf has connections, secrets, pools, authorities; iked's settings go in iked)")
		}
	}
	sd := &swanctlDoc{doc: &swanconf.Doc{}}
	if iked != nil {
		for _, e := range iked.Section.Elements {
			switch e.Name {
			case "connections", "secrets":
				elemErr(e, ikedSection+"."+e.Name, "%s are swanctl.conf's top-level %s section", e.Name, e.Name)
				continue
			}
			sd.doc.Element(e, e.Name, 0, ikedSection)
		}
	}
	if conns != nil && len(conns.Section.Elements) > 0 {
		sd.doc.Key(0, "connections", conns, "connections")
		for _, e := range conns.Section.Elements {
			if e.Kind != swanconf.KindSection {
				elemErr(e, "connections."+e.Name, "a value where a connection's section is expected")
				continue
			}
			if err := sd.doc.Conn(e.Name, e, 2, "connections"); err != nil {
				errs = append(errs, fmt.Errorf("config: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	src := sd.doc.Bytes()
	sd.index(src)
	c, warns, perrs := parse(path, src, chk)
	if len(perrs) > 0 {
		return nil, sd.remap(path, perrs)
	}
	c.Warnings = nil
	for _, w := range warns {
		c.Warnings = append(c.Warnings, sd.remap(path, []error{w}).Error())
	}
	c.Path = path
	if secrets != nil {
		if err := c.swanctlSecrets(secrets, disk); err != nil {
			return nil, err
		}
	}
	if disk {
		if err := c.checkSecrets(); err != nil {
			return nil, err
		}
		if perrs := c.loadPKI(src); len(perrs) > 0 {
			return nil, sd.remap(path, perrs)
		}
	}
	return c, nil
}

// ParseDoc reads a swanctl tree that d wrote as YAML (VICI's load-conn
// writes the connection it receives so): its errors name the elements'
// key paths, and their files and lines when they have them, as a
// swanctl.conf's do, in one line ("; " between errors).
func ParseDoc(d *swanconf.Doc, chk Checker) (*Config, error) {
	sd := &swanctlDoc{doc: d}
	src := d.Bytes()
	sd.index(src)
	c, warns, errs := parse("", src, chk)
	if len(errs) > 0 {
		return nil, errors.New(strings.ReplaceAll(sd.remap("", errs).Error(), "\n", "; "))
	}
	c.Warnings = nil
	for _, w := range warns {
		c.Warnings = append(c.Warnings, sd.remap("", []error{w}).Error())
	}
	return c, nil
}

// index records the line of every YAML key path the document holds.
func (sd *swanctlDoc) index(src []byte) {
	sd.at = map[string]int{}
	var stack []string
	for i, l := range strings.Split(string(src), "\n") {
		t := strings.TrimLeft(l, " ")
		if t == "" {
			continue
		}
		depth := (len(l) - len(t)) / 2
		if depth > len(stack) {
			continue
		}
		stack = stack[:depth]
		key := t
		if strings.HasPrefix(t, `"`) {
			// The key is a JSON string; find its end.
			end := 1
			for end < len(t) && t[end] != '"' {
				if t[end] == '\\' {
					end++
				}
				end++
			}
			key = unquoteJSON(t[:min(end+1, len(t))])
		}
		stack = append(stack, key)
		sd.at[strings.Join(stack, "\x00")] = i + 1
	}
}

// remap makes errors about the YAML document name the swanctl.conf's
// elements: "config: FILE: line N: connections.a.children.b.key: cause".
func (sd *swanctlDoc) remap(path string, errs []error) error {
	out := make([]error, 0, len(errs))
	for _, err := range errs {
		var fe *FieldError
		if !errors.As(err, &fe) {
			out = append(out, err)
			continue
		}
		line := fe.Line
		var ks []string
		for _, k := range fe.Keys {
			if s, ok := k.(string); ok {
				ks = append(ks, s)
			}
		}
		for n := len(ks); n > 0; n-- {
			if l, ok := sd.at[strings.Join(ks[:n], "\x00")]; ok {
				line = l
				break
			}
		}
		e, keyPath := sd.doc.Line(line)
		if e == nil {
			if path == "" {
				out = append(out, fmt.Errorf("config: %s", fe.Msg))
			} else {
				out = append(out, fmt.Errorf("config: %s: %s", path, fe.Msg))
			}
			continue
		}
		msg := fe.Msg
		if len(fe.Keys) > 0 {
			if i, ok := fe.Keys[len(fe.Keys)-1].(int); ok {
				msg = fmt.Sprintf("item %d: %s", i+1, msg)
			}
		}
		out = append(out, fmt.Errorf("config: %w", &swanconf.Error{Pos: e.Pos, Path: keyPath, Msg: msg}))
	}
	return errors.Join(out...)
}

func unquoteJSON(s string) string {
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(s[i])
			}
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// swanctlSecrets reads swanctl.conf's secrets section: ike<suffix>
// (pre-shared keys: secret and id<suffix>) and private<suffix> (key files,
// unencrypted); the other kinds are refused. A file that holds a secret
// must be readable by its owner only, as iked's secrets file.
func (c *Config) swanctlSecrets(sec *swanconf.Element, disk bool) error {
	var errs []error
	errf := func(e *swanconf.Element, keyPath, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config: %w", &swanconf.Error{Pos: e.Pos, Path: keyPath, Msg: fmt.Sprintf(format, args...)}))
	}
	checked := map[string]bool{}
	private := func(e *swanconf.Element, keyPath string) {
		if !disk || checked[e.Pos.File] {
			return
		}
		checked[e.Pos.File] = true
		if err := ownerOnly(e.Pos.File); err != nil {
			errf(e, keyPath, "%v", err)
		}
	}
	for _, e := range sec.Section.Elements {
		p := "secrets." + e.Name
		if e.Kind != swanconf.KindSection {
			errf(e, p, "a value where a secret's section (ike<suffix> { ... }) is expected")
			continue
		}
		switch {
		case strings.HasPrefix(e.Name, "ike"):
			s := &Secret{Name: e.Name}
			var key *swanconf.Element
			for _, f := range e.Section.Elements {
				fp := p + "." + f.Name
				switch {
				case f.Kind != swanconf.KindValue:
					errf(f, fp, "want a value")
				case f.Name == "secret":
					key = f
				case strings.HasPrefix(f.Name, "id"):
					id, err := ParseIdentity(f.Value)
					if err != nil {
						errf(f, fp, "%v", err)
						continue
					}
					s.IDs = append(s.IDs, id)
				default:
					errf(f, fp, "unknown key (an ike secret has secret and id<suffix>)")
				}
			}
			if key == nil {
				errf(e, p, "missing secret")
				continue
			}
			private(key, p+".secret")
			b, err := decodeSecret(key.Value)
			if err != nil {
				// Never quote the secret itself.
				errf(key, p+".secret", "%v", err)
				continue
			}
			s.key = b
			c.SecretList = append(c.SecretList, s)
		case strings.HasPrefix(e.Name, "private"):
			var file string
			for _, f := range e.Section.Elements {
				fp := p + "." + f.Name
				switch f.Name {
				case "file":
					file = f.Value
				case "secret":
					errf(f, fp, "encrypted private keys are not supported (store it unencrypted, mode 0600)")
				default:
					errf(f, fp, "unknown key (a private secret has file)")
				}
			}
			if file == "" {
				errf(e, p, "missing file")
				continue
			}
			c.KeyFiles = append(c.KeyFiles, file)
		default:
			errf(e, p, "not supported: iked takes ike<suffix> (pre-shared keys) and private<suffix> (unencrypted key files in private/) secrets")
		}
	}
	return errors.Join(errs...)
}

// ownerOnly refuses a file that group or others may read or write, or
// that someone other than us owns, since it holds keys.
func ownerOnly(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o; it holds secrets and must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by us (uid %d)", path, st.Uid, os.Geteuid())
	}
	return nil
}
