//! # skiff-checker: histories and their Jepsen-style analysis
//!
//! The simulator and the real-cluster tests both record what their clients did as a
//! [`History`] of Jepsen-style events, and both judge it with [`check`]. Nothing here does
//! I/O, reads a clock or draws random numbers: the checker is a pure function of the
//! history, so it builds unchanged under `--cfg madsim`.
//!
//! ```text
//!  producers, consumers, nemesis          History::to_json_lines()
//!  ─────────────────────────────┐        ┌──────────────────────────► history.jsonl
//!   invoke(process, time, op) ──┤        │                                  │
//!   complete(id, time, outcome)─┼──► History ◄── History::from_json_lines() ┘
//!   record(process, time, op) ──┘        │
//!                                        ▼
//!                     check(&history, &CheckOptions)
//!              pass 1: observations by position and by value
//!              pass 2: each process's sends, polls and commits in order
//!                                        │
//!                                        ▼
//!                Verdict { valid, statistics, anomalies by kind }
//!                    ├── serde JSON for reports
//!                    └── summary() for humans
//! ```
//!
//! ## Recording
//!
//! ```
//! use skiff_checker::{check, CheckOptions, History, Op, Outcome, PolledRecord};
//!
//! let mut history = History::new();
//! let send = |offset| Op::Send {
//!     topic: "t".into(), partition: Some(0), key: None,
//!     value: 42.into(), idempotent: true, offset,
//! };
//! let id = history.invoke(1, 100, send(None));
//! history.complete(id, 200, Outcome::Ok(send(Some(0))));
//!
//! let record = PolledRecord {
//!     topic: "t".into(), partition: 0, offset: 0, key: None, value: 42.into(),
//! };
//! let id = history.invoke(2, 300, Op::Poll { drain: true, records: vec![] });
//! history.complete(id, 400, Outcome::Ok(Op::Poll { drain: true, records: vec![record] }));
//!
//! let verdict = check(&history, &CheckOptions::default());
//! assert!(verdict.valid, "{}", verdict.summary());
//! let text = history.to_json_lines();
//! assert_eq!(skiff_checker::History::from_json_lines(&text).unwrap(), history);
//! ```
//!
//! Each JSON line has `index`, `time_ns`, `process` (a client number or `"nemesis"`),
//! `type` (`invoke`, `ok`, `fail`, `info`), `f` and `value`. An operation's completion
//! repeats its invocation's value and fills in the result: a send's `partition` and
//! `offset`, a poll's `records`, a subscription's `assigned` partitions. A consumer's
//! assignment changes are `assign`, `subscribe` (with `assigned`) or `rebalance` events
//! (recorded with [`History::record`]); `seek` moves one partition's position. The final
//! drain, after every fault is healed, is made of polls with `drain: true`, and must read
//! every partition from its first offset. `crash`, `restart`, `fault` and `heal` by the
//! nemesis are there for timelines; the analysis ignores them.
//!
//! ## The anomalies
//!
//! Only `ok` sends with a partition and an offset are *acknowledged*. `info` (or never
//! completed) sends are indeterminate: they may appear or not, and are never counted lost.
//! A value is *observed* at a position by its send's acknowledgement or by a polled record.
//!
//! - **lost-write**: an acknowledged value never read by any poll while some poll read its
//!   partition past its offset; or read by ordinary polls but missing from a drain that
//!   read its partition past its offset.
//! - **unseen**: an acknowledged value never read by any poll and not lost (nothing read
//!   past it). Fatal only once an `ok` drain poll exists: before that, it is expected.
//! - **duplicate**: one value observed at two or more positions. With
//!   [`CheckOptions::duplicates_fatal_only_for_idempotent`] (the default) it is fatal only
//!   when the value's producer was idempotent.
//! - **inconsistent-offsets**: two observations put different values at one position.
//! - **nonmonotonic-send**: one process's consecutive acknowledged sends to a partition got
//!   an offset not greater than the previous one (processes are sequential).
//! - **poll-skip**: one consumer process read offset `b` on a partition right after `a`,
//!   within one poll or across consecutive polls, with `b > a + 1` and some offset strictly
//!   between them observed anywhere (gaps nobody ever saw, such as transaction markers,
//!   are fine).
//! - **nonmonotonic-poll**: the same, with `b <= a` (backwards or repeated).
//! - Both poll checks start over for a process after its `ok` assign, subscribe or
//!   rebalance, after a seek of that partition, and after any of its `info` completions
//!   (its position is unknown then).
//! - **committed-offset-backwards**: a group's committed offset for a partition decreased
//!   across `ok` commits. By default only commits by one process within one assignment are
//!   compared ([`CommitComparisonScope::SameProcessSameAssignment`]), because Kafka lets a
//!   consumer that re-reads after a rebalance or seek commit a lower offset;
//!   [`CommitComparisonScope::WholeGroup`] compares every commit of the group.
//! - **committed-offset-past-end**: an `ok` commit or fetch-committed offset greater than
//!   the log end: one past the highest offset observed on the partition in the whole
//!   history (the drain included), zero if none.
//! - **committed-offset-lost**: an `ok` fetch-committed found no committed offset for a
//!   partition it asked for, though an `ok` commit of that partition had completed before
//!   the fetch was invoked.
//! - **stale-committed-offset**: an `ok` fetch-committed read an offset although an `ok`
//!   commit, invoked after every commit of that offset had completed `ok`, had itself
//!   completed before the fetch was invoked. (A group's committed offset is a register;
//!   `info` commits may take effect at any time and never count as done or as replaced.)
//! - **failed-send-observed**: a value whose send completed `fail` was read by a poll.
//!
//! The [`Verdict`] counts every anomaly, keeps the first [`EXAMPLES_PER_KIND_MAX`] of each
//! kind in history order, and is valid when no kind in [`CheckOptions::fatal`] occurred.

mod analysis;
mod history;
mod verdict;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod test_support;

pub use analysis::check;
pub use history::{
    CommittedOffset, Event, EventType, History, HistoryError, Offset, Op, OperationId, Outcome,
    PolledRecord, Process, RecordValue, TopicPartition, NEMESIS_PROCESS_NAME,
};
pub use verdict::{
    Anomaly, AnomalyKind, AnomalyReport, CheckOptions, CommitComparisonScope, Observation,
    Position, Statistics, Verdict, EXAMPLES_PER_KIND_MAX, SKIPPED_OFFSETS_LISTED_MAX,
    SUMMARY_EXAMPLES_PER_KIND_MAX,
};
