package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/lab"
)

// TestPrivilegedMetadata checks where the metadata written by the XDP
// program lands: the 8 bytes just before the packet, in native and generic
// mode, with and without UMEM headroom.
func TestPrivilegedMetadata(t *testing.T) {
	privileged.Require(t, "ip", "ethtool")
	for _, tc := range []struct {
		generic  bool
		headroom int
	}{{false, 0}, {false, 64}, {true, 0}, {true, 64}} {
		mode := "native"
		if tc.generic {
			mode = "generic"
		}
		t.Run(fmt.Sprintf("%s/headroom=%d", mode, tc.headroom), func(t *testing.T) {
			r := newRig(t, lab.LinkOptions{Queues: 2})
			prog := newXDPProgram(t, 2, true)
			prog.attach(t, r, tc.generic)
			socks := []*Socket{r.open(t, 0, Config{Headroom: tc.headroom, RingSize: 64}), r.open(t, 1, Config{Headroom: tc.headroom, RingSize: 64})}
			for q, s := range socks {
				prog.register(t, q, s)
			}
			conns := r.peerSockets(t, 8)
			for i, c := range conns {
				fmt.Fprintf(c, "spugate meta %d", i)
			}
			frames := make([]Frame, BatchSize)
			seen := 0
			for end := time.Now().Add(3 * time.Second); seen < len(conns) && time.Now().Before(end); {
				for q, s := range socks {
					n := s.Receive(frames)
					for i := range frames[:n] {
						f := &frames[i]
						if _, dport, _, err := parseUDP(f.Packet()); err != nil || dport != testPort {
							continue
						}
						seen++
						want := s.Info().RxOffset
						if f.Off != want {
							t.Errorf("queue %d: packet at offset %d, want %d (headroom %d + XDP_PACKET_HEADROOM)", q, f.Off, want, tc.headroom)
						}
						m := f.Meta(8)
						magic, queue := binary.LittleEndian.Uint32(m[0:]), binary.LittleEndian.Uint32(m[4:])
						if magic != metaMagic || queue != uint32(q) {
							t.Errorf("queue %d: metadata % x: want magic %#x and queue %d (little-endian u32s)", q, m, metaMagic, q)
						}
						if seen == 1 {
							t.Logf("queue %d: chunk of %d bytes, packet at offset %d (%d bytes), metadata at [%d:%d] = % x; before it: % x",
								q, len(f.Buf), f.Off, f.Len, f.Off-8, f.Off, m, f.Buf[f.Off-24:f.Off-8])
						}
					}
					s.Release(frames[:n])
				}
				time.Sleep(time.Millisecond)
			}
			if seen != len(conns) {
				t.Errorf("saw %d of %d datagrams", seen, len(conns))
			}
		})
	}
}

// TestPrivilegedZeroCopy: veth has no zero-copy mode. Asking for it fails
// with ErrZeroCopy; Auto falls back to copy mode and says so.
func TestPrivilegedZeroCopy(t *testing.T) {
	r := newRig(t, lab.LinkOptions{Queues: 1})
	newXDPProgram(t, 1, false).attach(t, r, false)
	err := r.xh.Do(func() error {
		s, err := Open("eth0", 0, Config{Mode: ZeroCopy, RingSize: 64})
		if err == nil {
			s.Close()
			return errors.New("zero-copy bind succeeded on veth")
		}
		if !errors.Is(err, ErrZeroCopy) {
			return fmt.Errorf("want ErrZeroCopy, got %w", err)
		}
		t.Logf("zero-copy on veth: %v", err)
		s, err = Open("eth0", 0, Config{Mode: Auto, RingSize: 64})
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Info().ZeroCopy {
			return errors.New("auto mode reports zero-copy on veth")
		}
		s2, err := Open("eth0", 0, Config{Mode: Copy, RingSize: 64, BindTimeout: 100 * time.Millisecond})
		if err == nil {
			s2.Close()
			return errors.New("two sockets bound to one queue")
		}
		t.Logf("second socket on a bound queue: %v", err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedReopen closes a socket and binds the same queue again at
// once, which a socket made by asavie's NewSocket cannot do: its Close
// leaves the rings mapped, and the mappings keep the socket bound.
func TestPrivilegedReopen(t *testing.T) {
	r := newRig(t, lab.LinkOptions{Queues: 1})
	err := r.xh.Do(func() error {
		for i := 0; i < 5; i++ {
			s, err := Open("eth0", 0, Config{RingSize: 64})
			if err != nil {
				return fmt.Errorf("open #%d: %w", i, err)
			}
			if err := s.Close(); err != nil {
				return err
			}
		}
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		// Our last Close is released asynchronously: asavie does not
		// retry EBUSY, so retry for it.
		var a *xdp.Socket
		for end := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if a, err = xdp.NewSocket(ifi.Index, 0, nil); err == nil || time.Now().After(end) {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("asavie NewSocket: %w", err)
		}
		a.Close()
		s, err := Open("eth0", 0, Config{RingSize: 64, BindTimeout: 300 * time.Millisecond})
		if err == nil {
			s.Close()
			t.Logf("asavie's Close released the queue: its ring mappings are no longer a leak")
		} else {
			t.Logf("after asavie's Close the queue stays bound, as documented: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPrivilegedAsavieProgram receives through asavie's own
// redirect-everything program (xdp.NewProgram, attached with netlink).
func TestPrivilegedAsavieProgram(t *testing.T) {
	r := newRig(t, lab.LinkOptions{Queues: 1})
	s := r.open(t, 0, Config{RingSize: 64})
	var prog *xdp.Program
	err := r.xh.Do(func() (err error) {
		if prog, err = xdp.NewProgram(1); err != nil {
			return err
		}
		if err := prog.Attach(r.ifindex); err != nil {
			return err
		}
		return prog.Register(0, s.FD())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	c := r.peerSockets(t, 1)[0]
	total := &countdown{n: 20}
	go func() {
		for i := 0; i < 20; i++ {
			fmt.Fprintf(c, "spugate asavie %02d", i)
		}
	}()
	res := receiveUntil(s, total, time.Now().Add(3*time.Second))
	if len(res.got) != 20 {
		t.Errorf("received %d of 20 through asavie's program", len(res.got))
	}
}
