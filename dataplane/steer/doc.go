// Package steer loads and drives spugate's XDP steering program
// (bpf/steer.c): it attaches the program to interfaces, fills its maps and
// reads its counters. It also defines the metadata the program writes with
// each frame it redirects (Meta, ParseMeta), and how the AF_XDP side finds
// it (Carrier.ReadMeta), or derives it where the program wrote none
// (Classify).
//
// # Carriers
//
// The metadata reaches userspace by one of three carriers, one program
// each, because kernels and drivers differ in what they allow. Load probes
// the kernel (bpf.Probe) and loads the best one it allows, or the one
// asked for:
//
//   - CarrierMeta: the XDP metadata area just before the frame
//     (bpf_xdp_adjust_meta). Where a driver has no metadata room at run
//     time, the program writes a shim instead for that frame (counted
//     MetaToShim), so its reader accepts both.
//   - CarrierShim: the same 20 bytes in front of the Ethernet header
//     (bpf_xdp_adjust_head), trimmed by the reader; for kernels that
//     refuse bpf_xdp_adjust_meta to XDP programs, as one build of the
//     project's machine kind does.
//   - CarrierNone: nothing; the SPU classifies the frame again with
//     Classify, the program's parse, anchor and SPD lookup in Go over the
//     program's own maps, without allocating. A privileged test checks it
//     against the program on thousands of table and mutated frames.
//
// Whatever the carrier, a frame the program passes to the kernel leaves as
// it came.
//
// Compiling needs no privilege; Load and everything after it need root
// (CAP_BPF, CAP_NET_ADMIN).
//
// # What the program does
//
//   - IKE to a local address (UDP 500, UDP 4500 with the non-ESP marker,
//     NAT keepalives) goes to the kernel, for iked. UDP fragments to a local
//     address too: only the first fragment carries ports, so a fragment of
//     UDP-ESP cannot be told from one of a large IKE message, which the
//     kernel must reassemble.
//   - ESP (protocol 50) and UDP-ESP (RFC 3948, port 4500) to a local tunnel
//     endpoint (AddLocalAddr) go to the AF_XDP socket of the rx queue,
//     anchored by their SPI, whose top bits name the logical SPU of its
//     IKE SA (anchor.Function.LogicalSPI). ESP fragments (class
//     ClassESPFragment, to be reassembled in userspace) go there anchored
//     by the outer addresses (anchor.Function.Logical): only the first
//     carries the SPI, and every one carries the addresses, so all of a
//     packet's fragments meet on one SPU, which hands the reassembled
//     packet to its SPI's anchor. ESP to other addresses is transit
//     traffic.
//   - Other IP traffic is looked up in the SPD (SetPolicy) of the interface
//     it arrives on; a match goes to the AF_XDP socket as ClassCleartext,
//     anchored by the policy's logical SPU; no match goes to the kernel,
//     which routes it in the clear, as a gateway does for traffic no policy
//     covers. Cleartext fragments that match are steered too (flag
//     FlagFragment): passing them would leak protected traffic. Link-local,
//     multicast and broadcast traffic is never steered.
//   - Anything unparsable (truncated, bad IHL or lengths, a long IPv6
//     extension chain) goes to the kernel. Every verdict is counted by
//     reason (Counters).
//
// Ethernet with at most one 802.1Q tag, IPv4 with options, IPv6 with up to
// 8 hop-by-hop, routing, destination-options and fragment headers.
//
// # The SPD in XDP
//
// One LPM lookup cannot match two prefixes, so the SPD is two LPM stages:
// (ingress ifindex, destination) gives a policy group, (group, source) the
// policy. On its own that takes the longest destination match before it
// looks at the source, and would miss a policy with a wider destination
// whose source matches where the narrower one's does not. SetPolicy
// therefore copies the policies of every wider destination prefix into
// each narrower group (the entry count grows with nesting), so that a
// policy covering both addresses is found whenever one exists; among
// several, the longest source prefix wins, then the longest destination.
// The SPD's own order, protocol and ports are not looked at: userspace does
// the exact SPD match after steering, and must be ready to find that the
// packet belongs to another policy, or to none (a bypass). A policy with
// Bypass sends its traffic to the kernel.
//
// # AF_XDP sockets and interfaces
//
// A frame can only be redirected to an AF_XDP socket bound to the queue it
// arrived on, so the XSKMAP is indexed by (interface slot, rx queue), at
// most MaxInterfaces interfaces of MaxQueues queues. A steered frame whose
// queue has no socket goes to the kernel, counted PassNoXSK (or, for
// cleartext with Config.FailClosed, is dropped, DropNoXSK). A Program
// serves the interfaces of one network namespace.
//
// # Attaching
//
// Attach tries native XDP and falls back to generic (SKB) mode, or uses
// the mode asked for, and reports the mode it got; veth has native XDP.
// The program is attached through netlink, not as a bpf_link, so that it
// outlives a crashed spud; the next Attach recognizes it by its name
// (of any carrier) and replaces it, atomically when the mode stays. Another
// XDP program on the interface is never replaced.
//
// # BPF_PROG_TEST_RUN on this kernel (6.18), as the tests found it
//
//   - The output data of a test run includes the XDP metadata: when the
//     program leaves metadata (XDP_REDIRECT here) the output starts with the
//     MetaSize bytes, and the output xdp_md's data field is their length
//     (data - data_meta). On XDP_PASS the program has removed its metadata
//     and the output is the frame alone. A shim is part of the frame: the
//     output starts with it and data is 0.
//   - With Repeat, plain test runs keep what one run did to the frame for
//     the next (a shim grows by 20 bytes a run); BPF_F_TEST_XDP_LIVE_FRAMES
//     starts each run from the frame as given, and carries out redirects.
//   - XDP_REDIRECT to an XSKMAP under a plain test run: bpf_redirect_map
//     does look the slot up, so an empty slot returns the fallback XDP_PASS
//     and a registered, bound socket XDP_REDIRECT; but nothing is delivered:
//     the socket's rx ring stays empty. (Delivery needs a real packet, as in
//     the end-to-end test, or BPF_F_TEST_XDP_LIVE_FRAMES.)
//   - A context with ingress_ifindex and rx_queue_index needs a device of
//     that index in the caller's network namespace with more rx queues than
//     the index (a 4-queue veth takes 0..3; queue 4 is EINVAL). Without a
//     context the frame arrives on lo, queue 0.
//   - The context's data_end sets the frame length: asking for an output
//     context without passing an input one runs the program on an empty
//     frame. Frames below 14 bytes are refused (EINVAL).
//
// In copy mode the metadata reaches the UMEM just before the frame, in
// native and in generic mode alike (the end-to-end test reads it there).
package steer
