//go:build ignore

/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * spugate's XDP steering program.
 *
 * Every frame on an interface spud serves passes here first:
 *
 *   IKE (UDP 500, UDP 4500 with the non-ESP marker, NAT keepalives) to a
 *   local address, and everything we cannot or need not handle -> XDP_PASS,
 *   to the kernel and iked's sockets, counted by reason.
 *
 *   ESP and UDP-encapsulated ESP to a local tunnel endpoint, their IP
 *   fragments, and cleartext that matches the SPD on a protected interface
 *   -> the AF_XDP socket of the rx queue, with the anchor SPU in the
 *   steering metadata: for ESP the logical SPU its SPI encodes (its IKE
 *   SA's), for fragments the hash of the outer addresses, for cleartext
 *   its policy's, from the SPD.
 *
 * The program cannot move a frame to another queue's socket (AF_XDP only
 * accepts frames from the queue it is bound to), so it only names the
 * anchor; the SPU that owns the queue hands the frame on when the anchor is
 * another SPU.
 *
 * The metadata reaches userspace by one of three carriers, one program
 * each, because kernels and drivers differ in what they allow (spud loads
 * the best one this kernel accepts):
 *
 *   spugate_meta  the XDP metadata area (bpf_xdp_adjust_meta), just before
 *                 the frame; where a driver has no room for it at run time,
 *                 the frame gets a shim instead (counted);
 *   spugate_shim  a shim of the same bytes in front of the Ethernet header
 *                 (bpf_xdp_adjust_head), which the SPU trims: for kernels
 *                 that refuse bpf_xdp_adjust_meta;
 *   spugate_none  nothing: the SPU classifies the frame again itself.
 *
 * Whatever the carrier, a frame that goes to the kernel leaves as it came.
 */

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#include "anchor.h"

/*
 * Local tunnel endpoints: ESP and UDP-ESP to them are ours, the rest is
 * transit. One entry per address of the gateway, not per tunnel: a handful
 * in a 65536-entry map, so not preallocated (5.5 MiB of kernel memory up
 * front, where the buckets alone take 1 MiB); entries come and go only with
 * a local address's first and last inbound SA, never on the packet path.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spugate_addr);
	__type(value, __u8);
} local_addrs SEC(".maps");

/*
 * The SPD, in two stages (dataplane/steer/spd.go). The max_entries below
 * are placeholders: spud sizes the four tries when it loads them
 * (-max-policies; steer.Options.MaxPolicies), which it may, as LPM tries
 * are BPF_F_NO_PREALLOC and take memory only for entries in use.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spugate_spd4_dst_key);
	__type(value, __u32);
} spd4_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spugate_spd4_src_key);
	__type(value, struct spugate_policy);
} spd4_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spugate_spd6_dst_key);
	__type(value, __u32);
} spd6_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct spugate_spd6_src_key);
	__type(value, struct spugate_policy);
} spd6_src SEC(".maps");

/* ingress ifindex -> interface slot in xsks. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SPUGATE_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} ifslots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, SPUGATE_MAX_IFACES * SPUGATE_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SPUGATE_CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

#define IKE_PORT 500
#define NATT_PORT 4500
#define ESP_HDR_LEN 8 /* SPI and sequence number */
#define IPV6_MAX_EXT_HDRS 8
#define IPV4_MF 0x2000
#define IPV4_OFFSET 0x1fff
#define IPV6_FRAG_OFFSET 0xfff8
#define IPV6_FRAG_MF 0x0001

/* What the parser learned about a frame. Offsets count from the frame start. */
struct pkt {
	/* Addresses as the little-endian words of their 16 bytes, IPv4 v4-mapped. */
	__u64 src0, src1, dst0, dst1;
	__u32 l3_off;
	__u32 l4_off;
	__u32 l3_end; /* where the IP length says the packet ends */
	__u8 proto;   /* upper-layer protocol after any extension headers */
	__u8 flags;   /* SPUGATE_META_* */
	__u8 fragment;
};

static __always_inline void count(__u32 c)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &c);

	/* Per-CPU: no other CPU writes this slot, so no atomic is needed. */
	if (v)
		*v += 1;
}

static __always_inline int pass(__u32 c)
{
	count(c);
	return XDP_PASS;
}

static __always_inline int parse_ipv4(void *data, void *end, struct pkt *p,
				      __u32 off)
{
	struct iphdr *ip = data + off;
	__u32 ihl, tot;
	__u16 frag;

	if ((void *)(ip + 1) > end)
		return SPUGATE_CNT_PASS_TRUNCATED;
	if (ip->version != 4)
		return SPUGATE_CNT_PASS_BAD_VERSION;
	ihl = ip->ihl * 4;
	if (ihl < sizeof(*ip))
		return SPUGATE_CNT_PASS_BAD_IHL;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < ihl)
		return SPUGATE_CNT_PASS_BAD_LENGTH;
	/* Trailing bytes past tot are link padding; fewer bytes are a cut frame. */
	if (data + off + tot > end)
		return SPUGATE_CNT_PASS_BAD_LENGTH;

	p->src0 = 0;
	p->src1 = V4MAPPED_W1(ip->saddr);
	p->dst0 = 0;
	p->dst1 = V4MAPPED_W1(ip->daddr);
	p->proto = ip->protocol;
	p->l4_off = off + ihl;
	p->l3_end = off + tot;
	if (ihl > sizeof(*ip))
		p->flags |= SPUGATE_META_IP_OPTIONS;
	frag = bpf_ntohs(ip->frag_off);
	if (frag & (IPV4_MF | IPV4_OFFSET)) {
		p->fragment = 1;
		p->flags |= SPUGATE_META_FRAGMENT;
	}
	return -1;
}

struct ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, M flag in bit 0 */
	__be32 id;
};

static __always_inline int parse_ipv6(void *data, void *end, struct pkt *p,
				      __u32 off)
{
	struct ipv6hdr *ip6 = data + off;
	__u32 plen, hoff, l3_end;
	__u8 nh;
	int i;

	if ((void *)(ip6 + 1) > end)
		return SPUGATE_CNT_PASS_TRUNCATED;
	if (ip6->version != 6)
		return SPUGATE_CNT_PASS_BAD_VERSION;
	plen = bpf_ntohs(ip6->payload_len);
	/* Zero is a jumbogram (RFC 2675), which no link we serve carries. */
	if (plen == 0)
		return SPUGATE_CNT_PASS_BAD_LENGTH;
	l3_end = off + sizeof(*ip6) + plen;
	if (data + l3_end > end)
		return SPUGATE_CNT_PASS_BAD_LENGTH;

	__builtin_memcpy(&p->src0, &ip6->saddr.in6_u.u6_addr8[0], 8);
	__builtin_memcpy(&p->src1, &ip6->saddr.in6_u.u6_addr8[8], 8);
	__builtin_memcpy(&p->dst0, &ip6->daddr.in6_u.u6_addr8[0], 8);
	__builtin_memcpy(&p->dst1, &ip6->daddr.in6_u.u6_addr8[8], 8);
	p->flags |= SPUGATE_META_IPV6;
	p->l3_end = l3_end;

	nh = ip6->nexthdr;
	hoff = off + sizeof(*ip6);
	/*
	 * Walk the extension headers a router may see before ESP or the
	 * transport header. The chain is bounded so the verifier can see the
	 * loop end; a longer chain is passed to the kernel, counted.
	 */
#pragma unroll
	for (i = 0; i < IPV6_MAX_EXT_HDRS; i++) {
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
		    nh == IPPROTO_DSTOPTS) {
			__u8 *h = data + hoff;

			if ((void *)(h + 2) > end)
				return SPUGATE_CNT_PASS_BAD_EXT_HDR;
			nh = h[0];
			hoff += ((__u32)h[1] + 1) * 8;
		} else if (nh == IPPROTO_FRAGMENT) {
			struct ipv6_frag_hdr *f = data + hoff;
			__u16 fo;

			if ((void *)(f + 1) > end)
				return SPUGATE_CNT_PASS_BAD_EXT_HDR;
			nh = f->nexthdr;
			hoff += sizeof(*f);
			fo = bpf_ntohs(f->frag_off);
			/* Offset 0 without M is an atomic fragment: a whole packet. */
			if (fo & (IPV6_FRAG_OFFSET | IPV6_FRAG_MF)) {
				p->fragment = 1;
				p->flags |= SPUGATE_META_FRAGMENT;
			}
			/* After a non-first fragment's header comes data, not headers. */
			if (fo & IPV6_FRAG_OFFSET) {
				p->flags |= SPUGATE_META_IP_OPTIONS;
				goto done;
			}
		} else {
			goto done;
		}
		p->flags |= SPUGATE_META_IP_OPTIONS;
		if (hoff > l3_end)
			return SPUGATE_CNT_PASS_BAD_EXT_HDR;
	}
	if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING ||
	    nh == IPPROTO_DSTOPTS || nh == IPPROTO_FRAGMENT)
		return SPUGATE_CNT_PASS_BAD_EXT_HDR;
done:
	if (hoff > l3_end)
		return SPUGATE_CNT_PASS_BAD_EXT_HDR;
	p->proto = nh;
	p->l4_off = hoff;
	return -1;
}

static __always_inline int parse(void *data, void *end, struct pkt *p)
{
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return SPUGATE_CNT_PASS_TRUNCATED;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		struct {
			__be16 tci;
			__be16 proto;
		} *vlan = data + off;

		if ((void *)(vlan + 1) > end)
			return SPUGATE_CNT_PASS_TRUNCATED;
		proto = vlan->proto;
		off += sizeof(*vlan);
		p->flags |= SPUGATE_META_VLAN;
	}
	p->l3_off = off;
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(data, end, p, off);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(data, end, p, off);
	return SPUGATE_CNT_PASS_NOT_IP;
}

static __always_inline int is_local(const struct pkt *p)
{
	struct spugate_addr a;

	__builtin_memcpy(&a.addr[0], &p->dst0, 8);
	__builtin_memcpy(&a.addr[8], &p->dst1, 8);
	return bpf_map_lookup_elem(&local_addrs, &a) != 0;
}

static __always_inline const struct spugate_config *get_config(void)
{
	__u32 zero = 0;
	const struct spugate_config *cfg = bpf_map_lookup_elem(&config, &zero);

	if (!cfg || cfg->logical_spus == 0 ||
	    cfg->logical_spus > SPUGATE_MAX_LOGICAL)
		return 0;
	return cfg;
}

static __always_inline __u32 redirect_counter(__u8 class)
{
	switch (class) {
	case SPUGATE_CLASS_ESP:
		return SPUGATE_CNT_REDIRECT_ESP;
	case SPUGATE_CLASS_UDP_ESP:
		return SPUGATE_CNT_REDIRECT_UDP_ESP;
	case SPUGATE_CLASS_CLEARTEXT:
		return SPUGATE_CNT_REDIRECT_CLEARTEXT;
	default:
		return SPUGATE_CNT_REDIRECT_ESP_FRAGMENT;
	}
}

/* A steered frame with no socket to take it: to the kernel, or dropped. */
static __always_inline int no_xsk(const struct spugate_config *cfg, __u8 class)
{
	if (class == SPUGATE_CLASS_CLEARTEXT &&
	    (cfg->flags & SPUGATE_CONFIG_FAIL_CLOSED)) {
		count(SPUGATE_CNT_DROP_NO_XSK);
		return XDP_DROP;
	}
	return pass(SPUGATE_CNT_PASS_NO_XSK);
}

/* The 20 bytes of metadata go in the metadata area just before the frame. */
static __always_inline int put_meta(struct xdp_md *ctx, const struct spugate_meta *m)
{
	void *meta, *data;

	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(*m)))
		return -1;
	meta = (void *)(long)ctx->data_meta;
	data = (void *)(long)ctx->data;
	if (meta + sizeof(*m) > data) {
		bpf_xdp_adjust_meta(ctx, (int)sizeof(*m));
		return -1;
	}
	__builtin_memcpy(meta, m, sizeof(*m));
	return SPUGATE_CARRIER_META;
}

/* ... or in front of the Ethernet header, as part of the frame. */
static __always_inline int put_shim(struct xdp_md *ctx, const struct spugate_meta *m)
{
	void *data, *end;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(*m)))
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(*m) > end) {
		bpf_xdp_adjust_head(ctx, (int)sizeof(*m));
		return -1;
	}
	__builtin_memcpy(data, m, sizeof(*m));
	return SPUGATE_CARRIER_SHIM;
}

/*
 * put writes the metadata by the program's carrier and returns the carrier
 * it used, or -1 when the driver gave room for neither.
 */
static __always_inline int put(struct xdp_md *ctx, const struct spugate_meta *m,
			       int carrier)
{
	if (carrier == SPUGATE_CARRIER_NONE)
		return SPUGATE_CARRIER_NONE;
	if (carrier == SPUGATE_CARRIER_META) {
		int got = put_meta(ctx, m);

		if (got >= 0)
			return got;
		/* The kernel has the helper, this driver no metadata room. */
		count(SPUGATE_CNT_META_TO_SHIM);
	}
	return put_shim(ctx, m);
}

/* take removes what put added, so that the kernel gets the frame as it came. */
static __always_inline void take(struct xdp_md *ctx, int got)
{
	if (got == SPUGATE_CARRIER_META)
		bpf_xdp_adjust_meta(ctx, (int)sizeof(struct spugate_meta));
	else if (got == SPUGATE_CARRIER_SHIM)
		bpf_xdp_adjust_head(ctx, (int)sizeof(struct spugate_meta));
}

/*
 * steer hands the frame to the AF_XDP socket of its (interface, rx queue)
 * with the metadata by the program's carrier. Packet pointers are invalid
 * after this (the frame's bounds move), so callers read the frame first.
 */
static __always_inline int steer(struct xdp_md *ctx,
				 const struct spugate_config *cfg,
				 const struct pkt *p, __u8 class, __u32 logical,
				 __u32 policy_id, int carrier)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 queue = ctx->rx_queue_index;
	struct spugate_meta m = {};
	__u32 *slot, idx;
	long verdict;
	int got;

	slot = bpf_map_lookup_elem(&ifslots, &ifindex);
	if (!slot || *slot >= SPUGATE_MAX_IFACES || queue >= SPUGATE_MAX_QUEUES)
		return no_xsk(cfg, class);
	idx = *slot * SPUGATE_MAX_QUEUES + queue;

	if (carrier != SPUGATE_CARRIER_NONE) {
		m.magic = SPUGATE_META_MAGIC;
		m.logical_spu = logical;
		m.physical_spu = anchor_physical(logical);
		m.policy_id = policy_id;
		m.l3_offset = p->l3_off;
		m.l4_offset = p->l4_off;
		m.rx_queue = queue;
		m.class = class;
		m.flags = p->flags;
	}
	got = put(ctx, &m, carrier);
	if (got < 0)
		goto meta_failed;

	/* The low bits of the flags are the verdict when the slot is empty. */
	verdict = bpf_redirect_map(&xsks, idx, XDP_PASS);
	if (verdict != XDP_REDIRECT) {
		take(ctx, got);
		return no_xsk(cfg, class);
	}
	count(redirect_counter(class));
	return XDP_REDIRECT;

meta_failed:
	if (class == SPUGATE_CLASS_CLEARTEXT &&
	    (cfg->flags & SPUGATE_CONFIG_FAIL_CLOSED)) {
		count(SPUGATE_CNT_DROP_NO_XSK);
		return XDP_DROP;
	}
	return pass(SPUGATE_CNT_PASS_META_FAILED);
}

/*
 * The anchor of a tunnel's outer addresses. Without a carrier nobody reads
 * it here: the SPU computes it again.
 */
static __always_inline __u32 outer_anchor(const struct spugate_config *cfg,
					  const struct pkt *p, int carrier)
{
	if (carrier == SPUGATE_CARRIER_NONE)
		return 0;
	return anchor_logical(cfg, p->src0, p->src1, p->dst0, p->dst1);
}

/*
 * The anchor of ESP with SPI spi_be: the logical SPU of its IKE SA, which
 * the SPI's top bits hold. Without a carrier the SPU computes it again.
 */
static __always_inline __u32 spi_anchor(const struct spugate_config *cfg,
					__u32 spi_be, int carrier)
{
	if (carrier == SPUGATE_CARRIER_NONE)
		return 0;
	return anchor_spi_logical(cfg, spi_be);
}

/*
 * ESP or one of its fragments, to a local endpoint. A whole ESP packet is
 * anchored by its SPI; fragments by the outer addresses, since only the
 * first carries the SPI and all must meet for reassembly (the SPU that
 * reassembles hands the whole packet to its SPI's anchor).
 */
static __always_inline int esp(struct xdp_md *ctx, void *data, const struct pkt *p,
			       __u8 class, int carrier)
{
	void *end = (void *)(long)ctx->data_end;
	const struct spugate_config *cfg;
	__u32 *spi;

	if (class == SPUGATE_CLASS_ESP_FRAGMENT) {
		cfg = get_config();
		if (!cfg)
			return pass(SPUGATE_CNT_PASS_UNCONFIGURED);
		return steer(ctx, cfg, p, class, outer_anchor(cfg, p, carrier), 0, carrier);
	}
	/* Bound by the IP length: link padding is not ESP. */
	spi = data + p->l4_off;
	if (p->l4_off + ESP_HDR_LEN > p->l3_end || (void *)(spi + 1) > end)
		return pass(SPUGATE_CNT_PASS_BAD_ESP);
	cfg = get_config();
	if (!cfg)
		return pass(SPUGATE_CNT_PASS_UNCONFIGURED);
	return steer(ctx, cfg, p, class, spi_anchor(cfg, *spi, carrier), 0, carrier);
}

#define NOT_OURS (-1)

/*
 * UDP to a local address: IKE to the kernel, UDP-ESP to userspace, other
 * ports NOT_OURS. Fragments go to the kernel: only the first one carries the
 * ports, so a later fragment cannot be told from a fragment of an IKE
 * message (large IKE_AUTH with certificates), which the kernel must
 * reassemble for iked. A UDP-ESP packet the kernel reassembles that way
 * reaches iked's port 4500 socket, not spud.
 */
static __always_inline int udp(struct xdp_md *ctx, void *data, const struct pkt *p,
			       int carrier)
{
	void *end = (void *)(long)ctx->data_end;
	struct udphdr *uh = data + p->l4_off;
	__u32 ulen, plen;
	__u8 *pl;

	if (p->fragment)
		return pass(SPUGATE_CNT_PASS_UDP_FRAGMENT);
	if (p->l4_off + sizeof(*uh) > p->l3_end || (void *)(uh + 1) > end)
		return pass(SPUGATE_CNT_PASS_BAD_UDP);
	ulen = bpf_ntohs(uh->len);
	if (ulen < sizeof(*uh) || p->l4_off + ulen > p->l3_end)
		return pass(SPUGATE_CNT_PASS_BAD_UDP);

	if (uh->dest == bpf_htons(IKE_PORT))
		return pass(SPUGATE_CNT_PASS_IKE);
	if (uh->dest != bpf_htons(NATT_PORT))
		return NOT_OURS;

	plen = ulen - sizeof(*uh);
	pl = (void *)(uh + 1);
	if (plen == 1) {
		if ((void *)(pl + 1) > end)
			return pass(SPUGATE_CNT_PASS_BAD_UDP);
		if (pl[0] == 0xff)
			return pass(SPUGATE_CNT_PASS_NATT_KEEPALIVE);
		return pass(SPUGATE_CNT_PASS_BAD_ESP);
	}
	/* A marker needs 4 bytes, ESP 8: shorter payloads are neither. */
	if (plen < 4 || (void *)(pl + 4) > end)
		return pass(SPUGATE_CNT_PASS_BAD_ESP);
	/* The non-ESP marker: four zero bytes where ESP's SPI would be. */
	if (*(__u32 *)pl == 0)
		return pass(SPUGATE_CNT_PASS_IKE_NATT);
	if (plen < ESP_HDR_LEN)
		return pass(SPUGATE_CNT_PASS_BAD_ESP);

	{
		const struct spugate_config *cfg = get_config();

		if (!cfg)
			return pass(SPUGATE_CNT_PASS_UNCONFIGURED);
		return steer(ctx, cfg, p, SPUGATE_CLASS_UDP_ESP,
			     spi_anchor(cfg, *(__u32 *)pl, carrier), 0, carrier);
	}
}

/*
 * Link-local, multicast and broadcast traffic is the link's own business
 * (ARP-free IPv6 neighbour discovery, routing protocols, DHCP): never
 * steered, whatever a wide policy says.
 */
static __always_inline int local_scope(const struct pkt *p)
{
	if (p->flags & SPUGATE_META_IPV6) {
		__u8 d0 = p->dst0, s0 = p->src0, d1 = p->dst0 >> 8, s1 = p->src0 >> 8;

		return d0 == 0xff || (d0 == 0xfe && (d1 & 0xc0) == 0x80) ||
		       (s0 == 0xfe && (s1 & 0xc0) == 0x80);
	} else {
		__u32 d = bpf_ntohl((__u32)(p->dst1 >> 32));
		__u32 s = bpf_ntohl((__u32)(p->src1 >> 32));

		return (d >> 28) == 0xe || d == 0xffffffff ||
		       (d >> 16) == 0xa9fe || (s >> 16) == 0xa9fe;
	}
}

/*
 * The SPD, in two LPM stages: (ingress ifindex, destination) picks a policy
 * group, (group, source) the policy in it. One LPM cannot match two
 * prefixes at once, so the longest destination match wins before the
 * source is looked at; the loader (dataplane/steer) copies the policies of
 * every wider destination prefix into each narrower group, so that a
 * policy matching both addresses is found whenever one exists. Protocol
 * and ports are not looked at here: userspace does the exact SPD match.
 */
static __always_inline const struct spugate_policy *spd_lookup(__u32 ifindex,
							       const struct pkt *p)
{
	__u32 *group;

	if (p->flags & SPUGATE_META_IPV6) {
		struct spugate_spd6_dst_key dk = { .prefixlen = 32 + 128, .ifindex = ifindex };
		struct spugate_spd6_src_key sk = { .prefixlen = 32 + 128 };

		__builtin_memcpy(&dk.addr[0], &p->dst0, 8);
		__builtin_memcpy(&dk.addr[8], &p->dst1, 8);
		group = bpf_map_lookup_elem(&spd6_dst, &dk);
		if (!group)
			return 0;
		sk.group = *group;
		__builtin_memcpy(&sk.addr[0], &p->src0, 8);
		__builtin_memcpy(&sk.addr[8], &p->src1, 8);
		return bpf_map_lookup_elem(&spd6_src, &sk);
	} else {
		struct spugate_spd4_dst_key dk = { .prefixlen = 32 + 32, .ifindex = ifindex };
		struct spugate_spd4_src_key sk = { .prefixlen = 32 + 32 };
		__u32 d = p->dst1 >> 32, s = p->src1 >> 32;

		__builtin_memcpy(dk.addr, &d, 4);
		group = bpf_map_lookup_elem(&spd4_dst, &dk);
		if (!group)
			return 0;
		sk.group = *group;
		__builtin_memcpy(sk.addr, &s, 4);
		return bpf_map_lookup_elem(&spd4_src, &sk);
	}
}

static __always_inline int cleartext(struct xdp_md *ctx, const struct pkt *p,
				     int carrier)
{
	const struct spugate_policy *pol;
	const struct spugate_config *cfg;
	__u32 logical, policy_id;

	if (local_scope(p))
		return pass(SPUGATE_CNT_PASS_LOCAL_SCOPE);
	pol = spd_lookup(ctx->ingress_ifindex, p);
	if (!pol) {
		if (p->proto == IPPROTO_ESP)
			return pass(SPUGATE_CNT_PASS_TRANSIT_ESP);
		return pass(SPUGATE_CNT_PASS_NO_POLICY);
	}
	if (pol->flags & SPUGATE_POLICY_BYPASS)
		return pass(SPUGATE_CNT_PASS_BYPASS);
	/* Copy out of the map value before the map may change under us. */
	logical = pol->logical_spu;
	policy_id = pol->policy_id;
	cfg = get_config();
	if (!cfg)
		return pass(SPUGATE_CNT_PASS_UNCONFIGURED);
	if (logical >= cfg->logical_spus)
		logical %= cfg->logical_spus;
	return steer(ctx, cfg, p, SPUGATE_CLASS_CLEARTEXT, logical, policy_id, carrier);
}

static __always_inline int steer_frame(struct xdp_md *ctx, int carrier)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct pkt p = {};
	int r;

	r = parse(data, end, &p);
	if (r >= 0)
		return pass(r);

	if (is_local(&p)) {
		if (p.proto == IPPROTO_ESP)
			return esp(ctx, data, &p,
				   p.fragment ? SPUGATE_CLASS_ESP_FRAGMENT : SPUGATE_CLASS_ESP,
				   carrier);
		if (p.proto == IPPROTO_UDP) {
			r = udp(ctx, data, &p, carrier);
			if (r != NOT_OURS)
				return r;
		}
	}
	return cleartext(ctx, &p, carrier);
}

SEC("xdp")
int spugate_meta(struct xdp_md *ctx)
{
	return steer_frame(ctx, SPUGATE_CARRIER_META);
}

SEC("xdp")
int spugate_shim(struct xdp_md *ctx)
{
	return steer_frame(ctx, SPUGATE_CARRIER_SHIM);
}

SEC("xdp")
int spugate_none(struct xdp_md *ctx)
{
	return steer_frame(ctx, SPUGATE_CARRIER_NONE);
}

char _license[] SEC("license") = "Dual MIT/GPL";
