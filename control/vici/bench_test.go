package vici_test

import (
	"net"
	"testing"

	"github.com/spugate/spugate/control/vici"
)

// BenchmarkListSAs10k is the server's side of list-sas over 10,000 IKE
// SAs (one Child SA each), read by a client that only parses packets.
func BenchmarkListSAs10k(b *testing.B) {
	f := newFake(10000)
	s := vici.NewServer(nil)
	vici.Register(s, f)
	path := b.TempDir() + "/v.sock"
	if err := s.Listen(path, ""); err != nil {
		b.Fatal(err)
	}
	go s.Serve()
	defer s.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	vici.WritePacket(c, vici.Packet{Type: vici.EventRegister, Name: vici.EvListSA})
	if p, err := vici.ReadPacket(c); err != nil || p.Type != vici.EventConfirm {
		b.Fatal(p, err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vici.WritePacket(c, vici.Packet{Type: vici.CmdRequest, Name: "list-sas"})
		n := 0
		for {
			p, err := vici.ReadPacket(c)
			if err != nil {
				b.Fatal(err)
			}
			if p.Type == vici.CmdResponse {
				break
			}
			n++
		}
		if n != 10000 {
			b.Fatalf("%d events", n)
		}
	}
}
