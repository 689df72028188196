//! A small example run, used by the snapshot tests and by `skiff-report example DIR`, so
//! that anyone can see what a report looks like without running the simulator.

use std::path::Path;

use serde_json::json;
use skiff_checker::{
    check, CheckOptions, CommittedOffset, History, Op, OperationId, Outcome, PolledRecord, Process,
};

use crate::run_directory::{ReportError, HISTORY_FILE_NAME, SETTINGS_FILE_NAME, VERDICT_FILE_NAME};

/// The topic every example operation uses.
const TOPIC: &str = "orders";
/// Nanoseconds in a millisecond.
pub const MILLISECOND_NS: u64 = 1_000_000;

/// A send of `value` to partition `partition` of the example topic.
pub(crate) fn send(partition: u32, value: u64, offset: Option<u64>) -> Op {
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

/// A small history: two producers, a consumer, a drain and a late producer on partition 1, with a crash
/// and restart of n1 and a partition fault. It has lost writes, a duplicate, poll skips,
/// a commit past the log end, an unseen write, a failed, an indeterminate and a
/// never-completed send.
pub fn example_history() -> History {
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

/// Settings like those the simulator draws, with a reproduce command.
pub fn example_settings() -> serde_json::Value {
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

/// Writes the example run's `settings.json`, `history.jsonl` and `verdict.json` into
/// `directory` (created if missing), ready for [`crate::render`].
pub fn write_example_run(directory: &Path) -> Result<(), ReportError> {
    let history = example_history();
    let verdict = check(&history, &CheckOptions::default());
    let verdict = serde_json::to_string_pretty(&verdict).expect("verdicts serialize");
    let settings =
        serde_json::to_string_pretty(&example_settings()).expect("JSON values serialize");
    std::fs::create_dir_all(directory).map_err(|source| ReportError::Io {
        path: directory.to_path_buf(),
        source,
    })?;
    let files = [
        (SETTINGS_FILE_NAME, settings),
        (HISTORY_FILE_NAME, history.to_json_lines()),
        (VERDICT_FILE_NAME, verdict),
    ];
    for (name, text) in files {
        let path = directory.join(name);
        std::fs::write(&path, text).map_err(|source| ReportError::Io { path, source })?;
    }
    Ok(())
}
