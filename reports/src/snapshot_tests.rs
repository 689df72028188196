//! Pinned reports of one small fixed history, and the properties every report keeps:
//! determinism, the run directory round trip, and sampling above the timeline limit.

use std::fs;
use std::path::PathBuf;

use serde_json::json;
use skiff_checker::{
    check, AnomalyKind, CheckOptions, CommittedOffset, History, Op, OperationId, Outcome,
    PolledRecord, Process, Verdict,
};

use crate::{
    render, render_from, render_index, render_timeline, HISTORY_FILE_NAME, HTML_FILE_NAME,
    SETTINGS_FILE_NAME, SUMMARY_FILE_NAME, TIMELINE_FILE_NAME, TIMELINE_OPERATIONS_MAX,
    VERDICT_FILE_NAME,
};

const TOPIC: &str = "orders";
const MILLISECOND_NS: u64 = 1_000_000;

fn send(partition: u32, value: u64, offset: Option<u64>) -> Op {
    Op::Send {
        topic: TOPIC.into(),
        partition: Some(partition),
        key: None,
        value: value.into(),
        idempotent: true,
        offset,
    }
}

fn poll(drain: bool, records: &[(u64, u64)]) -> Op {
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
    Op::Poll { drain, records }
}

/// Builds a history in time order, with times written in milliseconds.
struct Recorder {
    history: History,
}

impl Recorder {
    fn invoke(&mut self, process: u64, milliseconds: u64, op: Op) -> OperationId {
        self.history
            .invoke(process, milliseconds * MILLISECOND_NS, op)
    }

    fn complete(&mut self, id: OperationId, milliseconds: u64, outcome: Outcome) {
        self.history
            .complete(id, milliseconds * MILLISECOND_NS, outcome);
    }

    fn nemesis(&mut self, milliseconds: u64, op: Op) {
        self.history
            .record(Process::Nemesis, milliseconds * MILLISECOND_NS, op);
    }
}

/// Two producers, a consumer, a drain and a late producer on partition 1, with a crash
/// and restart of n1 and a partition fault. It has lost writes, a duplicate, poll skips,
/// a commit past the log end, an unseen write, a failed, an indeterminate and a
/// never-completed send.
fn fixed_history() -> History {
    let mut recorder = Recorder {
        history: History::new(),
    };
    let partition_fault = || Op::Fault {
        description: "partition n2 from n1, n3".into(),
    };
    let first = recorder.invoke(1, 0, send(0, 100, None));
    let second = recorder.invoke(2, 10, send(0, 200, None));
    recorder.complete(first, 12, Outcome::Ok(send(0, 100, Some(0))));
    let first = recorder.invoke(1, 20, send(0, 101, None));
    recorder.complete(second, 30, Outcome::Ok(send(0, 200, Some(2))));
    recorder.complete(first, 35, Outcome::Ok(send(0, 101, Some(1))));
    let slow = recorder.invoke(1, 40, send(0, 102, None));
    let read = recorder.invoke(3, 200, poll(false, &[]));
    recorder.complete(read, 210, Outcome::Ok(poll(false, &[(0, 100)])));
    recorder.nemesis(300, Op::Crash { node: "n1".into() });
    let failed = recorder.invoke(2, 350, send(0, 201, None));
    recorder.complete(failed, 500, Outcome::Fail(send(0, 201, None)));
    recorder.nemesis(600, partition_fault());
    recorder.complete(slow, 800, Outcome::Info(send(0, 102, None)));
    recorder.nemesis(900, Op::Restart { node: "n1".into() });
    let later = recorder.invoke(2, 950, send(0, 202, None));
    recorder.complete(later, 1000, Outcome::Ok(send(0, 202, Some(3))));
    let last = recorder.invoke(1, 1000, send(0, 103, None));
    recorder.complete(last, 1020, Outcome::Ok(send(0, 103, Some(4))));
    recorder.nemesis(
        1100,
        Op::Heal {
            description: "partition n2 from n1, n3".into(),
        },
    );
    let read = recorder.invoke(3, 1200, poll(false, &[]));
    let records = [(2, 200), (4, 103), (5, 200)];
    recorder.complete(read, 1250, Outcome::Ok(poll(false, &records)));
    let commit = Op::Commit {
        group: "audit".into(),
        offsets: vec![CommittedOffset {
            topic: TOPIC.into(),
            partition: 0,
            offset: 9,
        }],
    };
    let committing = recorder.invoke(3, 1300, commit.clone());
    recorder.complete(committing, 1310, Outcome::Ok(commit));
    let other_partition = recorder.invoke(5, 1400, send(1, 300, None));
    recorder.complete(other_partition, 1450, Outcome::Ok(send(1, 300, Some(0))));
    let drain = recorder.invoke(4, 1500, poll(true, &[]));
    recorder.invoke(2, 1520, send(0, 203, None));
    let drained = [(0, 100), (2, 200), (4, 103), (5, 200)];
    recorder.complete(drain, 1600, Outcome::Ok(poll(true, &drained)));
    recorder.history
}

fn fixed_settings() -> serde_json::Value {
    json!({
        "seed": 42,
        "commit": "014c835",
        "reproduce": "cargo run -p skiff-sim -- --seed 42",
        "world": {
            "brokers": 3,
            "faults": {"crash": 0.2, "partition": 0.1, "slow_disk": 0.0},
            "workload": {"producers": 3, "consumers": 2, "topics": ["orders"]},
        },
    })
}

fn fixed_verdict(history: &History) -> Verdict {
    check(history, &CheckOptions::default())
}

#[test]
fn the_fixed_history_has_the_anomalies_the_report_shows() {
    let history = fixed_history();
    let verdict = fixed_verdict(&history);
    assert!(!verdict.valid);
    for kind in [
        AnomalyKind::LostWrite,
        AnomalyKind::Unseen,
        AnomalyKind::Duplicate,
        AnomalyKind::PollSkip,
        AnomalyKind::CommittedOffsetPastEnd,
    ] {
        assert!(
            verdict.count(kind) > 0,
            "{kind} missing: {}",
            verdict.summary()
        );
    }
}

#[test]
fn markdown_of_a_fixed_history() {
    let history = fixed_history();
    let report = render_from(&fixed_settings(), &history, &fixed_verdict(&history));
    insta::assert_snapshot!(report.markdown);
}

#[test]
fn svg_of_a_fixed_history() {
    let history = fixed_history();
    let report = render_from(&fixed_settings(), &history, &fixed_verdict(&history));
    insta::assert_snapshot!(report.svg);
}

#[test]
fn rendering_is_deterministic() {
    let history = fixed_history();
    let verdict = fixed_verdict(&history);
    let first = render_from(&fixed_settings(), &history, &verdict);
    // The same inputs read back from their files, with settings keys in another order.
    let history_read_back =
        History::from_json_lines(&history.to_json_lines()).expect("the history reads back");
    let verdict_json = serde_json::to_string(&verdict).expect("verdicts serialize");
    let verdict_read_back: Verdict =
        serde_json::from_str(&verdict_json).expect("verdicts deserialize");
    let settings_reordered: serde_json::Value = serde_json::from_str(
        r#"{"world": {"workload": {"topics": ["orders"], "consumers": 2, "producers": 3},
            "faults": {"slow_disk": 0.0, "partition": 0.1, "crash": 0.2}, "brokers": 3},
            "reproduce": "cargo run -p skiff-sim -- --seed 42", "commit": "014c835", "seed": 42}"#,
    )
    .expect("valid JSON");
    let second = render_from(&settings_reordered, &history_read_back, &verdict_read_back);
    assert_eq!(first, second);
}

/// A fresh directory under the system's temporary directory, unique to this test.
fn temporary_directory(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("skiff-reports-{name}-{}", std::process::id()));
    if directory.exists() {
        fs::remove_dir_all(&directory).expect("the old test directory is removable");
    }
    fs::create_dir_all(&directory).expect("the test directory is creatable");
    directory
}

fn write_run_directory(directory: &std::path::Path) {
    let history = fixed_history();
    let verdict = fixed_verdict(&history);
    let mut verdict_json = serde_json::to_value(&verdict).expect("verdicts serialize");
    verdict_json["liveness"] = json!({"progress_after_heal_ms": 850, "ok": true});
    let files = [
        (SETTINGS_FILE_NAME, fixed_settings().to_string()),
        (HISTORY_FILE_NAME, history.to_json_lines()),
        (VERDICT_FILE_NAME, verdict_json.to_string()),
        ("timing.json", json!({"wall_clock_ms": 1234}).to_string()),
    ];
    fs::create_dir_all(directory).expect("the run directory is creatable");
    for (name, text) in files {
        fs::write(directory.join(name), text).expect("the run file is writable");
    }
}

#[test]
fn a_run_directory_renders_and_reads_back() {
    let root = temporary_directory("round-trip");
    let run = root.join("seed-42");
    write_run_directory(&run);
    let report = render(&run).expect("the run directory renders");

    let summary = fs::read_to_string(run.join(SUMMARY_FILE_NAME)).expect("summary.md exists");
    assert_eq!(summary, report.markdown);
    let svg = fs::read_to_string(run.join(TIMELINE_FILE_NAME)).expect("timeline.svg exists");
    assert_eq!(svg, report.svg);
    let html = fs::read_to_string(run.join(HTML_FILE_NAME)).expect("index.html exists");
    assert_eq!(html, report.html);
    assert!(html.contains("<svg") && !html.contains("<script"));

    // The extra fields and files are shown raw, and the in-memory parts match render_from.
    assert!(summary.contains("## verdict.json: liveness"), "{summary}");
    assert!(summary.contains("\"progress_after_heal_ms\": 850"));
    assert!(summary.contains("## timing.json"));
    let history = fixed_history();
    let in_memory = render_from(&fixed_settings(), &history, &fixed_verdict(&history));
    assert_eq!(report.svg, in_memory.svg);
    assert!(summary.starts_with(&in_memory.markdown));

    // An index over a valid run, this one and a broken one lists all three.
    let broken = root.join("broken");
    fs::create_dir_all(&broken).expect("creatable");
    fs::write(broken.join(VERDICT_FILE_NAME), "{not json").expect("writable");
    let runs = render_index(&root).expect("the index renders");
    let paths: Vec<&str> = runs.iter().map(|run| run.relative_path.as_str()).collect();
    assert_eq!(paths, vec!["broken", "seed-42"]);
    assert!(runs[0].outcome.is_err());
    let index = fs::read_to_string(root.join("index.md")).expect("index.md exists");
    assert!(
        index.contains("[seed-42](seed-42/summary.md) | INVALID | 42 |"),
        "{index}"
    );
    assert!(index.contains("| ERROR |"), "{index}");
    let index_html = fs::read_to_string(root.join(HTML_FILE_NAME)).expect("index.html exists");
    assert!(index_html.contains("<a href=\"seed-42/index.html\">seed-42</a>"));
    fs::remove_dir_all(&root).expect("the test directory is removable");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let root = temporary_directory("missing");
    let error = render(&root).expect_err("an empty directory does not render");
    assert!(error.to_string().contains(SETTINGS_FILE_NAME), "{error}");
    fs::remove_dir_all(&root).expect("the test directory is removable");
}

#[test]
fn the_timeline_samples_above_its_limit() {
    let operations = TIMELINE_OPERATIONS_MAX + TIMELINE_OPERATIONS_MAX / 2;
    let mut history = History::new();
    for number in 0..operations as u64 {
        let process = number % 4;
        let time_ns = number * MILLISECOND_NS;
        let id = history.invoke(process, time_ns, send(0, number, None));
        let outcome = Outcome::Ok(send(0, number, Some(number)));
        history.complete(id, time_ns + MILLISECOND_NS / 2, outcome);
    }
    history.record(Process::Nemesis, 0, Op::Crash { node: "n1".into() });
    let timeline = render_timeline(&history);
    assert_eq!(timeline.client_operations, operations);
    assert_eq!(timeline.sampling_step, 2);
    assert_eq!(timeline.client_operations_drawn, operations.div_ceil(2));
    assert!(timeline.client_operations_drawn <= TIMELINE_OPERATIONS_MAX);
    let bars = timeline.svg.matches(" send ok</title>").count();
    assert_eq!(bars, timeline.client_operations_drawn);
    assert!(timeline.svg.contains("sampled: 1 in 2, 3750 drawn"));

    let report = render_from(
        &json!({}),
        &history,
        &check(&history, &CheckOptions::default()),
    );
    assert!(report
        .markdown
        .contains("Sampled: the timeline draws 1 in 2 client operations (3750 of 7500)"));

    // At the limit exactly, nothing is sampled.
    let mut small = History::new();
    for number in 0..TIMELINE_OPERATIONS_MAX as u64 {
        small.record(
            1,
            number,
            Op::Poll {
                drain: false,
                records: vec![],
            },
        );
    }
    let timeline = render_timeline(&small);
    assert_eq!(timeline.sampling_step, 1);
    assert_eq!(timeline.client_operations_drawn, TIMELINE_OPERATIONS_MAX);
}
