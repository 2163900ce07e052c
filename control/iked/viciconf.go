package iked

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/control/vici"
)

// viciOverlay is the connections and pre-shared keys VICI clients loaded
// (swanctl --load-all): added to the configuration file's, kept across
// reloads of the file, gone when iked stops, as charon's are.
type viciOverlay struct {
	order   []string
	conns   map[string]*config.Conn
	secrets []*config.Secret // Name is load-shared's id
	creds   viciCreds        // load-cert, load-key, load-authority (vicicreds.go)
}

// compose is the configuration in force: the file's, with the overlay's
// connections after its own and its secrets after the file's. A
// connection the file now defines too is the file's (said in the log).
func (d *Daemon) compose(file *config.Config) *config.Config {
	o := &d.overlay
	if len(o.order) == 0 && len(o.secrets) == 0 && o.creds.empty() {
		return file
	}
	cfg := *file
	cfg.Trust = d.trustFor(file.Trust)
	cfg.Connections = maps.Clone(file.Connections)
	cfg.Order = slices.Clone(file.Order)
	cfg.SecretList = append(slices.Clone(file.SecretList), o.secrets...)
	for _, name := range o.order {
		if _, dup := cfg.Connections[name]; dup {
			d.log.Warn("iked: connection loaded over VICI is now in the configuration file, which wins", "conn", name)
			continue
		}
		cfg.Connections[name] = o.conns[name]
		cfg.Order = append(cfg.Order, name)
	}
	return &cfg
}

// viciConnYAML writes a load-conn request's connection (swanctl.conf's
// tree, as swanctl sends it) as iked's YAML, every value quoted, so that
// iked's own parser and checks read it: an unknown or unsupported key
// is the same error as in the file. swanctl's local-<suffix> and
// remote-<suffix> sections are iked's local and remote (one round each).
func viciConnYAML(name string, c *vici.Section) ([]byte, error) {
	src, _, err := viciConnDoc(name, c)
	return src, err
}

// viciConnDoc is viciConnYAML with the key path each line of the document
// holds (lines[i] for line i+1), to name keys, not lines, in errors.
func viciConnDoc(name string, c *vici.Section) ([]byte, []string, error) {
	var b strings.Builder
	b.WriteString("connections:\n  ")
	b.WriteString(quote(name))
	b.WriteString(":\n")
	lines := []string{"connections", name}
	rounds := map[string]string{}
	for _, e := range c.Elements {
		if e.Kind != vici.KindSection {
			continue
		}
		for _, side := range []string{"local", "remote"} {
			if e.Name == side || strings.HasPrefix(e.Name, side+"-") {
				if prev, ok := rounds[side]; ok {
					return nil, nil, fmt.Errorf("%s and %s: iked has one %s authentication round", prev, e.Name, side)
				}
				rounds[side] = e.Name
				if err := checkAuth(side, e.Section); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	writeYAML(&b, c, 4, name, &lines, func(n string) string {
		if strings.HasPrefix(n, "local-") {
			return "local"
		}
		if strings.HasPrefix(n, "remote-") {
			return "remote"
		}
		return n
	})
	return []byte(b.String()), lines, nil
}

var lineRe = regexp.MustCompile(`line (\d+)`)

// keyErrors makes "line N" of a load-conn document's error the key there.
func keyErrors(err error, lines []string) error {
	msg := lineRe.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(m[len("line "):])
		if n >= 1 && n <= len(lines) {
			return lines[n-1]
		}
		return m
	})
	return errors.New(msg)
}

// checkAuth refuses what load-conn cannot hand iked: raw public keys
// and smartcard certificates (certs and cacerts come as the files' data:
// viciCertBlobs).
func checkAuth(side string, a *vici.Section) error {
	for _, k := range []string{"pubkeys", "cert", "cacert"} {
		for _, e := range a.Elements {
			if e.Name == k || strings.HasPrefix(e.Name, k+"-") {
				return fmt.Errorf("%s %s: not supported by iked: raw public keys and smartcard certificates (use certs and cacerts)", side, e.Name)
			}
		}
	}
	return nil
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted one
	return string(b)
}

func writeYAML(b *strings.Builder, s *vici.Section, indent int, path string, lines *[]string, rename func(string) string) {
	pad := strings.Repeat(" ", indent)
	for _, e := range s.Elements {
		name := e.Name
		if indent == 4 {
			name = rename(name)
		}
		*lines = append(*lines, path+"."+e.Name)
		b.WriteString(pad)
		b.WriteString(quote(name))
		b.WriteString(":")
		switch e.Kind {
		case vici.KindValue:
			b.WriteString(" ")
			b.WriteString(quote(e.Value))
			b.WriteString("\n")
		case vici.KindList:
			b.WriteString(" [")
			for i, it := range e.List {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(quote(it))
			}
			b.WriteString("]\n")
		case vici.KindSection:
			if len(e.Section.Elements) == 0 {
				b.WriteString(" {}\n")
				continue
			}
			b.WriteString("\n")
			writeYAML(b, e.Section, indent+2, path+"."+e.Name, lines, rename)
		}
	}
}

// LoadConn adds or replaces a connection of the overlay and puts the
// result in force as a reload does.
func (b viciBackend) LoadConn(name string, c *vici.Section) error {
	d := b.d
	c, blobs := viciCertBlobs(c)
	src, lines, err := viciConnDoc(name, c)
	if err != nil {
		return err
	}
	parsed, err := config.Parse("load-conn", src, task.ConfigChecker{})
	if err != nil {
		return keyErrors(err, lines)
	}
	conn := parsed.Connections[name]
	if conn == nil {
		return fmt.Errorf("connection %q not parsed", name)
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if _, ok := d.fileCfg.Connections[name]; ok {
		return fmt.Errorf("connection %q is defined in iked's configuration file", name)
	}
	if err := d.viciConnCreds(conn, blobs); err != nil {
		return err
	}
	o := &d.overlay
	if o.conns == nil {
		o.conns = map[string]*config.Conn{}
	}
	if _, ok := o.conns[name]; !ok {
		o.order = append(o.order, name)
	}
	o.conns[name] = conn
	_, err = d.apply(d.compose(d.fileCfg))
	return err
}

// UnloadConn removes a connection VICI loaded (its IKE SAs are deleted,
// as a reload deletes those of a connection removed from the file).
func (b viciBackend) UnloadConn(name string) error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	o := &d.overlay
	if _, ok := o.conns[name]; !ok {
		if _, file := d.fileCfg.Connections[name]; file {
			return fmt.Errorf("connection %q is defined in iked's configuration file, not loaded over VICI", name)
		}
		return fmt.Errorf("connection '%s' not found", name)
	}
	delete(o.conns, name)
	o.order = slices.DeleteFunc(o.order, func(n string) bool { return n == name })
	_, err := d.apply(d.compose(d.fileCfg))
	return err
}

// VICIConns are the connections VICI loaded (get-conns: charon lists
// its VICI-loaded connections only).
func (b viciBackend) VICIConns() []string {
	b.d.reloadMu.Lock()
	defer b.d.reloadMu.Unlock()
	return slices.Clone(b.d.overlay.order)
}

// LoadShared adds or replaces a pre-shared key of the overlay.
func (b viciBackend) LoadShared(id string, owners []string, key []byte) error {
	s, err := config.NewSecret(id, owners, key)
	if err != nil {
		return err
	}
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	o := &d.overlay
	o.secrets = slices.DeleteFunc(o.secrets, func(x *config.Secret) bool { return x.Name == id })
	o.secrets = append(o.secrets, s)
	d.useSecrets()
	return nil
}

// useSecrets puts the file's and the overlay's pre-shared keys in force,
// the rest of the running configuration as it is.
func (d *Daemon) useSecrets() {
	cfg := *d.cfg.Load()
	cfg.SecretList = append(slices.Clone(d.fileCfg.SecretList), d.overlay.secrets...)
	d.useConfig(&cfg)
}

// UnloadShared removes a pre-shared key VICI loaded.
func (b viciBackend) UnloadShared(id string) error {
	d := b.d
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	o := &d.overlay
	n := len(o.secrets)
	o.secrets = slices.DeleteFunc(o.secrets, func(x *config.Secret) bool { return x.Name == id })
	if len(o.secrets) == n {
		return fmt.Errorf("shared key '%s' not found", id)
	}
	d.useSecrets()
	return nil
}

// SharedIDs are the ids of the pre-shared keys VICI loaded.
func (b viciBackend) SharedIDs() []string {
	b.d.reloadMu.Lock()
	defer b.d.reloadMu.Unlock()
	var ids []string
	for _, s := range b.d.overlay.secrets {
		ids = append(ids, s.Name)
	}
	return ids
}
