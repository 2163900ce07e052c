package spud

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/ipsec"
)

// The capture operations without traffic (TestPrivilegedCapture has the
// packets): a tunnel name resolves to its reqid or is refused naming the
// cause, one capture runs at a time, reads wait and end at the duration,
// a capture nobody reads ends, bad requests name what is wrong.
func TestCaptureOps(t *testing.T) {
	d, c := apiDaemon(t)
	fill(t, d, 4) // "peer/child", reqids 1 and 2
	solo := dumpSA(0)
	solo.SPI, solo.ReqID, solo.Name = 0x200000, 99, "solo/net"
	solo.LocalTS = []ipsec.Selector{ipsec.PrefixSelector(netip.MustParsePrefix("198.18.129.0/24"), 0)}
	if _, _, err := d.eng.AddSA(solo); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		req  api.CaptureStart
		want string
	}{
		{api.CaptureStart{Tunnel: "nosuch"}, `capture tunnel "nosuch": no SA has this name`},
		{api.CaptureStart{Tunnel: "peer"}, `capture tunnel "peer": its SAs have reqids [1 2]`},
		{api.CaptureStart{Points: "esp-in,sideways"}, `capture point "sideways": not one of esp-in, clear-out, clear-in, esp-out, drop`},
		{api.CaptureStart{SPUs: []int{5}}, "capture on spu 5: spud has 2 SPUs"},
		{api.CaptureStart{Snaplen: 70000}, "snap length 70000"},
		{api.CaptureStart{Count: -1}, "negative"},
	} {
		if _, err := c.CaptureStart(bad.req); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("capture.start %+v: %v, want %q", bad.req, err, bad.want)
		}
	}
	st, err := c.CaptureStart(api.CaptureStart{Tunnel: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	if st.ReqID != 99 || len(st.SPUs) != 2 || st.Snaplen != captureDefaultSnap {
		t.Errorf("started %+v, want reqid 99 on both SPUs", st)
	}
	if _, err := c.CaptureStart(api.CaptureStart{}); err == nil || !strings.Contains(err.Error(), "one at a time") {
		t.Errorf("a second capture: %v", err)
	}
	t0 := time.Now()
	pg, data, err := c.CaptureRead(st.ID, 100*time.Millisecond)
	if err != nil || len(pg.Records) != 0 || len(data) != 0 || pg.Done {
		t.Errorf("read: %+v %d bytes %v", pg, len(data), err)
	}
	if d := time.Since(t0); d < 90*time.Millisecond {
		t.Errorf("read returned after %v, not waiting for records", d)
	}
	if err := c.CaptureStop(st.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.CaptureRead(st.ID, 0); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("read of a stopped capture: %v", err)
	}
	// The duration ends it, in the read that waits across it.
	st, err = c.CaptureStart(api.CaptureStart{DurationMS: 200})
	if err != nil {
		t.Fatal(err)
	}
	for done := false; !done; {
		pg, _, err := c.CaptureRead(st.ID, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		done = pg.Done
		if done && pg.Why != "duration" {
			t.Errorf("ended by %q, want duration", pg.Why)
		}
	}
	// Nobody reads it: it ends, and another may start.
	defer captureIdle.Store(captureIdle.Load())
	captureIdle.Store(int64(100 * time.Millisecond))
	st, err = c.CaptureStart(api.CaptureStart{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, _, err := c.CaptureRead(st.ID, 0); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("read of a capture left idle: %v", err)
	}
	st, err = c.CaptureStart(api.CaptureStart{})
	if err != nil {
		t.Fatalf("a capture after the idle one: %v", err)
	}
	c.CaptureStop(st.ID)
}
