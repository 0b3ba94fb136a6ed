//! Packet I/O for the LVS director.
//!
//! This crate is the only place in the workspace that uses `unsafe` and talks
//! to the kernel directly. It provides:
//!
//! * [`afpacket`]: an `AF_PACKET` backend with a `TPACKET_V2` (low latency,
//!   default) or `TPACKET_V3` memory-mapped RX ring (with `PACKET_VNET_HDR`, `PACKET_RESERVE` headroom, fanout and
//!   `PACKET_IGNORE_OUTGOING`) and batched `sendmmsg` TX.
//! * [`backend`]: the [`PacketIo`] batched receive/transmit trait (implemented by
//!   the `AF_PACKET` backend), plus the backend-neutral [`RxFrame`] and [`VnetHdr`]
//!   types.
//! * [`gso`]: pure-logic TCP/IPv4 segmentation of GSO super-frames (for the
//!   cases the kernel cannot segment for us, e.g. IP-in-IP).
//! * [`iface`]: interface look-ups (index, MAC, MTU, list), non-blocking mode
//!   and CPU pinning.
//! * [`netns`]: entering a named network namespace from the calling thread.
//!
//! Every `unsafe` block carries a `// SAFETY:` comment (enforced by
//! `clippy::undocumented_unsafe_blocks`).

pub mod afpacket;
pub mod backend;
pub mod gso;
pub mod iface;
pub mod netlink;
pub mod netns;
mod sys;

/// Give the C allocator's free memory back to the system (`malloc_trim(0)`): after a burst
/// of allocations (a SYN flood's connection entries) has been freed, glibc keeps the pages in
/// its heap unless asked. Returns whether any memory was released; a no-op elsewhere than
/// glibc.
pub fn trim_heap() -> bool {
    sys::trim_heap()
}

/// Make glibc map every allocation of 128 KiB or more on its own (`M_MMAP_THRESHOLD`,
/// fixed: glibc otherwise raises it after each such block is freed, up to 32 MiB). The
/// connection table's slab, indexes and timer slots grow into such blocks under a flood;
/// mapped apart, each goes back to the system whole when it is freed or shrunk, instead of
/// leaving holes in the heap. Call it once at start. Returns whether it took effect.
pub fn map_large_allocations() -> bool {
    sys::fixed_mmap_threshold(128 * 1024)
}

pub use afpacket::{
    AfPacket, AfPacketConfig, Fanout, PacketTx, RingStats, RingVersion, TxCounters,
};
pub use backend::{PacketIo, RxFrame, TxQueue, VnetHdr};
