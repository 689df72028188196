//! The configuration, budget, latency table and counters of the simulated disk's faults.
//!
//! The fault model itself (what each fault does and why the budget keeps a correct broker safe)
//! is written at the top of the parent module, [`crate::io::sim_disk`].

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// How many faulty reads in a row one file may see before the next read of it is clean, unless a
/// budget says otherwise. A broker that retries a failed or CRC-mismatching read more often than
/// this always gets the stored bytes.
pub const READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX: u32 = 3;

/// Latency of a `read_at` on a healthy disk (page cache or a fast SSD).
pub const READ_LATENCY_MIN_MICROSECONDS: u64 = 20;
pub const READ_LATENCY_MAX_MICROSECONDS: u64 = 200;
/// Latency of a `write_at` on a healthy disk: a copy into the page cache.
pub const WRITE_LATENCY_MIN_MICROSECONDS: u64 = 5;
pub const WRITE_LATENCY_MAX_MICROSECONDS: u64 = 50;
/// Latency of `sync` and `sync_dir` on a healthy disk: a flush of the device cache.
pub const SYNC_LATENCY_MIN_MICROSECONDS: u64 = 1_000;
pub const SYNC_LATENCY_MAX_MICROSECONDS: u64 = 10_000;
/// Latency of the directory operations (open, create, rename, remove, list) and `truncate`.
pub const METADATA_LATENCY_MIN_MICROSECONDS: u64 = 10;
pub const METADATA_LATENCY_MAX_MICROSECONDS: u64 = 100;
/// Latency of a `sync` or `sync_dir` when the operation is slow (a dying or overloaded disk).
pub const SLOW_SYNC_LATENCY_MIN_MICROSECONDS: u64 = 50_000;
pub const SLOW_SYNC_LATENCY_MAX_MICROSECONDS: u64 = 500_000;
/// Latency of any other operation when it is slow.
pub const SLOW_OTHER_LATENCY_MIN_MICROSECONDS: u64 = 5_000;
pub const SLOW_OTHER_LATENCY_MAX_MICROSECONDS: u64 = 50_000;

const _: () = assert!(READ_LATENCY_MIN_MICROSECONDS <= READ_LATENCY_MAX_MICROSECONDS);
const _: () = assert!(WRITE_LATENCY_MIN_MICROSECONDS <= WRITE_LATENCY_MAX_MICROSECONDS);
const _: () = assert!(SYNC_LATENCY_MIN_MICROSECONDS <= SYNC_LATENCY_MAX_MICROSECONDS);
const _: () = assert!(METADATA_LATENCY_MIN_MICROSECONDS <= METADATA_LATENCY_MAX_MICROSECONDS);
const _: () = assert!(SLOW_SYNC_LATENCY_MIN_MICROSECONDS <= SLOW_SYNC_LATENCY_MAX_MICROSECONDS);
const _: () = assert!(SLOW_OTHER_LATENCY_MIN_MICROSECONDS <= SLOW_OTHER_LATENCY_MAX_MICROSECONDS);
// A slow operation is slower than any healthy one of its kind.
const _: () = assert!(SYNC_LATENCY_MAX_MICROSECONDS <= SLOW_SYNC_LATENCY_MIN_MICROSECONDS);
const _: () = assert!(READ_LATENCY_MAX_MICROSECONDS <= SLOW_OTHER_LATENCY_MIN_MICROSECONDS);
const _: () = assert!(WRITE_LATENCY_MAX_MICROSECONDS <= SLOW_OTHER_LATENCY_MIN_MICROSECONDS);
const _: () = assert!(METADATA_LATENCY_MAX_MICROSECONDS <= SLOW_OTHER_LATENCY_MIN_MICROSECONDS);

/// Which bytes a fault that damages reads (silent corruption, latent sector errors) may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultScope {
    /// Only bytes at or after the file's length at its last successful `sync`: bytes the broker
    /// never made durable, so never acknowledged. For a run that must not lose data.
    UnsyncedBytesOnly,
    /// Any byte. For a node whose data the run may lose, because other replicas hold a quorum;
    /// the simulator gives this scope to a minority of nodes at most.
    AnyBytes,
}

/// Limits on the injected faults, so that a run that must not lose data never corrupts data the
/// broker was entitled to trust. See the module documentation for the argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultBudget {
    /// Which bytes silent read corruption may flip.
    pub corruption_scope: FaultScope,
    /// Which sectors may become unreadable.
    pub latent_sector_error_scope: FaultScope,
    /// The most reads in a row of one file that get a new fault (a transient error, a flipped
    /// bit or a new latent sector error); the read after them gets none. Zero disables them.
    pub read_faults_in_a_row_per_file_max: u32,
    /// The most faults of each kind injected over the disk's life; `None` is unlimited.
    pub faults_per_kind_max: Option<u64>,
}

impl FaultBudget {
    /// The budget of a run that must not lose data on this node.
    pub const fn protecting_synced_data() -> Self {
        Self {
            corruption_scope: FaultScope::UnsyncedBytesOnly,
            latent_sector_error_scope: FaultScope::UnsyncedBytesOnly,
            read_faults_in_a_row_per_file_max: READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX,
            faults_per_kind_max: None,
        }
    }

    /// The budget of a node whose data the run may lose (other replicas keep a quorum).
    pub const fn unrestricted() -> Self {
        Self {
            corruption_scope: FaultScope::AnyBytes,
            latent_sector_error_scope: FaultScope::AnyBytes,
            read_faults_in_a_row_per_file_max: u32::MAX,
            faults_per_kind_max: None,
        }
    }

    /// Whether one more fault of a kind already injected `count` times fits the budget.
    pub(super) fn allows(&self, count: u64) -> bool {
        self.faults_per_kind_max.is_none_or(|max| count < max)
    }
}

impl Default for FaultBudget {
    fn default() -> Self {
        Self::protecting_synced_data()
    }
}

/// What the simulated disk does wrong, and how often. Every rate is a probability per operation
/// of the kind named, in `0.0..=1.0`, drawn by the simulator from its seed. The default injects
/// nothing and adds no latency.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimDiskFaults {
    /// Per crash: the probability that each pending write survives or not independently of the
    /// others (reordered writeback) instead of a prefix of them surviving.
    pub crash_independent_writes_probability: f64,
    /// Per `sync`: the probability that it fails with EIO, leaving the file suspect.
    pub sync_error_probability: f64,
    /// Per `read_at`: the probability of a transient EIO; the read has no effect.
    pub read_error_probability: f64,
    /// Per `write_at`: the probability of a transient EIO; a prefix of the write's sectors (possibly
    /// none, never all) reaches the page cache.
    pub write_error_probability: f64,
    /// Per `read_at`: the probability that one returned byte has one bit flipped.
    pub read_corruption_probability: f64,
    /// Per `read_at`: the probability that one sector the read touches becomes unreadable until it
    /// is rewritten (the read fails with EIO).
    pub latent_sector_error_probability: f64,
    /// Per operation: the probability that it takes slow-disk latency. A slow disk world sets it
    /// to 1.0, a flaky one lower.
    pub slow_operation_probability: f64,
    /// Whether operations accrue healthy-disk latency. Not a fault: `heal` keeps it.
    pub latency_enabled: bool,
    /// The most bytes the files may hold together; writes beyond it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// The limits that keep trusted data safe.
    pub budget: FaultBudget,
}

impl SimDiskFaults {
    /// No faults and no latency: a perfect disk that only loses unsynced data in a crash.
    pub const fn none() -> Self {
        Self {
            crash_independent_writes_probability: 0.0,
            sync_error_probability: 0.0,
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            read_corruption_probability: 0.0,
            latent_sector_error_probability: 0.0,
            slow_operation_probability: 0.0,
            latency_enabled: false,
            capacity_bytes: None,
            budget: FaultBudget::protecting_synced_data(),
        }
    }

    /// The same configuration with every fault switched off; healthy latency and the budget are
    /// kept, because they are not faults.
    pub fn healed(&self) -> Self {
        Self {
            latency_enabled: self.latency_enabled,
            budget: self.budget,
            ..Self::none()
        }
    }

    /// Panics unless every probability is within `0.0..=1.0`: a wrong configuration is a
    /// programmer error.
    pub fn assert_valid(&self) {
        for (name, probability) in self.probabilities() {
            assert!(
                (0.0..=1.0).contains(&probability),
                "{name} must be a probability in 0.0..=1.0, not {probability}"
            );
        }
    }

    fn probabilities(&self) -> [(&'static str, f64); 7] {
        [
            (
                "crash_independent_writes_probability",
                self.crash_independent_writes_probability,
            ),
            ("sync_error_probability", self.sync_error_probability),
            ("read_error_probability", self.read_error_probability),
            ("write_error_probability", self.write_error_probability),
            (
                "read_corruption_probability",
                self.read_corruption_probability,
            ),
            (
                "latent_sector_error_probability",
                self.latent_sector_error_probability,
            ),
            (
                "slow_operation_probability",
                self.slow_operation_probability,
            ),
        ]
    }
}

impl Default for SimDiskFaults {
    fn default() -> Self {
        Self::none()
    }
}

/// How many faults of each kind the disk injected, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub crashes_keeping_a_prefix: u64,
    pub crashes_keeping_writes_independently: u64,
    pub crashes_losing_everything_unsynced: u64,
    /// Pending writes that a crash or a failed sync dropped entirely.
    pub pending_writes_lost: u64,
    /// Pending writes that a crash or a failed sync kept only some sectors of.
    pub pending_writes_torn: u64,
    pub sync_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    /// Failed writes that still put some of their sectors in the page cache.
    pub write_errors_partly_applied: u64,
    pub storage_full_errors: u64,
    pub read_corruptions: u64,
    /// Sectors made unreadable.
    pub latent_sector_errors: u64,
    /// Reads that failed because they touched an unreadable sector.
    pub unreadable_sector_reads: u64,
    pub slow_operations: u64,
}

impl FaultCounts {
    /// The counts by name, in a stable order, for reports.
    pub fn to_map(&self) -> std::collections::BTreeMap<&'static str, u64> {
        [
            ("crashes_keeping_a_prefix", self.crashes_keeping_a_prefix),
            (
                "crashes_keeping_writes_independently",
                self.crashes_keeping_writes_independently,
            ),
            (
                "crashes_losing_everything_unsynced",
                self.crashes_losing_everything_unsynced,
            ),
            ("pending_writes_lost", self.pending_writes_lost),
            ("pending_writes_torn", self.pending_writes_torn),
            ("sync_errors", self.sync_errors),
            ("read_errors", self.read_errors),
            ("write_errors", self.write_errors),
            (
                "write_errors_partly_applied",
                self.write_errors_partly_applied,
            ),
            ("storage_full_errors", self.storage_full_errors),
            ("read_corruptions", self.read_corruptions),
            ("latent_sector_errors", self.latent_sector_errors),
            ("unreadable_sector_reads", self.unreadable_sector_reads),
            ("slow_operations", self.slow_operations),
        ]
        .into_iter()
        .collect()
    }
}

/// The kinds of operation, for the latency table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    Read,
    Write,
    Sync,
    Metadata,
}

/// The latency one operation accrues: slow with `slow_operation_probability`, else healthy if
/// latency is enabled, else none.
pub(super) fn draw_latency(
    random: &mut StdRng,
    faults: &SimDiskFaults,
    operation: Operation,
) -> (Duration, bool) {
    let slow = chance(random, faults.slow_operation_probability);
    let (min, max) = match (operation, slow) {
        (_, false) if !faults.latency_enabled => return (Duration::ZERO, false),
        (Operation::Sync, true) => (
            SLOW_SYNC_LATENCY_MIN_MICROSECONDS,
            SLOW_SYNC_LATENCY_MAX_MICROSECONDS,
        ),
        (_, true) => (
            SLOW_OTHER_LATENCY_MIN_MICROSECONDS,
            SLOW_OTHER_LATENCY_MAX_MICROSECONDS,
        ),
        (Operation::Read, false) => (READ_LATENCY_MIN_MICROSECONDS, READ_LATENCY_MAX_MICROSECONDS),
        (Operation::Write, false) => (
            WRITE_LATENCY_MIN_MICROSECONDS,
            WRITE_LATENCY_MAX_MICROSECONDS,
        ),
        (Operation::Sync, false) => (SYNC_LATENCY_MIN_MICROSECONDS, SYNC_LATENCY_MAX_MICROSECONDS),
        (Operation::Metadata, false) => (
            METADATA_LATENCY_MIN_MICROSECONDS,
            METADATA_LATENCY_MAX_MICROSECONDS,
        ),
    };
    (Duration::from_micros(random.gen_range(min..=max)), slow)
}

/// Draws an event of probability `probability`, without touching the generator when the answer is
/// certain, so that a disk without faults draws nothing for them.
pub(super) fn chance(random: &mut StdRng, probability: f64) -> bool {
    if probability <= 0.0 {
        false
    } else if probability >= 1.0 {
        true
    } else {
        random.gen_bool(probability)
    }
}
