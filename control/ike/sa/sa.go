// Package sa holds the state of an IKE SA and of its Child SAs: what the
// tasks of package task read and change, what the task manager drives, and
// what iked persists (the whole IKESA marshals to JSON, keys included, for
// the 0600 state file that lets iked restart without dropping tunnels).
//
// Nothing here does I/O or takes locks: an IKE SA belongs to one worker
// goroutine.
package sa

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/spugate/spugate/control/config"
	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/suite"
)

// IKEState is the life cycle of an IKE SA.
type IKEState int

// IKE SA states.
const (
	Created     IKEState = iota // no exchange yet, or IKE_SA_INIT in flight
	Connecting                  // IKE_SA_INIT done, IKE_AUTH pending
	Established                 // authenticated
	Deleting                    // a DELETE for it is in flight
	Destroyed                   // gone; only kept by whoever still holds a pointer
)

var ikeStateNames = [...]string{"CREATED", "CONNECTING", "ESTABLISHED", "DELETING", "DESTROYED"}

func (s IKEState) String() string {
	if s >= 0 && int(s) < len(ikeStateNames) {
		return ikeStateNames[s]
	}
	return fmt.Sprintf("IKEState(%d)", int(s))
}

// ChildState is the life cycle of a Child SA.
type ChildState int

// Child SA states.
const (
	ChildCreating  ChildState = iota // negotiating
	ChildInstalled                   // both directions in the data plane
	ChildRekeying                    // a replacement is being negotiated (issue 7)
	ChildDeleting                    // a DELETE for it is in flight
	ChildDeleted                     // removed from the data plane
)

var childStateNames = [...]string{"CREATING", "INSTALLED", "REKEYING", "DELETING", "DELETED"}

func (s ChildState) String() string {
	if s >= 0 && int(s) < len(childStateNames) {
		return childStateNames[s]
	}
	return fmt.Sprintf("ChildState(%d)", int(s))
}

// IKESA is one IKE SA. The exported fields are its persisted state; the
// ciphers are rebuilt from Keys on restore (RestoreCiphers).
type IKESA struct {
	// UniqueID names the IKE SA for people and spuctl (like charon's #N).
	UniqueID uint32 `json:"unique_id"`
	// ConnName is the connection it was made from ("" for a responder
	// before IKE_AUTH picked one).
	ConnName string `json:"conn"`
	// Initiator is true if we are the original initiator (we send the I
	// flag).
	Initiator bool   `json:"initiator"`
	SPIi      uint64 `json:"spi_i,string"`
	SPIr      uint64 `json:"spi_r,string"`
	// Local and Remote are the current addresses and ports: port 500 until
	// a NAT made both sides float to 4500.
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	State  IKEState       `json:"state"`

	// Negotiated in IKE_SA_INIT.
	Proposal suite.Proposal  `json:"proposal"`
	Keys     *suite.IKEKeys  `json:"keys,omitempty"`
	Ni, Nr   []byte          `json:"-"`
	InitI    []byte          `json:"-"` // the initiator's IKE_SA_INIT as sent, for AUTH
	InitR    []byte          `json:"-"` // the responder's
	Out, In  *suite.SKCipher `json:"-"`

	// NATLocal: we are behind a NAT (the peer saw another address than
	// ours); NATRemote: the peer is (or fakes being, as charon with
	// kernel-libipsec does). Either means ESP in UDP and IKE on 4500.
	NATLocal  bool `json:"nat_local,omitempty"`
	NATRemote bool `json:"nat_remote,omitempty"`

	LocalID  config.Identity `json:"local_id"`
	RemoteID config.Identity `json:"remote_id"`

	// MsgIDOut is the message ID of our next request; MsgIDIn the one we
	// expect of the peer's next request.
	MsgIDOut uint32 `json:"msgid_out"`
	MsgIDIn  uint32 `json:"msgid_in"`
	// LastResponse is the response to the peer's request MsgIDIn-1, as
	// sent, to answer a retransmission of it from the cache.
	LastResponse [][]byte `json:"last_response,omitempty"`

	Children []*ChildSA `json:"children,omitempty"`

	Created     time.Time `json:"created"`
	Established time.Time `json:"established,omitzero"`
	// RekeyAt is when the IKE SA is due for a rekey (zero: never).
	RekeyAt time.Time `json:"rekey_at,omitzero"`
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

// ChildSA is one ESP Child SA (a pair of SAs in the data plane).
type ChildSA struct {
	UniqueID uint32     `json:"unique_id"`
	Name     string     `json:"name"` // the child's name in the connection
	State    ChildState `json:"state"`
	// ReqID ties the SAs to their policies in the data plane.
	ReqID uint32 `json:"reqid"`
	// Initiator: we initiated the exchange that created it (decides the
	// key directions).
	Initiator bool `json:"initiator"`
	// SPIIn is ours (allocated by spud, anchored on the tunnel); SPIOut is
	// the peer's.
	SPIIn  uint32           `json:"spi_in"`
	SPIOut uint32           `json:"spi_out"`
	Alg    suite.Algorithms `json:"alg"`
	Keys   *suite.ChildKeys `json:"keys,omitempty"`
	// LocalTS and RemoteTS as negotiated.
	LocalTS  []message.Selector `json:"local_ts"`
	RemoteTS []message.Selector `json:"remote_ts"`
	Encap    bool               `json:"encap,omitempty"`
	// PolicyIDs are the data-plane policies this Child SA owns; a Child SA
	// of a trap uses the trap's policy and owns none.
	PolicyIDs []uint32 `json:"policy_ids,omitempty"`
	// Trap: the Child SA serves a start_action=trap child through the trap's
	// policy.
	Trap bool `json:"trap,omitempty"`
	// OutPending: the outbound SA is not installed yet. The responder of a
	// rekey keeps sending through the old Child SA until the initiator,
	// which installs its new inbound SA only on our response, deletes it.
	OutPending bool `json:"out_pending,omitempty"`

	Installed time.Time `json:"installed,omitzero"`
	// RekeyAt and ExpireAt are the time-based life of the Child SA
	// (rekey_time minus a random share of rand_time, and life_time).
	RekeyAt  time.Time `json:"rekey_at,omitzero"`
	ExpireAt time.Time `json:"expire_at,omitzero"`
}

// SPIs formats the Child SA's SPIs as charon logs them.
func (c *ChildSA) SPIs() string { return fmt.Sprintf("%08x_i %08x_o", c.SPIIn, c.SPIOut) }
