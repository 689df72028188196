//! A simulated disk that forgets what was never made durable, and fails the way disks fail.
//!
//! Everything is in memory and ordered (`BTreeMap`), and every fault is drawn from a random number
//! generator seeded by the simulator, so a run is a pure function of its seed. The disk is shared
//! through an `Arc`, outside the simulated node, so it survives the node's restart the way a real
//! disk survives a reboot. [`SimDisk::new`] injects no fault and adds no latency;
//! [`SimDisk::with_faults`] takes a seed and a [`SimDiskFaults`], whose rates are probabilities
//! per operation.
//!
//! # Fault model
//!
//! Each file has durable contents, a page cache (what reads see) and the writes and truncations
//! made since its last successful `sync`, in order (its *pending* operations). It also remembers
//! its *trusted length*: its length when a `sync` last returned `Ok`. Bytes below it are the ones
//! the broker was entitled to trust (it may have acknowledged them).
//!
//! 1. **Crash** ([`SimDisk::crash`], [`SimDisk::crash_with_mode`]). Handles opened before it fail
//!    with an I/O error afterwards. Each file keeps its durable contents plus, by [`CrashMode`]:
//!    - `KeepPrefix`: a random prefix of its pending operations; the first dropped write may be
//!      torn after a whole number of its sectors. Never a later write without the earlier ones.
//!    - `KeepIndependently` (reordered writeback): each pending operation survives or not
//!      independently, so a later write may survive an earlier one that is lost; a write may be
//!      torn, each of its [`SECTOR_BYTES`] sectors (at absolute file offsets) surviving or not.
//!      A hole left by a lost write reads as zeros.
//!    - `LoseEverythingUnsynced`: nothing pending survives.
//!
//!    `crash` picks `KeepIndependently` with `crash_independent_writes_probability`. Directory
//!    entries (file creations, renames, removals, new directories) are durable only after
//!    `sync_dir` of the parent; a crash reverts every change made since. A truncation is a pending
//!    operation of the file: durable only after the file's `sync`.
//! 2. **EIO on `sync`** (`sync_error_probability`). The sync returns an error of kind
//!    `io::ErrorKind::Other` whose message says EIO. As Linux does after failed writeback, the
//!    file's pending operations are then forgotten: each reached the disk or not, independently
//!    and possibly torn (as in `KeepIndependently`), and the cache either drops its dirty pages
//!    (reads now show the durable contents) or keeps them marked clean (reads still show the
//!    written bytes, which are not on the disk). A later `sync` may return `Ok` without writing
//!    them: they are lost at the next crash. **The broker must treat the file as suspect**: never
//!    acknowledge anything written to it since its last successful sync, never retry the sync and
//!    trust it, take the partition offline and let recovery re-read and verify the file (CRC) after
//!    a restart. Bytes below the trusted length are touched only if the broker had overwritten or
//!    truncated them since, which an append-only log does not.
//! 3. **Transient EIO** on `read_at` (`read_error_probability`): the read fails and has no effect.
//!    On `write_at` (`write_error_probability`): the write fails, but a prefix of its sectors
//!    (possibly none, never all) has reached the cache as a pending write, as a real short write
//!    can. After a failed write the written range holds old or new bytes, sector by sector, and the
//!    file may have grown to cover the applied prefix; the rest of the file is unchanged. The
//!    broker may retry the same write (it is idempotent) or truncate back.
//! 4. **ENOSPC** (`capacity_bytes`): a write that would make the files that exist hold more than
//!    the capacity fails with `io::ErrorKind::StorageFull` and has no effect. Removing files frees
//!    space. Truncations never fail with ENOSPC.
//! 5. **Silent read corruption** (`read_corruption_probability`): one returned byte has one bit
//!    flipped. The stored bytes are unchanged, so a re-read is correct (within the budget below).
//! 6. **Latent sector errors** (`latent_sector_error_probability`): a sector the read touches
//!    becomes unreadable and the read fails with EIO, as does every later read touching it, until
//!    a write touches the sector or a truncation removes it. They survive crashes.
//! 7. **Latency.** Every operation accrues a simulated latency ([`faults`] holds the table: sync 1
//!    to 10 ms, or 50 to 500 ms when slow). The `Disk` API is blocking and simulated time advances
//!    only in `sleep`, so the driver calls [`Disk::take_simulated_latency`] after a sync or a batch
//!    of I/O and sleeps for what it returns. The disk serialises its operations, so the latency of
//!    all the files is summed in one account, taken by whoever asks first.
//!
//! # Budget: why a correct broker never loses an acknowledged write
//!
//! A *correct* single-node broker acknowledges a write only after a `sync` covering it returned
//! `Ok`, checks the CRC of every batch it reads and retries a read that fails or mismatches, takes
//! a partition offline after a failed sync, and on recovery reads everything after its last
//! trusted point before keeping it. With [`FaultBudget::protecting_synced_data`]:
//!
//! - A crash, a failed sync and a failed write change only pending bytes: none was acknowledged.
//! - ENOSPC has no effect; latency has no effect on data.
//! - Transient read errors and corruption never change the stored bytes, and at most
//!   `read_faults_in_a_row_per_file_max` reads in a row of one file get a new fault, so a broker
//!   retrying more often than that reads the stored bytes. A single flipped bit always fails
//!   CRC32C.
//! - Corruption and latent sector errors are confined to bytes at or after the trusted length
//!   (never acknowledged). A latent sector error persists across crashes, so recovery sees it and
//!   must cut the log before it; and a successful `sync` clears the file's latent sector errors,
//!   because from that moment the broker is entitled to trust every byte of the file (the story:
//!   the sync rewrote them and the drive remapped the sectors).
//!
//! [`FaultBudget::unrestricted`] lets corruption and latent sector errors hit any byte, and does
//! not clear latent errors on sync: for a node whose data the run may lose, the simulator giving
//! it to a minority of replicas at most. `faults_per_kind_max` caps each kind over the run.
//!
//! [`SimDisk::set_faults`] changes the configuration at run time and [`SimDisk::heal`] switches
//! every fault off (keeping healthy latency and the budget) and makes unreadable sectors readable
//! again (their bytes never changed), for the simulator's liveness phase. [`SimDisk::fault_counts`]
//! reports what was injected.

mod faults;
#[cfg(test)]
mod tests;
mod writeback;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::disk::{DirEntry, Disk, DiskFile, VolumeSpace};
use faults::{chance, draw_latency, Operation};
use writeback::{apply, apply_all, sector_pieces, to_index, PendingOperation, Writeback};

pub use faults::{
    FaultBudget, FaultCounts, FaultScope, SimDiskFaults, METADATA_LATENCY_MAX_MICROSECONDS,
    METADATA_LATENCY_MIN_MICROSECONDS, READ_FAULTS_IN_A_ROW_PER_FILE_DEFAULT_MAX,
    READ_LATENCY_MAX_MICROSECONDS, READ_LATENCY_MIN_MICROSECONDS,
    SLOW_OTHER_LATENCY_MAX_MICROSECONDS, SLOW_OTHER_LATENCY_MIN_MICROSECONDS,
    SLOW_SYNC_LATENCY_MAX_MICROSECONDS, SLOW_SYNC_LATENCY_MIN_MICROSECONDS,
    SYNC_LATENCY_MAX_MICROSECONDS, SYNC_LATENCY_MIN_MICROSECONDS, WRITE_LATENCY_MAX_MICROSECONDS,
    WRITE_LATENCY_MIN_MICROSECONDS,
};

/// The unit a disk writes atomically: torn writes, partial writes and latent errors are cut at
/// multiples of it.
pub const SECTOR_BYTES: u64 = 512;

/// In a failed sync, the probability that the cache drops the file's dirty pages (reads show the
/// durable contents) rather than keeping them marked clean (reads show bytes not on the disk).
pub const FAILED_SYNC_DROPS_PAGES_PROBABILITY: f64 = 0.5;

/// Which pending operations a crash keeps. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    KeepPrefix,
    KeepIndependently,
    LoseEverythingUnsynced,
}

/// An in-memory disk with crash semantics and injected faults. Cloning shares the disk.
#[derive(Clone)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
}

struct State {
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    entries: BTreeMap<PathBuf, u64>,
    durable_entries: BTreeMap<PathBuf, u64>,
    directories: BTreeSet<PathBuf>,
    durable_directories: BTreeSet<PathBuf>,
    /// Counts of successful file syncs, for tests and reports.
    syncs: u64,
    faults: SimDiskFaults,
    /// Draws every fault and latency; seeded once, so the disk is deterministic.
    random: StdRng,
    counts: FaultCounts,
    /// Simulated latency accrued since the last `take_simulated_latency`.
    latency_accrued: Duration,
}

#[derive(Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    /// The page cache: what reads see. Equal to `durable` with `pending` applied, unless a failed
    /// sync left pages marked clean that never reached the disk (`cache_diverged`).
    current: Vec<u8>,
    pending: Vec<PendingOperation>,
    /// The file's length when a sync last returned `Ok`: bytes below it may be acknowledged.
    trusted_len: u64,
    cache_diverged: bool,
    /// Sector numbers whose reads fail until rewritten.
    unreadable_sectors: BTreeSet<u64>,
    /// Reads in a row of this file that got a new fault; see the budget.
    read_faults_in_a_row: u32,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

impl SimDisk {
    /// A disk without faults or latency: it only loses unsynced data in a crash.
    pub fn new() -> Self {
        Self::with_faults(0, SimDiskFaults::none())
    }

    /// A disk injecting `faults`, drawn from a generator seeded with `seed`.
    pub fn with_faults(seed: u64, faults: SimDiskFaults) -> Self {
        faults.assert_valid();
        let state = State {
            generation: 0,
            next_inode: 0,
            inodes: BTreeMap::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            directories: BTreeSet::new(),
            durable_directories: BTreeSet::new(),
            syncs: 0,
            faults,
            random: StdRng::seed_from_u64(seed),
            counts: FaultCounts::default(),
            latency_accrued: Duration::ZERO,
        };
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The current fault configuration.
    pub fn faults(&self) -> SimDiskFaults {
        lock(&self.state).faults
    }

    /// Replaces the fault configuration; takes effect from the next operation.
    pub fn set_faults(&self, faults: SimDiskFaults) {
        faults.assert_valid();
        lock(&self.state).faults = faults;
    }

    /// Switches every fault off, keeping healthy latency and the budget, and makes every
    /// unreadable sector readable again (its bytes never changed). Files left suspect by a failed
    /// sync stay as they are: that is data, not a fault.
    pub fn heal(&self) {
        let mut state = lock(&self.state);
        state.faults = state.faults.healed();
        for inode in state.inodes.values_mut() {
            inode.unreadable_sectors.clear();
            inode.read_faults_in_a_row = 0;
        }
    }

    /// How many faults of each kind were injected so far.
    pub fn fault_counts(&self) -> FaultCounts {
        lock(&self.state).counts
    }

    /// Simulates power loss, keeping unsynced writes by the configured mode: independently with
    /// `crash_independent_writes_probability`, else a prefix. Deterministic for a given `seed` and
    /// history of the disk.
    pub fn crash(&self, seed: u64) {
        let mode = {
            let mut state = lock(&self.state);
            let probability = state.faults.crash_independent_writes_probability;
            if chance(&mut state.random, probability) {
                CrashMode::KeepIndependently
            } else {
                CrashMode::KeepPrefix
            }
        };
        self.crash_with_mode(seed, mode);
    }

    /// Simulates power loss that keeps nothing unsynced: the harshest crash.
    pub fn crash_losing_everything_unsynced(&self) {
        self.crash_with_mode(0, CrashMode::LoseEverythingUnsynced);
    }

    /// Simulates power loss: every file falls back to its durable contents plus the pending
    /// operations `mode` keeps, and directory changes not made durable by `sync_dir` are undone.
    pub fn crash_with_mode(&self, seed: u64, mode: CrashMode) {
        let mut random = StdRng::seed_from_u64(seed);
        let mut state = lock(&self.state);
        state.generation += 1;
        state.entries = state.durable_entries.clone();
        state.directories = state.durable_directories.clone();
        let live: BTreeSet<u64> = state.entries.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        let mut lost_and_torn = (0, 0);
        for inode in state.inodes.values_mut() {
            let writeback = match mode {
                CrashMode::KeepPrefix => writeback::keep_a_prefix(&mut random, &inode.pending),
                CrashMode::KeepIndependently => {
                    writeback::keep_independently(&mut random, &inode.pending)
                }
                CrashMode::LoseEverythingUnsynced => Writeback {
                    writes_lost: inode.pending_write_count(),
                    ..Writeback::default()
                },
            };
            lost_and_torn.0 += writeback.writes_lost;
            lost_and_torn.1 += writeback.writes_torn;
            inode.write_back(&writeback.survivors);
            inode.current = inode.durable.clone();
            inode.cache_diverged = false;
            inode.read_faults_in_a_row = 0;
        }
        let counts = &mut state.counts;
        counts.pending_writes_lost += lost_and_torn.0;
        counts.pending_writes_torn += lost_and_torn.1;
        match mode {
            CrashMode::KeepPrefix => counts.crashes_keeping_a_prefix += 1,
            CrashMode::KeepIndependently => counts.crashes_keeping_writes_independently += 1,
            CrashMode::LoseEverythingUnsynced => counts.crashes_losing_everything_unsynced += 1,
        }
    }

    /// How many file syncs have succeeded.
    pub fn sync_count(&self) -> u64 {
        lock(&self.state).syncs
    }

    /// Total bytes held by files that currently exist.
    pub fn used_bytes(&self) -> u64 {
        lock(&self.state).used_bytes_excluding(None)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poison| poison.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

/// The error a failing disk returns: EIO, as `io::ErrorKind::Other` with a message.
fn input_output_error(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO (input/output error): {what}"))
}

fn storage_full_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::StorageFull,
        "simulated ENOSPC: no space left on the device",
    )
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The sector numbers a byte range touches.
fn sectors_of(start: u64, end: u64) -> std::ops::Range<u64> {
    if start >= end {
        return 0..0;
    }
    start / SECTOR_BYTES..end.div_ceil(SECTOR_BYTES)
}

/// The first byte a read-damaging fault of `scope` may touch in a file trusted up to
/// `trusted_len`.
fn first_damageable_byte(scope: FaultScope, trusted_len: u64) -> u64 {
    match scope {
        FaultScope::AnyBytes => 0,
        FaultScope::UnsyncedBytesOnly => trusted_len,
    }
}

/// The root always exists, as on a real filesystem.
fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

impl State {
    fn parent_exists(&self, path: &Path) -> bool {
        self.directory_exists(&parent_of(path))
    }

    fn directory_exists(&self, path: &Path) -> bool {
        is_root(path) || self.directories.contains(path)
    }

    fn accrue_latency(&mut self, operation: Operation) {
        let (latency, slow) = draw_latency(&mut self.random, &self.faults, operation);
        if slow {
            self.counts.slow_operations += 1;
        }
        self.latency_accrued = self.latency_accrued.saturating_add(latency);
    }

    /// Bytes held by the files that exist, leaving out one inode (the one being written, which
    /// `SimFile::with_inode` has taken out of the map).
    fn used_bytes_excluding(&self, excluded: Option<u64>) -> u64 {
        let linked: BTreeSet<u64> = self.entries.values().copied().collect();
        linked
            .iter()
            .filter(|inode| Some(**inode) != excluded)
            .filter_map(|inode| self.inodes.get(inode))
            .map(|inode| inode.current.len() as u64)
            .sum()
    }

    /// Draws whether a fault of probability `probability` happens now, within the budget for a
    /// kind injected `count` times so far.
    fn inject(&mut self, probability: f64, count: u64) -> bool {
        self.faults.budget.allows(count) && chance(&mut self.random, probability)
    }
}

impl Inode {
    fn pending_write_count(&self) -> u64 {
        self.pending
            .iter()
            .filter(|operation| matches!(operation, PendingOperation::Write { .. }))
            .count() as u64
    }

    /// Writes `survivors` to the durable contents and forgets the pending operations, dropping
    /// unreadable sectors that the surviving operations removed from the file.
    fn write_back(&mut self, survivors: &[PendingOperation]) {
        apply_all(&mut self.durable, survivors);
        self.pending.clear();
        let len = self.durable.len() as u64;
        self.unreadable_sectors
            .retain(|sector| sector * SECTOR_BYTES < len);
    }

    /// Records a write in the cache and the pending operations; writing a sector rewrites it, so
    /// it becomes readable again.
    fn record(&mut self, operation: PendingOperation) {
        let (start, end) = match &operation {
            PendingOperation::Write { offset, data } => (*offset, *offset + data.len() as u64),
            PendingOperation::Truncate { len } => {
                self.unreadable_sectors
                    .retain(|sector| sector * SECTOR_BYTES < *len);
                (0, 0)
            }
        };
        for sector in sectors_of(start, end) {
            self.unreadable_sectors.remove(&sector);
        }
        apply(&mut self.current, &operation);
        self.pending.push(operation);
    }

    /// Asserts that the cache is the durable contents with the pending operations applied, unless
    /// a failed sync made them diverge.
    fn debug_assert_cache_consistent(&self) {
        if cfg!(debug_assertions) && !self.cache_diverged {
            let mut expected = self.durable.clone();
            apply_all(&mut expected, &self.pending);
            debug_assert!(
                expected == self.current,
                "cache diverged without a failed sync"
            );
        }
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn DiskFile>> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        let inode = match state.entries.get(path) {
            Some(inode) => *inode,
            None if create => {
                if !state.parent_exists(path) {
                    return Err(not_found(&parent_of(path)));
                }
                state.next_inode += 1;
                let inode = state.next_inode;
                state.inodes.insert(inode, Inode::default());
                state.entries.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            state: self.state.clone(),
            inode,
            generation: state.generation,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        for ancestor in path.ancestors() {
            if ancestor.as_os_str().is_empty() || ancestor == Path::new("/") {
                continue;
            }
            state.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Sync);
        if !state.directory_exists(path) {
            return Err(not_found(path));
        }
        let in_directory = |candidate: &Path| candidate.parent() == Some(path);
        let State {
            entries,
            durable_entries,
            directories,
            durable_directories,
            ..
        } = &mut *state;
        durable_entries.retain(|name, _| !in_directory(name));
        for (name, inode) in entries.iter() {
            if in_directory(name) {
                durable_entries.insert(name.clone(), *inode);
            }
        }
        durable_directories.retain(|name| !in_directory(name));
        for name in directories.iter() {
            if in_directory(name) {
                durable_directories.insert(name.clone());
            }
        }
        // The directory itself becomes durable too: a real filesystem journals its own entry
        // with the parent's, and every caller here syncs parents before children.
        if !is_root(path) {
            durable_directories.insert(path.to_path_buf());
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        let inode = state.entries.remove(from).ok_or_else(|| not_found(from))?;
        state.entries.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        state
            .entries
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        if !state.directories.contains(path) {
            return Err(not_found(path));
        }
        state.entries.retain(|name, _| !name.starts_with(path));
        state.directories.retain(|name| !name.starts_with(path));
        Ok(())
    }

    fn list(&self, path: &Path) -> io::Result<Vec<DirEntry>> {
        let mut state = lock(&self.state);
        state.accrue_latency(Operation::Metadata);
        if !state.directory_exists(path) {
            return Err(not_found(path));
        }
        let name_of = |child: &Path| {
            child
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        };
        let mut listing: Vec<DirEntry> = state
            .entries
            .keys()
            .filter(|name| name.parent() == Some(path))
            .filter_map(|name| name_of(name))
            .map(|name| DirEntry {
                name,
                is_dir: false,
            })
            .chain(
                state
                    .directories
                    .iter()
                    .filter(|name| name.parent() == Some(path))
                    .filter_map(|name| name_of(name))
                    .map(|name| DirEntry { name, is_dir: true }),
            )
            .collect();
        listing.sort();
        Ok(listing)
    }

    fn exists(&self, path: &Path) -> bool {
        let state = lock(&self.state);
        state.entries.contains_key(path) || state.directory_exists(path)
    }

    fn take_simulated_latency(&self) -> Duration {
        std::mem::take(&mut lock(&self.state).latency_accrued)
    }

    /// A disk with a capacity reports it; an unbounded one cannot say.
    fn space(&self, _path: &Path) -> io::Result<VolumeSpace> {
        let state = lock(&self.state);
        let Some(capacity) = state.faults.capacity_bytes else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an unbounded simulated disk",
            ));
        };
        Ok(VolumeSpace {
            total_bytes: capacity,
            usable_bytes: capacity.saturating_sub(state.used_bytes_excluding(None)),
        })
    }
}

impl SimFile {
    fn with_inode<R>(&self, work: impl FnOnce(&mut Inode, &mut State) -> R) -> io::Result<R> {
        let mut state = lock(&self.state);
        if state.generation != self.generation {
            return Err(io::Error::other("file handle from before a crash"));
        }
        let mut inode = state
            .inodes
            .remove(&self.inode)
            .ok_or_else(|| io::Error::other("file was removed"))?;
        let result = work(&mut inode, &mut state);
        state.inodes.insert(self.inode, inode);
        Ok(result)
    }
}

/// The read path: fails on an unreadable sector, else maybe injects one new fault (within the
/// budget), else copies the cached bytes.
fn read_cached(
    inode: &mut Inode,
    state: &mut State,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<usize> {
    state.accrue_latency(Operation::Read);
    let len = inode.current.len() as u64;
    let start = offset.min(len);
    let end = offset.saturating_add(buf.len() as u64).min(len);
    if start == end {
        return Ok(0);
    }
    if sectors_of(start, end).any(|sector| inode.unreadable_sectors.contains(&sector)) {
        state.counts.unreadable_sector_reads += 1;
        return Err(input_output_error("read touched an unreadable sector"));
    }
    let read = to_index(end - start);
    buf[..read].copy_from_slice(&inode.current[to_index(start)..to_index(end)]);
    let budget = state.faults.budget;
    if inode.read_faults_in_a_row >= budget.read_faults_in_a_row_per_file_max {
        inode.read_faults_in_a_row = 0;
        return Ok(read);
    }
    let faulted = inject_read_fault(inode, state, &mut buf[..read], start);
    inode.read_faults_in_a_row = if faulted.is_some() {
        inode.read_faults_in_a_row + 1
    } else {
        0
    };
    match faulted {
        Some(ReadFault::Error(error)) => Err(error),
        Some(ReadFault::Corrupted) | None => Ok(read),
    }
}

enum ReadFault {
    Error(io::Error),
    Corrupted,
}

/// Draws at most one new fault for a read of `buf.len()` bytes at `start`, whose buffer already
/// holds the stored bytes.
fn inject_read_fault(
    inode: &mut Inode,
    state: &mut State,
    buf: &mut [u8],
    start: u64,
) -> Option<ReadFault> {
    let end = start + buf.len() as u64;
    let faults = state.faults;
    if state.inject(faults.read_error_probability, state.counts.read_errors) {
        state.counts.read_errors += 1;
        return Some(ReadFault::Error(input_output_error("transient read error")));
    }
    if state.inject(
        faults.latent_sector_error_probability,
        state.counts.latent_sector_errors,
    ) {
        let first =
            first_damageable_byte(faults.budget.latent_sector_error_scope, inode.trusted_len);
        let eligible = sectors_of(first.max(start), end);
        // Under `UnsyncedBytesOnly` a sector holding any trusted byte is not eligible.
        let eligible = eligible.start.max(first.div_ceil(SECTOR_BYTES))..eligible.end;
        if !eligible.is_empty() {
            let sector = state.random.gen_range(eligible);
            inode.unreadable_sectors.insert(sector);
            state.counts.latent_sector_errors += 1;
            return Some(ReadFault::Error(input_output_error(
                "a sector became unreadable",
            )));
        }
    }
    if state.inject(
        faults.read_corruption_probability,
        state.counts.read_corruptions,
    ) {
        let first = first_damageable_byte(faults.budget.corruption_scope, inode.trusted_len);
        if first.max(start) < end {
            let position = state.random.gen_range(first.max(start)..end);
            let bit = state.random.gen_range(0..u8::BITS);
            buf[to_index(position - start)] ^= 1 << bit;
            state.counts.read_corruptions += 1;
            return Some(ReadFault::Corrupted);
        }
    }
    None
}

/// The write path: ENOSPC, else maybe a transient error applying a prefix of the sectors, else
/// the whole write.
fn write_cached(
    inode_id: u64,
    inode: &mut Inode,
    state: &mut State,
    buf: &[u8],
    offset: u64,
) -> io::Result<()> {
    state.accrue_latency(Operation::Write);
    let end = offset.checked_add(buf.len() as u64).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "write beyond the largest offset",
        )
    })?;
    if let Some(capacity) = state.faults.capacity_bytes {
        let growth = end.saturating_sub(inode.current.len() as u64);
        let used = state.used_bytes_excluding(Some(inode_id)) + inode.current.len() as u64;
        if growth > 0 && used + growth > capacity {
            state.counts.storage_full_errors += 1;
            return Err(storage_full_error());
        }
    }
    if !buf.is_empty()
        && state.inject(
            state.faults.write_error_probability,
            state.counts.write_errors,
        )
    {
        let pieces = sector_pieces(offset, buf);
        let applied = state.random.gen_range(0..pieces.len());
        state.counts.write_errors += 1;
        if applied > 0 {
            state.counts.write_errors_partly_applied += 1;
        }
        for piece in pieces.into_iter().take(applied) {
            inode.record(piece);
        }
        return Err(input_output_error("transient write error"));
    }
    inode.record(PendingOperation::Write {
        offset,
        data: buf.to_vec(),
    });
    Ok(())
}

/// The sync path: maybe EIO, forgetting the pending operations as Linux does, else writes them.
fn sync_cached(inode: &mut Inode, state: &mut State) -> io::Result<()> {
    state.accrue_latency(Operation::Sync);
    inode.debug_assert_cache_consistent();
    if state.inject(
        state.faults.sync_error_probability,
        state.counts.sync_errors,
    ) {
        let writeback = writeback::keep_independently(&mut state.random, &inode.pending);
        state.counts.sync_errors += 1;
        state.counts.pending_writes_lost += writeback.writes_lost;
        state.counts.pending_writes_torn += writeback.writes_torn;
        inode.write_back(&writeback.survivors);
        if state.random.gen_bool(FAILED_SYNC_DROPS_PAGES_PROBABILITY) {
            inode.current = inode.durable.clone();
            inode.cache_diverged = false;
        } else {
            inode.cache_diverged |= inode.current != inode.durable;
        }
        return Err(input_output_error(
            "sync failed; the file's unsynced writes are in an unknown state",
        ));
    }
    let pending = std::mem::take(&mut inode.pending);
    inode.write_back(&pending);
    inode.trusted_len = inode.durable.len() as u64;
    if state.faults.budget.latent_sector_error_scope == FaultScope::UnsyncedBytesOnly {
        inode.unreadable_sectors.clear();
    }
    state.syncs += 1;
    inode.debug_assert_cache_consistent();
    Ok(())
}

impl DiskFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with_inode(|inode, state| read_cached(inode, state, buf, offset))?
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let inode_id = self.inode;
        self.with_inode(|inode, state| write_cached(inode_id, inode, state, buf, offset))?
    }

    fn len(&self) -> io::Result<u64> {
        self.with_inode(|inode, _| inode.current.len() as u64)
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.with_inode(|inode, state| {
            state.accrue_latency(Operation::Metadata);
            inode.record(PendingOperation::Truncate { len });
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.with_inode(sync_cached)?
    }
}
