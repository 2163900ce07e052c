package api

import "github.com/spugate/spugate/internal/version"

// Operators' operations: what spuctl asks spud about itself rather than its
// tables.
const (
	// OpVersion answers spud's build: nothing -> version.Info. A spud
	// older than it refuses it as an unknown operation (CodeBadRequest).
	OpVersion = "version"
	// OpLogLevel sets the level spud logs at, until it stops (its
	// -log-level is the level at start), and answers the level in force:
	// LogLevel -> LogLevel. An empty level only asks.
	OpLogLevel = "log.level"
)

// LogLevel is a log level: debug, info, warn or error.
type LogLevel struct {
	Level string `json:"level,omitempty"`
}

// Version asks spud which build it is (spuctl version).
func (c *Client) Version() (version.Info, error) {
	var v version.Info
	err := c.Call(OpVersion, nil, &v)
	return v, err
}

// LogLevel sets spud's log level to level ("" leaves it) and returns the
// level in force (spuctl log-level).
func (c *Client) LogLevel(level string) (string, error) {
	var r LogLevel
	err := c.Call(OpLogLevel, LogLevel{Level: level}, &r)
	return r.Level, err
}
