//! Sans-IO forwarding core of the LVS director.
//!
//! Nothing here reads a clock, opens a socket or starts a thread: the caller passes the
//! current [`Time`](time::Time) and a frame, and gets a [`Verdict`](director::Verdict) back.
//!
//! Where to look:
//! - a frame's fate is decided in [`director::Director::decide`], which returns an
//!   [`action::Action`] (a connection is scheduled there → [`sched`]);
//! - the frame is rewritten by [`action::apply`] with the primitives of [`rewrite`] (NAT, DR,
//!   Tun, ICMP errors);
//! - connection state and expiry live in [`conn`];
//! - services and real servers in [`service`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod conn;
pub mod counters;
pub mod director;
pub mod net;
pub mod rewrite;
pub mod sched;
pub mod service;
/// Test support: frames, a wired director and checks shared by the tests, benches and fuzz
/// targets. Compiled only for this crate's tests and with the `sim` feature, which only
/// dev-dependencies turn on: it is not part of the production build.
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod stats;
pub mod time;
pub mod types;

pub use action::{Action, RxMeta, Tx, Verdict};
pub use counters::{Counters, DropReason};
pub use director::{Director, Settings};
pub use time::Time;
