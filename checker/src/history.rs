//! The history format: Jepsen-style `invoke` / `ok` / `fail` / `info` events, one JSON
//! object per line, and the [`History`] builder that recorders use to write them.
//!
//! Every operation is an `invoke` event followed, later, by exactly one completion from the
//! same process: `ok` (it happened, the value carries what it returned), `fail` (it
//! definitely did not happen) or `info` (indeterminate: it may or may not have happened,
//! for example a timeout). A process runs one operation at a time, like a Jepsen process.
//! Events that have no duration (a rebalance observed by a consumer, a nemesis fault) are
//! recorded with [`History::record`] as an `invoke` immediately followed by its `ok`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Offset of a record within one partition.
pub type Offset = u64;

/// The name the nemesis process has in JSON.
pub const NEMESIS_PROCESS_NAME: &str = "nemesis";

/// Who performed an event: a client (producer or consumer) or the fault injector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "ProcessRepresentation", try_from = "ProcessRepresentation")]
pub enum Process {
    /// A client, by id. Written in JSON as a number.
    Client(u64),
    /// The fault injector. Written in JSON as `"nemesis"`.
    Nemesis,
}

impl From<u64> for Process {
    fn from(client: u64) -> Self {
        Process::Client(client)
    }
}

impl fmt::Display for Process {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(client) => write!(formatter, "{client}"),
            Process::Nemesis => formatter.write_str(NEMESIS_PROCESS_NAME),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ProcessRepresentation {
    Client(u64),
    Name(String),
}

impl From<Process> for ProcessRepresentation {
    fn from(process: Process) -> Self {
        match process {
            Process::Client(client) => ProcessRepresentation::Client(client),
            Process::Nemesis => ProcessRepresentation::Name(NEMESIS_PROCESS_NAME.to_string()),
        }
    }
}

impl TryFrom<ProcessRepresentation> for Process {
    type Error = String;

    fn try_from(representation: ProcessRepresentation) -> Result<Self, Self::Error> {
        match representation {
            ProcessRepresentation::Client(client) => Ok(Process::Client(client)),
            ProcessRepresentation::Name(name) if name == NEMESIS_PROCESS_NAME => {
                Ok(Process::Nemesis)
            }
            ProcessRepresentation::Name(name) => Err(format!("unknown process name {name:?}")),
        }
    }
}

/// The kind of an event: the invocation or one of the three completions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// The operation started.
    Invoke,
    /// The operation happened; the value carries its result.
    Ok,
    /// The operation definitely did not happen.
    Fail,
    /// The operation may or may not have happened.
    Info,
}

/// A record value. Workloads make every sent value unique so that reads can be traced
/// back to the send that wrote them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordValue {
    /// A numeric value, written in JSON as a number.
    Number(u64),
    /// A textual value, written in JSON as a string.
    Text(String),
}

impl From<u64> for RecordValue {
    fn from(number: u64) -> Self {
        RecordValue::Number(number)
    }
}

impl fmt::Display for RecordValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordValue::Number(number) => write!(formatter, "{number}"),
            RecordValue::Text(text) => write!(formatter, "{text:?}"),
        }
    }
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    /// The topic name.
    pub topic: String,
    /// The partition index within the topic.
    pub partition: u32,
}

impl TopicPartition {
    /// Builds a topic partition.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}-{}", self.topic, self.partition)
    }
}

/// One record as a consumer received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolledRecord {
    /// The topic the record was read from.
    pub topic: String,
    /// The partition the record was read from.
    pub partition: u32,
    /// The offset the broker reported for the record.
    pub offset: Offset,
    /// The record key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The record value.
    pub value: RecordValue,
}

impl PolledRecord {
    /// The partition this record was read from.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// One committed offset of a consumer group: the offset of the next record to consume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The committed offset (the next offset the group will consume).
    pub offset: Offset,
}

/// An operation with its value. The same type is used for the invocation and for the
/// completion: the completion repeats the invocation's value and fills in what the
/// operation returned (a send's offset, a poll's records, a subscription's assignment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", content = "value", rename_all = "kebab-case")]
pub enum Op {
    /// Produce one record. On `ok`, `partition` and `offset` are those the broker assigned.
    Send {
        /// The topic.
        topic: String,
        /// The partition, when the producer chose it or the broker reported it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<u32>,
        /// The record key, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// The unique value.
        value: RecordValue,
        /// Whether the producer had idempotence enabled.
        #[serde(default)]
        idempotent: bool,
        /// The offset the broker acknowledged; only on `ok`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<Offset>,
    },
    /// Fetch records. On `ok`, the records in the order received.
    Poll {
        /// Whether this poll belongs to the final drain, after all faults were healed.
        #[serde(default)]
        drain: bool,
        /// The records received, in order; empty on the invocation.
        #[serde(default)]
        records: Vec<PolledRecord>,
    },
    /// Manually assign partitions to a consumer (positions start over).
    Assign {
        /// The partitions assigned.
        partitions: Vec<TopicPartition>,
    },
    /// Subscribe a group consumer to topics. On `ok`, the assignment the rebalance gave.
    Subscribe {
        /// The topics subscribed to.
        topics: Vec<String>,
        /// The partitions the rebalance assigned; empty on the invocation.
        #[serde(default)]
        assigned: Vec<TopicPartition>,
    },
    /// A group consumer's assignment changed (recorded with [`History::record`]).
    Rebalance {
        /// The partitions now assigned.
        assigned: Vec<TopicPartition>,
    },
    /// Move a consumer's position on one partition.
    Seek {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The new position.
        offset: Offset,
    },
    /// Commit offsets for a consumer group.
    Commit {
        /// The consumer group.
        group: String,
        /// The offsets committed.
        offsets: Vec<CommittedOffset>,
    },
    /// Read a consumer group's committed offsets. On `ok`, the offsets read.
    FetchCommitted {
        /// The consumer group.
        group: String,
        /// The partitions asked for: one of them absent from `offsets` on `ok` had no
        /// committed offset. Empty when not recorded; then an absent partition says nothing.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        partitions: Vec<TopicPartition>,
        /// The offsets read; empty on the invocation.
        #[serde(default)]
        offsets: Vec<CommittedOffset>,
    },
    /// The nemesis crashed a node.
    Crash {
        /// The node.
        node: String,
    },
    /// The nemesis restarted a node.
    Restart {
        /// The node.
        node: String,
    },
    /// The nemesis started a fault (partition, slow disk, clock skew...).
    Fault {
        /// What the fault is, for timelines.
        description: String,
    },
    /// The nemesis healed a fault.
    Heal {
        /// What was healed, for timelines.
        description: String,
    },
}

impl Op {
    /// The Jepsen function name, as written in the `f` field.
    pub fn function(&self) -> &'static str {
        match self {
            Op::Send { .. } => "send",
            Op::Poll { .. } => "poll",
            Op::Assign { .. } => "assign",
            Op::Subscribe { .. } => "subscribe",
            Op::Rebalance { .. } => "rebalance",
            Op::Seek { .. } => "seek",
            Op::Commit { .. } => "commit",
            Op::FetchCommitted { .. } => "fetch-committed",
            Op::Crash { .. } => "crash",
            Op::Restart { .. } => "restart",
            Op::Fault { .. } => "fault",
            Op::Heal { .. } => "heal",
        }
    }
}

/// How an operation completed, with the value it completed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Ok(Op),
    /// It definitely did not happen.
    Fail(Op),
    /// It may or may not have happened.
    Info(Op),
}

impl Outcome {
    fn into_parts(self) -> (EventType, Op) {
        match self {
            Outcome::Ok(op) => (EventType::Ok, op),
            Outcome::Fail(op) => (EventType::Fail, op),
            Outcome::Info(op) => (EventType::Info, op),
        }
    }
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, starting at zero.
    pub index: u64,
    /// Simulated or real time, in nanoseconds.
    pub time_ns: u64,
    /// The process that performed the event.
    pub process: Process,
    /// Invocation or completion.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The operation and its value (`f` and `value` in JSON).
    #[serde(flatten)]
    pub op: Op,
}

/// Identifies an invoked operation: the index of its `invoke` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperationId(pub u64);

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A line is not a valid event.
    #[error("line {line}: {source}")]
    Json {
        /// The line number, starting at one.
        line: usize,
        /// The parse error.
        source: serde_json::Error,
    },
    /// An event's index is not its position in the history.
    #[error("event at position {position} has index {index}")]
    IndexMismatch {
        /// Where the event is.
        position: u64,
        /// The index it claims.
        index: u64,
    },
    /// A process invoked an operation while another of its operations was still open.
    #[error("event {index}: process {process} invoked while its operation {open} is open")]
    ConcurrentInvoke {
        /// The offending event.
        index: u64,
        /// The process.
        process: Process,
        /// The open operation's invoke index.
        open: u64,
    },
    /// A completion has no open invocation from the same process.
    #[error("event {index}: completion by process {process} without an open invocation")]
    CompletionWithoutInvoke {
        /// The offending event.
        index: u64,
        /// The process.
        process: Process,
    },
    /// A completion's function differs from its invocation's.
    #[error("event {index}: completes {completed:?} but {invoked:?} was invoked")]
    FunctionMismatch {
        /// The offending event.
        index: u64,
        /// The invoked function.
        invoked: &'static str,
        /// The completed function.
        completed: &'static str,
    },
}

/// A recorded history, built event by event by a recorder or read from JSON lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    events: Vec<Event>,
    /// The open operation of each process: the index of its invoke event.
    open: BTreeMap<Process, u64>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Records the invocation of `op` by `process`, which must have no open operation.
    pub fn invoke(&mut self, process: impl Into<Process>, time_ns: u64, op: Op) -> OperationId {
        let process = process.into();
        let index = self.events.len() as u64;
        let previous = self.open.insert(process, index);
        assert!(
            previous.is_none(),
            "process {process} invoked while an operation is open"
        );
        self.events.push(Event {
            index,
            time_ns,
            process,
            event_type: EventType::Invoke,
            op,
        });
        OperationId(index)
    }

    /// Records the completion of the open operation `id`, with the same function.
    pub fn complete(&mut self, id: OperationId, time_ns: u64, outcome: Outcome) {
        let invocation = &self.events[usize::try_from(id.0).expect("index fits in usize")];
        let process = invocation.process;
        assert_eq!(
            invocation.event_type,
            EventType::Invoke,
            "{id:?} is not an invocation"
        );
        assert_eq!(self.open.get(&process), Some(&id.0), "{id:?} is not open");
        let (event_type, op) = outcome.into_parts();
        assert_eq!(
            invocation.op.function(),
            op.function(),
            "{id:?} completed another function"
        );
        self.open.remove(&process);
        let index = self.events.len() as u64;
        self.events.push(Event {
            index,
            time_ns,
            process,
            event_type,
            op,
        });
    }

    /// Records an instantaneous operation (a rebalance, a nemesis event) as an `invoke`
    /// immediately followed by its `ok`.
    pub fn record(&mut self, process: impl Into<Process>, time_ns: u64, op: Op) {
        let id = self.invoke(process, time_ns, op.clone());
        self.complete(id, time_ns, Outcome::Ok(op));
    }

    /// All events, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The history as JSON lines, one event per line, each line ending with a newline.
    pub fn to_json_lines(&self) -> String {
        let mut text = String::new();
        for event in &self.events {
            text.push_str(&serde_json::to_string(event).expect("events always serialize"));
            text.push('\n');
        }
        text
    }

    /// Reads a history written by [`History::to_json_lines`], checking that indexes are
    /// positions and that invocations and completions pair up. Blank lines are skipped.
    /// Operations still open at the end are allowed: the checker treats them as `info`.
    pub fn from_json_lines(text: &str) -> Result<History, HistoryError> {
        let mut history = History::new();
        let lines = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty());
        for (line_number, line) in lines {
            let event: Event = serde_json::from_str(line).map_err(|source| HistoryError::Json {
                line: line_number + 1,
                source,
            })?;
            history.push_checked(event)?;
        }
        Ok(history)
    }

    fn push_checked(&mut self, event: Event) -> Result<(), HistoryError> {
        let position = self.events.len() as u64;
        if event.index != position {
            return Err(HistoryError::IndexMismatch {
                position,
                index: event.index,
            });
        }
        let open = self.open.get(&event.process).copied();
        match (event.event_type, open) {
            (EventType::Invoke, Some(open)) => {
                let process = event.process;
                return Err(HistoryError::ConcurrentInvoke {
                    index: position,
                    process,
                    open,
                });
            }
            (EventType::Invoke, None) => {
                self.open.insert(event.process, position);
            }
            (_, None) => {
                let process = event.process;
                return Err(HistoryError::CompletionWithoutInvoke {
                    index: position,
                    process,
                });
            }
            (_, Some(open)) => {
                let invoked = self.events[open as usize].op.function();
                let completed = event.op.function();
                if invoked != completed {
                    let index = position;
                    return Err(HistoryError::FunctionMismatch {
                        index,
                        invoked,
                        completed,
                    });
                }
                self.open.remove(&event.process);
            }
        }
        self.events.push(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(value: u64, offset: Option<Offset>) -> Op {
        Op::Send {
            topic: "t".into(),
            partition: Some(0),
            key: None,
            value: value.into(),
            idempotent: true,
            offset,
        }
    }

    #[test]
    fn json_lines_round_trip() {
        let mut history = History::new();
        let id = history.invoke(1, 10, send(7, None));
        history.complete(id, 20, Outcome::Ok(send(7, Some(0))));
        history.record(Process::Nemesis, 25, Op::Crash { node: "n1".into() });
        let text = history.to_json_lines();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"index":0,"time_ns":10,"process":1,"type":"invoke","f":"send","value":{"topic":"t","partition":0,"value":7,"idempotent":true}}"#
        );
        assert!(text.contains(r#""process":"nemesis","type":"ok","f":"crash""#));
        assert_eq!(History::from_json_lines(&text).unwrap(), history);
    }

    #[test]
    fn from_json_lines_rejects_unpaired_completion() {
        let line = r#"{"index":0,"time_ns":1,"process":1,"type":"ok","f":"poll","value":{}}"#;
        let error = History::from_json_lines(line).unwrap_err();
        assert!(matches!(
            error,
            HistoryError::CompletionWithoutInvoke { index: 0, .. }
        ));
    }

    #[test]
    fn from_json_lines_rejects_wrong_index_and_function() {
        let line = r#"{"index":3,"time_ns":1,"process":1,"type":"invoke","f":"poll","value":{}}"#;
        let error = History::from_json_lines(line).unwrap_err();
        assert!(matches!(
            error,
            HistoryError::IndexMismatch {
                position: 0,
                index: 3
            }
        ));
        let lines = concat!(
            r#"{"index":0,"time_ns":1,"process":1,"type":"invoke","f":"poll","value":{}}"#,
            "\n",
            r#"{"index":1,"time_ns":1,"process":1,"type":"ok","f":"assign","value":{"partitions":[]}}"#
        );
        let error = History::from_json_lines(lines).unwrap_err();
        assert!(matches!(
            error,
            HistoryError::FunctionMismatch { index: 1, .. }
        ));
    }

    #[test]
    #[should_panic(expected = "invoked while an operation is open")]
    fn invoke_twice_panics() {
        let mut history = History::new();
        history.invoke(1, 0, send(1, None));
        history.invoke(1, 0, send(2, None));
    }
}
