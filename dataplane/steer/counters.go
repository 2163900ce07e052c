package steer

import (
	"fmt"
	"strings"
)

// Counter names one of the steering program's per-CPU counters, a verdict
// and its reason (enum spugate_counter).
type Counter uint32

// The counters, in the order of enum spugate_counter.
const (
	RedirectESP         Counter = iota // ESP to the AF_XDP socket
	RedirectUDPESP                     // UDP-ESP to the AF_XDP socket
	RedirectCleartext                  // SPD cleartext to the AF_XDP socket
	RedirectESPFragment                // ESP fragment to the AF_XDP socket
	PassNoXSK                          // steered, but no socket on the queue: to the kernel
	DropNoXSK                          // the same for cleartext with FailClosed
	PassIKE                            // UDP 500 to a local address
	PassIKENATT                        // UDP 4500 with the non-ESP marker
	PassNATTKeepalive                  // UDP 4500, one byte 0xff
	PassUDPFragment                    // UDP fragment to a local address
	PassTransitESP                     // ESP to a foreign address, no policy
	PassNoPolicy                       // IP that no SPD entry covers
	PassBypass                         // an SPD bypass entry matched
	PassLocalScope                     // link-local, multicast or broadcast
	PassNotIP                          // not IPv4 or IPv6 (ARP, LLDP, QinQ...)
	PassTruncated                      // frame ends inside an L2 or L3 header
	PassBadVersion                     // IP version does not match the EtherType
	PassBadIHL                         // IPv4 header length below 20
	PassBadLength                      // IP length below the header or past the frame
	PassBadExtHdr                      // IPv6 extension chain too long or truncated
	PassBadUDP                         // UDP header or length inconsistent
	PassBadESP                         // shorter than SPI and sequence number
	PassUnconfigured                   // no anchor configuration yet
	PassMetaFailed                     // the driver gave room for no carrier
	MetaToShim                         // no metadata room at run time: carried in a shim (redirected)
	NumCounters                        // the number of counters
)

var counterNames = [NumCounters]string{
	"redirect_esp", "redirect_udp_esp", "redirect_cleartext", "redirect_esp_fragment",
	"pass_no_xsk", "drop_no_xsk",
	"pass_ike", "pass_ike_natt", "pass_natt_keepalive", "pass_udp_fragment",
	"pass_transit_esp", "pass_no_policy", "pass_bypass", "pass_local_scope",
	"pass_not_ip", "pass_truncated", "pass_bad_version", "pass_bad_ihl",
	"pass_bad_length", "pass_bad_ext_hdr", "pass_bad_udp", "pass_bad_esp",
	"pass_unconfigured", "pass_meta_failed", "meta_to_shim",
}

// String is the counter's name in the status and metrics, the C
// enumerator without its SPUGATE_CNT_ prefix in lower case
// ("pass_no_policy"), or "counter(N)" past NumCounters.
func (c Counter) String() string {
	if c < NumCounters {
		return counterNames[c]
	}
	return fmt.Sprintf("counter(%d)", uint32(c))
}

// Counters are the counter values, summed over CPUs.
type Counters [NumCounters]uint64

// Sub returns c - old, the counts since old was read.
func (c *Counters) Sub(old *Counters) Counters {
	var d Counters
	for i := range c {
		d[i] = c[i] - old[i]
	}
	return d
}

// String lists the non-zero counters by name.
func (c Counters) String() string {
	var b strings.Builder
	for i, v := range c {
		if v == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", Counter(i), v)
	}
	return b.String()
}
