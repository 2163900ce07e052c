package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// iked -check-config reads a swanctl.conf as it reads the YAML: good, bad
// with the file, line and key, and the keys it ignores said on stderr.
func TestCheckConfigSwanctl(t *testing.T) {
	dir := t.TempDir()
	conf := func(extra string) string {
		return `connections {
  site-b {
    local_addrs = 198.18.0.1
    remote_addrs = 198.18.0.2
` + extra + `    local {
      auth = psk
      id = gw-a.example
    }
    remote {
      auth = psk
      id = gw-b.example
    }
    children {
      lan {
        local_ts = 198.18.1.0/24
        remote_ts = 198.18.2.0/24
        esp_proposals = aes128gcm16
        start_action = trap
      }
    }
  }
}
secrets {
  ike-b {
    id-1 = gw-b.example
    secret = "a secret"
  }
}
`
	}
	path := filepath.Join(dir, "swanctl.conf")
	run := func(body string) (int, string, string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return runIked(t, "-check-config", "-config", path)
	}
	// The example shipped in deploy/examples reads as it is.
	ex, err := os.ReadFile("../../deploy/examples/swanctl.example.conf")
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errs := run(string(ex)); code != 0 || !strings.Contains(out, "configuration good: 2 connections") || errs != "" {
		t.Errorf("deploy/examples/swanctl.example.conf: exit %d, %q %q", code, out, errs)
	}
	if code, out, errs := run(conf("")); code != 0 || !strings.Contains(out, "configuration good: 1 connections") || errs != "" {
		t.Errorf("good swanctl.conf: exit %d, %q %q", code, out, errs)
	}
	if code, _, errs := run(conf("    mobike = yes\n")); code != 1 || !strings.Contains(errs, path+": line 5: connections.site-b.mobike: mobike is not supported: set mobike = no") {
		t.Errorf("mobike = yes: exit %d, %q", code, errs)
	}
	if code, _, errs := run(strings.Replace(conf(""), "aes128gcm16\n", "aes-gcm\n", 1)); code != 1 || !strings.Contains(errs, path+": line 17: connections.site-b.children.lan.esp_proposals: item 1: ") {
		t.Errorf("bad proposal: exit %d, %q", code, errs)
	}
	if code, _, errs := run(conf("    pull = yes\n")); code != 0 || !strings.Contains(errs, "iked: warning: config: "+path+": line 5: connections.site-b.pull: ignored") {
		t.Errorf("pull = yes: exit %d, %q", code, errs)
	}
}
