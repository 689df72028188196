//! Running seeds: one fresh OS thread and one fresh madsim runtime per run, sweeps over
//! ranges of seeds on a few worker threads, and determinism checks.
//!
//! Each run gets its own thread because madsim's runtime and some process-wide state (the
//! order of a `HashMap`'s iteration on one thread, thread-local caches) must not leak from
//! one seed into the next: a seed must give the same trace however it was run.

use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::report::RunSummary;
use crate::scenario::{Scenario, ScenarioError};
use crate::world::World;

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
    let drawn = World::draw(seed);
    match scenario {
        Some(loaded) => loaded.scenario.apply(&drawn),
        None => Ok(drawn),
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

#[cfg(madsim)]
mod simulated {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
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

    /// Runs every seed of `seeds` on `jobs` workers, each seed on its own fresh thread;
    /// `on_done` sees each summary (and result) as it finishes. Returns the summaries in
    /// seed order.
    pub fn sweep(
        seeds: Range<u64>,
        scenario: Option<&LoadedScenario>,
        jobs: usize,
        on_done: &(dyn Fn(&RunSummary, Option<&RunResult>) + Sync),
    ) -> Result<Vec<RunSummary>, ScenarioError> {
        let worlds: Vec<World> = seeds
            .map(|seed| world_for(seed, scenario))
            .collect::<Result<_, _>>()?;
        let label = scenario.map(LoadedScenario::label);
        let next = AtomicUsize::new(0);
        let summaries = Mutex::new(Vec::with_capacity(worlds.len()));
        let jobs = jobs.clamp(1, SWEEP_JOBS_MAX);
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(world) = worlds.get(index) else {
                        return;
                    };
                    let (summary, result) = run_on_fresh_thread(world.clone(), label.clone());
                    on_done(&summary, result.as_ref());
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
}

#[cfg(madsim)]
pub use simulated::{run_on_fresh_thread, sweep};

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
