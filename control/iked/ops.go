package iked

import (
	"encoding/json"

	"github.com/spugate/spugate/control/iked/ikectl"
	"github.com/spugate/spugate/internal/version"
)

// operatorHandlers serves what spuctl asks iked about itself.
func (d *Daemon) operatorHandlers() {
	d.ctl.Handle(ikectl.OpVersion, func(json.RawMessage) (any, error) { return version.Get(), nil })
}
