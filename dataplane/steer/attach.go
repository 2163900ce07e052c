package steer

import (
	"errors"
	"fmt"
	"net"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Mode is how an XDP program runs on an interface.
type Mode int

const (
	// ModeAuto asks for native XDP and falls back to generic. As a result
	// of Attach it is never returned.
	ModeAuto Mode = iota
	// ModeNative runs the program in the driver, before any sk_buff exists
	// (veth has it, as do most NICs' drivers).
	ModeNative
	// ModeGeneric runs the program on the sk_buff (SKB mode): slower, but
	// on any interface.
	ModeGeneric
)

var modeNames = [...]string{ModeAuto: "auto", ModeNative: "native", ModeGeneric: "generic"}

// String is the mode as spud's -xdp flag and its status spell it
// ("native"), or "mode(N)" for a value that is none of them.
func (m Mode) String() string {
	if m >= 0 && int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

func (m Mode) flags() int {
	switch m {
	case ModeNative:
		return unix.XDP_FLAGS_DRV_MODE
	case ModeGeneric:
		return unix.XDP_FLAGS_SKB_MODE
	}
	return 0
}

// The program is attached through netlink, not as a bpf_link: a bpf_link
// dies with the process that holds it, and a spud crash would then leave
// the interface without steering until spud is back, whereas a program
// attached through netlink stays (its XSKMAP sockets close with spud, so
// it passes steered traffic to the kernel, counted PassNoXSK, or drops
// cleartext with FailClosed). The next spud's Attach finds it by name and
// replaces it.

// setXDP attaches fd (or detaches, fd -1) in mode on ifindex, in the
// network namespace of the calling thread.
func setXDP(ifindex, fd int, mode Mode, extra ...int) error {
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	flags := mode.flags()
	for _, f := range extra {
		flags |= f
	}
	return netlink.LinkSetXdpFdWithFlags(link, fd, flags)
}

// xdpState reports the program attached to ifindex: its id (0 if none) and
// mode.
func xdpState(ifindex int) (ebpf.ProgramID, Mode, error) {
	link, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return 0, 0, err
	}
	x := link.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return 0, ModeAuto, nil
	}
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		return ebpf.ProgramID(x.ProgId), ModeNative, nil
	case nl.XDP_ATTACHED_SKB:
		return ebpf.ProgramID(x.ProgId), ModeGeneric, nil
	}
	return ebpf.ProgramID(x.ProgId), ModeAuto, fmt.Errorf("XDP program %d attached in mode %d (offload or several)", x.ProgId, x.AttachMode)
}

func programName(id ebpf.ProgramID) (string, error) {
	prog, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return "", err
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return "", err
	}
	if info.Type != ebpf.XDP {
		return "", fmt.Errorf("program %d is %v, not XDP", id, info.Type)
	}
	return info.Name, nil
}

// AttachByName is Attach for an interface name.
func (p *Program) AttachByName(name string, mode Mode) (Mode, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("steer: attach to %s: %w", name, err)
	}
	return p.Attach(ifc.Index, mode)
}

// Attach attaches the program to interface ifindex (in the network
// namespace of the calling thread) in the given mode, ModeAuto for native
// with a generic fallback, and returns the mode it got.
//
// A spugate steering program left on the interface by a crashed spud
// (found by its name, of any carrier) is replaced: in place, atomically, when the mode
// allows, otherwise detached first. Any other XDP program is left alone and
// Attach fails.
func (p *Program) Attach(ifindex int, mode Mode) (Mode, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.bindNetns(); err != nil {
		return 0, fmt.Errorf("steer: attach to ifindex %d: %w", ifindex, err)
	}
	got, err := p.attach(ifindex, mode)
	if err != nil {
		return 0, fmt.Errorf("steer: attach to ifindex %d (%s): %w", ifindex, mode, err)
	}
	return got, nil
}

func (p *Program) attach(ifindex int, mode Mode) (Mode, error) {
	fd := p.prog.FD()
	cur, curMode, err := xdpState(ifindex)
	if err != nil {
		return 0, err
	}
	if cur != 0 {
		if cur != p.id {
			name, err := programName(cur)
			if err != nil {
				return 0, fmt.Errorf("inspect XDP program %d already attached: %w", cur, err)
			}
			if !isSteeringProgram(name) {
				return 0, fmt.Errorf("XDP program %d (%q) already attached, not spugate's: refusing to replace it", cur, name)
			}
		}
		if mode == ModeAuto || mode == curMode {
			// Same mode: the kernel swaps programs atomically.
			if err := setXDP(ifindex, fd, curMode); err != nil {
				return 0, fmt.Errorf("replace program %d: %w", cur, err)
			}
			return p.confirm(ifindex)
		}
		// Native and generic cannot coexist: out with the old one first.
		if err := setXDP(ifindex, -1, curMode); err != nil {
			return 0, fmt.Errorf("detach program %d (%s): %w", cur, curMode, err)
		}
	}

	switch mode {
	case ModeNative, ModeGeneric:
		if err := setXDP(ifindex, fd, mode, unix.XDP_FLAGS_UPDATE_IF_NOEXIST); err != nil {
			return 0, err
		}
	default:
		if errNative := setXDP(ifindex, fd, ModeNative, unix.XDP_FLAGS_UPDATE_IF_NOEXIST); errNative != nil {
			if err := setXDP(ifindex, fd, ModeGeneric, unix.XDP_FLAGS_UPDATE_IF_NOEXIST); err != nil {
				return 0, fmt.Errorf("native: %v; generic: %w", errNative, err)
			}
			p.nativeRefused[ifindex] = errNative
		}
	}
	return p.confirm(ifindex)
}

// NativeRefusal is why native XDP was refused on ifindex when Attach in
// ModeAuto fell back to generic, or nil.
func (p *Program) NativeRefusal(ifindex int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nativeRefused[ifindex]
}

// confirm reads back what the kernel attached.
func (p *Program) confirm(ifindex int) (Mode, error) {
	id, got, err := xdpState(ifindex)
	if err != nil {
		return 0, err
	}
	if id != p.id {
		return 0, fmt.Errorf("after attach the interface runs program %d, not %d", id, p.id)
	}
	p.attached[ifindex] = got
	if _, err := p.slot(ifindex); err != nil {
		return got, err
	}
	return got, nil
}

// Detach removes the program from ifindex (in the Program's network
// namespace). It fails if another program runs there; it is a no-op if
// none does.
func (p *Program) Detach(ifindex int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inNetns(func() error { return p.detach(ifindex) })
}

func (p *Program) detach(ifindex int) error {
	cur, mode, err := xdpState(ifindex)
	if err != nil {
		return fmt.Errorf("steer: detach from ifindex %d: %w", ifindex, err)
	}
	if cur != 0 && cur != p.id {
		return fmt.Errorf("steer: detach from ifindex %d: it runs XDP program %d, not ours (%d)", ifindex, cur, p.id)
	}
	if cur != 0 {
		if err := setXDP(ifindex, -1, mode); err != nil {
			return fmt.Errorf("steer: detach from ifindex %d: %w", ifindex, err)
		}
	}
	delete(p.attached, ifindex)
	p.releaseSlot(ifindex)
	return nil
}

// AttachedMode reports the mode of the program on ifindex (in the
// Program's network namespace) if it is this Program's.
func (p *Program) AttachedMode(ifindex int) (Mode, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var id ebpf.ProgramID
	var mode Mode
	err := p.inNetns(func() (err error) {
		id, mode, err = xdpState(ifindex)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("steer: ifindex %d: %w", ifindex, err)
	}
	if id != p.id {
		return 0, errors.New("steer: not attached")
	}
	return mode, nil
}

// A Program serves the interfaces of one network namespace: the program
// sees ingress ifindexes without their namespace, so the interface slots
// and SPD entries keyed by them would be ambiguous across namespaces. The
// first Attach or RegisterXSK binds the Program to the namespace of the
// calling thread; Detach and Close work there whatever thread calls them.

// bindNetns binds p to the calling thread's namespace, or checks that it
// is the one p is bound to. Called with p.mu held.
func (p *Program) bindNetns() error {
	cur, err := netns.Get()
	if err != nil {
		return fmt.Errorf("read network namespace: %w", err)
	}
	if !p.netns.IsOpen() {
		p.netns = cur
		return nil
	}
	defer cur.Close()
	if !cur.Equal(p.netns) {
		return fmt.Errorf("this Program serves network namespace %s, the caller is in %s", p.netns.UniqueId(), cur.UniqueId())
	}
	return nil
}

// inNetns runs f on a thread in p's network namespace (the calling one if
// p is not bound yet). Called with p.mu held.
func (p *Program) inNetns(f func() error) error {
	if !p.netns.IsOpen() {
		return f()
	}
	runtime.LockOSThread()
	cur, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("read network namespace: %w", err)
	}
	defer cur.Close()
	if cur.Equal(p.netns) {
		defer runtime.UnlockOSThread()
		return f()
	}
	if err := netns.Set(p.netns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", p.netns.UniqueId(), err)
	}
	ferr := f()
	if err := netns.Set(cur); err != nil {
		// Keep the thread locked: unlocked, Go could run other goroutines
		// on a thread in the wrong namespace. (Setting an open namespace
		// handle back does not fail in practice.)
		return errors.Join(ferr, fmt.Errorf("return to network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}
