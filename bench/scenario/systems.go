package scenario

import (
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"strings"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/dataplane/steer"
)

// System names, as spubench's -systems flag takes them and results label
// runs; each stands for one bench/system implementation (see newSystem, and
// SpudCarrier for spud on a forced carrier).
const (
	Spud       = "spud"
	StrongSwan = "strongswan"
	WireGuard  = "wireguard-go"
	Kernel     = "kernel"
)

// AllSystems are the systems of the throughput comparison, spud first.
var AllSystems = []string{Spud, StrongSwan, WireGuard, Kernel}

// SpudCarrier names spud on one steering carrier ("spud:shim"), a system of
// its own so that carriers are compared in one run.
func SpudCarrier(carrier string) string { return Spud + ":" + carrier }

// spudCarrier is the carrier of a SpudCarrier name.
func spudCarrier(name string) (string, bool) { return strings.CutPrefix(name, Spud+":") }

// StandardSuites are the suites compared: the AEADs of RFC 4106 and 7634.
var StandardSuites = []string{ipsec.AES128GCM16.String(), ipsec.AES256GCM16.String(), ipsec.ChaCha20Poly1305.String()}

// suiteSpecific says whether a system's figures depend on the suite: the
// kernel forwards without crypto and wireguard-go has one cipher
// (ChaCha20-Poly1305), so both are measured once per packet size.
func suiteSpecific(name string) bool {
	_, carrier := spudCarrier(name)
	return name == Spud || carrier || name == StrongSwan
}

// newSystem makes a system by name.
func newSystem(name string, spus int) (system.System, error) {
	if c, ok := spudCarrier(name); ok {
		if _, err := steer.ParseCarrier(c); err != nil {
			return nil, fmt.Errorf("scenario: system %q: %w", name, err)
		}
		return &system.Spud{SPUs: spus, Carrier: c}, nil
	}
	switch name {
	case Spud:
		return &system.Spud{SPUs: spus}, nil
	case StrongSwan:
		return newStrongSwan()
	case WireGuard:
		return &system.WireGuard{}, nil
	case Kernel:
		return system.Kernel{}, nil
	}
	return nil, fmt.Errorf("scenario: unknown system %q (want %v, or spud:meta, spud:shim, spud:none)", name, AllSystems)
}
