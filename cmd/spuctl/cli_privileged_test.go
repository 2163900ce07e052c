package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// TestPrivilegedSpuctlJSON runs the spuctl binary, as an operator does,
// against real daemons: spud and iked on two gateways of a lab line, a
// PSK tunnel up and a small load run. Every list and show answers in
// JSON whose fields are documented in docs/operations.md, the Go-style
// flags of the testbed's callers still work, usage errors exit 2, and
// version shows what each daemon says.
func TestPrivilegedSpuctlJSON(t *testing.T) {
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true}, "ping")
	p := ln.Plan
	bin, err := daemons.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	type gw struct {
		spud *daemons.Spud
		iked *daemons.Iked
	}
	var gws [2]gw
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
		gws[i] = gw{s, k}
	}
	a := gws[0]
	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "spuctl"), append([]string{"-s", a.spud.Socket, "-c", a.iked.Socket}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	must := func(args ...string) string {
		t.Helper()
		code, out, errOut := run(args...)
		if code != 0 {
			t.Fatalf("spuctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	must("initiate", "tun", "-timeout", "30s")
	// The testbed's Go-style flags, and their output as the iked tests
	// match it.
	if out := must("load-initiate", "tun", "-count", "3", "-window", "2"); !strings.Contains(out, "done, 3 of 3 started (window 2), 3 established, 0 failed") {
		t.Errorf("load-initiate: %q", out)
	}
	var ls ikectl.LoadResult
	if err := json.Unmarshal([]byte(must("load-status", "tun", "-o", "json")), &ls); err != nil || ls.Established != 3 || !ls.Done {
		t.Errorf("load-status -o json: %v: %+v", err, ls)
	}

	schemas := docSchemas(t)
	for _, c := range []struct {
		cmd   string
		lines bool
		min   int // objects at least
	}{
		{"sa list", true, 8}, {"policy list", true, 1}, {"spu list", false, 1}, {"status", false, 1}, {"stats", false, 1},
		{"list-conns", true, 1}, {"list-sas", true, 4}, {"load-status tun", false, 1}, {"ike-stats", false, 1}, {"version", false, 1},
	} {
		name := strings.TrimSuffix(c.cmd, " tun")
		out := must(append(strings.Fields(c.cmd), "-o", "json")...)
		if n := strings.Count(out, "\n"); c.lines && n < c.min {
			t.Errorf("%s -o json: %d lines, want %d at least:\n%s", c.cmd, n, c.min, out)
		}
		d := schemas[name]
		// Real daemons leave out what is zero: every field written is
		// documented; the fakes' test checks the other way.
		d.optional = d.fields
		d.check(t, name, out, c.lines)
		// What does not move between two calls reads the same with the
		// older -json.
		if json := must(append(strings.Fields(c.cmd), "-json")...); (name == "status" || name == "list-conns") && json != out {
			t.Errorf("%s -json differs from -o json", c.cmd)
		}
	}
	// Both daemons tell their build, and take a log level at run time.
	if out := must("version"); strings.Count(out, " (commit ") != 3 || !strings.Contains(out, "\nspud ") || !strings.Contains(out, "\niked ") {
		t.Errorf("spuctl version:\n%s", out)
	}
	for _, d := range []string{"spud", "iked"} {
		if out := must("log-level", d, "warn"); out != d+" logs at warn\n" {
			t.Errorf("log-level %s warn: %q", d, out)
		}
		if out := must("log-level", d, "debug"); out != d+" logs at debug\n" {
			t.Errorf("log-level %s debug: %q", d, out)
		}
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"initiate"}, 2, "name the connection"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"initiate", "nope"}, 1, `spuctl initiate: initiate nope: iked: initiate: `},
		{[]string{"list-sas", "-h"}, 0, "Usage:\n  spuctl list-sas [CONN] [flags]"},
	} {
		code, out, errOut := run(c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("spuctl %s: exit %d (want %d): %q %q, want %q", strings.Join(c.args, " "), code, c.code, out, errOut, c.want)
		}
	}
	must("terminate", "tun", "-timeout", "60s")
}
