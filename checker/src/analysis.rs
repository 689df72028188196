//! The analysis: two passes over the history.
//!
//! The first pass ([`ObservationIndex::build`]) gathers every observation of a value at a
//! position (send acknowledgements and polled records) into maps keyed by position and by
//! value. The whole-history checks (inconsistent offsets, duplicates, lost and unseen
//! writes, failed sends observed) read those maps. The second pass
//! ([`check_process_streams`]) replays each process's own completions in order to check
//! what is only meaningful per process: send order, poll order and commit order. Reads of
//! committed offsets are then checked against the commits before them ([`committed_reads`]).
//! Both
//! passes are linear in the history size times a logarithm, and every map is a `BTreeMap`
//! so the order of examples is the same on every run.

use std::collections::{BTreeMap, BTreeSet};

mod committed_reads;

use crate::history::{
    CommittedOffset, Event, EventType, History, Offset, Op, PolledRecord, Process, RecordValue,
    TopicPartition,
};
use crate::verdict::{
    Anomaly, AnomalyKind, AnomalyReport, CheckOptions, CommitComparisonScope, Observation,
    Position, Statistics, Verdict, EXAMPLES_PER_KIND_MAX, SKIPPED_OFFSETS_LISTED_MAX,
};

/// Checks `history` for every anomaly kind; see the crate documentation for definitions.
pub fn check(history: &History, options: &CheckOptions) -> Verdict {
    let index = ObservationIndex::build(history.events());
    let mut findings = Findings::new(options, index.statistics.drain_completed);
    check_inconsistent_offsets(&index, &mut findings);
    check_duplicates(&index, &mut findings);
    check_acknowledged_sends(&index, &mut findings);
    check_failed_sends(&index, &mut findings);
    check_process_streams(history.events(), &index, options, &mut findings);
    committed_reads::check_committed_reads(history.events(), &mut findings);
    let verdict = findings.into_verdict(index.statistics);
    debug_assert_eq!(
        verdict.valid,
        verdict.anomalies.values().all(|report| !report.fatal),
        "validity must follow from the fatal reports"
    );
    verdict
}

/// A send acknowledged with a partition and an offset.
struct AcknowledgedSend {
    value: RecordValue,
    topic_partition: TopicPartition,
    offset: Offset,
    event: u64,
}

/// The highest offset some set of observations reached on a partition, with the first
/// event that reached it.
#[derive(Clone, Copy)]
struct Highest {
    offset: Offset,
    event: u64,
}

fn raise(
    highest: &mut BTreeMap<TopicPartition, Highest>,
    key: &TopicPartition,
    offset: Offset,
    event: u64,
) {
    match highest.get_mut(key) {
        Some(current) if current.offset >= offset => {}
        Some(current) => *current = Highest { offset, event },
        None => {
            highest.insert(key.clone(), Highest { offset, event });
        }
    }
}

/// Everything the first pass learns.
#[derive(Default)]
struct ObservationIndex {
    /// Every value observed at each position, with the first event observing it.
    values_at: BTreeMap<(TopicPartition, Offset), BTreeMap<RecordValue, u64>>,
    /// Every position each value was observed at (acknowledgements and polls).
    positions_of: BTreeMap<RecordValue, BTreeSet<Position>>,
    /// Values read by any `ok` poll, with the first event that read them.
    polled: BTreeMap<RecordValue, (Position, u64)>,
    /// Values read by `ok` drain polls.
    drained: BTreeSet<RecordValue>,
    /// Values sent by idempotent producers.
    idempotent: BTreeSet<RecordValue>,
    acknowledged: Vec<AcknowledgedSend>,
    /// Sends that definitely failed: value and `fail` event.
    failed: Vec<(RecordValue, u64)>,
    highest_polled: BTreeMap<TopicPartition, Highest>,
    highest_drained: BTreeMap<TopicPartition, Highest>,
    highest_observed: BTreeMap<TopicPartition, Highest>,
    statistics: Statistics,
}

impl ObservationIndex {
    fn build(events: &[Event]) -> ObservationIndex {
        let mut index = ObservationIndex::default();
        let mut invoked_sends: u64 = 0;
        for event in events {
            index.statistics.events += 1;
            match (&event.op, event.event_type) {
                (Op::Send { .. }, EventType::Invoke) => invoked_sends += 1,
                (Op::Send { .. }, EventType::Ok) => index.add_acknowledgement(event),
                (Op::Send { value, .. }, EventType::Fail) => {
                    index.statistics.failed_sends += 1;
                    index.failed.push((value.clone(), event.index));
                }
                (Op::Poll { drain, records }, EventType::Ok) => {
                    index.statistics.drain_completed |= *drain;
                    for record in records {
                        index.add_polled(record, *drain, event.index);
                    }
                }
                _ => {}
            }
            if let Op::Send {
                value,
                idempotent: true,
                ..
            } = &event.op
            {
                index.idempotent.insert(value.clone());
            }
        }
        let statistics = &mut index.statistics;
        let determinate = statistics.acknowledged_sends + statistics.failed_sends;
        statistics.indeterminate_sends = invoked_sends.saturating_sub(determinate);
        index
    }

    /// An `ok` send lacking its partition or offset cannot be placed in the log: it still
    /// counts as acknowledged, but no position check can use it.
    fn add_acknowledgement(&mut self, event: &Event) {
        self.statistics.acknowledged_sends += 1;
        let Op::Send {
            topic,
            partition: Some(partition),
            value,
            offset: Some(offset),
            ..
        } = &event.op
        else {
            return;
        };
        let topic_partition = TopicPartition::new(topic.clone(), *partition);
        self.observe(&topic_partition, *offset, value, event.index);
        self.acknowledged.push(AcknowledgedSend {
            value: value.clone(),
            topic_partition,
            offset: *offset,
            event: event.index,
        });
    }

    fn add_polled(&mut self, record: &PolledRecord, drain: bool, event: u64) {
        self.statistics.polled_records += 1;
        let topic_partition = record.topic_partition();
        self.observe(&topic_partition, record.offset, &record.value, event);
        let position = position(&topic_partition, record.offset);
        self.polled
            .entry(record.value.clone())
            .or_insert((position, event));
        raise(
            &mut self.highest_polled,
            &topic_partition,
            record.offset,
            event,
        );
        if drain {
            self.drained.insert(record.value.clone());
            raise(
                &mut self.highest_drained,
                &topic_partition,
                record.offset,
                event,
            );
        }
    }

    fn observe(
        &mut self,
        topic_partition: &TopicPartition,
        offset: Offset,
        value: &RecordValue,
        event: u64,
    ) {
        let key = (topic_partition.clone(), offset);
        self.values_at
            .entry(key)
            .or_default()
            .entry(value.clone())
            .or_insert(event);
        let positions = self.positions_of.entry(value.clone()).or_default();
        positions.insert(position(topic_partition, offset));
        raise(&mut self.highest_observed, topic_partition, offset, event);
    }

    /// Observed offsets strictly between `after` and `before` on a partition.
    fn existing_between(
        &self,
        topic_partition: &TopicPartition,
        after: Offset,
        before: Offset,
    ) -> Vec<Offset> {
        debug_assert!(after < before);
        let start = (topic_partition.clone(), after + 1);
        let end = (topic_partition.clone(), before);
        self.values_at
            .range(start..end)
            .map(|((_, offset), _)| *offset)
            .collect()
    }

    /// One past the highest offset observed on a partition; zero if none was.
    fn log_end_offset(&self, topic_partition: &TopicPartition) -> Offset {
        self.highest_observed
            .get(topic_partition)
            .map_or(0, |highest| highest.offset + 1)
    }
}

fn position(topic_partition: &TopicPartition, offset: Offset) -> Position {
    Position {
        topic: topic_partition.topic.clone(),
        partition: topic_partition.partition,
        offset,
    }
}

/// Collects anomalies, counting all of them and keeping the first examples.
struct Findings<'options> {
    options: &'options CheckOptions,
    drain_completed: bool,
    reports: BTreeMap<AnomalyKind, AnomalyReport>,
}

impl<'options> Findings<'options> {
    fn new(options: &'options CheckOptions, drain_completed: bool) -> Self {
        Findings {
            options,
            drain_completed,
            reports: BTreeMap::new(),
        }
    }

    fn report(&mut self, anomaly: Anomaly) {
        let kind = anomaly.kind();
        let fatal = self.options.fatal.contains(&kind) && self.instance_is_fatal(&anomaly);
        let report = self.reports.entry(kind).or_insert(AnomalyReport {
            count: 0,
            fatal: false,
            examples: Vec::new(),
        });
        report.count += 1;
        report.fatal |= fatal;
        if report.examples.len() < EXAMPLES_PER_KIND_MAX {
            report.examples.push(anomaly);
        }
    }

    fn instance_is_fatal(&self, anomaly: &Anomaly) -> bool {
        match anomaly {
            Anomaly::Unseen { .. } => self.drain_completed,
            Anomaly::Duplicate { idempotent, .. } => {
                *idempotent || !self.options.duplicates_fatal_only_for_idempotent
            }
            _ => true,
        }
    }

    fn into_verdict(self, statistics: Statistics) -> Verdict {
        for report in self.reports.values() {
            assert!(
                report.count > 0,
                "a report exists only once an anomaly is found"
            );
            assert!(report.examples.len() as u64 <= report.count);
            assert!(report.examples.len() <= EXAMPLES_PER_KIND_MAX);
        }
        let valid = self.reports.values().all(|report| !report.fatal);
        Verdict {
            valid,
            statistics,
            anomalies: self.reports,
        }
    }
}

fn check_inconsistent_offsets(index: &ObservationIndex, findings: &mut Findings) {
    for ((topic_partition, offset), values) in &index.values_at {
        if values.len() > 1 {
            let observations = values
                .iter()
                .map(|(value, event)| Observation {
                    value: value.clone(),
                    event: *event,
                })
                .collect();
            let position = position(topic_partition, *offset);
            findings.report(Anomaly::InconsistentOffsets {
                position,
                observations,
            });
        }
    }
}

fn check_duplicates(index: &ObservationIndex, findings: &mut Findings) {
    for (value, positions) in &index.positions_of {
        if positions.len() > 1 {
            findings.report(Anomaly::Duplicate {
                value: value.clone(),
                positions: positions.iter().cloned().collect(),
                idempotent: index.idempotent.contains(value),
            });
        }
    }
}

/// Lost writes and unseen writes. An acknowledged value never polled is lost if some poll
/// read its partition past its offset, and unseen otherwise. A value polled by ordinary
/// consumers but missing from a drain that read past it is lost too.
fn check_acknowledged_sends(index: &ObservationIndex, findings: &mut Findings) {
    for send in &index.acknowledged {
        let read_past = |highest: &BTreeMap<TopicPartition, Highest>| {
            highest
                .get(&send.topic_partition)
                .filter(|highest| highest.offset > send.offset)
                .copied()
        };
        let lost = |witness: Highest, witness_is_drain: bool| Anomaly::LostWrite {
            value: send.value.clone(),
            position: position(&send.topic_partition, send.offset),
            send: send.event,
            witness: witness.event,
            witness_offset: witness.offset,
            witness_is_drain,
        };
        if !index.polled.contains_key(&send.value) {
            match read_past(&index.highest_polled) {
                Some(witness) => {
                    let witness_is_drain = read_past(&index.highest_drained)
                        .is_some_and(|drained| drained.event == witness.event);
                    findings.report(lost(witness, witness_is_drain));
                }
                None => findings.report(Anomaly::Unseen {
                    value: send.value.clone(),
                    position: position(&send.topic_partition, send.offset),
                    send: send.event,
                }),
            }
        } else if !index.drained.contains(&send.value) {
            if let Some(witness) = read_past(&index.highest_drained) {
                findings.report(lost(witness, true));
            }
        }
    }
}

fn check_failed_sends(index: &ObservationIndex, findings: &mut Findings) {
    for (value, send) in &index.failed {
        if let Some((position, witness)) = index.polled.get(value) {
            findings.report(Anomaly::FailedSendObserved {
                value: value.clone(),
                send: *send,
                position: position.clone(),
                witness: *witness,
            });
        }
    }
}

/// The last offset a process read or was acknowledged on a partition, and the event.
#[derive(Clone, Copy)]
struct Last {
    offset: Offset,
    event: u64,
}

/// What the second pass remembers about one process.
#[derive(Default)]
struct ProcessState {
    /// Bumped whenever the consumer's positions may have changed under it: assign,
    /// subscribe, rebalance, seek, or any indeterminate operation.
    assignment_generation: u64,
    consumed: BTreeMap<TopicPartition, Last>,
    acknowledged: BTreeMap<TopicPartition, Last>,
}

impl ProcessState {
    fn reset_assignment(&mut self) {
        self.assignment_generation += 1;
        self.consumed.clear();
    }
}

/// Which earlier commit a commit is compared with.
type CommitKey = (String, TopicPartition, Option<(Process, u64)>);

/// The per-process checks: nonmonotonic sends and polls, poll skips, commit order, and
/// committed offsets past the log end.
fn check_process_streams(
    events: &[Event],
    index: &ObservationIndex,
    options: &CheckOptions,
    findings: &mut Findings,
) {
    let mut processes: BTreeMap<Process, ProcessState> = BTreeMap::new();
    let mut commits: BTreeMap<CommitKey, Last> = BTreeMap::new();
    for event in events {
        let state = processes.entry(event.process).or_default();
        match (event.event_type, &event.op) {
            (EventType::Info, _) => state.reset_assignment(),
            (
                EventType::Ok,
                Op::Send {
                    topic,
                    partition: Some(partition),
                    offset: Some(offset),
                    ..
                },
            ) => {
                let topic_partition = TopicPartition::new(topic.clone(), *partition);
                check_send_order(event, state, topic_partition, *offset, findings);
            }
            (EventType::Ok, Op::Poll { records, .. }) => {
                for record in records {
                    check_poll_order(event, state, record, index, findings);
                }
            }
            (EventType::Ok, Op::Assign { .. } | Op::Subscribe { .. } | Op::Rebalance { .. }) => {
                state.reset_assignment();
            }
            (
                EventType::Ok,
                Op::Seek {
                    topic, partition, ..
                },
            ) => {
                state.assignment_generation += 1;
                state
                    .consumed
                    .remove(&TopicPartition::new(topic.clone(), *partition));
            }
            (EventType::Ok, Op::Commit { group, offsets }) => {
                let scope = match options.commit_comparison_scope {
                    CommitComparisonScope::SameProcessSameAssignment => {
                        Some((event.process, state.assignment_generation))
                    }
                    CommitComparisonScope::WholeGroup => None,
                };
                for committed in offsets {
                    let key = (group.clone(), committed_partition(committed), scope);
                    check_commit_order(event, group, committed, &mut commits, key, findings);
                    check_commit_past_end(event, group, committed, index, options, findings);
                }
            }
            (EventType::Ok, Op::FetchCommitted { group, offsets, .. }) => {
                for committed in offsets {
                    check_commit_past_end(event, group, committed, index, options, findings);
                }
            }
            _ => {}
        }
    }
}

fn committed_partition(committed: &CommittedOffset) -> TopicPartition {
    TopicPartition::new(committed.topic.clone(), committed.partition)
}

fn check_send_order(
    event: &Event,
    state: &mut ProcessState,
    topic_partition: TopicPartition,
    offset: Offset,
    findings: &mut Findings,
) {
    let current = Last {
        offset,
        event: event.index,
    };
    if let Some(previous) = state.acknowledged.insert(topic_partition.clone(), current) {
        if offset <= previous.offset {
            findings.report(Anomaly::NonmonotonicSend {
                process: event.process,
                position: position(&topic_partition, offset),
                event: event.index,
                previous_offset: previous.offset,
                previous_event: previous.event,
            });
        }
    }
}

fn check_poll_order(
    event: &Event,
    state: &mut ProcessState,
    record: &PolledRecord,
    index: &ObservationIndex,
    findings: &mut Findings,
) {
    let topic_partition = record.topic_partition();
    let current = Last {
        offset: record.offset,
        event: event.index,
    };
    let Some(previous) = state.consumed.insert(topic_partition.clone(), current) else {
        return;
    };
    let anomaly_position = position(&topic_partition, record.offset);
    if record.offset <= previous.offset {
        findings.report(Anomaly::NonmonotonicPoll {
            process: event.process,
            position: anomaly_position,
            event: event.index,
            previous_offset: previous.offset,
            previous_event: previous.event,
        });
    } else if record.offset > previous.offset + 1 {
        let skipped = index.existing_between(&topic_partition, previous.offset, record.offset);
        if !skipped.is_empty() {
            findings.report(Anomaly::PollSkip {
                process: event.process,
                position: anomaly_position,
                event: event.index,
                previous_offset: previous.offset,
                previous_event: previous.event,
                skipped_count: skipped.len() as u64,
                skipped_offsets: skipped
                    .into_iter()
                    .take(SKIPPED_OFFSETS_LISTED_MAX)
                    .collect(),
            });
        }
    }
}

fn check_commit_order(
    event: &Event,
    group: &str,
    committed: &CommittedOffset,
    commits: &mut BTreeMap<CommitKey, Last>,
    key: CommitKey,
    findings: &mut Findings,
) {
    let current = Last {
        offset: committed.offset,
        event: event.index,
    };
    if let Some(previous) = commits.insert(key, current) {
        if committed.offset < previous.offset {
            findings.report(Anomaly::CommittedOffsetBackwards {
                group: group.to_string(),
                position: position(&committed_partition(committed), committed.offset),
                event: event.index,
                previous_offset: previous.offset,
                previous_event: previous.event,
            });
        }
    }
}

fn check_commit_past_end(
    event: &Event,
    group: &str,
    committed: &CommittedOffset,
    index: &ObservationIndex,
    options: &CheckOptions,
    findings: &mut Findings,
) {
    let topic_partition = committed_partition(committed);
    let known_end = options
        .known_log_end_offsets
        .iter()
        .filter(|(known, _)| *known == topic_partition)
        .map(|(_, end)| *end)
        .max()
        .unwrap_or(0);
    let log_end_offset = index.log_end_offset(&topic_partition).max(known_end);
    if committed.offset > log_end_offset {
        findings.report(Anomaly::CommittedOffsetPastEnd {
            group: group.to_string(),
            position: position(&topic_partition, committed.offset),
            event: event.index,
            log_end_offset,
        });
    }
}

#[cfg(test)]
mod tests;
