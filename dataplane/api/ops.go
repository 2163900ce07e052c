package api

import "github.com/spugate/spugate/internal/version"

// Operators' operations: what spuctl asks spud about itself rather than its
// tables.
const (
	// OpVersion answers spud's build: nothing -> version.Info. A spud
	// older than it refuses it as an unknown operation (CodeBadRequest).
	OpVersion = "version"
)

// Version asks spud which build it is (spuctl version).
func (c *Client) Version() (version.Info, error) {
	var v version.Info
	err := c.Call(OpVersion, nil, &v)
	return v, err
}
