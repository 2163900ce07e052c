package iked_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/lab/labtest"
	"github.com/spugate/spugate/testbed/strongswan"
)

const interopPSK = "spugate interop pre-shared key of 32+ bytes"

// interopbed is spugate (spud + iked) on gw-a and charon on gw-b.
type interopbed struct {
	ln  *lab.Line
	a   *gw
	c   *strongswan.Charon
	cfg strongswan.Config
}

// charonConf is charon's configuration on gw-b for one suite.
func charonConf(t *testing.T, ln *lab.Line, ike, esp string, mod func(*strongswan.Conn)) strongswan.Config {
	t.Helper()
	c, err := strongswan.LineConn(ln, ln.GwB, strongswan.LineConnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Proposals = []string{ike}
	c.Children[0].ESPProposals = []string{esp}
	c.Local.Auth, c.Remote.Auth = "psk", "psk"
	if mod != nil {
		mod(&c)
	}
	return strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{c}, Secrets: strongswan.LinePSK([]byte(interopPSK)),
		Settings: strongswan.Settings{RetransmitTimeout: 1, RetransmitTries: 3}}
}

// spugateConf is iked's matching configuration on gw-a.
func spugateConf(ln *lab.Line, ike, esp string) conf {
	p := ln.Plan
	return conf{local: p.GwAWan4, remote: p.GwBWan4, localID: strongswan.IDGwA, remoteID: strongswan.IDGwB, ike: ike, esp: esp,
		localTS: p.LanA4.String() + "," + p.LanA6.String(), remoteTS: p.LanB4.String() + "," + p.LanB6.String()}
}

func newInteropbed(t *testing.T) *interopbed {
	t.Helper()
	strongswan.Require(t, "ping")
	ln := labtest.Line(t, lab.LineOptions{NoClearRoutes: true, GatewayLinks: lab.LinkOptions{Queues: 2}}, "ping")
	ib := &interopbed{ln: ln, a: &gw{name: "gw-a", host: ln.GwA}}
	s, err := daemons.StartSpud(ln.GwA, daemons.SpudOptions{SPUs: 2})
	if err != nil {
		t.Fatal(err)
	}
	ib.a.spud = s
	t.Cleanup(func() { s.Stop() })
	ib.cfg = charonConf(t, ln, "aes128gcm16-prfsha256-x25519", "aes128gcm16", nil)
	c, err := strongswan.Start(ln.GwB, ib.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ib.c = c
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(ib.c.Report())
		}
		ib.c.Stop()
	})
	sc := spugateConf(ln, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
	ib.a.start(t, sc.yaml(), secrets(interopPSK, strongswan.IDGwA, strongswan.IDGwB))
	return ib
}

// reconfigure loads new configurations into charon and iked.
func (ib *interopbed) reconfigure(t *testing.T, cc strongswan.Config, sc conf, sec string) {
	t.Helper()
	if err := ib.c.Reload(cc); err != nil {
		t.Fatal(err)
	}
	ib.cfg = cc
	if err := ib.a.iked.WriteConfig(sc.yaml(), sec); err != nil {
		t.Fatal(err)
	}
	ib.a.spuctl(t, "reload")
}

// traffic pings and sends TCP both ways, inner IPv4 and IPv6.
func (ib *interopbed) traffic(t *testing.T) {
	t.Helper()
	p := ib.ln.Plan
	pingUp(t, ib.ln.ClientA, p.ClientA4, p.ClientB4)
	mustPing(t, ib.ln.ClientB, p.ClientB4, p.ClientA4)
	pingUp(t, ib.ln.ClientA, p.ClientA6, p.ClientB6)
	labtest.TCPTransfer(t, ib.ln.ClientA, ib.ln.ClientB, p.ClientB4, 512<<10)
	labtest.TCPTransfer(t, ib.ln.ClientB, ib.ln.ClientA, p.ClientA6, 512<<10)
}

// charonGone waits until charon holds no IKE SA.
func (ib *interopbed) charonGone(t *testing.T) {
	t.Helper()
	if _, err := ib.c.WaitSAs(func(s []strongswan.IKESA) bool { return len(s) == 0 }, 10*time.Second); err != nil {
		sas, _ := ib.c.ListSAs()
		t.Errorf("charon still holds %d IKE SAs: %v", len(sas), err)
	}
}

type interopSuite struct {
	ike, esp                   string
	ikeEncr, ikeInteg, prf, dh string
	ikeKey                     int
	espEncr, espInteg          string
	espKey                     int
	listSAs                    []string // what swanctl --list-sas shows
}

var interopSuites = []interopSuite{
	{"aes128gcm16-prfsha256-x25519", "aes128gcm16", "AES_GCM_16", "", "PRF_HMAC_SHA2_256", "CURVE_25519", 128, "AES_GCM_16", "", 128,
		[]string{"AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:AES_GCM_16-128"}},
	{"aes256gcm16-prfsha384-ecp384", "aes256gcm16", "AES_GCM_16", "", "PRF_HMAC_SHA2_384", "ECP_384", 256, "AES_GCM_16", "", 256,
		[]string{"AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384", "ESP:AES_GCM_16-256"}},
	{"aes256-sha256-modp2048", "aes256-sha256", "AES_CBC", "HMAC_SHA2_256_128", "PRF_HMAC_SHA2_256", "MODP_2048", 256, "AES_CBC", "HMAC_SHA2_256_128", 256,
		[]string{"AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048", "ESP:AES_CBC-256/HMAC_SHA2_256_128"}},
	{"chacha20poly1305-prfsha256-x25519", "chacha20poly1305", "CHACHA20_POLY1305", "", "PRF_HMAC_SHA2_256", "CURVE_25519", 256, "CHACHA20_POLY1305", "", 256,
		[]string{"CHACHA20_POLY1305/PRF_HMAC_SHA2_256/CURVE_25519", "ESP:CHACHA20_POLY1305"}},
}

func checkCharonSA(t *testing.T, sa *strongswan.IKESA, s interopSuite) {
	t.Helper()
	if sa.EncrAlg != s.ikeEncr || sa.IntegAlg != s.ikeInteg || sa.PRFAlg != s.prf || sa.DHGroup != s.dh {
		t.Errorf("charon's IKE SA %s-%d/%s/%s/%s, want %s/%s/%s/%s", sa.EncrAlg, sa.EncrKeySize, sa.IntegAlg, sa.PRFAlg, sa.DHGroup,
			s.ikeEncr, s.ikeInteg, s.prf, s.dh)
	}
	ch := sa.Child("net")
	if ch == nil {
		t.Fatalf("charon has no installed child net")
	}
	if ch.EncrAlg != s.espEncr || ch.IntegAlg != s.espInteg || !ch.Encap || ch.Mode != "TUNNEL" {
		t.Errorf("charon's child SA %s-%d/%s encap %v %s, want %s/%s in UDP", ch.EncrAlg, ch.EncrKeySize, ch.IntegAlg, ch.Encap, ch.Mode,
			s.espEncr, s.espInteg)
	}
	if sa.LocalPort != 4500 || sa.RemotePort != 4500 {
		t.Errorf("charon's IKE SA on ports %d/%d, want 4500 (kernel-libipsec fakes a NAT)", sa.LocalPort, sa.RemotePort)
	}
}

// TestPrivilegedInteropCharon runs spugate on gw-a against strongSwan's
// charon (kernel-libipsec, ESP in UDP 4500) on gw-b in one lab: PSK with
// spugate as initiator and as responder, ping and TCP both ways, the four
// suites as swanctl --list-sas shows them, the mismatches with the notify
// on both sides, deletes from either side, and DPD when charon dies.
func TestPrivilegedInteropCharon(t *testing.T) {
	ib := newInteropbed(t)
	a := ib.a

	t.Run("spugate-initiates", func(t *testing.T) {
		start := time.Now()
		a.spuctl(t, "initiate", "tun")
		t.Logf("spugate -> charon: tunnel up in %v", time.Since(start).Round(100*time.Microsecond))
		sa, err := ib.c.WaitEstablished("site", "net", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		checkCharonSA(t, sa, interopSuites[0])
		if sa.Initiator {
			t.Errorf("charon thinks it initiated")
		}
		ib.traffic(t)
		ours := a.sas(t)
		if len(ours) != 1 || !ours[0].NATRemote || ours[0].Remote.Port() != 4500 || !ours[0].Children[0].Encap {
			t.Errorf("spugate did not follow charon to UDP 4500: %+v", ours)
		}
		if ch := sa.Child("net"); ch.SPIIn != ours[0].Children[0].SPIOut || ch.SPIOut != ours[0].Children[0].SPIIn {
			t.Errorf("SPIs: charon in %08x out %08x, spugate in %08x out %08x", ch.SPIIn, ch.SPIOut, ours[0].Children[0].SPIIn, ours[0].Children[0].SPIOut)
		}
		// charon deletes.
		if err := ib.c.Terminate("site"); err != nil {
			t.Fatal(err)
		}
		gone(t, a)
	})

	t.Run("charon-initiates", func(t *testing.T) {
		start := time.Now()
		if err := ib.c.Initiate("net", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("charon -> spugate: tunnel up in %v", time.Since(start).Round(100*time.Microsecond))
		ours := a.sas(t)
		if len(ours) != 1 || ours[0].Initiator || len(ours[0].Children) != 1 {
			t.Fatalf("spugate as responder: %+v", ours)
		}
		ib.traffic(t)
		// spugate deletes.
		a.spuctl(t, "terminate", "tun")
		gone(t, a)
		ib.charonGone(t)
	})

	t.Run("child-delete", func(t *testing.T) {
		a.spuctl(t, "initiate", "tun")
		a.spuctl(t, "terminate", "tun", "net")
		if _, err := ib.c.WaitSAs(func(s []strongswan.IKESA) bool { return len(s) == 1 && len(s[0].Children) == 0 }, 10*time.Second); err != nil {
			t.Errorf("charon after spugate deleted the Child SA: %v", err)
		}
		a.spuctl(t, "initiate", "tun", "net")
		pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
		if err := ib.c.TerminateChild("net"); err != nil {
			t.Fatal(err)
		}
		if !waitFor(5*time.Second, func() bool { sas, _ := a.dump(t); return len(sas) == 0 }) {
			t.Errorf("spugate kept its SAs after charon deleted the Child SA")
		}
		a.spuctl(t, "terminate", "tun")
		gone(t, a)
		ib.charonGone(t)
	})

	sec := secrets(interopPSK, strongswan.IDGwA, strongswan.IDGwB)
	for _, s := range interopSuites {
		t.Run("suite-"+s.ike, func(t *testing.T) {
			ib.reconfigure(t, charonConf(t, ib.ln, s.ike, s.esp, nil), spugateConf(ib.ln, s.ike, s.esp), sec)
			for _, spugateFirst := range []bool{true, false} {
				if spugateFirst {
					a.spuctl(t, "initiate", "tun")
				} else if err := ib.c.Initiate("net", 10*time.Second); err != nil {
					t.Fatal(err)
				}
				sa, err := ib.c.WaitEstablished("site", "net", 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				checkCharonSA(t, sa, s)
				out, err := ib.c.Swanctl("--list-sas")
				if err != nil {
					t.Fatal(err)
				}
				for _, w := range s.listSAs {
					if !strings.Contains(string(out), w) {
						t.Errorf("swanctl --list-sas does not show %s:\n%s", w, out)
					}
				}
				pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
				labtest.TCPTransfer(t, ib.ln.ClientB, ib.ln.ClientA, ib.ln.Plan.ClientA4, 256<<10)
				a.spuctl(t, "terminate", "tun")
				gone(t, a)
				ib.charonGone(t)
			}
		})
	}

	base := interopSuites[0]
	for _, m := range []struct {
		name     string
		modC     func(*strongswan.Conn)
		modS     func(*conf)
		secC     string
		secS     string
		notify   string // the notify's name in errors and in our log
		abbr     string // charon's abbreviation in its message dumps
		reasonS  string // our reason when spugate initiates
		reasonR  string // our reason when charon initiates
		charonRx string // what charon logs when it receives the notify
	}{
		{name: "no-common-proposal", modC: func(c *strongswan.Conn) { c.Proposals = []string{"aes256-sha256-modp2048"} },
			modS: func(c *conf) { c.ike = "aes256gcm16-prfsha384-ecp384" }, notify: "NO_PROPOSAL_CHOSEN", abbr: "N(NO_PROP)",
			reasonS: "no_proposal_chosen", reasonR: "no_proposal_chosen", charonRx: "received NO_PROPOSAL_CHOSEN notify error"},
		{name: "wrong-psk", secC: "a completely different pre-shared key", notify: "AUTHENTICATION_FAILED", abbr: "N(AUTH_FAILED)",
			reasonS: "authentication_failed", reasonR: "authentication_failed", charonRx: "received AUTHENTICATION_FAILED notify error"},
		{name: "wrong-id", modS: func(c *conf) { c.localID = "stranger.lab.example" }, secS: secrets(interopPSK, "stranger.lab.example", strongswan.IDGwB),
			modC: func(c *strongswan.Conn) { c.Local.ID = "other-b.lab.example" }, notify: "AUTHENTICATION_FAILED", abbr: "N(AUTH_FAILED)",
			reasonS: "authentication_failed", reasonR: "peer_id_mismatch", charonRx: "received AUTHENTICATION_FAILED notify error"},
		{name: "ts-not-narrowable", modC: func(c *strongswan.Conn) { c.Children[0].RemoteTS = []string{"198.18.99.0/24"} },
			modS: func(c *conf) { c.remoteTS = "198.18.98.0/24" }, notify: "TS_UNACCEPTABLE", abbr: "N(TS_UNACCEPT)",
			reasonS: "ts_unacceptable", reasonR: "ts_unacceptable", charonRx: "received TS_UNACCEPTABLE notify"},
	} {
		t.Run("mismatch-"+m.name, func(t *testing.T) {
			cc := charonConf(t, ib.ln, base.ike, base.esp, m.modC)
			if m.secC != "" {
				cc.Secrets = strongswan.LinePSK([]byte(m.secC))
				if m.name == "wrong-id" {
					cc.Secrets.IKE[0].IDs = []string{strongswan.IDGwA, "other-b.lab.example"}
				}
			}
			if m.name == "wrong-id" {
				cc.Secrets.IKE[0].IDs = []string{strongswan.IDGwA, "other-b.lab.example"}
			}
			sc := spugateConf(ib.ln, base.ike, base.esp)
			if m.modS != nil {
				m.modS(&sc)
			}
			ssec := sec
			if m.secS != "" {
				ssec = m.secS
			}
			ib.reconfigure(t, cc, sc, ssec)

			// spugate initiates: charon answers with the notify.
			logC, logS := len(ib.c.Log()), len(a.iked.Proc.Log())
			out, err := a.iked.Spuctl("initiate", "tun")
			if err == nil || !strings.Contains(out, m.notify) {
				t.Errorf("spugate's initiate: %v %s, want a failure naming %s", err, out, m.notify)
			}
			if _, err := ib.c.WaitLog(regexp.MustCompile(regexp.QuoteMeta(m.abbr)), 5*time.Second); err != nil ||
				!strings.Contains(ib.c.Log()[logC:], m.abbr) {
				t.Errorf("charon's log does not show it sent %s:\n%s", m.abbr, tail(ib.c.Log()[logC:], 30))
			}
			if l := a.iked.Proc.Log()[logS:]; !strings.Contains(l, "reason="+m.reasonS) {
				t.Errorf("iked's log lacks reason=%s:\n%s", m.reasonS, tail(l, 30))
			}
			gone(t, a)

			// charon initiates: spugate answers with the notify.
			logC, logS = len(ib.c.Log()), len(a.iked.Proc.Log())
			if err := ib.c.Initiate("net", 10*time.Second); err == nil {
				t.Errorf("charon's initiate succeeded")
			}
			if !waitFor(5*time.Second, func() bool { return strings.Contains(ib.c.Log()[logC:], m.charonRx) }) {
				t.Errorf("charon's log lacks %q:\n%s", m.charonRx, tail(ib.c.Log()[logC:], 30))
			}
			if l := a.iked.Proc.Log()[logS:]; !strings.Contains(l, "reason="+m.reasonR) {
				t.Errorf("iked's log lacks reason=%s:\n%s", m.reasonR, tail(l, 30))
			}
			// A failed Child SA leaves charon's IKE SA (charon keeps it).
			ib.c.Terminate("site")
			a.iked.Spuctl("terminate", "tun")
			gone(t, a)
			ib.charonGone(t)
		})
	}

	t.Run("charon-rekeys-child", func(t *testing.T) {
		cc := charonConf(t, ib.ln, base.ike, base.esp, func(c *strongswan.Conn) {
			c.Children[0].RekeyTime, c.Children[0].LifeTime, c.Children[0].RandTime = 4*time.Second, 30*time.Second, -1
		})
		ib.reconfigure(t, cc, spugateConf(ib.ln, base.ike, base.esp), sec)
		ib.c.Terminate("site")
		a.iked.Spuctl("terminate", "tun")
		a.spuctl(t, "initiate", "tun")
		first := a.sas(t)[0].Children[0]
		flood := pingFlood(ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4, 10*time.Second)
		// charon rekeys at 4 s and 8 s: the Child SA is new, alone, and
		// traffic never stopped.
		res := <-flood
		sas := a.sas(t)
		if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].SPIIn == first.SPIIn {
			t.Errorf("after charon's rekeys: %+v (first %08x)", sas, first.SPIIn)
		}
		if n := strings.Count(a.iked.Proc.Log(), "role=responder"); n < 1 {
			t.Errorf("no rekey answered")
		}
		t.Logf("ping across charon's rekeys: %d sent, %d received", res[0], res[1])
		if res[0] <= 0 || res[1] < res[0]-1 {
			t.Errorf("traffic lost across the rekeys: %d of %d", res[1], res[0])
		}
		a.spuctl(t, "terminate", "tun")
		gone(t, a)
		ib.charonGone(t)
	})

	t.Run("spugate-rekeys-child", func(t *testing.T) {
		sc := spugateConf(ib.ln, base.ike, base.esp)
		sc.childExtra = "        rekey_time: 4s\n        life_time: 30s\n        rand_time: 1s\n"
		ib.reconfigure(t, charonConf(t, ib.ln, base.ike, base.esp, nil), sc, sec)
		a.spuctl(t, "initiate", "tun")
		first := a.sas(t)[0].Children[0]
		flood := pingFlood(ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4, 10*time.Second)
		res := <-flood
		sas := a.sas(t)
		if len(sas) != 1 || len(sas[0].Children) != 1 || sas[0].Children[0].SPIIn == first.SPIIn {
			t.Errorf("after spugate's rekeys: %+v (first %08x)", sas, first.SPIIn)
		}
		csas, err := ib.c.ListSAs()
		installed := 0
		if err == nil && len(csas) == 1 {
			for _, ch := range csas[0].Children {
				if ch.State == "INSTALLED" {
					installed++
				}
			}
		}
		if err != nil || len(csas) != 1 || installed != 1 || csas[0].Child("net").SPIOut != sas[0].Children[0].SPIIn {
			t.Errorf("charon after spugate's rekeys (%d installed): %v %+v", installed, err, csas)
		}
		if !strings.Contains(ib.c.Log(), "rekeyed") && !strings.Contains(ib.c.Log(), "REKEY") {
			t.Logf("charon's log does not mention a rekey")
		}
		t.Logf("ping across spugate's rekeys: %d sent, %d received", res[0], res[1])
		if res[0] <= 0 || res[1] < res[0]-1 {
			t.Errorf("traffic lost across the rekeys: %d of %d", res[1], res[0])
		}
		a.spuctl(t, "terminate", "tun")
		gone(t, a)
		ib.charonGone(t)
	})

	t.Run("dpd-charon-dies", func(t *testing.T) {
		sc := spugateConf(ib.ln, base.ike, base.esp)
		sc.connExtra = "    dpd_delay: 2s\n"
		ib.reconfigure(t, charonConf(t, ib.ln, base.ike, base.esp, nil), sc, sec)
		a.spuctl(t, "initiate", "tun")
		pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
		logS := len(a.iked.Proc.Log())
		if err := ib.c.Kill(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if !waitFor(25*time.Second, func() bool { return strings.Contains(a.iked.Proc.Log()[logS:], "reason=dpd_timeout") }) {
			t.Fatalf("no DPD timeout after charon died:\n%s", tail(a.iked.Proc.Log()[logS:], 30))
		}
		t.Logf("DPD timeout %v after charon died", time.Since(start).Round(100*time.Millisecond))
		gone(t, a)
		// charon comes back; the tunnel can be made again.
		c, err := strongswan.Start(ib.ln.GwB, ib.cfg)
		if err != nil {
			t.Fatal(err)
		}
		ib.c = c
		a.spuctl(t, "initiate", "tun")
		pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
	})

	t.Run("charon-dpd-spugate-dies", func(t *testing.T) {
		// charon with DPD finds a dead iked; spud keeps forwarding with
		// the SAs iked left, until iked's restart takes them over.
		cc := charonConf(t, ib.ln, base.ike, base.esp, func(c *strongswan.Conn) { c.DPDDelay = 2 * time.Second })
		sc := spugateConf(ib.ln, base.ike, base.esp)
		ib.reconfigure(t, cc, sc, sec)
		ib.c.Terminate("site")
		a.iked.Spuctl("terminate", "tun")
		a.spuctl(t, "initiate", "tun")
		if _, err := ib.c.WaitEstablished("site", "net", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := a.iked.Kill(); err != nil {
			t.Fatal(err)
		}
		pingUp(t, ib.ln.ClientA, ib.ln.Plan.ClientA4, ib.ln.Plan.ClientB4)
		if err := a.iked.Restart(); err != nil {
			t.Fatal(err)
		}
		// charon's liveness checks reach the restored IKE SA and are answered.
		time.Sleep(5 * time.Second)
		if sas, err := ib.c.ListSAs(); err != nil || len(sas) != 1 || sas[0].Child("net") == nil {
			t.Errorf("charon after iked's restart: %v %+v", err, sas)
		}
		mustPing(t, ib.ln.ClientB, ib.ln.Plan.ClientB4, ib.ln.Plan.ClientA4)
		a.spuctl(t, "terminate", "tun")
		ib.charonGone(t)
	})
}
