package scenario

import (
	"errors"
	"time"
)

// Estimate is how long Run should take.
func (c *IKE) Estimate() time.Duration {
	c.defaults()
	return 10 * time.Second
}

// Run is filled in with deploy/strongswan.
func (c *IKE) Run(e *Env) (*IKEResults, error) {
	c.defaults()
	return nil, errors.New("ike: not built yet")
}
