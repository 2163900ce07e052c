package spud

import (
	"github.com/spugate/spugate/dataplane/steer"
)

// spdEntries is where the SA API's policies meet the steering program's
// SPD, which has one entry per (interface, local, remote) selectors: two
// policies may have the same selectors (an IKE SA set up again while the
// old one's policy lingers, a static policy beside a negotiated one). The
// program keeps the policies of an entry (steer.Program.SetPolicy,
// RemovePolicy), so that deleting one policy leaves the entry to the
// newest left, where deleting the entry would pass the other's cleartext
// unprotected. spud kept that record itself, a second map keyed by the
// same selectors (some 90 bytes a tunnel); nothing is kept here now.
type spdEntries struct{}

// spdProgram is what spdEntries writes to: the steering program.
type spdProgram interface {
	SetPolicy(steer.Policy) error
	RemovePolicy(steer.Policy) error
}

// add puts e in the program, in front of any policy with its selectors.
func (spdEntries) add(prog spdProgram, e steer.Policy) error { return prog.SetPolicy(e) }

// del takes e's policy off its entry: the entry goes with the last policy
// that had it, and otherwise names the newest one left.
func (spdEntries) del(prog spdProgram, e steer.Policy) error { return prog.RemovePolicy(e) }
