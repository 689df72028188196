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
//! In a cluster (more than one broker), each partition is a Raft group over its replicas (on
//! every broker, or on three of five), and the rules become:
//!
//! - **A replica's high watermark never goes backwards within one incarnation** of its
//!   broker. A restarted replica relearns its commit index from the leader, so it starts
//!   again from zero; the rules above about restarts and acknowledgements hold for the
//!   partition as a whole instead, checked at the end (the most advanced replica's high
//!   watermark covers every acknowledged offset) and by the history checker (no acknowledged
//!   write lost).
//! - **Terms (leader epochs) never go backwards** on a replica within one incarnation, and a
//!   restarted replica's term is never below a term it led in before: a leader's term was
//!   durable before it asked for votes. (A follower may legitimately forget a term it only
//!   heard of, if it crashed before syncing it, having answered nobody.)
//! - **At most one leader per term per partition**: every replica's claim "I lead term T" and
//!   belief "B leads term T", from any broker at any time, must name the same broker.
//! - **Replicas agree below their high watermarks**: at the end, every committed batch of
//!   every replica is byte for byte the batch of the most advanced replica at that offset.
//! - **A leader after the heal**: every partition has a leader within
//!   [`LEADER_AFTER_HEAL_MS_MAX`] of the heal (a liveness rule, reported as such).
//!
//! - **Topic settings agree at the end**: every broker holds the acknowledged change of a
//!   topic's settings (or an unanswered later one), the same on all of them, and its logs use it.
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
/// The longest a partition of a cluster may go without a leader after the heal, in simulated
/// milliseconds: madsim may hold a clogged link's frames for up to ten seconds of retry
/// backoff after it is unclogged, then an election takes a few election timeouts.
pub const LEADER_AFTER_HEAL_MS_MAX: u64 = 15_000;

/// What the monitor saw of one replica of a replicated partition at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaObservation {
    /// The broker holding the replica.
    pub broker: u32,
    /// Which start of that broker (counting from zero).
    pub incarnation: u64,
    /// The partition.
    pub partition: PartitionKey,
    /// The replica's high watermark (its commit index as an offset).
    pub high_watermark: i64,
    /// The replica's current Raft term.
    pub term: u64,
    /// Whether the replica is its group's leader.
    pub is_leader: bool,
    /// The node id the replica believes leads `term`, if any.
    pub leader: Option<u64>,
}

/// One committed batch of one replica, for comparing replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBatch {
    /// Its first offset.
    pub base_offset: i64,
    /// Its last offset.
    pub last_offset: i64,
    /// A hash of its bytes.
    pub digest: u64,
}

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
    /// Per broker, incarnation and partition: the replica's latest high watermark.
    replica_high_watermarks: BTreeMap<(u32, u64, PartitionKey), i64>,
    /// Per broker, incarnation and partition: the replica's latest term.
    replica_terms: BTreeMap<(u32, u64, PartitionKey), u64>,
    /// Per broker and partition: the highest term the broker led, in any incarnation.
    led_terms: BTreeMap<(u32, PartitionKey), u64>,
    /// Per partition and term: the leader's node id and the broker that first told.
    leaders: BTreeMap<(PartitionKey, u64), (u64, u32)>,
    /// Broken rules already reported, so that a persisting condition is reported once.
    reported: BTreeSet<String>,
    /// When the heal happened, once it has.
    healed_at_ms: Option<u64>,
    /// Per replicated partition ever seen: when it first had a leader after the heal.
    leader_after_heal_ms: BTreeMap<PartitionKey, Option<u64>>,
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

    /// A replica of a replicated partition, as the monitor saw it.
    pub fn observe_replica(&mut self, time_ms: u64, replica: ReplicaObservation) {
        self.observations += 1;
        let ReplicaObservation {
            broker,
            incarnation,
            partition,
            high_watermark,
            term,
            is_leader,
            leader,
        } = replica;
        let name = format!("{}-{}", partition.0, partition.1);
        let incarnation_key = (broker, incarnation, partition.clone());
        if let Some(previous) = self
            .replica_high_watermarks
            .insert(incarnation_key.clone(), high_watermark)
        {
            if high_watermark < previous {
                self.violate(
                    time_ms,
                    broker,
                    format!("{name}: high watermark went back from {previous} to {high_watermark}"),
                );
            }
        }
        if let Some(previous) = self.replica_terms.insert(incarnation_key, term) {
            if term < previous {
                self.violate(
                    time_ms,
                    broker,
                    format!("{name}: term went back from {previous} to {term}"),
                );
            }
        }
        let led = self
            .led_terms
            .get(&(broker, partition.clone()))
            .copied()
            .unwrap_or(0);
        if term < led && self.reported.insert(format!("led/{broker}/{name}/{led}")) {
            self.violate(
                time_ms,
                broker,
                format!("{name}: restarted in term {term}, below term {led} it led before"),
            );
        }
        let node = u64::from(broker) + 1;
        if is_leader {
            self.led_terms
                .insert((broker, partition.clone()), led.max(term));
        }
        let claimed = if is_leader { Some(node) } else { leader };
        if let Some(claimed) = claimed {
            let (known, told_by) = *self
                .leaders
                .entry((partition.clone(), term))
                .or_insert((claimed, broker));
            if known != claimed && self.reported.insert(format!("two-leaders/{name}/{term}")) {
                self.violate(
                    time_ms,
                    broker,
                    format!(
                        "{name}: two leaders in term {term}: node {known} (told by broker \
                         {told_by}) and node {claimed} (told by broker {broker})"
                    ),
                );
            }
        }
        let first = self.leader_after_heal_ms.entry(partition).or_insert(None);
        if is_leader && first.is_none() {
            if let Some(healed_at_ms) = self.healed_at_ms {
                *first = Some(time_ms.max(healed_at_ms));
            }
        }
    }

    /// Everything was healed at `time_ms`: leaders are counted from now on.
    pub fn healed(&mut self, time_ms: u64) {
        self.healed_at_ms = Some(time_ms);
    }

    /// The replicated partitions that had no leader within [`LEADER_AFTER_HEAL_MS_MAX`] of the
    /// heal, as liveness problems.
    pub fn leaderless_after_heal(&self) -> Vec<String> {
        let Some(healed_at_ms) = self.healed_at_ms else {
            return Vec::new();
        };
        let deadline = healed_at_ms + LEADER_AFTER_HEAL_MS_MAX;
        self.leader_after_heal_ms
            .iter()
            .filter(|(_, first)| first.is_none_or(|first| first > deadline))
            .map(|((topic, partition), first)| match first {
                Some(first) => format!(
                    "{topic}-{partition} first had a leader at {first} ms, more than \
                     {LEADER_AFTER_HEAL_MS_MAX} ms after the heal at {healed_at_ms} ms"
                ),
                None => {
                    format!("{topic}-{partition} had no leader after the heal at {healed_at_ms} ms")
                }
            })
            .collect()
    }

    /// Compares the committed batches of every replica of `partition` (broker, batches below
    /// that replica's high watermark, from its log start): wherever two replicas' committed
    /// ranges overlap, they must hold the same batches. Replicas may start at different offsets
    /// (each deletes segments on its own: the offsets log below its latest snapshot), so a
    /// batch is compared with every replica whose range covers it, not with one reference.
    pub fn compare_replicas(
        &mut self,
        time_ms: u64,
        partition: &PartitionKey,
        replicas: &[(u32, Vec<CommittedBatch>)],
    ) {
        let held: Vec<(u32, BTreeMap<i64, &CommittedBatch>, i64, i64)> = replicas
            .iter()
            .filter_map(|(broker, batches)| {
                let first = batches.first()?.base_offset;
                let last = batches.last()?.last_offset;
                let by_offset = batches.iter().map(|batch| (batch.base_offset, batch));
                Some((*broker, by_offset.collect(), first, last))
            })
            .collect();
        for (broker, batches) in replicas {
            let differing = batches.iter().find_map(|batch| {
                held.iter()
                    .filter(|(other, _, first, last)| {
                        other != broker && *first <= batch.base_offset && batch.last_offset <= *last
                    })
                    .find(|(_, by_offset, _, _)| by_offset.get(&batch.base_offset) != Some(&batch))
                    .map(|(other, _, _, _)| (batch, *other))
            });
            if let Some((batch, other)) = differing {
                self.violate(
                    time_ms,
                    *broker,
                    format!(
                        "{}-{}: the committed batch at offsets {}..={} differs from broker {other}'s",
                        partition.0, partition.1, batch.base_offset, batch.last_offset
                    ),
                );
            }
        }
    }

    /// At the end: the most advanced replica's high watermark of `partition` must cover every
    /// acknowledged offset.
    pub fn check_acknowledged_committed(
        &mut self,
        time_ms: u64,
        partition: &PartitionKey,
        broker: u32,
        high_watermark: i64,
    ) {
        let acknowledged_end = self.acknowledged_ends.get(partition).copied().unwrap_or(0);
        if high_watermark < acknowledged_end {
            self.violate(
                time_ms,
                broker,
                format!(
                    "{}-{}: at the end, the highest high watermark {high_watermark} is below \
                     acknowledged offset {}",
                    partition.0,
                    partition.1,
                    acknowledged_end - 1
                ),
            );
        }
    }

    /// The partitions some acknowledgement was received for.
    pub fn acknowledged_partitions(&self) -> Vec<PartitionKey> {
        self.acknowledged_ends.keys().cloned().collect()
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

    /// A broker's topic settings at the end are not what the settings changes allow.
    pub fn settings_wrong(&mut self, time_ms: u64, broker: u32, problem: String) {
        self.violate(time_ms, broker, format!("topic settings: {problem}"));
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

    fn replica(
        broker: u32,
        incarnation: u64,
        term: u64,
        leader: Option<u64>,
    ) -> ReplicaObservation {
        ReplicaObservation {
            broker,
            incarnation,
            partition: partition(),
            high_watermark: 0,
            term,
            is_leader: leader == Some(u64::from(broker) + 1),
            leader,
        }
    }

    #[test]
    fn two_leaders_in_one_term_are_a_violation() {
        let mut tracker = InvariantTracker::new();
        tracker.observe_replica(0, replica(0, 0, 3, Some(1)));
        tracker.observe_replica(1, replica(1, 0, 3, Some(1)));
        tracker.observe_replica(2, replica(2, 0, 4, Some(3)));
        assert_eq!(tracker.violation_count(), 0);
        tracker.observe_replica(3, replica(1, 0, 3, Some(2)));
        assert_eq!(tracker.violation_count(), 1);
        tracker.observe_replica(4, replica(1, 0, 3, Some(2)));
        assert_eq!(tracker.violation_count(), 1, "reported once");
    }

    #[test]
    fn terms_and_replica_high_watermarks_never_go_back() {
        let mut tracker = InvariantTracker::new();
        let mut observation = replica(0, 0, 5, Some(1));
        observation.high_watermark = 10;
        tracker.observe_replica(0, observation.clone());
        // A restart relearns the high watermark from zero: fine.
        let mut restarted = replica(0, 1, 5, None);
        restarted.high_watermark = 0;
        tracker.observe_replica(1, restarted.clone());
        assert_eq!(tracker.violation_count(), 0);
        // But within an incarnation it never goes back, and neither does the term.
        restarted.high_watermark = -1;
        tracker.observe_replica(2, restarted);
        assert_eq!(tracker.violation_count(), 1);
        tracker.observe_replica(3, replica(0, 1, 4, None));
        // Term 4 after leading term 5: both rules broken.
        assert_eq!(tracker.violation_count(), 3);
    }

    /// A committed batch of one record.
    fn batch(base_offset: i64, digest: u64) -> CommittedBatch {
        CommittedBatch {
            base_offset,
            last_offset: base_offset,
            digest,
        }
    }

    #[test]
    fn diverging_committed_batches_are_a_violation() {
        let mut tracker = InvariantTracker::new();
        let same = vec![(0, vec![batch(0, 1), batch(1, 2)]), (1, vec![batch(0, 1)])];
        tracker.compare_replicas(0, &partition(), &same);
        assert_eq!(tracker.violation_count(), 0);
        let different = vec![(0, vec![batch(0, 1), batch(1, 2)]), (1, vec![batch(0, 9)])];
        tracker.compare_replicas(0, &partition(), &different);
        assert!(tracker.violation_count() >= 1);
    }

    #[test]
    fn replicas_cleaned_to_different_starts_are_compared_where_they_overlap() {
        // Broker 0 deleted offsets 0..=1 and broker 1 did not (digests by offset: 0 -> 1,
        // 1 -> 2, 2 -> 3, 3 -> 4). (broker 0's batches, broker 1's, violations expected.)
        let cases = [
            (
                "agreeing overlap",
                vec![(2, 3), (3, 4)],
                vec![(0, 1), (1, 2), (2, 3)],
                0,
            ),
            (
                "a difference in the overlap, told to both",
                vec![(2, 3), (3, 4)],
                vec![(0, 1), (1, 2), (2, 8)],
                2,
            ),
            (
                "a batch missing inside a covered range",
                vec![(0, 1), (2, 3)],
                vec![(0, 1), (1, 2), (2, 3)],
                1,
            ),
        ];
        for (case, first, second, expected) in cases {
            let batches =
                |pairs: Vec<(i64, u64)>| pairs.into_iter().map(|(o, d)| batch(o, d)).collect();
            let replicas = vec![(0, batches(first)), (1, batches(second))];
            let mut tracker = InvariantTracker::new();
            tracker.compare_replicas(0, &partition(), &replicas);
            assert_eq!(tracker.violation_count(), expected, "{case}");
        }
    }

    #[test]
    fn a_partition_without_a_leader_after_the_heal_is_reported() {
        let mut tracker = InvariantTracker::new();
        tracker.observe_replica(0, replica(0, 0, 1, None));
        tracker.healed(100);
        assert_eq!(tracker.leaderless_after_heal().len(), 1);
        tracker.observe_replica(200, replica(0, 0, 2, Some(1)));
        assert!(tracker.leaderless_after_heal().is_empty());
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
