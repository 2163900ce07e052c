package worker_test

import (
	"encoding/binary"
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"math"
	"net/netip"
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
)

func TestEstablishEveryIDType(t *testing.T) {
	for _, c := range []struct{ name, a, b string }{
		{"ipv4", "198.18.0.1", "198.18.0.2"},
		{"ipv6", "2001:db8::a", "2001:db8::b"},
		{"fqdn", "gw-a.example", "@gw-b.example"},
		{"rfc822", "vpn@a.example", "vpn@b.example"},
		{"keyid", "@#0102030405", "@#a0b0c0"},
		{"mixed", "198.18.0.1", "@#ff00"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, na, nb := pair(t, func(o *confOpts) { o.localID, o.remoteID = c.a, c.b },
				func(o *confOpts) { o.localID, o.remoteID = c.b, c.a })
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			established(t, na, nb)
			ib := nb.Worker.List()[0]
			if ib.RemoteID.String() != strings.TrimPrefix(c.a, "@") && ib.RemoteID.String() != c.a {
				t.Errorf("responder saw identity %q, want %q", ib.RemoteID, c.a)
			}
		})
	}
}

func TestEstablishEverySuite(t *testing.T) {
	for _, c := range []struct{ ike, esp string }{
		{"aes128gcm16-prfsha256-x25519", "aes128gcm16"},
		{"aes256gcm16-prfsha384-ecp384", "aes256gcm16"},
		{"aes256-sha256-modp2048", "aes256-sha256"},
		{"chacha20poly1305-prfsha256-x25519", "chacha20poly1305"},
		{"aes128-sha256-ecp256", "aes128-sha256-esn"},
	} {
		t.Run(c.ike, func(t *testing.T) {
			mod := func(o *confOpts) { o.ike, o.esp = c.ike, c.esp }
			s, na, nb := pair(t, mod, mod)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			established(t, na, nb)
		})
	}
}

func TestInvalidKERetry(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.ike = "aes128gcm16-prfsha256-x25519-ecp256" },
		func(o *confOpts) { o.ike = "aes128gcm16-prfsha256-ecp256" })
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := na.Worker.List()[0].Proposal.String(); !strings.Contains(got, "ECP_256") {
		t.Errorf("proposal %s, want ECP_256 after the retry", got)
	}
	inits := 0
	for _, x := range s.Sent {
		if x.Exchange == message.IKESAInit && !x.Response && x.From.Addr() == addrA {
			inits++
		}
	}
	if inits != 2 {
		t.Errorf("%d IKE_SA_INIT requests, want 2 (one retry)", inits)
	}
	if na.Counters.Failures(stats.InvalidKE) != 1 || nb.Counters.Failures(stats.InvalidKE) != 1 {
		t.Errorf("INVALID_KE_PAYLOAD counted %d / %d", na.Counters.Failures(stats.InvalidKE), nb.Counters.Failures(stats.InvalidKE))
	}
	if nb.Worker.Len() != 1 {
		t.Errorf("responder kept %d IKE SAs", nb.Worker.Len())
	}
}

func TestCookie(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.cookieThreshold = 3 })
	// Pretend the responder is under load: more half-open IKE SAs than the
	// threshold.
	nb.Counters.HalfOpen.Add(5)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := nb.Counters.Get(stats.CookiesSent); got != 1 {
		t.Errorf("%d cookies sent, want 1", got)
	}
	if got := nb.Counters.HalfOpen.Load(); got != 5 {
		t.Errorf("half-open count %d after establishment, want back to 5", got)
	}
}

func TestCookieForgedIsRefused(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.cookieThreshold = 3 })
	nb.Counters.HalfOpen.Add(5)
	// Corrupt the cookie the initiator echoes.
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if from == na {
			m, err := message.Decode(d.Data)
			if err == nil && m.Header.Exchange == message.IKESAInit {
				if n := message.FindNotify(m.Payloads, message.Cookie); n != nil {
					n.Data[len(n.Data)-1] ^= 1
				}
				b, _ := m.Encode(nil)
				copy(d.Data, b)
			}
		}
		return iketest.Fate{}
	}
	if err := na.Worker.Initiate("tun", "", nil); err != nil {
		t.Fatal(err)
	}
	s.RunFor(time.Second)
	if nb.Worker.Len() != 0 {
		t.Fatalf("responder kept state for a forged cookie")
	}
	if nb.Counters.Failures(stats.InvalidCookie) == 0 {
		t.Errorf("forged cookie not counted")
	}
}

func TestHalfOpenPerPeerLimit(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.peer = 2 })
	// IKE_AUTH never reaches the responder: its IKE SAs stay half-open.
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		m, err := message.DecodeHeader(d.Data)
		return iketest.Fate{Drop: err == nil && m.Exchange == message.IKEAuth}
	}
	for i := range 3 {
		if err := na.Worker.Initiate("tun", "", nil); err != nil {
			t.Fatal(i, err)
		}
		// A second initiation of the same connection joins the first IKE SA:
		// start fresh ones by forgetting the earlier initiators.
		s.RunFor(100 * time.Millisecond)
		for _, m := range na.Worker.Managers() {
			m.Destroy("test")
		}
	}
	if got := nb.Worker.Len(); got != 2 {
		t.Errorf("responder holds %d half-open IKE SAs, limit 2", got)
	}
	if nb.Counters.Failures(stats.HalfOpenLimit) != 1 {
		t.Errorf("limit hits %d, want 1", nb.Counters.Failures(stats.HalfOpenLimit))
	}
	if !strings.Contains(nb.Logs(), "reason=half_open_limit") {
		t.Errorf("limit not logged")
	}
	// The half-open IKE SAs time out.
	s.RunFor(31 * time.Second)
	if nb.Worker.Len() != 0 || nb.Counters.HalfOpen.Load() != 0 {
		t.Errorf("after the half-open timeout: %d IKE SAs, %d half-open", nb.Worker.Len(), nb.Counters.HalfOpen.Load())
	}
	if nb.Counters.Failures(stats.HalfOpenTimeout) != 2 {
		t.Errorf("half-open timeouts %d, want 2", nb.Counters.Failures(stats.HalfOpenTimeout))
	}
}

func TestRetransmissionBackoff(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate { return iketest.Fate{Drop: true} }
	var result error
	if err := na.Worker.Initiate("tun", "", func(err error) { result = err }); err != nil {
		t.Fatal(err)
	}
	s.RunFor(10 * time.Minute)
	var at []time.Duration
	for _, x := range s.Sent {
		if x.From.Addr() == addrA && x.Exchange == message.IKESAInit {
			at = append(at, x.At.Sub(iketest.Epoch))
		}
	}
	// strongSwan's defaults: 4 s, base 1.8, 5 retransmissions; give up
	// 4*1.8^5 s after the last one.
	want := []time.Duration{0}
	sum := 0.0
	for i := range 5 {
		sum += 4 * math.Pow(1.8, float64(i))
		want = append(want, time.Duration(sum*float64(time.Second)))
	}
	if len(at) != len(want) {
		t.Fatalf("sent at %v, want %v", at, want)
	}
	for i := range at {
		if d := at[i] - want[i]; d > time.Millisecond || d < -time.Millisecond {
			t.Errorf("transmission %d at %v, want %v", i, at[i], want[i])
		}
	}
	if result == nil || !strings.Contains(result.Error(), "no response") {
		t.Errorf("initiation result %v", result)
	}
	if na.Worker.Len() != 0 {
		t.Errorf("IKE SA not destroyed")
	}
	if na.Counters.Get(stats.Retransmissions) != 5 || na.Counters.Failures(stats.RetransmitTimeout) != 1 {
		t.Errorf("retransmissions %d, timeouts %d", na.Counters.Get(stats.Retransmissions), na.Counters.Failures(stats.RetransmitTimeout))
	}
	// Given up 4*(1.8^6-1)/0.8 = 165.06 s after the start.
	if !strings.Contains(na.Logs(), "after 5 retransmissions (2m45.061s)") {
		t.Errorf("log does not say when it gave up:\n%s", na.Logs())
	}
	noSAs(t, na, nb)
}

func TestRetransmittedRequestAnsweredFromCache(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	dropped := 0
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		h, err := message.DecodeHeader(d.Data)
		if err == nil && from == nb && h.Exchange == message.IKEAuth && h.IsResponse() && dropped == 0 {
			dropped++
			return iketest.Fate{Drop: true}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s, na, time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if got := nb.Counters.Get(stats.CachedResponses); got != 1 {
		t.Errorf("%d cached responses sent, want 1", got)
	}
	if got := nb.Counters.Get(stats.ChildSAsInstalled); got != 1 {
		t.Errorf("responder installed %d Child SAs, want 1 (the retransmission must not be processed)", got)
	}
	// Also for IKE_SA_INIT.
	s2, na2, nb2 := pair(t, nil, nil)
	dup := 0
	s2.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		h, err := message.DecodeHeader(d.Data)
		if err == nil && from == na2 && h.Exchange == message.IKESAInit && dup == 0 {
			dup++
			return iketest.Fate{Duplicate: true}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s2, na2, time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na2, nb2)
	if got := nb2.Counters.Get(stats.CachedResponses); got != 1 {
		t.Errorf("duplicated IKE_SA_INIT: %d cached responses, want 1", got)
	}
}

// TestGravesExpire: the last responses of IKE SAs the peer deleted are
// kept graveTime (3 minutes) and let go, oldest first, as later IKE SAs
// are deleted, without a pass over all of them each time.
func TestGravesExpire(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.extra = "    unique: never\n" }, func(o *confOpts) { o.extra = "    unique: never\n" })
	del := func(n int) {
		t.Helper()
		if p := runLoad(t, s, na, worker.LoadSpec{Conn: "tun", Count: n, Window: n}, time.Minute); p.Established != n {
			t.Fatalf("load: %+v", p)
		}
		done := false
		if c := na.Worker.Terminate(worker.Target{Conn: "tun"}, func(error) { done = true }); c != n {
			t.Fatalf("terminating %d IKE SAs, want %d", c, n)
		}
		if !s.RunUntil(time.Minute, func() bool { return done && nb.Worker.Len() == 0 }) {
			t.Fatal("IKE SAs not deleted")
		}
	}
	del(5)
	if g, b := nb.Worker.Graves(); g != 5 || b != 5 {
		t.Fatalf("after 5 deletions: %d graves, %d in order, want 5", g, b)
	}
	s.RunFor(2 * time.Minute)
	del(3)
	if g, b := nb.Worker.Graves(); g != 8 || b != 8 {
		t.Fatalf("after 8 deletions within 3 minutes: %d graves, %d in order, want 8", g, b)
	}
	s.RunFor(90 * time.Second)
	del(1)
	if g, b := nb.Worker.Graves(); g != 4 || b != 4 {
		t.Fatalf("the first 5 expired: %d graves, %d in order, want 4", g, b)
	}
	s.RunFor(4 * time.Minute)
	del(1)
	if g, b := nb.Worker.Graves(); g != 1 || b != 1 {
		t.Fatalf("all but the last expired: %d graves, %d in order, want 1", g, b)
	}
}

// lossy drops, duplicates, delays and reorders deterministically.
func lossy(s *iketest.Sim) {
	n := 0
	s.Reorder = true
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		n++
		switch n % 5 {
		case 0:
			return iketest.Fate{Drop: true}
		case 1:
			return iketest.Fate{Duplicate: true}
		case 2:
			return iketest.Fate{Delay: 300 * time.Millisecond}
		}
		return iketest.Fate{}
	}
}

func TestLossyNetwork(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) {
		o.childExtra = "      second:\n        local_ts: 198.18.20.0/24\n        remote_ts: 198.18.10.0/24\n"
	})
	// a asks for both children; b has both.
	na.Cfg.Connections["tun"].Children["net"].ESPProposals = []string{"aes128gcm16"}
	lossy(s)
	if err := initiate(t, s, na, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	if err := terminateIKE(t, s, nb, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	s.RunFor(5 * time.Minute)
	if na.Worker.Len() != 0 || nb.Worker.Len() != 0 {
		t.Errorf("IKE SAs left: %d / %d", na.Worker.Len(), nb.Worker.Len())
	}
	noSAs(t, na, nb)
}

func terminateIKE(t *testing.T, s *iketest.Sim, n *iketest.Node, d time.Duration) error {
	t.Helper()
	called := false
	var result error
	if c := n.Worker.Terminate(worker.Target{Conn: "tun"}, func(err error) { result, called = err, true }); c == 0 {
		t.Fatal("nothing to terminate")
	}
	if !s.RunUntil(d, func() bool { return called }) {
		t.Fatalf("termination did not finish within %v", d)
	}
	return result
}

func twoChildren(o *confOpts) {
	l, r := "198.18.1.128/25", "198.18.2.128/25"
	if o.local == addrB {
		l, r = r, l
	}
	o.childExtra = fmt.Sprintf("      second:\n        local_ts: %s\n        remote_ts: %s\n        esp_proposals: aes256gcm16-x25519\n", l, r)
}

func TestCreateChildSA(t *testing.T) {
	s, na, nb := pair(t, twoChildren, twoChildren)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	la, lb := na.Worker.List(), nb.Worker.List()
	if len(la) != 1 || len(la[0].Children) != 2 || len(lb[0].Children) != 2 {
		t.Fatalf("want one IKE SA with two Child SAs on each side")
	}
	second := la[0].Children[1]
	if second.Name != "second" || second.Alg.String() != "ESP:AES_GCM_16_256/CURVE_25519/NO_EXT_SEQ" {
		t.Errorf("second child %s %s", second.Name, second.Alg)
	}
	if got := ipsec.Selectors(second.LocalTS); got != "198.18.1.128/25" {
		t.Errorf("second child local ts %s", got)
	}
	var creates int
	for _, x := range s.Sent {
		if x.Exchange == message.CreateChildSA {
			creates++
		}
	}
	if creates != 2 {
		t.Errorf("%d CREATE_CHILD_SA messages, want request and response", creates)
	}
	if sas, pols := nb.DP.Counts(); sas != 4 || pols != 2 {
		t.Errorf("responder data plane: %d SAs, %d policies", sas, pols)
	}
	// Initiating it again finds it there.
	if err := initiate(t, s, na, time.Second); err != nil {
		t.Fatal(err)
	}
	if la := na.Worker.List(); len(la) != 1 || len(la[0].Children) != 2 {
		t.Errorf("second initiation created more SAs")
	}
	// The responder can create a Child SA over the same IKE SA too.
	if err := nb.Worker.Terminate(worker.Target{Conn: "tun", Child: "second"}, nil); err != 1 {
		t.Fatalf("terminate child: %d", err)
	}
	s.RunFor(time.Second)
	if err := initiate(t, s, nb, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if lb := nb.Worker.List(); len(lb) != 1 || len(lb[0].Children) != 2 {
		t.Errorf("responder's CREATE_CHILD_SA: %d IKE SAs", len(lb))
	}
}

func TestDeleteFromEitherSide(t *testing.T) {
	for _, c := range []struct {
		name  string
		child bool
		byB   bool
	}{{"child-by-initiator", true, false}, {"child-by-responder", true, true}, {"ike-by-initiator", false, false}, {"ike-by-responder", false, true}} {
		t.Run(c.name, func(t *testing.T) {
			s, na, nb := pair(t, twoChildren, twoChildren)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			n := na
			if c.byB {
				n = nb
			}
			sel := worker.Target{Conn: "tun"}
			if c.child {
				sel.Child = "net"
			}
			done := false
			if got := n.Worker.Terminate(sel, func(error) { done = true }); got != 1 {
				t.Fatalf("terminate matched %d", got)
			}
			s.RunUntil(10*time.Second, func() bool { return done })
			s.RunFor(time.Second)
			if c.child {
				for _, x := range []*iketest.Node{na, nb} {
					l := x.Worker.List()
					if len(l) != 1 || len(l[0].Children) != 1 || l[0].Children[0].Name != "second" {
						t.Errorf("%s: Child SAs after delete: %+v", x.Name, l)
					}
					if sas, pols := x.DP.Counts(); sas != 2 || pols != 1 {
						t.Errorf("%s: %d SAs, %d policies left, want 2 and 1", x.Name, sas, pols)
					}
				}
				return
			}
			if na.Worker.Len()+nb.Worker.Len() != 0 {
				t.Errorf("IKE SAs left: %d / %d", na.Worker.Len(), nb.Worker.Len())
			}
			noSAs(t, na, nb)
			if !strings.Contains(na.Logs()+nb.Logs(), "IKE SA deleted") {
				t.Errorf("deletion not logged")
			}
		})
	}
}

func TestDPD(t *testing.T) {
	for _, action := range []string{"clear", "trap", "restart"} {
		t.Run(action, func(t *testing.T) {
			s, na, nb := pair(t, func(o *confOpts) {
				o.extra = "    dpd_delay: 10s\n"
				o.retransmit = "retransmit_timeout: 1s\nretransmit_tries: 2\n"
				o.childExtra = "        dpd_action: " + action + "\n"
			}, nil)
			if err := initiate(t, s, na, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			start := s.Clock.Now()
			// A liveness check answered keeps everything up.
			s.RunFor(25 * time.Second)
			if na.Worker.Len() != 1 || na.Counters.Get(stats.DPDChecks) < 2 {
				t.Fatalf("after 25 s: %d IKE SAs, %d DPD checks", na.Worker.Len(), na.Counters.Get(stats.DPDChecks))
			}
			// The peer vanishes.
			gone := true
			s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate { return iketest.Fate{Drop: gone} }
			s.RunUntil(time.Minute, func() bool { return na.Counters.Failures(stats.DPDTimeout) > 0 })
			if na.Counters.Failures(stats.DPDTimeout) != 1 {
				t.Fatalf("no DPD timeout")
			}
			// 1 s + 1.8 s + 3.24 s after a check at most 10 s after the last message.
			if took := s.Clock.Now().Sub(start); took > 25*time.Second+10*time.Second+6100*time.Millisecond {
				t.Errorf("DPD timeout after %v", took)
			}
			if !strings.Contains(na.Logs(), "reason=dpd_timeout") {
				t.Errorf("DPD timeout not logged with its reason")
			}
			switch action {
			case "clear":
				noSAs(t, na)
				if _, pols := na.DP.Counts(); pols != 0 {
					t.Errorf("clear left policies")
				}
			case "trap":
				noSAs(t, na)
				if _, ok := na.Traps["tun/net"]; !ok {
					t.Errorf("no trap installed")
				}
			case "restart":
				s.RunFor(time.Second)
				if na.Worker.Len() != 1 {
					t.Fatalf("not restarted: %d IKE SAs", na.Worker.Len())
				}
				gone = false
				// The old IKE SA on b goes too when the new one sends
				// INITIAL_CONTACT.
				s.RunUntil(2*time.Minute, func() bool {
					l := na.Worker.List()
					return len(l) == 1 && len(l[0].Children) == 1
				})
				s.RunFor(time.Second)
				established(t, na, nb)
			}
		})
	}
}

func TestTSNarrowing(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.localTS, o.remoteTS = "198.18.1.0/24", "198.18.2.0/24,198.18.9.0/24" },
		func(o *confOpts) { o.localTS, o.remoteTS = "198.18.2.0/25", "198.18.1.64/26" })
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	established(t, na, nb)
	ca := na.Worker.List()[0].Children[0]
	cb := nb.Worker.List()[0].Children[0]
	if got := ipsec.Selectors(ca.LocalTS) + " === " + ipsec.Selectors(ca.RemoteTS); got != "198.18.1.64/26 === 198.18.2.0/25" {
		t.Errorf("initiator installed %s", got)
	}
	if got := ipsec.Selectors(cb.LocalTS) + " === " + ipsec.Selectors(cb.RemoteTS); got != "198.18.2.0/25 === 198.18.1.64/26" {
		t.Errorf("responder installed %s", got)
	}
	for _, p := range na.DP.Policies {
		if got := fmt.Sprint(p.LocalTS) + fmt.Sprint(p.RemoteTS); !strings.Contains(got, "198.18.1.64/26") {
			t.Errorf("initiator's policy %s", got)
		}
	}
}

// failure checks a failed negotiation: the reason counted and logged on
// both sides, no SA left.
func failure(t *testing.T, s *iketest.Sim, na, nb *iketest.Node, rA, rB stats.Reason, logA, logB string) {
	t.Helper()
	err := initiate(t, s, na, time.Minute)
	if err == nil {
		t.Fatal("negotiation succeeded")
	}
	s.RunFor(time.Minute)
	for _, x := range []struct {
		n   *iketest.Node
		r   stats.Reason
		log string
	}{{na, rA, logA}, {nb, rB, logB}} {
		if x.n.Counters.Failures(x.r) == 0 {
			t.Errorf("%s: %s not counted: %+v", x.n.Name, x.r, x.n.Counters.Snapshot())
		}
		if !strings.Contains(x.n.Logs(), "reason="+x.r.String()) || !strings.Contains(x.n.Logs(), x.log) {
			t.Errorf("%s: log lacks reason=%s and %q", x.n.Name, x.r, x.log)
		}
		if x.n.Worker.Len() != 0 {
			t.Errorf("%s: %d IKE SAs left", x.n.Name, x.n.Worker.Len())
		}
	}
	noSAs(t, na, nb)
}

func TestFailures(t *testing.T) {
	t.Run("ike-proposal", func(t *testing.T) {
		s, na, nb := pair(t, func(o *confOpts) { o.ike = "aes256gcm16-prfsha384-ecp384" }, func(o *confOpts) { o.ike = "aes128-sha256-modp2048" })
		failure(t, s, na, nb, stats.NoProposalChosen, stats.NoProposalChosen, "NO_PROPOSAL_CHOSEN", "no IKE proposal chosen")
	})
	t.Run("esp-proposal", func(t *testing.T) {
		s, na, nb := pair(t, func(o *confOpts) { o.esp = "aes256gcm16" }, func(o *confOpts) { o.esp = "chacha20poly1305" })
		failure(t, s, na, nb, stats.NoProposalChosen, stats.NoProposalChosen, "NO_PROPOSAL_CHOSEN", "no ESP proposal chosen")
	})
	t.Run("wrong-psk", func(t *testing.T) {
		s, na, nb := pair(t, func(o *confOpts) { o.psk = "not the same" }, nil)
		failure(t, s, na, nb, stats.AuthFailed, stats.AuthFailed, "AUTHENTICATION_FAILED", "PSK mismatch")
	})
	t.Run("unknown-initiator-id", func(t *testing.T) {
		s, na, nb := pair(t, func(o *confOpts) { o.localID = "intruder.example" }, nil)
		failure(t, s, na, nb, stats.AuthFailed, stats.PeerIDMismatch, "AUTHENTICATION_FAILED", "no connection for peer identity intruder.example")
	})
	t.Run("unexpected-responder-id", func(t *testing.T) {
		s, na, nb := pair(t, func(o *confOpts) { o.remoteID = "*.example"; o.secretsIDs = `["gw-a.example", "gw-b.example"]` },
			func(o *confOpts) { o.localID = "gw-b.other"; o.secretsIDs = `["gw-a.example", "gw-b.other"]` })
		failure(t, s, na, nb, stats.PeerIDMismatch, stats.AuthFailed, "does not match the configured", "peer reports AUTHENTICATION_FAILED")
	})
	t.Run("ts-unacceptable", func(t *testing.T) {
		s, na, nb := pair(t, nil, func(o *confOpts) { o.remoteTS = "198.18.7.0/24" })
		failure(t, s, na, nb, stats.TSUnacceptable, stats.TSUnacceptable, "TS_UNACCEPTABLE", "no child of")
	})
}

func TestDataPlaneOrder(t *testing.T) {
	s, na, _ := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ops := strings.Join(na.DP.Ops, ",")
	if !strings.Contains(ops, "add in ") || strings.Index(ops, "add in ") > strings.Index(ops, "add out ") ||
		strings.Index(ops, "add out ") > strings.Index(ops, "policy ") {
		t.Errorf("data plane calls %s: want alloc, inbound, outbound, policy", ops)
	}
}

func TestTrapReqID(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	trap := na.InstallTrap("tun", "net")
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	c := na.Worker.List()[0].Children[0]
	if c.ReqID != trap.ReqID || !c.Trap || len(c.PolicyIDs) != 0 {
		t.Errorf("child reqid %d trap %v policies %v, want the trap's reqid %d and no policy of its own", c.ReqID, c.Trap, c.PolicyIDs, trap.ReqID)
	}
	if _, pols := na.DP.Counts(); pols != 1 {
		t.Errorf("%d policies, want only the trap", pols)
	}
	if err := terminateIKE(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	noSAs(t, na, nb)
	if _, ok := na.DP.Policies[trap.PolicyID]; !ok {
		t.Errorf("the trap policy went with the Child SA")
	}
}

func TestNATDetection(t *testing.T) {
	// b sits behind a NAT that maps 198.18.3.1 to 198.18.0.254.
	natIn := netip.MustParseAddr("198.18.3.1")
	natOut := netip.MustParseAddr("198.18.0.254")
	s := iketest.NewSim(t)
	oa := confOpts{local: natIn, remote: addrB, localID: "gw-a.example", remoteID: "gw-b.example"}
	ob := confOpts{local: addrB, remote: netip.MustParseAddr("0.0.0.0"), localID: "gw-b.example", remoteID: "gw-a.example",
		localTS: "198.18.2.0/24", remoteTS: "198.18.1.0/24"}
	ya := strings.Replace(oa.yaml(), "dpd_delay", "dpd_delay", 1)
	yb := strings.Replace(ob.yaml(), "remote_addrs: 0.0.0.0", "remote_addrs: \"%any\"", 1)
	na := s.AddNode("gw-a", natIn, iketest.WriteConfig(t, ya, oa.secrets()))
	nb := s.AddNode("gw-b", addrB, iketest.WriteConfig(t, yb, ob.secrets()))
	mapping := map[uint16]uint16{}
	next := uint16(40000)
	// The fake network NATs a's packets; b answers to the outside address.
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate { return iketest.Fate{} }
	s.NAT = func(d manager.Datagram) manager.Datagram {
		switch {
		case d.Local.Addr() == natIn:
			p, ok := mapping[d.Local.Port()]
			if !ok {
				next++
				p = next
				mapping[d.Local.Port()] = p
			}
			d.Local = netip.AddrPortFrom(natOut, p)
		case d.Remote.Addr() == natOut:
			for in, out := range mapping {
				if out == d.Remote.Port() {
					d.Remote = netip.AddrPortFrom(natIn, in)
				}
			}
		}
		return d
	}
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ia, ib := na.Worker.List()[0], nb.Worker.List()[0]
	if !ia.NATLocal || ia.NATRemote || ib.NATLocal || !ib.NATRemote {
		t.Errorf("NAT flags a %v/%v b %v/%v, want a behind NAT", ia.NATLocal, ia.NATRemote, ib.NATLocal, ib.NATRemote)
	}
	if ia.Local.Port() != 4500 || ia.Remote.Port() != 4500 || ib.Local.Port() != 4500 || ib.Remote.Port() != mapping[4500] {
		t.Errorf("ports after the float: a %s -> %s, b %s -> %s", ia.Local, ia.Remote, ib.Local, ib.Remote)
	}
	in, _ := nb.DP.Find(ib.Children[0].SPIIn, "in")
	out, _ := nb.DP.Find(ib.Children[0].SPIOut, "out")
	if in.Encap == nil || out.Encap == nil || out.Encap.RemotePort != mapping[4500] || out.Remote != natOut {
		t.Errorf("responder's SAs not UDP-encapsulated towards the NAT: %+v %+v", in.Encap, out.Encap)
	}
	// The side behind the NAT keeps the mapping alive.
	s.RunFor(45 * time.Second)
	if got := na.Counters.Get(stats.Keepalives); got < 2 {
		t.Errorf("%d keepalives in 45 s", got)
	}
	if got := nb.Counters.Get(stats.Keepalives); got != 0 {
		t.Errorf("the side not behind the NAT sent %d keepalives", got)
	}
}

func TestForcedEncap(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.extra = "    encap: yes\n" }, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ib := nb.Worker.List()[0]
	if !ib.NATRemote || ib.Local.Port() != 4500 {
		t.Errorf("responder did not see the faked NAT: %+v", ib)
	}
	out, _ := nb.DP.Find(ib.Children[0].SPIOut, "out")
	if out.Encap == nil || out.Encap.LocalPort != 4500 || out.Encap.RemotePort != 4500 {
		t.Errorf("encap %+v", out.Encap)
	}
}

// TestPeerChildRekey: a CREATE_CHILD_SA with REKEY_SA (as charon sends
// when it rekeys) makes a Child SA of the same child with the old one's
// reqid and policy; the peer's DELETE of the old one then leaves the new
// one carrying the policy. A REKEY_SA for an unknown SPI gets
// CHILD_SA_NOT_FOUND.
func TestPeerChildRekey(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ike := na.Worker.Managers()[0].IKE
	old := ike.Children[0]
	var resp []*message.Message
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if from == nb {
			if m, err := message.Decode(d.Data); err == nil && m.Header.IsResponse() && m.Decrypt(opener(ike)) == nil {
				resp = append(resp, m)
			}
			return iketest.Fate{Drop: true} // a's manager does not expect these
		}
		return iketest.Fate{}
	}
	send := func(inner ...message.Payload) *message.Message {
		t.Helper()
		m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: message.CreateChildSA,
			Flags: message.FlagInitiator, MessageID: ike.MsgIDOut}, Inner: inner}
		ike.MsgIDOut++
		b, err := m.Encode(sealer(ike))
		if err != nil {
			t.Fatal(err)
		}
		resp = nil
		nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: b})
		s.RunFor(time.Millisecond)
		if len(resp) != 1 {
			t.Fatalf("%d responses", len(resp))
		}
		return resp[0]
	}
	props, _ := suite.ParseESP("aes128gcm16")
	newSPI := []byte{0xaa, 0xbb, 0xcc, 0xdd}
	rekey := func(spi uint32) *message.Message {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], spi)
		return send(&message.Notify{Protocol: suite.ProtocolESP, SPI: b[:], NotifyType: message.RekeySA},
			&message.SA{Proposals: suite.WithSPI(props, newSPI)}, &message.Nonce{Data: make([]byte, 32)},
			&message.TS{Selectors: old.LocalTS}, &message.TS{Responder: true, Selectors: old.RemoteTS})
	}
	if r := rekey(0x01020304); message.FindNotify(r.Inner, message.ChildSANotFound) == nil {
		t.Errorf("rekey of an unknown SPI: %v", r.Inner)
	}
	r := rekey(old.SPIIn)
	if message.Find(r.Inner, message.PayloadSA) == nil {
		t.Fatalf("rekey refused: %v\n%s", r.Inner, nb.Logs())
	}
	l := nb.Worker.List()[0]
	if len(l.Children) != 2 || l.Children[0].ReqID != l.Children[1].ReqID || len(l.Children[0].PolicyIDs) != 0 || len(l.Children[1].PolicyIDs) != 1 {
		t.Fatalf("after the rekey: %+v %+v", l.Children[0], l.Children[1])
	}
	// The responder keeps sending through the old Child SA until the
	// initiator deletes it (the initiator installs its new inbound SA only
	// on the response).
	if _, ok := nb.DP.Find(0xaabbccdd, "out"); ok || !l.Children[1].OutPending {
		t.Errorf("the responder installed its new outbound SA before the old one was deleted")
	}
	// The peer deletes the old Child SA.
	var spi [4]byte
	binary.BigEndian.PutUint32(spi[:], old.SPIIn)
	m := &message.Message{Header: message.Header{SPIi: ike.SPIi, SPIr: ike.SPIr, Exchange: message.Informational,
		Flags: message.FlagInitiator, MessageID: ike.MsgIDOut}, Inner: []message.Payload{&message.Delete{Protocol: suite.ProtocolESP, SPIs: []uint32{old.SPIIn}}}}
	ike.MsgIDOut++
	b, _ := m.Encode(sealer(ike))
	nb.Worker.Receive(manager.Datagram{Local: netip.AddrPortFrom(addrB, 500), Remote: netip.AddrPortFrom(addrA, 500), Data: b})
	l = nb.Worker.List()[0]
	if len(l.Children) != 1 || l.Children[0].SPIOut != 0xaabbccdd || len(l.Children[0].PolicyIDs) != 1 {
		t.Errorf("after deleting the old one: %+v", l.Children)
	}
	// The old inbound SA stays for the drain period (packets the peer sent
	// before it switched), then goes.
	if sas, pols := nb.DP.Counts(); sas != 3 || pols != 1 {
		t.Errorf("responder's data plane: %d SAs, %d policies, want the new pair and the draining old inbound SA", sas, pols)
	}
	if _, ok := nb.DP.Find(old.SPIOut, "in"); !ok {
		t.Errorf("the old inbound SA was not kept for the drain period")
	}
	s.RunFor(6 * time.Second)
	if _, ok := nb.DP.Find(old.SPIOut, "in"); ok {
		t.Errorf("the old inbound SA is still there after the drain period")
	}
	if _, ok := nb.DP.Find(0xaabbccdd, "out"); !ok {
		t.Errorf("the new outbound SA is not installed after the old one's deletion")
	}
	// A rekey whose initiator never deletes the old Child SA: the new
	// outbound SA goes in once traffic arrives through the new Child SA
	// (proof that the initiator has it), or, without traffic, once the
	// initiator could no longer be retransmitting its request.
	cur := nb.Worker.List()[0].Children[0]
	old = &sa.ChildSA{SPIIn: cur.SPIOut, LocalTS: old.LocalTS, RemoteTS: old.RemoteTS}
	newSPI = []byte{0xaa, 0xbb, 0xcc, 0xde}
	rekey(old.SPIIn)
	s.RunFor(30 * time.Second)
	pending := 0
	for _, ch := range nb.Worker.List()[0].Children {
		if ch.OutPending {
			pending++
		}
	}
	if pending != 1 {
		t.Errorf("%d Child SAs hold their outbound SA back, want the new one", pending)
	}
	s.RunFor(140 * time.Second)
	for _, ch := range nb.Worker.List()[0].Children {
		if ch.OutPending {
			t.Errorf("outbound still pending after the retransmission window")
		}
	}
	// Traffic through a new Child SA releases its outbound SA at once.
	cur = nb.Worker.List()[0].Children[1]
	old = &sa.ChildSA{SPIIn: cur.SPIOut, LocalTS: old.LocalTS, RemoteTS: old.RemoteTS}
	newSPI = []byte{0xaa, 0xbb, 0xcc, 0xdf}
	rekey(old.SPIIn)
	l = nb.Worker.List()[0]
	fresh := l.Children[len(l.Children)-1]
	if !fresh.OutPending {
		t.Fatalf("the third rekey's outbound SA is not held back")
	}
	nb.DP.CountIn(fresh.SPIIn, 1)
	s.RunFor(2 * time.Second)
	if _, ok := nb.DP.Find(0xaabbccdf, "out"); !ok {
		t.Errorf("traffic through the new Child SA did not release its outbound SA")
	}
	if sas, _ := nb.DP.Counts(); sas != 6 {
		t.Errorf("%d SAs after the fallbacks, want three Child SAs whole", sas)
	}
}
