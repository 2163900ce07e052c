// Package sa holds the state of an IKE SA and of its Child SAs: what the
// tasks of package task read and change, what the task manager drives, and
// what iked persists (the fields with a JSON name, keys included, in the
// binary form of AppendBinary, or as JSON in the states of earlier
// versions, for the 0600 state folder that lets iked restart without
// dropping tunnels).
//
// Nothing here does I/O or takes locks: an IKE SA belongs to one worker
// goroutine.
package sa

import (
	"fmt"
	"github.com/spugate/spugate/ipsec"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/suite"
)

// IKEState is the life cycle of an IKE SA.
//
// It is an int8 so that it packs with the IKE SA's other small fields.
//
//go:generate go tool stringer -type=IKEState -linecomment
type IKEState int8

// IKE SA states.
const (
	// Created: no exchange yet, or IKE_SA_INIT in flight.
	Created IKEState = iota // CREATED
	// Connecting: IKE_SA_INIT done, IKE_AUTH pending.
	Connecting // CONNECTING
	// Established: authenticated.
	Established // ESTABLISHED
	// Deleting: a DELETE for it is in flight.
	Deleting // DELETING
	// Destroyed: gone; only kept by whoever still holds a pointer.
	Destroyed // DESTROYED
	// Rekeyed: replaced by a new IKE SA (its Child SAs moved there); kept
	// only to answer the peer's DELETE, until RekeyedUntil. Appended last:
	// the state file stores states as numbers.
	Rekeyed // REKEYED
)

// ChildState is the life cycle of a Child SA.
//
// It is an int8 so that it packs with the Child SA's other small fields.
//
//go:generate go tool stringer -type=ChildState -linecomment
type ChildState int8

// Child SA states.
const (
	// ChildCreating: negotiating.
	ChildCreating ChildState = iota // CREATING
	// ChildInstalled: both directions in the data plane.
	ChildInstalled // INSTALLED
	// ChildRekeying: we are negotiating its replacement.
	ChildRekeying // REKEYING
	// ChildDeleting: a DELETE for it is in flight.
	ChildDeleting // DELETING
	// ChildDeleted: removed from the data plane.
	ChildDeleted // DELETED
	// ChildRekeyed: a newer Child SA replaces it (or it lost a rekey
	// collision); it waits for its DELETE, from us or from the peer.
	// Appended last: the state file stores states as numbers.
	ChildRekeyed // REKEYED
)

// IKESA is one IKE SA. The exported fields are its persisted state; the
// ciphers are rebuilt from Keys on restore (RestoreCiphers) and whenever
// needed after DropCiphers (Ciphers).
//
// The small fields come first, packed together: a million IKE SAs hold
// one each, and the struct's size decides its size class (576 bytes; 768
// with the padding of fields in their logical order and what only
// IKE_SA_INIT and IKE_AUTH need, now in Handshake).
type IKESA struct {
	// UniqueID names the IKE SA for people and spuctl (like charon's #N).
	UniqueID uint32 `json:"unique_id"`
	// MsgIDOut is the message ID of our next request; MsgIDIn the one we
	// expect of the peer's next request.
	MsgIDOut uint32 `json:"msgid_out"`
	MsgIDIn  uint32 `json:"msgid_in"`
	// Logical is the logical SPU the IKE SA and its Child SAs are anchored
	// on, which the top bits of our SPI carry (dataplane/anchor) when
	// Anchored is set. IKE SAs made before anchors were chosen per IKE SA
	// have Anchored unset: they are anchored by the hash of their endpoints
	// and their SPIs are plain random numbers.
	Logical uint16 `json:"logical,omitempty"`
	// State is where the IKE SA is in its life cycle.
	State IKEState `json:"state"`
	// Initiator is true if we are the original initiator (we send the I
	// flag).
	Initiator bool `json:"initiator"`
	Anchored  bool `json:"anchored,omitempty"`
	// NATLocal: we are behind a NAT (the peer saw another address than
	// ours); NATRemote: the peer is (or fakes being, as charon with
	// kernel-libipsec does). Either means ESP in UDP and IKE on 4500.
	NATLocal  bool `json:"nat_local,omitempty"`
	NATRemote bool `json:"nat_remote,omitempty"`
	// IKE fragmentation (RFC 7383), agreed in IKE_SA_INIT: FragSend, we
	// fragment messages above the fragment size (the peer announced
	// support and our connection says yes or force); FragAccept, we
	// announced support and reassemble the peer's fragments.
	FragSend   bool `json:"frag_send,omitempty"`
	FragAccept bool `json:"frag_accept,omitempty"`

	// ConnName is the connection it was made from ("" for a responder
	// before IKE_AUTH picked one).
	ConnName string `json:"conn"`
	// SPIi and SPIr are the initiator's and the responder's IKE SPIs.
	SPIi uint64 `json:"spi_i,string"`
	SPIr uint64 `json:"spi_r,string"`
	// Local and Remote are the current addresses and ports: port 500 until
	// a NAT made both sides float to 4500.
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`

	// Negotiated in IKE_SA_INIT: the chosen proposal, the keys, and the
	// SK ciphers of our role (Out for what we send), nil while idle: use
	// Ciphers.
	Proposal suite.Proposal  `json:"proposal"`
	Keys     *suite.IKEKeys  `json:"keys,omitempty"`
	Out, In  *suite.SKCipher `json:"-"`
	// HS is what IKE_SA_INIT leaves for IKE_AUTH, nil once the IKE SA is
	// established (and for one made by a rekey or restored): write it
	// through Handshake.
	HS *Handshake `json:"-"`

	// LocalID and RemoteID are the identities IKE_AUTH authenticated.
	LocalID  config.Identity `json:"local_id"`
	RemoteID config.Identity `json:"remote_id"`
	// AuthLocal and AuthRemote name how each side authenticated: "psk" or
	// the signature scheme ("ecdsa-sha256", "rsa/pss-sha256", "rsa-sha1"
	// for RFC 7296's method 1...).
	AuthLocal  string `json:"auth_local,omitempty"`
	AuthRemote string `json:"auth_remote,omitempty"`

	// LastResponse is the response to the peer's request MsgIDIn-1, as
	// sent, to answer a retransmission of it from the cache.
	LastResponse [][]byte `json:"last_response,omitempty"`

	// Children are the IKE SA's Child SAs, in any state.
	Children []*ChildSA `json:"children,omitempty"`

	// Created and Established are when the IKE SA was made and
	// authenticated.
	Created     time.Time `json:"created"`
	Established time.Time `json:"established,omitzero"`
	// RekeyAt is when the IKE SA is due for a rekey (zero: never),
	// ReauthAt when for a reauthentication, ExpireAt when it ends if
	// neither succeeded (rekey or reauth time plus over_time).
	RekeyAt  time.Time `json:"rekey_at,omitzero"`
	ReauthAt time.Time `json:"reauth_at,omitzero"`
	ExpireAt time.Time `json:"expire_at,omitzero"`
	// RekeyedUntil: a Rekeyed IKE SA is destroyed then if the peer has not
	// deleted it.
	RekeyedUntil time.Time `json:"rekeyed_until,omitzero"`

	// Draining are inbound SAs of replaced Child SAs, kept in the data
	// plane for packets the peer sent before it switched (make before
	// break), until their time is up.
	Draining []DrainingSA `json:"draining,omitempty"`

	// InFlight is our request whose response has not arrived: a restored
	// IKE SA sends it again as it was (a new request must not reuse its
	// message ID) and processes the response with the task it rebuilds.
	InFlight *InFlight `json:"in_flight,omitempty"`
}

// Handshake is what an IKE SA needs from IKE_SA_INIT until IKE_AUTH is
// done, apart so that an established IKE SA does not carry its empty
// fields for its life (a million of them: 128 bytes each). Not persisted:
// IKE_AUTH does not survive a restart.
type Handshake struct {
	// Ni and Nr are both nonces; InitI and InitR both IKE_SA_INIT
	// messages as sent (what AUTH signs).
	Ni, Nr       []byte
	InitI, InitR []byte
	// SigAuth: the peer sent SIGNATURE_HASH_ALGORITHMS (RFC 7427), listing
	// PeerHashes. PeerCertReq: the CAs the peer named in its CERTREQs;
	// CertReqSeen: it sent one (send_cert ifasked).
	SigAuth, CertReqSeen bool
	PeerHashes           []uint16
	PeerCertReq          [][20]byte
}

// Handshake returns the IKE SA's handshake state, made when first needed
// (in IKE_SA_INIT). Only IKE_SA_INIT and IKE_AUTH use it: after them it
// would be made again empty, and kept.
func (s *IKESA) Handshake() *Handshake {
	if s.HS == nil {
		s.HS = &Handshake{}
	}
	return s.HS
}

// InFlight is a request of ours in flight and what its task needs to
// process the response: a Child SA creation or rekey, an IKE SA rekey, a
// delete or a liveness check. Key material included, like the rest of
// the state file.
type InFlight struct {
	// MsgID, Exchange and Packets are the request as sent (fragments
	// included), Task which task sent it (task's names) and Reason why.
	MsgID    uint32               `json:"msgid"`
	Exchange message.ExchangeType `json:"exchange"`
	Packets  [][]byte             `json:"packets"`
	Task     string               `json:"task"`
	Reason   string               `json:"reason,omitempty"`
	// Child and ReqID are the child configuration and reqid of a Child SA
	// creation or rekey.
	Child  string `json:"child,omitempty"`
	ReqID  uint32 `json:"reqid,omitempty"`
	OldSPI uint32 `json:"old_spi,omitempty"` // the Child SA a rekey replaces (our inbound SPI)
	SPI    uint32 `json:"spi,omitempty"`     // our inbound SPI of the new Child SA
	IKESPI uint64 `json:"ike_spi,omitempty"` // our SPI of the new IKE SA
	// Nonce, Group, KEPriv (our private key), Props, TSi and TSr are what
	// the request offered, to check and complete the response with.
	Nonce  []byte           `json:"nonce,omitempty"`
	Group  suite.GroupID    `json:"group,omitempty"`
	KEPriv []byte           `json:"ke_priv,omitempty"`
	Props  []suite.Proposal `json:"proposals,omitempty"`
	TSi    []ipsec.Selector `json:"tsi,omitempty"`
	TSr    []ipsec.Selector `json:"tsr,omitempty"`
	SPIs   []uint32         `json:"spis,omitempty"` // a delete's Child SAs, by our inbound SPI
	// Extra are a delete's SPIs of Child SAs we never installed.
	Extra []uint32 `json:"extra_spis,omitempty"`
}

// DrainingSA is the inbound SA of a replaced Child SA, left in the data
// plane until Until.
type DrainingSA struct {
	// SPI is the inbound SA's SPI.
	SPI  uint32 `json:"spi"`
	Name string `json:"name"` // the child's name, for logs
	// Until is when the SA is removed.
	Until time.Time `json:"until"`
}

// OurSPI is the SPI that names this IKE SA in our tables.
func (s *IKESA) OurSPI() uint64 {
	if s.Initiator {
		return s.SPIi
	}
	return s.SPIr
}

// PeerSPI is the peer's SPI of the IKE SA.
func (s *IKESA) PeerSPI() uint64 {
	if s.Initiator {
		return s.SPIr
	}
	return s.SPIi
}

// NAT reports whether a NAT was detected (or faked) on either side.
func (s *IKESA) NAT() bool { return s.NATLocal || s.NATRemote }

// SPIs formats the IKE SPIs as charon logs them.
func (s *IKESA) SPIs() string { return fmt.Sprintf("%016x_i %016x_r", s.SPIi, s.SPIr) }

// SetKeys installs the IKE keys and builds the SK ciphers for our role.
func (s *IKESA) SetKeys(k *suite.IKEKeys) error {
	out, in, err := k.Ciphers(s.Initiator)
	if err != nil {
		return fmt.Errorf("ike sa %s: ciphers: %w", s.SPIs(), err)
	}
	s.Keys, s.Out, s.In = k, out, in
	return nil
}

// Ciphers returns the SK ciphers of our role, made again from Keys if
// DropCiphers let them go: out seals what we send, in opens what we
// receive.
func (s *IKESA) Ciphers() (out, in *suite.SKCipher, err error) {
	if s.Out == nil || s.In == nil {
		if s.Keys == nil {
			return nil, nil, fmt.Errorf("ike sa %s: no keys", s.SPIs())
		}
		if s.Out, s.In, err = s.Keys.Ciphers(s.Initiator); err != nil {
			return nil, nil, fmt.Errorf("ike sa %s: ciphers: %w", s.SPIs(), err)
		}
	}
	return s.Out, s.In, nil
}

// DropCiphers lets the SK ciphers go until Ciphers makes them again: an
// idle IKE SA keeps only its keys (two ciphers are 192 bytes, more with
// AES-CBC's key schedule, of an IKE SA that sends a message an hour). A
// cipher made again starts its AEAD IVs at a new random point, as a
// second cipher on the same key would (SKCipher).
func (s *IKESA) DropCiphers() { s.Out, s.In = nil, nil }

// RestoreCiphers rebuilds the SK ciphers from Keys after a restore.
func (s *IKESA) RestoreCiphers() error {
	if s.Keys == nil {
		return fmt.Errorf("ike sa %s: no keys to restore", s.SPIs())
	}
	return s.SetKeys(s.Keys)
}

// ChildByInSPI finds a Child SA by our inbound SPI.
func (s *IKESA) ChildByInSPI(spi uint32) *ChildSA {
	for _, c := range s.Children {
		if c.SPIIn == spi {
			return c
		}
	}
	return nil
}

// ChildByOutSPI finds a Child SA by our outbound SPI (the peer's inbound).
func (s *IKESA) ChildByOutSPI(spi uint32) *ChildSA {
	for _, c := range s.Children {
		if c.SPIOut == spi {
			return c
		}
	}
	return nil
}

// RemoveChild drops a Child SA from the list.
func (s *IKESA) RemoveChild(c *ChildSA) {
	for i, x := range s.Children {
		if x == c {
			s.Children = append(s.Children[:i], s.Children[i+1:]...)
			return
		}
	}
}

// ChildSA is one ESP Child SA (a pair of SAs in the data plane). The
// small fields come first, packed together, for a size class of 256 bytes
// rather than 288.
type ChildSA struct {
	// UniqueID names the Child SA for people and spuctl, and in the names
	// of its SAs in the data plane.
	UniqueID uint32 `json:"unique_id"`
	// ReqID ties the SAs to their policies in the data plane.
	ReqID uint32 `json:"reqid"`
	// SPIIn is ours (allocated by spud, anchored on the tunnel); SPIOut is
	// the peer's.
	SPIIn  uint32 `json:"spi_in"`
	SPIOut uint32 `json:"spi_out"`
	// Replaces is the inbound SPI of the Child SA this one replaces (a
	// rekey): when that one is deleted, this one's pending outbound SA is
	// installed.
	Replaces uint32 `json:"replaces,omitempty"`
	// State is where the Child SA is in its life cycle.
	State ChildState `json:"state"`
	// Initiator: we initiated the exchange that created it (decides the
	// key directions).
	Initiator bool `json:"initiator"`
	// Encap: ESP in UDP (a NAT was detected when it was made).
	Encap bool `json:"encap,omitempty"`
	// Trap: the Child SA serves a start_action=trap child through the trap's
	// policy.
	Trap bool `json:"trap,omitempty"`
	// OutPending: the outbound SA is not installed yet. The responder of a
	// rekey keeps sending through the old Child SA until the initiator,
	// which installs its new inbound SA only on our response, deletes it.
	OutPending bool `json:"out_pending,omitempty"`
	// Redundant: the Child SA lost a rekey collision (RFC 7296 2.8.1) or
	// was superseded by a later rekey of the same Child SA; its outbound SA
	// is never installed, and it is deleted by whoever created it.
	Redundant bool `json:"redundant,omitempty"`

	Name string `json:"name"` // the child's name in the connection
	// Alg are the negotiated algorithms, Keys the KEYMAT cut for them.
	Alg  suite.Algorithms `json:"alg"`
	Keys *suite.ChildKeys `json:"keys,omitempty"`
	// LocalTS and RemoteTS as negotiated.
	LocalTS  []ipsec.Selector `json:"local_ts"`
	RemoteTS []ipsec.Selector `json:"remote_ts"`
	// PolicyIDs are the data-plane policies this Child SA owns; a Child SA
	// of a trap uses the trap's policy and owns none.
	PolicyIDs []uint32 `json:"policy_ids,omitempty"`
	// RekeyBytes and RekeyPackets are the soft limits given to the data
	// plane: rekey_bytes/rekey_packets less a random share of
	// rand_bytes/rand_packets, fixed at installation.
	RekeyBytes   uint64 `json:"rekey_bytes,omitempty"`
	RekeyPackets uint64 `json:"rekey_packets,omitempty"`
	// RekeyReason says what made the Child SA due for a rekey (time,
	// bytes, packets, sequence numbers), for the log line of the rekey.
	RekeyReason string `json:"-"`

	// Installed is when the Child SA went into the data plane.
	Installed time.Time `json:"installed,omitzero"`
	// RekeyAt and ExpireAt are the time-based life of the Child SA
	// (rekey_time minus a random share of rand_time, and life_time).
	RekeyAt  time.Time `json:"rekey_at,omitzero"`
	ExpireAt time.Time `json:"expire_at,omitzero"`
}

// SPIs formats the Child SA's SPIs as charon logs them.
func (c *ChildSA) SPIs() string { return fmt.Sprintf("%08x_i %08x_o", c.SPIIn, c.SPIOut) }

// Live reports whether the Child SA is still in use or being negotiated
// (not on its way out).
func (c *ChildSA) Live() bool {
	return c.State == ChildCreating || c.State == ChildInstalled || c.State == ChildRekeying
}

// Successor returns the Child SA that replaces c and waits for c's
// deletion to send (a rekey we answered), or nil.
func (s *IKESA) Successor(c *ChildSA) *ChildSA {
	for _, o := range s.Children {
		if o != c && o.Replaces == c.SPIIn && c.SPIIn != 0 && !o.Redundant && o.State != ChildDeleted {
			return o
		}
	}
	return nil
}
