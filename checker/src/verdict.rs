//! What the analysis reports: anomaly kinds, concrete examples, the options that decide
//! which kinds are fatal, and the [`Verdict`] with its human summary.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::history::{Offset, Process, RecordValue, TopicPartition};

/// How many examples of each anomaly kind a verdict keeps; counts are always complete.
pub const EXAMPLES_PER_KIND_MAX: usize = 8;

/// How many skipped offsets a poll-skip example lists; the count is always complete.
pub const SKIPPED_OFFSETS_LISTED_MAX: usize = 8;

/// How many examples per kind [`Verdict::summary`] prints.
pub const SUMMARY_EXAMPLES_PER_KIND_MAX: usize = 2;

const _: () = assert!(SUMMARY_EXAMPLES_PER_KIND_MAX <= EXAMPLES_PER_KIND_MAX);

/// The kinds of anomaly the checker looks for. See the crate documentation for each
/// definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyKind {
    /// An acknowledged send is missing where later data of its partition is visible.
    LostWrite,
    /// An acknowledged send was never observed by any poll.
    Unseen,
    /// The same value is at two positions.
    Duplicate,
    /// Two observations disagree on the value at one position.
    InconsistentOffsets,
    /// A producer's acknowledged offsets on a partition went backwards.
    NonmonotonicSend,
    /// A consumer jumped over offsets that exist.
    PollSkip,
    /// A consumer's offsets on a partition went backwards or repeated.
    NonmonotonicPoll,
    /// A group's committed offset for a partition decreased.
    CommittedOffsetBackwards,
    /// A committed offset lies beyond the end of the observed log.
    CommittedOffsetPastEnd,
    /// A read of committed offsets found none where a commit had completed before it.
    CommittedOffsetLost,
    /// A read of committed offsets returned one that a completed commit had replaced.
    StaleCommittedOffset,
    /// A send that definitely failed was observed by a poll.
    FailedSendObserved,
}

impl AnomalyKind {
    /// Every kind, in report order.
    pub const ALL: [AnomalyKind; 12] = [
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::InconsistentOffsets,
        AnomalyKind::NonmonotonicSend,
        AnomalyKind::PollSkip,
        AnomalyKind::NonmonotonicPoll,
        AnomalyKind::CommittedOffsetBackwards,
        AnomalyKind::CommittedOffsetPastEnd,
        AnomalyKind::CommittedOffsetLost,
        AnomalyKind::StaleCommittedOffset,
        AnomalyKind::FailedSendObserved,
    ];

    /// The kebab-case name used in JSON and summaries.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::Unseen => "unseen",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::InconsistentOffsets => "inconsistent-offsets",
            AnomalyKind::NonmonotonicSend => "nonmonotonic-send",
            AnomalyKind::PollSkip => "poll-skip",
            AnomalyKind::NonmonotonicPoll => "nonmonotonic-poll",
            AnomalyKind::CommittedOffsetBackwards => "committed-offset-backwards",
            AnomalyKind::CommittedOffsetPastEnd => "committed-offset-past-end",
            AnomalyKind::CommittedOffsetLost => "committed-offset-lost",
            AnomalyKind::StaleCommittedOffset => "stale-committed-offset",
            AnomalyKind::FailedSendObserved => "failed-send-observed",
        }
    }
}

impl fmt::Display for AnomalyKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A position in the log: a (topic, partition, offset) triple.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Position {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: Offset,
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}-{}@{}",
            self.topic, self.partition, self.offset
        )
    }
}

/// A value observed at a position, with the first event that observed it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The value.
    pub value: RecordValue,
    /// The first event (a send's `ok` or a poll's `ok`) that observed it.
    pub event: u64,
}

/// One concrete anomaly, naming the events involved by their history index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Anomaly {
    /// `value`, acknowledged at `position` by event `send`, was never read there, yet event
    /// `witness` read `witness_offset`, past it, on the same partition.
    LostWrite {
        /// The acknowledged value.
        value: RecordValue,
        /// Where the broker acknowledged it.
        position: Position,
        /// The send's `ok` event.
        send: u64,
        /// A poll `ok` event that read past the position without the value.
        witness: u64,
        /// The offset that poll read on the partition.
        witness_offset: Offset,
        /// Whether the witness is the final drain.
        witness_is_drain: bool,
    },
    /// `value`, acknowledged at `position` by event `send`, was never read by any poll.
    Unseen {
        /// The acknowledged value.
        value: RecordValue,
        /// Where the broker acknowledged it.
        position: Position,
        /// The send's `ok` event.
        send: u64,
    },
    /// `value` is at several positions.
    Duplicate {
        /// The value.
        value: RecordValue,
        /// Every position it was observed at, sorted.
        positions: Vec<Position>,
        /// Whether any send of the value came from an idempotent producer.
        idempotent: bool,
    },
    /// Several values were observed at `position`.
    InconsistentOffsets {
        /// The position.
        position: Position,
        /// The values, sorted, each with the first event that observed it there.
        observations: Vec<Observation>,
    },
    /// Producer `process` got `offset` (event `event`) after `previous_offset` (event
    /// `previous_event`) on one partition: its acknowledged offsets went backwards.
    NonmonotonicSend {
        /// The producer.
        process: Process,
        /// The partition and the later, lower offset.
        position: Position,
        /// The later send's `ok` event.
        event: u64,
        /// The earlier acknowledged offset.
        previous_offset: Offset,
        /// The earlier send's `ok` event.
        previous_event: u64,
    },
    /// Consumer `process` read `position` (event `event`) right after `previous_offset`
    /// (event `previous_event`), jumping over offsets known to hold records.
    PollSkip {
        /// The consumer.
        process: Process,
        /// The partition and the offset read after the gap.
        position: Position,
        /// The poll `ok` event that read it.
        event: u64,
        /// The offset read before the gap.
        previous_offset: Offset,
        /// The poll `ok` event that read the previous offset.
        previous_event: u64,
        /// The first skipped offsets known to exist, at most [`SKIPPED_OFFSETS_LISTED_MAX`].
        skipped_offsets: Vec<Offset>,
        /// How many skipped offsets are known to exist.
        skipped_count: u64,
    },
    /// Consumer `process` read `position` (event `event`) after `previous_offset` (event
    /// `previous_event`), which is not lower.
    NonmonotonicPoll {
        /// The consumer.
        process: Process,
        /// The partition and the offset read.
        position: Position,
        /// The poll `ok` event that read it.
        event: u64,
        /// The offset read before, greater than or equal to this one.
        previous_offset: Offset,
        /// The poll `ok` event that read the previous offset.
        previous_event: u64,
    },
    /// Group `group`'s committed offset for a partition went from `previous_offset` (event
    /// `previous_event`) down to `position.offset` (event `event`).
    CommittedOffsetBackwards {
        /// The consumer group.
        group: String,
        /// The partition and the lower committed offset.
        position: Position,
        /// The commit `ok` event.
        event: u64,
        /// The higher offset committed before.
        previous_offset: Offset,
        /// The earlier commit `ok` event.
        previous_event: u64,
    },
    /// Group `group` read no committed offset for `position`'s partition (the `ok` of
    /// fetch-committed `event`), though commit `commit` had completed `ok` with
    /// `position.offset` before that read was invoked.
    CommittedOffsetLost {
        /// The consumer group.
        group: String,
        /// The partition and the offset the earlier commit wrote.
        position: Position,
        /// The fetch-committed `ok` event.
        event: u64,
        /// The commit `ok` event.
        commit: u64,
    },
    /// Group `group` read `position.offset` (the `ok` of fetch-committed `event`), though
    /// commit `superseded_by`, begun after every commit of that offset had completed, had
    /// completed `ok` with `current_offset` before the read was invoked.
    StaleCommittedOffset {
        /// The consumer group.
        group: String,
        /// The partition and the stale offset read.
        position: Position,
        /// The fetch-committed `ok` event.
        event: u64,
        /// The commit `ok` event that replaced it.
        superseded_by: u64,
        /// The offset that commit wrote.
        current_offset: Offset,
    },
    /// Group `group` committed (or fetched) `position.offset`, beyond `log_end_offset`, one
    /// past the highest offset observed anywhere on the partition.
    CommittedOffsetPastEnd {
        /// The consumer group.
        group: String,
        /// The partition and the committed offset.
        position: Position,
        /// The commit or fetch-committed `ok` event.
        event: u64,
        /// One past the highest offset observed on the partition.
        log_end_offset: Offset,
    },
    /// `value`, whose send definitely failed (event `send`), was read by event `witness`.
    FailedSendObserved {
        /// The value.
        value: RecordValue,
        /// The send's `fail` event.
        send: u64,
        /// Where it was read.
        position: Position,
        /// The poll `ok` event that read it.
        witness: u64,
    },
}

impl Anomaly {
    /// The kind of this anomaly.
    pub fn kind(&self) -> AnomalyKind {
        match self {
            Anomaly::LostWrite { .. } => AnomalyKind::LostWrite,
            Anomaly::Unseen { .. } => AnomalyKind::Unseen,
            Anomaly::Duplicate { .. } => AnomalyKind::Duplicate,
            Anomaly::InconsistentOffsets { .. } => AnomalyKind::InconsistentOffsets,
            Anomaly::NonmonotonicSend { .. } => AnomalyKind::NonmonotonicSend,
            Anomaly::PollSkip { .. } => AnomalyKind::PollSkip,
            Anomaly::NonmonotonicPoll { .. } => AnomalyKind::NonmonotonicPoll,
            Anomaly::CommittedOffsetBackwards { .. } => AnomalyKind::CommittedOffsetBackwards,
            Anomaly::CommittedOffsetPastEnd { .. } => AnomalyKind::CommittedOffsetPastEnd,
            Anomaly::CommittedOffsetLost { .. } => AnomalyKind::CommittedOffsetLost,
            Anomaly::StaleCommittedOffset { .. } => AnomalyKind::StaleCommittedOffset,
            Anomaly::FailedSendObserved { .. } => AnomalyKind::FailedSendObserved,
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::LostWrite {
                value,
                position,
                send,
                witness,
                witness_offset,
                ..
            } => write!(
                formatter,
                "value {value} acknowledged at {position} (event {send}) never read, \
                 but event {witness} read offset {witness_offset}"
            ),
            Anomaly::Unseen {
                value,
                position,
                send,
            } => write!(
                formatter,
                "value {value} acknowledged at {position} (event {send}) never read"
            ),
            Anomaly::Duplicate {
                value, positions, ..
            } => {
                let positions: Vec<String> = positions.iter().map(ToString::to_string).collect();
                write!(formatter, "value {value} at {}", positions.join(", "))
            }
            Anomaly::InconsistentOffsets {
                position,
                observations,
            } => {
                let observations: Vec<String> = observations
                    .iter()
                    .map(|observation| {
                        format!("{} (event {})", observation.value, observation.event)
                    })
                    .collect();
                write!(formatter, "{position} holds {}", observations.join(", "))
            }
            Anomaly::NonmonotonicSend {
                process,
                position,
                event,
                previous_offset,
                previous_event,
            } => {
                write!(
                    formatter,
                    "producer {process} got {position} (event {event}) after offset \
                     {previous_offset} (event {previous_event})"
                )
            }
            Anomaly::PollSkip {
                process,
                position,
                event,
                previous_offset,
                skipped_count,
                ..
            } => {
                write!(
                    formatter,
                    "consumer {process} read {position} (event {event}) after offset \
                     {previous_offset}, skipping {skipped_count} existing offsets"
                )
            }
            Anomaly::NonmonotonicPoll {
                process,
                position,
                event,
                previous_offset,
                previous_event,
            } => {
                write!(
                    formatter,
                    "consumer {process} read {position} (event {event}) after offset \
                     {previous_offset} (event {previous_event})"
                )
            }
            Anomaly::CommittedOffsetBackwards {
                group,
                position,
                event,
                previous_offset,
                ..
            } => {
                write!(
                    formatter,
                    "group {group} committed {position} (event {event}) after offset {previous_offset}"
                )
            }
            Anomaly::CommittedOffsetPastEnd {
                group,
                position,
                event,
                log_end_offset,
            } => write!(
                formatter,
                "group {group} committed {position} (event {event}) past log end {log_end_offset}"
            ),
            Anomaly::CommittedOffsetLost {
                group,
                position,
                event,
                commit,
            } => write!(
                formatter,
                "group {group} read no committed offset (event {event}) after committing \
                 {position} (event {commit})"
            ),
            Anomaly::StaleCommittedOffset {
                group,
                position,
                event,
                superseded_by,
                current_offset,
            } => write!(
                formatter,
                "group {group} read committed {position} (event {event}) after committing \
                 {current_offset} (event {superseded_by})"
            ),
            Anomaly::FailedSendObserved {
                value,
                send,
                position,
                witness,
            } => write!(
                formatter,
                "value {value} failed (event {send}) but was read at {position} (event {witness})"
            ),
        }
    }
}

/// Which commits are compared by the committed-offset-backwards check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommitComparisonScope {
    /// Only commits by the same process within one assignment (no assign, subscribe,
    /// rebalance, seek or indeterminate operation in between). Kafka lets a consumer that
    /// re-reads after a rebalance commit a lower offset, so this is the default.
    SameProcessSameAssignment,
    /// All commits of a group for a partition, whoever made them.
    WholeGroup,
}

/// What the analysis treats as fatal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// Kinds that make the verdict invalid when they occur. `unseen` counts only once an
    /// `ok` drain poll exists (before the final drain, unread writes are expected).
    pub fatal: BTreeSet<AnomalyKind>,
    /// When true, a duplicate is fatal only if one of its sends was idempotent.
    pub duplicates_fatal_only_for_idempotent: bool,
    /// Which commits the committed-offset-backwards check compares.
    pub commit_comparison_scope: CommitComparisonScope,
    /// Log end offsets learnt outside the history (the final drain's ListOffsets), per
    /// partition. A replicated log holds offsets no consumer ever sees (each new leader's
    /// control batch), so a consumer's position, and the offset it commits, may lie past the
    /// last record observed; a committed offset up to a known end is not past the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known_log_end_offsets: Vec<(TopicPartition, Offset)>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            fatal: AnomalyKind::ALL.into_iter().collect(),
            duplicates_fatal_only_for_idempotent: true,
            commit_comparison_scope: CommitComparisonScope::SameProcessSameAssignment,
            known_log_end_offsets: Vec::new(),
        }
    }
}

/// Counts that describe the history, so a report shows what was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statistics {
    /// Events in the history.
    pub events: u64,
    /// Sends acknowledged with an offset.
    pub acknowledged_sends: u64,
    /// Sends that completed with `info` or never completed.
    pub indeterminate_sends: u64,
    /// Sends that definitely failed.
    pub failed_sends: u64,
    /// Records returned by `ok` polls, drain included.
    pub polled_records: u64,
    /// Whether at least one drain poll completed `ok`.
    pub drain_completed: bool,
}

/// All anomalies of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyReport {
    /// How many were found.
    pub count: u64,
    /// Whether this kind makes the verdict invalid under the options used.
    pub fatal: bool,
    /// The first examples, at most [`EXAMPLES_PER_KIND_MAX`], in history order.
    pub examples: Vec<Anomaly>,
}

/// The result of [`crate::check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// True when no fatal anomaly occurred.
    pub valid: bool,
    /// What the history contained.
    pub statistics: Statistics,
    /// The anomalies found, by kind; kinds with none are absent.
    pub anomalies: BTreeMap<AnomalyKind, AnomalyReport>,
}

impl Verdict {
    /// How many anomalies of `kind` were found.
    pub fn count(&self, kind: AnomalyKind) -> u64 {
        self.anomalies.get(&kind).map_or(0, |report| report.count)
    }

    /// The recorded examples of `kind`.
    pub fn examples(&self, kind: AnomalyKind) -> &[Anomaly] {
        self.anomalies
            .get(&kind)
            .map_or(&[], |report| report.examples.as_slice())
    }

    /// A short, stable, human-readable text: validity, then each kind with its count and
    /// first examples.
    pub fn summary(&self) -> String {
        let statistics = &self.statistics;
        let mut text = format!(
            "{}: {} events, {} acknowledged sends, {} indeterminate, {} failed, \
             {} polled records, drain {}\n",
            if self.valid { "valid" } else { "INVALID" },
            statistics.events,
            statistics.acknowledged_sends,
            statistics.indeterminate_sends,
            statistics.failed_sends,
            statistics.polled_records,
            if statistics.drain_completed {
                "completed"
            } else {
                "missing"
            },
        );
        for (kind, report) in &self.anomalies {
            let fatal = if report.fatal { "fatal" } else { "not fatal" };
            text.push_str(&format!("{kind}: {} ({fatal})\n", report.count));
            for example in report.examples.iter().take(SUMMARY_EXAMPLES_PER_KIND_MAX) {
                text.push_str(&format!("  {example}\n"));
            }
        }
        text
    }
}
