//! Running seeds: one fresh OS thread and one fresh madsim runtime per run, one fresh
//! process per seed for sweeps and determinism checks.
//!
//! A run gets its own thread because madsim seeds the thread's `HashMap` keys when the
//! runtime is built, and thread-local caches must not leak from one seed into the next.
//! A thread is not enough, though:
//! tokio's `select!` picks its first branch with a thread-local generator whose seed mixes
//! in a *process-wide* counter (`tokio::loom::std::rand::seed`), so before every `select!`
//! of the broker was made `biased;` (main's 8b3bdc8) the second run in a process saw other
//! branch orders than the first. Runs are now reproducible within one process too (`bench`
//! runs several), but sweeps, determinism checks and the simulation tests still run each
//! seed in its own process ([`run_in_child_process`], `skiff-sim run --seed S
//! --summary-json`), so that no process-wide state, today's or a future one, can leak.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::report::RunSummary;
use crate::scenario::{Scenario, ScenarioError};
use crate::world::World;

/// The prefix of the line on which `run --summary-json` prints its summary.
pub const SUMMARY_LINE_PREFIX: &str = "skiff-sim-summary: ";

/// The stack of a run's thread: the broker, the clients and madsim's executor run on it.
pub const RUN_THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;
/// The most worker threads a sweep uses.
pub const SWEEP_JOBS_MAX: usize = 64;

/// A scenario with the path it was read from (the path goes into reproduce commands).
#[derive(Debug, Clone)]
pub struct LoadedScenario {
    /// The file, as given on the command line.
    pub path: PathBuf,
    /// Its contents.
    pub scenario: Scenario,
}

impl LoadedScenario {
    /// Reads a scenario file.
    pub fn load(path: &Path) -> Result<LoadedScenario, ScenarioError> {
        Ok(LoadedScenario {
            path: path.to_path_buf(),
            scenario: Scenario::load(path)?,
        })
    }

    /// The label used in reports and reproduce commands: the path as given.
    pub fn label(&self) -> String {
        self.path.display().to_string()
    }
}

/// The world of `seed`, with the scenario applied.
pub fn world_for(seed: u64, scenario: Option<&LoadedScenario>) -> Result<World, ScenarioError> {
    match scenario {
        Some(loaded) => loaded.scenario.world_for_seed(seed),
        None => Ok(World::draw(seed)),
    }
}

/// Parses `A..B` (B excluded) or `A..=B` (B included).
pub fn parse_seed_range(text: &str) -> Result<Range<u64>, String> {
    let invalid = || format!("expected A..B or A..=B, not {text:?}");
    let (start, end) = text.split_once("..").ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end = match end.strip_prefix('=') {
        Some(inclusive) => inclusive.trim().parse::<u64>().map_err(|_| invalid())? + 1,
        None => end.trim().parse().map_err(|_| invalid())?,
    };
    if start >= end {
        return Err(format!("the seed range {text:?} is empty"));
    }
    Ok(start..end)
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs one seed in a child process (`exe run --seed S --summary-json`), so nothing of an
/// earlier run in this process can leak into it. `report` asks the child to write its
/// report directory under that root if the run fails.
pub fn run_in_child_process(
    exe: &Path,
    seed: u64,
    scenario: Option<&LoadedScenario>,
    report: Option<&Path>,
) -> RunSummary {
    let started = std::time::Instant::now();
    let mut command = std::process::Command::new(exe);
    command.args(["run", "--seed", &seed.to_string(), "--summary-json"]);
    if let Some(loaded) = scenario {
        command.arg("--scenario").arg(&loaded.path);
    }
    if let Some(report) = report {
        command
            .arg("--report")
            .arg(report)
            .arg("--report-failures-only");
    }
    let world = world_for(seed, scenario).unwrap_or_else(|_| World::draw(seed));
    let label = scenario.map(LoadedScenario::label);
    let output = match command.output() {
        Ok(output) => output,
        Err(error) => {
            let message = format!("cannot run {}: {error}", exe.display());
            return RunSummary::from_panic(&world, label.as_deref(), message, 0.0);
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout
        .lines()
        .find_map(|line| line.strip_prefix(SUMMARY_LINE_PREFIX))
        .and_then(|json| serde_json::from_str::<RunSummary>(json).ok());
    summary.unwrap_or_else(|| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        let message = format!(
            "the run's process ended with {} and no summary:\n{}",
            output.status,
            tail.join("\n")
        );
        let wall_seconds = started.elapsed().as_secs_f64();
        RunSummary::from_panic(&world, label.as_deref(), message, wall_seconds)
    })
}

/// Runs every seed of `seeds` on `jobs` workers, each seed in its own child process;
/// `on_done` sees each summary as it finishes. Returns the summaries in seed order.
pub fn sweep(
    exe: &Path,
    seeds: Range<u64>,
    scenario: Option<&LoadedScenario>,
    jobs: usize,
    report: Option<&Path>,
    on_done: &(dyn Fn(&RunSummary) + Sync),
) -> Result<Vec<RunSummary>, ScenarioError> {
    for seed in seeds.clone() {
        world_for(seed, scenario)?;
    }
    let seeds: Vec<u64> = seeds.collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let summaries = std::sync::Mutex::new(Vec::with_capacity(seeds.len()));
    let jobs = jobs.clamp(1, SWEEP_JOBS_MAX);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(seed) = seeds.get(index) else { return };
                let summary = run_in_child_process(exe, *seed, scenario, report);
                on_done(&summary);
                summaries
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push(summary);
            });
        }
    });
    let mut summaries = summaries
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner());
    summaries.sort_by_key(|summary| summary.seed);
    Ok(summaries)
}

#[cfg(madsim)]
mod simulated {
    use std::time::Instant;

    use super::*;
    use crate::report::RunResult;

    /// Runs one world on a fresh thread; returns its summary and, unless it panicked, its
    /// full result.
    pub fn run_on_fresh_thread(
        world: World,
        scenario: Option<String>,
    ) -> (RunSummary, Option<RunResult>) {
        let started = Instant::now();
        let thread_world = world.clone();
        let thread_scenario = scenario.clone();
        let joined = std::thread::Builder::new()
            .name(format!("seed-{}", world.seed))
            .stack_size(RUN_THREAD_STACK_BYTES)
            .spawn(move || crate::harness::run_world(&thread_world, thread_scenario.as_deref()))
            .expect("a run thread starts")
            .join();
        let wall_seconds = started.elapsed().as_secs_f64();
        match joined {
            Ok(result) => (RunSummary::from_result(&result, wall_seconds), Some(result)),
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                let summary =
                    RunSummary::from_panic(&world, scenario.as_deref(), message, wall_seconds);
                (summary, None)
            }
        }
    }
}

#[cfg(madsim)]
pub use simulated::run_on_fresh_thread;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse() {
        assert_eq!(parse_seed_range("0..20"), Ok(0..20));
        assert_eq!(parse_seed_range("5..=6"), Ok(5..7));
        assert!(parse_seed_range("3..3").is_err());
        assert!(parse_seed_range("x").is_err());
    }
}
