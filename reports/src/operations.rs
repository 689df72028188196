//! Pairs a history's `invoke` events with their completions into [`Operation`]s, and
//! describes single events as readable lines for the summary page.

use std::collections::BTreeMap;

use skiff_checker::{Event, EventType, History, Op, Process};

/// How many records of one poll an event line lists; the count is always given.
pub(crate) const RECORDS_LISTED_MAX: usize = 8;

/// How many partitions or offsets of one assignment or commit an event line lists.
pub(crate) const ITEMS_LISTED_MAX: usize = 8;

/// Nanoseconds in one second, for turning event times into seconds.
pub(crate) const NANOSECONDS_PER_SECOND: u64 = 1_000_000_000;

/// Nanoseconds in one millisecond, for showing latencies.
pub(crate) const NANOSECONDS_PER_MILLISECOND: u64 = 1_000_000;

/// One operation: an invocation and its completion, if it completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Operation {
    /// The process that ran it.
    pub(crate) process: Process,
    /// The index of the `invoke` event.
    pub(crate) invoke_index: u64,
    /// When it was invoked.
    pub(crate) start_ns: u64,
    /// When it completed, and how; `None` when it never completed.
    pub(crate) completion: Option<(u64, EventType)>,
    /// The Jepsen function name (`send`, `poll`, `crash`...).
    pub(crate) function: &'static str,
    /// The operation's value as it completed (or as invoked, when it never did).
    pub(crate) op: Op,
}

impl Operation {
    /// How long it took, when it completed.
    pub(crate) fn latency_ns(&self) -> Option<u64> {
        self.completion
            .map(|(end_ns, _)| end_ns.saturating_sub(self.start_ns))
    }
}

/// Every operation of the history, in invocation order.
pub(crate) fn operations(history: &History) -> Vec<Operation> {
    let mut operations: Vec<Operation> = Vec::new();
    // The position in `operations` of each process's open operation.
    let mut open: BTreeMap<Process, usize> = BTreeMap::new();
    for event in history.events() {
        if event.event_type == EventType::Invoke {
            open.insert(event.process, operations.len());
            operations.push(Operation {
                process: event.process,
                invoke_index: event.index,
                start_ns: event.time_ns,
                completion: None,
                function: event.op.function(),
                op: event.op.clone(),
            });
        } else if let Some(position) = open.remove(&event.process) {
            let operation = &mut operations[position];
            operation.completion = Some((event.time_ns, event.event_type));
            operation.op = event.op.clone();
        }
    }
    operations
}

/// The index of the `invoke` event each completion event answers, by completion index.
pub(crate) fn invocations_by_completion(history: &History) -> BTreeMap<u64, u64> {
    let mut open: BTreeMap<Process, u64> = BTreeMap::new();
    let mut invocations = BTreeMap::new();
    for event in history.events() {
        if event.event_type == EventType::Invoke {
            open.insert(event.process, event.index);
        } else if let Some(invoke_index) = open.remove(&event.process) {
            invocations.insert(event.index, invoke_index);
        }
    }
    invocations
}

/// A time in nanoseconds as seconds with every digit kept, so lines are exact and stable.
pub(crate) fn seconds(time_ns: u64) -> String {
    format!(
        "{}.{:09}",
        time_ns / NANOSECONDS_PER_SECOND,
        time_ns % NANOSECONDS_PER_SECOND
    )
}

/// A duration in nanoseconds as milliseconds with every digit kept.
pub(crate) fn milliseconds(duration_ns: u64) -> String {
    format!(
        "{}.{:06}",
        duration_ns / NANOSECONDS_PER_MILLISECOND,
        duration_ns % NANOSECONDS_PER_MILLISECOND
    )
}

/// A readable name for a process: `client 3` or `nemesis`.
pub(crate) fn process_name(process: Process) -> String {
    match process {
        Process::Client(client) => format!("client {client}"),
        Process::Nemesis => "nemesis".to_string(),
    }
}

fn event_type_name(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Invoke => "invoke",
        EventType::Ok => "ok",
        EventType::Fail => "fail",
        EventType::Info => "info",
    }
}

/// One event as a readable line: index, time, process, type, function and what it carried.
/// For completions, `invoked_at` gives the invocation's index and time, so the line shows
/// how long the operation took.
pub(crate) fn describe_event(event: &Event, invoked_at: Option<(u64, u64)>) -> String {
    let mut line = format!(
        "#{} at {} s, {}: {} {}",
        event.index,
        seconds(event.time_ns),
        process_name(event.process),
        event_type_name(event.event_type),
        describe_op(&event.op),
    );
    if let Some((invoke_index, invoke_time_ns)) = invoked_at {
        let latency_ns = event.time_ns.saturating_sub(invoke_time_ns);
        line.push_str(&format!(
            " (invoked #{invoke_index}, took {} ms)",
            milliseconds(latency_ns)
        ));
    }
    line
}

/// What an operation carried, in a few words.
pub(crate) fn describe_op(op: &Op) -> String {
    match op {
        Op::Send {
            topic,
            partition,
            key,
            value,
            idempotent,
            offset,
        } => {
            let mut text = format!("send value {value} to {topic}");
            match (partition, offset) {
                (Some(partition), Some(offset)) => {
                    text.push_str(&format!("-{partition}@{offset}"));
                }
                (Some(partition), None) => text.push_str(&format!("-{partition}")),
                (None, _) => {}
            }
            if let Some(key) = key {
                text.push_str(&format!(" key {key:?}"));
            }
            if *idempotent {
                text.push_str(" (idempotent)");
            }
            text
        }
        Op::Poll { drain, records } => {
            let what = if *drain { "drain poll" } else { "poll" };
            let listed: Vec<String> = records
                .iter()
                .take(RECORDS_LISTED_MAX)
                .map(|record| {
                    format!(
                        "{}-{}@{}={}",
                        record.topic, record.partition, record.offset, record.value
                    )
                })
                .collect();
            let noun = if records.len() == 1 {
                "record"
            } else {
                "records"
            };
            let mut text = format!("{what}, {} {noun}", records.len());
            if !listed.is_empty() {
                text.push_str(&format!(": {}", listed.join(", ")));
            }
            if records.len() > RECORDS_LISTED_MAX {
                text.push_str(&format!(" and {} more", records.len() - RECORDS_LISTED_MAX));
            }
            text
        }
        Op::Assign { partitions } => format!("assign {}", list(partitions)),
        Op::Subscribe { topics, assigned } => {
            format!("subscribe to {}, assigned {}", list(topics), list(assigned))
        }
        Op::Rebalance { assigned } => format!("rebalance, assigned {}", list(assigned)),
        Op::Seek {
            topic,
            partition,
            offset,
        } => format!("seek {topic}-{partition} to {offset}"),
        Op::Commit { group, offsets } => {
            let offsets: Vec<String> = offsets
                .iter()
                .map(|committed| {
                    format!(
                        "{}-{}@{}",
                        committed.topic, committed.partition, committed.offset
                    )
                })
                .collect();
            format!("commit group {group}: {}", list(&offsets))
        }
        Op::FetchCommitted { group, offsets, .. } => {
            let offsets: Vec<String> = offsets
                .iter()
                .map(|committed| {
                    format!(
                        "{}-{}@{}",
                        committed.topic, committed.partition, committed.offset
                    )
                })
                .collect();
            format!(
                "fetch committed offsets of group {group}: {}",
                list(&offsets)
            )
        }
        Op::Crash { node } => format!("crash node {node}"),
        Op::Restart { node } => format!("restart node {node}"),
        Op::Fault { description } => format!("fault: {description}"),
        Op::Heal { description } => format!("heal: {description}"),
    }
}

/// Items joined with commas, at most [`ITEMS_LISTED_MAX`] of them, `none` when empty.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    let listed: Vec<String> = items
        .iter()
        .take(ITEMS_LISTED_MAX)
        .map(ToString::to_string)
        .collect();
    let mut text = listed.join(", ");
    if items.len() > ITEMS_LISTED_MAX {
        text.push_str(&format!(" and {} more", items.len() - ITEMS_LISTED_MAX));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_checker::Outcome;

    #[test]
    fn operations_pair_invocations_with_completions_per_process() {
        let mut history = History::new();
        let poll = Op::Poll {
            drain: false,
            records: vec![],
        };
        let first = history.invoke(1, 10, poll.clone());
        let second = history.invoke(2, 20, poll.clone());
        history.complete(second, 25, Outcome::Info(poll.clone()));
        history.complete(first, 40, Outcome::Ok(poll.clone()));
        history.invoke(1, 50, poll);
        let operations = operations(&history);
        assert_eq!(operations.len(), 3);
        assert_eq!(operations[0].completion, Some((40, EventType::Ok)));
        assert_eq!(operations[1].latency_ns(), Some(5));
        assert_eq!(operations[2].completion, None);
        assert_eq!(
            invocations_by_completion(&history),
            BTreeMap::from([(2, 1), (3, 0)])
        );
    }

    #[test]
    fn seconds_keep_every_nanosecond() {
        assert_eq!(seconds(0), "0.000000000");
        assert_eq!(seconds(1_500_000_001), "1.500000001");
        assert_eq!(milliseconds(15_000_001), "15.000001");
    }
}
