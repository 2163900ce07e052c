package vici

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/version"
)

// Backend is the daemon behind the server: iked's own operations, the
// ones its control socket (ikectl) serves to spuctl, so that VICI adds
// no second path to them.
type Backend interface {
	// Daemon names the daemon ("iked") and when it started.
	Daemon() (name string, started time.Time)
	Stats() (*ikectl.Stats, error)
	Conns() (*ikectl.Conns, error)
	// SAPage returns the IKE SAs with a UniqueID above after, in order,
	// at most limit, with More set when there are others.
	SAPage(after uint32, limit int) (*ikectl.SAs, error)
	Initiate(ikectl.Initiate) (*ikectl.Result, error)
	Terminate(ikectl.Terminate) (*ikectl.Result, error)
	Rekey(ikectl.Rekey) (*ikectl.Result, error)
	Reload() (*ikectl.ReloadResult, error)
	// Certs are the certificates the daemon holds: its own (with their
	// private keys) and the CAs it trusts or sends.
	Certs() ([]Cert, error)
}

// ConfigBackend is a Backend that takes connections and pre-shared keys
// from VICI clients (swanctl --load-all) besides its own configuration.
// Register serves load-conn, unload-conn, load-shared, unload-shared
// and get-shared for one, and get-conns lists what VICI loaded, as
// charon's does.
type ConfigBackend interface {
	Backend
	// LoadConn adds or replaces a connection: c is its swanctl.conf tree.
	LoadConn(name string, c *Section) error
	// UnloadConn removes a connection VICI loaded.
	UnloadConn(name string) error
	// VICIConns are the connections VICI loaded.
	VICIConns() []string
	// LoadShared adds or replaces a pre-shared key (an IKE secret) for
	// the identities owners; UnloadShared removes one.
	LoadShared(id string, owners []string, key []byte) error
	UnloadShared(id string) error
	// SharedIDs are the ids of the keys VICI loaded.
	SharedIDs() []string
}

// Cert is one certificate list-certs shows.
type Cert struct {
	// DER is the certificate; Subject its subject as the daemon writes
	// it, and SANs its subject alternative names, for the subject filter.
	DER     []byte
	Subject string
	SANs    []string
	// CA: a certification authority's (flag CA), else an end entity's
	// (flag NONE). HasKey: the daemon holds its private key.
	CA, HasKey bool
}

// Events this server raises.
const (
	EvListSA      = "list-sa"
	EvListConn    = "list-conn"
	EvControlLog  = "control-log"
	EvLog         = "log"
	EvIKEUpDown   = "ike-updown"
	EvChildUpDown = "child-updown"
	EvIKERekey    = "ike-rekey"
	EvChildRekey  = "child-rekey"
	EvListCert    = "list-cert"
)

// Refused are charon's commands that iked does not serve, each with the
// reason its error gives: they change or read state iked keeps in its
// configuration file, or features iked does not have. They are answered
// {success: no, errmsg: "<command>: not supported by iked: <reason>"},
// never a silent success; a command in neither this list nor the
// served ones gets CMD_UNKNOWN.
var Refused = map[string]string{
	"load-token":     "iked has no smartcard support",
	"load-pool":      "iked assigns no virtual IPs",
	"unload-pool":    "iked assigns no virtual IPs",
	"install":        "iked installs trap policies from start_action=trap in its configuration file",
	"uninstall":      "iked installs trap policies from start_action=trap in its configuration file",
	"list-policies":  "iked's policies are spud's (spuctl policies)",
	"redirect":       "iked does not implement RFC 5685 redirection",
	"get-algorithms": "not served (iked's algorithms are in docs/operations.md)",
	"get-counters":   "iked's counters are in stats (and spuctl ike-stats)",
	"reset-counters": "iked's counters are not reset",
}

// CredCommands are served for a CredBackend and refused, with "not
// supported by this daemon", for a backend without one.
var CredCommands = []string{"load-cert", "load-key", "unload-key", "load-authority", "unload-authority", "list-authorities", "flush-certs", "clear-creds"}

// Register serves b's operations on s: version, stats, list-sas,
// list-conns, get-conns, initiate, terminate, rekey, reload-settings,
// and the refusals of Refused; the loading commands for a ConfigBackend
// and the credential ones (CredCommands) for a CredBackend.
func Register(s *Server, b Backend) {
	s.Events(EvListSA, EvListConn, EvListCert, EvControlLog, EvLog, EvIKEUpDown, EvChildUpDown, EvIKERekey, EvChildRekey)
	s.Handle("version", func(*Call) (*Section, error) { return versionReply(b), nil })
	s.Handle("stats", func(*Call) (*Section, error) { return statsReply(b) })
	s.Handle("list-sas", func(c *Call) (*Section, error) { return &Section{}, listSAs(b, c) })
	s.Handle("list-conns", func(c *Call) (*Section, error) { return &Section{}, listConns(b, c) })
	s.Handle("get-conns", func(*Call) (*Section, error) {
		cs, err := b.Conns()
		if err != nil {
			return nil, err
		}
		names := []string{}
		for _, c := range cs.Conns {
			names = append(names, c.Name)
		}
		return (&Section{}).SetList("conns", names), nil
	})
	s.Handle("list-certs", func(c *Call) (*Section, error) { return &Section{}, listCerts(b, c) })
	s.Handle("initiate", func(c *Call) (*Section, error) { return initiate(b, c) })
	s.Handle("terminate", func(c *Call) (*Section, error) { return terminate(b, c) })
	s.Handle("rekey", func(c *Call) (*Section, error) { return rekey(b, c) })
	s.Handle("reload-settings", func(c *Call) (*Section, error) {
		r, err := b.Reload()
		if err != nil {
			return nil, fmt.Errorf("reload-settings: %w", err)
		}
		logTo(c, "CFG", fmt.Sprintf("iked configuration reloaded: added %v, removed %v, changed %v, %d unchanged",
			r.Added, r.Removed, r.Changed, len(r.Unchanged)))
		return Success(), nil
	})
	for cmd, why := range Refused {
		s.Handle(cmd, func(*Call) (*Section, error) {
			return nil, fmt.Errorf("%s: not supported by iked: %s", cmd, why)
		})
	}
	// What swanctl --load-all asks to find what it loaded before: with
	// no CredBackend none of these can be loaded over VICI, so none are
	// listed (registerCreds replaces the first two).
	s.Handle("get-keys", func(*Call) (*Section, error) { return (&Section{}).SetList("keys", []string{}), nil })
	s.Handle("get-authorities", func(*Call) (*Section, error) { return (&Section{}).SetList("authorities", []string{}), nil })
	s.Handle("get-pools", func(*Call) (*Section, error) { return &Section{}, nil })
	if crb, ok := b.(CredBackend); ok {
		registerCreds(s, crb)
	} else {
		for _, cmd := range CredCommands {
			s.Handle(cmd, func(*Call) (*Section, error) {
				return nil, fmt.Errorf("%s: not supported by this daemon: its credentials are its configuration file's", cmd)
			})
		}
	}
	if cb, ok := b.(ConfigBackend); ok {
		registerConfig(s, cb)
		return
	}
	for _, cmd := range []string{"load-conn", "unload-conn", "load-shared", "unload-shared", "get-shared"} {
		s.Handle(cmd, func(*Call) (*Section, error) {
			return nil, fmt.Errorf("%s: not supported by this daemon: its configuration is its file's", cmd)
		})
	}
}

// registerConfig serves the commands that load connections and
// pre-shared keys.
func registerConfig(s *Server, b ConfigBackend) {
	s.Handle("get-conns", func(*Call) (*Section, error) {
		return (&Section{}).SetList("conns", orEmpty(b.VICIConns())), nil
	})
	s.Handle("load-conn", func(c *Call) (*Section, error) {
		subs := c.Req.Subs()
		if len(subs) != 1 {
			return nil, fmt.Errorf("load-conn: want one connection section, got %d", len(subs))
		}
		if err := b.LoadConn(subs[0].Name, subs[0].Section); err != nil {
			return nil, fmt.Errorf("load-conn: %s: %w", subs[0].Name, err)
		}
		return Success(), nil
	})
	s.Handle("unload-conn", func(c *Call) (*Section, error) {
		name := c.Req.Get("name")
		if name == "" {
			return nil, errors.New("unload-conn: missing connection name to unload")
		}
		if err := b.UnloadConn(name); err != nil {
			return nil, fmt.Errorf("unload-conn: %w", err)
		}
		return Success(), nil
	})
	s.Handle("load-shared", func(c *Call) (*Section, error) {
		typ := strings.ToUpper(c.Req.Get("type"))
		if typ != "IKE" {
			return nil, fmt.Errorf("load-shared: not supported by iked: %s secrets (iked takes IKE pre-shared keys)", c.Req.Get("type"))
		}
		id := c.Req.Get("id")
		if id == "" {
			// Older swanctl sends no id; the owners name it.
			id = strings.Join(c.Req.List("owners"), ",")
		}
		data, ok := c.Req.Lookup("data")
		if !ok || data == "" {
			return nil, errors.New("load-shared: missing secret data")
		}
		if err := b.LoadShared(id, c.Req.List("owners"), []byte(data)); err != nil {
			return nil, fmt.Errorf("load-shared: %w", err)
		}
		return Success(), nil
	})
	s.Handle("unload-shared", func(c *Call) (*Section, error) {
		id := c.Req.Get("id")
		if id == "" {
			return nil, errors.New("unload-shared: missing unique identifier")
		}
		if err := b.UnloadShared(id); err != nil {
			return nil, fmt.Errorf("unload-shared: %w", err)
		}
		return Success(), nil
	})
	s.Handle("get-shared", func(*Call) (*Section, error) {
		return (&Section{}).SetList("keys", orEmpty(b.SharedIDs())), nil
	})
}

func versionReply(b Backend) *Section {
	name, _ := b.Daemon()
	m := (&Section{}).Set("daemon", name).Set("version", version.Get().Version)
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Set("sysname", cstr(u.Sysname[:])).Set("release", cstr(u.Release[:])).Set("machine", cstr(u.Machine[:]))
	} else {
		m.Set("sysname", runtime.GOOS).Set("release", "").Set("machine", runtime.GOARCH)
	}
	return m
}

// cstr is a NUL-terminated utsname field (int8 or uint8 by platform).
func cstr[T int8 | uint8](f []T) string {
	b := make([]byte, 0, len(f))
	for _, c := range f {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func statsReply(b Backend) (*Section, error) {
	st, err := b.Stats()
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	_, started := b.Daemon()
	m := &Section{}
	up := m.AddSection("uptime")
	up.Set("running", time.Since(started).Round(time.Second).String()).
		Set("since", started.Format("Jan 02 15:04:05 2006"))
	// iked has no thread pool or job queues: each worker is an event
	// loop of its own. workers.total is their number; the rest is 0.
	w := m.AddSection("workers")
	w.Set("total", strconv.Itoa(len(st.Workers))).Set("idle", "0")
	act := w.AddSection("active")
	q := m.AddSection("queues")
	for _, p := range []string{"critical", "high", "medium", "low"} {
		act.Set(p, "0")
		q.Set(p, "0")
	}
	m.Set("scheduled", "0")
	ikes := m.AddSection("ikesas")
	ikes.Set("total", strconv.Itoa(st.IKESAs)).Set("half-open", strconv.FormatInt(st.HalfOpen, 10))
	m.SetList("plugins", []string{"iked"})
	// iked's own counters, which charon does not have (swanctl --stats
	// --raw shows them).
	counters := m.AddSection("counters")
	for _, k := range sortedKeys(st.Counters) {
		counters.Set(k, strconv.FormatUint(st.Counters[k], 10))
	}
	failures := m.AddSection("failures")
	for _, k := range sortedKeys(st.Failures) {
		failures.Set(k, strconv.FormatUint(st.Failures[k], 10))
	}
	return m, nil
}

func sortedKeys(m map[string]uint64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// saPage is how many IKE SAs list-sas asks the backend for at a time.
const saPage = 1024

// listSAs streams each IKE SA as a list-sa event, page by page, as
// charon does (one IKE SA an event), filtered by ike (name) and ike-id.
func listSAs(b Backend, c *Call) error {
	name := c.Req.Get("ike")
	var id uint64
	if v := c.Req.Get("ike-id"); v != "" {
		var err error
		if id, err = strconv.ParseUint(v, 10, 32); err != nil {
			return fmt.Errorf("list-sas: ike-id %q: not a number", v)
		}
	}
	if !c.Wants(EvListSA) {
		// Nothing to stream to: charon answers at once too.
		return nil
	}
	after := uint32(0)
	if id > 0 {
		after = uint32(id) - 1
	}
	for {
		page, err := b.SAPage(after, saPage)
		if err != nil {
			return fmt.Errorf("list-sas: %w", err)
		}
		now := time.Now()
		for i := range page.IKESAs {
			s := &page.IKESAs[i]
			after = s.UniqueID
			if id > 0 && uint64(s.UniqueID) != id {
				if uint64(s.UniqueID) > id {
					return nil
				}
				continue
			}
			if name != "" && s.Conn != name {
				continue
			}
			ev := &Section{}
			IKESA(ev, s, now)
			if err := c.Emit(EvListSA, ev); err != nil {
				return err
			}
		}
		if !page.More || len(page.IKESAs) == 0 {
			return nil
		}
		if page.Next > after {
			after = page.Next
		}
	}
}

func listConns(b Backend, c *Call) error {
	cs, err := b.Conns()
	if err != nil {
		return fmt.Errorf("list-conns: %w", err)
	}
	name := c.Req.Get("ike")
	for i := range cs.Conns {
		if name != "" && cs.Conns[i].Name != name {
			continue
		}
		ev := &Section{}
		Conn(ev, &cs.Conns[i])
		if err := c.Emit(EvListConn, ev); err != nil {
			return err
		}
	}
	return nil
}

// listCerts streams each certificate as a list-cert event, as charon
// does: type X509, flag CA or NONE, has_privkey, the DER as data;
// filtered by type (iked holds X509 only), flag and subject (the subject
// DN or a subject alternative name, exactly).
func listCerts(b Backend, c *Call) error {
	typ, flag, subject := strings.ToUpper(c.Req.Get("type")), strings.ToUpper(c.Req.Get("flag")), c.Req.Get("subject")
	switch typ {
	case "", "ANY", "X509":
	default:
		// CRLs, attribute certificates, OCSP responses, raw keys:
		// none are listed.
		return nil
	}
	switch flag {
	case "", "ANY", "NONE", "CA":
	case "AA", "OCSP":
		return nil
	default:
		return fmt.Errorf("list-certs: flag %q: none, ca, aa, ocsp or any", c.Req.Get("flag"))
	}
	certs, err := b.Certs()
	if err != nil {
		return fmt.Errorf("list-certs: %w", err)
	}
	for _, crt := range certs {
		f := "NONE"
		if crt.CA {
			f = "CA"
		}
		if flag != "" && flag != "ANY" && flag != f {
			continue
		}
		if subject != "" && subject != crt.Subject && !slices.Contains(crt.SANs, subject) {
			continue
		}
		m := (&Section{}).Set("type", "X509").Set("flag", f)
		if crt.HasKey {
			m.Set("has_privkey", "yes")
		}
		m.Set("data", string(crt.DER))
		if err := c.Emit(EvListCert, m); err != nil {
			return err
		}
	}
	return nil
}

// logTo streams a control-log line to a client that asked for it
// (swanctl --initiate and --terminate print them as "[GROUP] msg").
func logTo(c *Call, group, msg string) {
	if !c.Wants(EvControlLog) {
		return
	}
	c.Emit(EvControlLog, (&Section{}).Set("group", group).Set("level", "1").Set("msg", msg))
}

// millis reads a request's timeout (charon's: milliseconds). detach is
// a negative one: answer at once and let the operation go on, as charon
// does; zero is iked's default wait.
func millis(c *Call) (wait time.Duration, detach bool, err error) {
	v := c.Req.Get("timeout")
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: timeout %q: not a number of milliseconds", c.Command, v)
	}
	if n < 0 {
		return 0, true, nil
	}
	return time.Duration(n) * time.Millisecond, false, nil
}

// connOfChild finds the connection that has a child called child: charon
// initiates and terminates by child name alone.
func connOfChild(b Backend, child string) (string, error) {
	cs, err := b.Conns()
	if err != nil {
		return "", err
	}
	var found []string
	for _, c := range cs.Conns {
		for _, ch := range c.Children {
			if ch.Name == child {
				found = append(found, c.Name)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("CHILD_SA config '%s' not found", child)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("child %q is in connections %s: name one with ike", child, strings.Join(found, ", "))
}

func initiate(b Backend, c *Call) (*Section, error) {
	child, ike := c.Req.Get("child"), c.Req.Get("ike")
	if child == "" && ike == "" {
		return nil, errors.New("missing configuration name")
	}
	wait, detach, err := millis(c)
	if err != nil {
		return nil, err
	}
	if ike == "" {
		if ike, err = connOfChild(b, child); err != nil {
			return nil, err
		}
	}
	what := fmt.Sprintf("connection '%s'", ike)
	if child != "" {
		what = fmt.Sprintf("CHILD_SA '%s' of connection '%s'", child, ike)
	}
	logTo(c, "CFG", "initiating "+what)
	req := ikectl.Initiate{Conn: ike, Child: child, Timeout: wait}
	if detach {
		// Its outcome goes to iked's log (and the up/down events).
		go b.Initiate(req)
		return Success(), nil
	}
	r, err := b.Initiate(req)
	if err != nil {
		logTo(c, "IKE", fmt.Sprintf("initiating %s failed: %v", what, err))
		return nil, fmt.Errorf("initiating %s failed: %w", what, err)
	}
	logTo(c, "IKE", r.Message)
	return Success(), nil
}

func parseID(c *Call, key string) (uint32, error) {
	v := c.Req.Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s: %s %q: not a number", c.Command, key, v)
	}
	return uint32(n), nil
}

// target reads the selectors terminate and rekey share: ike, ike-id,
// child, child-id. A child named without its connection is looked up;
// a child-id alone finds its IKE SA among the IKE SAs.
func target(b Backend, c *Call) (conn, child string, ikeID, childID uint32, err error) {
	conn, child = c.Req.Get("ike"), c.Req.Get("child")
	if ikeID, err = parseID(c, "ike-id"); err != nil {
		return
	}
	if childID, err = parseID(c, "child-id"); err != nil {
		return
	}
	if conn == "" && ikeID == 0 {
		switch {
		case child != "":
			conn, err = connOfChild(b, child)
		case childID != 0:
			ikeID, err = ikeOfChild(b, childID)
		default:
			err = fmt.Errorf("%s: name an IKE_SA or CHILD_SA (ike, ike-id, child or child-id)", c.Command)
		}
	}
	return
}

// ikeOfChild finds the IKE SA of a Child SA's unique id.
func ikeOfChild(b Backend, childID uint32) (uint32, error) {
	after := uint32(0)
	for {
		page, err := b.SAPage(after, saPage)
		if err != nil {
			return 0, err
		}
		for _, s := range page.IKESAs {
			after = s.UniqueID
			for _, ch := range s.Children {
				if ch.UniqueID == childID {
					return s.UniqueID, nil
				}
			}
		}
		if !page.More || len(page.IKESAs) == 0 {
			return 0, fmt.Errorf("no CHILD_SA found with id %d", childID)
		}
	}
}

func terminate(b Backend, c *Call) (*Section, error) {
	conn, child, ikeID, childID, err := target(b, c)
	if err != nil {
		return nil, err
	}
	wait, detach, err := millis(c)
	if err != nil {
		return nil, err
	}
	req := ikectl.Terminate{Conn: conn, IKEID: ikeID, Child: child, ChildID: childID, Timeout: wait}
	if detach {
		go b.Terminate(req)
		return Success(), nil
	}
	r, err := b.Terminate(req)
	if err != nil {
		logTo(c, "IKE", fmt.Sprintf("terminate failed: %v", err))
		return nil, fmt.Errorf("terminate failed: %w", err)
	}
	logTo(c, "IKE", fmt.Sprintf("%s: %d SAs", r.Message, r.Matched))
	n := strconv.Itoa(r.Matched)
	return Success().Set("matches", n).Set("terminated", n), nil
}

func rekey(b Backend, c *Call) (*Section, error) {
	if v := c.Req.Get("reauth"); v == "yes" {
		return nil, errors.New("rekey: not supported by iked: reauth (iked reauthenticates on reauth_time only)")
	}
	conn, child, ikeID, childID, err := target(b, c)
	if err != nil {
		return nil, err
	}
	// charon rekeys the IKE SA when no child is named.
	ike := child == "" && childID == 0
	r, err := b.Rekey(ikectl.Rekey{Conn: conn, IKEID: ikeID, Child: child, ChildID: childID, IKE: ike})
	if err != nil {
		return nil, fmt.Errorf("rekey failed: %w", err)
	}
	return Success().Set("matches", strconv.Itoa(r.Matched)), nil
}
