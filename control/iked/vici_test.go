package iked

import (
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/vici"
	"github.com/spugate/spugate/dataplane/anchor"
)

// TestVICIEventsFromChanges drives a worker's event tracking with the
// changes an IKE SA goes through (established with a Child SA, Child SA
// rekey, IKE SA rekey, delete) and checks the events a registered client
// gets, in order: up/down once each, rekeys as rekeys, nothing for SAs
// that were up before the client registered.
func TestVICIEventsFromChanges(t *testing.T) {
	srv := vici.NewServer(nil)
	srv.Events(vici.EvIKEUpDown, vici.EvChildUpDown, vici.EvIKERekey, vici.EvChildRekey)
	path := filepath.Join(t.TempDir(), "v.sock")
	if err := srv.Listen(path, ""); err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	defer srv.Close()
	m, err := anchor.NewMap(256, []uint16{0})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{vici: srv}
	d.spus.Store(m)
	l := &loop{d: d}

	// Up before anyone listens: nothing now, nothing later.
	early := &sa.IKESA{UniqueID: 100, ConnName: "early", State: sa.Established, Anchored: true, Established: time.Now(),
		Children: []*sa.ChildSA{{UniqueID: 101, Name: "c", State: sa.ChildInstalled, Installed: time.Now(), SPIIn: 0x100}}}
	l.viciChanged(early)

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, ev := range []string{vici.EvIKEUpDown, vici.EvChildUpDown, vici.EvIKERekey, vici.EvChildRekey} {
		vici.WritePacket(c, vici.Packet{Type: vici.EventRegister, Name: ev})
		if p, err := vici.ReadPacket(c); err != nil || p.Type != vici.EventConfirm {
			t.Fatal(p, err)
		}
	}
	time.Sleep(time.Millisecond) // the subscription's start is before what follows
	l.viciChanged(early)

	ike := &sa.IKESA{UniqueID: 1, ConnName: "tun", State: sa.Connecting, Anchored: true}
	l.viciChanged(ike)
	ike.State, ike.Established = sa.Established, time.Now()
	ike.Children = []*sa.ChildSA{{UniqueID: 2, Name: "net", State: sa.ChildInstalled, Installed: time.Now(), SPIIn: 0xa}}
	l.viciChanged(ike)
	// Child SA rekey: the new one replaces 0xa, the old one is REKEYED
	// then deleted.
	ike.Children[0].State = sa.ChildRekeyed
	ike.Children = append(ike.Children, &sa.ChildSA{UniqueID: 3, Name: "net", State: sa.ChildInstalled, Installed: time.Now(), SPIIn: 0xb, Replaces: 0xa})
	l.viciChanged(ike)
	ike.Children[0].State = sa.ChildDeleted
	l.viciChanged(ike)
	ike.Children = ike.Children[1:]
	l.viciChanged(ike)
	// IKE SA rekey: the Child SA moves to the new IKE SA.
	next := &sa.IKESA{UniqueID: 4, ConnName: "tun", State: sa.Established, Anchored: true, Established: time.Now(), Children: ike.Children}
	ike.State, ike.Children = sa.Rekeyed, nil
	l.viciChanged(ike)
	l.viciChanged(next)
	l.viciGone(ike)
	// Delete: the Child SA's down, then the IKE SA's; once.
	next.State = sa.Deleting
	l.viciChanged(next)
	l.viciGone(next)
	l.viciGone(early)

	want := []struct {
		name string
		up   bool
		id   string
	}{
		{vici.EvIKEUpDown, true, "1"}, {vici.EvChildUpDown, true, "1"}, {vici.EvChildRekey, false, "1"},
		{vici.EvIKERekey, false, ""}, {vici.EvChildUpDown, false, "4"}, {vici.EvIKEUpDown, false, "4"},
		// early's end: it was up, and a client listens.
		{vici.EvChildUpDown, false, "100"}, {vici.EvIKEUpDown, false, "100"},
	}
	for i, w := range want {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		p, err := vici.ReadPacket(c)
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, w.name, err)
		}
		if p.Name != w.name || (p.Msg.Get("up") == "yes") != w.up {
			t.Fatalf("event %d: %s up=%q, want %s up=%v\n%s", i, p.Name, p.Msg.Get("up"), w.name, w.up, p.Msg)
		}
		subs := p.Msg.Subs()
		if len(subs) != 1 {
			t.Fatalf("event %d: %s", i, p.Msg)
		}
		if w.id != "" && subs[0].Section.Get("uniqueid") != w.id {
			t.Errorf("event %d (%s): IKE SA %s, want %s", i, w.name, subs[0].Section.Get("uniqueid"), w.id)
		}
		switch w.name {
		case vici.EvChildRekey:
			net := subs[0].Section.Sub("child-sas").Sub("net")
			if net.Sub("old").Get("spi-in") != "0000000a" || net.Sub("new").Get("spi-in") != "0000000b" {
				t.Errorf("child-rekey: %s", p.Msg)
			}
		case vici.EvIKERekey:
			if subs[0].Section.Sub("old").Get("uniqueid") != "1" || subs[0].Section.Sub("new").Get("uniqueid") != "4" {
				t.Errorf("ike-rekey: %s", p.Msg)
			}
		}
	}
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if p, err := vici.ReadPacket(c); err == nil {
		t.Errorf("one event too many: %s %s", p.Name, p.Msg)
	}
}

// TestVICIConnYAML: a connection as swanctl sends it in load-conn (its
// swanctl.conf tree) reads as iked's configuration; what iked cannot
// take over VICI is refused, naming it; unknown keys are the parser's
// errors. (Certificates over VICI: vicicreds_test.go.)
func TestVICIConnYAML(t *testing.T) {
	tree := func() *vici.Section {
		c := &vici.Section{}
		c.Set("version", "2").SetList("local_addrs", []string{"198.18.0.1"}).SetList("remote_addrs", []string{"198.18.0.2"}).
			SetList("proposals", []string{"aes128gcm16-prfsha256-x25519"}).Set("dpd_delay", "30s").Set("rekey_time", "14400")
		c.AddSection("local-1").Set("auth", "psk").Set("id", "C=CH, O=lab, CN=gw \"a\"")
		c.AddSection("remote-1").Set("auth", "psk").Set("id", "gw-b.example")
		ch := c.AddSection("children").AddSection("lan")
		ch.SetList("local_ts", []string{"198.18.1.0/24", "2001:db8:1::/64"}).SetList("remote_ts", []string{"198.18.2.0/24"}).
			SetList("esp_proposals", []string{"aes128gcm16"}).Set("start_action", "none").Set("rekey_time", "3600")
		return c
	}
	cfg, err := viciConn("site", tree())
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections["site"]
	if c == nil || c.Local.Identity.String() != `C=CH, O=lab, CN=gw "a"` || c.DPDDelay.D() != 30*time.Second || c.RekeyTime.D() != 4*time.Hour ||
		len(c.ChildOrder) != 1 || len(c.Children["lan"].LocalTS) != 2 {
		t.Errorf("parsed %+v", c)
	}
	for name, mod := range map[string]func(c *vici.Section){
		"not supported by iked: raw public keys": func(c *vici.Section) { c.Sub("remote-1").SetList("pubkeys", []string{"DER"}) },
		"auth pubkey needs certs":                func(c *vici.Section) { c.Sub("local-1").Elements[0].Value = "pubkey" },
		"one local":                              func(c *vici.Section) { c.AddSection("local-2").Set("auth", "psk") },
		"site.pools: address pools (virtual IPs) are not supported; config: site: missing local authentication": func(c *vici.Section) {
			c.Set("pools", "p")
			c.Elements = slices.DeleteFunc(c.Elements, func(e vici.Element) bool { return e.Name == "local-1" })
		},
		"site.children.lan.mode": func(c *vici.Section) { c.Sub("children").Sub("lan").Set("mode", "beet") },
	} {
		c := tree()
		mod(c)
		_, err := viciConn("site", c)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), name) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %q (want it named, in one line)", name, err)
		}
	}
}
