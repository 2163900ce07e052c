package manager

import (
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/defrag"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/stats"
)

// IKE fragmentation (RFC 7383). Sending: once IKE_SA_INIT agreed on it
// (IKESA.FragSend), a protected message whose IP packet would exceed the
// configured fragment_size goes out as SKF fragments, each at most that
// size; retransmissions and the response cache resend all of them.
// Receiving (IKESA.FragAccept): each fragment is authenticated on its own
// before it takes any memory, then collected by package defrag, one
// message at a time per direction, within its limits; a retransmitted
// request that was already answered gets the cached response again only
// for its fragment 1 (RFC 7383 2.6.1), so that a set of fragments does not
// multiply the response.

// fragBuffers are the reassembly buffers of one IKE SA.
type fragBuffers struct {
	requests, responses *defrag.Buffer
}

// get returns the buffer of one direction, made with the settings' limits
// when first needed.
func (f *fragBuffers) get(response bool, s Settings) *defrag.Buffer {
	p := &f.requests
	if response {
		p = &f.responses
	}
	if *p == nil {
		l := defrag.DefaultLimits
		if s.MaxPacket > 0 {
			l.MaxBytes = s.MaxPacket
		}
		l.Budget = s.Fragments
		*p = defrag.New(l)
	}
	return *p
}

// reset drops what both buffers hold, giving their bytes back to the
// shared budget.
func (f *fragBuffers) reset() {
	for _, b := range []*defrag.Buffer{f.requests, f.responses} {
		if b != nil {
			b.Reset()
		}
	}
}

// DropFragments drops the fragments the IKE SA holds, as it leaves this
// manager (destroyed, or detached to move to another worker), so that
// their bytes do not stay counted in the shared budget.
func (m *Manager) DropFragments() { m.rare().frags.reset() }

func (f *fragBuffers) deadline() time.Time {
	var d time.Time
	for _, b := range []*defrag.Buffer{f.requests, f.responses} {
		if b == nil {
			continue
		}
		if t := b.Deadline(); !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

// Reassembling reports the fragment bytes held for the peer's request and
// for the response to ours.
func (m *Manager) Reassembling() (requests, responses int) {
	f := &m.rare().frags
	if b := f.requests; b != nil {
		_, _, _, requests, _ = b.Pending()
	}
	if b := f.responses; b != nil {
		_, _, _, responses, _ = b.Pending()
	}
	return requests, responses
}

// expireFragments drops incomplete messages whose time is up.
func (m *Manager) expireFragments(now time.Time) {
	f := &m.rare().frags
	for _, b := range []*defrag.Buffer{f.requests, f.responses} {
		if b == nil {
			continue
		}
		if id, have, total, _, ok := b.Pending(); ok && b.Expire(now) {
			m.env.Stats().Fail(stats.FragmentTimeout)
			m.Logger().Info("incomplete fragmented message dropped", "msgid", id, "fragments", have, "of", total,
				"reason", stats.FragmentTimeout.String())
		}
	}
}

// openFragment authenticates an SKF payload and adds it to its message;
// it reports true with msg.Inner set when the message is complete.
func (m *Manager) openFragment(msg *message.Message) bool {
	ike := m.IKE
	h := msg.Header
	if !ike.FragAccept {
		m.env.Stats().Fail(stats.Unsupported)
		m.Logger().Debug("dropped: IKE fragment (we did not announce fragmentation)", "exchange", h.Exchange.String())
		return false
	}
	_, in, err := ike.Ciphers()
	if err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		return false
	}
	f, err := msg.DecryptFragment(in)
	if err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		m.Logger().Debug("dropped: SKF payload", "err", err.Error())
		return false
	}
	m.env.Stats().Inc(stats.FragmentsReceived)
	now := m.env.Now()
	m.expireFragments(now)
	buf := m.rareW().frags.get(h.IsResponse(), m.env.Settings())
	frags, res := buf.Add(now, h.MessageID, f)
	switch res {
	case defrag.Complete:
	case defrag.OverBudget:
		m.env.Stats().Fail(stats.FragmentMemory)
		l := buf.Limits()
		m.Logger().Info("fragmented message dropped: the fragments of all IKE SAs are at fragment_memory", "exchange", h.Exchange.String(),
			"msgid", h.MessageID, "fragment", f.Number, "total", f.Total, "fragment_memory", l.Budget.Max(),
			"reason", stats.FragmentMemory.String())
		return false
	case defrag.OverLimit:
		m.env.Stats().Fail(stats.FragmentLimit)
		l := buf.Limits()
		m.Logger().Info("fragmented message dropped: over the limits", "exchange", h.Exchange.String(), "msgid", h.MessageID,
			"fragment", f.Number, "total", f.Total, "max_fragments", l.MaxFragments, "max_bytes", l.MaxBytes,
			"reason", stats.FragmentLimit.String())
		return false
	case defrag.Stale:
		m.env.Stats().Fail(stats.FragmentInvalid)
		m.Logger().Debug("dropped: fragment of an earlier fragmentation", "msgid", h.MessageID, "fragment", f.Number, "total", f.Total)
		return false
	default:
		return false
	}
	inner, err := message.Reassemble(frags)
	if err != nil {
		m.env.Stats().Fail(stats.FragmentInvalid)
		m.Logger().Info("fragmented message dropped: reassembly failed", "exchange", h.Exchange.String(), "msgid", h.MessageID,
			"err", err.Error(), "reason", stats.FragmentInvalid.String())
		return false
	}
	m.env.Stats().Inc(stats.Reassembled)
	m.Logger().Debug("message reassembled", "exchange", h.Exchange.String(), "msgid", h.MessageID, "fragments", len(frags))
	msg.Inner = inner
	return true
}

// retransmittedFragment says whether a retransmission of the request
// answered last is to be answered again: always when unfragmented, only
// for an authentic fragment 1 when fragmented.
func (m *Manager) retransmittedFragment(msg *message.Message) bool {
	e := msg.Encrypted
	if e == nil || !e.Fragment {
		return true
	}
	if e.FragmentNumber != 1 {
		return false
	}
	_, in, err := m.IKE.Ciphers()
	if err != nil {
		return false
	}
	if _, err := msg.DecryptFragment(in); err != nil {
		m.env.Stats().Fail(stats.DecryptError)
		return false
	}
	return true
}

// encode encodes a message to send from local to remote: one datagram, or
// its fragments when it is protected, fragmentation was agreed and the IP
// packet would exceed the fragment size.
func (m *Manager) encode(msg *message.Message, local, remote netip.AddrPort) ([][]byte, error) {
	ike := m.IKE
	if msg.Header.Exchange == message.IKESAInit {
		b, err := msg.Encode(nil)
		if err != nil {
			return nil, err
		}
		return [][]byte{b}, nil
	}
	out, _, err := ike.Ciphers()
	if err != nil {
		return nil, err
	}
	b, err := msg.Encode(out)
	if err != nil {
		return nil, err
	}
	if !ike.FragSend {
		return [][]byte{b}, nil
	}
	size, overhead := m.fragmentSize(), packetOverhead(local, remote, m.env.Settings().NATTPort)
	if len(b)+overhead <= size {
		return [][]byte{b}, nil
	}
	frags, err := msg.EncodeFragments(out, size-overhead)
	if err != nil {
		return nil, err
	}
	m.env.Stats().Inc(stats.FragmentedMessages)
	m.env.Stats().Add(stats.FragmentsSent, uint64(len(frags)))
	return frags, nil
}

// fragmentSize is the configured largest IP packet of a fragment. It is
// read from the configuration in force, so that a reload applies to the
// next message.
func (m *Manager) fragmentSize() int {
	if cfg := m.env.Config(); cfg != nil && cfg.FragmentSize > 0 {
		return cfg.FragmentSize
	}
	return config.DefaultFragmentSize
}

// packetOverhead is what the IP and UDP headers (and the non-ESP marker on
// the NAT-T port) add to an IKE message.
func packetOverhead(local, remote netip.AddrPort, natt uint16) int {
	n := 20 + 8
	if remote.Addr().Unmap().Is6() {
		n = 40 + 8
	}
	if local.Port() == natt {
		n += 4
	}
	return n
}

func fragCount(pkts [][]byte) int {
	if len(pkts) == 1 {
		return 0
	}
	return len(pkts)
}
