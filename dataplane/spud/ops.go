package spud

import (
	"encoding/json"

	"github.com/spugate/spugate/dataplane/api"
	"github.com/spugate/spugate/internal/version"
)

// operatorHandlers serves what spuctl asks spud about itself.
func (d *Daemon) operatorHandlers() {
	d.srv.Handle(api.OpVersion, func(json.RawMessage) (any, error) { return version.Get(), nil })
}
