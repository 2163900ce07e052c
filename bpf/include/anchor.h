/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * The anchor function, shared by the XDP steering program and the
 * SO_REUSEPORT selector so that ESP and IKE of one tunnel meet on one SPU.
 * dataplane/anchor is the same function in Go; a privileged test runs both
 * over thousands of address pairs and SPIs and compares.
 *
 *   key      = the two tunnel endpoints as 16-byte IPv6 (IPv4 v4-mapped),
 *              the bytewise smaller first, so both directions and both
 *              gateways build the same key
 *   logical  = SipHash-2-4(config key, key) mod L: the default anchor of a
 *              tunnel, and that of ESP fragments (anchor_logical)
 *            = (SPI * L) >> 32 for inbound ESP, whose SPI's top bits hold
 *              its IKE SA's logical SPU (anchor_spi_logical)
 *   physical = spu_map[logical]
 *
 * Including this header defines the config and spu_map maps in the object.
 */
#ifndef SPUGATE_ANCHOR_H
#define SPUGATE_ANCHOR_H

#include "spugate.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct spugate_config);
} config SEC(".maps");

/* logical SPU -> physical SPU; only the first L entries are used. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SPUGATE_MAX_LOGICAL);
	__type(key, __u32);
	__type(value, __u32);
} spu_map SEC(".maps");

/* The canonical anchor key, as the four little-endian words SipHash eats. */
struct anchor_key {
	__u64 w[4];
};

#define SIP_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

#define SIP_ROUND(v0, v1, v2, v3)                                              \
	do {                                                                   \
		v0 += v1;                                                      \
		v1 = SIP_ROTL(v1, 13);                                         \
		v1 ^= v0;                                                      \
		v0 = SIP_ROTL(v0, 32);                                         \
		v2 += v3;                                                      \
		v3 = SIP_ROTL(v3, 16);                                         \
		v3 ^= v2;                                                      \
		v0 += v3;                                                      \
		v3 = SIP_ROTL(v3, 21);                                         \
		v3 ^= v0;                                                      \
		v2 += v1;                                                      \
		v1 = SIP_ROTL(v1, 17);                                         \
		v1 ^= v2;                                                      \
		v2 = SIP_ROTL(v2, 32);                                         \
	} while (0)

#define SIP_COMPRESS(v0, v1, v2, v3, m)                                        \
	do {                                                                   \
		v3 ^= (m);                                                     \
		SIP_ROUND(v0, v1, v2, v3);                                     \
		SIP_ROUND(v0, v1, v2, v3);                                     \
		v0 ^= (m);                                                     \
	} while (0)

/*
 * SipHash-2-4 of exactly 32 bytes: four message words, then the final block
 * that holds only the length (32 << 56), since 32 is a multiple of 8.
 */
static __always_inline __u64 siphash24_32(__u64 k0, __u64 k1,
					  const struct anchor_key *k)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 b = 32ULL << 56;

	SIP_COMPRESS(v0, v1, v2, v3, k->w[0]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[1]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[2]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[3]);
	SIP_COMPRESS(v0, v1, v2, v3, b);

	v2 ^= 0xff;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * SipHash-2-4 of exactly 40 bytes: the anchor key's four words, then w4
 * (the next eight bytes as they lie in memory, little-endian), then the
 * length block (40 << 56). The SO_REUSEPORT selector anchors an IKE_SA_INIT
 * request by the anchor key followed by the initiator's SPI
 * (dataplane/anchor's LogicalFirst).
 */
static __always_inline __u64 siphash24_40(__u64 k0, __u64 k1,
					  const struct anchor_key *k, __u64 w4)
{
	__u64 v0 = k0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = k1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = k0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = k1 ^ 0x7465646279746573ULL;
	__u64 b = 40ULL << 56;

	SIP_COMPRESS(v0, v1, v2, v3, k->w[0]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[1]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[2]);
	SIP_COMPRESS(v0, v1, v2, v3, k->w[3]);
	SIP_COMPRESS(v0, v1, v2, v3, w4);
	SIP_COMPRESS(v0, v1, v2, v3, b);

	v2 ^= 0xff;
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	SIP_ROUND(v0, v1, v2, v3);
	return v0 ^ v1 ^ v2 ^ v3;
}

/*
 * anchor_key_make orders two 16-byte addresses, given as little-endian
 * word pairs loaded straight from their bytes. Byte order of an address is
 * big-endian, so the words are swapped for the comparison only.
 */
static __always_inline void anchor_key_make(struct anchor_key *k, __u64 a0,
					    __u64 a1, __u64 b0, __u64 b1)
{
	__u64 ah = bpf_be64_to_cpu(a0), bh = bpf_be64_to_cpu(b0);
	int a_first = ah < bh || (ah == bh && bpf_be64_to_cpu(a1) <= bpf_be64_to_cpu(b1));

	if (a_first) {
		k->w[0] = a0;
		k->w[1] = a1;
		k->w[2] = b0;
		k->w[3] = b1;
	} else {
		k->w[0] = b0;
		k->w[1] = b1;
		k->w[2] = a0;
		k->w[3] = a1;
	}
}

/* The 64-bit words of a v4-mapped address ::ffff:a.b.c.d, from the 4 bytes. */
#define V4MAPPED_W1(be32) (0xffff0000ULL | ((__u64)(be32) << 32))

/*
 * anchor_logical returns the logical SPU of the endpoints (a, b) under
 * cfg, whose logical_spus the caller has checked to be non-zero.
 */
static __always_inline __u32 anchor_logical(const struct spugate_config *cfg,
					    __u64 a0, __u64 a1, __u64 b0,
					    __u64 b1)
{
	struct anchor_key k;

	anchor_key_make(&k, a0, a1, b0, b1);
	return siphash24_32(cfg->siphash_k0, cfg->siphash_k1, &k) %
	       (__u64)cfg->logical_spus;
}

/*
 * anchor_spi_logical returns the logical SPU of inbound ESP whose SPI is
 * spi_be (as it travels, big-endian) under cfg: ((u64)ntohl(spi) * L) >>
 * 32. For the power-of-two L that spud requires it is exactly the SPI's
 * top log2(L) bits, where spud encodes the logical SPU of the SPIs it
 * allocates (anchor.SPICodec); for any L it is in range. A manually keyed
 * SA with an arbitrary SPI is installed where this puts its packets.
 */
static __always_inline __u32 anchor_spi_logical(const struct spugate_config *cfg,
						__u32 spi_be)
{
	return ((__u64)bpf_ntohl(spi_be) * cfg->logical_spus) >> 32;
}

/* anchor_physical maps a logical SPU through spu_map; 0 if out of range. */
static __always_inline __u32 anchor_physical(__u32 logical)
{
	__u32 *p = bpf_map_lookup_elem(&spu_map, &logical);

	return p ? *p : 0;
}

#endif
