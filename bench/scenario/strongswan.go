package scenario

import "github.com/spugate/spugate/bench/system"

func newStrongSwan() (system.System, error) { return &system.StrongSwan{}, nil }
