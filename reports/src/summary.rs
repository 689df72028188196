//! The summary page's content, as [`Block`]s: headline, reproduce command, statistics,
//! timeline, anomalies with the events they involve, fault log, settings, extra files.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_checker::{Anomaly, Event, History, Op, Process, RecordValue, Verdict};

use crate::document::Block;
use crate::operations::{
    describe_event, describe_op, invocations_by_completion, operations, seconds,
};
use crate::timeline::{Timeline, TIMELINE_CLIENT_LANES_MAX};

/// How many events that observed a duplicated value are listed per example.
pub(crate) const DUPLICATE_EVENTS_LISTED_MAX: usize = 8;

/// How many rows the fault log lists; the count of the rest is given.
pub(crate) const FAULT_LOG_ROWS_MAX: usize = 500;

/// The settings key holding the command that reproduces the run.
pub(crate) const REPRODUCE_SETTING: &str = "reproduce";

/// An extra JSON document shown raw at the end of the page, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExtraDocument {
    pub(crate) name: String,
    pub(crate) value: Value,
}

/// Everything the page is made from.
pub(crate) struct PageInputs<'a> {
    pub(crate) settings: &'a Value,
    pub(crate) history: &'a History,
    pub(crate) verdict: &'a Verdict,
    pub(crate) timeline: &'a Timeline,
    pub(crate) extras: &'a [ExtraDocument],
}

/// Builds the whole page.
pub(crate) fn page(inputs: &PageInputs<'_>) -> Vec<Block> {
    let mut blocks = vec![headline(inputs.verdict)];
    if let Some(command) = inputs
        .settings
        .get(REPRODUCE_SETTING)
        .and_then(Value::as_str)
    {
        blocks.push(heading(2, "Reproduce"));
        blocks.push(Block::Code(command.to_string()));
    }
    blocks.push(heading(2, "Statistics"));
    blocks.push(statistics_table(inputs.verdict));
    blocks.push(heading(2, "Timeline"));
    blocks.push(Block::Paragraph(timeline_note(inputs.timeline)));
    blocks.push(Block::Timeline);
    blocks.push(heading(2, "Anomalies"));
    blocks.extend(anomaly_blocks(inputs.verdict, inputs.history));
    blocks.push(heading(2, "Fault log"));
    blocks.extend(fault_log(inputs.history));
    blocks.push(heading(2, "Settings"));
    blocks.push(settings_table(inputs.settings));
    for extra in inputs.extras {
        blocks.push(heading(2, &extra.name));
        let json = serde_json::to_string_pretty(&extra.value).expect("JSON values serialize");
        blocks.push(Block::Code(json));
    }
    blocks
}

fn heading(level: u8, text: &str) -> Block {
    Block::Heading {
        level,
        text: text.to_string(),
    }
}

/// `VALID` or `INVALID: <fatal kinds>`, followed by any kinds found that are not fatal.
fn headline(verdict: &Verdict) -> Block {
    let kinds = |fatal: bool| -> Vec<&str> {
        verdict
            .anomalies
            .iter()
            .filter(|(_, report)| report.fatal == fatal)
            .map(|(kind, _)| kind.name())
            .collect()
    };
    let (fatal, not_fatal) = (kinds(true), kinds(false));
    let mut text = if verdict.valid {
        "VALID".to_string()
    } else {
        format!("INVALID: {}", fatal.join(", "))
    };
    if !not_fatal.is_empty() {
        text.push_str(&format!("; not fatal: {}", not_fatal.join(", ")));
    }
    Block::Verdict {
        valid: verdict.valid,
        text,
    }
}

fn statistics_table(verdict: &Verdict) -> Block {
    let statistics = &verdict.statistics;
    let row = |name: &str, value: String| vec![name.to_string(), value];
    let drain = if statistics.drain_completed {
        "yes"
    } else {
        "no"
    };
    Block::Table {
        header: vec!["statistic".into(), "value".into()],
        rows: vec![
            row("events", statistics.events.to_string()),
            row(
                "acknowledged sends",
                statistics.acknowledged_sends.to_string(),
            ),
            row(
                "indeterminate sends",
                statistics.indeterminate_sends.to_string(),
            ),
            row("failed sends", statistics.failed_sends.to_string()),
            row("polled records", statistics.polled_records.to_string()),
            row("drain completed", drain.to_string()),
        ],
    }
}

fn timeline_note(timeline: &Timeline) -> String {
    let mut note = if timeline.sampling_step > 1 {
        format!(
            "Sampled: the timeline draws 1 in {} client operations ({} of {}); \
             every fault is drawn.",
            timeline.sampling_step, timeline.client_operations_drawn, timeline.client_operations
        )
    } else {
        format!(
            "All {} client operations of {} clients are drawn.",
            timeline.client_operations, timeline.client_processes
        )
    };
    if timeline.client_processes > TIMELINE_CLIENT_LANES_MAX {
        note.push_str(&format!(
            " The {} clients share {TIMELINE_CLIENT_LANES_MAX} lanes: the client of rank r \
             (by number) is drawn in lane r modulo {TIMELINE_CLIENT_LANES_MAX}.",
            timeline.client_processes
        ));
    }
    note
}

fn anomaly_blocks(verdict: &Verdict, history: &History) -> Vec<Block> {
    if verdict.anomalies.is_empty() {
        return vec![Block::Paragraph("None found.".into())];
    }
    let invocations = invocations_by_completion(history);
    let mut blocks = Vec::new();
    for (kind, report) in &verdict.anomalies {
        let fatal = if report.fatal { "fatal" } else { "not fatal" };
        blocks.push(heading(3, &format!("{kind}: {} ({fatal})", report.count)));
        if (report.examples.len() as u64) < report.count {
            blocks.push(Block::Paragraph(format!(
                "The first {} of {} examples:",
                report.examples.len(),
                report.count
            )));
        }
        for (number, example) in report.examples.iter().enumerate() {
            blocks.push(Block::Paragraph(format!("{}. {example}", number + 1)));
            let lines: Vec<String> = involved_events(example, history)
                .into_iter()
                .map(|index| {
                    event_line(history, &invocations, index)
                        .unwrap_or_else(|| format!("#{index}: not in the history"))
                })
                .collect();
            if !lines.is_empty() {
                blocks.push(Block::Code(lines.join("\n")));
            }
        }
    }
    blocks
}

/// The history indexes an anomaly names, sorted, without repeats. A duplicate names only
/// positions, so its events are found by value.
fn involved_events(anomaly: &Anomaly, history: &History) -> Vec<u64> {
    let mut indexes = match anomaly {
        Anomaly::LostWrite { send, witness, .. } => vec![*send, *witness],
        Anomaly::Unseen { send, .. } => vec![*send],
        Anomaly::Duplicate { value, .. } => events_observing(history, value),
        Anomaly::InconsistentOffsets { observations, .. } => observations
            .iter()
            .map(|observation| observation.event)
            .collect(),
        Anomaly::NonmonotonicSend {
            event,
            previous_event,
            ..
        }
        | Anomaly::PollSkip {
            event,
            previous_event,
            ..
        }
        | Anomaly::NonmonotonicPoll {
            event,
            previous_event,
            ..
        }
        | Anomaly::CommittedOffsetBackwards {
            event,
            previous_event,
            ..
        } => vec![*previous_event, *event],
        Anomaly::CommittedOffsetPastEnd { event, .. } => vec![*event],
        Anomaly::CommittedOffsetLost { event, commit, .. } => vec![*commit, *event],
        Anomaly::StaleCommittedOffset {
            event,
            superseded_by,
            ..
        } => vec![*superseded_by, *event],
        Anomaly::FailedSendObserved { send, witness, .. } => vec![*send, *witness],
    };
    indexes.sort_unstable();
    indexes.dedup();
    indexes
}

/// Completion events that acknowledged or read `value`, at most
/// [`DUPLICATE_EVENTS_LISTED_MAX`].
fn events_observing(history: &History, value: &RecordValue) -> Vec<u64> {
    history
        .events()
        .iter()
        .filter(|event| event.event_type != skiff_checker::EventType::Invoke)
        .filter(|event| match &event.op {
            Op::Send {
                value: sent,
                offset: Some(_),
                ..
            } => sent == value,
            Op::Poll { records, .. } => records.iter().any(|record| record.value == *value),
            _ => false,
        })
        .map(|event| event.index)
        .take(DUPLICATE_EVENTS_LISTED_MAX)
        .collect()
}

fn event_line(history: &History, invocations: &BTreeMap<u64, u64>, index: u64) -> Option<String> {
    let event: &Event = history.events().get(usize::try_from(index).ok()?)?;
    let invoked_at = invocations.get(&index).map(|invoke_index| {
        let invocation = &history.events()[*invoke_index as usize];
        (*invoke_index, invocation.time_ns)
    });
    Some(describe_event(event, invoked_at))
}

fn fault_log(history: &History) -> Vec<Block> {
    let nemesis: Vec<_> = operations(history)
        .into_iter()
        .filter(|operation| operation.process == Process::Nemesis)
        .collect();
    if nemesis.is_empty() {
        return vec![Block::Paragraph("No faults were injected.".into())];
    }
    let rows: Vec<Vec<String>> = nemesis
        .iter()
        .take(FAULT_LOG_ROWS_MAX)
        .map(|operation| {
            let outcome = match operation.completion {
                Some((end_ns, event_type)) if end_ns != operation.start_ns => {
                    format!("{event_type:?} at {} s", seconds(end_ns)).to_lowercase()
                }
                Some((_, event_type)) => format!("{event_type:?}").to_lowercase(),
                None => "never completed".to_string(),
            };
            vec![
                seconds(operation.start_ns),
                format!("#{}", operation.invoke_index),
                describe_op(&operation.op),
                outcome,
            ]
        })
        .collect();
    let mut blocks = vec![Block::Table {
        header: vec![
            "time (s)".into(),
            "event".into(),
            "what".into(),
            "outcome".into(),
        ],
        rows,
    }];
    if nemesis.len() > FAULT_LOG_ROWS_MAX {
        blocks.push(Block::Paragraph(format!(
            "{} more nemesis operations are not listed.",
            nemesis.len() - FAULT_LOG_ROWS_MAX
        )));
    }
    blocks
}

fn settings_table(settings: &Value) -> Block {
    let mut flat = BTreeMap::new();
    flatten("", settings, &mut flat);
    Block::Table {
        header: vec!["setting".into(), "value".into()],
        rows: flat
            .into_iter()
            .map(|(key, value)| vec![key, value])
            .collect(),
    }
}

/// Flattens nested objects into dotted keys; arrays and scalars become compact JSON
/// (strings without their quotes). Keys are sorted by the map, whatever the input order.
pub(crate) fn flatten(prefix: &str, value: &Value, flat: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, nested) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, nested, flat);
            }
        }
        Value::String(text) => {
            flat.insert(prefix.to_string(), text.clone());
        }
        other => {
            let text = serde_json::to_string(other).expect("JSON values serialize");
            flat.insert(prefix.to_string(), text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten_nested_keys_with_dots_in_sorted_order() {
        let settings = serde_json::json!({
            "seed": 42,
            "world": {"brokers": 3, "faults": {"crash": true}, "names": ["a", "b"]},
            "commit": "abc",
        });
        let mut flat = BTreeMap::new();
        flatten("", &settings, &mut flat);
        let pairs: Vec<(&str, &str)> = flat
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("commit", "abc"),
                ("seed", "42"),
                ("world.brokers", "3"),
                ("world.faults.crash", "true"),
                ("world.names", "[\"a\",\"b\"]"),
            ]
        );
    }
}
