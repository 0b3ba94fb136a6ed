//! A hashed timing wheel for connection expiry.
//!
//! Entries are filed under the tick of their deadline. Refreshing a connection on a packet
//! only moves its `expires` field (no wheel operation on the hot path); when its slot comes
//! round, the wheel asks the owner whether the entry is due and re-files it if not. Each
//! [`advance`](TimerWheel::advance) visits only the slots whose ticks elapsed, never the
//! whole table. Slot vectors keep their capacity, so a steady state does not allocate.

use crate::time::Time;

/// One filed timer: an entry index, the generation it had when filed, and the entry's timer
/// sequence then (an entry whose deadline moved earlier gets a new timer with the next
/// sequence; the old one is then stale).
pub type Timer = (u32, u32, u32);

/// The wheel. `Default` is an empty wheel with no slots (a placeholder; use [`TimerWheel::new`]).
#[derive(Debug, Default)]
pub struct TimerWheel {
    slots: Vec<Vec<Timer>>,
    tick_nanos: u64,
    /// The last tick whose slot was processed.
    current: u64,
    scratch: Vec<Timer>,
}

/// What the owner says about a timer whose slot came round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Gone already (entry freed or reused): forget the timer.
    Stale,
    /// Expired now: the owner has removed it.
    Expired,
    /// Not yet: file it again under this deadline.
    Later(Time),
}

impl TimerWheel {
    /// Give back the slots' spare capacity (after a burst of timers, e.g. a SYN flood). An
    /// empty slot lets its buffer go altogether: a few bytes kept in each of thousands of
    /// blocks scattered by the burst would keep most of their pages resident.
    pub fn shrink(&mut self) {
        for s in &mut self.slots {
            if s.is_empty() {
                *s = Vec::new();
            } else {
                s.shrink_to_fit();
            }
        }
        self.scratch = Vec::new();
    }

    /// A wheel of `slots` slots of `tick_nanos` each, starting at `now`.
    pub fn new(slots: usize, tick_nanos: u64, now: Time) -> TimerWheel {
        let slots = slots.max(1);
        let tick_nanos = tick_nanos.max(1);
        TimerWheel {
            // A little room per slot up front, so filing a timer rarely allocates.
            slots: (0..slots).map(|_| Vec::with_capacity(4)).collect(),
            tick_nanos,
            current: now.as_nanos() / tick_nanos,
            scratch: Vec::new(),
        }
    }

    fn tick_of(&self, t: Time) -> u64 {
        t.as_nanos() / self.tick_nanos.max(1)
    }

    fn slot_of(&self, tick: u64) -> usize {
        (tick % (self.slots.len().max(1) as u64)) as usize
    }

    /// File a timer for `deadline` (a past deadline fires at the next advance).
    pub fn schedule(&mut self, timer: Timer, deadline: Time) {
        if self.slots.is_empty() {
            return;
        }
        let tick = self.tick_of(deadline).max(self.current + 1);
        let slot = self.slot_of(tick);
        self.slots[slot].push(timer);
    }

    /// Process every slot from the last processed tick up to `now`, calling `check` for each
    /// timer found there. Returns how many timers were reported expired.
    pub fn advance(&mut self, now: Time, mut check: impl FnMut(Timer) -> Due) -> usize {
        let target = self.tick_of(now);
        if target <= self.current || self.slots.is_empty() {
            return 0;
        }
        // After a long pause every slot is due once; visiting each once is enough because
        // `check` compares the real deadline.
        let span = (target - self.current).min(self.slots.len() as u64);
        let first = target - span + 1;
        let mut expired = 0;
        for tick in first..=target {
            let slot = self.slot_of(tick);
            std::mem::swap(&mut self.scratch, &mut self.slots[slot]);
            self.current = tick;
            let mut pending = std::mem::take(&mut self.scratch);
            for timer in pending.drain(..) {
                match check(timer) {
                    Due::Stale => {}
                    Due::Expired => expired += 1,
                    Due::Later(deadline) => {
                        let t = self.tick_of(deadline).max(tick + 1);
                        let s = self.slot_of(t);
                        self.slots[s].push(timer);
                    }
                }
            }
            // Give the emptied vector (and its capacity) back to the slot if nothing was
            // re-filed there meanwhile; otherwise keep it as scratch.
            if self.slots[slot].is_empty() {
                std::mem::swap(&mut self.slots[slot], &mut pending);
            }
            self.scratch = pending;
        }
        self.current = target;
        expired
    }

    /// Number of filed timers (including stale ones not yet collected).
    pub fn len(&self) -> usize {
        self.slots.iter().map(Vec::len).sum()
    }

    /// Whether no timer is filed.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Vec::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fires_at_deadline_and_refiles_later_ones() {
        let mut w = TimerWheel::new(8, 1_000_000_000, Time::ZERO);
        let mut deadlines: HashMap<u32, Time> = HashMap::new();
        for (id, secs) in [(1u32, 3u64), (2, 5), (3, 20), (4, 1)] {
            deadlines.insert(id, Time::from_secs(secs));
            w.schedule((id, 0, 0), Time::from_secs(secs));
        }
        let mut fired = Vec::new();
        for s in 1..=25u64 {
            let now = Time::from_secs(s);
            w.advance(now, |(id, _, _)| {
                let d = deadlines[&id];
                if d <= now {
                    fired.push((id, s));
                    Due::Expired
                } else {
                    Due::Later(d)
                }
            });
        }
        assert_eq!(fired, vec![(4, 1), (1, 3), (2, 5), (3, 20)]);
        assert!(w.is_empty());
    }

    #[test]
    fn long_pause_visits_everything_once() {
        let mut w = TimerWheel::new(4, 10, Time::ZERO);
        for id in 0..10u32 {
            w.schedule((id, 0, 0), Time::from_nanos(u64::from(id) * 10 + 10));
        }
        let mut seen = 0;
        let n = w.advance(Time::from_nanos(1_000_000), |_| {
            seen += 1;
            Due::Expired
        });
        assert_eq!((n, seen), (10, 10));
    }

    #[test]
    fn extended_deadline_is_honoured() {
        let mut w = TimerWheel::new(16, 1, Time::ZERO);
        w.schedule((7, 0, 0), Time::from_nanos(2));
        let mut deadline = Time::from_nanos(40);
        let mut fired_at = None;
        for t in 1..=50u64 {
            let now = Time::from_nanos(t);
            w.advance(now, |_| {
                if deadline <= now {
                    fired_at = Some(t);
                    Due::Expired
                } else {
                    Due::Later(deadline)
                }
            });
            if t == 10 {
                deadline = Time::from_nanos(45);
            }
        }
        assert_eq!(fired_at, Some(45));
    }
}
