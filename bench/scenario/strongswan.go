package scenario

import (
	"errors"

	"github.com/spugate/spugate/bench/system"
)

// newStrongSwan is filled in once deploy/strongswan is on main.
func newStrongSwan() (system.System, error) {
	return nil, errors.New("strongswan: deploy/strongswan is not on main yet")
}
