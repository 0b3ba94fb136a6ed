//! Typed traffic counters for services and real servers.

/// Connections, packets and bytes in both directions, as IPVS keeps per service and per
/// real server. "In" is client → real server, "out" is real server → client (seen only in
/// NAT, since DR and Tun replies bypass the director).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets client → real server.
    pub inpkts: u64,
    /// Packets real server → client.
    pub outpkts: u64,
    /// Bytes client → real server (IP packet length, as IPVS counts).
    pub inbytes: u64,
    /// Bytes real server → client.
    pub outbytes: u64,
}

impl Stats {
    /// Count one packet of `bytes` bytes going in.
    #[inline]
    pub fn count_in(&mut self, bytes: usize) {
        self.inpkts += 1;
        self.inbytes += bytes as u64;
    }

    /// Count one packet of `bytes` bytes going out.
    #[inline]
    pub fn count_out(&mut self, bytes: usize) {
        self.outpkts += 1;
        self.outbytes += bytes as u64;
    }

    /// Add another set of counters to this one.
    pub fn add(&mut self, other: &Stats) {
        self.conns += other.conns;
        self.inpkts += other.inpkts;
        self.outpkts += other.outpkts;
        self.inbytes += other.inbytes;
        self.outbytes += other.outbytes;
    }
}
