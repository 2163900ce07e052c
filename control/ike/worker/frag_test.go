package worker_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/defrag"
	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/pki/labca"
)

// fragOf returns the exchange, response flag and fragment number of a
// datagram (0 if it is not a fragment).
func fragOf(d manager.Datagram) (message.ExchangeType, bool, uint16, uint16) {
	m, err := message.Decode(d.Data)
	if err != nil {
		return 0, false, 0, 0
	}
	if m.Encrypted == nil || !m.Encrypted.Fragment {
		return m.Header.Exchange, m.Header.IsResponse(), 0, 0
	}
	return m.Header.Exchange, m.Header.IsResponse(), m.Encrypted.FragmentNumber, m.Encrypted.TotalFragments
}

// bigPair is two gateways whose IKE_AUTH messages need fragments both
// ways: RSA-4096 certificates and the intermediate.
func bigPair(t *testing.T, modA, modB func(*certSide)) (*iketest.Sim, *iketest.Node, *iketest.Node) {
	return certPair(t, labca.RSA4096, labca.RSA4096, modA, modB)
}

func TestFragmentedIKEAuthRSA4096(t *testing.T) {
	s, na, nb := bigPair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	max := 0
	frags := map[bool]int{}
	for _, x := range s.Sent {
		if x.Exchange == message.IKEAuth {
			frags[x.Response]++
			max = maxInt(max, x.Len)
		}
	}
	// 1280-byte IPv4 packets: IKE messages of at most 1280-20-8 bytes;
	// an RSA-4096 certificate, the intermediate and a 512-byte signature
	// take at least two.
	if max > 1280-28 || frags[false] < 2 || frags[true] < 2 {
		t.Errorf("IKE_AUTH: %d request and %d response datagrams, largest %d bytes", frags[false], frags[true], max)
	}
	if na.Counters.Get(stats.FragmentsSent) != uint64(frags[false]) || nb.Counters.Get(stats.FragmentsReceived) != uint64(frags[false]) {
		t.Errorf("fragment counters: sent %d received %d, %d on the wire", na.Counters.Get(stats.FragmentsSent),
			nb.Counters.Get(stats.FragmentsReceived), frags[false])
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func TestFragmentSizeSetting(t *testing.T) {
	global := func(o *certSide) { o.global = "fragment_size: 600\n" }
	s, na, nb := bigPair(t, global, global)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	for _, x := range s.Sent {
		if x.Exchange == message.IKEAuth && x.Len > 600-28 {
			t.Errorf("a %d-byte IKE_AUTH datagram with fragment_size 600", x.Len)
		}
	}
}

// TestFragmentLost drops the second fragment of the first IKE_AUTH
// request: the retransmission (every fragment again) completes the set.
func TestFragmentLost(t *testing.T) {
	s, na, nb := bigPair(t, nil, nil)
	dropped := false
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		ex, resp, n, _ := fragOf(d)
		if from == na && ex == message.IKEAuth && !resp && n == 2 && !dropped {
			dropped = true
			return iketest.Fate{Drop: true}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s, na, time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if !dropped || na.Counters.Get(stats.Retransmissions) != 1 {
		t.Errorf("dropped %v, retransmissions %d", dropped, na.Counters.Get(stats.Retransmissions))
	}
	// The responder kept the fragments of the first transmission: the
	// retransmitted ones that it held already are duplicates.
	if nb.Counters.Get(stats.Reassembled) != 1 {
		t.Errorf("reassembled %d", nb.Counters.Get(stats.Reassembled))
	}
}

// TestFragmentedResponseLost drops a fragment of the IKE_AUTH response:
// the initiator retransmits its request (all fragments), and the responder
// answers from its cache once, on fragment 1, with every fragment.
func TestFragmentedResponseLost(t *testing.T) {
	s, na, nb := bigPair(t, nil, nil)
	dropped := false
	respFrags := 0
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		ex, resp, n, total := fragOf(d)
		if from == nb && ex == message.IKEAuth && resp && n == 2 && !dropped {
			dropped = true
			respFrags = int(total)
			return iketest.Fate{Drop: true}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s, na, time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := nb.Counters.Get(stats.CachedResponses); got != 1 {
		t.Errorf("responses from the cache: %d, want 1 (only fragment 1 of the retransmission triggers it)", got)
	}
	n := 0
	for _, x := range s.Sent {
		if x.Exchange == message.IKEAuth && x.Response {
			n++
		}
	}
	if n != 2*respFrags {
		t.Errorf("%d response datagrams, want %d (the %d fragments twice)", n, 2*respFrags, respFrags)
	}
	if nb.Counters.Get(stats.ChildSAsInstalled) != 1 {
		t.Errorf("the retransmitted request was processed again")
	}
}

func TestFragmentsDuplicatedAndReordered(t *testing.T) {
	s, na, nb := bigPair(t, nil, nil)
	s.Reorder = true
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate { return iketest.Fate{Duplicate: true} }
	if err := initiate(t, s, na, time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if na.Counters.Get(stats.Retransmissions) != 0 || nb.Counters.Get(stats.Reassembled) != 1 || na.Counters.Get(stats.Reassembled) != 1 {
		t.Errorf("counters a %+v b %+v", na.Counters.Snapshot(), nb.Counters.Snapshot())
	}
}

// TestFragmentationSettings: no on one side sends whole messages both
// ways; accept announces and reassembles but never fragments.
func TestFragmentationSettings(t *testing.T) {
	t.Run("no", func(t *testing.T) {
		s, na, nb := bigPair(t, nil, func(o *certSide) { o.extra = "    fragmentation: no\n" })
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		established(t, na, nb)
		if na.Counters.Get(stats.FragmentedMessages)+nb.Counters.Get(stats.FragmentedMessages) != 0 {
			t.Error("fragmented although b does not support it")
		}
	})
	t.Run("accept", func(t *testing.T) {
		s, na, nb := bigPair(t, func(o *certSide) { o.extra = "    fragmentation: accept\n" }, nil)
		if err := initiate(t, s, na, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		established(t, na, nb)
		if na.Counters.Get(stats.FragmentedMessages) != 0 || nb.Counters.Get(stats.FragmentedMessages) != 1 || na.Counters.Get(stats.Reassembled) != 1 {
			t.Errorf("a %+v b %+v", na.Counters.Snapshot(), nb.Counters.Snapshot())
		}
	})
}

// TestFragmentFlood plays a hostile peer that completed IKE_SA_INIT (it
// holds the keys, so its fragments authenticate) and sends fragments that
// never make a message: too many, too many bytes, or never all of them.
// The responder holds at most the limits, counts each case, drops an
// incomplete message after the reassembly time, and the IKE SA lives on.
func TestFragmentFlood(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ma, mb := na.Worker.Managers()[0], nb.Worker.Managers()[0]
	ike := ma.IKE
	// forge encodes an INFORMATIONAL request of n bytes of notify data
	// as fragments of at most maxLen bytes.
	forge := func(n, maxLen int) [][]byte {
		var inner []message.Payload
		for n > 0 {
			k := min(n, 60000)
			inner = append(inner, &message.Notify{NotifyType: message.NotifyType(40000), Data: bytes.Repeat([]byte{7}, k)})
			n -= k
		}
		m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: message.Informational,
			MessageID: mb.IKE.MsgIDIn, Flags: message.FlagInitiator}, Inner: inner}
		fs, err := m.EncodeFragments(sealer(ike), maxLen)
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	deliver := func(fs [][]byte, check func()) {
		for _, f := range fs {
			nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: f})
			if check != nil {
				check()
			}
		}
	}
	bounded := func() {
		if req, resp := mb.Reassembling(); req > manager.DefaultMaxPacket || resp != 0 {
			t.Fatalf("responder holds %d bytes of request fragments (limit max_packet, %d)", req, manager.DefaultMaxPacket)
		}
	}

	answered := nb.Counters.Get(stats.ExchangesAnswered)
	// Too many fragments: refused at once, nothing held.
	fs := forge(100_000, 600)
	if len(fs) <= 128 {
		t.Fatalf("forged %d fragments, want more than 128", len(fs))
	}
	deliver(fs, bounded)
	if req, _ := mb.Reassembling(); req != 0 || nb.Counters.Failures(stats.FragmentLimit) != uint64(len(fs)) {
		t.Errorf("held %d bytes, fragment_limit %d for %d fragments", req, nb.Counters.Failures(stats.FragmentLimit), len(fs))
	}

	// Too many bytes: 100 fragments of 1000 bytes pass max_packet.
	before := nb.Counters.Failures(stats.FragmentLimit)
	deliver(forge(100_000, 1100), bounded)
	if nb.Counters.Failures(stats.FragmentLimit) == before {
		t.Error("100 KB of fragments not refused")
	}

	// A message never completed: held until the reassembly time is up.
	fs = forge(8_000, 1100)
	deliver(fs[:len(fs)-1], bounded)
	if req, _ := mb.Reassembling(); req == 0 {
		t.Fatal("incomplete message not held")
	}
	s.RunFor(31 * time.Second)
	if req, _ := mb.Reassembling(); req != 0 || nb.Counters.Failures(stats.FragmentTimeout) != 1 {
		t.Errorf("after 31 s: %d bytes held, fragment_timeout %d", req, nb.Counters.Failures(stats.FragmentTimeout))
	}
	// The last fragment alone now starts a new set; it does not complete
	// the dropped one.
	deliver(fs[len(fs)-1:], nil)
	if nb.Counters.Get(stats.Reassembled) != 0 {
		t.Error("a message completed from fragments of two periods")
	}
	if nb.Counters.Get(stats.ExchangesAnswered) != answered {
		t.Errorf("answered %d requests during the flood", nb.Counters.Get(stats.ExchangesAnswered)-answered)
	}

	// Once that leftover expires too, a real fragmented request of the same
	// peer goes through.
	s.RunFor(31 * time.Second)
	fs = forge(5_000, 1100)
	deliver(fs, nil)
	if nb.Counters.Get(stats.Reassembled) != 1 || nb.Counters.Get(stats.ExchangesAnswered) != answered+1 {
		t.Errorf("genuine fragmented request: reassembled %d, answered %d", nb.Counters.Get(stats.Reassembled), nb.Counters.Get(stats.ExchangesAnswered))
	}
	established(t, na, nb)
}

// TestFragmentMemory: the fragments of all IKE SAs together stay within
// the shared budget (fragment_memory); one past it drops its message,
// counted, and the bytes of a message come back however it ends:
// completed, or its IKE SA destroyed or detached with fragments held.
// A datagram over max_packet is dropped unread.
func TestFragmentMemory(t *testing.T) {
	for _, end := range []string{"destroy", "detach"} {
		t.Run(end, func(t *testing.T) {
			budget := defrag.NewBudget(3000)
			ca, cb := configs(t, nil, nil)
			s, na, nb := newPair(t, ca, cb)
			nb.Set.Fragments = budget
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			ma, mb := na.Worker.Managers()[0], nb.Worker.Managers()[0]
			ike := ma.IKE
			forge := func(n int) [][]byte {
				inner := []message.Payload{&message.Notify{NotifyType: message.NotifyType(40000), Data: bytes.Repeat([]byte{7}, n)}}
				m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: message.Informational,
					MessageID: mb.IKE.MsgIDIn, Flags: message.FlagInitiator}, Inner: inner}
				fs, err := m.EncodeFragments(sealer(ike), 1100)
				if err != nil {
					t.Fatal(err)
				}
				return fs
			}
			deliver := func(fs [][]byte) {
				for _, f := range fs {
					nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: f})
					if budget.Used() > budget.Max() {
						t.Fatalf("%d bytes held, over the budget of %d", budget.Used(), budget.Max())
					}
				}
			}
			deliver(forge(8000))
			if req, _ := mb.Reassembling(); req != budget.Used() || nb.Counters.Failures(stats.FragmentMemory) == 0 {
				t.Fatalf("8000 bytes against a budget of 3000: %d held, %d counted by the budget, fragment_memory %d",
					req, budget.Used(), nb.Counters.Failures(stats.FragmentMemory))
			}
			// The rest of that message started a set of its own, whose
			// bytes come back when it expires.
			s.RunFor(31 * time.Second)
			if budget.Used() != 0 {
				t.Fatalf("%d bytes still counted after the reassembly time", budget.Used())
			}
			// What fits goes through, and gives its bytes back.
			answered := nb.Counters.Get(stats.ExchangesAnswered)
			deliver(forge(2500))
			if nb.Counters.Get(stats.ExchangesAnswered) != answered+1 || budget.Used() != 0 {
				t.Fatalf("a request within the budget: answered %d, %d bytes still counted", nb.Counters.Get(stats.ExchangesAnswered)-answered, budget.Used())
			}
			// Over max_packet: not read.
			nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500),
				Data: make([]byte, manager.DefaultMaxPacket+1)})
			if n := nb.Counters.Failures(stats.MaxPacket); n != 1 {
				t.Errorf("max_packet %d, want 1", n)
			}
			// Held when the IKE SA leaves the worker.
			fs := forge(2500)
			deliver(fs[:1])
			if budget.Used() == 0 {
				t.Fatal("first fragment not held")
			}
			switch end {
			case "destroy":
				mb.Destroy("test")
			case "detach":
				if _, err := nb.Worker.Detach(mb.IKE.OurSPI()); err != nil {
					t.Fatal(err)
				}
			}
			if budget.Used() != 0 {
				t.Errorf("%d bytes still counted after the IKE SA's %s", budget.Used(), end)
			}
		})
	}
}

// FuzzFragments sends arbitrary inner payload chains to the responder of
// an established IKE SA as authentic fragments, in an arbitrary order with
// losses and duplicates: reassembly and the tasks behind it must cope, and
// what is held stays within the limits.
func FuzzFragments(f *testing.F) {
	f.Add(uint8(message.Informational), uint8(message.PayloadDelete), []byte{0, 0, 0, 12, 3, 4, 0, 1, 1, 2, 3, 4}, uint16(0), []byte{0})
	f.Add(uint8(message.Informational), uint8(message.PayloadNotify), append([]byte{0, 0x0b, 0xb8, 8, 0, 0, 0x9c, 0x40}, bytes.Repeat([]byte{1}, 3000)...),
		uint16(300), []byte{2, 1, 0, 1, 2})
	f.Add(uint8(message.CreateChildSA), uint8(message.PayloadNotify), []byte{0, 0, 0, 8, 0, 0, 0x40, 9}, uint16(10), []byte{})
	ca, cb := configs(f, nil, nil)
	f.Fuzz(func(t *testing.T, ex, first uint8, plain []byte, size uint16, order []byte) {
		inner, err := message.DecodeInner(plain, message.PayloadType(first))
		if err != nil || len(order) > 64 {
			return
		}
		s, na, nb := newPair(t, ca, cb)
		na.Worker.Initiate("tun", "", nil)
		s.RunFor(time.Second)
		ms, mbs := na.Worker.Managers(), nb.Worker.Managers()
		if len(ms) != 1 || len(mbs) != 1 || ms[0].IKE.State != sa.Established {
			t.Fatal("setup failed")
		}
		ike := ms[0].IKE
		m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: message.ExchangeType(ex),
			Flags: message.FlagInitiator, MessageID: ike.MsgIDOut}, Inner: inner}
		fs, err := m.EncodeFragments(sealer(ike), 100+int(size)%1200)
		if err != nil {
			return
		}
		if len(order) == 0 {
			order = make([]byte, len(fs))
			for i := range order {
				order[i] = byte(i)
			}
		}
		for _, o := range order {
			d := fs[int(o)%len(fs)]
			nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: d})
			if req, resp := mbs[0].Reassembling(); req > 64<<10 || resp > 64<<10 {
				t.Fatalf("holding %d + %d bytes", req, resp)
			}
		}
		s.RunFor(time.Minute)
	})
}
