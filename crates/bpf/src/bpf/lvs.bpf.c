// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * lvs.bpf.c — the kernel fast path of lvsd.
 *
 * Three programs share one classification:
 *
 *   lvs_tc_ingress  (tc clsact ingress)  forwards packets of connections in lvs_conns: NAT
 *                   both ways, DR, IP-in-IP. A new flow of a service whose scheduler the core
 *                   compiled into lvs_svcs/lvs_slots (rr, wrr, fo, sh, dh, mh) is scheduled
 *                   here, its entries made, and reported to user space (LVS_EV_NEW). Anything
 *                   it does not fully understand goes on unchanged (TC_ACT_OK).
 *   lvs_xdp         (XDP, in front of tc on NICs with native XDP) forwards packets of known
 *                   connections the same way, before the kernel builds an skb: the same
 *                   classification, the same entries and counters, the MAC addresses from
 *                   lvs_neigh. Everything else — new flows, a next hop missing from lvs_neigh —
 *                   it passes up (XDP_PASS) to lvs_tc_ingress, which decides as if lvs_xdp
 *                   were not there. XDP sees complete checksums only on real NICs (a veth fed
 *                   by a local stack hands it partial ones): lvsd attaches it only there.
 *   lvs_sock_filter (socket filter on lvsd's AF_PACKET sockets) lets a copy reach user space
 *                   only for the frames lvs_tc_ingress will not forward. The capture tap runs
 *                   before tc ingress, so both see the same map state for a frame.
 *
 * So user space (lvs_core::Director) stays the place where stateful schedulers run, ICMP
 * errors are built and odd packets are judged; the kernel repeats, per packet, the rewrite
 * the core decides for a connection — the same rewrite as crates/core/src/rewrite.rs, byte for
 * byte — and follows the core's own tables for new flows (both tested by
 * crates/bpf/tests/differential.rs through BPF_PROG_TEST_RUN).
 *
 * Layout: maps; parsing; scheduling; the plan (what would be done); rewriting; the entry
 * points.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "lvs.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* ---- maps (sizes are set by the loader before load) ------------------------------------ */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lvs_flow);
	__type(value, struct lvs_conn);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory follows the connections, not the limit */
} lvs_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lvs_svc_key);
	__type(value, struct lvs_svc);
	__uint(max_entries, 4096);
	/* Not preallocated: a replaced element is freed after an RCU grace period, so a program
	 * that looked the old one up reads (and moves the position of) that one, never another
	 * service's recycled element. */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lvs_svcs SEC(".maps");

/* The real servers new flows go to, by stats slot. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_dest);
	__uint(max_entries, 65536);
} lvs_dests SEC(".maps");

/* The services' compiled tables, each a range [base, base + len): lvs_dests indexes. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1 << 21);
} lvs_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lvs_route_key);
	__type(value, struct lvs_route);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lvs_routes SEC(".maps");

/* Sources new flows are never scheduled from here (a VIP, an address of the director, a
 * real server's, a connected subnet's broadcast address): the core's list
 * (lvs_core::director::refused_sources), for it to drop and count. The fixed martian ranges
 * are checked in code (martian()). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u8);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lvs_refused SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct lvs_neigh);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lvs_neigh SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lvs_ifmac);
	__uint(max_entries, 1024);
} lvs_ifmac SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_stats);
	__uint(max_entries, 65536);
} lvs_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LVS_C_MAX);
} lvs_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_tcp_table);
	__uint(max_entries, 1);
} lvs_tcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_config);
	__uint(max_entries, 1);
} lvs_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 23); /* 8 MiB: some 170,000 events */
} lvs_events SEC(".maps");

/* The reader is woken only once this much waits: a wake-up is an inter-processor interrupt
 * (a VM exit under a hypervisor), dearer than forwarding the packet; lvsd drains the ring on
 * every pass of its loop and before every control request anyway, at least once a tick. */
#define LVS_EVENTS_WAKE (1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_test_out);
	__uint(max_entries, 1);
} lvs_test SEC(".maps");

/* Set by the loader for BPF_PROG_TEST_RUN: record where a packet would have gone. The
 * verifier removes the recording when it is 0. */
const volatile __u32 lvs_test_mode = 0;

/* The skb's checksum state (read through the kernel's own sk_buff, CO-RE relocated:
 * __sk_buff does not expose ip_summed). */
struct sk_buff___lvs {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
#define CHECKSUM_NONE 0
#define CHECKSUM_COMPLETE 2
#define CHECKSUM_PARTIAL 3

static __always_inline __u32 ip_summed(struct __sk_buff *ctx)
{
	struct sk_buff___lvs *skb = bpf_cast_to_kern_ctx(ctx);

	return BPF_CORE_READ_BITFIELD(skb, ip_summed);
}

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&lvs_counters, &idx);

	if (c)
		*c += 1;
}

/* ---- parsing --------------------------------------------------------------------------- */

#define ETH_LEN 14
#define IP_LEN 20
#define TCP_CSUM 16
#define UDP_CSUM 6
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

/* One's-complement arithmetic exactly as lvs_wire::checksum does it (RFC 1624 eqn. 3), so
 * both paths write the same bytes, 0x0000 / 0xffff corner included. Words in host order. */
static __always_inline __u16 fold(__u32 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

static __always_inline __u32 sum32(__be32 a)
{
	__u32 h = bpf_ntohl(a);
	return (h >> 16) + (h & 0xffff);
}

/* A checksum field after the 32-bit word old became new. */
static __always_inline __u16 upd32(__u16 check, __be32 old, __be32 new)
{
	return ~fold((__u16)~check + (__u16)~fold(sum32(old)) + sum32(new));
}

/* ... after the 16-bit word old became new. */
static __always_inline __u16 upd16(__u16 check, __u16 old, __u16 new)
{
	return ~fold((__u16)~check + (__u16)~old + new);
}

/* A CHECKSUM_PARTIAL seed (non-complemented pseudo-header sum) after an address change. */
static __always_inline __u16 seed32(__u16 seed, __be32 old, __be32 new)
{
	return fold(seed + (__u16)~fold(sum32(old)) + sum32(new));
}

/* An IPv4 TCP/UDP packet's essentials. */
struct pkt {
	struct lvs_flow flow;
	__u32 ip_len; /* IPv4 total length */
	__u32 l4_off; /* from the frame start */
	__u8 tcp_flags;
	__u8 gso;
	__u8 trailer;
};

enum verdict {
	V_KERNEL = 0, /* not a unicast IPv4 TCP/UDP frame: none of our business */
	V_USER = 1,   /* user space decides (no entry, new SYN, too big, ...) */
	V_FORWARD = 2,
};

/* Which program classifies. */
enum mode {
	M_FILTER = 0, /* the socket filter: yes/no only, no sequence position taken */
	M_TC = 1,     /* tc ingress: schedules new flows */
	M_XDP = 2,    /* XDP: known flows only (a new one is tc's) */
};

/* The first bytes of a frame, copied out of the packet: enough for Ethernet, IPv4 with
 * options and a TCP header's flags. */
#define HDR_MAX (ETH_LEN + 60 + 20)
struct hdrs {
	__u8 b[HDR_MAX];
	__u32 len; /* bytes valid in b */
	__u32 frame_len;
};

/* tc: straight from the packet (pulling the headers into the linear part if needed). */
static __always_inline int hdrs_tc(struct __sk_buff *skb, struct hdrs *h)
{
	__u32 want = skb->len < HDR_MAX ? skb->len : HDR_MAX;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (data + want > end) {
		if (bpf_skb_pull_data(skb, want) < 0)
			return -1;
		data = (void *)(long)skb->data;
		end = (void *)(long)skb->data_end;
	}
	h->frame_len = skb->len;
	if (data + HDR_MAX <= end) {
		__builtin_memcpy(h->b, data, HDR_MAX);
		h->len = HDR_MAX;
		return 0;
	}
	/* A short frame: copy what there is. */
	__u64 n = want;
	barrier_var(n);
	if (n < ETH_LEN || n > HDR_MAX)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, h->b, n) < 0)
		return -1;
	h->len = n;
	return 0;
}

/* Socket filter: no direct packet access there. BPF_PROG_TEST_RUN hands a socket filter the
 * skb from the network header (a packet socket's filter sees it from the Ethernet header),
 * so in test mode it reads relative to the MAC header (test frames are linear) and counts the
 * Ethernet header into the length. */
static __always_inline int hdrs_filter(struct __sk_buff *skb, struct hdrs *h)
{
	__u32 flen = skb->len + (lvs_test_mode ? ETH_LEN : 0);
	__u64 n = flen < HDR_MAX ? flen : HDR_MAX;

	h->frame_len = flen;
	barrier_var(n);
	if (n < ETH_LEN || n > HDR_MAX)
		return -1;
	int r = lvs_test_mode ? bpf_skb_load_bytes_relative(skb, 0, h->b, n, BPF_HDR_START_MAC)
			      : bpf_skb_load_bytes(skb, 0, h->b, n);
	h->len = n;
	return r < 0 ? -1 : 0;
}

/* XDP: straight from the frame (linear: the program does not take multi-buffer frames). */
static __always_inline int hdrs_xdp(struct xdp_md *ctx, struct hdrs *h)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 n = end - data;

	h->frame_len = n;
	if (data + HDR_MAX <= end) {
		__builtin_memcpy(h->b, data, HDR_MAX);
		h->len = HDR_MAX;
		return 0;
	}
	barrier_var(n);
	if (n < ETH_LEN || n > HDR_MAX)
		return -1;
	if (bpf_xdp_load_bytes(ctx, 0, h->b, n) < 0)
		return -1;
	h->len = n;
	return 0;
}

/* What the frame's context says besides its bytes. */
struct meta {
	__u8 vlan;   /* a VLAN tag was taken off into metadata: the VLAN interface's frame */
	__u8 gso;    /* a segmentation-offload super-frame */
	__u8 summed; /* skb->ip_summed (XDP: CHECKSUM_NONE, the checksums are complete) */
};

static __always_inline int parse(struct hdrs *h, struct pkt *p, const struct meta *m)
{
	const __u8 *eth = h->b;
	const __u8 *ip = h->b + ETH_LEN;

	if (m->vlan)
		return V_USER;
	if (h->len < ETH_LEN)
		return V_KERNEL;
	if (eth[0] & 1) /* group address */
		return V_KERNEL;
	if (eth[12] != 0x08 || eth[13] != 0x00)
		return V_KERNEL;
	if (h->len < ETH_LEN + IP_LEN)
		return V_USER;
	if ((ip[0] >> 4) != 4)
		return V_USER;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (ihl < IP_LEN || tot < ihl || tot + ETH_LEN > h->frame_len)
		return V_USER;
	/* What the core validates (director/validate.rs) is left to it: options (a source route
	 * is refused there), a bad header checksum, a TTL that runs out here. */
	if (ihl != IP_LEN || ip[8] <= 1)
		return V_USER;
	__u32 sum = 0;
	for (int i = 0; i < IP_LEN; i += 2)
		sum += ((__u32)ip[i] << 8) | ip[i + 1];
	if (fold(sum) != 0xffff)
		return V_USER;
	if (((ip[6] & 0x3f) | ip[7]) != 0) /* MF or an offset: a fragment */
		return V_USER;
	__u8 proto = ip[9];
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return V_USER;
	if (tot < ihl + (proto == IPPROTO_TCP ? 20 : 8))
		return V_USER;
	__u32 l4 = ETH_LEN + ihl;
	__u32 need = proto == IPPROTO_TCP ? 14 : 8;
	if (l4 + need > h->len || l4 + 14 > HDR_MAX)
		return V_USER;
	/* A TCP data offset within the segment, a UDP length within the IP payload (what lies
	 * past it the kernel trims). */
	__u32 seg = tot - ihl;
	if (proto == IPPROTO_TCP) {
		__u32 off = (h->b[l4 + 12] >> 4) * 4;
		if (off < 20 || off > seg)
			return V_USER;
	} else {
		__u32 ulen = ((__u32)h->b[l4 + 4] << 8) | h->b[l4 + 5];
		if (ulen < 8 || ulen > seg)
			return V_USER;
	}
	p->flow.proto = proto;
	__builtin_memcpy(&p->flow.src, &ip[12], 4);
	__builtin_memcpy(&p->flow.dst, &ip[16], 4);
	__builtin_memcpy(&p->flow.sport, &h->b[l4], 2);
	__builtin_memcpy(&p->flow.dport, &h->b[l4 + 2], 2);
	p->tcp_flags = proto == IPPROTO_TCP ? h->b[l4 + 13] : 0;
	p->ip_len = tot;
	p->l4_off = l4;
	p->gso = m->gso;
	/* Bytes past the IP packet (Ethernet padding, trailers) are cut as the core does. */
	p->trailer = h->frame_len > ETH_LEN + tot;
	if (p->trailer && p->gso)
		return V_USER;
	return V_FORWARD;
}

/* ---- scheduling: the core's compiled tables ------------------------------------------- */

static __always_inline __u64 rotl(__u64 x, int b)
{
	return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                           \
	do {                                                                               \
		v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                  \
		v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                     \
		v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                     \
		v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                  \
	} while (0)

/* SipHash-1-3 of the 4 little-endian bytes of m, as lvs_core's mh hashes (siphasher). */
static __always_inline __u64 siphash13_u32(__u32 m)
{
	__u64 v0 = LVS_MH_K0 ^ 0x736f6d6570736575ULL;
	__u64 v1 = LVS_MH_K1 ^ 0x646f72616e646f6dULL;
	__u64 v2 = LVS_MH_K0 ^ 0x6c7967656e657261ULL;
	__u64 v3 = LVS_MH_K1 ^ 0x7465646279746573ULL;
	__u64 b = (4ULL << 56) | m;

	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* A new flow's real server (its lvs_dests index), or -1 where the core decides. With
 * take, a sequence position is consumed (tc); without, it is only looked at (the socket
 * filter, which needs the yes/no answer, not the server). */
static __always_inline int schedule(struct pkt *p, int take, __u32 *gen)
{
	struct lvs_svc_key k = { .addr = p->flow.dst, .port = p->flow.dport, .proto = p->flow.proto };
	struct lvs_svc *s = bpf_map_lookup_elem(&lvs_svcs, &k);

	if (!s) {
		k.port = 0;
		s = bpf_map_lookup_elem(&lvs_svcs, &k);
		if (!s)
			return -1;
	}
	__u32 len = s->len, idx;
	if (len == 0)
		return -1;
	/* Decided before a position is taken, the same way in both programs. */
	if (p->gso || p->ip_len > s->max_len)
		return -1;
	__u32 src = bpf_ntohl(p->flow.src);
	__u32 port = (s->flags & LVS_SVC_HASH_PORT) ? bpf_ntohs(p->flow.sport) : 0;
	switch (s->sched) {
	case LVS_SCHED_SEQ:
		idx = (take ? __sync_fetch_and_add(&s->pos, 1) : s->pos) % len;
		break;
	case LVS_SCHED_SH:
		idx = ((port + src) * 0x61C88647U) >> 24;
		break;
	case LVS_SCHED_DH:
		idx = (bpf_ntohl(p->flow.dst) * 2654435761U) & 255;
		break;
	case LVS_SCHED_MH:
		idx = (__u32)siphash13_u32(port + src) % len;
		break;
	default:
		return -1;
	}
	if (idx >= len)
		return -1;
	__u32 at = s->base + idx;
	__u32 *d = bpf_map_lookup_elem(&lvs_slots, &at);
	if (!d || *d == LVS_NO_DEST || *d > 0x7fffffff)
		return -1;
	*gen = s->gen;
	return *d;
}

/* ---- the plan: what lvs_tc_ingress would do with a frame, decided without side effects -- */

struct plan {
	struct pkt p;
	struct lvs_flow in_key; /* the entry holding state and stats */
	struct lvs_conn *conn;  /* the entry the packet matched */
	struct lvs_conn *in;    /* the in entry (== conn except for NAT_OUT) */
	__u32 ifindex;
	__be32 nexthop;
	__be32 src;
	__u32 mtu;
	__u32 route_gen;
	__u8 refill;            /* the entry's route cache is stale: write the new route back */
	__u8 summed;            /* skb->ip_summed */
	__u8 is_new;            /* a new flow scheduled here: entries to make (conn is NULL) */
	struct lvs_dest dest;   /* is_new: where it goes */
	__u32 dest_id;          /* is_new: the lvs_dests index, also its lvs_stats slot */
	__u32 gen;              /* is_new: the table that chose */
};

static __always_inline int route(struct plan *pl, __be32 target)
{
	__u32 zero = 0;
	struct lvs_config *cfg = bpf_map_lookup_elem(&lvs_config, &zero);
	struct lvs_conn *c = pl->conn;

	if (!cfg)
		return -1;
	pl->route_gen = cfg->route_gen;
	if (c && c->route_gen == cfg->route_gen && c->ifindex) {
		pl->ifindex = c->ifindex;
		pl->nexthop = c->nexthop;
		pl->src = c->src;
		pl->mtu = c->mtu;
		return 0;
	}
	struct lvs_route_key k = { .prefixlen = 32, .addr = target };
	struct lvs_route *r = bpf_map_lookup_elem(&lvs_routes, &k);
	if (!r)
		return -1;
	pl->ifindex = r->ifindex;
	pl->nexthop = r->gateway ? r->gateway : target;
	pl->src = r->src;
	pl->mtu = r->mtu;
	pl->refill = 1;
	return 0;
}

/* A packet of no known flow: a new flow if the core would schedule it (TCP: SYN without RST,
 * as IPVS), its service's table names a server and it is no bigger than the service's
 * max_len. Past this point the program owns the decision: the socket filter says "forward"
 * without knowing which server a sequence gives (user space checked they all can be sent
 * to), so tc drops (and counts) a new flow it then cannot send (a route changed meanwhile)
 * rather than leave it to a user space that never saw it. */
static __always_inline int classify_new(struct plan *pl, int mode)
{
	struct pkt *p = &pl->p;

	if (mode == M_XDP)
		return V_USER;
	if (p->flow.proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_RST)) != TCP_SYN)
		return V_USER;
	/* Sources the core refuses (director/validate.rs): it drops and counts them. */
	__u32 src = bpf_ntohl(p->flow.src);
	__u8 a = src >> 24;
	if (a == 0 || a == 127 || a >= 224 || (src >> 16) == 0xa9fe)
		return V_USER;
	if (bpf_map_lookup_elem(&lvs_refused, &p->flow.src))
		return V_USER;
	int d = schedule(p, mode == M_TC, &pl->gen);
	if (d < 0)
		return V_USER;
	__u32 id = d;
	struct lvs_dest *dest = bpf_map_lookup_elem(&lvs_dests, &id);
	if (!dest || !dest->action)
		return V_USER;
	if (mode != M_TC)
		return V_FORWARD;
	pl->is_new = 1;
	pl->dest = *dest;
	pl->dest_id = id;
	pl->in_key = p->flow;
	return V_FORWARD;
}

static __always_inline int classify(struct hdrs *h, struct plan *pl, int mode, const struct meta *m)
{
	int v = parse(h, &pl->p, m);

	if (v != V_FORWARD)
		return v;
	struct lvs_conn *c = bpf_map_lookup_elem(&lvs_conns, &pl->p.flow);
	__u8 action;
	__be32 target;
	if (!c) {
		v = classify_new(pl, mode);
		if (v != V_FORWARD || mode != M_TC)
			return v;
		action = pl->dest.action;
		target = pl->dest.addr;
		goto checks;
	}
	/* A new SYN may reuse or replace a finished entry (conn_reuse_mode): the core's call. */
	if ((pl->p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return V_USER;
	pl->conn = c;
	pl->in = c;
	pl->in_key = pl->p.flow;
	action = c->action;
	target = c->addr;
	if (c->action == LVS_NAT_OUT) {
		/* State lives on the client -> VIP entry. */
		pl->in_key.src = pl->p.flow.dst;
		pl->in_key.sport = pl->p.flow.dport;
		pl->in_key.dst = c->addr;
		pl->in_key.dport = c->port;
		pl->in = bpf_map_lookup_elem(&lvs_conns, &pl->in_key);
		if (!pl->in)
			return V_USER;
		target = pl->p.flow.dst;
	}
checks:
	if (route(pl, target) < 0)
		return V_USER; /* no route: the core drops it and counts */
	pl->summed = m->summed;
	__u32 len = pl->p.ip_len;
	switch (action) {
	case LVS_NAT_IN:
	case LVS_NAT_OUT:
		break;
	case LVS_DR:
		if (pl->nexthop != target)
			return V_USER; /* not on link: the core drops it and counts */
		break;
	case LVS_TUN:
		/* A partial checksum stays partial: csum_start still points at the inner transport
		 * header, so the NIC (or skb_checksum_help) finishes it, or the real server's
		 * decapsulation keeps it (kernel ipip; lvs-realserver finishes it in software). */
		if (!pl->src)
			return V_USER;
		len += IP_LEN;
		if (len > 0xffff)
			return V_USER;
		break;
	default:
		return V_USER;
	}
	if (!pl->p.gso && len > pl->mtu)
		return V_USER; /* the core answers "fragmentation needed" or drops */
	return V_FORWARD;
}

/* ---- rewriting ------------------------------------------------------------------------- */

/* A zeroed event of `kind` about the plan's connection, or NULL (counted) if the ring is
 * full. The caller fills in the rest and submits it with submit(). */
static __always_inline struct lvs_event *event(struct plan *pl, __u8 kind, __u64 now)
{
	struct lvs_event *e = bpf_ringbuf_reserve(&lvs_events, sizeof(*e), 0);

	if (!e) {
		count(LVS_C_EVENT_LOST);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->flow = pl->in_key;
	e->kind = kind;
	e->flags = pl->in->flags;
	e->ns = now;
	return e;
}

static __always_inline void submit(struct lvs_event *e)
{
	__u64 wake = bpf_ringbuf_query(&lvs_events, BPF_RB_AVAIL_DATA) > LVS_EVENTS_WAKE
			     ? BPF_RB_FORCE_WAKEUP
			     : BPF_RB_NO_WAKEUP;

	bpf_ringbuf_submit(e, wake);
}

/* TCP state machine step, with IPVS's tables as the core exports them; the last-seen time
 * is written at most once a millisecond (the entry's cache line stays clean under load). */
static __always_inline void track(struct plan *pl, __u64 now, int report)
{
	struct lvs_conn *in = pl->in;

	if (now - in->seen_ns > 1000000)
		in->seen_ns = now;
	if (pl->p.flow.proto != IPPROTO_TCP)
		return;
	__u8 f = pl->p.tcp_flags;
	__u32 ev = (f & TCP_RST) ? 3 : (f & TCP_SYN) ? 0 : (f & TCP_FIN) ? 1 : (f & TCP_ACK) ? 2 : 4;
	__u32 tab = 0;
	if (pl->conn->action == LVS_NAT_OUT) {
		tab = 1;
		if (in->flags & LVS_F_NO_OUTPUT)
			in->flags &= ~LVS_F_NO_OUTPUT;
	} else if (in->flags & LVS_F_NO_OUTPUT) {
		tab = 2;
	}
	__u32 old = in->state;
	if (old >= LVS_TCP_STATES)
		return;
	__u32 zero = 0;
	struct lvs_tcp_table *t = bpf_map_lookup_elem(&lvs_tcp, &zero);
	if (!t)
		return;
	__u8 new = t->next[tab][ev][old];
	if (new == old)
		return;
	in->state = new;
	if (!report)
		return;
	struct lvs_event *e = event(pl, LVS_EV_STATE, now);
	if (!e)
		return;
	e->old_state = old;
	e->new_state = new;
	submit(e);
	count(LVS_C_STATE);
}

/* Make a new flow's entries (NAT: both directions), as compile::conn_entries would for the
 * connection the core makes: state NONE (track moves it), no reply seen yet, the route just
 * looked up cached. Then pl->conn / pl->in point at the map's copy. */
static __always_inline int create(struct plan *pl, __u64 now)
{
	struct pkt *p = &pl->p;
	struct lvs_dest *d = &pl->dest;
	int nat = d->action == LVS_NAT_IN;
	struct lvs_conn e = {
		.action = d->action,
		.flags = nat ? 0 : LVS_F_NO_OUTPUT,
		.addr = d->addr,
		.port = nat ? (d->port ? d->port : p->flow.dport) : 0,
		.mtu = pl->mtu,
		.stats = pl->dest_id,
		.ifindex = pl->ifindex,
		.nexthop = pl->nexthop,
		.src = pl->src,
		.route_gen = pl->route_gen,
		.seen_ns = now,
	};

	if (bpf_map_update_elem(&lvs_conns, &p->flow, &e, BPF_NOEXIST) < 0)
		return -1;
	if (nat) {
		struct lvs_flow out = {
			.src = e.addr,
			.dst = p->flow.src,
			.sport = e.port,
			.dport = p->flow.sport,
			.proto = p->flow.proto,
		};
		/* The reply entry, in the same stack slot. */
		__builtin_memset(&e, 0, sizeof(e));
		e.action = LVS_NAT_OUT;
		e.addr = p->flow.dst;
		e.port = p->flow.dport;
		e.stats = pl->dest_id;
		if (bpf_map_update_elem(&lvs_conns, &out, &e, BPF_NOEXIST) < 0) {
			bpf_map_delete_elem(&lvs_conns, &p->flow);
			return -1;
		}
	}
	pl->conn = bpf_map_lookup_elem(&lvs_conns, &p->flow);
	pl->in = pl->conn;
	return pl->conn ? 0 : -1;
}

/* Tell user space about a flow scheduled here. If the ring has no room the flow still goes
 * (counted in event_lost); lvsd then finds it in the map. */
static __always_inline void report_new(struct plan *pl, __u64 now)
{
	count(LVS_C_NEW);
	struct lvs_event *e = event(pl, LVS_EV_NEW, now);

	if (!e)
		return;
	e->new_state = pl->in->state;
	e->gen = pl->gen;
	e->daddr = pl->in->addr;
	e->dport = pl->in->port;
	e->action = pl->in->action;
	submit(e);
}

static __always_inline void account(struct plan *pl)
{
	__u32 idx = pl->in->stats;
	struct lvs_stats *s = bpf_map_lookup_elem(&lvs_stats, &idx);

	if (!s)
		return;
	if (pl->conn->action == LVS_NAT_OUT) {
		s->pkts_out += 1;
		s->bytes_out += pl->p.ip_len;
	} else {
		s->pkts_in += 1;
		s->bytes_in += pl->p.ip_len;
	}
}

/* Replace one end of the flow — the destination (to_dst: NAT in) or the source (NAT out) —
 * in place in [data, end), with the core's incremental checksums. */
static __always_inline int nat_direct(void *data, void *end, struct plan *pl, int to_dst,
				      __be32 new_a, __be16 new_p)
{
	struct pkt *p = &pl->p;
	__u32 port_off = p->l4_off + (to_dst ? 2 : 0);
	__u32 csum_off = p->l4_off + (p->flow.proto == IPPROTO_TCP ? TCP_CSUM : UDP_CSUM);

	if (port_off > ETH_LEN + 60 + 2 || csum_off > ETH_LEN + 60 + 16)
		return -1;
	/* Bounds the verifier can follow (the compiler may fold the checks above away). */
	__u64 po = port_off, co = csum_off;
	barrier_var(po);
	barrier_var(co);
	if (po > ETH_LEN + 62 || co > ETH_LEN + 76)
		return -1;
	if (data + co + 2 > end || data + po + 2 > end || data + ETH_LEN + IP_LEN > end)
		return -1;
	__be32 *a = data + ETH_LEN + (to_dst ? 16 : 12);
	__be16 *port = data + po;
	__u16 *ipck = data + ETH_LEN + 10;
	__u16 *l4ck = data + co;
	__be32 old_a = *a;
	__be16 old_p = *port;

	*ipck = bpf_htons(upd32(bpf_ntohs(*ipck), old_a, new_a));
	*a = new_a;
	*port = new_p;
	__u16 old = bpf_ntohs(*l4ck);
	__u16 c;
	if (pl->summed == CHECKSUM_PARTIAL) {
		c = seed32(old, old_a, new_a);
	} else {
		if (p->flow.proto == IPPROTO_UDP && old == 0)
			return 0; /* no checksum: stays none */
		c = upd16(upd32(old, old_a, new_a), bpf_ntohs(old_p), bpf_ntohs(new_p));
		if (p->flow.proto == IPPROTO_UDP && c == 0)
			c = 0xffff;
	}
	*l4ck = bpf_htons(c);
	return 0;
}

/* The same on an skb. A CHECKSUM_COMPLETE skb goes through the kernel's helpers instead,
 * which also keep skb->csum right. */
static __always_inline int nat_tc(struct __sk_buff *skb, struct plan *pl, int to_dst,
				  __be32 new_a, __be16 new_p)
{
	struct pkt *p = &pl->p;

	if (pl->summed != CHECKSUM_COMPLETE)
		return nat_direct((void *)(long)skb->data, (void *)(long)skb->data_end, pl, to_dst,
				  new_a, new_p);
	__u32 ip_off = ETH_LEN + (to_dst ? 16 : 12);
	__u32 port_off = p->l4_off + (to_dst ? 2 : 0);
	__u32 csum_off = p->l4_off + (p->flow.proto == IPPROTO_TCP ? TCP_CSUM : UDP_CSUM);
	__be32 old_a = to_dst ? p->flow.dst : p->flow.src;
	__be16 old_p = to_dst ? p->flow.dport : p->flow.sport;
	__u64 f = p->flow.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum_off, old_a, new_a, f | BPF_F_PSEUDO_HDR | 4) < 0 ||
	    bpf_l4_csum_replace(skb, csum_off, old_p, new_p, f | 2) < 0 ||
	    bpf_l3_csum_replace(skb, ETH_LEN + 10, old_a, new_a, 4) < 0 ||
	    bpf_skb_store_bytes(skb, ip_off, &new_a, 4, BPF_F_RECOMPUTE_CSUM) < 0 ||
	    bpf_skb_store_bytes(skb, port_off, &new_p, 2, BPF_F_RECOMPUTE_CSUM) < 0)
		return -1;
	return 0;
}

/* One off the TTL, the header checksum fixed incrementally as the core does (checked above
 * 1 in parse()). The IP header's own sum does not change, so neither does a
 * CHECKSUM_COMPLETE skb->csum. */
static __always_inline int dec_ttl(void *data, void *end)
{
	if (data + ETH_LEN + IP_LEN > end)
		return -1;
	__u8 *ip = data + ETH_LEN;
	__u16 *ipck = data + ETH_LEN + 10;
	__u16 old = ((__u16)ip[8] << 8) | ip[9];
	*ipck = bpf_htons(upd16(bpf_ntohs(*ipck), old, old - 0x100));
	ip[8] -= 1;
	return 0;
}

/* The IP-in-IP header as the core writes it: TOS, TTL (after the decrement), DF and the
 * identification copied from the inner header, protocol 4, source the route's. */
static __always_inline void outer_header(struct plan *pl, struct hdrs *h, __u32 *outer)
{
	const __u8 *inner = h->b + ETH_LEN;
	__u8 *o = (__u8 *)outer;

	__u32 tot = pl->p.ip_len + IP_LEN;
	o[0] = 0x45;
	o[1] = inner[1];
	o[2] = tot >> 8;
	o[3] = tot & 0xff;
	o[4] = inner[4];
	o[5] = inner[5];
	o[6] = inner[6] & 0x40;
	o[7] = 0;
	o[8] = inner[8] - 1; /* h holds the header as it came, before dec_ttl() */
	o[9] = IPPROTO_IPIP;
	o[10] = 0;
	o[11] = 0;
	__builtin_memcpy(&o[12], &pl->src, 4);
	__builtin_memcpy(&o[16], &pl->conn->addr, 4);
	__u32 s = 0;
	for (int i = 0; i < IP_LEN / 4; i++)
		s += sum32(outer[i]);
	__u16 c = bpf_htons((__u16)~fold(s));
	__builtin_memcpy(&o[10], &c, 2);
}

static __always_inline int encap_tc(struct __sk_buff *skb, struct plan *pl, struct hdrs *h)
{
	__u32 outer[IP_LEN / 4];

	outer_header(pl, h, outer);
	if (bpf_skb_adjust_room(skb, IP_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) < 0)
		return -1;
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + ETH_LEN + IP_LEN > end)
		return bpf_skb_store_bytes(skb, ETH_LEN, outer, IP_LEN, 0) < 0 ? -1 : 0;
	__builtin_memcpy(data + ETH_LEN, outer, IP_LEN);
	return 0;
}

/* XDP: the frame grows at its head; the Ethernet header is written afresh (set_macs). */
static __always_inline int encap_xdp(struct xdp_md *ctx, struct plan *pl, struct hdrs *h)
{
	__u32 outer[IP_LEN / 4];

	outer_header(pl, h, outer);
	if (bpf_xdp_adjust_head(ctx, -(int)IP_LEN) < 0)
		return -1;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN + IP_LEN > end)
		return -1;
	__builtin_memcpy(data + ETH_LEN, outer, IP_LEN);
	return 0;
}

static __always_inline int rewrite_tc(struct __sk_buff *skb, struct plan *pl, struct hdrs *h)
{
	struct lvs_conn *c = pl->conn;

	if (dec_ttl((void *)(long)skb->data, (void *)(long)skb->data_end) < 0)
		return -1;
	switch (c->action) {
	case LVS_NAT_IN:
		return nat_tc(skb, pl, 1, c->addr, c->port);
	case LVS_NAT_OUT:
		return nat_tc(skb, pl, 0, c->addr, c->port);
	case LVS_DR:
		return 0;
	case LVS_TUN:
		return encap_tc(skb, pl, h);
	}
	return -1;
}

/* The XDP rewrite: the same, then the link-layer header bpf_redirect_neigh would write. */
static __always_inline int rewrite_xdp(struct xdp_md *ctx, struct plan *pl, struct hdrs *h,
				       const struct lvs_neigh *n)
{
	struct lvs_conn *c = pl->conn;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	int r = -1;

	if (dec_ttl(data, end) < 0)
		return -1;
	switch (c->action) {
	case LVS_NAT_IN:
		r = nat_direct(data, end, pl, 1, c->addr, c->port);
		break;
	case LVS_NAT_OUT:
		r = nat_direct(data, end, pl, 0, c->addr, c->port);
		break;
	case LVS_DR:
		r = 0;
		break;
	case LVS_TUN:
		r = encap_xdp(ctx, pl, h);
		break;
	}
	if (r < 0)
		return -1;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + ETH_LEN > end)
		return -1;
	__u8 *eth = data;
	__builtin_memcpy(eth, n->dmac, 6);
	__builtin_memcpy(eth + 6, n->smac, 6);
	eth[12] = 0x08;
	eth[13] = 0x00;
	return 0;
}

/* What a forwarding program does once it has decided to forward: the route cache written
 * back, the TCP state moved (and reported), a new flow reported, the stats counted. */
static __always_inline void commit(struct plan *pl, __u64 now)
{
	struct lvs_conn *c = pl->conn;

	if (pl->refill) {
		c->ifindex = pl->ifindex;
		c->nexthop = pl->nexthop;
		c->src = pl->src;
		c->mtu = pl->mtu;
		c->route_gen = pl->route_gen;
	}
	track(pl, now, !pl->is_new);
	if (pl->is_new)
		report_new(pl, now);
	account(pl);
}

static __always_inline void record_test_out(struct plan *pl)
{
	if (!lvs_test_mode)
		return;
	__u32 zero = 0;
	struct lvs_test_out *t = bpf_map_lookup_elem(&lvs_test, &zero);
	if (t && pl->conn) {
		t->ifindex = pl->ifindex;
		t->nexthop = pl->nexthop;
		t->addr = pl->conn->addr;
		t->src = pl->src;
		t->port = pl->conn->port;
		t->action = pl->conn->action;
	}
}

/* ---- entry points ---------------------------------------------------------------------- */

SEC("tc")
int lvs_tc_ingress(struct __sk_buff *skb)
{
	struct plan pl = {};
	struct hdrs h;

	count(LVS_C_RX);
	/* A frame for another host (flooded by a switch, or on a promiscuous link) is the
	 * kernel's, which drops it, as IPVS never sees it. BPF_PROG_TEST_RUN's skb is "for
	 * another host" (its device is loopback), so the check is off in test mode. */
	if (!lvs_test_mode && skb->pkt_type != PACKET_HOST) {
		count(LVS_C_NOT_OURS);
		return TC_ACT_OK;
	}
	if (hdrs_tc(skb, &h) < 0) {
		count(LVS_C_TO_USER);
		return TC_ACT_OK;
	}
	struct meta m = {
		.vlan = skb->vlan_present,
		.gso = skb->gso_size != 0,
		.summed = ip_summed(skb),
	};
	int v = classify(&h, &pl, M_TC, &m);
	if (v == V_KERNEL) {
		count(LVS_C_NOT_OURS);
		return TC_ACT_OK;
	}
	__u64 now = bpf_ktime_get_coarse_ns();
	if (pl.is_new) {
		/* The socket filter did not copy it: nobody else will send it. */
		if (v != V_FORWARD || create(&pl, now) < 0) {
			count(LVS_C_NEW_DROPPED);
			return TC_ACT_SHOT;
		}
		pl.refill = 0;
	} else if (v != V_FORWARD) {
		count(LVS_C_TO_USER);
		return TC_ACT_OK;
	}
	if (!pl.conn)
		return TC_ACT_SHOT;
	__u8 action = pl.conn->action;
	commit(&pl, now);
	if (pl.p.trailer && bpf_skb_change_tail(skb, ETH_LEN + pl.p.ip_len, 0) < 0) {
		count(LVS_C_ERROR);
		return TC_ACT_SHOT;
	}
	if (rewrite_tc(skb, &pl, &h) < 0) {
		count(LVS_C_ERROR);
		return TC_ACT_SHOT;
	}
	count(action); /* LVS_C_NAT_IN .. LVS_C_TUN share the action's number */
	record_test_out(&pl);
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = pl.nexthop };
	return bpf_redirect_neigh(pl.ifindex, &nh, sizeof(nh), 0);
}

/* Whether the frame is addressed to the interface it came in on (tc has skb->pkt_type for
 * this). Off in test mode, whose frames come in on loopback. */
static __always_inline int for_us(struct xdp_md *ctx, const struct hdrs *h)
{
	if (lvs_test_mode)
		return 1;
	__u32 in = ctx->ingress_ifindex;
	struct lvs_ifmac *me = bpf_map_lookup_elem(&lvs_ifmac, &in);
	if (!me)
		return 0;
	for (int i = 0; i < 6; i++)
		if (me->mac[i] != h->b[i])
			return 0;
	return 1;
}

/* Known flows whose next hop is in lvs_neigh; the rest goes up to lvs_tc_ingress untouched
 * (no position taken, no entry made, no counter but xdp_pass moved), so tc and the socket
 * filter judge it as if this program were not there. */
SEC("xdp")
int lvs_xdp(struct xdp_md *ctx)
{
	struct plan pl = {};
	struct hdrs h;
	struct meta m = { .summed = CHECKSUM_NONE };

	if (hdrs_xdp(ctx, &h) < 0 || !for_us(ctx, &h) ||
	    classify(&h, &pl, M_XDP, &m) != V_FORWARD || !pl.conn)
		goto pass;
	struct lvs_neigh *n = bpf_map_lookup_elem(&lvs_neigh, &pl.nexthop);
	if (!n || n->ifindex != pl.ifindex)
		goto pass;
	/* Only now is the frame this program's: counted once, here rather than in tc. */
	count(LVS_C_RX);
	__u8 action = pl.conn->action;
	commit(&pl, bpf_ktime_get_coarse_ns());
	if (pl.p.trailer &&
	    bpf_xdp_adjust_tail(ctx, (int)(ETH_LEN + pl.p.ip_len) - (int)h.frame_len) < 0) {
		count(LVS_C_ERROR);
		return XDP_DROP;
	}
	if (rewrite_xdp(ctx, &pl, &h, n) < 0) {
		count(LVS_C_ERROR);
		return XDP_DROP;
	}
	count(action);
	count(LVS_C_XDP);
	record_test_out(&pl);
	return bpf_redirect(pl.ifindex, 0);
pass:
	count(LVS_C_XDP_PASS);
	return XDP_PASS;
}

SEC("socket")
int lvs_sock_filter(struct __sk_buff *skb)
{
	struct plan pl = {};
	struct hdrs h;

	/* What lvsd itself (or the tc program) sends is seen here too: never copy it. Frames
	 * for other hosts or groups go up as before (the worker ignores them). */
	if (skb->pkt_type == PACKET_OUTGOING)
		return 0;
	if (hdrs_filter(skb, &h) < 0)
		return 0x7fffffff;
	/* The checksum state does not change the answer. */
	struct meta m = { .vlan = skb->vlan_present, .gso = skb->gso_size != 0 };
	/* The whole frame to user space unless the tc program forwards it. */
	return classify(&h, &pl, M_FILTER, &m) == V_FORWARD ? 0 : 0x7fffffff;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
