package iked_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	govici "github.com/strongswan/govici/vici"

	"github.com/spugate/spugate/testbed/lab"
)

// logLineRe is a line of swanctl --log: the worker as charon's thread,
// the group, then iked's message.
var logLineRe = regexp.MustCompile(`(?m)^\d\d\[IKE\] child sa rekeyed worker=\d`)

// swanctlPath is Debian's swanctl (package strongswan-swanctl).
const swanctlPath = "/usr/sbin/swanctl"

// swanctl runs the real swanctl against an iked's VICI socket, bounded:
// the command first, then its options (--uri is one of them).
func swanctl(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, swanctlPath, append(args, "--uri", "unix://"+sock)...).CombinedOutput()
	return string(out), err
}

// TestPrivilegedVICISwanctl drives gw-a's iked with Debian's unmodified
// swanctl over VICI: version, stats, list-conns, initiate, list-sas,
// terminate and monitor-sa (whose events must name the SAs that came up
// and went down), a refused load-conns, and govici's list-sas.
func TestPrivilegedVICISwanctl(t *testing.T) {
	if _, err := os.Stat(swanctlPath); err != nil {
		t.Skipf("swanctl not installed (apt-get install strongswan-swanctl): %v", err)
	}
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	tb.startPSK(t, nil)
	sock := tb.a.iked.VICI
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("VICI socket %s: %v %v", sock, st.Mode(), err)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := swanctl(t, sock, args...)
		if err != nil {
			t.Fatalf("swanctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	if out := must("--version", "--daemon"); !strings.Contains(out, " iked (Linux, ") {
		t.Errorf("--version:\n%s", out)
	}

	// swanctl --monitor-sa in the background, until SIGINT, as an
	// operator runs it; --raw shows the event names.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	mon := exec.CommandContext(ctx, swanctlPath, "--monitor-sa", "--raw", "--uri", "unix://"+sock)
	var monOut bytes.Buffer
	mon.Stdout, mon.Stderr = &monOut, &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if mon.ProcessState == nil {
			mon.Process.Kill()
			mon.Wait()
		}
	}()
	// Registered once iked counts it: the first event must not be missed.
	time.Sleep(500 * time.Millisecond)

	conns := must("--list-conns")
	for _, want := range []string{"tun: IKEv2, no reauthentication, rekeying every ", "local:  " + pl.GwAWan4.String(), "remote: " + pl.GwBWan4.String(),
		"local pre-shared key authentication", "id: gw-a.example", "net: TUNNEL", "local:  " + pl.LanA4.String()} {
		if !strings.Contains(conns, want) {
			t.Errorf("--list-conns lacks %q:\n%s", want, conns)
		}
	}

	start := time.Now()
	out := must("--initiate", "--child", "net", "--timeout", "30")
	if !strings.Contains(out, "initiate completed successfully") {
		t.Errorf("--initiate:\n%s", out)
	}
	t.Logf("swanctl --initiate --child net (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)

	sas := must("--list-sas")
	t.Logf("swanctl --list-sas:\n%s", sas)
	ike := tb.a.sas(t)
	if len(ike) != 1 || len(ike[0].Children) != 1 {
		t.Fatalf("iked holds %+v", ike)
	}
	ch := ike[0].Children[0]
	for _, want := range []string{
		fmt.Sprintf("tun: #%d, ESTABLISHED, IKEv2, %s_i* %s_r", ike[0].UniqueID, ike[0].SPIi, ike[0].SPIr),
		fmt.Sprintf("local  'gw-a.example' @ %s[500]", pl.GwAWan4),
		fmt.Sprintf("remote 'gw-b.example' @ %s[500]", pl.GwBWan4),
		"AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519",
		fmt.Sprintf("net: #%d, reqid %d, INSTALLED, TUNNEL, ESP:AES_GCM_16-128", ch.UniqueID, ch.ReqID),
		fmt.Sprintf("in  %08x", ch.SPIIn), fmt.Sprintf("out %08x", ch.SPIOut),
		"local  " + pl.LanA4.String(), "remote " + pl.LanB4.String(),
	} {
		if !strings.Contains(sas, want) {
			t.Errorf("--list-sas lacks %q", want)
		}
	}
	if strings.Contains(sas, "(null)") || strings.Contains(sas, "      0 packets") {
		t.Errorf("--list-sas shows a missing key or no traffic:\n%s", sas)
	}

	if out := must("--stats"); !strings.Contains(out, "IKE_SAs: 1 total, 0 half-open") || !strings.Contains(out, "worker threads: 2 total") {
		t.Errorf("--stats:\n%s", out)
	}

	// govici, as a Go program would drive iked.
	sess, err := govici.NewSession(govici.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Subscribe("list-sa"); err != nil {
		t.Fatal(err)
	}
	evs := make(chan govici.Event, 16)
	sess.NotifyEvents(evs)
	if _, err := sess.Call(context.Background(), "list-sas", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-evs:
		s, _ := ev.Message.Get("tun").(*govici.Message)
		if s == nil || s.Get("state") != "ESTABLISHED" || s.Get("remote-id") != "gw-b.example" {
			t.Errorf("govici list-sa: %s", ev.Message)
		}
	default:
		t.Error("govici: no list-sa event")
	}
	sess.Close()

	// Rekeys by swanctl, seen by a govici subscriber to the rekey and
	// log events.
	sess, err = govici.NewSession(govici.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Subscribe("child-rekey", "ike-rekey", "log"); err != nil {
		t.Fatal(err)
	}
	rk := make(chan govici.Event, 256)
	sess.NotifyEvents(rk)
	// swanctl --log too, as an operator tails charon's log.
	logCmd := exec.CommandContext(ctx, swanctlPath, "--log", "--uri", "unix://"+sock)
	var logOut bytes.Buffer
	logCmd.Stdout, logCmd.Stderr = &logOut, &logOut
	if err := logCmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if out := must("--rekey", "--child", "net"); !strings.Contains(out, "rekey completed successfully") {
		t.Errorf("--rekey --child:\n%s", out)
	}
	if out := must("--rekey", "--ike", "tun"); !strings.Contains(out, "rekey completed successfully") {
		t.Errorf("--rekey --ike:\n%s", out)
	}
	got := map[string]*govici.Message{}
	logs := 0
	deadline := time.After(20 * time.Second)
	for got["child-rekey"] == nil || got["ike-rekey"] == nil {
		select {
		case ev := <-rk:
			if ev.Name == "log" {
				logs++
			} else if got[ev.Name] == nil {
				got[ev.Name] = ev.Message
			}
		case <-deadline:
			t.Fatalf("rekey events seen: %v", got)
		}
	}
	if s, _ := got["child-rekey"].Get("tun").(*govici.Message); s == nil {
		t.Errorf("child-rekey: %s", got["child-rekey"])
	} else {
		kids, _ := s.Get("child-sas").(*govici.Message)
		net, _ := kids.Get("net").(*govici.Message)
		oldc, _ := net.Get("old").(*govici.Message)
		newc, _ := net.Get("new").(*govici.Message)
		if oldc == nil || newc == nil || oldc.Get("spi-in") != fmt.Sprintf("%08x", ch.SPIIn) || newc.Get("spi-in") == oldc.Get("spi-in") {
			t.Errorf("child-rekey: %s", got["child-rekey"])
		}
	}
	if s, _ := got["ike-rekey"].Get("tun").(*govici.Message); s == nil || s.Get("old") == nil || s.Get("new") == nil {
		t.Errorf("ike-rekey: %s", got["ike-rekey"])
	}
	if logs == 0 {
		t.Error("no log event while rekeying")
	}
	t.Logf("rekeys: %d log events", logs)
	logCmd.Process.Signal(syscall.SIGINT)
	logCmd.Wait()
	if lo := logOut.String(); !logLineRe.MatchString(lo) || !strings.Contains(lo, "rekeyed") {
		t.Errorf("swanctl --log lacks rekey lines:\n%s", lo)
	} else {
		t.Logf("swanctl --log:\n%s", lo)
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	ike = tb.a.sas(t)

	out = must("--terminate", "--ike", "tun")
	if !strings.Contains(out, "terminate completed successfully") {
		t.Errorf("--terminate:\n%s", out)
	}
	gone(t, tb.a, tb.b)
	if out := must("--list-sas"); strings.Contains(out, "tun:") {
		t.Errorf("--list-sas after terminate:\n%s", out)
	}

	// swanctl --load-all from a real swanctl.conf: a connection and its
	// pre-shared key, loaded over VICI beside iked's file; brought up,
	// listed and taken down by swanctl; unloaded by --load-conns.
	dir := t.TempDir()
	conf := filepath.Join(dir, "swanctl.conf")
	// swanctl reads credentials from folders beside the file: empty ones.
	for _, sub := range []string{"x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12"} {
		os.Mkdir(filepath.Join(dir, sub), 0o700)
	}
	writeConf := func(conns string) {
		t.Helper()
		c := "connections {\n" + conns + "}\nsecrets {\n  ike-lab {\n    id-a = gw-a.example\n    id-b = gw-b.example\n    secret = \"" + psk + "\"\n  }\n}\n"
		if err := os.WriteFile(conf, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	site := fmt.Sprintf(`  site {
    local_addrs = %s
    remote_addrs = %s
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = gw-a.example
    }
    remote {
      auth = psk
      id = gw-b.example
    }
    children {
      lan {
        local_ts = %s
        remote_ts = %s
        esp_proposals = aes128gcm16
      }
    }
  }
`, pl.GwAWan4, pl.GwBWan4, pl.LanA4, pl.LanB4)
	writeConf(site)
	out = must("--load-all", "--file", conf)
	t.Logf("swanctl --load-all:\n%s", out)
	for _, want := range []string{"loaded ike secret 'ike-lab'", "loaded connection 'site'", "successfully loaded 1 connections, 0 unloaded"} {
		if !strings.Contains(out, want) {
			t.Errorf("--load-all lacks %q", want)
		}
	}
	if r, err := sess.Call(context.Background(), "get-shared", nil); err != nil || fmt.Sprint(r.Get("keys")) != "[ike-lab]" {
		t.Errorf("get-shared: %v %v", r, err)
	}
	if r, err := sess.Call(context.Background(), "get-conns", nil); err != nil || fmt.Sprint(r.Get("conns")) != "[site]" {
		t.Errorf("get-conns (what VICI loaded): %v %v", r, err)
	}
	if out := must("--list-conns"); !strings.Contains(out, "site: IKEv2") || !strings.Contains(out, "tun: IKEv2") {
		t.Errorf("--list-conns after --load-all:\n%s", out)
	}
	if out := must("--initiate", "--ike", "site", "--child", "lan"); !strings.Contains(out, "initiate completed successfully") {
		t.Errorf("--initiate --ike site:\n%s", out)
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	if out := must("--list-sas"); !strings.Contains(out, "site: #") || !strings.Contains(out, "lan: #") {
		t.Errorf("--list-sas of site:\n%s", out)
	}
	must("--terminate", "--ike", "site")
	gone(t, tb.a, tb.b)
	// What iked cannot take is refused with the key it stumbled on.
	writeConf(site + "  bad {\n    remote_addrs = 198.18.0.2\n    pools = p\n  }\n")
	if out, err := swanctl(t, sock, "--load-conns", "--file", conf); err == nil || !strings.Contains(out, "bad.pools") {
		t.Errorf("--load-conns with pools: %v\n%s", err, out)
	}
	// A file without site unloads it.
	writeConf("")
	if out := must("--load-conns", "--file", conf); !strings.Contains(out, "no connections found, 1 unloaded") {
		t.Errorf("--load-conns without site:\n%s", out)
	}
	if out := must("--list-conns"); strings.Contains(out, "site:") {
		t.Errorf("--list-conns after unloading site:\n%s", out)
	}

	// The monitor saw the IKE SA and the Child SA come up and go down.
	time.Sleep(500 * time.Millisecond)
	mon.Process.Signal(syscall.SIGINT)
	mon.Wait()
	mo := monOut.String()
	t.Logf("swanctl --monitor-sa --raw:\n%s", mo)
	for _, want := range []string{"ike-updown event {up=yes tun {", "child-updown event {up=yes tun {", "ike-updown event {tun {",
		"child-updown event {tun {", fmt.Sprintf("uniqueid=%d", ike[0].UniqueID), fmt.Sprintf("net-%d {", ch.UniqueID)} {
		if !strings.Contains(mo, want) {
			t.Errorf("--monitor-sa lacks %q", want)
		}
	}
}

// TestPrivilegedVICIListSAsMany times VICI's list-sas over many IKE SAs
// (SPUGATE_VICI_SAS, default 2000; the closing figure of issue 18 is at
// 10000): through govici, one list-sa event each, and through swanctl,
// which also formats them; both must list every IKE SA.
func TestPrivilegedVICIListSAsMany(t *testing.T) {
	if _, err := os.Stat(swanctlPath); err != nil {
		t.Skipf("swanctl not installed (apt-get install strongswan-swanctl): %v", err)
	}
	count := 2000
	if v := os.Getenv("SPUGATE_VICI_SAS"); v != "" {
		if _, err := fmt.Sscan(v, &count); err != nil || count <= 0 {
			t.Fatalf("SPUGATE_VICI_SAS=%q: not a count", v)
		}
	}
	tb := newTestbed(t, lab.LineOptions{})
	tb.startPSK(t, loadResponder)
	start := time.Now()
	out := tb.a.spuctl(t, "load-initiate", "tun", "-count", fmt.Sprint(count), "-window", "64", "-timeout", "10m")
	if !strings.Contains(out, fmt.Sprintf("%d established", count)) {
		t.Fatalf("load-initiate: %s", out)
	}
	t.Logf("%d IKE SAs up in %v", count, time.Since(start).Round(time.Millisecond))
	sock := tb.a.iked.VICI

	sess, err := govici.NewSession(govici.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if err := sess.Subscribe("list-sa"); err != nil {
		t.Fatal(err)
	}
	evs := make(chan govici.Event, count+16)
	sess.NotifyEvents(evs)
	for round := 0; round < 3; round++ {
		start = time.Now()
		if _, err := sess.Call(context.Background(), "list-sas", nil); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		n := len(evs)
		for len(evs) > 0 {
			<-evs
		}
		t.Logf("govici list-sas: %d IKE SAs in %v (%.1f us each)", n, el.Round(time.Millisecond), float64(el.Microseconds())/float64(n))
		if n != count {
			t.Errorf("govici list-sas: %d list-sa events, want %d", n, count)
		}
	}
	start = time.Now()
	sas, err := swanctl(t, sock, "--list-sas")
	if err != nil {
		t.Fatalf("swanctl --list-sas: %v", err)
	}
	el := time.Since(start)
	n := strings.Count(sas, ", ESTABLISHED, IKEv2, ")
	t.Logf("swanctl --list-sas: %d IKE SAs in %v, %d bytes of output", n, el.Round(time.Millisecond), len(sas))
	if n != count {
		t.Errorf("swanctl --list-sas lists %d IKE SAs, want %d", n, count)
	}
	// spuctl's list-sas over iked's own socket, for comparison.
	start = time.Now()
	tb.a.spuctl(t, "list-sas")
	t.Logf("spuctl list-sas: %v", time.Since(start).Round(time.Millisecond))
	tb.a.spuctl(t, "terminate", "tun", "-timeout", "120s")
}
