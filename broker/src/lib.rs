//! Skiff: a Kafka-compatible message broker whose every line runs both on real hardware and in a
//! deterministic simulator.
//!
//! ```text
//!   clients ──TCP──► server (connections, handlers) ──► log      (segments, indexes, recovery)
//!                          │                         ──► group    (coordinator state machine)
//!                          │                         ──► producer (idempotence state)
//!                          └── every I/O through io: Clock, Disk, net, tasks, Random
//! ```
//!
//! The state machines (`log`, `group`, `producer`) take time and inputs as arguments and never
//! touch the world; `server` drives them with real I/O through the seams in `io`, which are
//! tokio and the filesystem in production and madsim plus a simulated disk under
//! `RUSTFLAGS="--cfg madsim"`.

pub mod cluster;
pub mod config;
pub mod consensus;
pub mod group;
pub mod io;
pub mod log;
pub mod producer;
pub mod server;
pub mod wire;
