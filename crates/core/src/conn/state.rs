//! The IPVS connection state machines and their timeouts.
//!
//! TCP follows `ip_vs_proto_tcp.c`: three transition tables, INPUT (client → server, seen by
//! a NAT director that also sees replies), OUTPUT (server → client, NAT only) and INPUT_ONLY
//! (DR and Tun, where the director never sees a reply). A connection starts in `None` and
//! moves on every packet by the table row of the packet's first flag among RST, SYN, FIN,
//! ACK; a packet with none of them moves it to `Close`. UDP and SCTP entries have a single
//! state and the protocol's timeout.

use std::time::Duration;

/// IPVS TCP connection states (`IP_VS_TCP_S_*`), also used for UDP/SCTP entries (always
/// `None`) and templates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    /// No packet seen yet (UDP entries stay here).
    None = 0,
    /// Three-way handshake completed.
    Established = 1,
    /// SYN seen from the server side.
    SynSent = 2,
    /// SYN seen from the client.
    SynRecv = 3,
    /// A FIN seen.
    FinWait = 4,
    /// Both FINs seen.
    TimeWait = 5,
    /// Closed (RST, or a packet with no flags).
    Close = 6,
    /// FIN from the client while established.
    CloseWait = 7,
    /// FIN after CLOSE_WAIT.
    LastAck = 8,
    /// Listening (FTP data connections in IPVS; unused here).
    Listen = 9,
    /// SYN+ACK seen (secure_tcp tables).
    SynAck = 10,
}

/// Number of TCP states.
pub const TCP_STATES: usize = 11;

impl TcpState {
    /// Every state, in `TcpState as usize` order.
    pub const ALL: [TcpState; TCP_STATES] = [
        TcpState::None,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::SynAck,
    ];

    /// State from its index.
    pub fn from_index(i: usize) -> Option<TcpState> {
        Self::ALL.get(i).copied()
    }

    /// The state named `name` as [`TcpState::name`] writes it, in either case, `-` or `_`
    /// between words (`syn_recv`, `SYN-RECV`).
    pub fn from_name(name: &str) -> Option<TcpState> {
        let n = name.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL.iter().copied().find(|s| s.name() == n)
    }

    /// Name as `ipvsadm -L -c` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::Established => "ESTABLISHED",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::Listen => "LISTEN",
            TcpState::SynAck => "SYNACK",
        }
    }
}

/// Which side a packet came from, as far as the state machine is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → real server.
    Input,
    /// Real server → client (NAT only).
    Output,
}

/// Row of the transition table for a TCP packet: RST wins over SYN over FIN over ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpEvent {
    /// SYN set.
    Syn = 0,
    /// FIN set (no SYN/RST).
    Fin = 1,
    /// Only ACK among the four.
    Ack = 2,
    /// RST set.
    Rst = 3,
}

impl TcpEvent {
    /// Classify TCP flags (`lvs_wire::tcp::flags`) like `tcp_state_idx`.
    pub fn from_flags(flags: u8) -> Option<TcpEvent> {
        use lvs_wire::tcp::flags::{ACK, FIN, RST, SYN};
        if flags & RST != 0 {
            Some(TcpEvent::Rst)
        } else if flags & SYN != 0 {
            Some(TcpEvent::Syn)
        } else if flags & FIN != 0 {
            Some(TcpEvent::Fin)
        } else if flags & ACK != 0 {
            Some(TcpEvent::Ack)
        } else {
            None
        }
    }
}

use TcpState::{
    Close as CL, CloseWait as CW, Established as ES, FinWait as FW, LastAck as LA, Listen as LI,
    SynRecv as SR, SynSent as SS, TimeWait as TW,
};

type Table = [[TcpState; TCP_STATES]; 4];

// Columns: current state NO ES SS SR FW TW CL CW LA LI SA. Rows: syn, fin, ack, rst.
// Transcribed from the kernel's `tcp_states` (the facts carry over; the table is the spec).
const INPUT: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
    [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
];
const OUTPUT: Table = [
    [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
    [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
    [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
    [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
];
const INPUT_ONLY: Table = [
    [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
    [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
    [CL, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
    [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
];

/// Next TCP state for a packet with `flags` in `dir`, on a connection whose replies the
/// director does (`sees_output`) or does not see.
///
/// As in IPVS, a connection flagged "no output" uses INPUT_ONLY for input packets until an
/// output packet shows up; DR and Tun connections never see one.
pub fn tcp_next_state(current: TcpState, dir: Direction, sees_output: bool, flags: u8) -> TcpState {
    let Some(event) = TcpEvent::from_flags(flags) else {
        return TcpState::Close;
    };
    let table = match (dir, sees_output) {
        (Direction::Output, _) => &OUTPUT,
        (Direction::Input, true) => &INPUT,
        (Direction::Input, false) => &INPUT_ONLY,
    };
    table[event as usize][current as usize]
}

/// Connection timeouts: IPVS's per-state TCP table plus UDP and SCTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Per TCP state, indexed by `TcpState as usize`.
    pub tcp: [Duration; TCP_STATES],
    /// UDP entries.
    pub udp: Duration,
    /// SCTP entries (no SCTP state machine yet: one timeout, like UDP).
    pub sctp: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let s = Duration::from_secs;
        Timeouts {
            // NO, ES, SS, SR, FW, TW, CL, CW, LA, LI, SA
            tcp: [
                s(2),
                s(900),
                s(120),
                s(60),
                s(120),
                s(120),
                s(10),
                s(60),
                s(30),
                s(120),
                s(120),
            ],
            udp: s(300),
            sctp: s(300),
        }
    }
}

impl Timeouts {
    /// Timeout of a TCP state.
    pub fn tcp(&self, state: TcpState) -> Duration {
        self.tcp[state as usize]
    }

    /// Timeout of a fresh entry of `proto` (TCP in its `None` state).
    pub fn initial(&self, proto: crate::types::Protocol) -> Duration {
        match proto {
            crate::types::Protocol::Tcp => self.tcp(TcpState::None),
            crate::types::Protocol::Udp => self.udp,
            crate::types::Protocol::Sctp => self.sctp,
        }
    }

    /// Set the timeout of one TCP state (`--set` covers ESTABLISHED and FIN_WAIT only).
    pub fn set_tcp(&mut self, state: TcpState, timeout: Duration) {
        self.tcp[state as usize] = timeout;
    }

    /// `ipvsadm --set tcp tcpfin udp`: a zero leaves that value unchanged, as in ipvsadm.
    pub fn set(&mut self, tcp: Duration, tcpfin: Duration, udp: Duration) {
        if !tcp.is_zero() {
            self.tcp[TcpState::Established as usize] = tcp;
        }
        if !tcpfin.is_zero() {
            self.tcp[TcpState::FinWait as usize] = tcpfin;
        }
        if !udp.is_zero() {
            self.udp = udp;
        }
    }

    /// The three values `ipvsadm -L --timeout` shows: (tcp, tcpfin, udp).
    pub fn get(&self) -> (Duration, Duration, Duration) {
        (
            self.tcp(TcpState::Established),
            self.tcp(TcpState::FinWait),
            self.udp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_wire::tcp::flags::{ACK, FIN, RST, SYN};

    #[test]
    fn nat_handshake_and_close() {
        let mut s = TcpState::None;
        let steps = [
            (Direction::Input, SYN, TcpState::SynRecv),
            (Direction::Output, SYN | ACK, TcpState::SynRecv),
            (Direction::Input, ACK, TcpState::Established),
            (Direction::Input, FIN | ACK, TcpState::CloseWait),
            (Direction::Output, FIN | ACK, TcpState::TimeWait),
            (Direction::Input, ACK, TcpState::TimeWait),
        ];
        for (dir, flags, want) in steps {
            s = tcp_next_state(s, dir, true, flags);
            assert_eq!(s, want, "after {dir:?} flags {flags:#x}");
        }
    }

    #[test]
    fn input_only_handshake_and_close() {
        let mut s = TcpState::None;
        for (flags, want) in [
            (SYN, TcpState::SynRecv),
            (ACK, TcpState::Established),
            (FIN | ACK, TcpState::FinWait),
            (ACK, TcpState::FinWait),
        ] {
            s = tcp_next_state(s, Direction::Input, false, flags);
            assert_eq!(s, want);
        }
    }

    #[test]
    fn rst_and_flagless() {
        assert_eq!(
            tcp_next_state(TcpState::Established, Direction::Input, false, RST | ACK),
            TcpState::Close
        );
        assert_eq!(
            tcp_next_state(TcpState::Established, Direction::Input, false, 0),
            TcpState::Close
        );
        // RST in SYN_RECV keeps SYN_RECV (the kernel ignores a RST there on input).
        assert_eq!(
            tcp_next_state(TcpState::SynRecv, Direction::Input, true, RST),
            TcpState::SynRecv
        );
    }

    #[test]
    fn default_timeouts_match_ipvs() {
        let t = Timeouts::default();
        assert_eq!(
            t.get(),
            (
                Duration::from_secs(900),
                Duration::from_secs(120),
                Duration::from_secs(300)
            )
        );
        assert_eq!(t.tcp(TcpState::SynRecv), Duration::from_secs(60));
        assert_eq!(t.tcp(TcpState::TimeWait), Duration::from_secs(120));
        assert_eq!(t.tcp(TcpState::Close), Duration::from_secs(10));
        assert_eq!(t.tcp(TcpState::CloseWait), Duration::from_secs(60));
        assert_eq!(t.tcp(TcpState::LastAck), Duration::from_secs(30));
    }

    #[test]
    fn set_keeps_zeroes() {
        let mut t = Timeouts::default();
        t.set(
            Duration::from_secs(100),
            Duration::ZERO,
            Duration::from_secs(7),
        );
        assert_eq!(
            t.get(),
            (
                Duration::from_secs(100),
                Duration::from_secs(120),
                Duration::from_secs(7)
            )
        );
    }
}
