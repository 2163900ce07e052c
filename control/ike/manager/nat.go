package manager

import (
	"fmt"
	"net/netip"

	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/task"
	"github.com/spugate/spugate/dataplane/api"
)

// DataPlaneUpdater is implemented by data planes that can move a live SA to
// the peer's new address or port (spud's sa.update).
type DataPlaneUpdater interface {
	// UpdateSA moves the SA u names to u's peer address or
	// encapsulation.
	UpdateSA(u *api.SAUpdate) error
}

// updateChildren points the Child SAs at the peer's new address and port
// after its NAT mapping changed (RFC 7296 2.23). A change of address moves
// the tunnel to another anchor in principle; migrating SAs between SPUs is
// issue 8's, so they stay where they are.
func updateChildren(m *Manager, old netip.AddrPort) {
	ike := m.IKE
	up, ok := m.env.DataPlane().(DataPlaneUpdater)
	if !ok {
		return
	}
	for _, ch := range ike.Children {
		if ch.State == sa.ChildDeleted || !ch.Encap {
			continue
		}
		encap := &api.Encap{LocalPort: ike.Local.Port(), RemotePort: ike.Remote.Port()}
		u := &api.SAUpdate{SAID: api.SAID{SPI: ch.SPIOut, Dir: api.Out, Remote: old.Addr()}, Encap: encap}
		if old.Addr() != ike.Remote.Addr() {
			u.Remote = ike.Remote.Addr()
		}
		if ldp, ok := up.(task.LaterDataPlane); ok {
			// Made after what the worker asked of the data plane before,
			// without waiting; a failure is the data plane's to report.
			ldp.UpdateSALater(u)
			ldp.UpdateSALater(&api.SAUpdate{SAID: api.SAID{SPI: ch.SPIIn, Dir: api.In}, Encap: encap})
			continue
		}
		if err := up.UpdateSA(u); err != nil {
			m.env.Stats().Fail(stats.DataPlane)
			m.Logger().Warn("child sa not moved to the peer's new address", "child", ch.Name, "spi_out", fmt.Sprintf("%08x", ch.SPIOut), "err", err.Error())
		}
		if err := up.UpdateSA(&api.SAUpdate{SAID: api.SAID{SPI: ch.SPIIn, Dir: api.In}, Encap: encap}); err != nil {
			m.env.Stats().Fail(stats.DataPlane)
			m.Logger().Warn("child sa not moved to the peer's new port", "child", ch.Name, "spi_in", fmt.Sprintf("%08x", ch.SPIIn), "err", err.Error())
		}
	}
}
