package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// TestPrivilegedMonitor runs the spuctl binary's monitor, text and -o
// json at once, against a lab gateway's iked (its VICI socket) while a
// PSK tunnel comes up, its Child SA and IKE SA are rekeyed and it goes
// down: each monitor prints the six events in order, with the SAs' ids
// and SPIs as list-sas shows them, and stops at --count 6, exit 0.
func TestPrivilegedMonitor(t *testing.T) {
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true}, "ping")
	p := ln.Plan
	bin, err := daemons.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	var ikeds [2]*daemons.Iked
	for i, h := range []*lab.Host{ln.GwA, ln.GwB} {
		s, err := daemons.StartSpud(h, daemons.SpudOptions{SPUs: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		local, remote, lid, rid, lts, rts := p.GwAWan4, p.GwBWan4, "gw-a.example", "gw-b.example", p.LanA4, p.LanB4
		if i == 1 {
			local, remote, lid, rid, lts, rts = remote, local, rid, lid, rts, lts
		}
		conf := fmt.Sprintf(`retransmit_timeout: 1s
retransmit_tries: 3
connections:
  tun:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    local: {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: aes128gcm16
`, local, remote, lid, rid, lts, rts)
		k, err := daemons.StartIked(s, daemons.IkedOptions{Config: conf,
			Secrets: "ike:\n  s:\n    id: [gw-a.example, gw-b.example]\n    secret: \"lab pre-shared key, 32 bytes long\"\n"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- iked %d ---\n%s", i, k.Proc.Log())
			}
			k.Stop()
			k.Cleanup()
		})
		ikeds[i] = k
	}
	a := ikeds[0]
	spuctlCmd := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(filepath.Join(bin, "spuctl"), append([]string{"-s", a.Spud.Socket, "-c", a.Socket}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("spuctl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Two monitors, text and JSON; the test follows the text one's
	// lines to drive the tunnel step by step.
	type mon struct {
		cmd    *exec.Cmd
		lines  chan string
		stderr bytes.Buffer
	}
	start := func(extra ...string) *mon {
		m := &mon{lines: make(chan string, 16)}
		m.cmd = exec.Command(filepath.Join(bin, "spuctl"), append([]string{"monitor", "--vici-socket", a.VICI, "--count", "6", "--duration", "3m"}, extra...)...)
		m.cmd.Stderr = &m.stderr
		out, err := m.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := m.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.cmd.Process.Kill() })
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				m.lines <- sc.Text()
			}
			close(m.lines)
		}()
		// Registered once connected (a moment): wait for its socket.
		deadline := time.Now().Add(10 * time.Second)
		for !hasSocket(m.cmd.Process.Pid) {
			if time.Now().After(deadline) {
				t.Fatalf("spuctl monitor did not connect: %s", m.stderr.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		return m
	}
	text, js := start(), start("-o", "json")
	time.Sleep(300 * time.Millisecond)
	var got []string
	next := func(want string) string {
		t.Helper()
		select {
		case l, ok := <-text.lines:
			if !ok {
				t.Fatalf("monitor ended after %q (waiting for %s): %s", got, want, text.stderr.String())
			}
			got = append(got, l)
			if !strings.Contains(l, " "+want+" ") {
				t.Fatalf("monitor: %q, want %s (lines so far %q)", l, want, got)
			}
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s event in 60 s (lines so far %q)", want, got)
		}
		return ""
	}

	spuctlCmd("initiate", "tun", "--timeout", "30s")
	sas := spuctlCmd("list-sas", "-o", "json")
	var ike struct {
		UniqueID uint32 `json:"unique_id"`
		SPIi     string `json:"spi_i"`
		Children []struct {
			UniqueID uint32 `json:"unique_id"`
			SPIIn    uint32 `json:"spi_in"`
		} `json:"children"`
	}
	if err := json.Unmarshal([]byte(sas), &ike); err != nil || len(ike.Children) != 1 {
		t.Fatalf("list-sas: %v: %s", err, sas)
	}
	up := next("ike-up")
	if want := fmt.Sprintf(" ike-up tun#%d %s:500[gw-a.example] <-> %s:500[gw-b.example] ESTABLISHED spi_i=%s ", ike.UniqueID, p.GwAWan4, p.GwBWan4, ike.SPIi); !strings.Contains(up, want) {
		t.Errorf("ike-up: %q, want %q", up, want)
	}
	cu := next("child-up")
	if want := fmt.Sprintf(" child-up tun/net#%d (ike #%d) INSTALLED ", ike.Children[0].UniqueID, ike.UniqueID); !strings.Contains(cu, want) ||
		!strings.Contains(cu, fmt.Sprintf("spi_in=%08x", ike.Children[0].SPIIn)) || !strings.Contains(cu, p.LanA4.String()+" === "+p.LanB4.String()) {
		t.Errorf("child-up: %q, want %q, spi_in %08x", cu, want, ike.Children[0].SPIIn)
	}
	spuctlCmd("rekey", "tun", "net")
	cr := next("child-rekey")
	if want := fmt.Sprintf(" child-rekey tun/net#%d -> #", ike.Children[0].UniqueID); !strings.Contains(cr, want) ||
		!strings.Contains(cr, fmt.Sprintf("spi_in=%08x -> ", ike.Children[0].SPIIn)) {
		t.Errorf("child-rekey: %q, want %q", cr, want)
	}
	spuctlCmd("rekey", "tun", "--ike-sa")
	ir := next("ike-rekey")
	if want := fmt.Sprintf(" ike-rekey tun#%d -> #", ike.UniqueID); !strings.Contains(ir, want) || !strings.Contains(ir, "spi_i="+ike.SPIi+" -> ") {
		t.Errorf("ike-rekey: %q, want %q", ir, want)
	}
	spuctlCmd("terminate", "tun", "--timeout", "30s")
	next("child-down")
	next("ike-down")
	if err := text.cmd.Wait(); err != nil {
		t.Errorf("text monitor: %v: %s", err, text.stderr.String())
	}
	stamp := regexp.MustCompile(`^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ [a-z-]+ tun`)
	for _, l := range got {
		if !stamp.MatchString(l) {
			t.Errorf("line %q", l)
		}
	}
	t.Logf("monitor:\n%s", strings.Join(got, "\n"))

	// The JSON monitor saw the same six, as documented.
	var lines []string
	for l := range js.lines {
		lines = append(lines, l)
	}
	if err := js.cmd.Wait(); err != nil || len(lines) != 6 {
		t.Fatalf("json monitor: %v, %d lines: %q %s", err, len(lines), lines, js.stderr.String())
	}
	d := docSchemas(t)["monitor"]
	d.optional = d.fields
	d.check(t, "monitor", strings.Join(lines, "\n")+"\n", true)
	for i, want := range []string{"ike-up", "child-up", "child-rekey", "ike-rekey", "child-down", "ike-down"} {
		var ev monitorEvent
		if err := json.Unmarshal([]byte(lines[i]), &ev); err != nil || ev.Event != want || ev.Conn != "tun" || ev.IKE == nil {
			t.Errorf("json line %d: %v: %s, want %s", i, err, lines[i], want)
		}
	}
}

// hasSocket reports whether process pid has a socket open.
func hasSocket(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			return true
		}
	}
	return false
}
