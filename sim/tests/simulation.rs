//! Simulation tests: they run only in the madsim build
//! (`RUSTFLAGS="--cfg madsim" cargo test -p skiff-sim`). Each run happens in its own
//! `skiff-sim` process (see `runner` for why), so the tests may run in parallel.
#![cfg(madsim)]

use std::path::{Path, PathBuf};

use skiff_sim::report::RunSummary;
use skiff_sim::runner::{self, LoadedScenario};

fn executable() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_skiff-sim"))
}

fn scenario(name: &str) -> LoadedScenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    LoadedScenario::load(&path).expect("the scenario loads")
}

fn run(seed: u64, scenario: Option<&LoadedScenario>) -> RunSummary {
    runner::run_in_child_process(&executable(), seed, scenario, None)
}

fn assert_passed(summary: &RunSummary) {
    assert!(
        summary.passed,
        "seed {} failed: {:#?}\nreproduce: {}",
        summary.seed, summary.failures, summary.reproduce
    );
}

/// The first simulation test of the broker-foundation issue: one broker node and one client
/// node; the broker loses power mid-stream (unsynced writes lost) and restarts; every record
/// acknowledged under the sync policy is still there, the drain completes, and the same seed
/// gives the same trace.
#[test]
fn a_broker_killed_mid_stream_keeps_every_acknowledged_record() {
    let kill = scenario("single-broker-kill-mid-stream.toml");
    let first = run(1, Some(&kill));
    assert_passed(&first);
    assert!(
        first.acknowledged_sends > 0,
        "the producer got acknowledgements"
    );
    assert!(
        first.faults_injected >= 4,
        "the broker was crashed and restarted twice"
    );
    let liveness = first.liveness.as_ref().expect("a liveness report");
    assert!(liveness.drain_complete);
    assert!(first.drained_records >= first.acknowledged_sends);
    let second = run(1, Some(&kill));
    assert_eq!(
        first.trace_hash, second.trace_hash,
        "the same seed gives the same trace"
    );
}

/// The first multi-broker simulation test (issue #4's proof in the simulator): three brokers;
/// the leader of `events-0` loses power twice in a row (the second time it is the leader
/// elected after the first crash), then the group coordinator is killed. Every record
/// acknowledged with acks=all survives the failovers, the replicas agree below their high
/// watermarks, a leader is back after the heal, the drain completes, and the same seed gives
/// the same trace.
#[test]
fn a_leader_crash_in_a_three_broker_cluster_keeps_every_acknowledged_record() {
    let leader_crash = scenario("three-brokers-leader-crash.toml");
    let first = run(1, Some(&leader_crash));
    assert_passed(&first);
    assert!(
        first.acknowledged_sends > 0,
        "the producers got acknowledgements"
    );
    let liveness = first.liveness.as_ref().expect("a liveness report");
    assert!(liveness.drain_complete);
    assert!(liveness.leaderless_after_heal.is_empty());
    assert!(first.drained_records >= first.acknowledged_sends);
    let second = run(1, Some(&leader_crash));
    assert_eq!(
        first.trace_hash, second.trace_hash,
        "the same seed gives the same trace"
    );
}

/// Seeds that found bugs in cluster mode, each fixed in the broker or the client:
/// - swarm seed 198: an offline follower replica asked to truncate panicked;
/// - swarm seeds 10, 76, 100: two appends of one term ending at the same index, delivered in
///   one turn, made the followers write the wrong payload and go offline;
/// - three-broker seeds 76, 164: NOT_LEADER_OR_FOLLOWER after an append counted as a
///   definite failure by the client;
/// - three-broker seed 867: appends carried entries the leader had not made durable, and a
///   failed sync on the leader then made its core commit past its durable index.
#[test]
fn cluster_regression_seeds_pass() {
    for seed in [198, 10, 76, 100] {
        assert_passed(&run(seed, None));
    }
    let three = scenario("three-brokers-swarm.toml");
    for seed in [76, 164, 867] {
        assert_passed(&run(seed, Some(&three)));
    }
}

/// A small sweep of drawn worlds passes.
#[test]
fn a_small_sweep_passes() {
    let summaries =
        runner::sweep(&executable(), 0..20, None, 2, None, &|_| {}).expect("valid worlds");
    assert!(
        summaries.iter().all(|summary| summary.passed),
        "{}",
        skiff_sim::report::sweep_table(&summaries)
    );
}

/// The same seed gives the same trace hash, in fresh processes.
#[test]
fn three_seeds_are_deterministic() {
    for seed in [3, 11, 42] {
        let first = run(seed, None);
        let second = run(seed, None);
        assert!(
            !first.trace_hash.is_empty(),
            "seed {seed} panicked: {:?}",
            first.failures
        );
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
    }
}

/// Known-bad worlds (which break the fault model on purpose) must be caught, each by the
/// failure kind it names.
#[test]
fn known_bad_worlds_are_detected() {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/known-bad");
    for entry in std::fs::read_dir(directory).expect("the directory exists") {
        let loaded = LoadedScenario::load(&entry.expect("an entry").path()).expect("loads");
        let expected = loaded.scenario.expected_failure.expect("names its failure");
        for seed in [1, 2] {
            let summary = run(seed, Some(&loaded));
            assert!(
                summary
                    .failures
                    .iter()
                    .any(|failure| failure.kind == expected),
                "{}: seed {seed} was not caught as {expected:?}: {:?}",
                loaded.label(),
                summary.failures
            );
        }
    }
}

/// Removes what differs between two runs of one seed: the commit the simulator was built from
/// and the wall time the run took.
fn without_build_and_wall_time(markdown: &str) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            skipping = line.contains("wall_seconds");
        }
        if skipping {
            continue;
        }
        if line.starts_with("| commit |") {
            kept.push("| commit | (the commit under test) |".to_string());
        } else {
            kept.push(line.to_string());
        }
    }
    kept.join("\n")
}

/// One fixed seed's human summary, pinned: any change in what the simulator does to this world,
/// or in how a run is reported, is a reviewed diff of this snapshot.
#[test]
fn the_summary_of_a_fixed_seed_is_pinned() {
    let root =
        std::env::temp_dir().join(format!("skiff-sim-pinned-summary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Run from the workspace root with a relative scenario path, so the reproduce command in
    // the summary reads the same in every checkout.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(executable())
        .current_dir(&workspace)
        .args([
            "run",
            "--seed",
            "1",
            "--scenario",
            "scenarios/single-broker-kill-mid-stream.toml",
        ])
        .arg("--report")
        .arg(&root)
        .output()
        .expect("the simulator runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run_directory = root.join("single-broker-kill-mid-stream-1");
    let rendered = skiff_reports::render(&run_directory).expect("the run directory renders");
    let markdown = without_build_and_wall_time(&rendered.markdown);
    let _ = std::fs::remove_dir_all(&root);
    insta::assert_snapshot!("kill_mid_stream_seed_1_summary", markdown);
}
