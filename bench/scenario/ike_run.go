package scenario

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/deploy/gateway"
	"github.com/spugate/spugate/deploy/lab"
	"github.com/spugate/spugate/deploy/strongswan"
)

// assumed setup rates for the progress estimate, per method.
var assumedRate = map[string]float64{"psk": 300, "ecdsa": 150}

// Estimate is how long Run should take.
func (c *IKE) Estimate() time.Duration {
	c.defaults()
	var d time.Duration
	for range c.Responders {
		for _, a := range c.Auths {
			rate := assumedRate[a]
			if rate == 0 {
				rate = 100
			}
			d += 8*time.Second + time.Duration(float64(c.Count)/rate*float64(time.Second))
		}
	}
	return d
}

// Run measures every responder and method, each on a fresh line.
func (c *IKE) Run(e *Env) (*IKEResults, error) {
	c.defaults()
	if m := strongswan.Missing(); m != "" {
		return nil, fmt.Errorf("ike: the initiator is charon: %s", m)
	}
	res := &IKEResults{}
	res.Notes = append(res.Notes,
		fmt.Sprintf("Initiator: charon on gw-a for every responder (strongSwan's load-tester plugin is not in Debian's packages), "+
			"%d VICI initiations in flight, IKE SA reuse off, so that each initiation makes a new IKE SA with its Child SA; responder on gw-b with unique = never and its half-open, cookie and block thresholds raised. "+
			"IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16; ECDSA is P-256 certificates from one CA, sent in every IKE_AUTH. "+
			"Both daemons share the machine's CPUs: the rate is the pair's, initiator included. "+
			"iked runs with spud on gw-b (iked keeps the IKE SAs, spud the Child SAs: both memories are given); "+
			"charon keeps both in one process (its ESP is kernel-libipsec's). iked's own load-initiator mode does not exist yet.", c.Window))
	for _, resp := range c.Responders {
		for _, auth := range c.Auths {
			run := IKERun{Responder: resp, Initiator: c.Initiator, Auth: auth, Count: c.Count}
			switch {
			case c.Initiator != "charon":
				run.Error = fmt.Sprintf("initiator %q: only charon drives the test so far", c.Initiator)
			case resp == "iked":
				c.iked(e, auth, &run)
			case resp != "charon":
				run.Error = fmt.Sprintf("unknown responder %q", resp)
			default:
				c.charon(e, auth, &run)
			}
			if run.Error != "" {
				e.Logf("ike: %s responder, %s: %s", resp, auth, run.Error)
			}
			res.Runs = append(res.Runs, run)
		}
	}
	res.Ratios = IKERatios(res.Runs)
	return res, nil
}

// ikeProposal and espProposal are the suites of the setup test.
const (
	ikeProposal = "aes128gcm16-prfsha256-x25519"
	espProposal = "aes128gcm16"
)

// charon measures charon answering charon.
func (c *IKE) charon(e *Env, auth string, run *IKERun) {
	label := fmt.Sprintf("ike: charon responder, %s, %d IKE SAs", auth, c.Count)
	rate := assumedRate[auth]
	if rate == 0 {
		rate = 100
	}
	e.Progress.Step(label, 8*time.Second+time.Duration(float64(c.Count)/rate*float64(time.Second)))
	ln, err := lab.NewLine(lab.Options{Logf: e.Debugf, NoSignalHandler: e.NoSignalHandler},
		lab.LineOptions{NoClearRoutes: true, Links: e.Links, GatewayLinks: e.Links})
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer ln.Close()
	ci, cr, _, _, err := c.configs(ln, auth)
	if err != nil {
		run.Error = err.Error()
		return
	}
	responder, err := strongswan.Start(ln.GwB, cr)
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer responder.Stop()
	initiator, err := strongswan.Start(ln.GwA, ci)
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer initiator.Stop()
	time.Sleep(500 * time.Millisecond)
	if run.Before, err = system.ReadMemory(responder.PID); err != nil {
		run.Error = err.Error()
		return
	}
	timeout := max(c.Timeout, time.Duration(float64(c.Count)/20*float64(time.Second)))
	start := time.Now()
	count := func() (int, error) {
		total, half, err := ikeCounts(responder)
		return total - half, err
	}
	up, err := drive(initiator, count, c.Count, c.Window, timeout, func(up int) {
		el := time.Since(start)
		e.Progress.Update(label, float64(up)/float64(c.Count), fmt.Sprintf("%d up, %.0f/s", up, float64(up)/el.Seconds()))
	})
	run.Elapsed = time.Since(start)
	run.Established = up
	if up > 0 {
		run.Rate = float64(up) / run.Elapsed.Seconds()
	}
	if err != nil {
		run.Error = err.Error()
	}
	time.Sleep(500 * time.Millisecond)
	if sas, err := responder.ListSAs(); err == nil {
		for _, sa := range sas {
			if sa.Ready() && sa.Child("net") != nil {
				run.WithChild++
			}
		}
	}
	if m, err := system.ReadMemory(responder.PID); err == nil {
		run.After = m
		if up > 0 {
			run.PerTunnel = (float64(m.RSS) - float64(run.Before.RSS)) / float64(up)
		}
	}
	e.Logf("%s: %d up in %v (%.0f/s), %d with their Child SA; responder RSS %.1f -> %.1f MiB (%.1f KiB per tunnel)%s", label, up, run.Elapsed.Round(time.Millisecond), run.Rate, run.WithChild,
		mib(run.Before.RSS), mib(run.After.RSS), run.PerTunnel/1024, ifErr(err))
}

func ifErr(err error) string {
	if err == nil {
		return ""
	}
	return "; " + err.Error()
}

// configs are the initiator's (gw-a) and responder's (gw-b) charon
// configurations for auth ("psk" or "ecdsa"), and for "ecdsa" the CA and
// gw-b's certificate (for iked as the responder).
func (c *IKE) configs(ln *lab.Line, auth string) (ci, cr strongswan.Config, root, certB *strongswan.Cert, err error) {
	var pki *strongswan.PKI
	var certA *strongswan.Cert
	if auth == "ecdsa" {
		if pki, err = strongswan.NewPKI(filepath.Join(ln.LogDir, "pki")); err != nil {
			return
		}
		o := strongswan.CertOptions{Key: strongswan.ECDSA256}
		if root, err = pki.NewCA("root", o); err != nil {
			return
		}
		oa, ob := o, o
		oa.SANs = []string{strongswan.IDGwA, ln.Plan.GwAWan4.String()}
		ob.SANs = []string{strongswan.IDGwB, ln.Plan.GwBWan4.String()}
		oa.Flags, ob.Flags = []string{"serverAuth"}, []string{"serverAuth"}
		if certA, err = pki.NewCert("gw-a", root, oa); err != nil {
			return
		}
		if certB, err = pki.NewCert("gw-b", root, ob); err != nil {
			return
		}
	} else if auth != "psk" {
		err = fmt.Errorf("ike: authentication %q: want psk or ecdsa", auth)
		return
	}
	mk := func(gw *lab.Host, own *strongswan.Cert) (strongswan.Config, error) {
		conn, err := strongswan.LineConn(ln, gw, strongswan.LineConnOptions{Families: "4"})
		if err != nil {
			return strongswan.Config{}, err
		}
		conn.Proposals = []string{ikeProposal}
		conn.Children[0].ESPProposals = []string{espProposal}
		conn.Mobike = strongswan.No
		cfg := strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{conn}}
		cn := &cfg.Conns[0]
		if auth == "psk" {
			cn.Local.Auth, cn.Remote.Auth = "psk", "psk"
			cfg.Secrets = strongswan.LinePSK(system.StrongSwanPSK)
		} else {
			cn.Local.Auth, cn.Remote.Auth = "pubkey", "pubkey"
			cn.Local.Certs = []string{cfg.Files.AddIdentity(own)}
			cn.Remote.CACerts = []string{cfg.Files.AddCA(root)}
			cn.SendCert = strongswan.Flag("always")
		}
		st := &cfg.Settings
		st.IKESATableSize, st.IKESATableSegs = 4096, 16
		st.InitLimitHalfOpen, st.CookieThreshold, st.CookieThresholdIP, st.BlockThreshold = 100000, 100000, 100000, 100000
		// Warnings only: a log line per SA would cost the daemons more
		// than the exchange.
		cfg.Log = map[string]int{"default": 0, "ike": 0}
		return cfg, nil
	}
	if ci, err = mk(ln.GwA, certA); err != nil {
		return
	}
	ci.Settings.ReuseIKESA = strongswan.No
	if cr, err = mk(ln.GwB, certB); err != nil {
		return
	}
	cr.Conns[0].Unique = strongswan.Flag("never")
	return
}

// ikeCounts reads charon's IKE SA counters: all, and half-open.
func ikeCounts(ch *strongswan.Charon) (total, halfOpen int, err error) {
	st, err := ch.Stats()
	if err != nil {
		return 0, 0, err
	}
	s := st.Sub("ikesas")
	if s == nil {
		return 0, 0, errors.New("ike: stats without ikesas")
	}
	total, _ = strconv.Atoi(s.Get("total"))
	halfOpen, _ = strconv.Atoi(s.Get("half-open"))
	return total, halfOpen, nil
}

// drive has the initiator start n IKE SAs, at most window of them not yet
// established on the responder (count) at a time, and returns how many
// the responder holds established when all are, or when timeout passes.
func drive(ini *strongswan.Charon, count func() (int, error), n, window int, timeout time.Duration, progress func(up int)) (int, error) {
	deadline := time.Now().Add(timeout)
	var started, failed atomic.Int64
	var firstErr error
	var mu sync.Mutex
	sem := make(chan struct{}, 8) // concurrent VICI calls (charon's socket backlog is 3)
	var wg sync.WaitGroup
	up := 0
	for {
		var err error
		if up, err = count(); err != nil {
			wg.Wait()
			return up, err
		}
		progress(up)
		if up >= n {
			break
		}
		if time.Now().After(deadline) {
			wg.Wait()
			return up, fmt.Errorf("ike: %d of %d IKE SAs up after %v (%d initiations failed: %v)", up, n, timeout, failed.Load(), firstErr)
		}
		inflight := int(started.Load()) - up
		for inflight < window && int(started.Load()) < n {
			started.Add(1)
			inflight++
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if err := ini.InitiateIKE("site", "net", -1); err != nil {
					failed.Add(1)
					started.Add(-1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	return up, nil
}

// iked measures iked (with spud) answering charon.
func (c *IKE) iked(e *Env, auth string, run *IKERun) {
	label := fmt.Sprintf("ike: iked responder, %s, %d IKE SAs", auth, c.Count)
	rate := assumedRate[auth]
	if rate == 0 {
		rate = 100
	}
	e.Progress.Step(label, 8*time.Second+time.Duration(float64(c.Count)/rate*float64(time.Second)))
	ln, err := lab.NewLine(lab.Options{Logf: e.Debugf, NoSignalHandler: e.NoSignalHandler},
		lab.LineOptions{NoClearRoutes: true, Links: e.Links, GatewayLinks: e.Links})
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer ln.Close()
	ci, _, root, certB, err := c.configs(ln, auth)
	if err != nil {
		run.Error = err.Error()
		return
	}
	// The same identities as charon's: with certificates, gw-b's P-256
	// certificate from the CA charon trusts, sent in every IKE_AUTH.
	local := fmt.Sprintf("{auth: psk, id: %s}", strongswan.IDGwB)
	remote := fmt.Sprintf("{auth: psk, id: %s}", strongswan.IDGwA)
	global, sendCert := "", ""
	if certB != nil {
		dir := filepath.Join(ln.LogDir, "iked-pki")
		if err := ikedCerts(dir, root, certB); err != nil {
			run.Error = err.Error()
			return
		}
		global = fmt.Sprintf("pki:\n  x509: %[1]s/x509\n  x509ca: %[1]s/x509ca\n  x509crl: %[1]s/x509crl\n  private: %[1]s/private\n", dir)
		local = fmt.Sprintf("{auth: pubkey, certs: gw-b.pem, id: %s}", strongswan.IDGwB)
		remote = fmt.Sprintf("{auth: pubkey, id: %s}", strongswan.IDGwA)
		sendCert = "    send_cert: always\n"
	}
	sp, err := gateway.StartSpud(ln.GwB, gateway.SpudOptions{})
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer sp.Stop()
	pl := ln.Plan
	conf := fmt.Sprintf(`%scookie_threshold: 1000000
init_limit_half_open: 1000000
connections:
  site:
    local_addrs: %s
    remote_addrs: %s
    proposals: %s
    unique: never
    mobike: no
%s    local: %s
    remote: %s
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
`, global, pl.GwBWan4, pl.GwAWan4, ikeProposal, sendCert, local, remote, pl.LanB4, pl.LanA4, espProposal)
	secrets := fmt.Sprintf("ike:\n  site:\n    id: [%s, %s]\n    secret: %q\n", strongswan.IDGwA, strongswan.IDGwB, string(system.StrongSwanPSK))
	k, err := gateway.StartIked(sp, gateway.IkedOptions{Config: conf, Secrets: secrets, Args: []string{"-log-level", "warn"}})
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer k.Cleanup()
	defer k.Stop()
	initiator, err := strongswan.Start(ln.GwA, ci)
	if err != nil {
		run.Error = err.Error()
		return
	}
	defer initiator.Stop()
	time.Sleep(500 * time.Millisecond)
	spudBefore, err := system.ReadMemory(sp.Proc.PID)
	if err == nil {
		run.Before, err = system.ReadMemory(k.Proc.PID)
	}
	if err != nil {
		run.Error = err.Error()
		return
	}
	count := func() (int, error) {
		st, err := k.Client.Stats()
		if err != nil {
			return 0, err
		}
		return int(st.Counters["ike_sas_established"]), nil
	}
	timeout := max(c.Timeout, time.Duration(float64(c.Count)/20*float64(time.Second)))
	start := time.Now()
	up, err := drive(initiator, count, c.Count, c.Window, timeout, func(up int) {
		el := time.Since(start)
		e.Progress.Update(label, float64(up)/float64(c.Count), fmt.Sprintf("%d up, %.0f/s", up, float64(up)/el.Seconds()))
	})
	run.Elapsed = time.Since(start)
	run.Established = up
	if up > 0 {
		run.Rate = float64(up) / run.Elapsed.Seconds()
	}
	if err != nil {
		run.Error = err.Error()
	}
	time.Sleep(500 * time.Millisecond)
	if st, err := k.Client.Stats(); err == nil {
		run.WithChild = int(st.Counters["child_sas_installed"])
	}
	if m, err := system.ReadMemory(k.Proc.PID); err == nil && up > 0 {
		run.After = m
		run.PerTunnel = (float64(m.RSS) - float64(run.Before.RSS)) / float64(up)
	}
	if m, err := system.ReadMemory(sp.Proc.PID); err == nil && up > 0 {
		run.DataPlanePerTunnel = (float64(m.RSS) - float64(spudBefore.RSS)) / float64(up)
	}
	e.Logf("%s: %d up in %v (%.0f/s), %d Child SAs installed; iked RSS %.1f -> %.1f MiB (%.1f KiB per tunnel), spud +%.1f KiB per tunnel%s",
		label, up, run.Elapsed.Round(time.Millisecond), run.Rate, run.WithChild, mib(run.Before.RSS), mib(run.After.RSS), run.PerTunnel/1024,
		run.DataPlanePerTunnel/1024, ifErr(err))
}

// ikedCerts lays out iked's certificate folders under dir: gw-b's
// certificate and key, and the CA as the trust anchor.
func ikedCerts(dir string, root, own *strongswan.Cert) error {
	for _, f := range []struct {
		sub, name string
		data      []byte
		mode      os.FileMode
	}{
		{"x509", "gw-b.pem", own.CertPEM, 0o644},
		{"private", "gw-b.key", own.KeyPEM, 0o600},
		{"x509ca", "root.pem", root.CertPEM, 0o644},
		{"x509crl", "", nil, 0},
	} {
		if err := os.MkdirAll(filepath.Join(dir, f.sub), 0o700); err != nil {
			return fmt.Errorf("ike: %w", err)
		}
		if f.name == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, f.sub, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("ike: %w", err)
		}
	}
	return nil
}
