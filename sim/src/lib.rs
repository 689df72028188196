//! # skiff-sim: Skiff's deterministic simulator
//!
//! The simulator runs the real broker (`skiff::server::start`) and the real client
//! (`skiff-client`) on simulated nodes, over a simulated network and simulated disks, inside
//! one madsim runtime seeded with one number. Everything — the world's settings, the fault
//! schedule, network latencies, which unsynced writes a crash keeps — derives from that seed,
//! so a failing seed replays exactly, under a debugger if need be.
//!
//! ## Tutorial
//!
//! ```text
//! RUSTFLAGS="--cfg madsim" cargo run -p skiff-sim -- run --seed 1
//! RUSTFLAGS="--cfg madsim" cargo run -p skiff-sim -- run --seed 1 --scenario scenarios/no-faults.toml
//! RUSTFLAGS="--cfg madsim" cargo run -p skiff-sim -- sweep --seeds 0..100 --jobs 2 --junit sweep.xml
//! RUSTFLAGS="--cfg madsim" cargo run -p skiff-sim -- replay --seed 1 --check-determinism
//! RUSTFLAGS="--cfg madsim" cargo run -p skiff-sim -- bench --worlds 10
//! cargo run -p skiff-sim -- world --seed 1     # no madsim needed: prints the drawn world
//! ```
//!
//! A run prints the seed, the commit and every drawn setting, then the verdict, the trace
//! hash and its speed (simulated seconds per wall second). A failing run prints the one
//! command that reproduces it. `--report DIR` writes the run's files (see [`report`]).
//!
//! ## One run
//!
//! ```text
//!  seed ──► World::draw ──► (scenario file merged over it) ──► World
//!                                                               │
//!  fresh OS thread, madsim Runtime::with_seed(seed) ◄───────────┘
//!  │
//!  ├─ broker-N nodes (10.0.1.N+1:9092): skiff::server::start(config, Seams { SimDisk, Clock, Random })
//!  │     SimDisk and Clock live outside the node: they survive kill and restart;
//!  │     with more than one broker, a cluster replicating over 10.0.1.N+1:9093
//!  ├─ client-N nodes (10.0.2.N): producers and consumers ──► Recorder (History)
//!  ├─ supervisor: invariant monitor (every 100 ms: high watermarks vs acknowledgements;
//!  │     in a cluster, terms and leaders of every replica, and replicas compared at the end)
//!  │
//!  │  setup ──────── safety phase ──────────────── liveness phase ───── drain ──────
//!  │  create topics  nemesis runs the schedule:    heal everything;     fresh consumer
//!  │                 crash / restart / pause /     every producer must  reads every
//!  │                 partition / loss / latency /  get an ack again     partition 0..end
//!  │                 clock jumps; disk faults on
//!  ▼
//!  History ──► skiff_checker::check ──► Verdict ┐
//!  invariant violations ───────────────────────┼──► RunSummary: pass, or failures by kind
//!  liveness (acks after heal, drain complete) ─┘    (safety, invariant, liveness, panic)
//! ```
//!
//! ## Failures
//!
//! A run fails for a **safety** reason (the checker found a fatal anomaly in the history),
//! an **invariant** reason (the simulator saw a broker's high watermark go back, or stay
//! below an acknowledged offset, or a broker fail to start on a healed disk), a **liveness**
//! reason (after the heal, a producer got no acknowledgement within the liveness phase, or
//! the final drain did not reach every partition's end), or a **panic**. The worlds under
//! `scenarios/known-bad/` break the fault model on purpose and must fail with the kind they
//! name (`run` prints whether it was detected); the simulation tests check that they do.
//!
//! Each seed of a sweep runs in its own process (`runner` says why), at `--jobs` at a time.
//!
//! ## Modules
//!
//! - [`world`]: the seed's world (swarm testing) and the fault model.
//! - [`scenario`]: TOML files pinning part of a world.
//! - [`invariants`]: what the simulator checks on the brokers' own state.
//! - [`report`]: summaries, trace hashes, the report directory, sweep tables, JUnit.
//! - [`runner`]: one fresh thread per seed, sweeps.
//! - `harness` (madsim only): nodes, workload, nemesis, phases.
//!
//! Without `--cfg madsim` the crate builds as a library of the pure parts and a binary that
//! can only print worlds, so `cargo test` checks world drawing, scenarios and reports.

pub mod invariants;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod world;

#[cfg(madsim)]
pub mod harness;

/// The commit the binary runs, from `git rev-parse HEAD` (with `-dirty` when the work tree
/// has changes), or `unknown`. Call it outside a simulation.
pub fn current_commit() -> String {
    let output = |arguments: &[&str]| {
        std::process::Command::new("git")
            .args(arguments)
            .output()
            .ok()
            .filter(|output| output.status.success())
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let Some(commit) = output(&["rev-parse", "HEAD"]) else {
        return "unknown".to_string();
    };
    let dirty = output(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|status| !status.is_empty());
    if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    }
}
