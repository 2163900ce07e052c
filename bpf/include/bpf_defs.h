/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The few BPF declarations spugate's programs need, written against the
 * kernel UAPI (linux/bpf.h) alone, so that building the objects needs clang
 * and linux-libc-dev but no libbpf headers, and the output does not change
 * with the libbpf version installed.
 */
#ifndef SPUGATE_BPF_DEFS_H
#define SPUGATE_BPF_DEFS_H

#include <linux/types.h>
#include <linux/bpf.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "spugate's BPF programs are built for little-endian targets (bpfel) only"
#endif

#define SEC(name) __attribute__((section(name), used))
/* linux/stddef.h defines it as plain inline, which clang may ignore. */
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

/* BTF-style map definitions, as cilium/ebpf reads them from ".maps". */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

/* Network byte order on a little-endian target. */
#define bpf_htons(x) ((__be16)__builtin_bswap16(x))
#define bpf_ntohs(x) ((__u16)__builtin_bswap16(x))
#define bpf_ntohl(x) ((__u32)__builtin_bswap32(x))
#define bpf_be64_to_cpu(x) ((__u64)__builtin_bswap64(x))

/* Helpers are called through their UAPI numbers. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) =
	(void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) =
	(void *)BPF_FUNC_redirect_map;
static long (*bpf_xdp_adjust_meta)(struct xdp_md *ctx, int delta) =
	(void *)BPF_FUNC_xdp_adjust_meta;
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) =
	(void *)BPF_FUNC_xdp_adjust_head;
static long (*bpf_skb_load_bytes_relative)(const void *ctx, __u32 offset,
					   void *to, __u32 len,
					   __u32 start_header) =
	(void *)BPF_FUNC_skb_load_bytes_relative;
static long (*bpf_skb_load_bytes)(const void *ctx, __u32 offset, void *to,
				  __u32 len) = (void *)BPF_FUNC_skb_load_bytes;
static long (*bpf_sk_select_reuseport)(struct sk_reuseport_md *reuse,
				       void *map, void *key, __u64 flags) =
	(void *)BPF_FUNC_sk_select_reuseport;

#endif
