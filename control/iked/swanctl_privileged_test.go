package iked_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
	"github.com/spugate/spugate/testbed/strongswan"
)

// swanctl writes the gateway's configuration of connection "tun" as a
// swanctl.conf, its secrets included from conf.d as swanctl's are.
func (c conf) swanctl(extra string) string {
	return fmt.Sprintf(`# swanctl.conf of the lab
iked {
  retransmit_timeout = 1s
  retransmit_tries = 3
}
connections {
  tun {
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-x25519
    mobike = no
    dpd_delay = 30s
    rekey_time = 4h
%s    local-1 {
      auth = psk
      id = %s
    }
    remote-1 {
      auth = psk
      id = "%s"
    }
    children {
      net {
        local_ts = %s
        remote_ts = %s
        esp_proposals = aes128gcm16, aes256-sha256
        rekey_time = 1h
        dpd_action = restart
        start_action = none
      }
    }
  }
}
include conf.d/*.conf
`, c.local, c.remote, extra, c.localID, c.remoteID, strings.ReplaceAll(c.localTS, ",", ", "), c.remoteTS)
}

const swanctlSecrets = `secrets {
  ike-lab {
    id-a = gw-a.example
    id-b = gw-b.example
    secret = "` + psk + `"
  }
}
`

// TestPrivilegedIkedSwanctlConf: iked on both gateways started with
// -config pointing at a swanctl.conf (strongSwan's syntax, secrets in an
// included file) brings the tunnel up and carries a ping; a key it ignores
// is logged with its file, line and key.
func TestPrivilegedIkedSwanctlConf(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	ca, cb := tb.confs()
	for _, g := range []struct {
		g    *gw
		conf string
	}{{tb.a, ca.swanctl("")}, {tb.b, cb.swanctl("    pull = yes\n")}} {
		dir := filepath.Join(os.TempDir(), fmt.Sprintf("spugate-%s-iked", g.g.spud.Host.NS), "conf.d")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "secrets.conf"), []byte(swanctlSecrets), 0o600); err != nil {
			t.Fatal(err)
		}
		k, err := daemons.StartIked(g.g.spud, daemons.IkedOptions{Swanctl: g.conf, Args: []string{"-log-level", "debug"}})
		if err != nil {
			t.Fatal(err)
		}
		g.g.iked = k
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- iked on %s ---\n%s", g.g.name, tail(k.Proc.Log(), 120))
			}
			k.Stop()
			k.Cleanup()
		})
	}
	if !strings.HasSuffix(tb.a.iked.Config, "swanctl.conf") {
		t.Fatalf("iked runs with %s", tb.a.iked.Config)
	}
	tb.tunnelUp(t)
	if sas := tb.b.sas(t); len(sas) != 1 || len(sas[0].Children) != 1 {
		t.Errorf("gw-b's SAs: %+v", sas)
	}
	if !waitFor(2*time.Second, func() bool {
		return strings.Contains(tb.b.iked.Proc.Log(), "connections.tun.pull: ignored")
	}) {
		t.Errorf("gw-b did not log pull = yes as ignored:\n%s", tail(tb.b.iked.Proc.Log(), 30))
	}
	// A reload reads the swanctl.conf again.
	tb.a.spuctl(t, "reload")
}

// TestPrivilegedInteropSwanctlConf: charon on gw-b and iked on gw-a each
// read a swanctl.conf written by the same writer (testbed/strongswan's,
// whose file charon's swanctl --load-all takes): the tunnel comes up
// from either side and carries traffic both ways.
func TestPrivilegedInteropSwanctlConf(t *testing.T) {
	strongswan.Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true, GatewayLinks: lab.LinkOptions{Queues: 2}}, "ping")
	a := &gw{name: "gw-a", host: ln.GwA}
	s, err := daemons.StartSpud(ln.GwA, daemons.SpudOptions{SPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	a.spud = s
	t.Cleanup(func() { s.Stop() })
	mod := func(c *strongswan.Conn) {
		c.Mobike = strongswan.No
		c.DPDDelay = 30 * time.Second
		c.RekeyTime = 4 * time.Hour
		c.Children[0].RekeyTime = time.Hour
	}
	cfgB := charonConf(t, ln, "aes256gcm16-prfsha384-ecp384", "aes256gcm16", mod)
	c, err := strongswan.Start(ln.GwB, cfgB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.Report())
		}
		c.Stop()
	})
	connA, err := strongswan.LineConn(ln, ln.GwA, strongswan.LineConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	connA.Proposals = []string{"aes256gcm16-prfsha384-ecp384"}
	connA.Children[0].ESPProposals = []string{"aes256gcm16"}
	connA.Local.Auth, connA.Remote.Auth = "psk", "psk"
	mod(&connA)
	conf, err := strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{connA}, Secrets: strongswan.LinePSK([]byte(interopPSK))}.SwanctlConf()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gw-a's swanctl.conf, as charon would read it:\n%s", conf)
	k, err := daemons.StartIked(s, daemons.IkedOptions{Swanctl: conf, Args: []string{"-log-level", "debug"}})
	if err != nil {
		t.Fatal(err)
	}
	a.iked = k
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- iked on gw-a ---\n%s", tail(k.Proc.Log(), 120))
		}
		k.Stop()
		k.Cleanup()
	})
	p := ln.Plan
	a.spuctl(t, "initiate", "site")
	if _, err := c.WaitEstablished("site", "net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	pingUp(t, ln.ClientA, p.ClientA4, p.ClientB4)
	mustPing(t, ln.ClientB, p.ClientB4, p.ClientA4)
	a.spuctl(t, "terminate", "site")
	gone(t, a)
	if _, err := c.WaitSAs(func(s []strongswan.IKESA) bool { return len(s) == 0 }, 10*time.Second); err != nil {
		t.Errorf("charon kept its IKE SA: %v", err)
	}
	if err := c.Initiate("net", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if sas := a.sas(t); len(sas) != 1 || sas[0].Initiator || len(sas[0].Children) != 1 {
		t.Fatalf("iked as responder: %+v", sas)
	}
	pingUp(t, ln.ClientA, p.ClientA6, p.ClientB6)

	// One file for both: charon's own swanctl.conf with iked's section
	// added is loaded by Debian's swanctl into charon (it skips the iked
	// section) and accepted by iked -check-config.
	confB, err := cfgB.SwanctlConf()
	if err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(t.TempDir(), "swanctl.conf")
	if err := os.WriteFile(both, []byte("iked {\n  spud = /run/spugate/spud.sock\n}\n"+confB), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Swanctl("--load-conns", "--file", both); err != nil || !strings.Contains(string(out), "loaded connection 'site'") {
		t.Errorf("swanctl --load-conns of the shared file: %v\n%s", err, out)
	}
	bin, err := daemons.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(bin, "iked"), "-check-config", "-config", both).CombinedOutput(); err != nil || !strings.Contains(string(out), "configuration good: 1 connections") {
		t.Errorf("iked -check-config of the shared file: %v\n%s", err, out)
	}
}
