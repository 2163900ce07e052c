package spu

// Drop is why an SPU dropped a packet outside an SA (SAs count their own
// drops by esp.Reason).
type Drop uint8

const (
	DropNoMeta            Drop = iota // the frame carried no steering metadata
	DropMalformed                     // not a parseable IP packet
	DropUnknownSPI                    // no inbound SA with the packet's SPI on its anchor
	DropESPHeader                     // the outer headers of an ESP packet are malformed
	DropNoPolicy                      // the steering program's policy id is not on this SPU
	DropNoSA                          // a protect policy with no outbound SA (an ACQUIRE went up)
	DropDiscard                       // a discard policy matched
	DropNoRoute                       // no route to the destination
	DropNoNeighbour                   // the next hop's MAC is not resolved yet (resolution asked)
	DropLocal                         // addressed to the gateway itself: the kernel's, not ours
	DropTTL                           // TTL or hop limit exhausted
	DropNoTxFrame                     // no free frame on the egress socket
	DropTxFull                        // the egress socket's tx ring was full
	DropNoEgress                      // no SPU has a socket on the egress interface
	DropHandoffFull                   // the anchor SPU's ring was full
	DropTooBigForBuffer               // the packet would not fit a frame once encapsulated
	DropFragment                      // an outer fragment that could not be reassembled
	DropSA                            // the SA dropped it (see its esp.Reason counters)
	DropMigrating                     // held for a moving logical SPU too long, or no room to hold it
	DropSPUFailed                     // its SPU failed while it was in flight
	DropUnsteered                     // carrier none: classified again, the frame is not for an SPU (tables changed meanwhile)
	DropReassembledTooBig             // an ESP packet reassembled here, for another SPU, larger than a handoff slot
	// NumDrops is the number of drop causes, for sizing counter arrays.
	NumDrops
)

var dropNames = [NumDrops]string{
	"no_meta", "malformed", "unknown_spi", "esp_header", "no_policy", "no_sa", "discard",
	"no_route", "no_neighbour", "local", "ttl", "no_tx_frame", "tx_full", "no_egress",
	"handoff_full", "too_big_for_buffer", "fragment", "sa", "migrating", "spu_failed",
	"unsteered", "reassembled_too_big",
}

// String returns the drop's counter name (snake_case), as SPU stats show
// it, or "unknown".
func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "unknown"
}
