//! The seams between the broker and the world: time, disk, network, tasks and randomness.
//!
//! Broker logic never touches `std::fs`, the system clock, OS threads or an unseeded random
//! number generator. It goes through this module instead, so that the same code runs on tokio
//! and the real filesystem in production, and under madsim with a simulated disk in the
//! simulator (`RUSTFLAGS="--cfg madsim"`), where every run is a pure function of its seed.
//!
//! One convention follows from determinism: every `tokio::select!` is `biased;`. Unbiased, tokio
//! picks among ready branches with a generator seeded per process, so two simulated runs of one
//! seed in one process could take different branches.
//!
//! ```text
//!   broker logic ──► Clock      (monotonic `now`, skewable wall clock)
//!                ──► Disk       (RealDisk: std::fs │ SimDisk: in memory, loses unsynced data)
//!                ──► net        (tokio::net │ madsim::net, chosen at build time)
//!                ──► tasks      (tokio::spawn │ madsim task, blocking work off the reactor)
//!                ──► Random     (seeded once at start-up)
//! ```

pub mod clock;
pub mod disk;
#[cfg(not(madsim))]
pub mod huge_allocation;
pub mod net;
pub mod random;
pub mod real_disk;
pub mod sim_disk;
pub mod tasks;

pub use clock::Clock;
pub use disk::{DirEntry, Disk, DiskFile, VolumeSpace};
pub use random::Random;
pub use real_disk::RealDisk;
pub use sim_disk::{FaultBudget, SimDisk, SimDiskFaults};
