package message

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spugate/spugate/internal/privileged"
)

// TestPrivilegedCharonLive records fresh exchanges between two strongSwan
// charons (testdata/charon/capture.sh: two network namespaces on
// 198.18.0.0/24, removed at the end, every step bounded in time) and runs
// the same checks as TestCharonExchanges on them: a new Diffie-Hellman
// exchange, new nonces, SPIs and keys each run, so the recorded captures
// are not the only evidence.
func TestPrivilegedCharonLive(t *testing.T) {
	privileged.Require(t, "ip", "tcpdump", "tshark", "swanctl", "pki", "timeout")
	if _, err := os.Stat("/usr/lib/ipsec/charon"); err != nil {
		t.Skip("strongSwan's charon is not installed")
	}
	for _, c := range [][]string{
		{"live-gcm", "aes256gcm16-prfsha384-x25519", "aes256gcm16", "psk"},
		{"live-cbc-frag", "aes128-sha256-ecp256", "aes128-sha256", "cert", "600"},
	} {
		t.Run(c[0], func(t *testing.T) {
			out := filepath.Join(t.TempDir(), c[0])
			cmd := exec.Command("testdata/charon/capture.sh", c...)
			cmd.Env = append(os.Environ(), "CAPTURE_OUT="+out)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("capture: %v\n%s", err, b)
			}
			cc := loadCharonCase(t, out)
			if len(cc.packets) < 4 {
				t.Fatalf("only %d datagrams recorded", len(cc.packets))
			}
			checkCharonCase(t, cc)
		})
	}
}
