//! A tiny script language for writing histories in tests.

use crate::history::{
    CommittedOffset, EventType, History, Offset, Op, Outcome, PolledRecord, Process, TopicPartition,
};
use crate::{check, CheckOptions, Verdict};

pub(crate) const TOPIC: &str = "t";
pub(crate) const GROUP: &str = "g";
const NEMESIS_NODE: &str = "n1";

/// A tiny script language for writing histories by hand: every operation completes
/// immediately, each at a fresh time.
#[derive(Default)]
pub(crate) struct Script {
    pub(crate) history: History,
    time_ns: u64,
}

impl Script {
    fn tick(&mut self) -> u64 {
        self.time_ns += 10;
        self.time_ns
    }

    /// Runs one operation; returns the index of its completion event.
    pub(crate) fn run(&mut self, process: u64, invocation: Op, outcome: Outcome) -> u64 {
        let time_ns = self.tick();
        let id = self.history.invoke(process, time_ns, invocation);
        let time_ns = self.tick();
        self.history.complete(id, time_ns, outcome);
        self.history.events().len() as u64 - 1
    }

    pub(crate) fn send_with(
        &mut self,
        process: u64,
        partition: u32,
        value: u64,
        idempotent: bool,
        outcome: EventType,
        offset: Option<Offset>,
    ) -> u64 {
        let send = |offset| Op::Send {
            topic: TOPIC.into(),
            partition: Some(partition),
            key: None,
            value: value.into(),
            idempotent,
            offset,
        };
        let outcome = match outcome {
            EventType::Ok => Outcome::Ok(send(offset)),
            EventType::Fail => Outcome::Fail(send(None)),
            EventType::Info => Outcome::Info(send(None)),
            EventType::Invoke => panic!("an outcome cannot be an invocation"),
        };
        self.run(process, send(None), outcome)
    }

    /// An acknowledged idempotent send of `value` at `offset` on partition 0.
    pub(crate) fn send(&mut self, process: u64, value: u64, offset: Offset) -> u64 {
        self.send_with(process, 0, value, true, EventType::Ok, Some(offset))
    }

    /// A poll that returned `(offset, value)` records from partition 0.
    pub(crate) fn poll(&mut self, process: u64, records: &[(Offset, u64)]) -> u64 {
        self.poll_with(process, false, records)
    }

    pub(crate) fn drain(&mut self, process: u64, records: &[(Offset, u64)]) -> u64 {
        self.poll_with(process, true, records)
    }

    fn poll_with(&mut self, process: u64, drain: bool, records: &[(Offset, u64)]) -> u64 {
        let records = records
            .iter()
            .map(|(offset, value)| PolledRecord {
                topic: TOPIC.into(),
                partition: 0,
                offset: *offset,
                key: None,
                value: (*value).into(),
            })
            .collect();
        let invocation = Op::Poll {
            drain,
            records: Vec::new(),
        };
        self.run(
            process,
            invocation,
            Outcome::Ok(Op::Poll { drain, records }),
        )
    }

    pub(crate) fn rebalance(&mut self, process: u64) {
        let time_ns = self.tick();
        let assigned = vec![TopicPartition::new(TOPIC, 0)];
        self.history
            .record(process, time_ns, Op::Rebalance { assigned });
    }

    pub(crate) fn crash(&mut self) {
        let time_ns = self.tick();
        self.history.record(
            Process::Nemesis,
            time_ns,
            Op::Crash {
                node: NEMESIS_NODE.into(),
            },
        );
    }

    pub(crate) fn commit(&mut self, process: u64, offset: Offset) -> u64 {
        let offsets = vec![CommittedOffset {
            topic: TOPIC.into(),
            partition: 0,
            offset,
        }];
        let commit = Op::Commit {
            group: GROUP.into(),
            offsets,
        };
        self.run(process, commit.clone(), Outcome::Ok(commit))
    }

    pub(crate) fn check(&self) -> Verdict {
        check(&self.history, &CheckOptions::default())
    }
}
