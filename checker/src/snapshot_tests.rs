//! The JSON verdict and the summary of one small fixed history with a few anomalies,
//! pinned so that report changes are reviewed.

use crate::history::EventType;
use crate::test_support::Script;
use crate::{check, CheckOptions};

/// A history with lost writes, an unseen write after the drain (partition 1 is never
/// polled), a duplicate, poll skips, a commit past the log end, an indeterminate send
/// that is fine either way, and a nemesis crash.
fn fixed_history() -> Script {
    let mut script = Script::default();
    script.send(1, 100, 0);
    script.send(1, 101, 1);
    script.send_with(1, 0, 102, true, EventType::Info, None);
    script.send(1, 103, 2);
    script.crash();
    script.send(2, 200, 3);
    script.send(2, 201, 4);
    script.send_with(2, 1, 300, false, EventType::Ok, Some(0));
    script.poll(3, &[(0, 100)]);
    script.poll(3, &[(2, 103), (3, 200), (5, 200)]);
    script.commit(3, 7);
    script.drain(4, &[(0, 100), (2, 103), (3, 200), (5, 200)]);
    script
}

#[test]
fn verdict_json_of_a_fixed_history() {
    let script = fixed_history();
    let verdict = check(&script.history, &CheckOptions::default());
    assert!(!verdict.valid);
    insta::assert_json_snapshot!(verdict);
}

#[test]
fn summary_of_a_fixed_history() {
    let script = fixed_history();
    let verdict = check(&script.history, &CheckOptions::default());
    insta::assert_snapshot!(verdict.summary());
}

#[test]
fn verdict_survives_a_json_lines_round_trip_of_its_history() {
    let script = fixed_history();
    let text = script.history.to_json_lines();
    let history = crate::History::from_json_lines(&text).expect("the history reads back");
    let options = CheckOptions::default();
    assert_eq!(check(&history, &options), check(&script.history, &options));
    let verdict = check(&history, &options);
    let json = serde_json::to_string(&verdict).expect("verdicts serialize");
    let read_back: crate::Verdict = serde_json::from_str(&json).expect("verdicts deserialize");
    assert_eq!(read_back, verdict);
}
