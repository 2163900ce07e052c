package iked_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
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
