// Package bpf holds spugate's BPF programs, compiled by bpf2go into the
// committed objects this package embeds:
//
//   - steer.c, the XDP steering program (loaded by dataplane/steer): IKE and
//     whatever it does not handle to the kernel, ESP, UDP-encapsulated ESP to
//     a local tunnel endpoint and cleartext matching the SPD to the AF_XDP
//     socket of the rx queue, with the anchor SPU in the steering metadata;
//     one program per way of carrying it (spugate_meta: the XDP metadata
//     area; spugate_shim: a shim in front of the frame; spugate_none:
//     nothing), so that a kernel that refuses a helper still loads one;
//   - reuseport.c, the SO_REUSEPORT selector (loaded by control/reuseport):
//     picks the IKE worker socket of the IKE SA's logical SPU (the rule of
//     dataplane/anchor's IKELogical).
//
// Probe asks the running kernel which of the features these programs use it
// allows (cilium/ebpf/features), so that loaders choose before they load.
//
// Both share include/anchor.h, the anchor function that dataplane/anchor
// implements in Go, and include/spugate.h, the types mirrored in Go.
//
// Regenerate with `go generate ./bpf/...` (needs clang 14 and the kernel
// UAPI headers of linux-libc-dev, nothing else); the output is
// byte-for-byte reproducible and CI checks it with git diff --exit-code.
// The objects target little-endian machines only (bpfel).
package bpf

//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -Wall -Wextra -Wno-unused-parameter -Werror -I/usr/include/x86_64-linux-gnu -Iinclude" Steer steer.c
//go:generate go tool bpf2go -tags linux -target bpfel -cflags "-O2 -mcpu=v3 -Wall -Wextra -Wno-unused-parameter -Werror -I/usr/include/x86_64-linux-gnu -Iinclude" Reuseport reuseport.c
