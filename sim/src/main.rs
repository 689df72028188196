//! `skiff-sim`: run, replay, sweep and bench simulated worlds. See the crate documentation.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use skiff_sim::runner::{self, LoadedScenario};

/// Where run directories go when `--report` names no directory.
const REPORT_ROOT_DEFAULT: &str = "reports/runs";
/// The default number of worlds `bench` runs.
const BENCH_WORLDS_DEFAULT: u64 = 5;

#[derive(Parser)]
#[command(name = "skiff-sim", about = "Skiff's deterministic simulator")]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one seed.
    Run {
        #[arg(long)]
        seed: u64,
        /// A scenario file merged over the drawn world.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Writes settings.json, history.jsonl, faults.jsonl and verdict.json under
        /// DIR/<seed>/ (DIR defaults to reports/runs).
        #[arg(long, num_args = 0..=1, default_missing_value = REPORT_ROOT_DEFAULT)]
        report: Option<PathBuf>,
        /// Runs the seed twice and compares the trace hashes.
        #[arg(long)]
        check_determinism: bool,
        /// Prints only the summary, as one JSON line (used by sweeps, one process per seed).
        #[arg(long, hide = true)]
        summary_json: bool,
        /// With --report, writes the report only when the run fails.
        #[arg(long)]
        report_failures_only: bool,
    },
    /// Runs one seed and prints its trace hash (the same as `run`).
    Replay {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        scenario: Option<PathBuf>,
        #[arg(long, num_args = 0..=1, default_missing_value = REPORT_ROOT_DEFAULT)]
        report: Option<PathBuf>,
        #[arg(long)]
        check_determinism: bool,
    },
    /// Runs a range of seeds, each on a fresh thread and runtime.
    Sweep {
        /// `A..B` (B excluded) or `A..=B`.
        #[arg(long)]
        seeds: String,
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Writes every run's summary as a JSON array.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Writes a JUnit XML report.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        /// Writes the report directory of every failing run under DIR (default reports/runs).
        #[arg(long, num_args = 0..=1, default_missing_value = REPORT_ROOT_DEFAULT)]
        report: Option<PathBuf>,
    },
    /// Runs default worlds and prints simulated seconds per wall second.
    Bench {
        #[arg(long, default_value_t = BENCH_WORLDS_DEFAULT)]
        worlds: u64,
        #[arg(long, default_value_t = 0)]
        first_seed: u64,
    },
    /// Prints the world a seed draws (needs no madsim).
    World {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
}

fn load_scenario(path: Option<&PathBuf>) -> Result<Option<LoadedScenario>, String> {
    path.map(|path| LoadedScenario::load(path).map_err(|error| error.to_string()))
        .transpose()
}

fn main() -> ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let arguments = Arguments::parse();
    match execute(arguments.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("skiff-sim: {message}");
            ExitCode::from(2)
        }
    }
}

fn print_world(seed: u64, scenario: Option<&PathBuf>) -> Result<ExitCode, String> {
    let loaded = load_scenario(scenario)?;
    let world = runner::world_for(seed, loaded.as_ref()).map_err(|error| error.to_string())?;
    println!(
        "{}",
        serde_json::to_string_pretty(&world).expect("a world serializes")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(madsim))]
fn execute(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::World { seed, scenario } => print_world(seed, scenario.as_ref()),
        _ => Err("this build has no simulator; build with RUSTFLAGS=\"--cfg madsim\"".to_string()),
    }
}

#[cfg(madsim)]
fn execute(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::World { seed, scenario } => print_world(seed, scenario.as_ref()),
        Command::Run {
            seed,
            scenario,
            report,
            check_determinism,
            summary_json,
            report_failures_only,
        } => {
            let options = simulated::RunOptions {
                report,
                check_determinism,
                summary_json,
                report_failures_only,
            };
            simulated::run(seed, scenario.as_ref(), options)
        }
        Command::Replay {
            seed,
            scenario,
            report,
            check_determinism,
        } => {
            let options = simulated::RunOptions {
                report,
                check_determinism,
                summary_json: false,
                report_failures_only: false,
            };
            simulated::run(seed, scenario.as_ref(), options)
        }
        Command::Sweep {
            seeds,
            scenario,
            json,
            junit,
            jobs,
            report,
        } => {
            let seeds = runner::parse_seed_range(&seeds)?;
            let options = simulated::SweepOutputs {
                json,
                junit,
                report,
            };
            simulated::sweep(seeds, scenario.as_ref(), jobs, options)
        }
        Command::Bench { worlds, first_seed } => simulated::bench(first_seed, worlds),
    }
}

#[cfg(madsim)]
mod simulated {
    use std::ops::Range;
    use std::path::PathBuf;
    use std::process::ExitCode;

    use skiff_sim::report::{self, RunResult, RunSummary};
    use skiff_sim::runner::{self, LoadedScenario};

    use super::load_scenario;

    pub struct SweepOutputs {
        pub json: Option<PathBuf>,
        pub junit: Option<PathBuf>,
        pub report: Option<PathBuf>,
    }

    fn print_summary(summary: &RunSummary) {
        println!("verdict: {}", if summary.passed { "PASS" } else { "FAIL" });
        for failure in &summary.failures {
            println!("  {} failure: {}", failure.kind.name(), failure.description);
        }
        if let Some(verdict) = &summary.verdict {
            let statistics = &verdict.statistics;
            println!(
                "history: {} events, {} acknowledged sends, {} drained records, {} faults",
                summary.events,
                statistics.acknowledged_sends,
                summary.drained_records,
                summary.faults_injected
            );
        }
        println!("trace hash: {}", summary.trace_hash);
        println!(
            "speed: {:.1} simulated s in {:.3} wall s = {:.0}x",
            summary.simulated_seconds,
            summary.wall_seconds,
            summary.speed()
        );
        if !summary.passed {
            println!("reproduce: {}", summary.reproduce);
        }
    }

    fn write_report(
        root: &std::path::Path,
        result: &RunResult,
        summary: &RunSummary,
        commit: &str,
    ) {
        let directory = report::run_directory(
            root,
            summary.seed,
            result.scenario.as_deref().map(scenario_stem).as_deref(),
        );
        match report::write_report(&directory, result, summary, commit) {
            Ok(()) => println!("report: {}", directory.display()),
            Err(error) => eprintln!(
                "skiff-sim: cannot write the report to {}: {error}",
                directory.display()
            ),
        }
    }

    fn scenario_stem(label: &str) -> String {
        std::path::Path::new(label)
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_else(|| label.to_string())
    }

    pub struct RunOptions {
        pub report: Option<PathBuf>,
        pub check_determinism: bool,
        pub summary_json: bool,
        pub report_failures_only: bool,
    }

    pub fn run(
        seed: u64,
        scenario: Option<&PathBuf>,
        options: RunOptions,
    ) -> Result<ExitCode, String> {
        let commit = skiff_sim::current_commit();
        let loaded = load_scenario(scenario)?;
        let world = runner::world_for(seed, loaded.as_ref()).map_err(|error| error.to_string())?;
        let label = loaded.as_ref().map(LoadedScenario::label);
        if !options.summary_json {
            println!("seed: {seed}");
            println!("commit: {commit}");
            if let Some(label) = &label {
                println!("scenario: {label}");
            }
            println!("world:\n{}", world.describe());
        }
        let (summary, result) = runner::run_on_fresh_thread(world, label);
        if options.summary_json {
            let json = serde_json::to_string(&summary).expect("summaries serialize");
            println!("{}{json}", runner::SUMMARY_LINE_PREFIX);
        } else {
            print_summary(&summary);
        }
        let wanted = !options.report_failures_only || !summary.passed;
        if let (Some(root), Some(result), true) = (&options.report, &result, wanted) {
            write_report(root, result, &summary, &commit);
        }
        let mut passed = summary.passed;
        if let Some(expected) = loaded
            .as_ref()
            .and_then(|loaded| loaded.scenario.expected_failure)
        {
            let detected = summary
                .failures
                .iter()
                .any(|failure| failure.kind == expected);
            println!(
                "known-bad world: expected a {} failure: {}",
                expected.name(),
                if detected { "detected" } else { "NOT DETECTED" }
            );
            passed = detected;
        }
        if options.check_determinism {
            // The second run gets its own process: see `runner` for why a thread is not enough.
            let exe = std::env::current_exe().map_err(|error| error.to_string())?;
            let again = runner::run_in_child_process(&exe, seed, loaded.as_ref(), None);
            if again.trace_hash == summary.trace_hash && !summary.trace_hash.is_empty() {
                println!("determinism: a second run in a fresh process gave the same trace hash");
            } else {
                println!(
                    "determinism: FAILED: trace hashes {} and {} differ",
                    summary.trace_hash, again.trace_hash
                );
                passed = false;
            }
        }
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    pub fn sweep(
        seeds: Range<u64>,
        scenario: Option<&PathBuf>,
        jobs: usize,
        outputs: SweepOutputs,
    ) -> Result<ExitCode, String> {
        let commit = skiff_sim::current_commit();
        let loaded = load_scenario(scenario)?;
        println!(
            "sweep: seeds {}..{} on {jobs} jobs, commit {commit}",
            seeds.start, seeds.end
        );
        let started = std::time::Instant::now();
        let on_done = |summary: &RunSummary| {
            println!(
                "seed {:>6}: {:<10} {:<24} {:>6.1} sim s {:>6.0}x  {}",
                summary.seed,
                summary.status(),
                summary.profile,
                summary.simulated_seconds,
                summary.speed(),
                summary.trace_hash
            );
        };
        let exe = std::env::current_exe().map_err(|error| error.to_string())?;
        let report = outputs.report.as_deref();
        let summaries = runner::sweep(&exe, seeds, loaded.as_ref(), jobs, report, &on_done)
            .map_err(|error| error.to_string())?;
        println!();
        print!("{}", report::sweep_table(&summaries));
        println!(
            "wall time of the sweep: {:.2} s",
            started.elapsed().as_secs_f64()
        );
        if let Some(path) = &outputs.json {
            let text = serde_json::to_string_pretty(&summaries).expect("summaries serialize");
            std::fs::write(path, text + "\n")
                .map_err(|error| format!("{}: {error}", path.display()))?;
        }
        if let Some(path) = &outputs.junit {
            std::fs::write(path, report::junit_xml(&summaries))
                .map_err(|error| format!("{}: {error}", path.display()))?;
        }
        let passed = summaries.iter().all(|summary| summary.passed);
        Ok(if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }

    pub fn bench(first_seed: u64, worlds: u64) -> Result<ExitCode, String> {
        let scenario = LoadedScenario {
            path: PathBuf::from("scenarios/no-faults.toml"),
            scenario: skiff_sim::scenario::Scenario::parse(BENCH_SCENARIO)
                .map_err(|error| error.to_string())?,
        };
        let scenario = Some(scenario);
        let mut simulated = 0.0;
        let mut wall = 0.0;
        for seed in first_seed..first_seed + worlds {
            let world =
                runner::world_for(seed, scenario.as_ref()).map_err(|error| error.to_string())?;
            let (summary, _) = runner::run_on_fresh_thread(world, None);
            println!(
                "seed {seed}: {} {:.1} simulated s in {:.3} wall s = {:.0}x, trace {}",
                summary.status(),
                summary.simulated_seconds,
                summary.wall_seconds,
                summary.speed(),
                summary.trace_hash
            );
            simulated += summary.simulated_seconds;
            wall += summary.wall_seconds;
        }
        println!(
            "bench: {worlds} worlds, {simulated:.1} simulated s in {wall:.2} wall s = {:.0}x",
            if wall > 0.0 { simulated / wall } else { 0.0 }
        );
        Ok(ExitCode::SUCCESS)
    }

    /// The bench's worlds: drawn workloads without faults (the default single-broker world).
    const BENCH_SCENARIO: &str = include_str!("../../scenarios/no-faults.toml");
}
