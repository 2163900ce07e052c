package worker_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/suite"
	"github.com/spugate/spugate/control/ike/worker"
	"github.com/spugate/spugate/dataplane/api"
)

// TestRekeyByDataPlaneEvents: the data plane's soft byte and packet
// limits and its sequence-number warning rekey the Child SA at once
// (logged with the reason); a hard limit deletes it and, with
// reinitiate, a new one is created. The limits given to the data plane
// carry rand_bytes/rand_packets jitter.
func TestRekeyByDataPlaneEvents(t *testing.T) {
	mod := lifetimes("        rekey_bytes: 1m\n        rand_bytes: 100k\n        rekey_packets: 10000\n        rand_packets: 1000\n        reinitiate: yes\n", "")
	s, na, nb := pair(t, mod, mod)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ch := na.Worker.List()[0].Children[0]
	out, _ := na.DP.Find(ch.SPIOut, "out")
	l := out.Lifetime
	if l.SoftBytes > 1<<20 || l.SoftBytes <= 1<<20-100<<10 || l.HardBytes != 1<<20*11/10 ||
		l.SoftPackets > 10000 || l.SoftPackets <= 9000 || l.HardPackets != 11000 {
		t.Errorf("lifetimes given to the data plane: %+v", l)
	}
	for i, ev := range []struct {
		ev      worker.LifetimeEvent
		in      bool
		bytes   uint64
		packets uint64
		reason  string
	}{
		{worker.SoftLimit, false, 1 << 20, 10, "reason=rekey_bytes"},
		{worker.SoftLimit, true, 100, 10000, "reason=rekey_packets"},
		{worker.SeqNear, false, 0, 0, "reason=\"sequence numbers near exhaustion\""},
	} {
		cur := na.Worker.List()[0].Children[0]
		spi := cur.SPIOut
		if ev.in {
			spi = cur.SPIIn
		}
		na.Worker.ChildEvent(spi, ev.in, ev.ev, ev.bytes, ev.packets)
		s.RunFor(10 * time.Second)
		converged(t, na, nb, 1)
		if got := na.Counters.Get(stats.ChildRekeysInitiated); got != uint64(i+1) {
			t.Fatalf("event %d: %d rekeys", i, got)
		}
		if !strings.Contains(na.Logs(), ev.reason) {
			t.Errorf("no rekey logged with %s", ev.reason)
		}
	}
	// A hard limit: deleted, and created again (reinitiate).
	cur := na.Worker.List()[0].Children[0]
	na.Worker.ChildEvent(cur.SPIOut, false, worker.HardLimit, 1<<20*11/10, 100)
	s.RunFor(10 * time.Second)
	converged(t, na, nb, 1)
	if now := na.Worker.List()[0].Children[0]; now.SPIIn == cur.SPIIn {
		t.Errorf("the Child SA was not replaced after its hard limit")
	}
	if na.Counters.Get(stats.ChildSAsExpired) != 1 || !strings.Contains(na.Logs(), "reason=life_bytes") {
		t.Errorf("hard expiry not counted or logged")
	}
}

// TestHardExpiryReinitiates: a Child SA that is not rekeyed (rekey_time 0)
// is deleted at its life_time and, with reinitiate, created again.
func TestHardExpiryReinitiates(t *testing.T) {
	s, na, nb := pair(t, lifetimes("        rekey_time: 0s\n        life_time: 10s\n        reinitiate: yes\n", ""),
		lifetimes("        rekey_time: 0s\n        life_time: 30s\n", ""))
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first := na.Worker.List()[0].Children[0]
	s.RunFor(11 * time.Second)
	converged(t, na, nb, 1)
	if now := na.Worker.List()[0].Children[0]; now.SPIIn == first.SPIIn || now.ReqID != first.ReqID {
		t.Errorf("after the hard expiry: %s reqid %d, first %s reqid %d", now.SPIs(), now.ReqID, first.SPIs(), first.ReqID)
	}
	if na.Counters.Get(stats.ChildSAsExpired) != 1 {
		t.Errorf("expiry not counted")
	}
}

// TestRekeyWithPFS: with a key exchange group in esp_proposals, a rekey
// carries a KE (the new Child SA's keys come from a fresh DH) and the
// Child SA's algorithms name the group.
func TestRekeyWithPFS(t *testing.T) {
	mod := func(o *confOpts) { o.esp = "aes256gcm16-ecp256" }
	s, na, nb := pair(t, mod, mod)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ike := na.Worker.Managers()[0].IKE
	kes := 0
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if m, err := message.Decode(d.Data); err == nil && m.Header.Exchange == message.CreateChildSA {
			c := opener(ike)
			if from == na {
				c = sealer(ike)
			}
			// Decrypting with gw-a's ciphers: its own requests with Out
			// would fail, so look at the responses only.
			if from == nb && m.Decrypt(c) == nil && message.Find(m.Inner, message.PayloadKE) != nil {
				kes++
			}
		}
		return iketest.Fate{}
	}
	na.Worker.Rekey(worker.Target{Conn: "tun"}, false)
	s.RunFor(5 * time.Second)
	converged(t, na, nb, 1)
	if kes != 1 {
		t.Errorf("%d rekey responses with a KE, want 1", kes)
	}
	if g := na.Worker.List()[0].Children[0].Alg.Group; g != suite.GroupECP256 {
		t.Errorf("rekeyed Child SA's group %s", g)
	}
}

// TestDPDCountsESP: with inbound ESP arriving, no liveness check is sent;
// when it stops, one is.
func TestDPDCountsESP(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.extra = "    dpd_delay: 5s\n" }, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	flows(s, na, nb, time.Millisecond, 30*time.Second)
	s.RunFor(30 * time.Second)
	if got := na.Counters.Get(stats.DPDChecks); got != 0 {
		t.Errorf("%d DPD checks while ESP arrived", got)
	}
	s.RunFor(15 * time.Second)
	if got := na.Counters.Get(stats.DPDChecks); got < 1 {
		t.Errorf("no DPD check after ESP stopped")
	}
}

// TestNATMappingChange: gw-a sits behind a NAT whose mapping changes (a
// new outside port, as after a NAT reboot or a conntrack flush). gw-a's
// next authenticated message (its liveness check, sent because no ESP
// arrives any more) moves gw-b's IKE SA and its Child SAs to the new port
// (RFC 7296 2.23), and traffic flows again. Keepalives are sent at the
// configured interval.
func TestNATMappingChange(t *testing.T) { natMappingChange(t, 0) }

// TestNATMappingChangeLater is TestNATMappingChange with gw-b's data plane
// taking the moves without its worker waiting (task.LaterDataPlane): they
// reach the data plane after the worker went on, and the outbound SA
// follows the new port all the same.
func TestNATMappingChangeLater(t *testing.T) { natMappingChange(t, 20*time.Millisecond) }

// natMappingChange runs the mapping change with gw-b's data plane calls
// taking slow (0: waited for).
func natMappingChange(t *testing.T, slow time.Duration) {
	s, na, nb, mapping := natPair(t, slow)
	base := *mapping
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ib := nb.Worker.List()[0]
	if ib.Remote.Port() != base+2 {
		t.Fatalf("gw-b sees gw-a at %s", ib.Remote)
	}
	ab, ba := flows(s, na, nb, time.Millisecond, 60*time.Second)
	ba.Path = func(out api.SA) bool { return out.Encap != nil && out.Encap.RemotePort == base+2 }
	s.RunFor(20 * time.Second)
	if got := na.Counters.Get(stats.Keepalives); got < 3 || got > 4 {
		t.Errorf("%d keepalives in 20 s with keep_alive 5s", got)
	}
	// The mapping changes: the old outside port leads nowhere now.
	changed := s.Clock.Now()
	*mapping = 41000
	base = *mapping
	s.RunFor(40 * time.Second)
	ib = nb.Worker.List()[0]
	if ib.Remote.Port() != base+2 {
		t.Fatalf("gw-b still sends to %s", ib.Remote)
	}
	out, _ := nb.DP.Find(ib.Children[0].SPIOut, "out")
	if out.Encap == nil || out.Encap.RemotePort != base+2 {
		t.Errorf("gw-b's outbound SA still goes to %+v", out.Encap)
	}
	if nb.Counters.Get(stats.PeerAddressChanges) != 1 {
		t.Errorf("address change not counted")
	}
	if len(ab.Lost) != 0 {
		t.Errorf("gw-a -> gw-b lost packets: %s", ab)
	}
	var last time.Time
	for _, l := range ba.Lost {
		if l.Sent.Before(changed) {
			t.Errorf("gw-b -> gw-a lost a packet before the mapping changed: %s", ba)
			break
		}
		last = l.Sent
	}
	t.Logf("mapping change at %v; gw-b -> gw-a lost %d packets, the last sent %v after the change (dpd_delay 2s)",
		changed.Sub(iketest.Epoch), len(ba.Lost), last.Sub(changed))
	if last.Sub(changed) > 3*time.Second+500*time.Millisecond {
		t.Errorf("recovery took %v", last.Sub(changed))
	}
	if slow > 0 && (!slices.Contains(nb.DP.Ops, "update out "+fmt.Sprintf("%08x", ib.Children[0].SPIOut)) || len(nb.LaterFailures) > 0) {
		t.Errorf("gw-b's moves: operations %v, failures %v", nb.DP.Ops, nb.LaterFailures)
	}
}

// natPair is gw-a behind a NAT whose outside ports are *base+1 (from 500)
// and *base+2 (from 4500): a test changes the mapping by changing *base.
// gw-b's data plane calls take slow (0: waited for).
func natPair(t *testing.T, slow time.Duration, opts ...func(*confOpts)) (*iketest.Sim, *iketest.Node, *iketest.Node, *uint16) {
	t.Helper()
	natIn := netip.MustParseAddr("198.18.3.1")
	natOut := netip.MustParseAddr("198.18.0.254")
	s := iketest.NewSim(t)
	oa := confOpts{local: natIn, remote: addrB, localID: "gw-a.example", remoteID: "gw-b.example",
		extra: "    dpd_delay: 2s\n", retransmit: "retransmit_timeout: 1s\nkeep_alive: 5s\n"}
	ob := confOpts{local: addrB, remote: addrA, localID: "gw-b.example", remoteID: "gw-a.example",
		localTS: "198.18.2.0/24", remoteTS: "198.18.1.0/24"}
	for _, o := range opts {
		o(&oa)
		o(&ob)
	}
	yb := strings.Replace(ob.yaml(), "remote_addrs: "+addrA.String(), "remote_addrs: \"%any\"", 1)
	na := s.AddNode("gw-a", natIn, iketest.WriteConfig(t, oa.yaml(), oa.secrets()))
	nb := s.AddNode("gw-b", addrB, iketest.WriteConfig(t, yb, ob.secrets()))
	nb.InstallDelay = slow
	base := new(uint16)
	*base = 40000
	s.NAT = func(d manager.Datagram) manager.Datagram {
		switch {
		case d.Local.Addr() == natIn:
			p := *base + 1
			if d.Local.Port() == 4500 {
				p = *base + 2
			}
			d.Local = netip.AddrPortFrom(natOut, p)
		case d.Remote.Addr() == natOut:
			switch d.Remote.Port() {
			case *base + 1:
				d.Remote = netip.AddrPortFrom(natIn, 500)
			case *base + 2:
				d.Remote = netip.AddrPortFrom(natIn, 4500)
			default:
				d.Remote = netip.AddrPortFrom(netip.MustParseAddr("198.18.99.99"), d.Remote.Port()) // no mapping: lost
			}
		}
		return d
	}
	return s, na, nb, base
}

// A Child SA whose add is in flight when the peer's NAT mapping changes
// follows the peer once it is in: the manager moved the Child SAs in the
// IKE SA's list then, and the new one was not in it yet (a move sent
// then could reach spud before the add, and fail).
func TestNATMappingChangeDuringInstall(t *testing.T) {
	s, na, nb, base := natPair(t, 20*time.Millisecond, twoChildren)
	// Only a Child SA with an anchor goes in without the worker waiting.
	na.Anchors, nb.Anchors = anchoring(t, false), anchoring(t, true)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// gw-a brought "second" up after IKE_AUTH: gw-b takes it down and
	// up again, as initiator.
	s.RunFor(time.Second)
	if n := nb.Worker.Terminate(worker.Target{Conn: "tun", Child: "second"}, nil); n != 1 {
		t.Fatalf("%d Child SAs terminated", n)
	}
	s.RunFor(time.Second)
	nb.HoldInstalls = true
	created := false
	if err := nb.Worker.Initiate("tun", "second", func(err error) {
		if err != nil {
			t.Errorf("second child: %v", err)
		}
		created = true
	}); err != nil {
		t.Fatal(err)
	}
	if !s.RunUntil(10*time.Second, func() bool { return nb.InstallsInFlight() == 1 }) {
		t.Fatalf("gw-b's install of its new Child SA is not in flight (%d)", nb.InstallsInFlight())
	}
	*base = 41000
	// gw-a's DPD (dpd_delay 2s) reaches gw-b from the new mapping.
	if !s.RunUntil(20*time.Second, func() bool { return nb.Counters.Get(stats.PeerAddressChanges) == 1 }) {
		t.Fatal("gw-b did not see gw-a move")
	}
	nb.HoldInstalls = false
	if !s.RunUntil(10*time.Second, func() bool { return created }) {
		t.Fatal("the second Child SA was not created")
	}
	s.RunFor(time.Second)
	ib := nb.Worker.List()[0]
	if ib.Remote.Port() != *base+2 {
		t.Fatalf("gw-b sends to %s", ib.Remote)
	}
	installed := 0
	for _, ch := range ib.Children {
		if ch.State != sa.ChildInstalled {
			continue
		}
		installed++
		out, ok := nb.DP.Find(ch.SPIOut, "out")
		if !ok || out.Encap == nil || out.Encap.RemotePort != *base+2 {
			t.Errorf("gw-b's outbound SA %08x goes to %+v, want port %d", ch.SPIOut, out.Encap, *base+2)
		}
	}
	if installed != 2 {
		t.Errorf("%d Child SAs installed, want 2", installed)
	}
}

// TestIKEExpiresWithoutRekey: an IKE SA whose rekeys keep failing is
// deleted at rekey_time + over_time.
func TestIKEExpiresWithoutRekey(t *testing.T) {
	s, na, nb := pair(t, lifetimes("", "    rekey_time: 20s\n    over_time: 10s\n    rand_time: 0s\n"),
		lifetimes("", "    rekey_time: 0s\n"))
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// gw-b no longer accepts gw-a's IKE proposals: every rekey is refused.
	_, cb := configs(t, nil, func(o *confOpts) { o.ike = "aes256gcm16-prfsha384-ecp384"; o.extra = "    rekey_time: 0s\n" })
	nb.Cfg = cb
	s.RunFor(35 * time.Second)
	if l := na.Worker.List(); len(l) != 0 {
		t.Errorf("gw-a kept its IKE SA:\n%s", dumpIKE(l))
	}
	if na.Counters.Get(stats.IKESAsExpired) != 1 || na.Counters.Get(stats.RekeyRetries) < 2 {
		t.Errorf("expired %d, retries %d", na.Counters.Get(stats.IKESAsExpired), na.Counters.Get(stats.RekeyRetries))
	}
}

// TestReauthMakeBeforeBreak: at reauth_time the IKE SA is replaced by a
// new one (IKE_SA_INIT, IKE_AUTH) with a new Child SA, then the old one is
// deleted; traffic never stops.
func TestReauthMakeBeforeBreak(t *testing.T) {
	s, na, nb := pair(t, lifetimes("", "    rekey_time: 0s\n    reauth_time: 20s\n    rand_time: 0s\n"),
		lifetimes("", "    rekey_time: 0s\n"))
	delay(s, 5*time.Millisecond)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	first := na.Worker.List()[0]
	ab, ba := flows(s, na, nb, 5*time.Millisecond, 30*time.Second)
	s.RunFor(30 * time.Second)
	noLoss(t, ab, ba)
	converged(t, na, nb, 1)
	now := na.Worker.List()[0]
	if now.SPIi == first.SPIi || now.Children[0].ReqID != first.Children[0].ReqID {
		t.Errorf("not reauthenticated: %s", dumpIKE([]sa.IKESA{now}))
	}
	if na.Counters.Get(stats.IKESAsReauthed) != 1 {
		t.Errorf("reauth not counted")
	}
	if strings.Count(nb.Logs(), "INITIAL_CONTACT") != 0 && nb.Counters.Get(stats.InitialContacts) != 0 {
		t.Errorf("the reauthentication sent INITIAL_CONTACT")
	}
}

// TestRestoreAfterRekey: the state persisted after rekeys (a rekeyed IKE
// SA's successor, draining SAs) restores, and the restored IKE SA rekeys
// on.
func TestRestoreAfterRekey(t *testing.T) {
	mod := lifetimes("        rekey_time: 10s\n        life_time: 30s\n        rand_time: 0s\n", "    rekey_time: 25s\n    rand_time: 0s\n")
	s, na, nb := pair(t, mod, mod)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s.RunFor(27 * time.Second)
	for _, b := range na.Persist {
		var ike sa.IKESA
		if err := json.Unmarshal(b, &ike); err != nil {
			t.Fatal(err)
		}
		if ike.State != sa.Established {
			t.Errorf("persisted IKE SA in state %s", ike.State)
		}
	}
	if err := na.Restart(); err != nil {
		t.Fatal(err)
	}
	ab, ba := flows(s, na, nb, time.Millisecond, 30*time.Second)
	s.RunFor(30 * time.Second)
	noLoss(t, ab, ba)
	converged(t, na, nb, 1)
}

// TestRestartDuringRekey: iked stops while a request of its rekey is in
// flight (the peer answered; the answer is lost with the process): the
// CREATE_CHILD_SA of a Child SA rekey, the CREATE_CHILD_SA of an IKE SA
// rekey, or the DELETE of the rekeyed Child SA. The restored IKE SA sends
// that request again as it was (the peer answers from its cache) and
// finishes the rekey with the rebuilt task; no packet is lost.
func TestRestartDuringRekey(t *testing.T) {
	for _, c := range []struct {
		name string
		ex   message.ExchangeType
		ike  bool
	}{{"child-rekey", message.CreateChildSA, false}, {"ike-rekey", message.CreateChildSA, true}, {"delete-old", message.Informational, false}} {
		t.Run(c.name, func(t *testing.T) {
			s, na, nb := pair(t, nil, nil)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			first := na.Worker.List()[0]
			lost := false
			s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
				if h, ok := header(d); ok && from == nb && h.Exchange == c.ex && h.IsResponse() && !lost {
					lost = true
					return iketest.Fate{Drop: true}
				}
				return iketest.Fate{}
			}
			ab, ba := flows(s, na, nb, time.Millisecond, 60*time.Second)
			na.Worker.Rekey(worker.Target{Conn: "tun"}, c.ike)
			s.RunFor(100 * time.Millisecond)
			if !lost {
				t.Fatal("no response to lose")
			}
			if err := na.Restart(); err != nil {
				t.Fatal(err)
			}
			s.RunFor(60 * time.Second)
			noLoss(t, ab, ba)
			converged(t, na, nb, 1)
			now := na.Worker.List()[0]
			if c.ike && now.SPIi == first.SPIi || !c.ike && now.Children[0].SPIIn == first.Children[0].SPIIn {
				t.Errorf("the rekey did not complete after the restart")
			}
			if !strings.Contains(na.Logs(), "request in flight resumed") {
				t.Errorf("no request resumed")
			}
		})
	}
}
