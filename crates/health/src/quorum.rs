//! keepalived's quorum with hysteresis (`update_quorum_state` in keepalived's `ipwrapper.c`).
//!
//! The quorum of a service is up while the sum of the weights of its up real servers is high
//! enough. Starting state: up when `sum >= quorum + hysteresis`. While down it is gained
//! when `sum >= quorum + hysteresis`; while up it is lost when `sum < quorum - hysteresis`,
//! or when no weight is left at all (`sum == 0`). With a sorry server, keepalived takes the
//! remaining up servers out of the pool and puts the sorry server in while the quorum is
//! lost, and reverses that when it is gained.

/// Quorum state of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Least weight sum (keepalived default 1).
    pub quorum: u64,
    /// Flap damper (default 0).
    pub hysteresis: u64,
    up: bool,
}

/// What an update did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumChange {
    /// The quorum was gained.
    Gained,
    /// The quorum was lost.
    Lost,
}

impl Quorum {
    /// The starting state for weight `sum`.
    pub fn new(quorum: u64, hysteresis: u64, sum: u64) -> Quorum {
        Quorum {
            quorum,
            hysteresis,
            up: sum >= quorum + hysteresis,
        }
    }

    /// Whether the quorum is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// The sum at which a lost quorum is gained.
    pub fn gain_at(&self) -> u64 {
        self.quorum + self.hysteresis
    }

    /// The sum below which a quorum is lost.
    pub fn lose_below(&self) -> u64 {
        self.quorum.saturating_sub(self.hysteresis)
    }

    /// Take a new weight sum into account.
    pub fn update(&mut self, sum: u64) -> Option<QuorumChange> {
        if !self.up && sum >= self.gain_at() {
            self.up = true;
            Some(QuorumChange::Gained)
        } else if self.up && (sum == 0 || sum < self.lose_below()) {
            self.up = false;
            Some(QuorumChange::Lost)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_quorum_is_lost_with_the_last_server() {
        let mut q = Quorum::new(1, 0, 3);
        assert!(q.is_up());
        assert_eq!(q.update(2), None);
        assert_eq!(q.update(1), None);
        assert_eq!(q.update(0), Some(QuorumChange::Lost));
        assert_eq!(q.update(0), None);
        assert_eq!(q.update(1), Some(QuorumChange::Gained));
    }

    #[test]
    fn hysteresis_damps_flapping() {
        // quorum 3, hysteresis 1: lost below 2, regained at 4.
        let mut q = Quorum::new(3, 1, 5);
        assert!(q.is_up());
        assert_eq!(q.update(3), None);
        assert_eq!(q.update(2), None, "2 is not below 3 - 1");
        assert_eq!(q.update(1), Some(QuorumChange::Lost));
        assert_eq!(q.update(2), None);
        assert_eq!(q.update(3), None, "3 is below 3 + 1");
        assert_eq!(q.update(4), Some(QuorumChange::Gained));
        assert_eq!(q.update(2), None);
    }

    #[test]
    fn starting_state_needs_quorum_plus_hysteresis() {
        assert!(!Quorum::new(3, 1, 3).is_up());
        assert!(Quorum::new(3, 1, 4).is_up());
        assert!(!Quorum::new(1, 0, 0).is_up());
    }

    #[test]
    fn hysteresis_above_quorum_loses_only_at_zero() {
        let mut q = Quorum::new(1, 2, 3);
        assert!(q.is_up());
        assert_eq!(q.update(1), None);
        assert_eq!(q.update(0), Some(QuorumChange::Lost));
    }
}
