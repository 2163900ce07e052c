package ikectl

import "github.com/spugate/spugate/internal/version"

// Operators' operations: what spuctl asks iked about itself rather than its
// connections and SAs.
const (
	// OpVersion answers iked's build: nothing -> version.Info. An iked
	// older than it refuses it as an unknown operation (CodeBadRequest).
	OpVersion = "version"
)

// Version asks iked which build it is (spuctl version).
func (c *Client) Version() (version.Info, error) {
	var v version.Info
	err := c.Call(OpVersion, nil, &v)
	return v, err
}
