// Package system puts a VPN, or none, on the two gateways of a testbed/lab
// line for the benchmarks: spud (spugate's data plane, with static SAs
// through its SA API), strongSwan's charon with its userspace ESP
// (kernel-libipsec), wireguard-go, and plain kernel forwarding as the
// lab's I/O ceiling. Every system carries the same tunnels (Plan) over the
// same line, so that a comparison differs only in the gateway software.
//
// The traffic runs from the peers' side to the concentrator's: the
// generator on client-b sends through gw-b (the peer, or many peers) and
// gw-a (the concentrator) to the sink on client-a.
package system
