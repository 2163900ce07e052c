package spud

import (
	"errors"
	"fmt"
	"os"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/dataplane/nic"
	"github.com/spugate/spugate/dataplane/steer"
)

// probeInterfaces finds each data-plane interface and what its driver
// offers.
func probeInterfaces(names []string) (map[string]nic.Caps, error) {
	caps := map[string]nic.Caps{}
	for _, name := range names {
		c, err := nic.Probe(name)
		if err != nil {
			return nil, fmt.Errorf("spud: interface %s: %w", name, err)
		}
		caps[name] = c
	}
	return caps, nil
}

// Check is spud -check: what Start would refuse of cfg, found without
// attaching anything or taking the SA API's socket, so that it may run
// beside the spud it is meant to replace. It checks the interfaces, that
// the anchor key file (if there) is usable, that no spud serves on the
// socket already, and that the kernel takes the steering program (loaded
// and closed again, never attached). The errors are joined.
func Check(cfg Config) error {
	var errs []error
	if len(cfg.Interfaces) == 0 {
		errs = append(errs, errors.New("spud: no interfaces"))
	}
	for _, p := range cfg.Protected {
		if !contains(cfg.Interfaces, p) {
			errs = append(errs, fmt.Errorf("spud: protected interface %q is not among the interfaces %v", p, cfg.Interfaces))
		}
	}
	for _, name := range cfg.Interfaces {
		if _, err := nic.Probe(name); err != nil {
			errs = append(errs, fmt.Errorf("spud: interface %s: %w", name, err))
		}
	}
	if cfg.KeyFile != "" {
		if _, err := os.Stat(cfg.KeyFile); err == nil {
			if _, err := loadKey(cfg.KeyFile); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if cfg.Socket == "" {
		cfg.Socket = api.DefaultSocket
	}
	if c, err := api.Dial(cfg.Socket); err == nil {
		c.Close()
		errs = append(errs, fmt.Errorf("spud: SA API socket %s: a spud serves there already", cfg.Socket))
	}
	prog, err := steer.Load(steer.Options{Carrier: cfg.Carrier, MaxPolicies: cfg.MaxPolicies})
	if err != nil {
		errs = append(errs, fmt.Errorf("spud: steering program: %w", err))
	} else {
		prog.Close()
	}
	return errors.Join(errs...)
}
