// Command spudemo is `make demo`: it builds the two-gateway namespace lab,
// starts spugate on both gateways, brings the VPN up between them, sends
// traffic from client-a to client-b and back through it, prints a summary
// and removes everything. It shows progress as it goes and, if a step fails,
// prints the daemons' logs and the hosts' state, and exits non-zero.
package main

import (
	"bytes"
	"crypto/rand"
	"flag"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/version"
	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/flow"
	"github.com/spugate/spugate/testbed/lab"
)

var (
	mode        = flag.String("auth", "psk", "how the tunnel is keyed: psk (IKEv2 with a pre-shared key), cert (IKEv2 with certificates from a lab CA) or static (manual keys)")
	certKey     = flag.String("cert-key", "ecdsa-p256", "key type of the gateways' certificates with -auth=cert: ecdsa-p256, ecdsa-p384, rsa2048, rsa3072, rsa4096 (IKE_AUTH then needs fragments), ed25519")
	suite       = flag.String("suite", ipsec.AES128GCM16.String(), fmt.Sprintf("ESP suite: one of %v", ipsec.Suites))
	ikeProposal = flag.String("ike", "aes128gcm16-prfsha256-x25519", "IKE proposal (strongSwan syntax)")
)

type demo struct {
	ln      *lab.Line
	a, b    *daemons.Spud
	ka, kb  *daemons.Iked
	step    int
	steps   int
	started time.Time
	// pkiDir holds the lab CA and both gateways' certificate folders
	// (-auth=cert).
	pkiDir string
}

func (d *demo) say(format string, args ...any) {
	d.step++
	fmt.Printf("==> [%d/%d] %s\n", d.step, d.steps, fmt.Sprintf(format, args...))
}

func main() {
	showVer := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVer {
		fmt.Println(version.Line("spudemo"))
		return
	}
	d := &demo{steps: 6, started: time.Now()}
	err := d.run()
	if err != nil && d.ln != nil {
		d.ln.MarkFailed()
		fmt.Fprintln(os.Stderr, "\n"+d.ln.Report())
	}
	if d.ln != nil {
		for _, k := range []*daemons.Iked{d.ka, d.kb} {
			if k != nil {
				k.Stop()
				k.Cleanup()
			}
		}
		for _, s := range []*daemons.Spud{d.a, d.b} {
			if s != nil {
				s.Stop()
			}
		}
		if cerr := d.ln.Close(); cerr != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", cerr)
		}
	}
	if d.pkiDir != "" {
		os.RemoveAll(d.pkiDir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo FAILED: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("\ndemo finished in %.1fs, lab removed\n", time.Since(d.started).Seconds())
}

func (d *demo) run() error {
	switch *mode {
	case "psk", "static":
	case "cert":
		d.steps++
	default:
		return fmt.Errorf("-auth %s: want psk, cert or static", *mode)
	}
	espSuite, err := ipsec.ParseSuite(*suite)
	if err != nil {
		return fmt.Errorf("-suite: %w (want one of %v)", err, ipsec.Suites)
	}
	d.say("building the lab: client-a -- gw-a -- gw-b -- client-b (network namespaces, 198.18.0.0/15, 2001:db8::/32)")
	// No clear routes between the LANs: what reaches the far side went
	// through the tunnel.
	ln, err := lab.NewLine(lab.Options{}, lab.LineOptions{GatewayLinks: lab.LinkOptions{Queues: 2}, NoClearRoutes: true})
	if err != nil {
		return err
	}
	d.ln = ln
	p := ln.Plan

	d.say("starting spud on gw-a and gw-b (XDP steering, AF_XDP sockets, one SPU per core)")
	if d.a, err = daemons.StartSpud(ln.GwA, daemons.SpudOptions{}); err != nil {
		return err
	}
	if d.b, err = daemons.StartSpud(ln.GwB, daemons.SpudOptions{}); err != nil {
		return err
	}
	hello, err := d.a.Client.Hello("spudemo")
	if err != nil {
		return err
	}
	st := hello.Steering
	why := ""
	if st.CarrierReason != "" {
		why = " (" + st.CarrierReason + ")"
	}
	fmt.Printf("    gw-a: kernel %s, steering carrier %s%s\n", st.Kernel, st.Carrier, why)
	for _, ifc := range hello.Interfaces {
		fmt.Printf("    gw-a %s: %d queues, XDP %s, AF_XDP %s mode, protected=%v\n", ifc.Name, ifc.Queues, ifc.XDPMode, ifc.XSKMode, ifc.Protected)
	}

	switch *mode {
	case "static":
		d.say("bringing the tunnel up: manual keys, %s, %s <-> %s and %s <-> %s", *suite, p.LanA4, p.LanB4, p.LanA6, p.LanB6)
		v4 := daemons.NewStaticTunnel(1, p.GwAWan4, p.GwBWan4, []netip.Prefix{p.LanA4}, []netip.Prefix{p.LanB4}, espSuite, false)
		v6 := daemons.NewStaticTunnel(2, p.GwAWan4, p.GwBWan4, []netip.Prefix{p.LanA6}, []netip.Prefix{p.LanB6}, espSuite, false)
		for _, tn := range []*daemons.StaticTunnel{v4, v6} {
			if err := tn.Install(d.a, d.b); err != nil {
				return err
			}
		}
	default:
		if err := d.ike(); err != nil {
			return err
		}
	}

	d.say("traffic through the tunnel")
	for _, x := range []struct {
		from *lab.Host
		dst  netip.Addr
	}{{ln.ClientA, p.ClientB4}, {ln.ClientB, p.ClientA4}, {ln.ClientA, p.ClientB6}, {ln.ClientB, p.ClientA6}} {
		out, err := x.from.Exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", x.dst.String())
		if err != nil {
			return fmt.Errorf("ping from %s to %s: %v\n%s", x.from.Name, x.dst, err, out)
		}
		fmt.Printf("    ping %s -> %s: %s\n", x.from.Name, x.dst, lastLine(out))
	}
	mbps, err := tcpThroughput(ln.ClientA, ln.ClientB, p.ClientB4, 32<<20)
	if err != nil {
		return err
	}
	fmt.Printf("    TCP client-a -> client-b, 32 MiB: %.0f Mbit/s (MTU-sized ESP packets; 2 cores run both gateways, both clients and the crypto)\n", mbps)
	f, err := flow.Start(flow.Options{From: ln.ClientA, To: ln.ClientB, Src: p.ClientA4, Dst: p.ClientB4, Rate: 5000, Duration: 3 * time.Second})
	if err != nil {
		return err
	}
	r := f.Wait()
	fmt.Printf("    UDP flow client-a -> client-b, 5000 packets/s for 3 s: %v\n", r)
	if r.LostCount > 0 {
		// Say where they went: every drop is counted by reason somewhere.
		for _, s := range []*daemons.Spud{d.a, d.b} {
			if st, err := s.Client.Stats(); err == nil {
				fmt.Printf("    %s: drops %v, xdp %v, links %v\n", s.Host.Name, st.Drops, st.XDP, st.Links)
				for _, so := range st.Sockets {
					if so.RxDropped+so.FillEmpty+so.TxFull > 0 {
						fmt.Printf("    %s: socket %s/%d rx_dropped %d fill_empty %d tx_full %d\n", s.Host.Name, so.Interface, so.Queue, so.RxDropped, so.FillEmpty, so.TxFull)
					}
				}
			}
		}
	}
	// A busy machine can lose a few (counted above); more is a failure.
	if r.Duplicates > 0 || r.LostCount*20 > r.Sent {
		return fmt.Errorf("UDP flow: %v", r)
	}

	d.say("summary")
	if d.ka != nil {
		out, err := d.ka.Spuctl("list-sas")
		if err != nil {
			return fmt.Errorf("spuctl list-sas on gw-a: %v", err)
		}
		fmt.Printf("  gw-a: spuctl list-sas\n%s", indent(out))
		if *mode == "cert" {
			// Certificate chains make IKE_AUTH big: the fragment counters
			// show whether it was fragmented (RFC 7383).
			if out, err = d.ka.Spuctl("ike-stats"); err != nil {
				return fmt.Errorf("spuctl ike-stats on gw-a: %v", err)
			}
			fmt.Printf("  gw-a: spuctl ike-stats\n%s", indent(out))
		}
	}
	for _, s := range []*daemons.Spud{d.a, d.b} {
		sas, err := s.Spuctl("sa", "list")
		if err != nil {
			return fmt.Errorf("spuctl sa list on %s: %v", s.Host.Name, err)
		}
		st, err := s.Spuctl("stats")
		if err != nil {
			return fmt.Errorf("spuctl stats on %s: %v", s.Host.Name, err)
		}
		fmt.Printf("  %s: spuctl sa list\n%s  %s: spuctl stats\n%s", s.Host.Name, indent(sas), s.Host.Name, indent(st))
	}

	d.say("tearing down")
	return nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "received") {
			return strings.TrimSpace(lines[i])
		}
	}
	return lines[len(lines)-1]
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// tcpThroughput sends n bytes over TCP from client to server and returns
// Mbit/s.
func tcpThroughput(client, server *lab.Host, dst netip.Addr, n int) (float64, error) {
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(dst, 5201).String())
		return err
	}); err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		m, _ := io.Copy(io.Discard, c)
		got <- m
	}()
	var conn net.Conn
	if err := client.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(dst, 5201).String(), 5*time.Second)
		return err
	}); err != nil {
		return 0, fmt.Errorf("TCP connect through the tunnel: %w", err)
	}
	data := make([]byte, n)
	rand.Read(data)
	start := time.Now()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.Copy(conn, bytes.NewReader(data)); err != nil {
		conn.Close()
		return 0, fmt.Errorf("TCP send: %w", err)
	}
	conn.Close()
	m := <-got
	el := time.Since(start)
	if m != int64(n) {
		return 0, fmt.Errorf("TCP: %d of %d bytes arrived", m, n)
	}
	return float64(n*8) / el.Seconds() / 1e6, nil
}

// ike writes iked's configuration on both gateways (swanctl.conf's names in
// YAML, the pre-shared key in a 0600 secrets file, or certificates from a
// lab CA in swanctl-like folders), starts iked, and waits until gw-a, the
// initiator (start_action: start), has the Child SA up.
func (d *demo) ike() error {
	p := d.ln.Plan
	key := make([]byte, 24)
	rand.Read(key)
	secret := fmt.Sprintf("0x%x", key)
	// The local round (auth and, with certificates, certs), the remote
	// round's auth, and the pki folders of a gateway.
	auth := func(string) string { return "      auth: psk\n" }
	remoteAuth := "psk"
	pkiConf := func(string) string { return "" }
	if *mode == "cert" {
		if err := d.certificates(); err != nil {
			return err
		}
		auth = func(id string) string { return fmt.Sprintf("      auth: pubkey\n      certs: %s.pem\n", id) }
		remoteAuth = "pubkey"
		pkiConf = func(gw string) string {
			return fmt.Sprintf("pki:\n  x509: %[1]s/x509\n  x509ca: %[1]s/x509ca\n  private: %[1]s/private\n  x509crl: %[1]s/x509crl\n", filepath.Join(d.pkiDir, gw))
		}
		d.say("bringing the tunnel up with IKEv2: iked on both gateways, %s certificates, %s / %s", *certKey, *ikeProposal, *suite)
	} else {
		d.say("bringing the tunnel up with IKEv2: iked on both gateways, pre-shared key, %s / %s", *ikeProposal, *suite)
	}
	conf := func(local, remote netip.Addr, localID, remoteID string, lts, rts string, start string) string {
		gw := strings.TrimSuffix(localID, ".example")
		return pkiConf(gw) + fmt.Sprintf(`connections:
  site:
    local_addrs: %s
    remote_addrs: %s
    proposals: %s
    dpd_delay: 10s
    local:
%s      id: %s
    remote:
      auth: %s
      id: %s
    children:
      lan:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
        start_action: %s
        dpd_action: restart
`, local, remote, *ikeProposal, auth(localID), localID, remoteAuth, remoteID, lts, rts, espProposal(*suite), start)
	}
	secrets := fmt.Sprintf("ike:\n  site:\n    id: [gw-a.example, gw-b.example]\n    secret: %s\n", secret)
	lanA := p.LanA4.String() + "," + p.LanA6.String()
	lanB := p.LanB4.String() + "," + p.LanB6.String()
	var err error
	if d.kb, err = daemons.StartIked(d.b, daemons.IkedOptions{Secrets: secrets,
		Config: conf(p.GwBWan4, p.GwAWan4, "gw-b.example", "gw-a.example", lanB, lanA, "trap")}); err != nil {
		return err
	}
	start := time.Now()
	if d.ka, err = daemons.StartIked(d.a, daemons.IkedOptions{Secrets: secrets,
		Config: conf(p.GwAWan4, p.GwBWan4, "gw-a.example", "gw-b.example", lanA, lanB, "start")}); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		sas, err := d.a.Client.DumpSAs(false)
		if err == nil && countDir(sas, api.Out) > 0 && countDir(sas, api.In) > 0 {
			break
		}
		if time.Now().After(deadline) {
			out, _ := d.ka.Spuctl("list-sas")
			return fmt.Errorf("no Child SA within 15 s of starting iked; gw-a's list-sas:\n%s\ngw-a iked log:\n%s", out, d.ka.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	fmt.Printf("    IKE SA and Child SA up %v after iked started on gw-a (IKE_SA_INIT + IKE_AUTH, keys installed in spud on the anchor SPU)\n",
		time.Since(start).Round(time.Millisecond))
	return nil
}

// certificates makes the lab PKI with spuctl pki, as an operator would: a
// root CA, an intermediate CA under it, and a certificate for each gateway
// installed into that gateway's folders (x509/ with the intermediate,
// private/ 0600, x509ca/ with the root). Each gateway trusts the root only:
// the intermediate travels in the CERT payloads.
func (d *demo) certificates() error {
	dir, err := os.MkdirTemp("", "spugate-demo-pki-")
	if err != nil {
		return err
	}
	d.pkiDir = dir
	bin, err := daemons.Binaries()
	if err != nil {
		return err
	}
	d.say("making a lab PKI with spuctl pki: a root CA, an intermediate CA, %s certificates for gw-a and gw-b", *certKey)
	spuctl := filepath.Join(bin, "spuctl")
	for _, args := range [][]string{
		{"pki", "ca", filepath.Join(dir, "root")},
		{"pki", "ca", filepath.Join(dir, "intermediate"), "-parent", filepath.Join(dir, "root")},
		{"pki", "issue", filepath.Join(dir, "intermediate"), "-id", "gw-a.example", "-key", *certKey, "-install", filepath.Join(dir, "gw-a")},
		{"pki", "issue", filepath.Join(dir, "intermediate"), "-id", "gw-b.example", "-key", *certKey, "-install", filepath.Join(dir, "gw-b")},
	} {
		fmt.Printf("    $ spuctl %s\n", strings.ReplaceAll(strings.Join(args, " "), dir, "$PKI"))
		out, err := exec.Command(spuctl, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("spuctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

func countDir(sas []api.SAState, dir api.Dir) int {
	n := 0
	for _, s := range sas {
		if s.Dir == dir {
			n++
		}
	}
	return n
}

// espProposal names the suite as an ESP proposal (they share names).
func espProposal(suite string) string { return suite }
