// Package scenario runs spugate's benchmark scenarios on testbed/lab lines
// and returns their results as plain data (JSON-ready) for bench/report:
//
//   - Ceiling: the generator looped straight into the sink, the most the
//     traffic tools can measure on this machine;
//   - Throughput: spud against strongSwan (charon, userspace ESP),
//     wireguard-go and plain kernel forwarding, per packet size and suite;
//   - Scaling: spud with 1..N SPUs (more SPUs than cores is simulated and
//     said so);
//   - Tunnels: spud carrying 1, 100, 10,000 tunnels: throughput and memory;
//   - IKE: IKE SA setup rate of the responders;
//   - Rekey: throughput and loss while Child SAs are replaced
//     make-before-break at a fixed interval.
//
// Every system in a comparison runs on the same line with the same link
// settings (Env.Links), in the same run. The generator and the sink share
// the machine's cores with the gateways; the results carry the generator's
// own ceiling so that a reader can tell which one was the bottleneck.
package scenario
