package strongswan

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/spugate/spugate/control/vici"
)

// VICI is charon's control protocol (src/libcharon/plugins/vici/README.md
// in strongSwan): 32-bit length-prefixed segments carrying typed packets,
// whose messages are trees of sections, key/values and lists. The harness
// speaks it directly rather than parsing `swanctl --list-sas --raw`, whose
// output does not quote values: an identity such as "CN=a b" cannot be
// told from the next key.

// The codec is control/vici's, the one iked's VICI server uses; these
// names keep the harness's own.
type (
	// Section is a VICI message tree (vici.Section).
	Section = vici.Section
	// Element is one entry of a Section (vici.Element).
	Element = vici.Element
	// Kind tells what an Element is (vici.Kind).
	Kind = vici.Kind
)

// Element kinds.
const (
	KindValue   = vici.KindValue
	KindList    = vici.KindList
	KindSection = vici.KindSection
)

// viciConn is one client connection. The protocol allows one active
// command per connection; a viciConn is not safe for concurrent use.
type viciConn struct {
	c net.Conn
}

// dialVICI connects to charon's socket. charon listens with a backlog
// of 3, so concurrent clients (many initiates in flight) see EAGAIN
// until its accept thread catches up: retry that until timeout.
func dialVICI(path string, timeout time.Duration) (*viciConn, error) {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		c, err := net.DialTimeout("unix", path, time.Until(deadline))
		if err == nil {
			return &viciConn{c: c}, nil
		}
		if !errors.Is(err, syscall.EAGAIN) || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("vici: %w", err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Millisecond)
	}
}

func (v *viciConn) Close() error { return v.c.Close() }

func (v *viciConn) writePacket(typ vici.PacketType, name string, msg *Section) error {
	return vici.WritePacket(v.c, vici.Packet{Type: typ, Name: name, Msg: msg})
}

// readPacket returns a packet's type, its name (named types) and its
// message (types that carry one).
func (v *viciConn) readPacket() (vici.PacketType, string, *Section, error) {
	p, err := vici.ReadPacket(v.c)
	if err != nil {
		return 0, "", nil, fmt.Errorf("vici: read: %w", err)
	}
	return p.Type, p.Name, p.Msg, nil
}

// call runs command cmd. With event set it registers for that event
// first, collects every event until the response and unregisters; events
// may come interleaved with the response, as the protocol allows.
func (v *viciConn) call(cmd string, req *Section, event string, deadline time.Time) (*Section, []*Section, error) {
	if err := v.c.SetDeadline(deadline); err != nil {
		return nil, nil, err
	}
	var events []*Section
	if event != "" {
		if err := v.writePacket(vici.EventRegister, event, nil); err != nil {
			return nil, nil, err
		}
		if err := v.await(vici.EventConfirm, event, &events); err != nil {
			return nil, nil, fmt.Errorf("vici: register %s: %w", event, err)
		}
	}
	if req == nil {
		req = &Section{}
	}
	if err := v.writePacket(vici.CmdRequest, cmd, req); err != nil {
		return nil, nil, err
	}
	var resp *Section
	for resp == nil {
		typ, name, msg, err := v.readPacket()
		if err != nil {
			return nil, events, fmt.Errorf("vici: %s: %w", cmd, err)
		}
		switch typ {
		case vici.Event:
			if name == event {
				events = append(events, msg)
			}
		case vici.CmdResponse:
			resp = msg
		case vici.CmdUnknown:
			return nil, events, fmt.Errorf("vici: command %s unknown to charon", cmd)
		default:
			return nil, events, fmt.Errorf("vici: %s: unexpected packet type %d", cmd, typ)
		}
	}
	if event != "" {
		if err := v.writePacket(vici.EventUnreg, event, nil); err != nil {
			return resp, events, err
		}
		if err := v.await(vici.EventConfirm, event, &events); err != nil {
			return resp, events, fmt.Errorf("vici: unregister %s: %w", event, err)
		}
	}
	return resp, events, nil
}

// await reads until a packet of type want, keeping events named event.
func (v *viciConn) await(want vici.PacketType, event string, events *[]*Section) error {
	for {
		typ, name, msg, err := v.readPacket()
		if err != nil {
			return err
		}
		switch {
		case typ == want:
			return nil
		case typ == vici.Event:
			if name == event {
				*events = append(*events, msg)
			}
		case typ == vici.EventUnknown:
			return errors.New("event unknown to charon")
		default:
			return fmt.Errorf("unexpected packet type %d", typ)
		}
	}
}
