//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * spugate's SO_REUSEPORT selector: iked runs one IKE worker per SPU, each
 * with its own UDP socket in one SO_REUSEPORT group (one group per local
 * address and port). This program picks the socket of the worker on the
 * IKE SA's logical SPU, mapped to a physical SPU by the same
 * logical->physical map as the XDP steering program, by the rule of
 * dataplane/anchor's IKELogical:
 *
 *   - a datagram whose IKE header has the I flag and a responder SPI: the
 *     logical SPU in that SPI's top bits, which this side chose
 *     (((u64)first 4 bytes * L) >> 32, L a power of two);
 *   - the I flag clear and an initiator SPI: the same from the initiator
 *     SPI, ours when we initiated;
 *   - an IKE_SA_INIT request (I flag, responder SPI zero): SipHash-2-4 of
 *     the anchor key followed by the initiator's SPI, mod L, so that the
 *     IKE SAs of one peer spread over every SPU;
 *   - anything else (too short for an IKE header, zero SPIs, and on the
 *     NAT-T group no non-ESP marker: keepalives, ESP in UDP): the anchor
 *     function of the two endpoints, the tunnel's anchor before issue 16.
 *
 * Only the NAT-T group looks for the 4-byte marker: its rp_group entry says
 * so (control/reuseport writes it when it opens the group); the IKE port's
 * group reads the IKE header right after the UDP header.
 *
 * sk_reuseport_md starts at the UDP header and carries no addresses; the
 * payload is read with bpf_skb_load_bytes (relative to the UDP header,
 * whatever the skb's layout) and the addresses, only when the rule needs
 * them, from the IP header with bpf_skb_load_bytes_relative
 * (BPF_HDR_START_NET). The kernel gave SK_REUSEPORT both helpers in the
 * same release, so probing the second answers for the first.
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

/*
 * The group's own flags (SPUGATE_RP_GROUP_*): a map of each program
 * instance rather than a load-time constant, which would need global data
 * (5.2) where the rest of the program needs only 4.19.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} rp_group SEC(".maps");

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

#define UDP_HDR_LEN 8
#define NON_ESP_MARKER_LEN 4
#define IKE_HDR_LEN 28
#define IKE_FLAG_INITIATOR 0x08

/* The part of the IKE header (RFC 7296, 3.1) the rule reads. */
struct ike_prefix {
	__u64 spi_i; /* as on the wire: the little-endian load of its bytes */
	__u64 spi_r;
	__u8 next_payload;
	__u8 version;
	__u8 exchange;
	__u8 flags;
};

/*
 * ike_rule reads the IKE header of the datagram into h and returns the
 * counter of the rule that anchors it (SPUGATE_RP_BY_*, _FIRST_CONTACT).
 */
static __always_inline __u32 ike_rule(struct sk_reuseport_md *md, __u32 natt,
				      struct ike_prefix *h)
{
	__u32 off = UDP_HDR_LEN;

	if (natt) {
		__u32 marker;

		if (md->len < off + NON_ESP_MARKER_LEN ||
		    bpf_skb_load_bytes(md, off, &marker, sizeof(marker)) ||
		    marker != 0)
			return SPUGATE_RP_BY_ADDRESSES;
		off += NON_ESP_MARKER_LEN;
	}
	if (md->len < off + IKE_HDR_LEN ||
	    bpf_skb_load_bytes(md, off, h, sizeof(*h)))
		return SPUGATE_RP_BY_ADDRESSES;
	if (h->flags & IKE_FLAG_INITIATOR) {
		if (h->spi_r)
			return SPUGATE_RP_BY_RESPONDER_SPI;
		if (h->spi_i)
			return SPUGATE_RP_FIRST_CONTACT;
	} else if (h->spi_i) {
		return SPUGATE_RP_BY_INITIATOR_SPI;
	}
	return SPUGATE_RP_BY_ADDRESSES;
}

/*
 * ike_spi_logical is the logical SPU in the top bits of an IKE SPI of ours
 * (dataplane/anchor's EncodeIKE): its first four bytes scaled to L, which
 * for a power of two L is their top log2(L) bits.
 */
static __always_inline __u32 ike_spi_logical(__u64 spi, __u32 l)
{
	return ((__u64)bpf_ntohl((__u32)spi) * l) >> 32;
}

/*
 * anchor_logical_first returns the logical SPU of a new IKE SA between
 * the endpoints (a, b) whose initiator chose spi_i (as on the wire).
 */
static __always_inline __u32 anchor_logical_first(const struct spugate_config *cfg,
						  __u64 a0, __u64 a1, __u64 b0,
						  __u64 b1, __u64 spi_i)
{
	struct anchor_key k;

	anchor_key_make(&k, a0, a1, b0, b1);
	return siphash24_40(cfg->siphash_k0, cfg->siphash_k1, &k, spi_i) %
	       (__u64)cfg->logical_spus;
}

/* Byte offsets of the address pair in the IP headers. */
#define IPV4_SADDR_OFF 12
#define IPV6_SADDR_OFF 8

SEC("sk_reuseport")
int spugate_reuseport(struct sk_reuseport_md *md)
{
	const struct spugate_config *cfg;
	struct ike_prefix h = {};
	__u32 zero = 0, logical, physical, rule, natt = 0, *group;
	__u64 a0, a1, b0, b1;
	long err;

	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->logical_spus == 0 ||
	    cfg->logical_spus > SPUGATE_MAX_LOGICAL)
		return count(SPUGATE_RP_UNCONFIGURED);
	group = bpf_map_lookup_elem(&rp_group, &zero);
	if (group)
		natt = *group & SPUGATE_RP_GROUP_NATT;

	rule = ike_rule(md, natt, &h);
	if (rule == SPUGATE_RP_BY_RESPONDER_SPI) {
		logical = ike_spi_logical(h.spi_r, cfg->logical_spus);
		goto select;
	}
	if (rule == SPUGATE_RP_BY_INITIATOR_SPI) {
		logical = ike_spi_logical(h.spi_i, cfg->logical_spus);
		goto select;
	}

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
	if (rule == SPUGATE_RP_FIRST_CONTACT)
		logical = anchor_logical_first(cfg, a0, a1, b0, b1, h.spi_i);
	else
		logical = anchor_logical(cfg, a0, a1, b0, b1);

select:
	count(rule);
	physical = anchor_physical(logical);
	err = bpf_sk_select_reuseport(md, &workers, &physical, 0);
	if (err == -ENOENT)
		return count(SPUGATE_RP_NO_WORKER);
	if (err)
		return count(SPUGATE_RP_SELECT_FAILED);
	return count(SPUGATE_RP_SELECTED);
}

char _license[] SEC("license") = "Dual MIT/GPL";
