package vici_test

import (
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spugate/spugate/control/vici"
)

// FuzzRequest sends every command iked serves a message a client chose:
// each must answer (a response, never a dropped client or a panic,
// which the server would turn into "internal error"), and the server
// must go on serving.
func FuzzRequest(f *testing.F) {
	cmds := []string{"version", "stats", "list-sas", "list-conns", "get-conns", "list-certs", "initiate", "terminate", "rekey", "reload-settings", "load-conn"}
	seed := func(cmd int, m *vici.Section) {
		b, err := vici.AppendMessage(nil, m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(cmd), b)
	}
	seed(2, (&vici.Section{}).Set("ike-id", "2"))
	seed(2, (&vici.Section{}).Set("ike", "site").Set("noblock", "yes"))
	seed(6, (&vici.Section{}).Set("child", "net").Set("timeout", "-1"))
	seed(7, (&vici.Section{}).Set("child-id", "1001"))
	seed(8, (&vici.Section{}).Set("ike", "site").Set("reauth", "yes"))
	seed(5, (&vici.Section{}).Set("flag", "CA").Set("subject", "x"))
	seed(3, (&vici.Section{}).SetList("ike", []string{"a"}))
	seed(0, (&vici.Section{}).AddSection("s"))

	fake := newFake(5)
	fake.certs = testCerts(f)
	s := vici.NewServer(nil)
	vici.Register(s, fake)
	path := filepath.Join(f.TempDir(), "v.sock")
	if err := s.Listen(path, ""); err != nil {
		f.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	for _, ev := range []string{vici.EvListSA, vici.EvListConn, vici.EvListCert, vici.EvControlLog} {
		vici.WritePacket(c, vici.Packet{Type: vici.EventRegister, Name: ev})
		if p, err := vici.ReadPacket(c); err != nil || p.Type != vici.EventConfirm {
			f.Fatal(p, err)
		}
	}
	f.Fuzz(func(t *testing.T, cmd uint8, msg []byte) {
		m, err := vici.DecodeMessage(msg)
		if err != nil || len(msg) > 4096 {
			return
		}
		name := cmds[int(cmd)%len(cmds)]
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if err := vici.WritePacket(c, vici.Packet{Type: vici.CmdRequest, Name: name, Msg: m}); err != nil {
			t.Fatalf("%s: write: %v", name, err)
		}
		for {
			p, err := vici.ReadPacket(c)
			if err != nil {
				t.Fatalf("%s %s: %v", name, m, err)
			}
			if p.Type == vici.Event {
				continue
			}
			if p.Type != vici.CmdResponse {
				t.Fatalf("%s: %s", name, p.Type)
			}
			if e := p.Msg.Get("errmsg"); slices.Contains([]string{name + ": internal error"}, e) {
				t.Fatalf("%s %s: %s", name, m, e)
			}
			return
		}
	})
}
