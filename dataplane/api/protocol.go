// Package api is the SA API between iked (and spuctl) and spud: the
// operations, their request and reply types, the events and the schema of
// SAs, policies, interfaces and counters. It travels over internal/unixrpc
// (a root-only unix socket carrying length-prefixed JSON messages, with
// coded errors); Client is that RPC's client with a typed method per
// operation.
//
// Operations and their bodies: see the Op* constants and the request and
// reply types next to them. Keys travel in the clear over this socket
// (sa.add), which is why only root may open it; they never travel back:
// spud keeps no key material outside the SAs' cipher state, so dumps carry
// none, and sa.dump with keys:true is refused (CodeBadRequest).
//
// Dumps are paged, so that a table of any size goes through frames of
// bounded size: sa.dump and policy.dump answer up to DumpRequest.Limit
// entries (at most MaxPage; a request without a limit gets MaxPage) after
// the cursor DumpRequest.After, in install order, and the reply's More
// says whether to ask again with After set to its Next. An entry installed
// during the whole dump is on exactly one page; one added or deleted
// between pages may or may not be. A client that sends no limit and looks
// at no More (one older than paging) sees the whole table when it has at
// most MaxPage entries, and its first MaxPage entries otherwise. A cursor
// is good for the spud that gave it (install numbers start again when spud
// restarts, and so does every dump, the connection being lost).
// Client.DumpSAs and DumpPolicies fetch every page; SAPages and
// PolicyPages give the pages one at a time, asking for the next page while
// the caller takes the one given. sa.dump pages travel in the packed
// encoding for clients that ask for it, as Client does: as the reply's
// data (EncodingPackedData, bytes after the frame's JSON object), or as
// base64 in SADump.Packed (EncodingPacked); a JSON SA costs the client
// tens of microseconds to decode, which a million SAs do not afford. A
// spud without the first refuses it and Client asks for the second, one
// without either refuses the field and Client asks in JSON.
//
// sa.stats answers the counters of the SAs it names (at most MaxQuery per
// request) at a cost of the SAs named, not of the table: what iked polls
// for liveness checks and asks about a list-sas page's Child SAs. Client
// names them packed (SAStatsRequest.Packed) and gets the answers packed,
// as the reply's data, unless spud is older than it.
//
// Errors spud returns carry a unixrpc code: a request that does not decode
// or validate is unixrpc.ErrBadRequest, an SA or policy that is not there
// unixrpc.ErrNotFound, one that is there already unixrpc.ErrExists, no free
// SPI unixrpc.ErrExhausted, an SPU that cannot take the command
// unixrpc.ErrUnavailable.
package api

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spugate/spugate/internal/unixrpc"
)

// Version is the version of the SA API that spud reports in its hello:
// the RPC's, since the schema has not changed apart from it.
const Version = unixrpc.Version

// Operations, with their request and reply bodies.
const (
	OpHello      = "hello"       // HelloRequest -> HelloReply
	OpSPIAlloc   = "spi.alloc"   // SPIAllocRequest -> SPIAllocReply
	OpSAAdd      = "sa.add"      // SA -> nothing
	OpSAUpdate   = "sa.update"   // SAUpdate -> nothing
	OpSADel      = "sa.del"      // SAID -> nothing
	OpSADump     = "sa.dump"     // DumpRequest -> SADump, one page
	OpSAStats    = "sa.stats"    // SAStatsRequest -> SAStatsReply
	OpPolicyAdd  = "policy.add"  // Policy -> PolicyAddReply
	OpPolicyDel  = "policy.del"  // PolicyID -> nothing
	OpPolicyDump = "policy.dump" // DumpRequest -> PolicyDump, one page
	OpChildAdd   = "child.add"   // ChildAdd -> ChildAddReply: a Child SA's SAs and policy, all or nothing
	OpChildDel   = "child.del"   // ChildDel -> nothing: a Child SA's policies and SAs
	OpStats      = "stats"       // nothing -> Stats
	OpSPUList    = "spu.list"    // nothing -> SPUList
	OpSPUMapSet  = "spu.map.set" // SPUMap -> nothing
	OpSPUDrain   = "spu.drain"   // SPURequest -> SPUList
	OpSPUAdd     = "spu.add"     // SPURequest -> SPUList
	OpSPUFail    = "spu.fail"    // SPURequest -> nothing: fault injection, the SPU panics (tests)
)

// Event kinds, sent to connections that subscribed (Client.Subscribe,
// unixrpc.OpSubscribe); a subscriber too slow for them gets
// unixrpc.EventLost.
const (
	EventSoftLifetime = "lifetime.soft" // SAEvent: soft byte/packet limit reached; rekey
	EventHardLifetime = "lifetime.hard" // SAEvent: hard limit reached; the SA no longer passes traffic
	EventSeqNear      = "seq.near"      // SAEvent: sequence numbers nearly exhausted; rekey now
	EventAcquire      = "acquire"       // Acquire: cleartext matched a policy with no SA
	EventSPUFailed    = "spu.failed"    // SPUEvent: an SPU was declared failed and its logical SPUs moved
	EventSPUMap       = "spu.map"       // SPUList: the logical -> physical map changed (iked follows it)
)

// HelloRequest opens a session.
type HelloRequest struct {
	Client string `json:"client"` // e.g. "iked 0.1", for spud's log
}

// HelloReply describes the data plane: what iked needs to anchor IKE SAs on
// the same SPUs as their Child SAs.
type HelloReply struct {
	Version    int         `json:"version"`    // the API version spud speaks: Version
	Server     string      `json:"server"`     // spud's build, e.g. "spud 0.1"
	Logical    int         `json:"logical"`    // L, the number of logical SPUs
	SPUs       []int       `json:"spus"`       // physical SPU ids in service
	AnchorKey  []byte      `json:"anchor_key"` // SipHash key of the anchor function
	Map        []int       `json:"map"`        // logical -> physical SPU
	MapGen     uint64      `json:"map_gen"`    // bumped on every map change
	Interfaces []Interface `json:"interfaces"` // the data-plane interfaces
	Steering   Steering    `json:"steering"`   // what the kernel gave the steering program
}

// Steering says what spud got from the kernel for its steering program.
type Steering struct {
	Kernel string `json:"kernel"` // uname -r
	// Carrier is how the steering metadata reaches the SPUs: meta (the
	// XDP metadata area), shim (a shim in front of the frame) or none
	// (each SPU classifies frames again).
	Carrier string `json:"carrier"`
	// CarrierReason says why better carriers were passed over; empty when
	// the carrier is the best one or was asked for.
	CarrierReason string `json:"carrier_reason,omitempty"`
	// Features are the kernel's BPF features spud probed: "yes", "no" or
	// "error: ..." by name (xdp_adjust_meta, xskmap...).
	Features map[string]string `json:"features"`
}

// Interface is a data-plane interface and what spud got on it.
type Interface struct {
	Name      string `json:"name"`      // the interface's name
	Ifindex   int    `json:"ifindex"`   // its index in spud's network namespace
	Protected bool   `json:"protected"` // cleartext side
	Queues    int    `json:"queues"`    // rx queues, one AF_XDP socket each
	XDPMode   string `json:"xdp_mode"`  // native or generic
	XSKMode   string `json:"xsk_mode"`  // copy or zerocopy
	Carrier   string `json:"carrier"`   // as Steering.Carrier
	// NeedWakeup: the AF_XDP sockets are bound with XDP_USE_NEED_WAKEUP
	// (the kernel is kicked only when it asks).
	NeedWakeup bool `json:"need_wakeup"`
	// TxBudget is the frames one copy-mode transmit call sends: 32, or the
	// ring size where the kernel has XDP_MAX_TX_SKB_BUDGET (6.17+).
	TxBudget int `json:"tx_budget"`
	// ThreadedNAPI is on, off, or n/a where the device has no switch.
	ThreadedNAPI string `json:"threaded_napi"`
	// DriverXDP lists the XDP features the driver announces (netdev
	// netlink, Linux 6.3+: basic, redirect, xsk-zerocopy, rx-sg...), or is
	// "unknown".
	DriverXDP string `json:"driver_xdp"`
}

// SPIAllocRequest asks for an unused inbound SPI anchored on Logical, or
// when it is nil on the hash of Local and Remote.
type SPIAllocRequest struct {
	Local  netip.Addr `json:"local"`  // this gateway's tunnel endpoint
	Remote netip.Addr `json:"remote"` // the peer's tunnel endpoint
	// Logical is the logical SPU to anchor on (the SPI's top bits encode
	// it): the IKE SA's. nil = the hash of Local and Remote as before.
	Logical *int `json:"logical,omitempty"`
	// Count asks for a block of that many SPIs (1..MaxSPIBlock), all
	// anchored alike, in SPIAllocReply.SPIs: a client that hands them out
	// itself (iked, per logical SPU) saves a round trip to spud per
	// Child SA. 0 is one SPI, as before blocks. A spud older than blocks
	// refuses the field (CodeBadRequest: unknown field "count"), which
	// Client.AllocSPIs answers as ErrNoSPIBlocks.
	Count int `json:"count,omitempty"`
}

// MaxSPIBlock bounds SPIAllocRequest.Count: reservations are spud's
// memory, and a block outlives its use by SPIBlockUse at most.
const MaxSPIBlock = 256

// SPIBlockUse is how long after it was granted a client may hand out an
// SPI of a block: spud holds a block's SPIs that much longer than it holds
// one SPI alone (two minutes, an IKE exchange's worth), so that every SPI
// handed out in time has an exchange's worth of reservation left. An SPI
// a client holds longer may have been given to another.
const SPIBlockUse = time.Minute

// Validate checks the request against the data plane's l logical SPUs.
func (r *SPIAllocRequest) Validate(l int) error {
	if !r.Local.IsValid() || !r.Remote.IsValid() {
		return fmt.Errorf("spi.alloc needs both tunnel endpoints")
	}
	if r.Count < 0 || r.Count > MaxSPIBlock {
		return fmt.Errorf("spi.alloc %s-%s: count %d out of range (0..%d)", r.Local, r.Remote, r.Count, MaxSPIBlock)
	}
	return checkLogical(func() string { return fmt.Sprintf("spi.alloc %s-%s", r.Local, r.Remote) }, r.Logical, l)
}

// SPIAllocReply is the SPI, reserved until an SA takes it or the
// reservation lapses (two minutes, an IKE exchange's worth; a block's,
// SPIBlockUse more).
type SPIAllocReply struct {
	SPI     uint32 `json:"spi"`     // the reserved SPI (a block's first); its top bits name Logical
	Logical int    `json:"logical"` // the tunnel's logical SPU
	SPU     int    `json:"spu"`     // the physical SPU it maps to now
	// SPIs is the block a request with Count asked for, SPI first, every
	// one distinct and reserved; empty without Count.
	SPIs []uint32 `json:"spis,omitempty"`
}

// SAID names an installed SA.
type SAID struct {
	SPI uint32 `json:"spi"` // the SA's SPI
	Dir Dir    `json:"dir"` // in or out
	// Remote disambiguates outbound SPIs, which the peer chose.
	Remote netip.Addr `json:"remote,omitempty"`
}

// SAUpdate changes what may change on a live SA: the peer's address and
// port after its NAT mapping changed.
type SAUpdate struct {
	SAID
	// Remote is the peer's new address; zero keeps the old one.
	Remote netip.Addr `json:"new_remote,omitempty"`
	// Encap carries the peer's new port (RemotePort); nil keeps the old.
	Encap *Encap `json:"encap,omitempty"`
	// Lifetime is refused: spud cannot change a live SA's lifetimes
	// (install a new SA instead). An update that has it fails after the
	// peer's address and port, if given, have been changed.
	Lifetime *Lifetime `json:"lifetime,omitempty"`
}

// MaxPage bounds the entries of one page of a dump: 4096 SAs of a few
// hundred bytes of JSON each (a megabyte or two) stay well inside a
// frame, and spud also cuts a page short, with More set, where its
// entries (many selectors, long names) would make it larger than half a
// frame.
const MaxPage = 4096

// MaxQuery bounds the SAs one sa.stats request may name.
const MaxQuery = 4096

// DumpRequest asks for one page of the SAs or policies.
type DumpRequest struct {
	Keys bool `json:"keys,omitempty"` // key material: always refused (spud keeps none to give)
	// After is the cursor: the previous page's Next, 0 for the first page.
	After uint64 `json:"after,omitempty"`
	// Limit is the most entries the page may hold; 0 or more than MaxPage
	// is MaxPage (MaxPackedPage for a packed page).
	Limit int `json:"limit,omitempty"`
	// Encoding asks sa.dump for its page in an encoding other than JSON:
	// EncodingPacked, in SADump.Packed. A spud older than it refuses the
	// field (CodeBadRequest: unknown field "encoding"), and the client
	// asks again in JSON; policy.dump refuses any.
	Encoding string `json:"encoding,omitempty"`
}

// SAState is an installed SA with its live state.
type SAState struct {
	// SA is the SA without keys; its Logical is the logical SPU it is
	// anchored on, whether or not it was installed with one.
	SA
	SPU    int     `json:"spu"`    // the physical SPU it runs on
	Active bool    `json:"active"` // outbound: the one its policies use now
	Stats  SAStats `json:"stats"`  // its counters
}

// SAStats are an SA's counters.
type SAStats struct {
	Packets uint64            `json:"packets"`         // packets passed
	Bytes   uint64            `json:"bytes"`           // bytes passed
	Seq     uint64            `json:"seq"`             // last sent (out) or highest received (in)
	Drops   map[string]uint64 `json:"drops,omitempty"` // packets dropped, by reason
}

// SADump is the reply to sa.dump: one page of the installed SAs.
type SADump struct {
	SAs []SAState `json:"sas"` // the page's SAs, in install order
	// Packed holds the page's SAs instead of SAs when the request asked
	// for EncodingPacked: DecodePackedSAs reads them.
	Packed []byte `json:"packed,omitempty"`
	// Next is the cursor of the page after this one (DumpRequest.After).
	Next uint64 `json:"next,omitempty"`
	// More says there are SAs after this page. A page may be short, or
	// even empty, with More set (SAs deleted since it was asked for, or a
	// page cut at half a frame): only More ends a dump.
	More bool `json:"more,omitempty"`
	// Missing counts SAs of the page that spud holds but could not read,
	// and MissingReason says why: those of an SPU declared failed that is
	// still stuck (its tables are not safe to read until it comes back or
	// they move to another SPU). They are on no page. A failed SPU whose
	// loop has ended has its SAs listed.
	Missing       int    `json:"missing,omitempty"`
	MissingReason string `json:"missing_reason,omitempty"`
}

// SAStatsRequest names the SAs whose counters sa.stats answers: inbound
// SAs by SPI, outbound ones by SPI and remote (the peer chose their SPI).
// More than MaxQuery SAs, or an outbound one without its remote, is a bad
// request.
type SAStatsRequest struct {
	SAs []SAID `json:"sas"` // the SAs asked about
	// Packed names them instead of SAs, in the packed encoding
	// (AppendPackedSAID), and asks for the reply's answers in it, as its
	// data (DecodePackedStats). A spud older than it refuses the field
	// (CodeBadRequest: unknown field "packed"), and Client asks again in
	// JSON.
	Packed []byte `json:"packed,omitempty"`
}

// SAStatsReply answers sa.stats: one entry per SA asked, in the order asked.
type SAStatsReply struct {
	SAs []SAStatsEntry `json:"sas"` // SAs[i] answers SAStatsRequest.SAs[i]
}

// SAStatsEntry is one SA's counters, or that it is not installed.
type SAStatsEntry struct {
	SAID
	// Found is false for an SA that is not installed (never was, or
	// deleted): its Stats are then zero.
	Found bool    `json:"found"`
	Stats SAStats `json:"stats"` // its counters
}

// PolicyAddReply gives the policy's id.
type PolicyAddReply struct {
	ID      uint32 `json:"id"`      // the policy's id (chosen by spud when the request had 0)
	Logical int    `json:"logical"` // its logical SPU
	SPU     int    `json:"spu"`     // the physical SPU it runs on
}

// ChildAdd installs a Child SA in one request, applied by spud as one
// command on the anchor SPU: its inbound SA, its outbound SA unless Out
// is nil (a rekey's responder holds it back), and its policy unless
// Policy is nil (a sibling's or a trap's policy carries its reqid). It is
// all or nothing: when any part is refused, spud removes what it added of
// the others and the error names the part ("spud: child.add:
// outbound sa 0x0000c0de to 198.18.0.2: exists"). What one part would be refused for by sa.add or
// policy.add it is refused for here, with the same code.
type ChildAdd struct {
	// Logical is the logical SPU the whole Child SA is anchored on, its
	// IKE SA's: the inbound SPI must encode it, and the parts' own
	// Logical fields, if given, must be it.
	Logical int     `json:"logical"`
	In      SA      `json:"in"`               // the inbound SA
	Out     *SA     `json:"out,omitempty"`    // the outbound SA, if installed now
	Policy  *Policy `json:"policy,omitempty"` // its protect policy, if it needs one
}

// Validate checks the request against the data plane's l logical SPUs:
// each part as sa.add and policy.add would, and that the parts are one
// Child SA's (directions, reqid, anchor).
func (r *ChildAdd) Validate(l int) error {
	if err := checkLogical(func() string { return fmt.Sprintf("child sa 0x%08x", r.In.SPI) }, &r.Logical, l); err != nil {
		return err
	}
	if r.In.Dir != In {
		return fmt.Errorf("inbound sa 0x%08x: direction %q, want in", r.In.SPI, r.In.Dir)
	}
	if err := r.In.Validate(); err != nil {
		return fmt.Errorf("inbound %w", err)
	}
	if r.In.Logical != nil && *r.In.Logical != r.Logical {
		return fmt.Errorf("inbound sa 0x%08x: logical SPU %d, the Child SA's is %d", r.In.SPI, *r.In.Logical, r.Logical)
	}
	if o := r.Out; o != nil {
		if o.Dir != Out {
			return fmt.Errorf("outbound sa 0x%08x: direction %q, want out", o.SPI, o.Dir)
		}
		if err := o.Validate(); err != nil {
			return fmt.Errorf("outbound %w", err)
		}
		if o.Logical != nil && *o.Logical != r.Logical {
			return fmt.Errorf("outbound sa 0x%08x: logical SPU %d, the Child SA's is %d", o.SPI, *o.Logical, r.Logical)
		}
		if o.ReqID != r.In.ReqID {
			return fmt.Errorf("outbound sa 0x%08x: reqid %d, the inbound sa's is %d", o.SPI, o.ReqID, r.In.ReqID)
		}
	}
	if p := r.Policy; p != nil {
		if err := p.Validate(); err != nil {
			return err
		}
		if p.Action != Protect || p.ReqID != r.In.ReqID {
			return fmt.Errorf("policy %d: a Child SA's policy protects through its reqid %d (have %s, reqid %d)", p.ID, r.In.ReqID, p.Action, p.ReqID)
		}
		if p.Logical != nil && *p.Logical != r.Logical {
			return fmt.Errorf("policy %d: logical SPU %d, the Child SA's is %d", p.ID, *p.Logical, r.Logical)
		}
	}
	return nil
}

// ChildAddReply is where the Child SA went and its policy's id (0 when
// the request had no policy).
type ChildAddReply struct {
	PolicyID uint32 `json:"policy_id,omitempty"` // the policy's id (chosen by spud when the request's was 0)
	Logical  int    `json:"logical"`             // the Child SA's logical SPU
	SPU      int    `json:"spu"`                 // the physical SPU it runs on
}

// ChildDel removes what a Child SA has in the data plane in one request:
// its policies, then its outbound SA, then its inbound SA, each optional.
// Every part named is removed that is there; the error, if any, names the
// parts that were not (unixrpc.ErrNotFound when that is all it says).
type ChildDel struct {
	Policies []uint32 `json:"policies,omitempty"` // policy ids
	Out      *SAID    `json:"out,omitempty"`      // the outbound SA, with its remote
	In       *SAID    `json:"in,omitempty"`       // the inbound SA
}

// Validate checks the SAs' directions and that something is named.
func (r *ChildDel) Validate() error {
	if r.Out == nil && r.In == nil && len(r.Policies) == 0 {
		return fmt.Errorf("names nothing to remove")
	}
	if r.In != nil && r.In.Dir != In {
		return fmt.Errorf("inbound sa 0x%08x: direction %q, want in", r.In.SPI, r.In.Dir)
	}
	if r.Out != nil && (r.Out.Dir != Out || !r.Out.Remote.IsValid()) {
		return fmt.Errorf("outbound sa 0x%08x: want direction out and its remote (have %q, %v)", r.Out.SPI, r.Out.Dir, r.Out.Remote)
	}
	return nil
}

// PolicyID names a policy.
type PolicyID struct {
	ID uint32 `json:"id"` // the policy's id
}

// PolicyState is an installed policy with its counters.
type PolicyState struct {
	// Policy is the policy; its Logical is the logical SPU it is anchored
	// on, whether or not it was installed with one.
	Policy
	SPU      int    `json:"spu"`               // the physical SPU it runs on
	Packets  uint64 `json:"packets"`           // packets it matched
	Acquires uint64 `json:"acquires"`          // acquire events it raised
	OutSPI   uint32 `json:"out_spi,omitempty"` // the outbound SA in use, 0 if none
}

// PolicyDump is the reply to policy.dump: one page of the installed
// policies, as SADump.
type PolicyDump struct {
	Policies []PolicyState `json:"policies"` // the page's policies, in install order
	// Next is the cursor of the page after this one (DumpRequest.After).
	Next uint64 `json:"next,omitempty"`
	// More says there are policies after this page; as SADump.More.
	More bool `json:"more,omitempty"`
	// Missing and MissingReason are as SADump's, for policies.
	Missing       int    `json:"missing,omitempty"`
	MissingReason string `json:"missing_reason,omitempty"`
}

// Stats are the data plane's counters.
type Stats struct {
	SPUs  []SPUStats        `json:"spus"`  // per SPU
	Drops map[string]uint64 `json:"drops"` // by reason, summed over SPUs
	XDP   map[string]uint64 `json:"xdp"`   // steering verdicts, summed over CPUs
	// Links are the kernel's drop counters of the data-plane interfaces
	// ("wan0 tx_dropped", ...): what the NIC or veth dropped before or
	// after spud (a full ring of the peer, for one).
	Links map[string]uint64 `json:"links,omitempty"`
	// Refused counts requests refused for a full table, by table
	// ("policy_table_full": policy adds past spud's -max-policies).
	Refused map[string]uint64 `json:"refused,omitempty"`
	Sockets []SocketStats     `json:"sockets"` // per AF_XDP socket
	// Carrier is Steering.Carrier, so that a counter reader knows which of
	// the steering costs it is looking at.
	Carrier string `json:"carrier"`
}

// SPUStats are one SPU's counters.
type SPUStats struct {
	ID          int    `json:"id"`           // the physical SPU
	CPU         int    `json:"cpu"`          // the core it is pinned to
	RxPackets   uint64 `json:"rx_packets"`   // frames received from its sockets
	TxPackets   uint64 `json:"tx_packets"`   // frames sent
	Encap       uint64 `json:"encap"`        // packets encapsulated
	Decap       uint64 `json:"decap"`        // packets decapsulated
	HandoffOut  uint64 `json:"handoff_out"`  // frames passed to their anchor SPU
	HandoffIn   uint64 `json:"handoff_in"`   // frames received from other SPUs
	HandoffFull uint64 `json:"handoff_full"` // dropped: the anchor's ring was full
	// FragHandoff counts ESP packets reassembled here (their fragments
	// are anchored by the outer addresses) and passed on to the anchor
	// of their SPI; HandoffOut counts them too.
	FragHandoff uint64            `json:"frag_handoff,omitempty"`
	Bypass      uint64            `json:"bypass"`          // cleartext forwarded in the clear: a bypass policy, or none matched
	Drops       map[string]uint64 `json:"drops,omitempty"` // by reason; sa_REASON: the SAs' own (ESP) drops, of SAs gone too
	SAs         int               `json:"sas"`             // SAs it holds
	Policies    int               `json:"policies"`        // policies it holds
	Busy        float64           `json:"busy"`            // share of time spent on packets, recent
	// WarmSAs are the SAs holding their cipher state now; the others
	// make it again at their next packet. Warmed counts the times an SA
	// made it, Cooled the times one idle for spud's -cipher-idle dropped
	// it.
	WarmSAs int    `json:"warm_sas"`
	Warmed  uint64 `json:"warmed"`
	Cooled  uint64 `json:"cooled"`
}

// SocketStats are one AF_XDP socket's counters.
type SocketStats struct {
	Interface string `json:"interface"`  // the socket's interface
	Queue     int    `json:"queue"`      // its rx queue
	SPU       int    `json:"spu"`        // the SPU that polls it
	Rx        uint64 `json:"rx"`         // frames received
	Tx        uint64 `json:"tx"`         // frames sent
	RxDropped uint64 `json:"rx_dropped"` // frames the kernel dropped for the socket, its rx ring full among them
	FillEmpty uint64 `json:"fill_empty"` // times the fill ring was empty
	TxFull    uint64 `json:"tx_full"`    // times the tx ring was full
}

// SPUList is the reply to spu.list, drain and add.
type SPUList struct {
	Logical int       `json:"logical"` // L, the number of logical SPUs
	Map     []int     `json:"map"`     // logical -> physical SPU
	MapGen  uint64    `json:"map_gen"` // bumped on every map change
	SPUs    []SPUInfo `json:"spus"`    // every physical SPU
}

// SPUInfo describes a physical SPU.
type SPUInfo struct {
	ID       int     `json:"id"`       // the physical SPU
	CPU      int     `json:"cpu"`      // the core it is pinned to
	State    string  `json:"state"`    // active, drained, failed
	Logical  []int   `json:"logical"`  // the logical SPUs mapped to it
	Tunnels  int     `json:"tunnels"`  // protect policies it holds
	SAs      int     `json:"sas"`      // SAs it holds
	Policies int     `json:"policies"` // policies it holds
	Busy     float64 `json:"busy"`     // share of time spent on packets, recent
}

// SPUMap sets the logical -> physical map wholesale.
type SPUMap struct {
	Map []int `json:"map"` // logical -> physical SPU, one entry per logical SPU
}

// SPURequest names a physical SPU.
type SPURequest struct {
	ID int `json:"id"` // the physical SPU
}

// SAEvent reports a lifetime or sequence-number event of an SA.
type SAEvent struct {
	SAID
	ReqID   uint32 `json:"reqid"`          // the SA's reqid
	Name    string `json:"name,omitempty"` // the SA's name
	Bytes   uint64 `json:"bytes"`          // bytes passed so far
	Packets uint64 `json:"packets"`        // packets passed so far
}

// Acquire asks the control plane for an SA: cleartext matched a protect
// policy that has no outbound SA.
type Acquire struct {
	PolicyID uint32     `json:"policy_id"` // the policy that matched
	ReqID    uint32     `json:"reqid"`     // its reqid: the Child SA to negotiate
	Src      netip.Addr `json:"src"`       // the cleartext packet's source
	Dst      netip.Addr `json:"dst"`       // its destination
	Proto    uint8      `json:"proto"`     // its IP protocol
}

// SPUEvent reports an SPU failure.
type SPUEvent struct {
	ID     int    `json:"id"`     // the physical SPU that failed
	Reason string `json:"reason"` // why it was declared failed
}
