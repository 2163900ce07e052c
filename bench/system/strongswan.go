package system

import (
	"errors"
	"fmt"
	"time"

	"github.com/spugate/spugate/testbed/lab"
	"github.com/spugate/spugate/testbed/strongswan"
)

// StrongSwan is strongSwan's charon on both gateways, through
// testbed/strongswan: IKEv2 with a PSK between the gateways, one Child SA
// between the LANs with Plan.Suite as its ESP proposal, and charon's
// userspace ESP (kernel-libipsec, UDP-encapsulated on port 4500: this
// kernel has no ESP). One tunnel only.
type StrongSwan struct {
	// IKEProposal is the IKE SA's proposal (default
	// aes128gcm16-prfsha256-x25519).
	IKEProposal string

	a, b *strongswan.Charon
}

// StrongSwanPSK is the lab's pre-shared key: not a secret.
var StrongSwanPSK = []byte("spugate benchmark psk, not a secret, 32+ bytes")

// Name is "strongswan" (charon with kernel-libipsec, see the package doc).
func (s *StrongSwan) Name() string { return "strongswan" }

// Up starts charon on both gateways and brings the tunnel up from gw-a.
func (s *StrongSwan) Up(ln *lab.Line, p Plan) error {
	if p.Tunnels != 1 {
		return fmt.Errorf("system: strongswan: %d tunnels: only one is set up", p.Tunnels)
	}
	if m := strongswan.Missing(); m != "" {
		return fmt.Errorf("system: strongswan: %s", m)
	}
	ike := s.IKEProposal
	if ike == "" {
		ike = "aes128gcm16-prfsha256-x25519"
	}
	cfg := func(gw *lab.Host) (strongswan.Config, error) {
		c, err := strongswan.LineConn(ln, gw, strongswan.LineConnOptions{Families: "4"})
		if err != nil {
			return strongswan.Config{}, err
		}
		c.Proposals = []string{ike}
		c.Children[0].ESPProposals = []string{p.Suite}
		c.Local.Auth, c.Remote.Auth = "psk", "psk"
		return strongswan.Config{Dir: ln.LogDir, Conns: []strongswan.Conn{c}, Secrets: strongswan.LinePSK(StrongSwanPSK)}, nil
	}
	ca, err := cfg(ln.GwA)
	if err != nil {
		return err
	}
	cb, err := cfg(ln.GwB)
	if err != nil {
		return err
	}
	if s.a, err = strongswan.Start(ln.GwA, ca); err != nil {
		return err
	}
	if s.b, err = strongswan.Start(ln.GwB, cb); err != nil {
		s.Down()
		return err
	}
	if err := s.a.Initiate("net", 15*time.Second); err != nil {
		s.Down()
		return err
	}
	return nil
}

// Down stops both charons (their TUN devices, routes and rules go too).
func (s *StrongSwan) Down() error {
	var errs []error
	for _, c := range []*strongswan.Charon{s.a, s.b} {
		if c != nil {
			errs = append(errs, c.Stop())
		}
	}
	s.a, s.b = nil, nil
	return errors.Join(errs...)
}

// Daemons are charon on each gateway that runs it: with kernel-libipsec
// it does the ESP work too, so its memory and profile are the system's.
func (s *StrongSwan) Daemons() []Daemon {
	var ds []Daemon
	for _, c := range []*strongswan.Charon{s.a, s.b} {
		if c != nil {
			ds = append(ds, Daemon{Host: c.Host.Name, Name: "charon", PID: c.PID})
		}
	}
	return ds
}
