// Package fib mirrors the kernel's routing and neighbour tables for the
// SPUs, which forward packets the kernel never sees: where a packet goes
// next (interface, gateway) and the Ethernet addresses to put on it.
//
// Nothing is configured by hand: the tables are dumped from netlink at
// start and kept current by subscription. Readers (one per SPU, per packet)
// take no lock: they load an immutable snapshot through an atomic pointer;
// the single updater goroutine builds a new snapshot on every change. A
// next hop whose neighbour is unknown is resolved through the kernel
// (RTM_NEWNEIGH with NTF_USE, which starts ARP or neighbour discovery as a
// packet would), never guessed.
package fib

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// NextHop is where a packet to some destination goes.
type NextHop struct {
	Ifindex int
	// Gateway is the neighbour to send to: the route's gateway, or the
	// destination itself on a connected route.
	Gateway netip.Addr
	// Src is the interface's preferred source address of the family.
	Src            netip.Addr
	SrcMAC, DstMAC [6]byte
	// Resolved is false while the neighbour's MAC is unknown.
	Resolved bool
	// Local is true for the machine's own addresses: not forwarded.
	Local bool
	MTU   int
}

type route struct {
	dst     netip.Prefix
	gw      netip.Addr
	ifindex int
	src     netip.Addr
	local   bool
	metric  int
}

type link struct {
	mac  [6]byte
	mtu  int
	name string
	src4 netip.Addr
	src6 netip.Addr
}

type neighKey struct {
	ifindex int
	addr    netip.Addr
}

type snapshot struct {
	gen    uint64
	routes []route // longest prefix first, then lowest metric
	links  map[int]link
	neighs map[neighKey][6]byte
}

// Table is the mirror. Lookup may be called from any goroutine.
type Table struct {
	cur atomic.Pointer[snapshot]

	mu      sync.Mutex // serialises updates
	done    chan struct{}
	wg      sync.WaitGroup
	resolve chan neighKey
	lastRes sync.Map // neighKey -> time.Time, rate limit of Resolve

	// Resolutions counts neighbour resolutions asked of the kernel.
	Resolutions atomic.Uint64

	// nl is bound to the namespace Open ran in, whatever thread later
	// goroutines run on.
	nl *netlink.Handle
}

// Open dumps the current tables and subscribes to changes.
func Open() (*Table, error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("fib: netlink: %w", err)
	}
	t := &Table{done: make(chan struct{}), resolve: make(chan neighKey, 4096), nl: nl}
	rch := make(chan netlink.RouteUpdate, 256)
	nch := make(chan netlink.NeighUpdate, 1024)
	lch := make(chan netlink.LinkUpdate, 64)
	ach := make(chan netlink.AddrUpdate, 64)
	// Subscribe before dumping, so no change between the two is missed.
	if err := netlink.RouteSubscribeWithOptions(rch, t.done, netlink.RouteSubscribeOptions{}); err != nil {
		t.Close()
		return nil, fmt.Errorf("fib: subscribe to routes: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(nch, t.done, netlink.NeighSubscribeOptions{}); err != nil {
		t.Close()
		return nil, fmt.Errorf("fib: subscribe to neighbours: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(lch, t.done, netlink.LinkSubscribeOptions{}); err != nil {
		t.Close()
		return nil, fmt.Errorf("fib: subscribe to links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(ach, t.done, netlink.AddrSubscribeOptions{}); err != nil {
		t.Close()
		return nil, fmt.Errorf("fib: subscribe to addresses: %w", err)
	}
	if err := t.reload(); err != nil {
		t.Close()
		return nil, err
	}
	t.wg.Add(1)
	go t.run(rch, nch, lch, ach)
	return t, nil
}

// Close stops the subscriptions.
func (t *Table) Close() {
	select {
	case <-t.done:
	default:
		close(t.done)
	}
	t.wg.Wait()
	t.nl.Close()
}

// Gen is bumped on every change: callers may cache a NextHop with the
// generation it was looked up in.
func (t *Table) Gen() uint64 { return t.cur.Load().gen }

func (t *Table) run(rch chan netlink.RouteUpdate, nch chan netlink.NeighUpdate, lch chan netlink.LinkUpdate, ach chan netlink.AddrUpdate) {
	defer t.wg.Done()
	// Route, link and address changes are rare: reload everything, after
	// a short quiet time so that a burst costs one reload.
	var reload <-chan time.Time
	for {
		select {
		case <-t.done:
			return
		case _, ok := <-rch:
			if !ok {
				return
			}
			reload = time.After(20 * time.Millisecond)
		case _, ok := <-lch:
			if !ok {
				return
			}
			reload = time.After(20 * time.Millisecond)
		case _, ok := <-ach:
			if !ok {
				return
			}
			reload = time.After(20 * time.Millisecond)
		case <-reload:
			reload = nil
			t.reload()
		case u, ok := <-nch:
			if !ok {
				return
			}
			t.applyNeigh(u)
		case k := <-t.resolve:
			t.doResolve(k)
		}
	}
}

func (t *Table) applyNeigh(u netlink.NeighUpdate) {
	a, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return
	}
	k := neighKey{u.LinkIndex, a.Unmap()}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	mac, had := old.neighs[k]
	valid := u.Type == unix.RTM_NEWNEIGH && usable(u.State) && len(u.HardwareAddr) == 6
	var newMAC [6]byte
	if valid {
		copy(newMAC[:], u.HardwareAddr)
		if had && mac == newMAC {
			return
		}
	} else if !had {
		return
	}
	n := *old
	n.gen++
	n.neighs = make(map[neighKey][6]byte, len(old.neighs)+1)
	for k2, v := range old.neighs {
		n.neighs[k2] = v
	}
	if valid {
		n.neighs[k] = newMAC
	} else {
		delete(n.neighs, k)
	}
	t.cur.Store(&n)
}

func usable(state int) bool {
	return state&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0
}

func (t *Table) reload() error {
	s := &snapshot{links: map[int]link{}, neighs: map[neighKey][6]byte{}}
	links, err := t.nl.LinkList()
	if err != nil {
		return fmt.Errorf("fib: list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		var lk link
		copy(lk.mac[:], a.HardwareAddr)
		lk.mtu, lk.name = a.MTU, a.Name
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			addrs, err := t.nl.AddrList(l, fam)
			if err != nil {
				continue
			}
			for _, ad := range addrs {
				ip, ok := netip.AddrFromSlice(ad.IP)
				if !ok || ip.IsLinkLocalUnicast() {
					continue
				}
				ip = ip.Unmap()
				if ip.Is4() && !lk.src4.IsValid() {
					lk.src4 = ip
				}
				if ip.Is6() && !lk.src6.IsValid() {
					lk.src6 = ip
				}
			}
		}
		s.links[a.Index] = lk
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		// Table 0 with the filter mask unset lists main and local.
		routes, err := t.nl.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("fib: list routes: %w", err)
		}
		for _, r := range routes {
			if r.Table != unix.RT_TABLE_MAIN && r.Table != unix.RT_TABLE_LOCAL {
				continue
			}
			if r.Type != unix.RTN_UNICAST && r.Type != unix.RTN_LOCAL {
				continue
			}
			var rt route
			rt.ifindex, rt.metric = r.LinkIndex, r.Priority
			rt.local = r.Type == unix.RTN_LOCAL
			if r.Dst != nil {
				p, ok := prefixFromIPNet(r.Dst)
				if !ok {
					continue
				}
				rt.dst = p
			} else if fam == netlink.FAMILY_V4 {
				rt.dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
			} else {
				rt.dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
			}
			if r.Gw != nil {
				rt.gw, _ = netip.AddrFromSlice(r.Gw)
				rt.gw = rt.gw.Unmap()
			}
			if r.Src != nil {
				rt.src, _ = netip.AddrFromSlice(r.Src)
				rt.src = rt.src.Unmap()
			}
			s.routes = append(s.routes, rt)
		}
		neighs, err := t.nl.NeighList(0, fam)
		if err != nil {
			return fmt.Errorf("fib: list neighbours: %w", err)
		}
		for _, n := range neighs {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || !usable(n.State) || len(n.HardwareAddr) != 6 {
				continue
			}
			var mac [6]byte
			copy(mac[:], n.HardwareAddr)
			s.neighs[neighKey{n.LinkIndex, a.Unmap()}] = mac
		}
	}
	sortRoutes(s.routes)
	t.mu.Lock()
	if old := t.cur.Load(); old != nil {
		s.gen = old.gen + 1
	}
	t.cur.Store(s)
	t.mu.Unlock()
	return nil
}

func sortRoutes(rs []route) {
	sort.SliceStable(rs, func(i, j int) bool {
		if rs[i].dst.Bits() != rs[j].dst.Bits() {
			return rs[i].dst.Bits() > rs[j].dst.Bits()
		}
		if rs[i].local != rs[j].local {
			return rs[i].local // local routes win ties, as table local is looked up first
		}
		return rs[i].metric < rs[j].metric
	})
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	a = a.Unmap()
	return netip.PrefixFrom(a, ones).Masked(), true
}

// Lookup returns the next hop towards dst. It allocates nothing. ok is false
// when no route covers dst. An unresolved neighbour comes back with Resolved
// false; the caller drops or holds the packet and calls Resolve.
func (t *Table) Lookup(dst netip.Addr) (nh NextHop, ok bool) {
	return t.cur.Load().lookup(dst)
}

func (s *snapshot) lookup(dst netip.Addr) (nh NextHop, ok bool) {
	for i := range s.routes {
		r := &s.routes[i]
		if !r.dst.Contains(dst) {
			continue
		}
		nh.Ifindex, nh.Local = r.ifindex, r.local
		if nh.Local {
			return nh, true
		}
		nh.Gateway = r.gw
		if !nh.Gateway.IsValid() {
			nh.Gateway = dst
		}
		l := s.links[r.ifindex]
		nh.SrcMAC, nh.MTU = l.mac, l.mtu
		nh.Src = r.src
		if !nh.Src.IsValid() {
			if dst.Is4() {
				nh.Src = l.src4
			} else {
				nh.Src = l.src6
			}
		}
		nh.DstMAC, nh.Resolved = s.neighs[neighKey{r.ifindex, nh.Gateway}]
		return nh, true
	}
	return nh, false
}

// Ifname returns the name of an interface, for reports.
func (t *Table) Ifname(ifindex int) string { return t.cur.Load().links[ifindex].name }

// Resolve asks the kernel to resolve a neighbour, at most once a second per
// neighbour. It never blocks: safe to call from an SPU.
func (t *Table) Resolve(ifindex int, addr netip.Addr) {
	k := neighKey{ifindex, addr}
	now := time.Now()
	if last, ok := t.lastRes.Load(k); ok && now.Sub(last.(time.Time)) < time.Second {
		return
	}
	// Only a request actually queued starts the one-second wait: when many
	// new neighbours appear at once and the queue is full, the next
	// packet asks again.
	select {
	case t.resolve <- k:
		t.lastRes.Store(k, now)
	default:
	}
}

func (t *Table) doResolve(k neighKey) {
	fam := netlink.FAMILY_V4
	if k.addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	t.Resolutions.Add(1)
	// NTF_USE makes the kernel treat the entry as used by a packet: it
	// creates it if needed and starts resolution.
	err := t.nl.NeighSet(&netlink.Neigh{LinkIndex: k.ifindex, Family: fam, IP: k.addr.AsSlice(), Flags: netlink.NTF_USE})
	_ = err // a failure leaves the neighbour unresolved; the next packet asks again
}

// WaitResolved resolves a neighbour and waits until it is, or d passes. For
// control-plane paths (installing an SA) that can afford to wait.
func (t *Table) WaitResolved(dst netip.Addr, d time.Duration) (NextHop, error) {
	deadline := time.Now().Add(d)
	for {
		nh, ok := t.Lookup(dst)
		if !ok {
			return nh, fmt.Errorf("fib: no route to %s", dst)
		}
		if nh.Resolved || nh.Local {
			return nh, nil
		}
		if time.Now().After(deadline) {
			return nh, fmt.Errorf("fib: neighbour %s on %s unresolved after %v", nh.Gateway, t.Ifname(nh.Ifindex), d)
		}
		t.lastRes.Delete(neighKey{nh.Ifindex, nh.Gateway})
		t.Resolve(nh.Ifindex, nh.Gateway)
		time.Sleep(20 * time.Millisecond)
	}
}
