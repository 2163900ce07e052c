package system

import (
	"errors"
	"fmt"
	"time"

	"github.com/spugate/spugate/testbed/daemons"
	"github.com/spugate/spugate/testbed/lab"
)

// Iked is spugate whole: spud and iked on both gateways, one site-to-site
// tunnel between the LANs negotiated with IKEv2 (PSK), gw-a initiating.
// ChildRekey, when set, is the Child SA's rekey_time (rand_time 0), so
// that iked rekeys it under load.
type Iked struct {
	SPUs       int
	ChildRekey time.Duration

	a, b   *daemons.Spud
	ka, kb *daemons.Iked
}

// ikedPSK is the lab's pre-shared key: not a secret.
const ikedPSK = "spugate benchmark psk for iked, 32+ bytes"

// Name is "spud+iked": the data plane's numbers with SAs negotiated by IKE
// rather than installed by the benchmark.
func (k *Iked) Name() string { return "spud+iked" }

// Up starts spud and iked on both gateways and waits until the tunnel's
// Child SA is installed on both.
func (k *Iked) Up(ln *lab.Line, p Plan) error {
	if p.Tunnels != 1 {
		return fmt.Errorf("system: iked: %d tunnels: only one is set up", p.Tunnels)
	}
	pl := ln.Plan
	rekey := "1h"
	if k.ChildRekey > 0 {
		rekey = k.ChildRekey.String()
	}
	conf := func(local, remote, lid, rid, lts, rts, start string) string {
		return fmt.Sprintf(`connections:
  site:
    local_addrs: %s
    remote_addrs: %s
    proposals: aes128gcm16-prfsha256-x25519
    local: {auth: psk, id: %s}
    remote: {auth: psk, id: %s}
    children:
      net:
        local_ts: %s
        remote_ts: %s
        esp_proposals: %s
        start_action: %s
        rekey_time: %s
        rand_time: 0s
`, local, remote, lid, rid, lts, rts, p.Suite, start, rekey)
	}
	secrets := fmt.Sprintf("ike:\n  site:\n    id: [gw-a.bench, gw-b.bench]\n    secret: %q\n", ikedPSK)
	o := daemons.SpudOptions{SPUs: k.SPUs, Args: []string{"-poll", "adaptive"}}
	var err error
	fail := func(err error) error {
		k.Down()
		return err
	}
	if k.a, err = daemons.StartSpud(ln.GwA, o); err != nil {
		return fail(err)
	}
	if k.b, err = daemons.StartSpud(ln.GwB, o); err != nil {
		return fail(err)
	}
	if k.kb, err = daemons.StartIked(k.b, daemons.IkedOptions{Config: conf(pl.GwBWan4.String(), pl.GwAWan4.String(), "gw-b.bench", "gw-a.bench",
		pl.LanB4.String(), pl.LanA4.String(), "none"), Secrets: secrets, Args: []string{"-log-level", "warn"}}); err != nil {
		return fail(err)
	}
	if k.ka, err = daemons.StartIked(k.a, daemons.IkedOptions{Config: conf(pl.GwAWan4.String(), pl.GwBWan4.String(), "gw-a.bench", "gw-b.bench",
		pl.LanA4.String(), pl.LanB4.String(), "start"), Secrets: secrets, Args: []string{"-log-level", "warn"}}); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		na, errA := k.installed(k.ka)
		nb, errB := k.installed(k.kb)
		if errA == nil && errB == nil && na > 0 && nb > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("system: iked: no Child SA installed on both gateways after 15 s (%v, %v)", errA, errB))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (k *Iked) installed(g *daemons.Iked) (uint64, error) {
	st, err := g.Client.Stats()
	if err != nil {
		return 0, err
	}
	return st.Counters["child_sas_installed"], nil
}

// ChildSAsInstalled is how many Child SAs iked installed on gw-a and gw-b
// so far (rekeys install one each).
func (k *Iked) ChildSAsInstalled() (a, b uint64, err error) {
	if a, err = k.installed(k.ka); err != nil {
		return
	}
	b, err = k.installed(k.kb)
	return
}

// Down stops iked and spud on both gateways.
func (k *Iked) Down() error {
	var errs []error
	for _, g := range []*daemons.Iked{k.ka, k.kb} {
		if g != nil {
			errs = append(errs, g.Stop())
			g.Cleanup()
		}
	}
	for _, g := range []*daemons.Spud{k.a, k.b} {
		if g != nil {
			errs = append(errs, g.Stop())
		}
	}
	k.a, k.b, k.ka, k.kb = nil, nil, nil, nil
	return errors.Join(errs...)
}

// Daemons are spud and iked on each gateway that runs them.
func (k *Iked) Daemons() []Daemon {
	var ds []Daemon
	for _, g := range []*daemons.Spud{k.a, k.b} {
		if g != nil {
			ds = append(ds, Daemon{Host: g.Host.Name, Name: "spud", PID: g.Proc.PID})
		}
	}
	for _, g := range []*daemons.Iked{k.ka, k.kb} {
		if g != nil {
			ds = append(ds, Daemon{Host: g.Host.Name, Name: "iked", PID: g.Proc.PID})
		}
	}
	return ds
}

// Drops returns spud's drop counters by reason, per gateway.
func (k *Iked) Drops() (map[string]map[string]uint64, error) {
	s := &Spud{a: k.a, b: k.b}
	return s.Drops()
}
