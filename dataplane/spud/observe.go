package spud

import "github.com/spugate/spugate/dataplane/api"

// Stats returns the data plane's counters, as `spuctl stats` shows them
// (stats): for readers in the process, such as the metrics collector,
// that read them at a scrape rather than per packet.
func (d *Daemon) Stats() api.Stats { return d.stats() }

// SPUList returns the SPUs with their state and what each holds, as
// `spuctl status` shows them (spu.list).
func (d *Daemon) SPUList() api.SPUList { return d.spuList() }
