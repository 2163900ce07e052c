package iked

import (
	"sort"
	"time"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/control/reuseport"
)

// Census is what iked holds now, counted on its workers for a metrics
// scrape: the IKE and Child SAs by state, each worker's load, and, when
// asked for, the same per connection. Counters of events are not in it:
// they are the Daemon's stats.Counters (Stats).
type Census struct {
	// IKESAs and ChildSAs count the SAs in each state, indexed by
	// sa.IKEState and sa.ChildState.
	IKESAs   [sa.Rekeyed + 1]int
	ChildSAs [sa.ChildRekeyed + 1]int
	Workers  []WorkerCensus
	// Conns are the connections with an IKE SA, in name order, at most
	// the number asked for; ConnsOmitted counts those past it.
	Conns        []ConnCensus
	ConnsOmitted int
	// QueueFullDrops counts datagrams a full worker queue refused;
	// Migrations, IKE SAs moved between workers after SPU map changes.
	QueueFullDrops uint64
	Migrations     uint64
	// Reuseport is the SO_REUSEPORT selector's counters (nil without it).
	Reuseport *reuseport.Counters
}

// WorkerCensus is one worker's part of a Census.
type WorkerCensus struct {
	ID, SPU int
	IKESAs  int
	// Datagrams arrived on its sockets; HandedIn, handed to it by other
	// workers.
	Datagrams, HandedIn uint64
	// SpudWait is the time it spent blocked on SA API calls, in
	// SpudCalls calls; InstallsInFlight, the calls it did not wait for
	// and spud has not answered yet.
	SpudWait         time.Duration
	SpudCalls        uint64
	InstallsInFlight int64
}

// ConnCensus is one connection's SAs in a Census.
type ConnCensus struct {
	Name string
	// IKESAs counts its established IKE SAs, ChildSAs its installed
	// Child SAs (rekeying ones included).
	IKESAs, ChildSAs int
}

// Census counts what the workers hold, with per-connection counts for at
// most perConn connections (0: none). It visits every IKE SA on its
// worker's goroutine, between datagrams, as `spuctl list-sas` does.
func (d *Daemon) Census(perConn int) (*Census, error) {
	c := &Census{QueueFullDrops: d.dropped.Load(), Migrations: d.migrations.Load()}
	var conns map[string]*ConnCensus
	if perConn > 0 {
		conns = map[string]*ConnCensus{}
	}
	err := d.each(func(l *loop, w *worker.Worker) {
		c.Workers = append(c.Workers, WorkerCensus{ID: l.idx, SPU: l.spu, IKESAs: w.Len(),
			Datagrams: l.rx.Load(), HandedIn: l.handedIn.Load(),
			SpudWait: time.Duration(l.dp.waitedNS.Load()), SpudCalls: l.dp.waitedCalls.Load(), InstallsInFlight: l.wdp.inflight.Load()})
		w.VisitAfter(0, w.Len(), func(ike *sa.IKESA) bool {
			if ike.State >= 0 && int(ike.State) < len(c.IKESAs) {
				c.IKESAs[ike.State]++
			}
			var cc *ConnCensus
			if conns != nil && ike.ConnName != "" {
				if cc = conns[ike.ConnName]; cc == nil {
					cc = &ConnCensus{Name: ike.ConnName}
					conns[ike.ConnName] = cc
				}
				if ike.State == sa.Established {
					cc.IKESAs++
				}
			}
			for _, ch := range ike.Children {
				if ch.State >= 0 && int(ch.State) < len(c.ChildSAs) {
					c.ChildSAs[ch.State]++
				}
				if cc != nil && (ch.State == sa.ChildInstalled || ch.State == sa.ChildRekeying) {
					cc.ChildSAs++
				}
			}
			return true
		})
	})
	if err != nil {
		return nil, err
	}
	for _, cc := range conns {
		c.Conns = append(c.Conns, *cc)
	}
	sort.Slice(c.Conns, func(i, j int) bool { return c.Conns[i].Name < c.Conns[j].Name })
	if len(c.Conns) > perConn {
		c.ConnsOmitted = len(c.Conns) - perConn
		c.Conns = c.Conns[:perConn]
	}
	if d.steer != nil {
		if rc, err := d.steer.Counters(); err == nil {
			c.Reuseport = &rc
		}
	}
	return c, nil
}
