package spud

import (
	"encoding/json"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/daemonlog"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/internal/version"
)

// operatorHandlers serves what spuctl asks spud about itself.
func (d *Daemon) operatorHandlers() {
	d.captureHandlers()
	d.srv.Handle(api.OpVersion, func(json.RawMessage) (any, error) { return version.Get(), nil })
	d.srv.Handle(api.OpLogLevel, func(body json.RawMessage) (any, error) {
		req, err := decode[api.LogLevel](body)
		if err != nil {
			return nil, err
		}
		if d.cfg.Level == nil {
			return nil, unixrpc.Errorf(unixrpc.CodeUnavailable, "this spud's log level is fixed")
		}
		old, _ := daemonlog.SetLevel(d.cfg.Level, "")
		now, err := daemonlog.SetLevel(d.cfg.Level, req.Level)
		if err != nil {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%v", err)
		}
		if now != old {
			d.log.Warn("spud: log level changed", "from", old, "to", now)
		}
		return api.LogLevel{Level: now}, nil
	})
}
