package iked

import (
	"encoding/json"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/daemonlog"
	"github.com/spugate/spugate/internal/unixrpc"
	"github.com/spugate/spugate/internal/version"
)

// operatorHandlers serves what spuctl asks iked about itself.
func (d *Daemon) operatorHandlers() {
	d.ctl.Handle(ikectl.OpVersion, func(json.RawMessage) (any, error) { return version.Get(), nil })
	d.ctl.Handle(ikectl.OpLogLevel, func(body json.RawMessage) (any, error) {
		req, err := decode[ikectl.LogLevel](body)
		if err != nil {
			return nil, err
		}
		if d.opts.Level == nil {
			return nil, unixrpc.Errorf(unixrpc.CodeUnavailable, "this iked's log level is fixed")
		}
		old, _ := daemonlog.SetLevel(d.opts.Level, "")
		now, err := daemonlog.SetLevel(d.opts.Level, req.Level)
		if err != nil {
			return nil, unixrpc.Errorf(unixrpc.CodeBadRequest, "%v", err)
		}
		if now != old {
			d.log.Warn("iked: log level changed", "from", old, "to", now)
		}
		return ikectl.LogLevel{Level: now}, nil
	})
}
