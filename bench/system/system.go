package system

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/spugate/spugate/testbed/lab"
)

// System is gateway software under test, started on both gateways of a
// line.
type System interface {
	// Name says what runs, e.g. "spud", "strongswan", "wireguard-go", "kernel".
	Name() string
	// Up starts the system on the line's gateways carrying p's tunnels; it
	// returns once they are installed (traffic may still need a moment, see
	// the scenario's probe).
	Up(ln *lab.Line, p Plan) error
	// Down stops what Up started and undoes its changes to the line.
	Down() error
	// Daemons are the processes doing the work, for memory and profiles.
	Daemons() []Daemon
}

// Daemon is one process of a system on one gateway.
type Daemon struct {
	Host string `json:"host"`
	Name string `json:"name"`
	PID  int    `json:"pid"`
}

// PrepareLine gives a line what every system's traffic needs, once: routes
// from gw-a to the peers' range and from gw-b to the sites' range (both via
// the next host of the line), and reverse-path filtering off on the
// gateways, whose sources (the sites) have no route back.
func PrepareLine(ln *lab.Line) error {
	if err := ln.GwA.AddRoute(PeerRange, ln.Plan.GwBWan4); err != nil {
		return err
	}
	if err := ln.GwB.AddRoute(SiteRange, ln.Plan.ClientB4); err != nil {
		return err
	}
	for _, h := range []*lab.Host{ln.GwA, ln.GwB, ln.ClientA, ln.ClientB} {
		for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
			if err := h.Sysctl(k, "0"); err != nil {
				return err
			}
		}
	}
	return nil
}

// MAC returns the Ethernet address of a host's interface.
func MAC(h *lab.Host, ifname string) (net.HardwareAddr, error) {
	out, err := h.Exec("cat", "/sys/class/net/"+ifname+"/address")
	if err != nil {
		return nil, err
	}
	return net.ParseMAC(strings.TrimSpace(string(out)))
}

// Memory is a process's memory as the kernel counts it.
type Memory struct {
	RSS     uint64 `json:"rss_bytes"`      // resident
	RSSAnon uint64 `json:"rss_anon_bytes"` // resident, anonymous (heap, stacks), what tunnels cost
}

// ReadMemory reads /proc/PID/status.
func ReadMemory(pid int) (Memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("system: memory of pid %d: %w", pid, err)
	}
	defer f.Close()
	var m Memory
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSS = n << 10
		case "RssAnon":
			m.RSSAnon = n << 10
		}
	}
	if m.RSS == 0 {
		return m, fmt.Errorf("system: memory of pid %d: no VmRSS", pid)
	}
	return m, sc.Err()
}

// Kernel is plain IP forwarding on both gateways, no VPN: the lab's I/O
// ceiling for a given packet size.
type Kernel struct{}

// Name is "kernel", the baseline's label in results.
func (Kernel) Name() string { return "kernel" }

// Up does nothing: the lab's gateways forward and PrepareLine gave them
// their routes, so the traffic needs nothing more.
func (Kernel) Up(*lab.Line, Plan) error { return nil }

// Down does nothing: Up changed nothing.
func (Kernel) Down() error { return nil }

// Daemons is empty: the kernel's work shows in no process.
func (Kernel) Daemons() []Daemon { return nil }
