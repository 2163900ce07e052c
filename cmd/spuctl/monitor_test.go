package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/control/vici"
)

// fakeVICIBackend is a daemon behind control/vici's server with nothing
// to list: monitor only registers for events.
type fakeVICIBackend struct{}

var errFake = errors.New("fake iked: not served")

func (fakeVICIBackend) Daemon() (string, time.Time)   { return "iked", time.Now() }
func (fakeVICIBackend) Stats() (*ikectl.Stats, error) { return nil, errFake }
func (fakeVICIBackend) Conns() (*ikectl.Conns, error) { return nil, errFake }
func (fakeVICIBackend) SAPage(uint32, int) (*ikectl.SAs, error) {
	return nil, errFake
}
func (fakeVICIBackend) Initiate(ikectl.Initiate) (*ikectl.Result, error)   { return nil, errFake }
func (fakeVICIBackend) Terminate(ikectl.Terminate) (*ikectl.Result, error) { return nil, errFake }
func (fakeVICIBackend) Rekey(ikectl.Rekey) (*ikectl.Result, error)         { return nil, errFake }
func (fakeVICIBackend) Reload() (*ikectl.ReloadResult, error)              { return nil, errFake }
func (fakeVICIBackend) Certs() ([]vici.Cert, error)                        { return nil, errFake }

// fakeVICI serves control/vici's server, as iked does, on a socket of
// the test's.
func fakeVICI(t *testing.T) (*vici.Server, string) {
	t.Helper()
	s := vici.NewServer(slog.New(slog.NewTextHandler(io.Discard, nil)))
	vici.Register(s, fakeVICIBackend{})
	path := filepath.Join(t.TempDir(), "vici.sock")
	if err := s.Listen(path, ""); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Close() })
	return s, path
}

// monitorSAs are an IKE SA with a Child SA, and both after a rekey.
func monitorSAs() (ike, ike2 ikectl.IKESA, child, child2 ikectl.ChildSA) {
	child = ikectl.ChildSA{Name: "net", UniqueID: 5, ReqID: 2, State: "INSTALLED", SPIIn: 0xc1000001, SPIOut: 0xc2000002,
		Encap: true, LocalTS: []string{"198.18.1.0/24"}, RemoteTS: []string{"198.18.2.0/24"}, SPU: 1, Proposal: "AES_GCM_16_128"}
	ike = ikectl.IKESA{Conn: "tun", UniqueID: 3, State: "ESTABLISHED", Initiator: true, SPIi: "0123456789abcdef", SPIr: "fedcba9876543210",
		Local: netip.MustParseAddrPort("198.18.0.1:500"), Remote: netip.MustParseAddrPort("198.18.0.2:500"),
		LocalID: "gw-a", RemoteID: "gw-b", SPU: 1, Logical: 77, Established: time.Now(),
		Children: []ikectl.ChildSA{child}}
	child2 = child
	child2.UniqueID, child2.SPIIn, child2.SPIOut = 6, 0xc1000003, 0xc2000004
	ike2 = ike
	ike2.UniqueID, ike2.SPIi, ike2.SPIr = 4, "1111111111111111", "2222222222222222"
	return
}

// raise publishes every kind of event once the monitor has registered
// (for log too, with withLog): what iked raises as a tunnel comes up,
// rekeys and goes down.
func raise(t *testing.T, s *vici.Server, withLog bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !s.Subscribed(vici.EvChildRekey) || withLog && !s.Subscribed(vici.EvLog) {
		if time.Now().After(deadline) {
			t.Error("spuctl monitor did not register")
			return
		}
		time.Sleep(time.Millisecond)
	}
	ike, ike2, child, child2 := monitorSAs()
	log := slog.New(s.LogHandler(slog.NewTextHandler(io.Discard, nil)))
	s.IKEUpDown(&ike, true)
	s.ChildUpDown(&ike, &child, true)
	log.Debug("not raised")
	log.Info("IKE SA established", "conn", "tun", "ike_id", 3)
	s.ChildRekey(&ike, &child, &child2)
	s.IKERekey(&ike, &ike2)
	log.Warn("peer silent", "conn", "tun", "ike_id", 4)
	s.ChildUpDown(&ike2, &child2, false)
	s.IKEUpDown(&ike2, false)
}

// spuctl monitor prints a line per event as documented, stops after
// --count, and shows log lines at the --log level.
func TestMonitorText(t *testing.T) {
	for _, c := range []struct {
		log  string
		want []string
	}{
		{"", []string{
			`ike-up tun#3 198.18.0.1:500[gw-a] <-> 198.18.0.2:500[gw-b] ESTABLISHED spi_i=0123456789abcdef spi_r=fedcba9876543210 spu=1`,
			`child-up tun/net#5 (ike #3) INSTALLED reqid=2 spi_in=c1000001 spi_out=c2000002 198.18.1.0/24 === 198.18.2.0/24 encap`,
			`child-rekey tun/net#5 -> #6 (ike #3) spi_in=c1000001 -> c1000003 spi_out=c2000002 -> c2000004`,
			`ike-rekey tun#3 -> #4 198.18.0.1:500[gw-a] <-> 198.18.0.2:500[gw-b] spi_i=0123456789abcdef -> 1111111111111111 spi_r=fedcba9876543210 -> 2222222222222222`,
			`child-down tun/net#6 (ike #4) INSTALLED reqid=2 spi_in=c1000003 spi_out=c2000004 198.18.1.0/24 === 198.18.2.0/24 encap`,
			`ike-down tun#4 198.18.0.1:500[gw-a] <-> 198.18.0.2:500[gw-b] ESTABLISHED spi_i=1111111111111111 spi_r=2222222222222222 spu=1`,
		}},
		{"info", []string{"ike-up ", "child-up ", "log info tun#3: IKE SA established conn=tun ike_id=3", "child-rekey ", "ike-rekey ",
			"log warn tun#4: peer silent conn=tun ike_id=4", "child-down ", "ike-down "}},
		{"warn", []string{"ike-up ", "child-up ", "child-rekey ", "ike-rekey ", "log warn tun#4: peer silent", "child-down ", "ike-down "}},
	} {
		t.Run("log="+c.log, func(t *testing.T) {
			s, path := fakeVICI(t)
			args := []string{"monitor", "--vici-socket", path, "--count", "7"}
			if c.log != "" {
				args = append(args, "--log", c.log)
			}
			if len(c.want) < 7 {
				args[4] = "6"
			}
			go raise(t, s, c.log != "")
			code, out, errOut := spuctl(args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != min(7, len(c.want)) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), min(7, len(c.want)), out)
			}
			stamp := regexp.MustCompile(`^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ `)
			for i, l := range lines {
				if !stamp.MatchString(l) || !strings.HasPrefix(l[21:], c.want[i]) {
					t.Errorf("line %d: %q, want time then %q", i, l, c.want[i])
				}
			}
		})
	}
}

// -o json writes one object a line whose fields are those
// docs/operations.md documents for spuctl monitor.
func TestMonitorJSONAsDocumented(t *testing.T) {
	s, path := fakeVICI(t)
	go raise(t, s, true)
	code, out, errOut := spuctl("monitor", "--vici-socket", path, "-o", "json", "--log", "info", "--count", "8")
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 8 {
		t.Fatalf("exit %d, %q: %s", code, errOut, out)
	}
	d, ok := docSchemas(t)["monitor"]
	if !ok {
		t.Fatal("docs/operations.md has no \"#### `spuctl monitor -o json`\"")
	}
	d.check(t, "monitor", out, true)
	var ev monitorEvent
	line, _, _ := strings.Cut(out, "\n")
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Event != "ike-up" || ev.IKE.UniqueID != 3 || ev.IKE.Logical != 77 ||
		ev.IKE.Local != "198.18.0.1:500" || time.Since(ev.Time) > time.Minute {
		t.Errorf("first line: %v: %+v", err, ev)
	}
}

// --duration ends a quiet stream with exit 0; iked going away is a
// failure naming its VICI socket; no iked is a dial error naming it.
func TestMonitorEnds(t *testing.T) {
	s, path := fakeVICI(t)
	start := time.Now()
	code, out, errOut := spuctl("monitor", "--vici-socket", path, "--duration", "300ms")
	if el := time.Since(start); code != 0 || out != "" || errOut != "" || el < 300*time.Millisecond || el > 5*time.Second {
		t.Errorf("--duration 300ms: exit %d after %v, %q %q", code, el, out, errOut)
	}
	// The first monitor's registrations end as the server sees it go.
	for s.Subscribed(vici.EvChildRekey) {
		time.Sleep(time.Millisecond)
	}
	go func() {
		for !s.Subscribed(vici.EvChildRekey) {
			time.Sleep(time.Millisecond)
		}
		s.Close()
	}()
	code, _, errOut = spuctl("monitor", "--vici-socket", path)
	if code != 1 || !strings.HasPrefix(errOut, "spuctl monitor: iked (VICI) at "+path+": events: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("iked gone: exit %d, %q", code, errOut)
	}
	nowhere := filepath.Join(t.TempDir(), "vici.sock")
	code, _, errOut = spuctl("monitor", "--vici-socket", nowhere)
	if code != 1 || !strings.Contains(errOut, "spuctl monitor: iked (VICI) at "+nowhere+": connect: no such file or directory (is iked running? --vici-socket") {
		t.Errorf("no iked: exit %d, %q", code, errOut)
	}
	for _, c := range []struct{ args, want string }{
		{"monitor --log debug", `--log "debug": want info or warn`},
		{"monitor --count -1", "--count -1"},
		{"monitor --duration soon", `invalid argument "soon"`},
		{"monitor -o yaml", "want text or json"},
		{"monitor extra", "unknown command"},
	} {
		code, out, errOut := spuctl(append([]string{"monitor", "--vici-socket", nowhere}, strings.Fields(c.args)[1:]...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, c.want) {
			t.Errorf("spuctl %s: exit %d, %q, want %q", c.args, code, errOut, c.want)
		}
	}
}

// spuctl's default VICI socket is iked's.
func TestMonitorDefaultSocket(t *testing.T) {
	if defaultVICISocket != iked.DefaultVICI {
		t.Errorf("spuctl monitor's default %s, iked's %s", defaultVICISocket, iked.DefaultVICI)
	}
}

// An event of a type registered first may come before the next
// registration's confirmation (iked raises events on its workers): it is
// shown, not taken for a wrong answer.
func TestMonitorEventsDuringRegistration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vici.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ike, _, _, _ := monitorSAs()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; ; i++ {
			p, err := vici.ReadPacket(c)
			if err != nil {
				return
			}
			if p.Type != vici.EventRegister {
				t.Errorf("monitor sent %s", p.Type)
				return
			}
			if i == 1 {
				m := (&vici.Section{}).Set("up", "yes")
				vici.IKESA(m, &ike, time.Now())
				vici.WritePacket(c, vici.Packet{Type: vici.Event, Name: vici.EvIKEUpDown, Msg: m})
			}
			vici.WritePacket(c, vici.Packet{Type: vici.EventConfirm})
		}
	}()
	code, out, errOut := spuctl("monitor", "--vici-socket", path, "--count", "1")
	if code != 0 || !strings.Contains(out, " ike-up tun#3 ") || errOut != "" {
		t.Errorf("exit %d, %q, %q", code, out, errOut)
	}
}
