package iked_test

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
)

// gone waits until a gateway has neither IKE SAs nor SAs and policies in
// spud (traps aside).
func gone(t *testing.T, gws ...*gw) {
	t.Helper()
	for _, g := range gws {
		if !waitFor(5*time.Second, func() bool {
			sas, pols := g.dump(t)
			n := 0
			for _, p := range pols {
				if !strings.HasSuffix(p.Name, "/trap") {
					n++
				}
			}
			return len(sas) == 0 && n == 0 && len(g.sas(t)) == 0
		}) {
			sas, pols := g.dump(t)
			t.Errorf("%s: %d SAs, %d policies, %d IKE SAs left", g.name, len(sas), len(pols), len(g.sas(t)))
		}
	}
}

// reconfigure writes new configurations and reloads both ikeds.
func (tb *testbed) reconfigure(t *testing.T, ca, cb conf, secA, secB string) {
	t.Helper()
	for _, x := range []struct {
		g   *gw
		c   conf
		sec string
	}{{tb.a, ca, secA}, {tb.b, cb, secB}} {
		if err := x.g.iked.WriteConfig(x.c.yaml(), x.sec); err != nil {
			t.Fatal(err)
		}
		x.g.spuctl(t, "reload")
	}
}

// TestPrivilegedIked runs the tunnel cases that share one lab: iked on
// gw-a as initiator then as responder, ping and TCP both ways, the four
// proposal pairs, the mismatches, deletes from either side, traps, and DPD
// when the peer's iked vanishes.
func TestPrivilegedIked(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	ca, cb := tb.confs()
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.a.start(t, ca.yaml(), sec)
	tb.b.start(t, cb.yaml(), sec)

	for _, c := range []struct {
		name       string
		init, resp *gw
	}{{"a-initiates", tb.a, tb.b}, {"b-initiates", tb.b, tb.a}} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out := c.init.spuctl(t, "initiate", "tun")
			t.Logf("initiate: %s (%v)", strings.TrimSpace(out), time.Since(start))
			mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
			mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
			mustPing(t, tb.ln.ClientA, pl.ClientA6, pl.ClientB6)
			labtest.TCPTransfer(t, tb.ln.ClientA, tb.ln.ClientB, pl.ClientB4, 1<<20)
			labtest.TCPTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA6, 1<<20)
			list := c.init.spuctl(t, "list-sas")
			if !strings.Contains(list, "ESTABLISHED") || !strings.Contains(list, "AES_GCM_16_128") || strings.Contains(list, "      0 packets") {
				t.Errorf("list-sas:\n%s", list)
			}
			// Delete from the side that did not initiate.
			c.resp.spuctl(t, "terminate", "tun")
			gone(t, tb.a, tb.b)
			if n := ping(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 2); n != 0 {
				t.Errorf("%d pings went through without a tunnel", n)
			}
		})
	}

	t.Run("child-delete-either-side", func(t *testing.T) {
		tb.a.spuctl(t, "initiate", "tun")
		for _, g := range []*gw{tb.b, tb.a} {
			g.spuctl(t, "terminate", "tun", "net")
			for _, x := range []*gw{tb.a, tb.b} {
				if !waitFor(5*time.Second, func() bool { sas, _ := x.dump(t); return len(sas) == 0 }) {
					t.Errorf("%s: SAs left after %s deleted the Child SA", x.name, g.name)
				}
			}
			if l := tb.a.sas(t); len(l) != 1 || len(l[0].Children) != 0 {
				t.Errorf("IKE SA should stay without its Child SA: %+v", l)
			}
			// A new Child SA over the same IKE SA.
			g.spuctl(t, "initiate", "tun", "net")
			mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})

	for _, p := range []struct{ ike, esp, showIKE, showESP string }{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16", "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:AES_GCM_16_128"},
		{"aes256gcm16-prfsha384-ecp384", "aes256gcm16", "AES_GCM_16_256/PRF_HMAC_SHA2_384/ECP_384", "ESP:AES_GCM_16_256"},
		{"aes256-sha256-modp2048", "aes256-sha256", "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "ESP:AES_CBC_256/HMAC_SHA2_256_128"},
		{"chacha20poly1305-prfsha256-x25519", "chacha20poly1305", "CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:CHACHA20_POLY1305"},
	} {
		t.Run("suite-"+p.ike, func(t *testing.T) {
			xa, xb := ca, cb
			xa.ike, xa.esp, xb.ike, xb.esp = p.ike, p.esp, p.ike, p.esp
			tb.reconfigure(t, xa, xb, sec, sec)
			tb.a.spuctl(t, "initiate", "tun")
			mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
			labtest.TCPTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA4, 256<<10)
			for _, g := range []*gw{tb.a, tb.b} {
				list := g.spuctl(t, "list-sas")
				if !strings.Contains(list, p.showIKE) || !strings.Contains(list, p.showESP) {
					t.Errorf("%s: list-sas does not show %s and %s:\n%s", g.name, p.showIKE, p.showESP, list)
				}
			}
			tb.b.spuctl(t, "terminate", "tun")
			gone(t, tb.a, tb.b)
		})
	}

	for _, m := range []struct {
		name             string
		modA, modB       func(*conf)
		secA, secB       string
		notify           string
		logA, logB       string
		reasonA, reasonB string
	}{
		{name: "no-common-proposal", modA: func(c *conf) { c.ike = "aes256gcm16-prfsha384-ecp384" }, modB: func(c *conf) { c.ike = "aes128-sha256-modp2048" },
			notify: "NO_PROPOSAL_CHOSEN", reasonA: "no_proposal_chosen", reasonB: "no_proposal_chosen", logB: "no IKE proposal chosen"},
		{name: "no-common-esp-proposal", modA: func(c *conf) { c.esp = "aes256gcm16" }, modB: func(c *conf) { c.esp = "chacha20poly1305" },
			notify: "NO_PROPOSAL_CHOSEN", reasonA: "no_proposal_chosen", reasonB: "no_proposal_chosen", logB: "no ESP proposal chosen"},
		{name: "wrong-psk", secA: secrets("another key", "gw-a.example", "gw-b.example"),
			notify: "AUTHENTICATION_FAILED", reasonA: "authentication_failed", reasonB: "authentication_failed", logB: "PSK mismatch"},
		{name: "wrong-id", modA: func(c *conf) { c.localID = "stranger.example" }, secA: secrets(psk, "stranger.example", "gw-b.example"),
			notify: "AUTHENTICATION_FAILED", reasonA: "authentication_failed", reasonB: "peer_id_mismatch", logB: "no connection for peer identity stranger.example"},
		{name: "ts-not-narrowable", modB: func(c *conf) { c.remoteTS = "198.18.99.0/24" },
			notify: "TS_UNACCEPTABLE", reasonA: "ts_unacceptable", reasonB: "ts_unacceptable", logB: "no child of"},
	} {
		t.Run("mismatch-"+m.name, func(t *testing.T) {
			xa, xb := ca, cb
			if m.modA != nil {
				m.modA(&xa)
			}
			if m.modB != nil {
				m.modB(&xb)
			}
			sa, sb := sec, sec
			if m.secA != "" {
				sa = m.secA
			}
			if m.secB != "" {
				sb = m.secB
			}
			tb.reconfigure(t, xa, xb, sa, sb)
			logA, logB := len(tb.a.iked.Proc.Log()), len(tb.b.iked.Proc.Log())
			out, err := tb.a.iked.Spuctl("initiate", "tun")
			if err == nil || !strings.Contains(out, m.notify) {
				t.Errorf("initiate: %v %s, want a failure naming %s", err, out, m.notify)
			}
			time.Sleep(200 * time.Millisecond)
			la, lb := tb.a.iked.Proc.Log()[logA:], tb.b.iked.Proc.Log()[logB:]
			if !strings.Contains(la, "reason="+m.reasonA) || !strings.Contains(la, m.notify) {
				t.Errorf("gw-a's log does not say reason=%s with %s:\n%s", m.reasonA, m.notify, la)
			}
			if !strings.Contains(lb, "reason="+m.reasonB) || !strings.Contains(lb, m.logB) {
				t.Errorf("gw-b's log does not say reason=%s with %q:\n%s", m.reasonB, m.logB, lb)
			}
			st := tb.b.spuctl(t, "ike-stats")
			if !strings.Contains(st, m.reasonB) {
				t.Errorf("gw-b's counters do not count %s:\n%s", m.reasonB, st)
			}
			gone(t, tb.a, tb.b)
		})
	}

	t.Run("forced-encap", func(t *testing.T) {
		xa := ca
		xa.connExtra = "    encap: yes\n"
		tb.reconfigure(t, xa, cb, sec, sec)
		tb.a.spuctl(t, "initiate", "tun")
		mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
		labtest.TCPTransfer(t, tb.ln.ClientB, tb.ln.ClientA, pl.ClientA4, 256<<10)
		for _, g := range []*gw{tb.a, tb.b} {
			sas, _ := g.dump(t)
			for _, s := range sas {
				if s.Encap == nil || s.Encap.LocalPort != 4500 || s.Encap.RemotePort != 4500 {
					t.Errorf("%s: SA 0x%08x not in UDP 4500: %+v", g.name, s.SPI, s.Encap)
				}
			}
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})

	t.Run("ipv6-outer", func(t *testing.T) {
		xa, xb := ca, cb
		xa.local, xa.remote, xb.local, xb.remote = pl.GwAWan6, pl.GwBWan6, pl.GwBWan6, pl.GwAWan6
		tb.reconfigure(t, xa, xb, sec, sec)
		tb.b.spuctl(t, "initiate", "tun")
		mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
		mustPing(t, tb.ln.ClientB, pl.ClientB6, pl.ClientA6)
		if l := tb.a.sas(t); len(l) != 1 || !l[0].Remote.Addr().Is6() {
			t.Errorf("IKE SA over IPv6: %+v", l)
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
	})

	t.Run("trap", func(t *testing.T) {
		xa := ca
		xa.childExtra = "        start_action: trap\n"
		tb.reconfigure(t, xa, cb, sec, sec)
		if out := tb.a.spuctl(t, "list-conns"); !strings.Contains(out, "trap installed") {
			t.Errorf("list-conns:\n%s", out)
		}
		// The first packets raise the acquire; the tunnel comes up.
		if !waitFor(10*time.Second, func() bool { return ping(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4, 1) == 1 }) {
			t.Fatal("no tunnel after traffic hit the trap")
		}
		mustPing(t, tb.ln.ClientB, pl.ClientB4, pl.ClientA4)
		if st := tb.a.spuctl(t, "ike-stats"); !strings.Contains(st, "acquires") {
			t.Errorf("acquires not counted:\n%s", st)
		}
		tb.a.spuctl(t, "terminate", "tun")
		gone(t, tb.a, tb.b)
		if _, pols := tb.a.dump(t); len(pols) != 1 {
			t.Errorf("the trap went with the tunnel: %d policies", len(pols))
		}
	})

	t.Run("dpd-peer-vanishes", func(t *testing.T) {
		xa := ca
		xa.connExtra = "    dpd_delay: 2s\n"
		tb.reconfigure(t, xa, cb, sec, sec)
		tb.a.spuctl(t, "initiate", "tun")
		mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
		logA := len(tb.a.iked.Proc.Log())
		// gw-b's iked dies (its SAs stay in its spud but nobody answers).
		if err := tb.b.iked.Proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// dpd_delay 2 s, then retransmissions at 1, 1.8, 3.24 s and
		// giving up 5.8 s later: about 14 s.
		if !waitFor(25*time.Second, func() bool { return strings.Contains(tb.a.iked.Proc.Log()[logA:], "reason=dpd_timeout") }) {
			t.Fatalf("no DPD timeout on gw-a:\n%s", tb.a.iked.Proc.Log()[logA:])
		}
		t.Logf("DPD timeout after %v", time.Since(start).Round(100*time.Millisecond))
		gone(t, tb.a)
		tb.b.iked.Proc.Wait(5 * time.Second)
		tb.b.iked.Cleanup()
		// Clear gw-b's spud for whatever follows.
		sas, pols := tb.b.dump(t)
		for _, p := range pols {
			tb.b.spud.Client.DelPolicy(p.ID)
		}
		for _, s := range sas {
			tb.b.spud.Client.DelSA(sasID(s))
		}
	})
}

func ipList(base netip.Addr, n int) []netip.Addr {
	out := make([]netip.Addr, n)
	a := base
	for i := range out {
		out[i] = a
		a = a.Next()
	}
	return out
}

// TestPrivilegedIkedReload changes one of two connections and reloads:
// the IKE SA of the unchanged one stays as it was, the changed one is
// torn down and (start_action=start) comes up again with the new settings,
// a removed one goes, an added one comes.
func TestPrivilegedIkedReload(t *testing.T) {
	tb := newTestbed(t, lab.LineOptions{})
	pl := tb.ln.Plan
	two := func(a bool, ike2 string, third bool) string {
		l, r, lid, rid := pl.GwAWan4, pl.GwBWan4, "gw-a.example", "gw-b.example"
		l4, r4, l6, r6 := pl.LanA4, pl.LanB4, pl.LanA6, pl.LanB6
		start := "start"
		if !a {
			l, r, lid, rid, l4, r4, l6, r6, start = r, l, rid, lid, r4, l4, r6, l6, "none"
		}
		conn := func(name, ike string, lts, rts netip.Prefix) string {
			return fmt.Sprintf("  %s:\n    local_addrs: %s\n    remote_addrs: %s\n    proposals: %s\n"+
				"    local: {auth: psk, id: %s}\n    remote: {auth: psk, id: %s}\n    children:\n      net:\n"+
				"        local_ts: %s\n        remote_ts: %s\n        start_action: %s\n", name, l, r, ike, lid, rid, lts, rts, start)
		}
		s := "retransmit_timeout: 1s\nconnections:\n" + conn("v4", "aes128gcm16-prfsha256-x25519", l4, r4) + conn("v6", ike2, l6, r6)
		if third {
			s += conn("v4b", "aes128gcm16-prfsha256-x25519", netip.MustParsePrefix(l4.Addr().Next().String()+"/32"),
				netip.MustParsePrefix(r4.Addr().Next().String()+"/32"))
		}
		return s
	}
	sec := secrets(psk, "gw-a.example", "gw-b.example")
	tb.b.start(t, two(false, "aes128gcm16-prfsha256-x25519,aes256gcm16-prfsha384-ecp384", false), sec)
	tb.a.start(t, two(true, "aes128gcm16-prfsha256-x25519", false), sec)
	byConn := func() map[string]string {
		out := map[string]string{}
		for _, s := range tb.a.sas(t) {
			if s.State == "ESTABLISHED" && len(s.Children) == 1 {
				out[s.Conn] = s.SPIi + " " + s.Proposal
			}
		}
		return out
	}
	if !waitFor(10*time.Second, func() bool { return len(byConn()) == 2 }) {
		t.Fatalf("start_action=start: %v", byConn())
	}
	before := byConn()
	mustPing(t, tb.ln.ClientA, pl.ClientA4, pl.ClientB4)
	mustPing(t, tb.ln.ClientA, pl.ClientA6, pl.ClientB6)
	// v6 changes its proposal; v4b is added.
	if err := tb.a.iked.WriteConfig(two(true, "aes256gcm16-prfsha384-ecp384", true), sec); err != nil {
		t.Fatal(err)
	}
	out := tb.a.spuctl(t, "reload")
	if !strings.Contains(out, "added [v4b]") || !strings.Contains(out, "changed [v6]") {
		t.Errorf("reload: %s", out)
	}
	if !waitFor(10*time.Second, func() bool { c := byConn(); return len(c) == 3 && strings.Contains(c["v6"], "ECP_384") }) {
		t.Fatalf("after the reload: %v", byConn())
	}
	after := byConn()
	if after["v4"] != before["v4"] {
		t.Errorf("the unchanged connection's IKE SA was touched: %s -> %s", before["v4"], after["v4"])
	}
	if after["v6"] == before["v6"] {
		t.Errorf("the changed connection kept its IKE SA")
	}
	mustPing(t, tb.ln.ClientA, pl.ClientA6, pl.ClientB6)
	// v6 goes.
	cfg := strings.Split(two(true, "aes256gcm16-prfsha384-ecp384", true), "  v6:")[0] + "  v4b:" + strings.Split(two(true, "x", true), "  v4b:")[1]
	if err := tb.a.iked.WriteConfig(cfg, sec); err != nil {
		t.Fatal(err)
	}
	if out := tb.a.spuctl(t, "reload"); !strings.Contains(out, "removed [v6]") {
		t.Errorf("reload: %s", out)
	}
	if !waitFor(5*time.Second, func() bool { c := byConn(); _, v6 := c["v6"]; return !v6 && c["v4"] == before["v4"] }) {
		t.Errorf("after removing v6: %v", byConn())
	}
	// A broken configuration is refused with the reason; nothing changes.
	if err := tb.a.iked.WriteConfig(cfg+"    bogus_key: 1\n", sec); err != nil {
		t.Fatal(err)
	}
	if out, err := tb.a.iked.Spuctl("reload"); err == nil || !strings.Contains(out, "bogus_key") {
		t.Errorf("a bad configuration was accepted: %v %s", err, out)
	}
	if c := byConn(); c["v4"] != before["v4"] {
		t.Errorf("a refused reload touched v4")
	}
}
