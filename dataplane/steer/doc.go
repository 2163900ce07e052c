// Package steer loads and drives spugate's XDP steering program
// (bpf/steer.c): it attaches the program to interfaces, fills its maps
// (anchor configuration, logical -> physical SPU map, local tunnel
// endpoints, the SPD, AF_XDP sockets) and reads its counters. It also
// defines the metadata the program writes in front of each frame it
// redirects (Meta, ParseMeta), which the AF_XDP side reads.
//
// Compiling needs no privilege; Load and everything after it need root
// (CAP_BPF, CAP_NET_ADMIN).
package steer
