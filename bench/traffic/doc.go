// Package traffic is spugate's benchmark traffic: an AF_XDP generator that
// sends UDP flows of fixed or mixed sizes, at a fixed rate or as fast as it
// can, and an AF_XDP sink that counts what arrives.
//
// Every packet carries, in the first PayloadLen bytes of its UDP payload, a
// marker, its flow, its sequence number in the flow and the time the
// generator handed it to the kernel (Payload). Generator and sink run in the
// same process (in two network namespaces, through testbed/lab's Host.Do), so
// both read one monotonic Clock and a latency is a plain difference.
//
// A measurement (Measure) has a warm-up, then a window: the generator counts
// the packets it stamps inside the window, the sink the packets it receives
// whose stamp lies inside it, and keeps running for a drain period after the
// generator stops so that packets still in flight are counted. Rates are the
// window's packets over the window's length; loss is what the generator sent
// in the window and the sink never saw; reordering is a packet older than one
// already received on its flow; latency percentiles come from a log-linear
// histogram (Histogram, about 3% wide buckets).
//
// The frames are Ethernet + IPv4 + UDP (no IP options, UDP checksum 0, which
// IPv4 allows), addressed by the caller (Flow): the generator writes the next
// hop's MAC address itself and needs no ARP. The sink's XDP program
// (SinkProgram) redirects only IPv4 UDP to its port and passes everything
// else (ARP included) to the kernel, so the host stays reachable.
//
// Generator and Sink drive xsk.Port values, so they are tested over
// dataplane/xsk/xsktest fakes without privilege; OpenGenerator and OpenSink
// bind real AF_XDP sockets. Neither allocates per packet.
package traffic
