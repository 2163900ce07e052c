// Package stats holds iked's counters: exchanges, failures by reason,
// retransmissions, half-open IKE SAs. They are atomics shared by every
// worker, so that counting takes no lock on the per-exchange path.
package stats

import (
	"sort"
	"sync/atomic"
)

// Reason is why an IKE or Child SA failed or a datagram was dropped.
type Reason int

// Reasons. Each has a short name used in logs, counters and spuctl.
const (
	NoProposalChosen  Reason = iota // no common IKE or ESP proposal
	InvalidKE                       // INVALID_KE_PAYLOAD (a retry, not a failure, as initiator)
	AuthFailed                      // the peer's AUTH did not verify (wrong PSK)
	PeerIDMismatch                  // no connection accepts the peer's identity
	NoPSK                           // no pre-shared key for the identities
	TSUnacceptable                  // traffic selectors do not overlap
	PeerError                       // the peer answered with an error notify
	RetransmitTimeout               // no response after every retransmission
	DPDTimeout                      // a liveness check got no response
	HalfOpenTimeout                 // a responder IKE SA never completed IKE_AUTH
	HalfOpenLimit                   // block_threshold: too many half-open IKE SAs from one address
	CookieRequired                  // answered with a COOKIE (a retry, not a failure)
	InvalidCookie                   // a COOKIE that we did not issue
	DecodeError                     // the datagram did not parse
	DecryptError                    // the SK payload did not authenticate
	InvalidSyntax                   // a message broke the exchange's rules
	UnknownSPI                      // a datagram for an IKE SA we do not have
	InvalidMessageID                // a request or response with an unexpected message ID
	DataPlane                       // installing into spud failed
	Unsupported                     // something we do not implement (rekeying, EAP, fragments...)
	InvalidKEData                   // the peer's KE data was malformed
	InternalError                   // our own fault (randomness, encoding)
	// Certificate authentication (pki's reasons, one each).
	CertExpired       // a certificate of the peer's chain is past its notAfter
	CertNotYetValid   // a certificate of the peer's chain is before its notBefore
	CertUnknownCA     // no chain to a trust anchor
	CertRevoked       // a certificate of the chain is in its issuer's CRL
	CertIDMismatch    // the peer's identity is not in its certificate, or not the configured one
	CertKeyUsage      // keyUsage or extendedKeyUsage forbid IKE
	CertCANotAllowed  // the chain passes through none of the connection's cacerts
	CertWeakKey       // an RSA key under 2048 bits
	CertMalformed     // unparsable or oversized CERT, CERTREQ or AUTH data, or no CERT at all
	BadSignature      // the peer's AUTH signature does not verify
	SchemeNotAllowed  // the peer signed with a scheme the connection does not accept
	UnsupportedScheme // an AUTH method or algorithm we do not implement, or none in common to sign with
	NoCredential      // no certificate and key of ours to authenticate with
	// IKE fragmentation (RFC 7383).
	FragmentLimit   // a fragment over the limits (count, bytes): its message's fragments dropped
	FragmentTimeout // an incomplete message's fragments dropped after the reassembly time
	FragmentInvalid // a fragment that does not fit its message (Total smaller than before, reassembly fails)
	FragmentMemory  // a fragment past fragment_memory (the fragments of all IKE SAs): its message's fragments dropped
	// MaxPacket: a datagram larger than max_packet, dropped unread.
	MaxPacket
	// InitLimit: an IKE_SA_INIT dropped because init_limit_half_open IKE
	// SAs are half-open in all.
	InitLimit
	NumReasons
)

var reasonNames = [...]string{
	NoProposalChosen:  "no_proposal_chosen",
	InvalidKE:         "invalid_ke_payload",
	AuthFailed:        "authentication_failed",
	PeerIDMismatch:    "peer_id_mismatch",
	NoPSK:             "no_psk",
	TSUnacceptable:    "ts_unacceptable",
	PeerError:         "peer_error_notify",
	RetransmitTimeout: "retransmit_timeout",
	DPDTimeout:        "dpd_timeout",
	HalfOpenTimeout:   "half_open_timeout",
	HalfOpenLimit:     "half_open_limit",
	CookieRequired:    "cookie_required",
	InvalidCookie:     "invalid_cookie",
	DecodeError:       "decode_error",
	DecryptError:      "decrypt_error",
	InvalidSyntax:     "invalid_syntax",
	UnknownSPI:        "unknown_spi",
	InvalidMessageID:  "invalid_message_id",
	DataPlane:         "data_plane_error",
	Unsupported:       "unsupported",
	InvalidKEData:     "invalid_ke_data",
	InternalError:     "internal_error",
	CertExpired:       "cert_expired",
	CertNotYetValid:   "cert_not_yet_valid",
	CertUnknownCA:     "cert_unknown_ca",
	CertRevoked:       "cert_revoked",
	CertIDMismatch:    "cert_id_mismatch",
	CertKeyUsage:      "cert_key_usage",
	CertCANotAllowed:  "cert_ca_not_allowed",
	CertWeakKey:       "cert_weak_key",
	CertMalformed:     "cert_malformed",
	BadSignature:      "bad_signature",
	SchemeNotAllowed:  "scheme_not_allowed",
	UnsupportedScheme: "unsupported_scheme",
	NoCredential:      "no_credential",
	FragmentLimit:     "fragment_limit",
	FragmentTimeout:   "fragment_timeout",
	FragmentInvalid:   "fragment_invalid",
	FragmentMemory:    "fragment_memory",
	MaxPacket:         "max_packet",
	InitLimit:         "init_limit_half_open",
}

// String returns the reason's short name, the one logs, counter dumps and
// spuctl show, or "unknown" outside the enum.
func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Counter names a counter of events that are not failures (failures count
// by Reason); its String is the name in Snapshot and spuctl.
type Counter int

// Counters of events that are not failures.
const (
	ExchangesInitiated Counter = iota // requests we sent (first transmission)
	ExchangesAnswered                 // requests we answered (not from the cache)
	Retransmissions                   // requests we sent again
	CachedResponses                   // retransmitted requests answered from the cache
	IKESAsEstablished
	IKESAsDeleted
	ChildSAsInstalled
	ChildSAsDeleted
	Handoffs        // datagrams a worker passed to the worker of their anchor
	Keepalives      // NAT keepalives sent
	DPDChecks       // liveness checks sent
	CookiesSent     // COOKIE notifies sent
	InitialContacts // IKE SAs removed on INITIAL_CONTACT
	Acquires        // data-plane acquires that started a negotiation
	LateResponses   // responses to retransmissions of requests already answered
	ChildSAsRekeyed // old Child SAs retired after a rekey (either side's)
	IKESAsRekeyed   // old IKE SAs retired after a rekey (either side's)
	IKESAsReauthed  // IKE SAs replaced by a reauthentication we started
	// ChildRekeyCollisions and IKERekeyCollisions count simultaneous
	// rekeys of one SA by both sides (RFC 7296 2.8.1, 2.8.2), as seen by
	// the side whose exchange completes with both known.
	ChildRekeyCollisions
	IKERekeyCollisions
	TemporaryFailures  // TEMPORARY_FAILURE sent (a rekey or creation crossing another exchange)
	RekeyRetries       // rekeys scheduled again after TEMPORARY_FAILURE or another failure
	ChildSAsExpired    // Child SAs deleted at their hard lifetime (time, bytes, packets)
	IKESAsExpired      // IKE SAs deleted because neither rekey nor reauth succeeded in time
	PeerAddressChanges // the peer's address or port changed behind a NAT (RFC 7296 2.23)
	InboundDrained     // inbound SAs of replaced Child SAs removed after the drain period
	// ChildRekeysInitiated and IKERekeysInitiated count our rekeys whose
	// new SA replaced the old one (not those that lost a collision).
	ChildRekeysInitiated
	IKERekeysInitiated
	// IKE fragmentation (RFC 7383).
	FragmentedMessages // messages we sent as fragments
	FragmentsSent      // fragments we sent (first transmissions)
	FragmentsReceived  // fragments that authenticated
	Reassembled        // messages reassembled from fragments
	// LogsSuppressed counts log lines about unauthenticated datagrams
	// left out by the rate limit (each is still counted by its reason).
	LogsSuppressed
	// PanicsRecovered counts panics a worker recovered from while it
	// handled a datagram or a timer; each ended the IKE SA at hand.
	PanicsRecovered
	// StateWriteErrors counts IKE SA states that could not be written
	// (the older file is set aside and the write retried); StatesLost,
	// IKE SA states a restart could not restore (unreadable, or older than
	// a change that could not be written).
	StateWriteErrors
	StatesLost
	// SendsDropped counts datagrams not sent because the socket's buffer
	// was full (the peer retransmits, or we do).
	SendsDropped
	// InstallsAsync counts Child SAs whose install a worker did not wait
	// for (an IKE_AUTH's, through an asynchronous data plane): it served
	// other IKE SAs until the data plane answered.
	InstallsAsync
	// InstallRetransmits counts retransmitted requests dropped because
	// their exchange waited for its Child SA's install: answered once,
	// when the install is.
	InstallRetransmits
	// ResponsesDeferred counts responses to our exchanges held back
	// because a request of the peer's waited for its Child SA's install:
	// taken once it is (a rekey collision is settled with the peer's new
	// Child SA in).
	ResponsesDeferred
	NumCounters
)

var counterNames = [...]string{
	ExchangesInitiated:   "exchanges_initiated",
	ExchangesAnswered:    "exchanges_answered",
	Retransmissions:      "retransmissions",
	CachedResponses:      "cached_responses",
	IKESAsEstablished:    "ike_sas_established",
	IKESAsDeleted:        "ike_sas_deleted",
	ChildSAsInstalled:    "child_sas_installed",
	ChildSAsDeleted:      "child_sas_deleted",
	Handoffs:             "handoffs",
	Keepalives:           "nat_keepalives",
	DPDChecks:            "dpd_checks",
	CookiesSent:          "cookies_sent",
	InitialContacts:      "initial_contacts",
	Acquires:             "acquires",
	LateResponses:        "late_responses",
	FragmentedMessages:   "fragmented_messages",
	FragmentsSent:        "fragments_sent",
	FragmentsReceived:    "fragments_received",
	Reassembled:          "messages_reassembled",
	ChildSAsRekeyed:      "child_sas_rekeyed",
	IKESAsRekeyed:        "ike_sas_rekeyed",
	IKESAsReauthed:       "ike_sas_reauthenticated",
	ChildRekeyCollisions: "child_rekey_collisions",
	IKERekeyCollisions:   "ike_rekey_collisions",
	TemporaryFailures:    "temporary_failures_sent",
	RekeyRetries:         "rekey_retries",
	ChildSAsExpired:      "child_sas_expired",
	IKESAsExpired:        "ike_sas_expired",
	PeerAddressChanges:   "peer_address_changes",
	InboundDrained:       "inbound_sas_drained",
	ChildRekeysInitiated: "child_rekeys_initiated",
	IKERekeysInitiated:   "ike_rekeys_initiated",
	LogsSuppressed:       "logs_suppressed",
	PanicsRecovered:      "panics_recovered",
	StateWriteErrors:     "state_write_errors",
	StatesLost:           "states_lost",
	SendsDropped:         "sends_dropped",
	InstallsAsync:        "installs_async",
	InstallRetransmits:   "install_retransmits_absorbed",
	ResponsesDeferred:    "responses_deferred_install",
}

// String returns the counter's name in counter dumps and spuctl, or
// "unknown" outside the enum.
func (c Counter) String() string {
	if c >= 0 && int(c) < len(counterNames) {
		return counterNames[c]
	}
	return "unknown"
}

// Counters are the daemon's counters. The zero value is ready; share one
// pointer between workers.
type Counters struct {
	counters [NumCounters]atomic.Uint64
	failures [NumReasons]atomic.Uint64
	// HalfOpen is the number of half-open responder IKE SAs now (across
	// workers): the COOKIE threshold compares with it.
	HalfOpen atomic.Int64
}

// Add adds n to a counter.
func (c *Counters) Add(k Counter, n uint64) { c.counters[k].Add(n) }

// Inc adds one to a counter.
func (c *Counters) Inc(k Counter) { c.counters[k].Add(1) }

// Fail counts a failure.
func (c *Counters) Fail(r Reason) { c.failures[r].Add(1) }

// Get returns a counter's value.
func (c *Counters) Get(k Counter) uint64 { return c.counters[k].Load() }

// Failures returns how often r happened.
func (c *Counters) Failures(r Reason) uint64 { return c.failures[r].Load() }

// Snapshot is the counters as plain values, for the control socket.
type Snapshot struct {
	Counters map[string]uint64 `json:"counters"`
	Failures map[string]uint64 `json:"failures"`
	HalfOpen int64             `json:"half_open"`
}

// Snapshot reads every counter (non-zero ones only).
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{Counters: map[string]uint64{}, Failures: map[string]uint64{}, HalfOpen: c.HalfOpen.Load()}
	for i := range c.counters {
		if v := c.counters[i].Load(); v > 0 {
			s.Counters[Counter(i).String()] = v
		}
	}
	for i := range c.failures {
		if v := c.failures[i].Load(); v > 0 {
			s.Failures[Reason(i).String()] = v
		}
	}
	return s
}

// Names returns the keys of m sorted, for stable output.
func Names(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
