//! The broker's Raft groups, shared between the cluster driver and the request handlers.
//!
//! Handlers only propose (a produce request on a leader); everything else (ticks, messages,
//! persistence, commits) is the driver's. Lock order: a partition's state lock may be held
//! while taking this one, never the other way round, so the driver releases this lock before
//! it touches any partition.

use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::consensus::GroupSet;
use crate::io::clock::Instant;
use crate::io::Clock;

pub struct RaftSet {
    groups: Mutex<GroupSet>,
    /// Wakes the driver: a proposal was made, or a group was added.
    pub wake: Notify,
    clock: Clock,
    /// The origin of the groups' `now_ms`.
    origin: Instant,
}

impl RaftSet {
    pub fn new(groups: GroupSet, clock: Clock) -> Self {
        let origin = clock.now();
        Self {
            groups: Mutex::new(groups),
            wake: Notify::new(),
            clock,
            origin,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, GroupSet> {
        self.groups
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Monotonic milliseconds for the Raft core, from the clock seam.
    pub fn now_ms(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.origin);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }
}
