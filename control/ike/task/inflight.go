package task

import (
	"fmt"

	"github.com/spugate/spugate/control/ike/message"
	"github.com/spugate/spugate/control/ike/sa"
	"github.com/spugate/spugate/control/ike/suite"
)

// Snapshotter is an initiator task that can describe its request in flight
// (sa.InFlight) so that the task is rebuilt (Resume) when iked restarts
// before the response arrives.
type Snapshotter interface {
	// Snapshot describes the request in flight, or returns nil if the
	// task cannot be rebuilt.
	Snapshot() *sa.InFlight
}

// Task names in sa.InFlight.
const (
	inflightChildCreate = "child_create"
	inflightChildRekey  = "child_rekey"
	inflightIKERekey    = "ike_rekey"
	inflightChildDelete = "child_delete"
	inflightIKEDelete   = "ike_delete"
	inflightDPD         = "dpd"
)

// Snapshot describes the request in flight, for Resume.
func (t *ChildCreateI) Snapshot() *sa.InFlight {
	f := &sa.InFlight{Task: inflightChildCreate, Child: t.child.Name, ReqID: t.ReqID, SPI: t.spi,
		Nonce: t.nonce, Group: t.group, Props: t.proposals, TSi: t.tsi, TSr: t.tsr}
	if t.ke != nil {
		f.KEPriv = t.ke.PrivateKey()
	}
	if t.Replaces != nil {
		f.OldSPI = t.Replaces.SPIIn
	}
	return f
}

// Snapshot describes the request in flight, for Resume.
func (t *ChildRekeyI) Snapshot() *sa.InFlight {
	if t.create == nil {
		return nil
	}
	f := t.create.Snapshot()
	f.Task, f.Reason = inflightChildRekey, t.Reason
	return f
}

// Snapshot describes the request in flight, for Resume.
func (t *IKERekeyI) Snapshot() *sa.InFlight {
	f := &sa.InFlight{Task: inflightIKERekey, Reason: t.Reason, IKESPI: t.spi, Nonce: t.nonce, Group: t.group, Props: t.proposals}
	if t.ke != nil {
		f.KEPriv = t.ke.PrivateKey()
	}
	return f
}

// Snapshot describes the request in flight, for Resume.
func (t *ChildDeleteI) Snapshot() *sa.InFlight {
	f := &sa.InFlight{Task: inflightChildDelete, Reason: t.reason, Extra: t.spis}
	for _, ch := range t.children {
		f.SPIs = append(f.SPIs, ch.SPIIn)
	}
	return f
}

// Snapshot describes the request in flight, for Resume.
func (t *IKEDeleteI) Snapshot() *sa.InFlight {
	return &sa.InFlight{Task: inflightIKEDelete, Reason: t.reason}
}

// Snapshot describes the request in flight, for Resume.
func (t *DPDI) Snapshot() *sa.InFlight { return &sa.InFlight{Task: inflightDPD} }

// Resume rebuilds the task of a request that was in flight when iked
// stopped, to process its response. A task it cannot rebuild (the
// configuration changed meanwhile) is an Abandoned one: the response is
// taken and ignored, so that message IDs stay in step with the peer.
func Resume(c *Ctx, f *sa.InFlight) (Initiator, error) {
	ke := func() (*suite.KeyExchange, error) {
		if len(f.KEPriv) == 0 {
			return nil, nil
		}
		return suite.NewKeyExchangeFromPrivate(f.Group, f.KEPriv)
	}
	switch f.Task {
	case inflightChildCreate, inflightChildRekey:
		conn := c.Conn()
		if conn == nil || conn.Children[f.Child] == nil {
			return &Abandoned{}, fmt.Errorf("child %q of connection %q is no longer configured", f.Child, c.IKE.ConnName)
		}
		k, err := ke()
		if err != nil {
			return &Abandoned{}, err
		}
		cr := &ChildCreateI{conn: conn, child: conn.Children[f.Child], ReqID: f.ReqID, spi: f.SPI, proposals: f.Props,
			group: f.Group, ke: k, nonce: f.Nonce, tsi: f.TSi, tsr: f.TSr}
		if f.OldSPI != 0 {
			cr.Replaces = c.IKE.ChildByInSPI(f.OldSPI)
			if cr.Replaces == nil {
				return &Abandoned{}, fmt.Errorf("child sa %08x of the rekey in flight is gone", f.OldSPI)
			}
		}
		if f.Task == inflightChildCreate {
			return cr, nil
		}
		cr.Replaces.State = sa.ChildRekeying
		return &ChildRekeyI{Old: cr.Replaces, Reason: f.Reason, create: cr}, nil
	case inflightIKERekey:
		k, err := ke()
		if err != nil || k == nil {
			return &Abandoned{}, fmt.Errorf("IKE rekey without its key exchange: %v", err)
		}
		return &IKERekeyI{Reason: f.Reason, spi: f.IKESPI, proposals: f.Props, group: f.Group, ke: k, nonce: f.Nonce}, nil
	case inflightChildDelete:
		t := &ChildDeleteI{reason: f.Reason, spis: f.Extra}
		for _, spi := range f.SPIs {
			if ch := c.IKE.ChildByInSPI(spi); ch != nil {
				t.children = append(t.children, ch)
			}
		}
		return t, nil
	case inflightIKEDelete:
		return NewIKEDeleteI(f.Reason), nil
	case inflightDPD:
		return &DPDI{}, nil
	}
	return &Abandoned{}, fmt.Errorf("unknown task %q in flight", f.Task)
}

// Abandoned stands for a request in flight whose task could not be
// rebuilt after a restart: its response is taken and ignored.
type Abandoned struct{}

// Kind is KindInfo.
func (t *Abandoned) Kind() Kind { return KindInfo }

// Abort does nothing: nothing waits for the task.
func (t *Abandoned) Abort(error) {}

// String names the task in logs.
func (t *Abandoned) String() string { return "abandoned request" }

// Build adds nothing: the request was sent before the restart.
func (t *Abandoned) Build(c *Ctx, req *message.Message) error { return nil }

// Process takes the response and ignores it.
func (t *Abandoned) Process(c *Ctx, resp *message.Message) Status { return Done }
