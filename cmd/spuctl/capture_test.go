package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/unixrpc"
)

// spuctl capture's help works without spud, and bad flags are usage
// errors (exit 2) that name the flag, before spud is asked anything.
func TestCaptureUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"-s", "/nonexistent.sock", "capture", "--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "pcapng") {
		t.Errorf("capture --help: exit %d: %s%s", code, out.String(), errOut.String())
	}
	for _, c := range []struct{ args, want string }{
		{"capture", "-w FILE is required"},
		{"capture -w f --spi nope", `--spi "nope"`},
		{"capture -w f --spi 5 --reqid 3", "one of --spi, --reqid and --tunnel"},
		{"capture -w f --point esp-in,bogus", `--point "bogus"`},
		{"capture -w f --snaplen 0", "--snaplen 0"},
		{"capture -w f --count -1", "negative"},
	} {
		out.Reset()
		errOut.Reset()
		code := run(append([]string{"-s", "/nonexistent.sock"}, strings.Fields(c.args)...), &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("spuctl %s: exit %d, %q; want 2 and %q", c.args, code, errOut.String(), c.want)
		}
	}
}

// ipv4 is a minimal IPv4 packet of protocol proto carrying payload.
func ipv4(proto byte, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	copy(p[12:], []byte{198, 18, 0, 2, 198, 18, 0, 1})
	return append(p, payload...)
}

// spuctl capture writes what spud's pages hold as pcapng, an interface per
// SPU and point and one per drop reason, which pcapgo's reader and
// tshark (when installed) read back: the packets, their lengths and the
// ESP SPI.
func TestCaptureWritesPCAPNG(t *testing.T) {
	esp := ipv4(50, []byte{0xc1, 0xa0, 0xf0, 0x0d, 0, 0, 0, 1, 9, 9, 9, 9})
	icmp := ipv4(1, []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0})
	pkts := [][]byte{esp, icmp, esp}
	recs := []api.CaptureRecord{
		{Time: 1e18, SPU: 1, Point: "esp-in", SPI: 0xc1a0f00d, ReqID: 7, Len: len(esp), N: len(esp)},
		{Time: 1e18 + 1000, SPU: 1, Point: "clear-out", SPI: 0xc1a0f00d, ReqID: 7, Len: len(icmp) + 100, N: len(icmp)},
		{Time: 1e18 + 2000, SPU: 0, Point: "drop", Reason: "sa_replay", SPI: 0xc1a0f00d, ReqID: 7, Len: len(esp), N: len(esp)},
	}
	s := fakeServer(t, "spud.sock")
	var started api.CaptureStart
	s.Handle(api.OpCaptureStart, func(m json.RawMessage) (any, error) {
		if err := json.Unmarshal(m, &started); err != nil {
			return nil, err
		}
		return api.CaptureStarted{ID: 3, SPUs: []int{0, 1}, SPI: started.SPI, Snaplen: started.Snaplen}, nil
	})
	reads := 0
	s.Handle(api.OpCaptureRead, func(json.RawMessage) (any, error) {
		reads++
		if reads == 1 {
			return unixrpc.WithData{Body: api.CapturePage{Records: recs[:2], Lost: 1}, Data: bytes.Join(pkts[:2], nil)}, nil
		}
		return unixrpc.WithData{Body: api.CapturePage{Records: recs[2:], Lost: 2, Done: true, Why: "count"}, Data: pkts[2]}, nil
	})
	sock := serve(t, s, "spud.sock")
	file := filepath.Join(t.TempDir(), "c.pcapng")
	var out, errOut bytes.Buffer
	if code := run([]string{"-s", sock, "capture", "--spi", "0xc1a0f00d", "--count", "3", "--point", "esp-in,clear-out,drop",
		"-w", file}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if started.SPI != 0xc1a0f00d || started.Count != 3 || started.Points != "esp-in,clear-out,drop" || started.Snaplen != 2048 {
		t.Errorf("capture.start %+v", started)
	}
	if !strings.Contains(errOut.String(), "3 packets captured (count), 2 copies lost") {
		t.Errorf("stderr: %q", errOut.String())
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := range pkts {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		intf, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, intf.Name)
		if !bytes.Equal(data, pkts[i]) || ci.Length != recs[i].Len || ci.Timestamp.UnixNano() != recs[i].Time || intf.LinkType != layers.LinkTypeRaw {
			t.Errorf("packet %d: % x len %d at %v on %+v", i, data, ci.Length, ci.Timestamp, intf)
		}
	}
	if want := []string{"spu1 esp-in", "spu1 clear-out", "spu0 drop sa_replay"}; !slices.Equal(names, want) {
		t.Errorf("interfaces %q, want %q", names, want)
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		return
	}
	got, err := exec.Command("tshark", "-n", "-r", file, "-T", "fields", "-E", "separator=|", "-e", "frame.interface_name",
		"-e", "esp.spi", "-e", "icmp.type").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	if want := "spu1 esp-in|0xc1a0f00d|\nspu1 clear-out||8\nspu0 drop sa_replay|0xc1a0f00d|\n"; string(got) != want {
		t.Errorf("tshark read %q, want %q", got, want)
	}
}
