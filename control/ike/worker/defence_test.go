package worker_test

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spugate/spugate/control/ike/iketest"
	"github.com/spugate/spugate/control/ike/manager"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/stats"
	"github.com/spugate/spugate/control/ike/worker"
)

// captureInit starts an initiation on n and returns its first IKE_SA_INIT
// request as the responder would receive it, dropped on the wire; the
// initiator's IKE SA is then forgotten.
func captureInit(t *testing.T, s *iketest.Sim, n *iketest.Node) manager.Datagram {
	t.Helper()
	var got *manager.Datagram
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		h, err := message.DecodeHeader(d.Data)
		if got == nil && from == n && err == nil && h.Exchange == message.IKESAInit && !h.IsResponse() {
			got = &manager.Datagram{Local: d.Remote, Remote: d.Local, Data: append([]byte(nil), d.Data...)}
			return iketest.Fate{Drop: true}
		}
		return iketest.Fate{}
	}
	if err := n.Worker.Initiate("tun", "", nil); err != nil {
		t.Fatal(err)
	}
	s.RunFor(10 * time.Millisecond)
	s.Filter = nil
	for _, m := range n.Worker.Managers() {
		m.Destroy("test")
	}
	if got == nil {
		t.Fatal("no IKE_SA_INIT sent")
	}
	return *got
}

// spoof delivers copies of an IKE_SA_INIT request, each with its own
// initiator SPI, as a sender that never sees the answers would.
func spoof(w *worker.Worker, req manager.Datagram, n int, spi0 uint64) {
	for i := range n {
		d := req
		d.Data = append([]byte(nil), req.Data...)
		binary.BigEndian.PutUint64(d.Data[0:8], spi0+uint64(i))
		w.Receive(d)
	}
}

// A spoofer forging a peer's address cannot use up that address's
// half-open IKE SAs: past cookie_threshold_ip it is asked for a COOKIE it
// never sees, so the peer itself, which answers the COOKIE, still gets in.
func TestSpoofedHalfOpenDoesNotLockOutPeer(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	req := captureInit(t, s, na)
	spoof(nb.Worker, req, 20, 0x5000)
	cfg := nb.Cfg
	if got := nb.Worker.Len(); got != cfg.CookieThresholdIP {
		t.Errorf("responder holds %d half-open IKE SAs from the spoofed address, want cookie_threshold_ip %d", got, cfg.CookieThresholdIP)
	}
	if got := nb.Counters.Failures(stats.HalfOpenLimit); got != 0 {
		t.Errorf("%d requests hit block_threshold: the spoofer reached it", got)
	}
	if got := nb.Counters.Get(stats.CookiesSent); got != 20-uint64(cfg.CookieThresholdIP) {
		t.Errorf("%d cookies sent, want %d", got, 20-cfg.CookieThresholdIP)
	}
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatalf("the real peer could not set up: %v", err)
	}
	var up int
	for _, ike := range nb.Worker.List() {
		if ike.State.String() == "ESTABLISHED" {
			up++
		}
	}
	if up != 1 {
		t.Errorf("%d established IKE SAs on the responder, want 1", up)
	}
}

// Requests refused on their contents leave no half-open IKE SA; their
// rate still raises the COOKIE, so that a spoofed flood of them stops
// costing more than a COOKIE each.
func TestRefusedRequestsRaiseCookies(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.ike = "aes256-sha512-modp2048" }, nil)
	req := captureInit(t, s, na)
	threshold := nb.Cfg.CookieThreshold
	// Each from its own address, so that no per-address limit decides.
	for i := range 2 * threshold {
		d := req
		d.Remote = netipAddrPort(t, i)
		spoof(nb.Worker, d, 1, 0x7000+uint64(i))
	}
	if got := nb.Counters.Failures(stats.NoProposalChosen); got != uint64(threshold) {
		t.Errorf("%d requests refused, want the cookie threshold %d", got, threshold)
	}
	if got := nb.Counters.Get(stats.CookiesSent); got != uint64(threshold) {
		t.Errorf("%d cookies sent, want %d", got, threshold)
	}
	if nb.Worker.Len() != 0 {
		t.Errorf("refused requests left %d IKE SAs", nb.Worker.Len())
	}
	// Each refusal names what was offered: a spoofer's lines are bounded.
	if got := strings.Count(nb.Logs(), "IKE_SA_INIT refused"); got != worker.UnauthLogBurst {
		t.Errorf("%d lines for %d refusals, want the burst %d", got, threshold, worker.UnauthLogBurst)
	}
	// Two quiet seconds later, requests are looked at again.
	s.RunFor(2100 * time.Millisecond)
	before := nb.Counters.Get(stats.CookiesSent)
	spoof(nb.Worker, req, 1, 0x9000)
	if nb.Counters.Get(stats.CookiesSent) != before {
		t.Errorf("a COOKIE was still demanded after the refusals stopped")
	}
}

// What an unauthenticated sender makes iked log is bounded: 1,000 requests
// over block_threshold write a handful of lines, and every one of them is
// counted.
func TestUnauthenticatedLogIsBounded(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.peer = 1 })
	req := captureInit(t, s, na)
	// One half-open IKE SA fills the address's block threshold; the cookie
	// threshold of the address (3) is not reached, so the rest are dropped.
	spoof(nb.Worker, req, 1000, 0x1_0000)
	if got := nb.Counters.Failures(stats.HalfOpenLimit); got != 999 {
		t.Fatalf("%d requests over block_threshold, want 999", got)
	}
	lines := strings.Count(nb.Logs(), "half-open limit of the peer reached")
	if lines != worker.UnauthLogBurst {
		t.Errorf("%d log lines for 999 drops, want the burst %d", lines, worker.UnauthLogBurst)
	}
	if got := nb.Counters.Get(stats.LogsSuppressed); got != 999-worker.UnauthLogBurst {
		t.Errorf("logs_suppressed %d, want %d", got, 999-worker.UnauthLogBurst)
	}
	// The next interval says how many were left out, once.
	s.RunFor(worker.UnauthLogInterval)
	spoof(nb.Worker, req, 1, 0x2_0000)
	if !strings.Contains(nb.Logs(), "suppressed=989") {
		t.Errorf("the suppressed count was not logged:\n%s", tail(nb.Logs(), 5))
	}
}

func tail(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}

// netipAddrPort is the i-th address of a spoofed flood, in 198.19.0.0/16.
func netipAddrPort(t *testing.T, i int) netip.AddrPort {
	t.Helper()
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 500)
}

// A bug that panics while an exchange runs costs that IKE SA, counted and
// logged, and nothing else: the worker serves the next request.
func TestPanicInExchangeIsRecovered(t *testing.T) {
	s, na, nb := pair(t, nil, nil)
	nb.DP.PanicAddSA = "a bug in installing"
	if err := na.Worker.Initiate("tun", "", nil); err != nil {
		t.Fatal(err)
	}
	s.RunFor(2 * time.Second)
	if got := nb.Counters.Get(stats.PanicsRecovered); got != 1 {
		t.Errorf("panics_recovered %d, want 1", got)
	}
	if nb.Worker.Len() != 0 {
		t.Errorf("the IKE SA that panicked is still there (%d IKE SAs)", nb.Worker.Len())
	}
	if sas, pols := nb.DP.Counts(); sas != 0 || pols != 0 {
		t.Errorf("left in the data plane: %d SAs, %d policies", sas, pols)
	}
	logs := nb.Logs()
	if !strings.Contains(logs, "recovered from a panic") || !strings.Contains(logs, "datagram_sha256=") || !strings.Contains(logs, "a bug in installing") {
		t.Errorf("the panic was not logged with its datagram's hash:\n%s", tail(logs, 5))
	}
	nb.DP.PanicAddSA = nil
	for _, m := range na.Worker.Managers() {
		m.Destroy("test")
	}
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatalf("the worker did not serve the next request: %v", err)
	}
	established(t, na, nb)
}

// A COOKIE retry that crosses the initiator's own retransmission: the
// responder answers the first copy of an IKE_SA_INIT with a COOKIE, takes
// the second copy as the IKE SA's once COOKIEs are no longer demanded,
// and answers the retry (with the COOKIE) from its cache. The initiator
// then authenticates the retry, the last IKE_SA_INIT it sent, and the
// responder must check its AUTH over that one, not over the copy it took:
// it answered AUTHENTICATION_FAILED (12 to 44 IKE SAs in a load of 5,000
// with window 64 and a 1 s retransmission timeout, issue 16).
func TestCookieRetryCrossingRetransmission(t *testing.T) {
	s, na, nb := pair(t, nil, func(o *confOpts) { o.cookieThreshold = 1 })
	// One half-open IKE SA elsewhere makes the responder demand COOKIEs,
	// until it ends right after the first COOKIE went out.
	nb.Counters.HalfOpen.Add(1)
	first, cookies := true, 0
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		h, ok := header(d)
		if !ok || h.Exchange != message.IKESAInit {
			return iketest.Fate{}
		}
		if from == na && first {
			first = false
			return iketest.Fate{Duplicate: true}
		}
		if from == nb && h.SPIr == 0 {
			if cookies++; cookies == 1 {
				nb.Counters.HalfOpen.Add(-1)
			}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s, na, 10*time.Second); err != nil {
		t.Fatalf("initiation: %v", err)
	}
	if got := nb.Counters.Get(stats.CookiesSent); got != 1 {
		t.Errorf("%d COOKIEs sent, want 1 (the scenario did not happen)", got)
	}
	if got := nb.Counters.Get(stats.CachedResponses); got != 1 {
		t.Errorf("%d IKE_SA_INIT answered from the cache, want the retry's 1", got)
	}
	if got := nb.Counters.Failures(stats.AuthFailed); got != 0 {
		t.Errorf("the responder refused the initiator's AUTH %d times", got)
	}
	established(t, na, nb)
}

// A responder slower than the initiator's retransmissions answers each
// copy of the first IKE_SA_INIT with the same COOKIE. Only the first is a
// demand: the others answer retransmissions of the request the retry
// replaced, and the initiator waits for the retry's answer. It took each
// for a new demand (sending the retry again each time) and gave up after
// five: "giving up after 5 COOKIE/INVALID_KE_PAYLOAD retries", 6 of 1,500
// setups of a load with 100 ms retransmissions (issue 16).
func TestRepeatedCookieIsNotARetry(t *testing.T) {
	s, na, nb := pair(t, func(o *confOpts) { o.retransmit = "retransmit_timeout: 0.1s\n" },
		func(o *confOpts) { o.cookieThreshold = 1 })
	// One half-open IKE SA elsewhere: every IKE_SA_INIT must carry a COOKIE.
	nb.Counters.HalfOpen.Add(1)
	s.Filter = func(d manager.Datagram, from *iketest.Node) iketest.Fate {
		if h, ok := header(d); ok && from == nb && h.Exchange == message.IKESAInit {
			return iketest.Fate{Delay: 3 * time.Second}
		}
		return iketest.Fate{}
	}
	if err := initiate(t, s, na, 20*time.Second); err != nil {
		t.Fatalf("initiation: %v", err)
	}
	if got := nb.Counters.Get(stats.CookiesSent); got < 6 {
		t.Errorf("%d COOKIEs sent, want one for each of the 6 copies of the first request (the scenario did not happen)", got)
	}
	if got := na.Counters.Get(stats.LateResponses); got < 5 {
		t.Errorf("%d late responses, want the 5 repeated COOKIEs at least", got)
	}
	established(t, na, nb)
}
