package iked

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/control/pki"
	"github.com/spugate/spugate/control/vici"
)

// DefaultVICI is where cmd/iked serves VICI unless told otherwise: beside
// iked's control socket, as charon's is /var/run/charon.vici.
const DefaultVICI = "/run/spugate/vici.sock"

// viciBackend serves VICI with the operations of iked's control socket.
type viciBackend struct {
	d       *Daemon
	started time.Time
}

func (b viciBackend) Daemon() (string, time.Time) { return "iked", b.started }
func (b viciBackend) Stats() (*ikectl.Stats, error) {
	return b.d.statsReply(), nil
}
func (b viciBackend) Conns() (*ikectl.Conns, error) {
	c := b.d.listConns()
	return &c, nil
}
func (b viciBackend) SAPage(after uint32, limit int) (*ikectl.SAs, error) {
	r, err := b.d.listSAs(ikectl.SAsRequest{After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	page, ok := r.(*ikectl.SAs)
	if !ok {
		return nil, fmt.Errorf("iked: list-sas: page of type %T", r)
	}
	return page, nil
}
func (b viciBackend) Initiate(r ikectl.Initiate) (*ikectl.Result, error) { return b.d.initiate(r) }
func (b viciBackend) Terminate(r ikectl.Terminate) (*ikectl.Result, error) {
	return b.d.terminate(r)
}
func (b viciBackend) Rekey(r ikectl.Rekey) (*ikectl.Result, error) { return b.d.rekey(r) }
func (b viciBackend) Reload() (*ikectl.ReloadResult, error)        { return b.d.Reload() }

// Certs are the configuration's certificates: each connection's own
// (with its key) and their chains, then the trust store's CAs; each once.
func (b viciBackend) Certs() ([]vici.Cert, error) {
	cfg := b.d.cfg.Load()
	var out []vici.Cert
	seen := map[string]bool{}
	add := func(c *x509.Certificate, key bool) {
		if c == nil || seen[string(c.Raw)] {
			return
		}
		seen[string(c.Raw)] = true
		vc := vici.Cert{DER: c.Raw, Subject: pki.FormatDN(c.RawSubject), CA: c.IsCA, HasKey: key}
		vc.SANs = append(vc.SANs, c.DNSNames...)
		vc.SANs = append(vc.SANs, c.EmailAddresses...)
		for _, ip := range c.IPAddresses {
			vc.SANs = append(vc.SANs, ip.String())
		}
		out = append(out, vc)
	}
	for _, name := range cfg.Order {
		conn := cfg.Connections[name]
		if conn.Local == nil {
			continue
		}
		for _, cr := range conn.Local.Credentials {
			add(cr.Leaf, cr.Key != nil)
			for _, c := range cr.Intermediates {
				add(c, false)
			}
			add(cr.Root, false)
		}
	}
	if cfg.Trust != nil {
		for _, c := range cfg.Trust.CAs() {
			add(c, false)
		}
	}
	loaded, keys := b.d.viciCerts()
	for i, c := range loaded {
		add(c, keys[i])
	}
	return out, nil
}

// startVICI serves VICI on the socket the options name (none: off).
func (d *Daemon) startVICI() error {
	if d.vici == nil {
		return nil
	}
	vici.Register(d.vici, viciBackend{d: d, started: time.Now()})
	if err := os.MkdirAll(dirOf(d.opts.VICI), 0o755); err != nil {
		return fmt.Errorf("iked: vici socket: %w", err)
	}
	if err := d.vici.Listen(d.opts.VICI, d.opts.VICIGroup); err != nil {
		return fmt.Errorf("iked: %w", err)
	}
	go d.vici.Serve()
	return nil
}

// viciTrack is what a worker remembers of its IKE SAs while a VICI client
// is registered for up/down or rekey events: enough to tell an IKE SA or
// Child SA that came up, went down or was rekeyed from one that merely
// changed. It is kept only while someone listens (at a million IKE SAs
// it would cost tens of MB), so an SA first seen after a client
// registered is new only if it was established after that.
type viciTrack struct {
	since time.Time
	ikes  map[uint32]*ikeSeen
	// owner is the IKE SA of each Child SA seen: a new IKE SA whose Child
	// SAs another IKE SA had is that one's rekey.
	owner map[uint32]uint32
}

type ikeSeen struct {
	ike      *sa.IKESA
	up       bool
	children map[uint32]bool // Child SA unique id -> up
	// moved are the Child SAs an IKE rekey moved away.
	moved []uint32
}

// viciEventsWanted reports whether a client listens to an up/down or
// rekey event.
func (d *Daemon) viciEventsWanted() bool {
	v := d.vici
	return v != nil && (v.Subscribed(vici.EvIKEUpDown) || v.Subscribed(vici.EvChildUpDown) ||
		v.Subscribed(vici.EvIKERekey) || v.Subscribed(vici.EvChildRekey))
}

// viciSnapshot is ike as VICI shows it (without data-plane counters:
// events do not wait for spud).
func (l *loop) viciSnapshot(ike *sa.IKESA) *ikectl.IKESA {
	wr := &saWriter{d: l.d, now: time.Now()}
	return wr.fill(ike, l.idx)
}

func childOf(s *ikectl.IKESA, id uint32) *ikectl.ChildSA {
	for i := range s.Children {
		if s.Children[i].UniqueID == id {
			return &s.Children[i]
		}
	}
	return nil
}

// viciChanged raises the VICI events an IKE SA's change means, on its
// worker's goroutine.
func (l *loop) viciChanged(ike *sa.IKESA) {
	if !l.d.viciEventsWanted() {
		l.track = nil
		return
	}
	now := time.Now()
	if l.track == nil {
		since := l.d.vici.Since(vici.EvIKEUpDown, vici.EvChildUpDown, vici.EvIKERekey, vici.EvChildRekey)
		if since.IsZero() {
			since = now
		}
		l.track = &viciTrack{since: since, ikes: map[uint32]*ikeSeen{}, owner: map[uint32]uint32{}}
	}
	t, v := l.track, l.d.vici
	seen := t.ikes[ike.UniqueID]
	fresh := seen == nil
	if fresh {
		seen = &ikeSeen{ike: ike, children: map[uint32]bool{}}
		t.ikes[ike.UniqueID] = seen
	}
	var snap *ikectl.IKESA
	snapshot := func() *ikectl.IKESA {
		if snap == nil {
			snap = l.viciSnapshot(ike)
		}
		return snap
	}
	up := ike.State == sa.Established
	switch {
	case up && !seen.up && (!fresh || ike.Established.After(t.since)):
		seen.up = true
		// A new IKE SA with Child SAs another one had is its rekey.
		var old *ikeSeen
		for _, ch := range ike.Children {
			if o, ok := t.owner[ch.UniqueID]; ok && o != ike.UniqueID {
				old = t.ikes[o]
				break
			}
		}
		if old != nil {
			v.IKERekey(l.viciSnapshot(old.ike), snapshot())
			old.up = false // its end is the rekey's, not a down
		} else {
			v.IKEUpDown(snapshot(), true)
		}
	case up && fresh:
		seen.up = true // up before anyone listened
	case seen.up && (ike.State == sa.Deleting || ike.State == sa.Destroyed):
		seen.up = false
		l.viciDown(snapshot(), seen)
		return
	case ike.State == sa.Rekeyed:
		seen.up = false
	}
	present := map[uint32]bool{}
	for _, ch := range ike.Children {
		present[ch.UniqueID] = true
		prevOwner, owned := t.owner[ch.UniqueID]
		t.owner[ch.UniqueID] = ike.UniqueID
		wasUp, known := seen.children[ch.UniqueID]
		if owned && prevOwner != ike.UniqueID {
			// Moved here by an IKE rekey: still the same Child SA.
			known, wasUp = true, true
		}
		installed := ch.State == sa.ChildInstalled || ch.State == sa.ChildRekeying
		switch {
		case installed && !wasUp && (known || ch.Installed.After(t.since)):
			seen.children[ch.UniqueID] = true
			s := snapshot()
			c := childOf(s, ch.UniqueID)
			if ch.Replaces != 0 {
				var oldc *ikectl.ChildSA
				for i := range s.Children {
					if s.Children[i].SPIIn == ch.Replaces {
						oldc = &s.Children[i]
					}
				}
				if oldc != nil {
					v.ChildRekey(s, oldc, c)
					continue
				}
			}
			v.ChildUpDown(s, c, true)
		case installed:
			seen.children[ch.UniqueID] = true
		case wasUp && ch.State == sa.ChildRekeyed:
			seen.children[ch.UniqueID] = false // ends as rekeyed, no down
		case wasUp && (ch.State == sa.ChildDeleting || ch.State == sa.ChildDeleted):
			seen.children[ch.UniqueID] = false
			s := snapshot()
			v.ChildUpDown(s, childOf(s, ch.UniqueID), false)
		default:
			seen.children[ch.UniqueID] = wasUp
		}
	}
	for id := range seen.children {
		if !present[id] {
			delete(seen.children, id)
			if t.owner[id] != ike.UniqueID {
				continue
			}
			if ike.State == sa.Rekeyed {
				// Moved to the IKE SA that replaces this one, which may
				// change after: it finds its predecessor by them.
				seen.moved = append(seen.moved, id)
			} else {
				delete(t.owner, id)
			}
		}
	}
}

// viciGone raises ike-updown (down) for an IKE SA that ended up.
func (l *loop) viciGone(ike *sa.IKESA) {
	t := l.track
	if t == nil {
		return
	}
	seen := t.ikes[ike.UniqueID]
	if seen == nil {
		return
	}
	delete(t.ikes, ike.UniqueID)
	for id := range seen.children {
		if t.owner[id] == ike.UniqueID {
			delete(t.owner, id)
		}
	}
	for _, id := range seen.moved {
		if t.owner[id] == ike.UniqueID {
			delete(t.owner, id)
		}
	}
	if seen.up && l.d.viciEventsWanted() {
		l.viciDown(l.viciSnapshot(ike), seen)
	}
}

// viciDown raises what an IKE SA's end means, as charon does: child-updown
// (down) for each of its Child SAs that was up, then ike-updown (down).
func (l *loop) viciDown(s *ikectl.IKESA, seen *ikeSeen) {
	v := l.d.vici
	for i := range s.Children {
		c := &s.Children[i]
		if seen.children[c.UniqueID] {
			seen.children[c.UniqueID] = false
			v.ChildUpDown(s, c, false)
		}
	}
	v.IKEUpDown(s, false)
}
