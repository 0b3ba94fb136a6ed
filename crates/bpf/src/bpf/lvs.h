/* SPDX-License-Identifier: MIT OR GPL-2.0-only */
/*
 * Shapes shared by the kernel programs (lvs.bpf.c) and their loader (src/maps.rs mirrors
 * every struct here byte for byte; a test checks the sizes against the object's BTF).
 *
 * All addresses and ports are in network byte order, as they sit in the packet.
 */
#ifndef LVS_H
#define LVS_H

/* A packet's five-tuple as seen on the wire: the key of the connection map. A NAT
 * connection has two entries (client -> VIP and real server -> client); DR and Tun one. */
struct lvs_flow {
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* What to do with a packet of a known flow. */
enum lvs_action {
	LVS_NAT_IN = 1,  /* dst := addr:port (client -> real server) */
	LVS_NAT_OUT = 2, /* src := addr:port (real server -> client), state kept on the in entry */
	LVS_DR = 3,      /* only the MAC changes: next hop is addr */
	LVS_TUN = 4,     /* IP-in-IP to addr */
};

/* Entry flags. */
#define LVS_F_NO_OUTPUT 1 /* DR/Tun: input-only TCP table until a reply shows up */

struct lvs_conn {
	__u8 action;    /* enum lvs_action */
	__u8 state;     /* IPVS TCP state (IP_VS_TCP_S_*), 0 for UDP */
	__u8 flags;     /* LVS_F_* */
	__u8 pad;
	__be32 addr;    /* NAT_IN / DR / TUN: real server; NAT_OUT: virtual address */
	__be16 port;    /* NAT_IN: real server port; NAT_OUT: virtual port */
	__u16 mtu;      /* route cache: MTU of the outgoing interface */
	__u32 stats;    /* slot in lvs_stats (per real server) */
	/* Route cache, valid while route_gen is lvs_config.route_gen (the program refills it
	 * from lvs_routes otherwise): one hash lookup per packet instead of a trie walk. */
	__u32 ifindex;
	__be32 nexthop; /* the gateway, or the target itself when directly connected */
	__be32 src;     /* tunnel source */
	__u32 route_gen;
	__u64 seen_ns;  /* bpf_ktime_get_coarse_ns() of the last packet (in entry only) */
};

/* A virtual service, for new flows (key of lvs_svcs). Every IPv4 TCP/UDP service of the core
 * has one, so a port-0 service is only used where the core would use it. */
struct lvs_svc_key {
	__be32 addr;
	__be16 port; /* 0: a service for any port */
	__u8 proto;
	__u8 pad;
};

/* How the program picks a real server for a new flow: the core's scheduler compiled into a
 * table of lvs_slots entries (lvs_core::sched::Compiled; Compiled::pick is the reference). */
enum lvs_sched {
	LVS_SCHED_CORE = 0, /* stateful scheduler, persistence, thresholds...: the core decides */
	LVS_SCHED_SEQ = 1,  /* rr, wrr, fo: entry pos++ % len */
	LVS_SCHED_SH = 2,   /* entry hash_32(port + client, 8) */
	LVS_SCHED_DH = 3,   /* entry (destination * 2654435761) & 255 */
	LVS_SCHED_MH = 4,   /* entry siphash13(le32(port + client)) % len */
};
#define LVS_SVC_HASH_PORT 1 /* sh-port / mh-port: the client port is hashed too */
#define LVS_NO_DEST 0xffffffff /* a table entry that asks the core */
/* mh's hash key (lvs_core::sched::MH_HASH1). */
#define LVS_MH_K0 2654435761ULL
#define LVS_MH_K1 2654435761ULL

struct lvs_svc {
	__u8 sched;  /* enum lvs_sched */
	__u8 flags;  /* LVS_SVC_* */
	__u16 max_len; /* largest IPv4 packet of a new flow scheduled here: every real server
			* has a route, DR ones on link, Tun ones a source, and this fits their
			* MTU (after the tunnel header). Bigger ones go to the core, which answers
			* "fragmentation needed". 0: none. */
	__u32 gen;   /* names this table in new-flow events */
	__u32 base;  /* its first entry in lvs_slots */
	__u32 len;   /* its number of entries */
	__u64 pos;   /* LVS_SCHED_SEQ: new flows scheduled from this table (atomic) */
};

/* A real server as a new flow reaches it; indexed by its lvs_stats slot. */
struct lvs_dest {
	__u8 action; /* LVS_NAT_IN, LVS_DR or LVS_TUN; 0: none */
	__u8 pad;
	__be16 port; /* NAT: the real server's port; 0 keeps the client's destination port */
	__be32 addr;
};

/* Global settings, one element. */
struct lvs_config {
	__u32 route_gen; /* bumped by the loader whenever lvs_routes changes */
	__u32 layout;    /* maps.rs LAYOUT, the meaning of lvs_conns' keys and values, written by
			  * the loader: a successor adopts the table only if it is its own
			  * (0: a program from before layouts were numbered, layout 1) */
};

/* A route, longest-prefix matched on the destination (kept from the netlink sync). */
struct lvs_route_key {
	__u32 prefixlen;
	__be32 addr;
};

struct lvs_route {
	__u32 ifindex;
	__be32 gateway; /* 0: directly connected */
	__be32 src;     /* source for tunnel headers (preferred source, else the interface's) */
	__u32 mtu;      /* of the outgoing interface */
};

/* A next hop's link-layer addresses, for lvs_xdp, which has no bpf_redirect_neigh (key: the
 * next hop's address). Kept from the netlink sync's neighbour table; a next hop missing here
 * leaves the packet to lvs_tc_ingress. */
struct lvs_neigh {
	__u32 ifindex; /* the interface the neighbour is on */
	__u8 dmac[6];  /* its MAC */
	__u8 smac[6];  /* ours on that interface */
};

/* An interface's own MAC, for lvs_xdp (key: its ifindex), which has no skb->pkt_type to tell
 * a frame addressed to this host from one flooded to it for another. */
struct lvs_ifmac {
	__u8 mac[6];
	__u8 pad[2];
};

/* Per real server, per CPU. */
struct lvs_stats {
	__u64 pkts_in;
	__u64 pkts_out;
	__u64 bytes_in;
	__u64 bytes_out;
};

/* Per CPU counters, indices into lvs_counters. */
enum lvs_counter {
	LVS_C_RX = 0,        /* frames the program looked at */
	LVS_C_NAT_IN = 1,    /* forwarded, by method */
	LVS_C_NAT_OUT = 2,
	LVS_C_DR = 3,
	LVS_C_TUN = 4,
	LVS_C_TO_USER = 5,   /* left for user space (unknown flow, new SYN, too big, ...) */
	LVS_C_NOT_OURS = 6,  /* not IPv4 TCP/UDP unicast: the kernel's */
	LVS_C_ERROR = 7,     /* a helper failed after the packet was changed: dropped */
	LVS_C_STATE = 8,     /* TCP state changes reported to user space */
	LVS_C_EVENT_LOST = 9,/* events the ring had no room for */
	LVS_C_NEW = 10,      /* new flows scheduled by the program */
	LVS_C_NEW_DROPPED = 11, /* new flows it scheduled but could not send (no route, not on
				 * link, too big) or record (table full): dropped */
	LVS_C_XDP = 12,      /* of the forwarded, those lvs_xdp sent (the rest went through tc) */
	LVS_C_XDP_PASS = 13, /* frames lvs_xdp handed on to the stack (and so to lvs_tc_ingress) */
	LVS_C_MAX = 16,
};

/* TCP transitions exported from the core (lvs_core::conn::state): [table][event][state].
 * Tables: 0 INPUT, 1 OUTPUT, 2 INPUT_ONLY. Events: 0 SYN, 1 FIN, 2 ACK, 3 RST, 4 none. */
#define LVS_TCP_STATES 11
#define LVS_TCP_EVENTS 5
struct lvs_tcp_table {
	__u8 next[3][LVS_TCP_EVENTS][LVS_TCP_STATES];
	__u8 pad[3];
};

enum lvs_event_kind {
	LVS_EV_STATE = 0, /* a TCP state change */
	LVS_EV_NEW = 1,   /* a new flow the program scheduled */
};

/* For user space: a TCP state change (to move ActiveConn/InActConn and the timer), or a new
 * flow (for the core to take it into its table). */
struct lvs_event {
	struct lvs_flow flow; /* the in entry's key */
	__u8 old_state;
	__u8 new_state;
	__u8 flags; /* the in entry's flags after the packet (LVS_F_NO_OUTPUT gone: a reply seen) */
	__u8 kind;  /* enum lvs_event_kind */
	__u32 gen;  /* NEW: lvs_svc.gen of the table that chose */
	__u64 ns;
	__be32 daddr; /* NEW: the real server */
	__be16 dport; /* NEW, NAT: its port */
	__u8 action;  /* NEW: LVS_NAT_IN, LVS_DR or LVS_TUN */
	__u8 pad;
};

/* Where and how the last packet was forwarded (test mode only: BPF_PROG_TEST_RUN cannot show
 * a redirect): the program's action, for the differential test to compare with the core's. */
struct lvs_test_out {
	__u32 ifindex;
	__be32 nexthop;
	__be32 addr;   /* the entry's addr: real server, or VIP for NAT_OUT */
	__be32 src;    /* TUN: the outer source */
	__be16 port;   /* NAT: the port written */
	__u8 action;   /* enum lvs_action */
	__u8 pad;
};

/* The sizes user space encodes these structs to (crates/bpf/src/maps.rs, `LEN` of each
 * mirror): a layout change that forgets the mirror does not build. */
_Static_assert(sizeof(struct lvs_flow) == 16, "maps.rs Flow::LEN");
_Static_assert(sizeof(struct lvs_conn) == 40, "maps.rs ConnEntry::LEN");
_Static_assert(sizeof(struct lvs_route_key) == 8, "maps.rs RouteKey::LEN");
_Static_assert(sizeof(struct lvs_route) == 16, "maps.rs RouteEntry::LEN");
_Static_assert(sizeof(struct lvs_stats) == 32, "maps.rs StatsEntry::LEN");
_Static_assert(sizeof(struct lvs_neigh) == 16, "maps.rs NeighEntry::LEN");
_Static_assert(sizeof(struct lvs_ifmac) == 8, "lib.rs IFMAC_LEN");
_Static_assert(sizeof(struct lvs_event) == 40, "maps.rs Event::LEN");
_Static_assert(sizeof(struct lvs_svc_key) == 8, "maps.rs SvcKey::LEN");
_Static_assert(sizeof(struct lvs_svc) == 24, "maps.rs SvcEntry::LEN");
_Static_assert(sizeof(struct lvs_test_out) == 20, "maps.rs TestOut::LEN");
_Static_assert(sizeof(struct lvs_dest) == 8, "maps.rs DestEntry::LEN");
_Static_assert(sizeof(struct lvs_tcp_table) == 168, "maps.rs TCP_TABLE_LEN");

#endif
