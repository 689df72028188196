//! Where one request's time went, from the moment its frame was read to the moment its
//! response was written, so that a slow request can be placed: in the broker's own work, in
//! waiting for durability, behind earlier requests on the connection, or in writing to a slow
//! client.
//!
//! The connection records an instant at each step; nothing here reads a clock.

use std::time::Duration;

use kafka_protocol::messages::RequestKind;

use super::handlers::fetch::FETCH_WAIT_MS_MAX;
use crate::io::clock::Instant;

/// Instants in one request's life on a connection. Steps a request does not take (only a
/// Produce is appended before it is queued) stay `None`.
#[derive(Clone, Copy, Debug)]
pub struct RequestTiming {
    /// The frame was read and decoded.
    pub received: Instant,
    /// How long the request may wait by design (a Fetch's long poll, a JoinGroup waiting for
    /// the rest of its group): only time beyond this counts as slow.
    pub allowed_wait: Duration,
    /// A Produce may append: every earlier request that is not a Produce has run.
    pub ordered: Option<Instant>,
    /// A Produce's batches are in the log (not necessarily durable).
    pub appended: Option<Instant>,
    /// The writer reached it: every earlier request on the connection is answered.
    pub dequeued: Option<Instant>,
    /// Its response is ready (for a Produce: durable as the policy requires).
    pub completed: Option<Instant>,
}

/// The same life as durations between steps, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestPhases {
    pub total: Duration,
    /// Waiting for earlier non-Produce requests before appending (Produce only).
    pub ordering: Duration,
    /// Appending the batches (Produce only).
    pub append: Duration,
    /// Waiting for earlier requests on the connection to be answered (including for room in
    /// the connection's queue, which holds earlier requests).
    pub behind_earlier: Duration,
    /// From the writer reaching the request to its response being ready: the handler's work,
    /// or for a Produce the rest of the wait for durability.
    pub completion: Duration,
    /// Encoding and writing the response.
    pub write: Duration,
}

impl RequestTiming {
    pub fn new(received: Instant) -> Self {
        Self {
            received,
            allowed_wait: Duration::ZERO,
            ordered: None,
            appended: None,
            dequeued: None,
            completed: None,
        }
    }

    /// The phases, once the response is written at `written`. A step not taken counts as
    /// taking no time, at the previous step's instant.
    pub fn phases(&self, written: Instant) -> RequestPhases {
        let ordered = self.ordered.unwrap_or(self.received);
        let appended = self.appended.unwrap_or(ordered);
        let dequeued = self.dequeued.unwrap_or(appended);
        let completed = self.completed.unwrap_or(dequeued);
        RequestPhases {
            total: written.saturating_duration_since(self.received),
            ordering: ordered.saturating_duration_since(self.received),
            append: appended.saturating_duration_since(ordered),
            behind_earlier: dequeued.saturating_duration_since(appended),
            completion: completed.saturating_duration_since(dequeued),
            write: written.saturating_duration_since(completed),
        }
    }

    /// The phases, if the request took longer than its allowed wait plus `threshold` (`None`:
    /// never slow).
    pub fn slow_phases(
        &self,
        written: Instant,
        threshold: Option<Duration>,
    ) -> Option<RequestPhases> {
        let phases = self.phases(written);
        threshold
            .is_some_and(|threshold| phases.total > self.allowed_wait + threshold)
            .then_some(phases)
    }
}

/// How long a request may wait by design before it is answered. A SyncGroup waits for the
/// group's leader, for at most the group's rebalance timeout, which is not in the request:
/// the longest session timeout allowed stands in for it.
pub fn allowed_wait(body: &RequestKind, group_session_timeout_ms_max: u64) -> Duration {
    let millis = |value: i32| u64::try_from(value).unwrap_or(0);
    Duration::from_millis(match body {
        RequestKind::Fetch(fetch) => millis(fetch.max_wait_ms).min(FETCH_WAIT_MS_MAX),
        RequestKind::JoinGroup(join) => millis(join.rebalance_timeout_ms)
            .max(millis(join.session_timeout_ms))
            .min(group_session_timeout_ms_max),
        RequestKind::SyncGroup(_) => group_session_timeout_ms_max,
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::clock::Clock;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn a_produce_splits_into_its_phases_and_they_add_up() {
        let start = Clock::new().now();
        let timing = RequestTiming {
            received: start,
            allowed_wait: Duration::ZERO,
            ordered: Some(start + ms(1)),
            appended: Some(start + ms(3)),
            dequeued: Some(start + ms(10)),
            completed: Some(start + ms(30)),
        };
        let phases = timing.phases(start + ms(31));
        assert_eq!(
            phases,
            RequestPhases {
                total: ms(31),
                ordering: ms(1),
                append: ms(2),
                behind_earlier: ms(7),
                completion: ms(20),
                write: ms(1),
            }
        );
        let sum = phases.ordering
            + phases.append
            + phases.behind_earlier
            + phases.completion
            + phases.write;
        assert_eq!(sum, phases.total);
    }

    #[test]
    fn steps_not_taken_take_no_time() {
        let start = Clock::new().now();
        let mut timing = RequestTiming::new(start);
        timing.dequeued = Some(start + ms(2));
        timing.completed = Some(start + ms(7));
        let phases = timing.phases(start + ms(8));
        assert_eq!(phases.ordering, Duration::ZERO);
        assert_eq!(phases.append, Duration::ZERO);
        assert_eq!(phases.behind_earlier, ms(2));
        assert_eq!(phases.completion, ms(5));
        assert_eq!(phases.write, ms(1));
    }

    #[test]
    fn only_requests_over_the_threshold_are_slow() {
        let start = Clock::new().now();
        let timing = RequestTiming::new(start);
        assert_eq!(timing.slow_phases(start + ms(10), Some(ms(10))), None);
        assert_eq!(
            timing
                .slow_phases(start + ms(11), Some(ms(10)))
                .map(|p| p.total),
            Some(ms(11))
        );
        assert_eq!(timing.slow_phases(start + ms(3_600_000), None), None);
    }

    #[test]
    fn a_long_poll_is_slow_only_beyond_its_wait() {
        let mut fetch = kafka_protocol::messages::FetchRequest::default();
        fetch.max_wait_ms = 500;
        let start = Clock::new().now();
        let mut timing = RequestTiming::new(start);
        timing.allowed_wait = allowed_wait(&RequestKind::Fetch(fetch), 1_800_000);
        assert_eq!(timing.allowed_wait, ms(500));
        assert_eq!(timing.slow_phases(start + ms(510), Some(ms(10))), None);
        assert!(timing.slow_phases(start + ms(511), Some(ms(10))).is_some());
        let produce = RequestKind::Produce(Default::default());
        assert_eq!(allowed_wait(&produce, 1_800_000), Duration::ZERO);
    }
}
