package scenario

import (
	"fmt"

	"github.com/spugate/spugate/bench/system"
	"github.com/spugate/spugate/dataplane/api"
)

// System names.
const (
	Spud       = "spud"
	StrongSwan = "strongswan"
	WireGuard  = "wireguard-go"
	Kernel     = "kernel"
)

// AllSystems are the systems of the throughput comparison, spud first.
var AllSystems = []string{Spud, StrongSwan, WireGuard, Kernel}

// StandardSuites are the suites compared: the AEADs of RFC 4106 and 7634.
var StandardSuites = []string{api.SuiteAES128GCM16, api.SuiteAES256GCM16, api.SuiteChaCha20Poly1305}

// suiteSpecific says whether a system's figures depend on the suite: the
// kernel forwards without crypto and wireguard-go has one cipher
// (ChaCha20-Poly1305), so both are measured once per packet size.
func suiteSpecific(name string) bool { return name == Spud || name == StrongSwan }

// newSystem makes a system by name.
func newSystem(name string, spus int) (system.System, error) {
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
	return nil, fmt.Errorf("scenario: unknown system %q (want %v)", name, AllSystems)
}
