package system

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spugate/spugate/testbed/lab"
)

// WireGuard is wireguard-go (Debian's package) on both gateways: the
// userspace Go VPN a user might pick instead of spugate. Its cipher is
// fixed (ChaCha20-Poly1305); Plan.Suite is ignored. One tunnel only.
type WireGuard struct {
	// Bin is the wireguard-go binary (default: from PATH).
	Bin string

	ln     *lab.Line
	ifname string
	procs  []*lab.Proc
	routes [][2]string // host, "ip route replace" arguments restoring the line
}

// Name is "wireguard-go": the userspace WireGuard, not the kernel module.
func (w *WireGuard) Name() string { return "wireguard-go" }

// WireGuardMissing says why wireguard-go cannot run here, or "".
func WireGuardMissing() string {
	for _, b := range []string{"wireguard-go", "wg"} {
		if _, err := exec.LookPath(b); err != nil {
			return b + " not installed (Debian: wireguard-go, wireguard-tools)"
		}
	}
	return ""
}

func wgKey() (priv, pub string, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	return base64.StdEncoding.EncodeToString(k.Bytes()), base64.StdEncoding.EncodeToString(k.PublicKey().Bytes()), nil
}

// Up starts wireguard-go on both gateways with one peer each, and routes
// the other LAN through it.
func (w *WireGuard) Up(ln *lab.Line, p Plan) error {
	if p.Tunnels != 1 {
		return fmt.Errorf("system: wireguard-go: %d tunnels: only one is set up", p.Tunnels)
	}
	if m := WireGuardMissing(); m != "" {
		return fmt.Errorf("system: %s", m)
	}
	bin := w.Bin
	if bin == "" {
		bin = "wireguard-go"
	}
	w.ln = ln
	// Both instances share /var/run/wireguard (a file system is not a
	// network namespace): the interface names must differ per host and run.
	w.ifname = "wg" + ln.RunID
	pl := ln.Plan
	type side struct {
		h         *lab.Host
		ifname    string
		peerAddr  string
		localNet  string
		remoteNet string
		restoreGw string
	}
	sides := []side{
		{ln.GwA, w.ifname + "a", pl.GwBWan4.String(), pl.LanA4.String(), pl.LanB4.String(), pl.GwBWan4.String()},
		{ln.GwB, w.ifname + "b", pl.GwAWan4.String(), pl.LanB4.String(), pl.LanA4.String(), pl.GwAWan4.String()},
	}
	var privs, pubs [2]string
	for i := range sides {
		var err error
		if privs[i], pubs[i], err = wgKey(); err != nil {
			return err
		}
	}
	fail := func(err error) error {
		w.Down()
		return err
	}
	for i, s := range sides {
		proc, err := s.h.Start("wireguard-go", []string{bin, "-f", s.ifname}, lab.StartOptions{Env: []string{"LOG_LEVEL=error"}})
		if err != nil {
			return fail(err)
		}
		w.procs = append(w.procs, proc)
		if err := waitLink(s.h, s.ifname, proc, 5*time.Second); err != nil {
			return fail(err)
		}
		keyFile := filepath.Join(ln.LogDir, s.ifname+".key")
		if err := os.WriteFile(keyFile, []byte(privs[i]+"\n"), 0o600); err != nil {
			return fail(err)
		}
		if _, err := s.h.Exec("wg", "set", s.ifname, "listen-port", "51820", "private-key", keyFile,
			"peer", pubs[1-i], "endpoint", s.peerAddr+":51820", "allowed-ips", s.remoteNet, "persistent-keepalive", "0"); err != nil {
			return fail(err)
		}
		os.Remove(keyFile)
		if _, err := s.h.Exec("ip", "link", "set", s.ifname, "up"); err != nil {
			return fail(err)
		}
		if _, err := s.h.Exec("ip", "route", "replace", s.remoteNet, "dev", s.ifname); err != nil {
			return fail(err)
		}
		w.routes = append(w.routes, [2]string{s.h.Name, s.remoteNet + " via " + s.restoreGw})
	}
	return nil
}

// waitLink waits until ifname exists in h (wireguard-go creates it after
// starting).
func waitLink(h *lab.Host, ifname string, p *lab.Proc, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := h.Exec("ip", "link", "show", ifname); err == nil {
			return nil
		}
		if exited, err := p.Exited(); exited {
			return fmt.Errorf("system: %s on %s exited: %v\n%s", p.Name, h.Name, err, p.Log())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("system: %s on %s: no interface %s after %v", p.Name, h.Name, ifname, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Down stops wireguard-go (its interfaces go with it) and puts the LAN
// routes back.
func (w *WireGuard) Down() error {
	var errs []error
	for _, p := range w.procs {
		errs = append(errs, p.Stop())
	}
	w.procs = nil
	for _, r := range w.routes {
		if h := w.ln.Host(r[0]); h != nil {
			if _, err := h.Exec("ip", append([]string{"route", "replace"}, strings.Fields(r[1])...)...); err != nil {
				errs = append(errs, err)
			}
		}
	}
	w.routes = nil
	return errors.Join(errs...)
}

// Daemons are the wireguard-go processes Up started, one per gateway.
func (w *WireGuard) Daemons() []Daemon {
	var ds []Daemon
	for _, p := range w.procs {
		ds = append(ds, Daemon{Host: p.Host.Name, Name: "wireguard-go", PID: p.PID})
	}
	return ds
}
