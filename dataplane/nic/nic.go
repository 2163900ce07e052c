// Package nic reads what a network interface offers spud, so that spud can
// say what it got and fall back where something is missing: the number of
// rx and tx queues, whether the interface's NAPI runs in kernel threads
// (threaded NAPI, which lets a veth's receive work run on another core),
// and the XDP features its driver announces through the kernel's netdev
// netlink family (Linux 6.3 and later; older kernels announce nothing,
// which Caps says rather than guesses).
//
// Everything is read in the calling thread's network namespace.
package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// XDPFeature is one bit of a driver's NETDEV_A_DEV_XDP_FEATURES.
type XDPFeature uint64

// The bits of enum netdev_xdp_act (linux/netdev.h).
const (
	XDPBasic       XDPFeature = 1 << 0 // XDP_PASS, XDP_DROP, XDP_ABORTED, XDP_TX
	XDPRedirect    XDPFeature = 1 << 1 // XDP_REDIRECT, so AF_XDP
	XDPNdoXmit     XDPFeature = 1 << 2 // a redirect target
	XDPXSKZeroCopy XDPFeature = 1 << 3 // AF_XDP zero-copy
	XDPHWOffload   XDPFeature = 1 << 4 // the program runs on the NIC itself
	XDPRxSG        XDPFeature = 1 << 5 // multi-buffer frames on receive
	XDPNdoXmitSG   XDPFeature = 1 << 6 // multi-buffer frames as a redirect target
)

var xdpFeatureNames = []string{"basic", "redirect", "ndo-xmit", "xsk-zerocopy", "hw-offload", "rx-sg", "ndo-xmit-sg"}

// String lists the set bits by their kernel names, comma-separated.
func (f XDPFeature) String() string {
	var names []string
	for i, n := range xdpFeatureNames {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// Caps is what Probe found about one interface.
type Caps struct {
	Name     string
	Ifindex  int
	RxQueues int
	TxQueues int
	MTU      int
	// Threaded is "on" or "off" from /sys/class/net/NAME/threaded, or
	// "n/a" where the kernel or driver has no such switch.
	Threaded string
	// XDP is the driver's XDP features, valid when XDPKnown: a kernel
	// before 6.3 has no netdev family to ask.
	XDP      XDPFeature
	XDPKnown bool
	// ZeroCopyMaxSegs is NETDEV_A_DEV_XDP_ZC_MAX_SEGS: 1 without
	// multi-buffer zero-copy, 0 when unknown.
	ZeroCopyMaxSegs uint32
}

// Has reports whether the driver announces f; false when unknown.
func (c *Caps) Has(f XDPFeature) bool { return c.XDPKnown && c.XDP&f == f }

// XDPString is the XDP features, or "unknown (kernel before 6.3)".
func (c *Caps) XDPString() string {
	if !c.XDPKnown {
		return "unknown"
	}
	return c.XDP.String()
}

// Probe reads the capabilities of the interface called name, in the
// calling thread's network namespace (netlink; sysfs only where it shows
// that namespace). Only a missing interface is an error; each unanswered
// question is reported as unknown in Caps.
func Probe(name string) (Caps, error) {
	c := Caps{Name: name, Threaded: "n/a"}
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return c, fmt.Errorf("nic: no interface %q in this network namespace", name)
		}
		return c, fmt.Errorf("nic: interface %s: %w", name, err)
	}
	a := link.Attrs()
	c.Ifindex, c.RxQueues, c.TxQueues, c.MTU = a.Index, max(a.NumRxQueues, 1), max(a.NumTxQueues, 1), a.MTU
	c.Threaded = threaded(name, c.Ifindex)
	c.XDP, c.ZeroCopyMaxSegs, c.XDPKnown = xdpFeatures(c.Ifindex)
	return c, nil
}

// threaded reads /sys/class/net/NAME/threaded. /sys shows the network
// namespace of whoever mounted it (ip netns exec mounts the right one; a
// process that entered a namespace with setns(2) alone sees its parent's),
// so the answer counts only if the ifindex there is this interface's.
func threaded(name string, ifindex int) string {
	dir := filepath.Join("/sys/class/net", name)
	b, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(ifindex) {
		return "n/a"
	}
	t, err := os.ReadFile(filepath.Join(dir, "threaded"))
	if err != nil {
		return "n/a"
	}
	if strings.TrimSpace(string(t)) == "0" {
		return "off"
	}
	return "on"
}

// Netdev family (linux/netdev.h).
const (
	netdevCmdDevGet          = 1
	netdevADevIfindex        = 1
	netdevADevXDPFeatures    = 3
	netdevADevXDPZCMaxSegs   = 4
	netdevFamilyName         = "netdev"
	netdevFamilyVersion      = 1
	netdevXDPFeaturesMinimum = 8 // a u64
)

func xdpFeatures(ifindex int) (XDPFeature, uint32, bool) {
	fam, err := familyID(netdevFamilyName)
	if err != nil {
		return 0, 0, false
	}
	attrs, err := genlGet(fam, netdevCmdDevGet, netdevFamilyVersion, nl.NewRtAttr(netdevADevIfindex, nl.Uint32Attr(uint32(ifindex))))
	if err != nil {
		return 0, 0, false
	}
	var f XDPFeature
	var segs uint32
	known := false
	for _, a := range attrs {
		switch a.Attr.Type {
		case netdevADevXDPFeatures:
			if len(a.Value) >= netdevXDPFeaturesMinimum {
				f, known = XDPFeature(binary.NativeEndian.Uint64(a.Value)), true
			}
		case netdevADevXDPZCMaxSegs:
			if len(a.Value) >= 4 {
				segs = binary.NativeEndian.Uint32(a.Value)
			}
		}
	}
	return f, segs, known
}

// familyID asks the generic netlink controller for a family's id.
func familyID(name string) (uint16, error) {
	attrs, err := genlGet(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, 1, nl.NewRtAttr(unix.CTRL_ATTR_FAMILY_NAME, nl.ZeroTerminated(name)))
	if err != nil {
		return 0, err
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.CTRL_ATTR_FAMILY_ID && len(a.Value) >= 2 {
			return binary.NativeEndian.Uint16(a.Value), nil
		}
	}
	return 0, fmt.Errorf("no id for generic netlink family %s", name)
}

// genlGet sends one generic netlink request on a socket of its own and
// returns the attributes of the reply. The message is built here because
// netlink v1.3.1's Genlmsg.Serialize leaves its reserved bytes unset, and
// the netdev family, strictly validated, refuses such a request (EINVAL)
// whenever they are not zero.
func genlGet(family uint16, cmd, version uint8, attr *nl.RtAttr) ([]syscall.NetlinkRouteAttr, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	body := append([]byte{cmd, version, 0, 0}, attr.Serialize()...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	const seq = 1
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], family)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:12], seq)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return nil, syscall.Errno(-e)
					}
				}
				return nil, errors.New("no reply")
			case family:
				if len(m.Data) < nl.SizeofGenlmsg {
					return nil, errors.New("short reply")
				}
				return nl.ParseRouteAttr(m.Data[nl.SizeofGenlmsg:])
			}
		}
	}
}
