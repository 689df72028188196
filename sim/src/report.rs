//! What a run produces: its outcome, its trace hash, and the report directory.
//!
//! # The report directory
//!
//! `skiff-sim run --seed S --report DIR` writes `DIR/<seed>/` (for a scenario,
//! `DIR/<scenario>-<seed>/`) holding:
//!
//! | file            | content                                                          |
//! |-----------------|------------------------------------------------------------------|
//! | `settings.json` | `seed`, `commit`, `reproduce`, `scenario` and the `world` that ran |
//! | `history.jsonl` | the Jepsen-style history, one event per line (skiff-checker format) |
//! | `faults.jsonl`  | the nemesis' fault log, one [`FaultLogEntry`] per line             |
//! | `verdict.json`  | the checker's `Verdict` (`valid`, `statistics`, `anomalies`) plus the run's own fields: `passed`, `failures`, `violations`, `liveness`, `trace_hash`, speed, disk fault counts |
//!
//! Everything is plain JSON, and `verdict.json` reads as a `skiff_checker::Verdict`, so
//! `skiff-report render DIR` (the `reports` crate) turns a run directory into a page with a
//! timeline; the extra fields show up there raw.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skiff_checker::{History, Verdict};

use crate::invariants::Violation;
use crate::world::World;

/// Why a run failed. Safety and liveness failures are different kinds: a liveness failure
/// says the system got stuck after healing, not that it did something wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The history checker found a fatal anomaly.
    Safety,
    /// A simulator-side invariant broke (see `invariants.rs`).
    Invariant,
    /// After healing, a producer made no progress or the drain did not complete in time.
    Liveness,
    /// Something panicked (the broker, a client, the simulator).
    Panic,
}

impl FailureKind {
    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Safety => "safety",
            FailureKind::Invariant => "invariant",
            FailureKind::Liveness => "liveness",
            FailureKind::Panic => "panic",
        }
    }
}

/// One reason a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Its kind.
    pub kind: FailureKind,
    /// What happened.
    pub description: String,
}

/// One line of the nemesis' fault log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultLogEntry {
    /// Simulated milliseconds since the run started.
    pub time_ms: u64,
    /// What the nemesis did.
    pub action: String,
}

/// What the liveness phase observed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessReport {
    /// Simulated milliseconds at which everything was healed.
    pub healed_at_ms: u64,
    /// Simulated milliseconds by which every producer must have had an acknowledgement.
    pub progress_deadline_ms: u64,
    /// Per producer, the simulated milliseconds of its first acknowledgement after healing.
    pub first_acknowledgement_after_heal_ms: Vec<Option<u64>>,
    /// Whether the final drain read every partition to its end.
    pub drain_complete: bool,
    /// Records the drain read.
    pub drained_records: u64,
    /// Per partition, the end offset the drain had to reach and the position it reached.
    pub drain_progress: Vec<DrainProgress>,
    /// In a cluster: the partitions that had no leader within
    /// [`crate::invariants::LEADER_AFTER_HEAL_MS_MAX`] of the heal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaderless_after_heal: Vec<String>,
}

/// How far the drain got on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainProgress {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The end offset to reach (`None`: it could not be learnt).
    pub end_offset: Option<i64>,
    /// The position reached.
    pub position: i64,
}

/// The complete result of one run, before summarizing.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The world that ran.
    pub world: World,
    /// The scenario's name, if one was applied.
    pub scenario: Option<String>,
    /// Everything the clients and the nemesis did.
    pub history: History,
    /// The nemesis' log.
    pub fault_log: Vec<FaultLogEntry>,
    /// The history checker's verdict.
    pub verdict: Verdict,
    /// Simulator-side invariant violations (the first [`crate::invariants::VIOLATIONS_KEPT_MAX`]).
    pub violations: Vec<Violation>,
    /// How many invariant observations were checked.
    pub invariant_observations: u64,
    /// The liveness phase.
    pub liveness: LivenessReport,
    /// Disk fault counts per broker, by name.
    pub disk_fault_counts: Vec<std::collections::BTreeMap<String, u64>>,
    /// Simulated time the run took, in seconds.
    pub simulated_seconds: f64,
}

/// The summary of one run: what `verdict.json` holds and what sweeps aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The seed.
    pub seed: u64,
    /// The scenario's name, if any.
    pub scenario: Option<String>,
    /// The drawn profile.
    pub profile: String,
    /// Whether the run passed.
    pub passed: bool,
    /// Every failure.
    pub failures: Vec<Failure>,
    /// The trace hash (hex): the same seed and code give the same hash.
    pub trace_hash: String,
    /// Events in the history.
    pub events: u64,
    /// Acknowledged sends.
    pub acknowledged_sends: u64,
    /// Records the final drain read.
    pub drained_records: u64,
    /// Faults the nemesis injected (fault log lines).
    pub faults_injected: u64,
    /// Simulated time, in seconds.
    pub simulated_seconds: f64,
    /// Wall-clock time, in seconds.
    pub wall_seconds: f64,
    /// The command that reproduces the run.
    pub reproduce: String,
    /// The checker's verdict (absent after a panic).
    pub verdict: Option<Verdict>,
    /// Simulator-side invariant violations.
    pub violations: Vec<Violation>,
    /// The liveness phase.
    pub liveness: Option<LivenessReport>,
    /// Disk fault counts per broker.
    pub disk_fault_counts: Vec<std::collections::BTreeMap<String, u64>>,
}

impl RunSummary {
    /// Simulated seconds per wall second.
    pub fn speed(&self) -> f64 {
        if self.wall_seconds > 0.0 {
            self.simulated_seconds / self.wall_seconds
        } else {
            0.0
        }
    }

    /// Summarizes a finished run.
    pub fn from_result(result: &RunResult, wall_seconds: f64) -> RunSummary {
        let mut failures = Vec::new();
        if !result.verdict.valid {
            failures.push(Failure {
                kind: FailureKind::Safety,
                description: result.verdict.summary(),
            });
        }
        for violation in &result.violations {
            failures.push(Failure {
                kind: FailureKind::Invariant,
                description: format!(
                    "at {} ms, broker {}: {}",
                    violation.time_ms, violation.broker, violation.description
                ),
            });
        }
        failures.extend(liveness_failures(&result.liveness));
        let acknowledged_sends = result.verdict.statistics.acknowledged_sends;
        RunSummary {
            seed: result.world.seed,
            scenario: result.scenario.clone(),
            profile: profile_name(&result.world),
            passed: failures.is_empty(),
            failures,
            trace_hash: trace_hash_hex(&result.history, &result.fault_log),
            events: result.history.events().len() as u64,
            acknowledged_sends,
            drained_records: result.liveness.drained_records,
            faults_injected: result.fault_log.len() as u64,
            simulated_seconds: result.simulated_seconds,
            wall_seconds,
            reproduce: reproduce_command(result.world.seed, result.scenario.as_deref()),
            verdict: Some(result.verdict.clone()),
            violations: result.violations.clone(),
            liveness: Some(result.liveness.clone()),
            disk_fault_counts: result.disk_fault_counts.clone(),
        }
    }

    /// The summary of a run that panicked.
    pub fn from_panic(
        world: &World,
        scenario: Option<&str>,
        message: String,
        wall_seconds: f64,
    ) -> RunSummary {
        RunSummary {
            seed: world.seed,
            scenario: scenario.map(str::to_string),
            profile: profile_name(world),
            passed: false,
            failures: vec![Failure {
                kind: FailureKind::Panic,
                description: message,
            }],
            trace_hash: String::new(),
            events: 0,
            acknowledged_sends: 0,
            drained_records: 0,
            faults_injected: 0,
            simulated_seconds: 0.0,
            wall_seconds,
            reproduce: reproduce_command(world.seed, scenario),
            verdict: None,
            violations: Vec::new(),
            liveness: None,
            disk_fault_counts: Vec::new(),
        }
    }

    /// The failure kinds, comma-separated, or "pass".
    pub fn status(&self) -> String {
        if self.passed {
            return "pass".to_string();
        }
        let mut kinds: Vec<&str> = self
            .failures
            .iter()
            .map(|failure| failure.kind.name())
            .collect();
        kinds.dedup();
        kinds.join(",")
    }
}

fn profile_name(world: &World) -> String {
    serde_json::to_value(world.profile)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn liveness_failures(liveness: &LivenessReport) -> Vec<Failure> {
    let mut failures = Vec::new();
    for (producer, first) in liveness
        .first_acknowledgement_after_heal_ms
        .iter()
        .enumerate()
    {
        if first.is_none_or(|first| first > liveness.progress_deadline_ms) {
            failures.push(Failure {
                kind: FailureKind::Liveness,
                description: format!(
                    "producer {producer} got no acknowledgement between the heal at {} ms and \
                     {} ms",
                    liveness.healed_at_ms, liveness.progress_deadline_ms
                ),
            });
        }
    }
    for problem in &liveness.leaderless_after_heal {
        failures.push(Failure {
            kind: FailureKind::Liveness,
            description: problem.clone(),
        });
    }
    if !liveness.drain_complete {
        let stuck: Vec<String> = liveness
            .drain_progress
            .iter()
            .filter(|progress| {
                progress
                    .end_offset
                    .is_none_or(|end| progress.position < end)
            })
            .map(|progress| {
                format!(
                    "{}-{} at {} of {:?}",
                    progress.topic, progress.partition, progress.position, progress.end_offset
                )
            })
            .collect();
        failures.push(Failure {
            kind: FailureKind::Liveness,
            description: format!("the final drain did not complete: {}", stuck.join(", ")),
        });
    }
    failures
}

/// The command that reproduces a run.
pub fn reproduce_command(seed: u64, scenario: Option<&str>) -> String {
    let mut command =
        format!("RUSTFLAGS=\"--cfg madsim\" cargo run -p skiff-sim -- run --seed {seed}");
    if let Some(scenario) = scenario {
        let _ = write!(command, " --scenario {scenario}");
    }
    command
}

/// FNV-1a, 64 bits: tiny, stable across Rust versions and platforms, good enough to tell two
/// traces apart.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The trace hash: the full history as JSON lines, then the fault log.
pub fn trace_hash(history: &History, fault_log: &[FaultLogEntry]) -> u64 {
    let mut text = history.to_json_lines();
    for entry in fault_log {
        text.push_str(&serde_json::to_string(entry).expect("log entries serialize"));
        text.push('\n');
    }
    fnv1a_64(text.as_bytes())
}

/// The trace hash in hex.
pub fn trace_hash_hex(history: &History, fault_log: &[FaultLogEntry]) -> String {
    format!("{:016x}", trace_hash(history, fault_log))
}

/// Where a run's report goes under `root`.
pub fn run_directory(root: &Path, seed: u64, scenario: Option<&str>) -> PathBuf {
    match scenario {
        Some(scenario) => root.join(format!("{scenario}-{seed}")),
        None => root.join(seed.to_string()),
    }
}

/// Writes `settings.json`, `history.jsonl`, `faults.jsonl` and `verdict.json`.
pub fn write_report(
    directory: &Path,
    result: &RunResult,
    summary: &RunSummary,
    commit: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(directory)?;
    let settings = serde_json::json!({
        "seed": result.world.seed,
        "commit": commit,
        "reproduce": summary.reproduce,
        "scenario": result.scenario,
        "world": result.world,
    });
    let pretty = |value: &serde_json::Value| {
        serde_json::to_string_pretty(value).expect("values serialize") + "\n"
    };
    std::fs::write(directory.join("settings.json"), pretty(&settings))?;
    std::fs::write(
        directory.join("history.jsonl"),
        result.history.to_json_lines(),
    )?;
    let mut faults = String::new();
    for entry in &result.fault_log {
        faults.push_str(&serde_json::to_string(entry).expect("log entries serialize"));
        faults.push('\n');
    }
    std::fs::write(directory.join("faults.jsonl"), faults)?;
    std::fs::write(
        directory.join("verdict.json"),
        pretty(&verdict_document(result, summary)),
    )?;
    Ok(())
}

/// `verdict.json`: the checker's verdict, with the summary's other fields beside it.
fn verdict_document(result: &RunResult, summary: &RunSummary) -> serde_json::Value {
    let mut document = serde_json::to_value(&result.verdict).expect("verdicts serialize");
    let serde_json::Value::Object(fields) =
        serde_json::to_value(summary).expect("summaries serialize")
    else {
        unreachable!("a summary is an object")
    };
    let object = document.as_object_mut().expect("a verdict is an object");
    for (key, value) in fields {
        if key != "verdict" {
            object.insert(key, value);
        }
    }
    document
}

/// The sweep's summary table, one line per seed, failing seeds listed at the end.
pub fn sweep_table(summaries: &[RunSummary]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:>8}  {:<24}  {:<18}  {:>7}  {:>6}  {:>7}  {:>8}  {:>8}  trace",
        "seed", "profile", "status", "events", "acked", "faults", "sim s", "speed"
    );
    for summary in summaries {
        let _ = writeln!(
            table,
            "{:>8}  {:<24}  {:<18}  {:>7}  {:>6}  {:>7}  {:>8.1}  {:>7.0}x  {}",
            summary.seed,
            summary.profile,
            summary.status(),
            summary.events,
            summary.acknowledged_sends,
            summary.faults_injected,
            summary.simulated_seconds,
            summary.speed(),
            summary.trace_hash
        );
    }
    let simulated: f64 = summaries
        .iter()
        .map(|summary| summary.simulated_seconds)
        .sum();
    let wall: f64 = summaries.iter().map(|summary| summary.wall_seconds).sum();
    let failing: Vec<&RunSummary> = summaries.iter().filter(|summary| !summary.passed).collect();
    let _ = writeln!(
        table,
        "\n{} runs, {} passed, {} failed; {simulated:.1} simulated s in {wall:.2} wall s of runs \
         ({:.0}x)",
        summaries.len(),
        summaries.len() - failing.len(),
        failing.len(),
        if wall > 0.0 { simulated / wall } else { 0.0 }
    );
    for summary in failing {
        let _ = writeln!(table, "FAILED seed {}: {}", summary.seed, summary.status());
        for failure in &summary.failures {
            let first_line = failure.description.lines().next().unwrap_or_default();
            let _ = writeln!(table, "  {}: {first_line}", failure.kind.name());
        }
        let _ = writeln!(table, "  reproduce: {}", summary.reproduce);
    }
    table
}

/// A JUnit XML document with one test case per seed.
pub fn junit_xml(summaries: &[RunSummary]) -> String {
    let failures = summaries.iter().filter(|summary| !summary.passed).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"skiff-sim\" tests=\"{}\" failures=\"{failures}\">",
        summaries.len()
    );
    for summary in summaries {
        let name = match &summary.scenario {
            Some(scenario) => format!("{scenario} seed {}", summary.seed),
            None => format!("seed {}", summary.seed),
        };
        let _ = write!(
            xml,
            "  <testcase classname=\"skiff-sim.{}\" name=\"{}\" time=\"{:.3}\"",
            escape_xml(&summary.profile),
            escape_xml(&name),
            summary.wall_seconds
        );
        if summary.passed {
            xml.push_str("/>\n");
            continue;
        }
        let mut message = String::new();
        for failure in &summary.failures {
            let _ = writeln!(message, "{}: {}", failure.kind.name(), failure.description);
        }
        let _ = writeln!(message, "reproduce: {}", summary.reproduce);
        let _ = writeln!(
            xml,
            ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
            escape_xml(&summary.status()),
            escape_xml(&message)
        );
    }
    xml.push_str("</testsuite>\n");
    xml
}

fn escape_xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_reproduce_command_names_the_scenario() {
        assert_eq!(
            reproduce_command(4, Some("scenarios/no-faults.toml")),
            "RUSTFLAGS=\"--cfg madsim\" cargo run -p skiff-sim -- run --seed 4 --scenario \
             scenarios/no-faults.toml"
        );
    }

    #[test]
    fn junit_escapes_failures() {
        let world = World::draw(1);
        let summary = RunSummary::from_panic(&world, None, "a < b".to_string(), 0.5);
        let xml = junit_xml(&[summary]);
        assert!(xml.contains("a &lt; b"));
        assert!(xml.contains("failures=\"1\""));
    }
}
