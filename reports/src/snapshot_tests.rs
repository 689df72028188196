//! Pinned reports of one small fixed history, and the properties every report keeps:
//! determinism, the run directory round trip, and sampling above the timeline limit.

use std::fs;
use std::path::PathBuf;

use serde_json::json;
use skiff_checker::{check, AnomalyKind, CheckOptions, History, Op, Outcome, Process, Verdict};

use crate::example::{example_history, example_settings, send, write_example_run, MILLISECOND_NS};
use crate::{
    render, render_from, render_index, render_timeline, HTML_FILE_NAME, SETTINGS_FILE_NAME,
    SUMMARY_FILE_NAME, TIMELINE_FILE_NAME, TIMELINE_OPERATIONS_MAX, VERDICT_FILE_NAME,
};

fn fixed_verdict(history: &History) -> Verdict {
    check(history, &CheckOptions::default())
}

#[test]
fn the_fixed_history_has_the_anomalies_the_report_shows() {
    let history = example_history();
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
    let history = example_history();
    let report = render_from(&example_settings(), &history, &fixed_verdict(&history));
    insta::assert_snapshot!(report.markdown);
}

#[test]
fn svg_of_a_fixed_history() {
    let history = example_history();
    let report = render_from(&example_settings(), &history, &fixed_verdict(&history));
    insta::assert_snapshot!(report.svg);
}

#[test]
fn rendering_is_deterministic() {
    let history = example_history();
    let verdict = fixed_verdict(&history);
    let first = render_from(&example_settings(), &history, &verdict);
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

/// The example run, plus a `liveness` field in its verdict and an extra JSON file.
fn write_run_directory(directory: &std::path::Path) {
    write_example_run(directory).expect("the example run is writable");
    let verdict_path = directory.join(VERDICT_FILE_NAME);
    let verdict_text = fs::read_to_string(&verdict_path).expect("verdict.json exists");
    let mut verdict: serde_json::Value = serde_json::from_str(&verdict_text).expect("JSON");
    verdict["liveness"] = json!({"progress_after_heal_ms": 850, "ok": true});
    fs::write(&verdict_path, verdict.to_string()).expect("verdict.json is writable");
    let timing = json!({"wall_clock_ms": 1234}).to_string();
    fs::write(directory.join("timing.json"), timing).expect("timing.json is writable");
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
    assert!(html.contains("<h1 class=\"invalid\">INVALID: lost-write"));

    // The extra fields and files are shown raw, and the in-memory parts match render_from.
    assert!(summary.contains("## verdict.json: liveness"), "{summary}");
    assert!(summary.contains("\"progress_after_heal_ms\": 850"));
    assert!(summary.contains("## timing.json"));
    let history = example_history();
    let in_memory = render_from(&example_settings(), &history, &fixed_verdict(&history));
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

#[test]
fn an_empty_history_renders() {
    let history = History::new();
    let verdict = check(&history, &CheckOptions::default());
    let report = render_from(&json!({"seed": 1}), &history, &verdict);
    assert!(
        report.markdown.starts_with("# VALID\n"),
        "{}",
        report.markdown
    );
    assert!(report.markdown.contains("No faults were injected."));
    assert!(report.svg.ends_with("</svg>\n"));
}

#[test]
fn many_clients_share_lanes_and_many_faults_are_bounded() {
    let mut history = History::new();
    let clients = crate::TIMELINE_CLIENT_LANES_MAX as u64 * 2;
    for client in 0..clients {
        history.record(
            client,
            client,
            Op::Poll {
                drain: false,
                records: vec![],
            },
        );
    }
    let faults = crate::TIMELINE_NEMESIS_OPERATIONS_MAX as u64 + 10;
    for fault in 0..faults {
        let description = format!("fault {fault}");
        history.record(Process::Nemesis, clients + fault, Op::Fault { description });
    }
    let timeline = render_timeline(&history);
    assert_eq!(timeline.client_processes, clients as usize);
    let lane_labels = timeline
        .svg
        .matches("text-anchor=\"end\">shared lane")
        .count();
    assert_eq!(lane_labels, crate::TIMELINE_CLIENT_LANES_MAX);
    let report = render_from(
        &json!({}),
        &history,
        &check(&history, &CheckOptions::default()),
    );
    assert!(report.markdown.contains("The 128 clients share 64 lanes"));
    let bands = timeline.svg.matches("(never healed)</title>").count();
    assert_eq!(bands, crate::TIMELINE_NEMESIS_OPERATIONS_MAX);
}
