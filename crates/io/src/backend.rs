//! The packet I/O backend trait and backend-neutral frame types.
//!
//! [`PacketIo`] is a batched receive/transmit interface: a backend hands out batches of
//! [`RxFrame`]s, each with the queue to send replies on ([`TxQueue`]), and
//! [`PacketIo::flush`] sends what a batch queued. The `AF_PACKET` backend
//! ([`crate::afpacket::AfPacket`]) is the only implementation. The forwarding core does
//! not use it (it is sans-IO: bytes in, a verdict out); lvsd's workers hold `AfPacket`
//! sockets themselves, because they use its `rx_batch_tx` (receive on one socket, send on
//! any) which this trait does not express, and only flush through the trait;
//! `lvs-realserver`'s decapsulator receives through it. The kernel fast path (`lvs-bpf`)
//! is not a `PacketIo` backend: its packets never reach user space.
#![forbid(unsafe_code)]

use std::io;
use std::time::Duration;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// is partial (pseudo-header sum only) and must be finished.
pub const VNET_F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const VNET_F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`: not a GSO super-frame.
pub const VNET_GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`: TCP over IPv4 super-frame.
pub const VNET_GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP`: UFO (UDP fragmentation offload) super-frame.
pub const VNET_GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`: TCP over IPv6 super-frame.
pub const VNET_GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4`: UDP segmentation offload (USO) super-frame.
pub const VNET_GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: flag bit, the super-frame has CWR set.
pub const VNET_GSO_ECN: u8 = 0x80;

/// Size in bytes of `struct virtio_net_hdr` on the wire (the legacy 10-byte
/// layout that `PACKET_VNET_HDR` uses).
pub const VNET_HDR_LEN: usize = 10;

/// A parsed `struct virtio_net_hdr` (fields in host byte order).
///
/// On RX it describes the offload state of the frame that follows: partial
/// checksum ([`VNET_F_NEEDS_CSUM`] with `csum_start`/`csum_offset`, both
/// counted from the start of the Ethernet header) and GSO super-frames
/// (`gso_type` != [`VNET_GSO_NONE`] with segment payload size `gso_size`).
/// On TX the same header asks the kernel to finish the checksum and to
/// segment the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `flags`: [`VNET_F_NEEDS_CSUM`], [`VNET_F_DATA_VALID`].
    pub flags: u8,
    /// `gso_type`: one of the `VNET_GSO_*` values, optionally `| VNET_GSO_ECN`.
    pub gso_type: u8,
    /// `hdr_len`: length of the headers (L2..L4) as a hint.
    pub hdr_len: u16,
    /// `gso_size`: payload bytes per segment (the MSS for TCP).
    pub gso_size: u16,
    /// `csum_start`: offset from the start of the frame where checksumming starts.
    pub csum_start: u16,
    /// `csum_offset`: offset from `csum_start` where the checksum is stored.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Parses the 10-byte header; `None` if `b` is shorter than [`VNET_HDR_LEN`].
    pub fn parse(b: &[u8]) -> Option<Self> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// Serialises the header into its 10-byte wire form.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// True if the frame is a GSO super-frame (needs segmenting before the wire).
    pub fn is_gso(&self) -> bool {
        self.gso_type & !VNET_GSO_ECN != VNET_GSO_NONE
    }

    /// True if the L4 checksum is partial and must be finished on TX.
    pub fn needs_csum(&self) -> bool {
        self.flags & VNET_F_NEEDS_CSUM != 0
    }

    /// The same header with `csum_start` moved by `delta` bytes, e.g. after
    /// the caller prepended (`delta > 0`) an outer header in the headroom.
    /// Returns `None` on overflow.
    pub fn shifted(&self, delta: i32) -> Option<Self> {
        let mut h = *self;
        if h.needs_csum() {
            h.csum_start = u16::try_from(i32::from(h.csum_start) + delta).ok()?;
        }
        if h.hdr_len != 0 {
            h.hdr_len = u16::try_from(i32::from(h.hdr_len) + delta).ok()?;
        }
        Some(h)
    }
}

/// One received frame, borrowed from the backend's buffer for the duration
/// of the RX callback.
///
/// `buf[head..head + len]` is the frame starting at its Ethernet header;
/// `buf[..head]` is headroom the caller may overwrite (e.g. to prepend an
/// outer IPv4 header for IP-in-IP, then transmit `buf[head - 20..head + len]`).
/// The headroom already had the vnet header copied out into [`RxFrame::vnet`].
#[derive(Debug)]
pub struct RxFrame<'a> {
    /// Buffer holding headroom followed by the frame.
    pub buf: &'a mut [u8],
    /// Offset of the Ethernet header in `buf` (= usable headroom in bytes).
    pub head: usize,
    /// Captured length of the frame (`tp_snaplen`), `buf.len() >= head + len`.
    pub len: usize,
    /// Original length of the frame on the wire / in the skb (`tp_len`).
    pub wire_len: usize,
    /// Interface index the frame was received on.
    pub ifindex: u32,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_BROADCAST`, `PACKET_OTHERHOST`, ...).
    pub pkt_type: u8,
    /// Offload information; [`VnetHdr::default`] when the backend has none.
    pub vnet: VnetHdr,
    /// The frame's L4 checksum is partial (`TP_STATUS_CSUMNOTREADY`).
    pub csum_not_ready: bool,
    /// The kernel already verified the frame's checksum (`TP_STATUS_CSUM_VALID`).
    pub csum_valid: bool,
    /// The frame had a VLAN tag, which the kernel took out of the bytes
    /// (`TP_STATUS_VLAN_VALID`; the tag itself is in `tp_vlan_tci`).
    pub vlan_tagged: bool,
}

impl RxFrame<'_> {
    /// The frame bytes, starting at the Ethernet header.
    pub fn frame(&self) -> &[u8] {
        &self.buf[self.head..self.head + self.len]
    }

    /// The frame bytes, mutable, starting at the Ethernet header.
    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head..self.head + self.len]
    }

    /// True if the frame was cut short by the ring's snap length; such a
    /// frame is incomplete and must be dropped, never forwarded.
    pub fn truncated(&self) -> bool {
        self.len < self.wire_len
    }
}

/// A transmit queue: frames are copied in by [`TxQueue::push`] and sent in
/// one batch by [`TxQueue::flush`].
pub trait TxQueue {
    /// Queues `frame` (starting at its Ethernet header) for transmission on
    /// `ifindex` with offload header `vnet`. Flushes internally when the
    /// queue is full. Returns false (and counts a drop) if the frame cannot
    /// be queued, e.g. because it is larger than the TX arena.
    fn push(&mut self, ifindex: u32, vnet: &VnetHdr, frame: &[u8]) -> bool;

    /// Sends everything queued. Returns how many frames the kernel accepted;
    /// send errors are counted by the queue, not returned.
    fn flush(&mut self) -> usize;

    /// Number of frames queued and not yet flushed.
    fn pending(&self) -> usize;
}

/// A packet I/O backend: batched receive and batched transmit.
///
/// A backend instance belongs to one worker thread (it is `Send`, not shared).
/// The RX callback gets the frame (mutable, in the backend's buffer, with
/// headroom) and the backend's TX queue, so a frame can be rewritten in place
/// and queued for transmission while it is still borrowed:
///
/// ```no_run
/// use std::time::Duration;
/// use lvs_io::{AfPacket, AfPacketConfig, PacketIo, TxQueue};
///
/// # fn main() -> std::io::Result<()> {
/// let idx = lvs_io::iface::ifindex("eth0")?;
/// let mut io = AfPacket::open(idx, &AfPacketConfig::default())?;
/// loop {
///     io.rx_batch(Duration::from_millis(10), |mut frame, tx| {
///         if frame.truncated() {
///             return; // incomplete: never forward
///         }
///         // decide, rewrite frame.frame_mut() in place ...
///         let _ = frame.frame_mut();
///         tx.push(idx, &frame.vnet, frame.frame());
///     })?;
///     io.flush();
/// }
/// # }
/// ```
pub trait PacketIo {
    /// The backend's transmit queue type.
    type Tx: TxQueue;

    /// Calls `f` for every frame that is ready, waiting up to `timeout` if
    /// none is. Returns the number of frames delivered (0 on timeout).
    /// Errors only on a failure of the underlying socket, never because of a
    /// frame's content. Does not flush the TX queue.
    fn rx_batch<F>(&mut self, timeout: Duration, f: F) -> io::Result<usize>
    where
        F: FnMut(RxFrame<'_>, &mut Self::Tx);

    /// The backend's transmit queue.
    fn tx_queue(&mut self) -> &mut Self::Tx;

    /// Queues a frame; see [`TxQueue::push`].
    fn tx(&mut self, ifindex: u32, vnet: &VnetHdr, frame: &[u8]) -> bool {
        self.tx_queue().push(ifindex, vnet, frame)
    }

    /// Sends everything queued; see [`TxQueue::flush`].
    fn flush(&mut self) -> usize {
        self.tx_queue().flush()
    }
}
