package iked

import (
	"context"
	"fmt"
	"testing"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/worker"
)

// CensusTestDaemon is iked's workers holding n IKE SAs (copies of one a
// simulated pair established, one Child SA each; every tenth still
// connecting and its Child SA creating), over conns connections
// ("conn0".."connN"), without sockets or spud: what Census and the
// metrics collector read. The IKE SAs are spread over the workers by id.
func CensusTestDaemon(tb testing.TB, workers, n, conns int) *Daemon {
	tb.Helper()
	tmpl := establishedIKESA(tb)
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	d := &Daemon{log: discard, byPhys: map[int]*loop{}, ctx: ctx, cancel: cancel}
	s := iketest.NewSim(tb)
	node := s.AddNode("gw", tmpl.Local.Addr(), iketest.WriteConfig(tb, simConf("gw-a", "198.18.0.1", "198.18.0.2"), simSecrets))
	for i := range workers {
		l := &loop{d: d, idx: i, spu: i, w: worker.New(i, quietEnv{node.Env()}), cmds: make(chan func(*worker.Worker)),
			dp: &spudDP{}, wdp: &workerDP{}}
		d.loops = append(d.loops, l)
		d.byPhys[i] = l
		go func() {
			for {
				select {
				case f := <-l.cmds:
					f(l.w)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for id := 1; id <= n; id++ {
		c := *tmpl
		c.UniqueID = uint32(id)
		c.SPIi, c.SPIr = uint64(id)<<8|1, uint64(id)<<8|2
		c.Anchored, c.Logical = true, uint16(id%workers)
		c.ConnName = fmt.Sprintf("conn%d", id%conns)
		ch := *tmpl.Children[0]
		ch.UniqueID = uint32(id)
		ch.SPIIn, ch.SPIOut = 0xc0000000|uint32(id), 0x40000000|uint32(id)
		if id%10 == 0 {
			c.State, ch.State = sa.Connecting, sa.ChildCreating
		}
		c.Children = []*sa.ChildSA{&ch}
		if err := d.loops[id%workers].w.Restore(&c); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// TestCensus: the IKE and Child SAs of every worker counted by state,
// per connection as asked, the connections past the cap counted.
func TestCensus(t *testing.T) {
	d := CensusTestDaemon(t, 2, 100, 5)
	c, err := d.Census(3)
	if err != nil {
		t.Fatal(err)
	}
	if c.IKESAs[sa.Established] != 90 || c.IKESAs[sa.Connecting] != 10 || c.ChildSAs[sa.ChildInstalled] != 90 || c.ChildSAs[sa.ChildCreating] != 10 {
		t.Errorf("IKE SAs %v, Child SAs %v; want 90 established and installed, 10 connecting and creating", c.IKESAs, c.ChildSAs)
	}
	if len(c.Workers) != 2 || c.Workers[0].IKESAs+c.Workers[1].IKESAs != 100 {
		t.Errorf("workers %+v", c.Workers)
	}
	// conn0 holds ids 5, 10, ...: 20 IKE SAs, the 10 that are multiples of
	// 10 still connecting; the others 20 established each.
	want := []ConnCensus{{"conn0", 10, 10}, {"conn1", 20, 20}, {"conn2", 20, 20}}
	if fmt.Sprint(c.Conns) != fmt.Sprint(want) || c.ConnsOmitted != 2 {
		t.Errorf("conns %v, %d omitted; want %v, 2", c.Conns, c.ConnsOmitted, want)
	}
	if c, _ := d.Census(0); c.Conns != nil || c.ConnsOmitted != 0 {
		t.Errorf("per-connection counts not asked for: %v, %d", c.Conns, c.ConnsOmitted)
	}
}
