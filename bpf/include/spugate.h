/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Types shared by spugate's BPF programs and mirrored in Go. The Go mirrors
 * (dataplane/steer, control/reuseport) are checked against the types bpf2go
 * generates from this file, so a change here that is not made there fails
 * `go test`.
 */
#ifndef SPUGATE_H
#define SPUGATE_H

#include "bpf_defs.h"

/* Largest L (number of logical SPUs) the spu_map can hold. */
#define SPUGATE_MAX_LOGICAL 4096
/*
 * XSKMAP slots: an AF_XDP socket is bound to one (interface, rx queue), and a
 * redirect to a socket of another interface drops the frame, so the XSKMAP is
 * indexed by interface slot * SPUGATE_MAX_QUEUES + rx queue.
 */
#define SPUGATE_MAX_IFACES 16
#define SPUGATE_MAX_QUEUES 64
/* Worker sockets a SO_REUSEPORT group can hold (indexed by physical SPU). */
#define SPUGATE_MAX_WORKERS 1024

/*
 * The anchor configuration, set by spud (XDP) and iked (SO_REUSEPORT) from
 * the same deployment configuration. logical_spus == 0 means "not
 * configured": nothing is steered.
 */
struct spugate_config {
	__u64 siphash_k0; /* key bytes 0..7, little-endian */
	__u64 siphash_k1; /* key bytes 8..15, little-endian */
	__u32 logical_spus;
	__u32 flags; /* SPUGATE_CONFIG_* */
};

/*
 * Cleartext that matches the SPD but finds no AF_XDP socket on its queue is
 * dropped instead of passed: without spud the kernel would route it in the
 * clear, which a gateway must not do for traffic a policy protects.
 */
#define SPUGATE_CONFIG_FAIL_CLOSED 0x1

/* What the steering program found, as told to userspace in the metadata. */
enum spugate_class {
	SPUGATE_CLASS_NONE = 0,
	SPUGATE_CLASS_ESP = 1,          /* IP protocol 50 */
	SPUGATE_CLASS_UDP_ESP = 2,      /* ESP in UDP 4500, RFC 3948 */
	SPUGATE_CLASS_CLEARTEXT = 3,    /* matched the SPD on a protected interface */
	SPUGATE_CLASS_ESP_FRAGMENT = 4, /* an IP fragment of an ESP packet */
};

/*
 * Where the metadata of a redirected frame travels: the XDP metadata area
 * just before the frame, a shim in front of the frame, or nowhere (the
 * reader classifies the frame itself). One steering program per carrier.
 */
enum spugate_carrier {
	SPUGATE_CARRIER_NONE = 0,
	SPUGATE_CARRIER_META = 1,
	SPUGATE_CARRIER_SHIM = 2,
};

/* Written with every redirected packet, by the program's carrier. */
#define SPUGATE_META_MAGIC 0x31475053 /* "SPG1" in memory; bump on a layout change */

#define SPUGATE_META_IPV6 0x01       /* the outer header is IPv6 */
#define SPUGATE_META_VLAN 0x02       /* one 802.1Q tag follows the MAC addresses */
#define SPUGATE_META_IP_OPTIONS 0x04 /* IPv4 options or IPv6 extension headers */
#define SPUGATE_META_FRAGMENT 0x08   /* the packet is an IP fragment */

struct spugate_meta {
	__u32 magic;
	__u16 logical_spu;
	__u16 physical_spu;
	__u32 policy_id;   /* cleartext: the SPD policy that matched; else 0 */
	__u16 l3_offset;   /* the IP header: 14, or 18 with a VLAN tag */
	__u16 l4_offset;   /* the first byte after the IP header chain */
	__u16 rx_queue;
	__u8 class;        /* enum spugate_class */
	__u8 flags;        /* SPUGATE_META_* */
};

_Static_assert(sizeof(struct spugate_meta) % 4 == 0 &&
		       sizeof(struct spugate_meta) <= 32,
	       "XDP metadata must be a multiple of 4 bytes and at most 32");

/* The XDP program's per-CPU counters, one per verdict and reason. */
enum spugate_counter {
	SPUGATE_CNT_REDIRECT_ESP = 0,
	SPUGATE_CNT_REDIRECT_UDP_ESP,
	SPUGATE_CNT_REDIRECT_CLEARTEXT,
	SPUGATE_CNT_REDIRECT_ESP_FRAGMENT,
	SPUGATE_CNT_PASS_NO_XSK,       /* steered, but no AF_XDP socket on the queue */
	SPUGATE_CNT_DROP_NO_XSK,       /* the same for cleartext, fail-closed */
	SPUGATE_CNT_PASS_IKE,          /* UDP 500 to a local address */
	SPUGATE_CNT_PASS_IKE_NATT,     /* UDP 4500 with the non-ESP marker */
	SPUGATE_CNT_PASS_NATT_KEEPALIVE,
	SPUGATE_CNT_PASS_UDP_FRAGMENT, /* UDP fragment to a local address */
	SPUGATE_CNT_PASS_TRANSIT_ESP,  /* ESP or UDP-ESP to a foreign address */
	SPUGATE_CNT_PASS_NO_POLICY,    /* IP that no SPD entry covers */
	SPUGATE_CNT_PASS_BYPASS,       /* an SPD entry that says "bypass" */
	SPUGATE_CNT_PASS_LOCAL_SCOPE,  /* link-local, multicast, broadcast */
	SPUGATE_CNT_PASS_NOT_IP,
	SPUGATE_CNT_PASS_TRUNCATED,    /* frame ends inside an L2 or L3 header */
	SPUGATE_CNT_PASS_BAD_VERSION,  /* IP version does not match the EtherType */
	SPUGATE_CNT_PASS_BAD_IHL,
	SPUGATE_CNT_PASS_BAD_LENGTH,   /* IP length below the header or past the frame */
	SPUGATE_CNT_PASS_BAD_EXT_HDR,  /* IPv6 extension chain too long or truncated */
	SPUGATE_CNT_PASS_BAD_UDP,      /* UDP header or length inconsistent */
	SPUGATE_CNT_PASS_BAD_ESP,      /* shorter than SPI + sequence number */
	SPUGATE_CNT_PASS_UNCONFIGURED, /* no anchor configuration yet */
	SPUGATE_CNT_PASS_META_FAILED,  /* the driver gave room for no carrier */
	SPUGATE_CNT_META_TO_SHIM,      /* no metadata room at run time: a shim instead */
	SPUGATE_CNT_MAX,
};

/*
 * The SO_REUSEPORT selector's per-CPU counters: every datagram counts once
 * in the first five (what became of it) and, if its logical SPU was found,
 * once in the last four (the rule that found it, dataplane/anchor's By*).
 */
enum spugate_rp_counter {
	SPUGATE_RP_SELECTED = 0,      /* the anchor's worker socket got it */
	SPUGATE_RP_NO_WORKER,         /* no socket for that SPU: kernel's choice */
	SPUGATE_RP_SELECT_FAILED,     /* bpf_sk_select_reuseport refused: kernel's choice */
	SPUGATE_RP_UNCONFIGURED,      /* no anchor configuration: kernel's choice */
	SPUGATE_RP_BAD_PACKET,        /* addresses unreadable: kernel's choice */
	SPUGATE_RP_BY_RESPONDER_SPI,  /* IKE from the initiator: our responder SPI */
	SPUGATE_RP_BY_INITIATOR_SPI,  /* IKE from the responder: our initiator SPI */
	SPUGATE_RP_FIRST_CONTACT,     /* IKE_SA_INIT request: addresses and SPIi hashed */
	SPUGATE_RP_BY_ADDRESSES,      /* no IKE header: the endpoints' hash */
	SPUGATE_RP_MAX,
};

/* The value of a selector group's rp_group entry. */
#define SPUGATE_RP_GROUP_NATT 0x1 /* the NAT-T port: IKE follows a non-ESP marker */

/*
 * The SPD in two LPM stages. Stage one, keyed by (ingress ifindex,
 * destination), gives a policy group; stage two, keyed by (group, source),
 * gives the policy. prefixlen counts the 32 bits of ifindex or group, which
 * are always matched whole.
 */
struct spugate_spd4_dst_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 addr[4];
};

struct spugate_spd6_dst_key {
	__u32 prefixlen;
	__u32 ifindex;
	__u8 addr[16];
};

struct spugate_spd4_src_key {
	__u32 prefixlen;
	__u32 group;
	__u8 addr[4];
};

struct spugate_spd6_src_key {
	__u32 prefixlen;
	__u32 group;
	__u8 addr[16];
};

#define SPUGATE_POLICY_BYPASS 0x1 /* matching traffic goes to the kernel */

struct spugate_policy {
	__u32 policy_id;
	__u16 logical_spu;
	__u16 flags; /* SPUGATE_POLICY_* */
};

/* A local tunnel endpoint, IPv4 as v4-mapped IPv6. */
struct spugate_addr {
	__u8 addr[16];
};

#endif
