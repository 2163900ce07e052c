package strongswan

import (
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/spugate/spugate/control/vici"
)

// readmeExample is the encoding example of the VICI README.
var readmeExample = []byte{
	3, 4, 'k', 'e', 'y', '1', 0, 6, 'v', 'a', 'l', 'u', 'e', '1',
	1, 8, 's', 'e', 'c', 't', 'i', 'o', 'n', '1',
	1, 11, 's', 'u', 'b', '-', 's', 'e', 'c', 't', 'i', 'o', 'n',
	3, 4, 'k', 'e', 'y', '2', 0, 6, 'v', 'a', 'l', 'u', 'e', '2',
	2,
	4, 5, 'l', 'i', 's', 't', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '1',
	5, 0, 5, 'i', 't', 'e', 'm', '2',
	6,
	2,
}

// TestVICIConn runs call against a fake charon on a socketpair: events
// before, between and after the response are handled as the protocol
// allows.
func TestVICIConn(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		srv := &viciConn{c: c}
		ev := (&Section{}).Set("msg", "hello")
		steps := []func() error{
			func() error { return expect(srv, vici.EventRegister, "control-log") },
			func() error { return srv.writePacket(vici.EventConfirm, "", nil) },
			func() error { return expect(srv, vici.CmdRequest, "initiate") },
			func() error { return srv.writePacket(vici.Event, "control-log", ev) },
			func() error { return srv.writePacket(vici.Event, "other", ev) },
			func() error { return srv.writePacket(vici.CmdResponse, "", (&Section{}).Set("success", "yes")) },
			func() error { return expect(srv, vici.EventUnreg, "control-log") },
			func() error { return srv.writePacket(vici.Event, "control-log", ev) },
			func() error { return srv.writePacket(vici.EventConfirm, "", nil) },
		}
		for _, s := range steps {
			if err := s(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	v, err := dialVICI(sock, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	resp, events, err := v.call("initiate", (&Section{}).Set("child", "net"), "control-log", time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Get("success") != "yes" || len(events) != 2 || events[0].Get("msg") != "hello" {
		t.Errorf("response %v, events %v", resp, events)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func expect(v *viciConn, typ vici.PacketType, name string) error {
	gt, gn, _, err := v.readPacket()
	if err != nil {
		return err
	}
	if gt != typ || gn != name {
		return &net.AddrError{Err: "unexpected packet", Addr: gn}
	}
	return nil
}

func TestParseIKESAs(t *testing.T) {
	child := &Section{}
	child.Set("name", "net").Set("uniqueid", "3").Set("reqid", "1").Set("state", "INSTALLED").Set("mode", "TUNNEL").
		Set("protocol", "ESP").Set("encap", "yes").Set("spi-in", "c1a2b3c4").Set("spi-out", "0000abcd").
		Set("encr-alg", "AES_GCM_16").Set("encr-keysize", "128").Set("bytes-in", "840").Set("packets-in", "10").
		Set("use-in", "2").Set("rekey-time", "3000").Set("life-time", "3600")
	child.Elements = append(child.Elements, Element{Name: "local-ts", Kind: KindList, List: []string{"198.18.1.0/24"}})
	ike := &Section{}
	ike.Set("uniqueid", "1").Set("version", "2").Set("state", "ESTABLISHED").Set("local-host", "198.18.0.1").
		Set("local-port", "4500").Set("local-id", "C=CH, O=x, CN=a b").Set("remote-host", "2001:db8::2").
		Set("initiator", "yes").Set("initiator-spi", "9b28dce012ec84a7").Set("nat-fake", "yes").
		Set("encr-alg", "AES_GCM_16").Set("encr-keysize", "128").Set("established", "5")
	ike.Elements = append(ike.Elements, Element{Name: "child-sas", Kind: KindSection, Section: &Section{Elements: []Element{{Name: "net-3", Kind: KindSection, Section: child}}}})
	ev := &Section{Elements: []Element{{Name: "site", Kind: KindSection, Section: ike}}}
	// Round trip through the wire form, as charon would send it.
	enc, err := vici.AppendMessage(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := vici.DecodeMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	sas, err := parseIKESAs([]*Section{dec})
	if err != nil {
		t.Fatal(err)
	}
	if len(sas) != 1 {
		t.Fatalf("%d SAs", len(sas))
	}
	sa := sas[0]
	if sa.Name != "site" || !sa.Ready() || sa.LocalID != "C=CH, O=x, CN=a b" || sa.LocalPort != 4500 || sa.RemoteHost.String() != "2001:db8::2" ||
		!sa.Initiator || !sa.NATFake || sa.EncrKeySize != 128 || sa.Established != 5 {
		t.Errorf("IKE SA %+v", sa)
	}
	ch := sa.Child("net")
	if ch == nil {
		t.Fatal("no child net")
	}
	if ch.SPIIn != 0xc1a2b3c4 || ch.SPIOut != 0xabcd || !ch.Encap || ch.PacketsIn != 10 || ch.UseIn != 2 || ch.UseOut != -1 ||
		ch.LifeTime != 3600 || !reflect.DeepEqual(ch.LocalTS, []string{"198.18.1.0/24"}) {
		t.Errorf("child %+v", ch)
	}
	child.Elements[0].Value = "x"
	child.Set("packets-out", "many")
	if _, err := parseIKESAs([]*Section{ev}); err == nil {
		t.Error("bad number accepted")
	}
}

func FuzzVICIDecode(f *testing.F) {
	f.Add(readmeExample)
	f.Add([]byte{4, 1, 'l', 5, 0, 1, 'x', 6})
	f.Add([]byte{1, 0, 1, 0, 2, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := vici.DecodeMessage(b)
		if err != nil {
			return
		}
		enc, err := vici.AppendMessage(nil, s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s2, err := vici.DecodeMessage(enc)
		if err != nil {
			t.Fatalf("decode of re-encoding: %v", err)
		}
		if !reflect.DeepEqual(s, s2) {
			t.Fatalf("round trip changed the tree:\n%s\n%s", s, s2)
		}
		parseIKESAs([]*Section{s})
		parseConns([]*Section{s})
	})
}
