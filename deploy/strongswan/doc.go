// Package strongswan runs strongSwan's charon as an independent IKEv2 and
// ESP peer inside deploy/lab hosts, for spugate's interop tests and its
// benchmarks, and makes test PKIs with strongSwan's pki tool.
//
// This machine's kernel has no ESP, so every instance runs charon with
// kernel-libipsec (userspace ESP through a TUN device, ipsec0, routed by
// a rule to table 220) and kernel-netlink. kernel-libipsec always
// encapsulates ESP in UDP 4500, NAT or not: charon fakes NAT detection.
//
// Each instance lives in its own directory (strongswan.conf, swanctl/,
// its VICI socket, its filelog, and run/, bind-mounted over /run inside
// the `ip netns exec` mount namespace so that charon's compiled-in
// /run/charon.pid does not collide). The harness talks VICI to it
// directly (vici.go) for initiate, terminate, list-sas and list-conns,
// and runs swanctl only to load the configuration files it generated.
//
// Start, Stop and everything in between are bounded in time; Stop works
// by PID and verifies that ipsec0, the routes and the rule are gone.
package strongswan
