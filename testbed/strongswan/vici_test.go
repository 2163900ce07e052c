package strongswan

import (
	"bytes"
	"net"
	"path/filepath"
	"reflect"
	"testing"
	"time"
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

func TestVICIDecodeReadme(t *testing.T) {
	s, err := decodeMessage(readmeExample)
	if err != nil {
		t.Fatal(err)
	}
	if s.Get("key1") != "value1" || s.Sub("section1").Sub("sub-section").Get("key2") != "value2" {
		t.Errorf("decoded %s", s)
	}
	if l := s.Sub("section1").List("list1"); !reflect.DeepEqual(l, []string{"item1", "item2"}) {
		t.Errorf("list1 = %q", l)
	}
	enc, err := encodeMessage(nil, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, readmeExample) {
		t.Errorf("re-encoded\n%v\nwant\n%v", enc, readmeExample)
	}
}

func TestVICIDecodeErrors(t *testing.T) {
	for name, b := range map[string][]byte{
		"unclosed section": {1, 1, 'a'},
		"stray end":        {2},
		"unclosed list":    {4, 1, 'l'},
		"item outside":     {5, 0, 0},
		"list end outside": {6},
		"kv in list":       {4, 1, 'l', 3, 1, 'k', 0, 0, 6},
		"section in list":  {4, 1, 'l', 1, 1, 's', 2, 6},
		"name overrun":     {3, 9, 'k'},
		"value overrun":    {3, 1, 'k', 0, 9, 'v'},
		"no value length":  {3, 1, 'k', 0},
		"unknown type":     {9},
		"no name length":   {1},
		"too deep":         bytes.Repeat([]byte{1, 0}, viciMaxDepth+2),
	} {
		if _, err := decodeMessage(b); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestVICIPacket(t *testing.T) {
	typ, name, msg, err := parsePacket(append([]byte{viciEvent, 7, 'l', 'i', 's', 't', '-', 's', 'a'}, readmeExample...))
	if err != nil || typ != viciEvent || name != "list-sa" || msg.Get("key1") != "value1" {
		t.Errorf("event: %d %q %v %v", typ, name, msg, err)
	}
	if typ, _, msg, err := parsePacket([]byte{viciEventConfirm}); err != nil || typ != viciEventConfirm || msg != nil {
		t.Errorf("confirm: %d %v %v", typ, msg, err)
	}
	for _, b := range [][]byte{{}, {viciEvent}, {viciEvent, 5, 'a'}, {42}, {viciCmdResponse, 2}} {
		if _, _, _, err := parsePacket(b); err == nil {
			t.Errorf("%v: no error", b)
		}
	}
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
			func() error { return expect(srv, viciEventRegister, "control-log") },
			func() error { return srv.writePacket(viciEventConfirm, "", nil) },
			func() error { return expect(srv, viciCmdRequest, "initiate") },
			func() error { return srv.writePacket(viciEvent, "control-log", ev) },
			func() error { return srv.writePacket(viciEvent, "other", ev) },
			func() error { return srv.writePacket(viciCmdResponse, "", (&Section{}).Set("success", "yes")) },
			func() error { return expect(srv, viciEventUnreg, "control-log") },
			func() error { return srv.writePacket(viciEvent, "control-log", ev) },
			func() error { return srv.writePacket(viciEventConfirm, "", nil) },
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

func expect(v *viciConn, typ byte, name string) error {
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
	enc, err := encodeMessage(nil, ev)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := decodeMessage(enc)
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
		s, err := decodeMessage(b)
		if err != nil {
			return
		}
		enc, err := encodeMessage(nil, s)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		s2, err := decodeMessage(enc)
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

func FuzzVICIPacket(f *testing.F) {
	f.Add(append([]byte{viciEvent, 7, 'l', 'i', 's', 't', '-', 's', 'a'}, readmeExample...))
	f.Add([]byte{viciCmdResponse})
	f.Add([]byte{viciEventConfirm})
	f.Fuzz(func(t *testing.T, b []byte) {
		parsePacket(b)
	})
}
