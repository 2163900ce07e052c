package ikectl

import "github.com/spugate/spugate/internal/version"

// Operators' operations: what spuctl asks iked about itself rather than its
// connections and SAs.
const (
	// OpVersion answers iked's build: nothing -> version.Info. A iked
	// older than it refuses it as an unknown operation (CodeBadRequest).
	OpVersion = "version"
	// OpLogLevel sets the level iked logs at, until it stops (its
	// -log-level is the level at start), and answers the level in force:
	// LogLevel -> LogLevel. An empty level only asks.
	OpLogLevel = "log.level"
)

// LogLevel is a log level: debug, info, warn or error.
type LogLevel struct {
	Level string `json:"level,omitempty"`
}

// Version asks iked which build it is (spuctl version).
func (c *Client) Version() (version.Info, error) {
	var v version.Info
	err := c.Call(OpVersion, nil, &v)
	return v, err
}

// LogLevel sets iked's log level to level ("" leaves it) and returns the
// level in force (spuctl log-level).
func (c *Client) LogLevel(level string) (string, error) {
	var r LogLevel
	err := c.Call(OpLogLevel, LogLevel{Level: level}, &r)
	return r.Level, err
}
