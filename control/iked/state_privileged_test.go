package iked_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/iked"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedIkedCorruptState restarts iked on gw-a after its IKE SA's
// state record was corrupted: its bytes are kept aside as *.corrupt, the loss
// is an ERROR, and the Child SA that spud still holds keeps carrying
// traffic past the grace period (it used to be removed then, leaving the
// tunnel down until the peer noticed, and the evidence deleted).
func TestPrivilegedIkedCorruptState(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec, "-grace", "2s")
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	files, _ := filepath.Glob(filepath.Join(tb.a.iked.StateDir, "*.seg"))
	if len(files) != 1 {
		t.Fatalf("state segments %v, want one", files)
	}
	if err := tb.a.iked.Kill(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	// The last record is the IKE SA's state.
	b[len(b)-10] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tb.a.iked.Restart(); err != nil {
		t.Fatal(err)
	}
	// Past the grace period, whose sweep would have removed the SAs.
	flood := pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 5*time.Second)
	res := <-flood
	t.Logf("ping after the restart without state: %d sent, %d received", res[0], res[1])
	if res[0] <= 0 || res[1] < res[0]-1 {
		t.Errorf("the tunnel broke after iked lost its state: %d of %d pings came back", res[1], res[0])
	}
	if ev, _ := filepath.Glob(filepath.Join(tb.a.iked.StateDir, "*.corrupt")); len(ev) != 1 {
		t.Errorf("the unreadable state was not kept aside: %v", ev)
	}
	log := tb.a.iked.Proc.Log()
	for _, want := range []string{`level=ERROR msg="iked: an IKE SA's state could not be restored`, `level=ERROR msg="iked: SAs and policies no restored IKE SA owns are kept`} {
		if !strings.Contains(log, want) {
			t.Errorf("iked did not log %s", want)
		}
	}
	if st := tb.a.spuctl(t, "ike-stats"); !strings.Contains(st, "states_lost") {
		t.Errorf("the corrupt state file was not counted:\n%s", st)
	}
	sas, pols := tb.a.dump(t)
	if len(sas) < 2 || len(pols) < 1 {
		t.Errorf("spud holds %d SAs and %d policies after the sweep, want the tunnel's", len(sas), len(pols))
	}
}

// TestPrivilegedIkedFullStateDisk puts gw-a's state folder on a tiny tmpfs
// and fills it: a rekey's state cannot be written, which is an ERROR,
// counted, and the older state is set aside so that a crash cannot bring
// it back; the write is retried and works once there is room again, and
// traffic never notices.
func TestPrivilegedIkedFullStateDisk(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("no tmpfs to fill (mount: %v: %s)", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	state := filepath.Join(mnt, "state")
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec, "-state", state)
	tb.b.start(t, cb.yaml(), sec)
	tb.a.spuctl(t, "initiate", "tun")
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	// live is the number of IKE SA states a restart would restore.
	live := func() int {
		n, _, _, _, err := iked.SegmentStats(state)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if live() != 1 {
		t.Fatal("no state")
	}
	fill := filepath.Join(mnt, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	for buf := make([]byte, 4096); ; {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()

	flood := pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 4*time.Second)
	// A record that fits in the slack of the segment's last page is
	// written on a full tmpfs: the rekeys go on until one is not.
	notWritten := func() bool { return strings.Contains(tb.a.iked.Proc.Log(), "IKE SA state not written") }
	for i := 0; i < 4 && !notWritten(); i++ {
		tb.a.spuctl(t, "rekey", "tun")
		waitFor(3*time.Second, notWritten)
	}
	if !notWritten() {
		t.Fatalf("a failed state write was not reported")
	}
	if n := live(); n != 0 {
		t.Errorf("the older state stays where a restart would restore it (%d live)", n)
	}
	if st := tb.a.spuctl(t, "ike-stats"); !strings.Contains(st, "state_write_errors") {
		t.Errorf("the failed write was not counted:\n%s", st)
	}
	os.Remove(fill)
	if !waitFor(5*time.Second, func() bool { return live() == 1 }) {
		t.Errorf("the state was not written again once there was room")
	}
	if !strings.Contains(tb.a.iked.Proc.Log(), "IKE SA state written again") {
		t.Errorf("the recovery was not logged")
	}
	res := <-flood
	t.Logf("ping across the full disk and the rekey: %d sent, %d received", res[0], res[1])
	if res[0] <= 0 || res[1] < res[0]-1 {
		t.Errorf("traffic lost: %d of %d pings came back", res[1], res[0])
	}
}

// TestPrivilegedIkedRestartWithoutState restarts iked on gw-a with its
// state folder gone while spud keeps the tunnel's SAs and policy: iked
// sets the tunnel up again (start_action start), and the grace period's
// sweep removes the old policy, which has the new one's selectors. That
// removal used to take the shared steering entry with it, and gw-a then
// sent the tunnel's cleartext unprotected (pass_no_policy) for good.
func TestPrivilegedIkedRestartWithoutState(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	ca.childExtra = "        start_action: start\n"
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec, "-grace", "2s")
	tb.b.start(t, cb.yaml(), sec)
	pingUp(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	tb.a.restartWithoutState(t)
	pingUp(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	// Past the grace period and its sweep.
	res := <-pingFlood(tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 6*time.Second)
	t.Logf("ping across the sweep: %d sent, %d received", res[0], res[1])
	if res[0] <= 0 || res[1] < res[0]-1 {
		t.Errorf("the tunnel broke after the sweep: %d of %d pings came back", res[1], res[0])
	}
	if !strings.Contains(tb.a.iked.Proc.Log(), "removed SAs and policies no IKE SA owns") {
		t.Errorf("the old policy was not swept, so nothing was tested")
	}
}
