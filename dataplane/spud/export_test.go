package spud

import (
	"net/netip"
	"testing"
)

// MetricsTestDaemon is a started spud without interfaces or steering
// program, holding sas SAs (half inbound, half outbound to as many
// peers), for the metrics collector's benchmark in spud_test.
func MetricsTestDaemon(tb testing.TB, sas int) *Daemon {
	tb.Helper()
	d, c := apiDaemon(tb)
	d.ifaces = nil
	d.steerFake = &fakeSteering{spd: fakeSPD{}, locals: map[netip.Addr]bool{}}
	d.eng.Start()
	for i := range sas {
		if err := c.AddSA(dumpSA(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return d
}
