//! Property tests: histories generated from a correct in-memory model of a partitioned log
//! never show an anomaly, and injecting one specific bug into such a history is detected.
//!
//! The model is a vector of records per partition. Producers send with four outcomes (ok,
//! fail, and `info` that did or did not append); consumers poll their assigned partitions
//! from a position, lose track of it on an indeterminate poll, seek backwards, rebalance
//! back to the group's committed offsets and commit their positions; the nemesis crashes
//! nodes. A final drain reads every partition from offset zero.

use proptest::prelude::*;

use crate::history::{
    CommittedOffset, History, Offset, Op, Outcome, PolledRecord, Process, RecordValue,
    TopicPartition,
};
use crate::{check, AnomalyKind, CheckOptions};

const TOPIC: &str = "t";
const GROUP: &str = "g";
/// Partitions of the single topic.
const PARTITION_COUNT: u32 = 3;
/// Producers are processes `0..PRODUCER_COUNT`.
const PRODUCER_COUNT: u64 = 3;
/// Consumers are processes `CONSUMER_FIRST..CONSUMER_FIRST + CONSUMER_COUNT`.
const CONSUMER_FIRST: u64 = 10;
const CONSUMER_COUNT: u64 = 2;
/// The process that performs the final drain.
const DRAIN_PROCESS: u64 = 20;
/// Records one poll returns per partition, at most.
const POLL_RECORDS_PER_PARTITION_MAX: usize = 4;
/// Records one drain poll returns per partition, at most.
const DRAIN_RECORDS_PER_PARTITION_MAX: usize = 5;
/// Actions in one generated history, at most.
const ACTIONS_MAX: usize = 120;
/// Nanoseconds between consecutive events.
const EVENT_SPACING_NS: u64 = 1_000;

const _: () = assert!(DRAIN_PROCESS >= CONSUMER_FIRST + CONSUMER_COUNT);
const _: () = assert!(CONSUMER_FIRST >= PRODUCER_COUNT);

#[derive(Debug, Clone, Copy)]
enum SendOutcome {
    Ok,
    Fail,
    InfoAppended,
    InfoNotAppended,
}

#[derive(Debug, Clone)]
enum Action {
    Send {
        producer: u64,
        partition: u32,
        outcome: SendOutcome,
    },
    Poll {
        consumer: u64,
        records_max: usize,
        indeterminate: bool,
    },
    Seek {
        consumer: u64,
        partition: u32,
        target: u64,
    },
    Rebalance {
        consumer: u64,
    },
    Commit {
        consumer: u64,
    },
    Crash,
}

fn action() -> impl Strategy<Value = Action> {
    let producer = 0..PRODUCER_COUNT;
    let consumer = || CONSUMER_FIRST..CONSUMER_FIRST + CONSUMER_COUNT;
    let outcome = prop_oneof![
        6 => Just(SendOutcome::Ok),
        1 => Just(SendOutcome::Fail),
        1 => Just(SendOutcome::InfoAppended),
        1 => Just(SendOutcome::InfoNotAppended),
    ];
    prop_oneof![
        8 => (producer, 0..PARTITION_COUNT, outcome)
            .prop_map(|(producer, partition, outcome)| Action::Send { producer, partition, outcome }),
        6 => (consumer(), 0..=POLL_RECORDS_PER_PARTITION_MAX, prop::bool::weighted(0.1))
            .prop_map(|(consumer, records_max, indeterminate)| Action::Poll { consumer, records_max, indeterminate }),
        1 => (consumer(), 0..PARTITION_COUNT, any::<u64>())
            .prop_map(|(consumer, partition, target)| Action::Seek { consumer, partition, target }),
        1 => consumer().prop_map(|consumer| Action::Rebalance { consumer }),
        2 => consumer().prop_map(|consumer| Action::Commit { consumer }),
        1 => Just(Action::Crash),
    ]
}

/// One completed operation, kept apart from [`History`] so a bug can be injected first.
#[derive(Debug, Clone)]
struct Step {
    process: Process,
    invocation: Op,
    outcome: Outcome,
}

/// The correct model and the steps it recorded.
#[derive(Default)]
struct Model {
    logs: Vec<Vec<RecordValue>>,
    /// Each consumer's next offset per partition.
    positions: std::collections::BTreeMap<u64, Vec<Offset>>,
    committed: Vec<Offset>,
    next_value: u64,
    steps: Vec<Step>,
}

fn all_partitions() -> Vec<TopicPartition> {
    (0..PARTITION_COUNT)
        .map(|partition| TopicPartition::new(TOPIC, partition))
        .collect()
}

impl Model {
    fn new() -> Self {
        let partitions = PARTITION_COUNT as usize;
        let mut model = Model {
            logs: vec![Vec::new(); partitions],
            committed: vec![0; partitions],
            ..Default::default()
        };
        for consumer in CONSUMER_FIRST..CONSUMER_FIRST + CONSUMER_COUNT {
            model.assign_all(consumer);
        }
        model
    }

    fn push(&mut self, process: Process, invocation: Op, outcome: Outcome) {
        self.steps.push(Step {
            process,
            invocation,
            outcome,
        });
    }

    fn assign_all(&mut self, consumer: u64) {
        self.positions
            .insert(consumer, vec![0; PARTITION_COUNT as usize]);
        let assign = Op::Assign {
            partitions: all_partitions(),
        };
        self.push(
            Process::Client(consumer),
            assign.clone(),
            Outcome::Ok(assign),
        );
    }

    fn apply(&mut self, action: &Action) {
        match *action {
            Action::Send {
                producer,
                partition,
                outcome,
            } => self.send(producer, partition, outcome),
            Action::Poll {
                consumer,
                records_max,
                indeterminate,
            } => {
                self.poll(consumer, records_max, indeterminate, false);
            }
            Action::Seek {
                consumer,
                partition,
                target,
            } => self.seek(consumer, partition, target),
            Action::Rebalance { consumer } => self.rebalance(consumer),
            Action::Commit { consumer } => self.commit(consumer),
            Action::Crash => {
                let crash = Op::Crash { node: "n1".into() };
                self.push(Process::Nemesis, crash.clone(), Outcome::Ok(crash));
            }
        }
    }

    fn send(&mut self, producer: u64, partition: u32, outcome: SendOutcome) {
        let value = RecordValue::Number(self.next_value);
        self.next_value += 1;
        let send = |offset: Option<Offset>| Op::Send {
            topic: TOPIC.into(),
            partition: Some(partition),
            key: None,
            value: value.clone(),
            idempotent: producer % 2 == 0,
            offset,
        };
        let log = &mut self.logs[partition as usize];
        let outcome = match outcome {
            SendOutcome::Ok => {
                log.push(value.clone());
                Outcome::Ok(send(Some(log.len() as Offset - 1)))
            }
            SendOutcome::Fail => Outcome::Fail(send(None)),
            SendOutcome::InfoAppended => {
                log.push(value.clone());
                Outcome::Info(send(None))
            }
            SendOutcome::InfoNotAppended => Outcome::Info(send(None)),
        };
        self.push(Process::Client(producer), send(None), outcome);
    }

    /// Reads up to `records_max` records per partition from the consumer's positions. An
    /// indeterminate poll advances the positions but reports nothing.
    fn poll(&mut self, consumer: u64, records_max: usize, indeterminate: bool, drain: bool) {
        let positions = self
            .positions
            .get_mut(&consumer)
            .expect("consumers are assigned");
        let mut records = Vec::new();
        for (partition, log) in self.logs.iter().enumerate() {
            let position = &mut positions[partition];
            let start = *position as usize;
            let unread = log.iter().enumerate().skip(start).take(records_max);
            for (offset, value) in unread {
                records.push(PolledRecord {
                    topic: TOPIC.into(),
                    partition: partition as u32,
                    offset: offset as Offset,
                    key: None,
                    value: value.clone(),
                });
                *position = offset as Offset + 1;
            }
        }
        let invocation = Op::Poll {
            drain,
            records: Vec::new(),
        };
        let outcome = if indeterminate {
            Outcome::Info(Op::Poll {
                drain,
                records: Vec::new(),
            })
        } else {
            Outcome::Ok(Op::Poll { drain, records })
        };
        self.push(Process::Client(consumer), invocation, outcome);
    }

    /// Seeks backwards only, so a later commit never passes the observed log end.
    fn seek(&mut self, consumer: u64, partition: u32, target: u64) {
        let position =
            &mut self.positions.get_mut(&consumer).expect("assigned")[partition as usize];
        *position = target % (*position + 1);
        let seek = Op::Seek {
            topic: TOPIC.into(),
            partition,
            offset: *position,
        };
        self.push(Process::Client(consumer), seek.clone(), Outcome::Ok(seek));
    }

    /// A rebalance resumes every partition from the group's committed offset.
    fn rebalance(&mut self, consumer: u64) {
        self.positions.insert(consumer, self.committed.clone());
        let rebalance = Op::Rebalance {
            assigned: all_partitions(),
        };
        self.push(
            Process::Client(consumer),
            rebalance.clone(),
            Outcome::Ok(rebalance),
        );
    }

    fn commit(&mut self, consumer: u64) {
        let positions = self.positions[&consumer].clone();
        let offsets = positions
            .iter()
            .enumerate()
            .map(|(partition, offset)| CommittedOffset {
                topic: TOPIC.into(),
                partition: partition as u32,
                offset: *offset,
            })
            .collect();
        self.committed = positions;
        let commit = Op::Commit {
            group: GROUP.into(),
            offsets,
        };
        self.push(
            Process::Client(consumer),
            commit.clone(),
            Outcome::Ok(commit),
        );
    }

    /// Two acknowledged sends to partition 0, so the bug injections always find an
    /// acknowledged record with a successor and a poll with two records of one partition.
    fn send_guaranteed_pair(&mut self) {
        self.send(0, 0, SendOutcome::Ok);
        self.send(0, 0, SendOutcome::Ok);
    }

    fn drain(&mut self) {
        self.assign_all(DRAIN_PROCESS);
        let longest = self.logs.iter().map(Vec::len).max().unwrap_or(0);
        let polls = longest.div_ceil(DRAIN_RECORDS_PER_PARTITION_MAX).max(1);
        for _ in 0..polls {
            self.poll(DRAIN_PROCESS, DRAIN_RECORDS_PER_PARTITION_MAX, false, true);
        }
    }
}

fn generate(actions: &[Action]) -> Vec<Step> {
    let mut model = Model::new();
    for action in actions {
        model.apply(action);
    }
    model.send_guaranteed_pair();
    model.drain();
    model.steps
}

fn to_history(steps: &[Step]) -> History {
    let mut history = History::new();
    for (number, step) in steps.iter().enumerate() {
        let time_ns = number as u64 * 2 * EVENT_SPACING_NS;
        let id = history.invoke(step.process, time_ns, step.invocation.clone());
        history.complete(id, time_ns + EVENT_SPACING_NS, step.outcome.clone());
    }
    history
}

fn polled_records(step: &mut Step) -> Option<&mut Vec<PolledRecord>> {
    match &mut step.outcome {
        Outcome::Ok(Op::Poll { records, .. }) => Some(records),
        _ => None,
    }
}

/// Acknowledged values with a later record on their partition (the drain reads past them).
fn acknowledged_with_successor(steps: &[Step]) -> Vec<RecordValue> {
    let mut ends = vec![0; PARTITION_COUNT as usize];
    let mut acknowledged = Vec::new();
    for step in steps {
        if let Outcome::Ok(Op::Poll { records, .. }) = &step.outcome {
            for record in records {
                let end = &mut ends[record.partition as usize];
                *end = (*end).max(record.offset + 1);
            }
        }
        if let Outcome::Ok(Op::Send {
            partition: Some(partition),
            offset: Some(offset),
            value,
            ..
        }) = &step.outcome
        {
            acknowledged.push((*partition, *offset, value.clone()));
        }
    }
    acknowledged
        .into_iter()
        .filter(|(partition, offset, _)| offset + 1 < ends[*partition as usize])
        .map(|(_, _, value)| value)
        .collect()
}

/// Removes `value` from every poll.
fn drop_from_every_read(steps: &mut [Step], value: &RecordValue) {
    for step in steps {
        if let Some(records) = polled_records(step) {
            records.retain(|record| &record.value != value);
        }
    }
}

/// Positions of every pair of records of one partition that a single poll returned.
fn swappable_pairs(steps: &mut [Step]) -> Vec<(usize, usize, usize)> {
    let mut pairs = Vec::new();
    for (step_number, step) in steps.iter_mut().enumerate() {
        let Some(records) = polled_records(step) else {
            continue;
        };
        for first in 0..records.len() {
            for second in first + 1..records.len() {
                if records[first].partition == records[second].partition {
                    pairs.push((step_number, first, second));
                }
            }
        }
    }
    pairs
}

proptest! {
    #[test]
    fn histories_of_a_correct_model_have_no_anomaly(
        actions in prop::collection::vec(action(), 0..ACTIONS_MAX),
    ) {
        let history = to_history(&generate(&actions));
        let verdict = check(&history, &CheckOptions::default());
        prop_assert!(verdict.anomalies.is_empty(), "{}", verdict.summary());
        prop_assert!(verdict.valid);
        prop_assert!(verdict.statistics.drain_completed);
        prop_assert!(verdict.statistics.polled_records >= verdict.statistics.acknowledged_sends);
        let read_back = History::from_json_lines(&history.to_json_lines()).expect("round trip");
        prop_assert_eq!(read_back, history);
    }

    #[test]
    fn an_acknowledged_record_dropped_from_every_read_is_a_lost_write(
        actions in prop::collection::vec(action(), 0..ACTIONS_MAX),
        victim in any::<prop::sample::Index>(),
    ) {
        let mut steps = generate(&actions);
        let candidates = acknowledged_with_successor(&steps);
        prop_assert!(!candidates.is_empty(), "the guaranteed pair always qualifies");
        let value = victim.get(&candidates).clone();
        drop_from_every_read(&mut steps, &value);
        let history = to_history(&steps);
        let verdict = check(&history, &CheckOptions::default());
        prop_assert!(!verdict.valid);
        let again = check(&history, &CheckOptions::default());
        prop_assert_eq!(
            serde_json::to_string(&again).expect("serializes"),
            serde_json::to_string(&verdict).expect("serializes"),
            "the same history gives the same report"
        );
        let lost = verdict.examples(AnomalyKind::LostWrite);
        prop_assert!(
            lost.iter().any(|anomaly| matches!(anomaly, crate::Anomaly::LostWrite { value: lost, .. } if *lost == value)),
            "{}", verdict.summary()
        );
    }

    #[test]
    fn two_offsets_swapped_within_a_poll_are_detected(
        actions in prop::collection::vec(action(), 0..ACTIONS_MAX),
        choice in any::<prop::sample::Index>(),
    ) {
        let mut steps = generate(&actions);
        let pairs = swappable_pairs(&mut steps);
        prop_assert!(!pairs.is_empty(), "the drain reads the guaranteed pair");
        let (step_number, first, second) = *choice.get(&pairs);
        let records = polled_records(&mut steps[step_number]).expect("a poll");
        let first_offset = records[first].offset;
        records[first].offset = records[second].offset;
        records[second].offset = first_offset;
        let verdict = check(&to_history(&steps), &CheckOptions::default());
        prop_assert!(!verdict.valid);
        prop_assert!(verdict.count(AnomalyKind::NonmonotonicPoll) >= 1, "{}", verdict.summary());
    }
}
