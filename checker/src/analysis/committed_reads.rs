//! Reads of committed offsets, checked against the commits before them.
//!
//! A group's committed offset for one partition is a register: each `ok` commit writes it,
//! and a fetch-committed reads it. A read must not miss a commit that completed before the
//! read began: it may return that commit's offset, or one written by a commit that was
//! concurrent with or later than it, but not nothing (**committed-offset-lost**) and not an
//! offset every commit of which had completed before that commit began
//! (**stale-committed-offset**). A commit that completed `info` (or never completed) may
//! take effect at any time, so it is never taken as done, and never as superseded.
//!
//! Per process, operations are sequential: an invocation's completion is the process's next
//! event.

use std::collections::BTreeMap;

use super::{position, Findings};
use crate::history::{Event, EventType, Offset, Op, Process, TopicPartition};
use crate::verdict::Anomaly;

/// One commit of one partition's offset.
struct Commit {
    offset: Offset,
    /// Its invocation's index.
    invoked: u64,
    /// Its `ok` completion's index; `None` if it completed `info` or never did.
    completed_ok: Option<u64>,
}

/// One partition of one `ok` fetch-committed.
struct Read {
    group: String,
    topic_partition: TopicPartition,
    /// The offset read; `None`: the partition was asked for and had no committed offset.
    offset: Option<Offset>,
    invoked: u64,
    /// The `ok` completion.
    event: u64,
}

type Key = (String, TopicPartition);

/// Reports every read of a committed offset that misses a commit completed before it.
pub(super) fn check_committed_reads(events: &[Event], findings: &mut Findings) {
    let (commits, reads) = collect(events);
    for read in reads {
        let key = (read.group.clone(), read.topic_partition.clone());
        let Some(commits) = commits.get(&key) else {
            continue;
        };
        let done_before = || {
            commits
                .iter()
                .filter(|commit| commit.completed_ok.is_some_and(|done| done < read.invoked))
        };
        match read.offset {
            None => {
                if let Some(commit) = done_before().max_by_key(|commit| commit.completed_ok) {
                    findings.report(Anomaly::CommittedOffsetLost {
                        group: read.group.clone(),
                        position: position(&read.topic_partition, commit.offset),
                        event: read.event,
                        commit: commit.completed_ok.expect("done before the read"),
                    });
                }
            }
            Some(offset) => {
                let writers: Vec<&Commit> = commits
                    .iter()
                    .filter(|commit| commit.offset == offset)
                    .collect();
                // A commit that began after every writer of the offset read had completed,
                // and completed before the read began, overwrote it for good.
                let superseding = done_before()
                    .filter(|newer| {
                        writers.iter().all(|writer| {
                            writer.completed_ok.is_some_and(|done| done < newer.invoked)
                        })
                    })
                    .max_by_key(|newer| newer.completed_ok);
                if let Some(newer) = superseding {
                    findings.report(Anomaly::StaleCommittedOffset {
                        group: read.group.clone(),
                        position: position(&read.topic_partition, offset),
                        event: read.event,
                        superseded_by: newer.completed_ok.expect("done before the read"),
                        current_offset: newer.offset,
                    });
                }
            }
        }
    }
}

/// Every commit per (group, partition), and every read, in history order.
fn collect(events: &[Event]) -> (BTreeMap<Key, Vec<Commit>>, Vec<Read>) {
    let mut pending: BTreeMap<Process, &Event> = BTreeMap::new();
    let mut commits: BTreeMap<Key, Vec<Commit>> = BTreeMap::new();
    let mut reads = Vec::new();
    let mut add_commit = |invocation: &Event, completed_ok: Option<u64>| {
        if let Op::Commit { group, offsets } = &invocation.op {
            for committed in offsets {
                let key = (
                    group.clone(),
                    TopicPartition::new(committed.topic.clone(), committed.partition),
                );
                commits.entry(key).or_default().push(Commit {
                    offset: committed.offset,
                    invoked: invocation.index,
                    completed_ok,
                });
            }
        }
    };
    for event in events {
        if event.event_type == EventType::Invoke {
            pending.insert(event.process, event);
            continue;
        }
        let Some(invocation) = pending.remove(&event.process) else {
            continue;
        };
        match (&invocation.op, event.event_type, &event.op) {
            (Op::Commit { .. }, EventType::Ok, _) => add_commit(invocation, Some(event.index)),
            (Op::Commit { .. }, EventType::Info, _) => add_commit(invocation, None),
            (
                Op::FetchCommitted {
                    group, partitions, ..
                },
                EventType::Ok,
                Op::FetchCommitted { offsets, .. },
            ) => {
                let mut read: BTreeMap<TopicPartition, Option<Offset>> = partitions
                    .iter()
                    .map(|asked| (asked.clone(), None))
                    .collect();
                for committed in offsets {
                    let asked = TopicPartition::new(committed.topic.clone(), committed.partition);
                    read.insert(asked, Some(committed.offset));
                }
                reads.extend(read.into_iter().map(|(topic_partition, offset)| Read {
                    group: group.clone(),
                    topic_partition,
                    offset,
                    invoked: invocation.index,
                    event: event.index,
                }));
            }
            _ => {}
        }
    }
    // Commits still in flight at the end may have taken effect.
    for invocation in pending.into_values() {
        add_commit(invocation, None);
    }
    (commits, reads)
}
