package iked

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/config/swanconf"
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

// viciConn reads a load-conn request's connection (swanctl.conf's tree,
// as swanctl sends it): swanconf writes it as iked's YAML with the
// mapping the swanctl.conf reader uses, and iked's own parser and checks
// read it, so that an unknown or unsupported key is the same error as in
// a file, naming the key ("site.children.lan.mode: ...").
func viciConn(name string, c *vici.Section) (*config.Config, error) {
	for _, e := range c.Elements {
		if e.Kind != vici.KindSection {
			continue
		}
		for _, side := range []string{"local", "remote"} {
			if e.Name == side || strings.HasPrefix(e.Name, side+"-") {
				if err := checkAuth(side, e.Section); err != nil {
					return nil, err
				}
			}
		}
	}
	var d swanconf.Doc
	d.Key(0, "connections", nil, "connections")
	conn := &swanconf.Element{Name: name, Kind: swanconf.KindSection, Section: fromVICI(c)}
	if err := d.Conn(name, conn, 2, ""); err != nil {
		return nil, err
	}
	return config.ParseDoc(&d, task.ConfigChecker{})
}

// fromVICI makes a VICI message's section a swanconf tree (without
// positions: errors name the key path).
func fromVICI(s *vici.Section) *swanconf.Section {
	out := &swanconf.Section{}
	for _, e := range s.Elements {
		n := &swanconf.Element{Name: e.Name, Value: e.Value, List: e.List}
		switch e.Kind {
		case vici.KindValue:
			n.Kind = swanconf.KindValue
		case vici.KindList:
			n.Kind = swanconf.KindList
		case vici.KindSection:
			n.Kind, n.Section = swanconf.KindSection, fromVICI(e.Section)
		default:
			continue
		}
		out.Elements = append(out.Elements, n)
	}
	return out
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

// LoadConn adds or replaces a connection of the overlay and puts the
// result in force as a reload does.
func (b viciBackend) LoadConn(name string, c *vici.Section) error {
	d := b.d
	c, blobs := viciCertBlobs(c)
	parsed, err := viciConn(name, c)
	if err != nil {
		return err
	}
	conn := parsed.Connections[name]
	if conn == nil {
		return fmt.Errorf("connection %q not parsed", name)
	}
	for _, w := range parsed.Warnings {
		d.log.Warn("iked: load-conn: key ignored", "conn", name, "warning", w)
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
