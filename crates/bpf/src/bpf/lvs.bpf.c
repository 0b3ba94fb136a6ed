// SPDX-License-Identifier: MIT OR GPL-2.0-only
/*
 * lvs.bpf.c — the kernel fast path of lvsd.
 *
 * Two programs share one classification:
 *
 *   lvs_tc_ingress  (tc clsact ingress)  forwards packets of connections the user-space core
 *                   has installed in lvs_conns: NAT both ways, DR, IP-in-IP. Anything it does
 *                   not fully understand goes on unchanged (TC_ACT_OK).
 *   lvs_sock_filter (socket filter on lvsd's AF_PACKET sockets) lets a copy reach user space
 *                   only for the frames lvs_tc_ingress will not forward. The capture tap runs
 *                   before tc ingress, so both see the same map state for a frame.
 *
 * So user space (lvs_core::Director) stays the one place where connections are scheduled,
 * ICMP errors are built and odd packets are judged; the kernel only repeats, per packet, the
 * rewrite the core decided for the connection — the same rewrite as crates/core/src/rewrite.rs,
 * byte for byte (tested by crates/bpf/tests/differential.rs through BPF_PROG_TEST_RUN).
 *
 * Layout: maps; parsing; the plan (what would be done); rewriting; the entry points.
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
} lvs_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lvs_route_key);
	__type(value, struct lvs_route);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lvs_routes SEC(".maps");

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
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} lvs_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lvs_test_out);
	__uint(max_entries, 1);
} lvs_test SEC(".maps");

/* Set by the loader for BPF_PROG_TEST_RUN: record where a packet would have gone. The
 * verifier removes the recording when it is 0. */
const volatile __u32 lvs_test_mode = 0;

/* Whether the skb's transport checksum is CHECKSUM_PARTIAL (read through the kernel's own
 * sk_buff, CO-RE relocated: __sk_buff does not expose ip_summed). */
struct sk_buff___lvs {
	__u8 ip_summed : 2;
} __attribute__((preserve_access_index));
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
#define CHECKSUM_PARTIAL 3

static __always_inline int csum_partial(struct __sk_buff *ctx)
{
	struct sk_buff___lvs *skb = bpf_cast_to_kern_ctx(ctx);

	return BPF_CORE_READ_BITFIELD(skb, ip_summed) == CHECKSUM_PARTIAL;
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

/* Where the frame starts. tc ingress and a packet socket's filter both see the skb from the
 * Ethernet header; only BPF_PROG_TEST_RUN hands a socket filter the skb from the network
 * header, so in test mode the filter reads relative to the MAC header (test frames are
 * linear) and counts the Ethernet header into the length. */
enum hook { HOOK_TC, HOOK_FILTER };

static __always_inline int load(struct __sk_buff *skb, enum hook h, __u32 off, void *to, __u32 len)
{
	if (lvs_test_mode && h == HOOK_FILTER)
		return bpf_skb_load_bytes_relative(skb, off, to, len, BPF_HDR_START_MAC);
	return bpf_skb_load_bytes(skb, off, to, len);
}

static __always_inline __u32 frame_len(struct __sk_buff *skb, enum hook h)
{
	return skb->len + (lvs_test_mode && h == HOOK_FILTER ? ETH_LEN : 0);
}

static __always_inline int parse(struct __sk_buff *skb, enum hook h, struct pkt *p)
{
	__u8 eth[ETH_LEN];
	__u8 ip[IP_LEN];

	if (skb->vlan_present)
		return V_USER;
	if (load(skb, h, 0, eth, ETH_LEN) < 0)
		return V_KERNEL;
	if (eth[0] & 1) /* group address */
		return V_KERNEL;
	if (eth[12] != 0x08 || eth[13] != 0x00)
		return V_KERNEL;
	if (load(skb, h, ETH_LEN, ip, IP_LEN) < 0)
		return V_USER;
	if ((ip[0] >> 4) != 4)
		return V_USER;
	__u32 ihl = (ip[0] & 0x0f) * 4;
	__u32 tot = ((__u32)ip[2] << 8) | ip[3];
	if (ihl < IP_LEN || tot < ihl || tot + ETH_LEN > frame_len(skb, h))
		return V_USER;
	if (((ip[6] & 0x3f) | ip[7]) != 0) /* MF or an offset: a fragment */
		return V_USER;
	__u8 proto = ip[9];
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return V_USER;
	p->flow.proto = proto;
	__builtin_memcpy(&p->flow.src, &ip[12], 4);
	__builtin_memcpy(&p->flow.dst, &ip[16], 4);
	p->ip_len = tot;
	p->l4_off = ETH_LEN + ihl;
	__u8 l4[8];
	if (tot < ihl + (proto == IPPROTO_TCP ? 20 : 8))
		return V_USER;
	if (load(skb, h, p->l4_off, l4, sizeof(l4)) < 0)
		return V_USER;
	__builtin_memcpy(&p->flow.sport, &l4[0], 2);
	__builtin_memcpy(&p->flow.dport, &l4[2], 2);
	p->tcp_flags = 0;
	if (proto == IPPROTO_TCP && load(skb, h, p->l4_off + 13, &p->tcp_flags, 1) < 0)
		return V_USER;
	p->gso = skb->gso_size != 0;
	/* Bytes past the IP packet (Ethernet padding, trailers) are cut as the core does. */
	p->trailer = frame_len(skb, h) > ETH_LEN + tot;
	if (p->trailer && p->gso)
		return V_USER;
	return V_FORWARD;
}

/* ---- the plan: what lvs_tc_ingress would do with a frame, decided without side effects -- */

struct plan {
	struct pkt p;
	struct lvs_flow in_key; /* the entry holding state and stats */
	struct lvs_conn *conn;  /* the entry the packet matched */
	struct lvs_conn *in;    /* the in entry (== conn except for NAT_OUT) */
	struct lvs_route route;
	__be32 nexthop;
};

static __always_inline struct lvs_route *route_to(__be32 dst)
{
	struct lvs_route_key k = { .prefixlen = 32, .addr = dst };

	return bpf_map_lookup_elem(&lvs_routes, &k);
}

static __always_inline int classify(struct __sk_buff *skb, enum hook h, struct plan *pl)
{
	int v = parse(skb, h, &pl->p);

	if (v != V_FORWARD)
		return v;
	struct lvs_conn *c = bpf_map_lookup_elem(&lvs_conns, &pl->p.flow);
	if (!c)
		return V_USER;
	/* A new SYN may reuse or replace a finished entry (conn_reuse_mode): the core's call. */
	if ((pl->p.tcp_flags & (TCP_SYN | TCP_ACK)) == TCP_SYN)
		return V_USER;
	pl->conn = c;
	pl->in = c;
	pl->in_key = pl->p.flow;
	__be32 target = c->addr;
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
	struct lvs_route *r = route_to(target);
	if (!r)
		return V_USER;
	pl->route = *r;
	pl->nexthop = r->gateway ? r->gateway : target;
	__u32 len = pl->p.ip_len;
	switch (c->action) {
	case LVS_NAT_IN:
	case LVS_NAT_OUT:
		break;
	case LVS_DR:
		if (r->gateway)
			return V_USER; /* not on link: the core drops it and counts */
		break;
	case LVS_TUN:
		/* The receiver decapsulates: nobody would finish a partial checksum after us. */
		if (csum_partial(skb) || !r->src)
			return V_USER;
		len += IP_LEN;
		if (len > 0xffff)
			return V_USER;
		break;
	default:
		return V_USER;
	}
	if (!pl->p.gso && len > r->mtu)
		return V_USER; /* the core answers "fragmentation needed" or drops */
	return V_FORWARD;
}

/* ---- rewriting ------------------------------------------------------------------------- */

/* TCP state machine step, with IPVS's tables as the core exports them. */
static __always_inline void track(struct plan *pl, __u64 now)
{
	struct lvs_conn *in = pl->in;

	in->seen_ns = now;
	if (pl->p.flow.proto != IPPROTO_TCP)
		return;
	__u32 zero = 0;
	struct lvs_tcp_table *t = bpf_map_lookup_elem(&lvs_tcp, &zero);
	if (!t)
		return;
	__u8 f = pl->p.tcp_flags;
	__u32 ev = (f & TCP_RST) ? 3 : (f & TCP_SYN) ? 0 : (f & TCP_FIN) ? 1 : (f & TCP_ACK) ? 2 : 4;
	__u32 tab = 0;
	if (pl->conn->action == LVS_NAT_OUT) {
		tab = 1;
		in->flags &= ~LVS_F_NO_OUTPUT;
	} else if (in->flags & LVS_F_NO_OUTPUT) {
		tab = 2;
	}
	__u32 old = in->state;
	if (old >= LVS_TCP_STATES)
		return;
	__u8 new = t->next[tab][ev][old];
	if (new == old)
		return;
	in->state = new;
	struct lvs_event *e = bpf_ringbuf_reserve(&lvs_events, sizeof(*e), 0);
	if (!e) {
		count(LVS_C_EVENT_LOST);
		return;
	}
	e->flow = pl->in_key;
	e->old_state = old;
	e->new_state = new;
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	e->ns = now;
	bpf_ringbuf_submit(e, 0);
	count(LVS_C_STATE);
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

/* Replace one end (address at ip_off, port at port_off) with incremental checksums: the IP
 * header's, and the transport's (pseudo-header address plus port). The kernel helpers know
 * CHECKSUM_PARTIAL (only the address enters the seed) and UDP's "no checksum" 0. */
static __always_inline int nat(struct __sk_buff *skb, struct pkt *p, __u32 ip_off, __be32 old_a,
			       __be32 new_a, __u32 port_off, __be16 old_p, __be16 new_p)
{
	__u32 csum = p->l4_off + (p->flow.proto == IPPROTO_TCP ? TCP_CSUM : UDP_CSUM);
	__u64 l4f = p->flow.proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (bpf_l4_csum_replace(skb, csum, old_a, new_a, l4f | BPF_F_PSEUDO_HDR | 4) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, csum, old_p, new_p, l4f | 2) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, ETH_LEN + 10, old_a, new_a, 4) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ip_off, &new_a, 4, 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, port_off, &new_p, 2, 0) < 0)
		return -1;
	return 0;
}

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

/* IP-in-IP as the core writes it: TOS, TTL, DF and the identification copied from the inner
 * header, protocol 4, source the route's. */
static __always_inline int encap(struct __sk_buff *skb, struct plan *pl)
{
	__u8 inner[IP_LEN];
	__u32 outer[IP_LEN / 4];
	__u8 *o = (__u8 *)outer;

	if (bpf_skb_load_bytes(skb, ETH_LEN, inner, IP_LEN) < 0)
		return -1;
	__u32 tot = pl->p.ip_len + IP_LEN;
	o[0] = 0x45;
	o[1] = inner[1];
	o[2] = tot >> 8;
	o[3] = tot & 0xff;
	o[4] = inner[4];
	o[5] = inner[5];
	o[6] = inner[6] & 0x40;
	o[7] = 0;
	o[8] = inner[8];
	o[9] = IPPROTO_IPIP;
	o[10] = 0;
	o[11] = 0;
	__builtin_memcpy(&o[12], &pl->route.src, 4);
	__builtin_memcpy(&o[16], &pl->conn->addr, 4);
	__s64 sum = bpf_csum_diff(0, 0, outer, IP_LEN, 0);
	if (sum < 0)
		return -1;
	__u16 c = fold((__u64)sum);
	__builtin_memcpy(&o[10], &c, 2);
	if (bpf_skb_adjust_room(skb, IP_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, ETH_LEN, outer, IP_LEN, 0) < 0)
		return -1;
	return 0;
}

static __always_inline int rewrite(struct __sk_buff *skb, struct plan *pl)
{
	struct pkt *p = &pl->p;
	struct lvs_conn *c = pl->conn;

	switch (c->action) {
	case LVS_NAT_IN:
		return nat(skb, p, ETH_LEN + 16, p->flow.dst, c->addr, p->l4_off + 2, p->flow.dport,
			   c->port);
	case LVS_NAT_OUT:
		return nat(skb, p, ETH_LEN + 12, p->flow.src, c->addr, p->l4_off, p->flow.sport,
			   c->port);
	case LVS_DR:
		return 0;
	case LVS_TUN:
		return encap(skb, pl);
	}
	return -1;
}

/* ---- entry points ---------------------------------------------------------------------- */

SEC("tc")
int lvs_tc_ingress(struct __sk_buff *skb)
{
	struct plan pl = {};

	count(LVS_C_RX);
	int v = classify(skb, HOOK_TC, &pl);
	if (v == V_KERNEL) {
		count(LVS_C_NOT_OURS);
		return TC_ACT_OK;
	}
	if (v != V_FORWARD) {
		count(LVS_C_TO_USER);
		return TC_ACT_OK;
	}
	__u8 action = pl.conn->action;
	track(&pl, bpf_ktime_get_ns());
	account(&pl);
	if (pl.p.trailer && bpf_skb_change_tail(skb, ETH_LEN + pl.p.ip_len, 0) < 0) {
		count(LVS_C_ERROR);
		return TC_ACT_SHOT;
	}
	if (rewrite(skb, &pl) < 0) {
		count(LVS_C_ERROR);
		return TC_ACT_SHOT;
	}
	count(action); /* LVS_C_NAT_IN .. LVS_C_TUN share the action's number */
	if (lvs_test_mode) {
		__u32 zero = 0;
		struct lvs_test_out *t = bpf_map_lookup_elem(&lvs_test, &zero);
		if (t) {
			t->ifindex = pl.route.ifindex;
			t->nexthop = pl.nexthop;
		}
	}
	struct bpf_redir_neigh nh = { .nh_family = AF_INET, .ipv4_nh = pl.nexthop };
	return bpf_redirect_neigh(pl.route.ifindex, &nh, sizeof(nh), 0);
}

SEC("socket")
int lvs_sock_filter(struct __sk_buff *skb)
{
	struct plan pl = {};

	/* What lvsd itself (or the tc program) sends is seen here too: never copy it. Frames
	 * for other hosts or groups go up as before (the worker ignores them). */
	if (skb->pkt_type == PACKET_OUTGOING)
		return 0;
	/* The whole frame to user space unless the tc program forwards it. */
	return classify(skb, HOOK_FILTER, &pl) == V_FORWARD ? 0 : 0x7fffffff;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
