//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * spugate's SO_REUSEPORT selector: iked runs one IKE worker per SPU, each
 * with its own UDP socket in one SO_REUSEPORT group (one group per local
 * address and port). This program picks the socket of the worker on the
 * tunnel's anchor SPU, by the same anchor function and logical->physical
 * map as the XDP steering program, so a tunnel's IKE SA lives where its
 * ESP is processed.
 *
 * sk_reuseport_md starts at the UDP header and carries no addresses; the
 * addresses are read from the IP header with bpf_skb_load_bytes_relative
 * (BPF_HDR_START_NET).
 *
 * Whenever the program cannot choose (not configured, no socket for that
 * SPU), it returns SK_PASS without a selection, which makes the kernel fall
 * back to its own hash: a datagram is never dropped here.
 */

#include <linux/if_ether.h>

#include "anchor.h"

#define ENOENT 2

/* Physical SPU -> the UDP socket of that SPU's IKE worker. */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SPUGATE_MAX_WORKERS);
	__type(key, __u32);
	__type(value, __u64);
} workers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SPUGATE_RP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} rp_counters SEC(".maps");

static __always_inline int count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&rp_counters, &c);

	if (v)
		*v += 1;
	return SK_PASS;
}

/* Byte offsets of the address pair in the IP headers. */
#define IPV4_SADDR_OFF 12
#define IPV6_SADDR_OFF 8

SEC("sk_reuseport")
int spugate_reuseport(struct sk_reuseport_md *md)
{
	const struct spugate_config *cfg;
	__u32 zero = 0, logical, physical;
	__u64 a0, a1, b0, b1;
	long err;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->logical_spus == 0 ||
	    cfg->logical_spus > SPUGATE_MAX_LOGICAL)
		return count(SPUGATE_RP_UNCONFIGURED);

	if (md->eth_protocol == bpf_htons(ETH_P_IP)) {
		__u32 v4[2];

		if (bpf_skb_load_bytes_relative(md, IPV4_SADDR_OFF, v4, sizeof(v4),
						BPF_HDR_START_NET))
			return count(SPUGATE_RP_BAD_PACKET);
		a0 = 0;
		a1 = V4MAPPED_W1(v4[0]);
		b0 = 0;
		b1 = V4MAPPED_W1(v4[1]);
	} else if (md->eth_protocol == bpf_htons(ETH_P_IPV6)) {
		__u64 v6[4];

		if (bpf_skb_load_bytes_relative(md, IPV6_SADDR_OFF, v6, sizeof(v6),
						BPF_HDR_START_NET))
			return count(SPUGATE_RP_BAD_PACKET);
		a0 = v6[0];
		a1 = v6[1];
		b0 = v6[2];
		b1 = v6[3];
	} else {
		return count(SPUGATE_RP_BAD_PACKET);
	}

	logical = anchor_logical(cfg, a0, a1, b0, b1);
	physical = anchor_physical(logical);
	err = bpf_sk_select_reuseport(md, &workers, &physical, 0);
	if (err == -ENOENT)
		return count(SPUGATE_RP_NO_WORKER);
	if (err)
		return count(SPUGATE_RP_SELECT_FAILED);
	return count(SPUGATE_RP_SELECTED);
}

char _license[] SEC("license") = "Dual MIT/GPL";
