//! Invariants the simulator checks from inside, on the brokers' own state.
//!
//! The history checker sees only what clients saw. The simulator can also look at each
//! broker's partitions directly (through the `RunningServer::broker` handle it keeps), and it
//! does so continuously during both phases. The rules, for the worlds `world.rs` allows:
//!
//! - **The high watermark never goes backwards**, across observations and across restarts:
//!   under the sync policy it is the durable end, which a crash keeps; under the interval
//!   policy it is the log end, and only a process crash or a clean restart (which keep the
//!   page cache) are drawn.
//! - **Every acknowledged offset is below the high watermark**: an acknowledgement under
//!   either policy means the record is in the log consumers read (synced, or in a page cache
//!   that survives every drawn crash), so after any restart it must still be there.
//! - **A broker starts**: recovery after any drawn crash succeeds.
//! - **Indexes agree with segments after recovery**: once per broker start, every batch found
//!   by scanning the segments is found again through the offset index at the same offset.
//!
//! The tracker is pure: the harness feeds it observations and it returns violations.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A partition, named as the broker names it.
pub type PartitionKey = (String, u32);

/// One broken rule, with the simulated time it was seen at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// Simulated milliseconds since the run started.
    pub time_ms: u64,
    /// The broker.
    pub broker: u32,
    /// What is wrong.
    pub description: String,
}

/// The most violations kept; the count is complete.
pub const VIOLATIONS_KEPT_MAX: usize = 32;

/// What the simulator has seen of every broker's partitions.
#[derive(Debug, Default)]
pub struct InvariantTracker {
    /// The highest high watermark seen per broker and partition.
    high_watermarks: BTreeMap<(u32, PartitionKey), i64>,
    /// One past the highest acknowledged offset per partition.
    acknowledged_ends: BTreeMap<PartitionKey, i64>,
    /// Partitions already reported for a high watermark below an acknowledgement: the
    /// condition persists, and one report says it.
    reported_below_acknowledged: BTreeSet<(u32, PartitionKey)>,
    violations: Vec<Violation>,
    violation_count: u64,
    observations: u64,
}

impl InvariantTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        InvariantTracker::default()
    }

    /// A client got an acknowledgement for `offset`.
    pub fn acknowledged(&mut self, partition: PartitionKey, offset: u64) {
        let end = i64::try_from(offset).expect("offsets fit in i64") + 1;
        let known = self.acknowledged_ends.entry(partition).or_insert(end);
        *known = (*known).max(end);
    }

    /// A broker reports `high_watermark` for `partition`.
    pub fn observe(
        &mut self,
        time_ms: u64,
        broker: u32,
        partition: PartitionKey,
        high_watermark: i64,
    ) {
        self.observations += 1;
        let acknowledged_end = self.acknowledged_ends.get(&partition).copied().unwrap_or(0);
        if high_watermark < acknowledged_end
            && self
                .reported_below_acknowledged
                .insert((broker, partition.clone()))
        {
            self.violate(
                time_ms,
                broker,
                format!(
                    "{}-{}: high watermark {high_watermark} is below acknowledged offset {}",
                    partition.0,
                    partition.1,
                    acknowledged_end - 1
                ),
            );
        }
        let previous = self
            .high_watermarks
            .entry((broker, partition.clone()))
            .or_insert(high_watermark);
        if high_watermark < *previous {
            let description = format!(
                "{}-{}: high watermark went back from {} to {high_watermark}",
                partition.0, partition.1, *previous
            );
            // The new value is the baseline from now on, so one drop is reported once.
            *previous = high_watermark;
            self.violate(time_ms, broker, description);
        } else {
            *previous = high_watermark;
        }
    }

    /// A broker's log failed its self-check after a start (indexes disagreeing with segments).
    pub fn log_inconsistent(
        &mut self,
        time_ms: u64,
        broker: u32,
        partition: &PartitionKey,
        problem: &str,
    ) {
        self.violate(
            time_ms,
            broker,
            format!("after recovery, {}-{}: {problem}", partition.0, partition.1),
        );
    }

    /// A broker failed to start.
    pub fn start_failed(&mut self, time_ms: u64, broker: u32, error: &str) {
        self.violate(
            time_ms,
            broker,
            format!("the broker failed to start: {error}"),
        );
    }

    fn violate(&mut self, time_ms: u64, broker: u32, description: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(Violation {
                time_ms,
                broker,
                description,
            });
        }
    }

    /// The first violations seen.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many violations were seen in all.
    pub fn violation_count(&self) -> u64 {
        self.violation_count
    }

    /// How many partition observations were checked.
    pub fn observation_count(&self) -> u64 {
        self.observations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionKey {
        ("t".to_string(), 0)
    }

    #[test]
    fn a_growing_high_watermark_is_fine() {
        let mut tracker = InvariantTracker::new();
        tracker.observe(0, 0, partition(), 0);
        tracker.acknowledged(partition(), 0);
        tracker.observe(1, 0, partition(), 1);
        tracker.observe(2, 0, partition(), 5);
        assert!(tracker.violations().is_empty());
    }

    #[test]
    fn a_high_watermark_going_back_is_a_violation() {
        let mut tracker = InvariantTracker::new();
        tracker.observe(0, 0, partition(), 5);
        tracker.observe(1, 0, partition(), 3);
        assert_eq!(tracker.violation_count(), 1);
        tracker.observe(2, 0, partition(), 4);
        assert_eq!(tracker.violation_count(), 1, "a drop is reported once");
    }

    #[test]
    fn an_acknowledged_offset_above_the_high_watermark_is_a_violation() {
        let mut tracker = InvariantTracker::new();
        tracker.acknowledged(partition(), 7);
        tracker.observe(0, 0, partition(), 7);
        assert_eq!(tracker.violation_count(), 1);
        tracker.observe(1, 0, partition(), 7);
        assert_eq!(
            tracker.violation_count(),
            1,
            "a persisting condition is reported once"
        );
        tracker.observe(2, 0, partition(), 8);
        assert_eq!(tracker.violation_count(), 1);
    }
}
