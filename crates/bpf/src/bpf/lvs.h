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

/* Global settings, one element. */
struct lvs_config {
	__u32 route_gen; /* bumped by the loader whenever lvs_routes changes */
	__u32 pad;
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
	LVS_C_EVENT_LOST = 9,/* state changes the event ring had no room for */
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

/* A TCP state change, for user space to move ActiveConn/InActConn and the timer. */
struct lvs_event {
	struct lvs_flow flow; /* the in entry's key */
	__u8 old_state;
	__u8 new_state;
	__u8 flags; /* the in entry's flags after the packet (LVS_F_NO_OUTPUT gone: a reply seen) */
	__u8 pad[5];
	__u64 ns;
};

/* Where the last packet went (test mode only: BPF_PROG_TEST_RUN cannot show a redirect). */
struct lvs_test_out {
	__u32 ifindex;
	__be32 nexthop;
};

#endif
