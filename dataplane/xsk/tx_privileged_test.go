package xsk

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spugate/spugate/internal/privileged"
	"github.com/spugate/spugate/testbed/lab"
)

// peerListen opens a UDP socket in the peer on port.
func (r *rig) peerListen(t testing.TB, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := r.ph.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: r.pip.AsSlice(), Port: port})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads datagrams from c until n arrived or a read times out.
func readAll(c *net.UDPConn, n int, idle time.Duration) map[string]int {
	return readCounting(c, n, idle, nil)
}

// readCounting is readAll that also counts datagrams in count as they
// arrive, for a sender that must not outrun the socket's buffer.
func readCounting(c *net.UDPConn, n int, idle time.Duration, count *atomic.Int64) map[string]int {
	got := map[string]int{}
	buf := make([]byte, 4096)
	for i := 0; i < n; i++ {
		c.SetReadDeadline(time.Now().Add(idle))
		k, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		got[string(buf[:k])]++
		if count != nil {
			count.Add(1)
		}
	}
	return got
}

func TestPrivilegedTransmit(t *testing.T) {
	privileged.Require(t, "ip", "ethtool")
	for _, noWakeup := range []bool{false, true} {
		t.Run(fmt.Sprintf("need_wakeup=%v", !noWakeup), func(t *testing.T) {
			r := newRig(t, lab.LinkOptions{Queues: 2})
			s := r.open(t, 0, Config{NoNeedWakeup: noWakeup, RingSize: 64, NumFrames: 128})
			peer := r.peerListen(t, 9001)
			gotc := make(chan map[string]int)
			var read atomic.Int64
			go func() { gotc <- readCounting(peer, 300, 3*time.Second, &read) }()
			const total = 300 // more than the ring and the UMEM: frames must come back
			frames := make([]Frame, BatchSize)
			want := map[string]bool{}
			sent, calls := 0, 0
			deadline := time.Now().Add(10 * time.Second)
			for sent < total && time.Now().Before(deadline) {
				// Keep at most two batches ahead of the peer's reader: its
				// socket buffer holds about 256 of these datagrams.
				for int(read.Load()) < sent-BatchSize && time.Now().Before(deadline) {
					time.Sleep(time.Millisecond)
				}
				n := s.Alloc(frames[:min(len(frames), total-sent)])
				for i := range frames[:n] {
					f := &frames[i]
					payload := []byte(fmt.Sprintf("spugate tx %04d", sent+i))
					want[string(payload)] = true
					// Anywhere in the chunk: at the start, at the receive
					// offset Alloc chose, or flush with the end.
					var pkt [128]byte
					l := buildUDP(pkt[:], r.xmac, r.pmac, r.xip, r.pip, 9002, 9001, payload)
					off := [3]int{0, f.Off, len(f.Buf) - l}[(sent+i)%3]
					if !f.SetPacket(off, pkt[:l]) {
						t.Fatalf("SetPacket(%d, %d bytes) failed", off, l)
					}
				}
				q := 0
				for q < n {
					q += s.Transmit(frames[q:n])
					calls++
					if q < n {
						s.Complete()
						time.Sleep(time.Millisecond)
					}
				}
				sent += n
				s.Complete()
			}
			got := <-gotc
			if len(got) < total {
				out, _ := r.ph.Exec("sh", "-c", "grep Udp: /proc/net/snmp; ip -s link show eth0")
				t.Logf("peer received %d of %d:\n%s", len(got), total, out)
			}
			for k := range want {
				if got[k] != 1 {
					t.Errorf("%q received %d times", k, got[k])
				}
			}
			for end := time.Now().Add(2 * time.Second); s.Stats().TxCompleted < total && time.Now().Before(end); {
				s.Complete()
				time.Sleep(time.Millisecond)
			}
			st := s.Stats()
			t.Logf("%d Transmit calls; tx ring asks for wakeups: %v; info %+v; stats %+v", calls, s.tx.needWakeup(), s.Info(), st)
			if st.TxFrames != total || st.TxCompleted != total {
				t.Errorf("tx %d completed %d, want %d", st.TxFrames, st.TxCompleted, total)
			}
			if st.FreeFrames+uint64(s.fill.pending()) != 128 {
				t.Errorf("frames lost: %d free + %d on the fill ring, want 128", st.FreeFrames, s.fill.pending())
			}
			if st.TxKicks == 0 {
				t.Errorf("no kick: copy mode transmits only on sendto")
			}
		})
	}
}

// TestPrivilegedHairpin receives datagrams and sends each back in its own
// frame: half as a reply (addresses swapped, payload changed), half
// encapsulated in a new Ethernet+IPv4+UDP header prepended in place.
func TestPrivilegedHairpin(t *testing.T) {
	r := newRig(t, lab.LinkOptions{Queues: 1})
	prog := newXDPProgram(t, 1, false)
	prog.attach(t, r, false)
	s := r.open(t, 0, Config{RingSize: 256})
	prog.register(t, 0, s)
	encaps := r.peerListen(t, 9004)
	var conn *net.UDPConn
	err := r.ph.Do(func() (err error) {
		conn, err = net.DialUDP("udp4", &net.UDPAddr{IP: r.pip.AsSlice(), Port: 9003}, &net.UDPAddr{IP: r.xip.AsSlice(), Port: testPort})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	const total = 200
	repc, encc := make(chan map[string]int), make(chan map[string]int)
	go func() { repc <- readAll(conn, total/2, 2*time.Second) }()
	go func() { encc <- readAll(encaps, total/2, 2*time.Second) }()
	done := make(chan [2]int)
	go func() {
		frames := make([]Frame, BatchSize)
		out := make([]Frame, 0, BatchSize)
		var rel []Frame
		handled, encapsulated := 0, 0
		w := NewWaiter([]Port{s})
		for end := time.Now().Add(10 * time.Second); handled < total && time.Now().Before(end); {
			s.Complete()
			n := s.Receive(frames)
			if n == 0 {
				w.Wait(5 * time.Millisecond)
				continue
			}
			out, rel = out[:0], rel[:0]
			for i := range frames[:n] {
				f := frames[i]
				if _, dport, _, err := parseUDP(f.Packet()); err != nil || dport != testPort {
					rel = append(rel, f)
					continue
				}
				if handled%2 == 0 {
					reply(f.Packet())
				} else {
					// Outer header in front of the whole received frame.
					inner := f.Len
					hdr := f.Prepend(42)
					if hdr == nil {
						rel = append(rel, f)
						continue
					}
					var tmp [42]byte
					buildUDP(tmp[:], r.xmac, r.pmac, r.xip, r.pip, 9005, 9004, nil)
					binary.BigEndian.PutUint16(tmp[16:], uint16(28+inner))
					binary.BigEndian.PutUint16(tmp[24:], 0)
					binary.BigEndian.PutUint16(tmp[24:], ipChecksum(tmp[14:34]))
					binary.BigEndian.PutUint16(tmp[38:], uint16(8+inner))
					copy(hdr, tmp[:])
					encapsulated++
				}
				out = append(out, f)
				handled++
			}
			s.Release(rel)
			for q := 0; q < len(out); {
				q += s.Transmit(out[q:])
				if q < len(out) {
					s.Complete()
				}
			}
		}
		done <- [2]int{handled, encapsulated}
	}()
	for i := 0; i < total; i++ {
		fmt.Fprintf(conn, "spugate hairpin %04d", i)
		time.Sleep(100 * time.Microsecond)
	}
	res := <-done
	gotReplies, gotEncaps := <-repc, <-encc
	t.Logf("handled %d (%d encapsulated); stats %+v", res[0], res[1], s.Stats())
	if res[0] != total {
		t.Fatalf("handled %d of %d", res[0], total)
	}
	for i := 0; i < total; i += 2 {
		k := fmt.Sprintf("SPUGATE HAIRPIN %04d", i)
		if gotReplies[k] != 1 {
			t.Errorf("reply %q received %d times", k, gotReplies[k])
		}
	}
	n := 0
	for inner := range gotEncaps {
		_, dport, payload, err := parseUDP([]byte(inner))
		if err != nil || dport != testPort || !bytes.HasPrefix(payload, []byte("spugate hairpin ")) {
			t.Errorf("encapsulated frame is not the received one: %q (%v)", inner, err)
		}
		n++
	}
	if n != total/2 {
		t.Errorf("%d encapsulated frames arrived, want %d", n, total/2)
	}
}

// reply turns an Ethernet+IPv4+UDP frame around and upper-cases its payload.
func reply(p []byte) {
	var mac [6]byte
	copy(mac[:], p[0:6])
	copy(p[0:6], p[6:12])
	copy(p[6:12], mac[:])
	var ip [4]byte
	copy(ip[:], p[26:30])
	copy(p[26:30], p[30:34])
	copy(p[30:34], ip[:])
	sport := binary.BigEndian.Uint16(p[34:])
	copy(p[34:36], p[36:38])
	binary.BigEndian.PutUint16(p[36:], sport)
	binary.BigEndian.PutUint16(p[40:], 0)
	copy(p[42:], bytes.ToUpper(p[42:]))
}
