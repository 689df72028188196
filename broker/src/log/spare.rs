//! Preallocated segments: the next segment's file, written with zeros and synced before it is
//! needed (`preallocate`, broker default `log.preallocate`).
//!
//! Why: under the sync policy every acknowledgement waits for an `fdatasync` of the active
//! segment. When appends grow the file, that `fdatasync` must also commit the new file size
//! and the newly allocated blocks to the file system's journal, and under load the journal
//! commit is most of its time (`bench/fsync_latency.c` measures both; `bench/README.md` has the
//! figures). Writing over blocks that were written and synced before changes no metadata, so
//! the `fdatasync` only writes the data.
//!
//! Off by default: the zeros are written while the data goes on, and on the machine measured
//! that contention took more from the acknowledgement latency than the shorter fsyncs gave
//! back (`bench/README.md`). It suits a disk with bandwidth to spare.
//!
//! ```text
//!  active segment half way to the spare's take-over ─► SparePlan (driver, off the append path):
//!      spare.log.tmp ◄─ zeros, in chunks, synced every SPARE_SYNC_BYTES, synced at the end
//!  roll (at segment.bytes, or early: the spare is ready and the active segment grows its
//!  file, or would grow it past its preallocated length)
//!      ─► seal: cut the old segment's unused zeros (synced with the next sync)
//!      └► rename spare.log.tmp to <base>.log (durable with the next sync_dir), appends
//!         overwrite its zeros
//!  no spare ready ─► the segment grows its file, as without preallocation
//! ```
//!
//! Spares grow with the partition. A segment that grows its file (a new partition's first, or
//! the active one after a restart) is followed by a spare of [`SPARE_BYTES_FIRST`], planned
//! once it holds half of that; each later spare is twice the length of the active segment's
//! file, up to `segment.bytes`, planned when the active segment is half full. So a busy
//! partition moves to preallocated segments within a few tens of MiB, and a quiet one never
//! pays for a spare much larger than what it holds.
//!
//! Recovery needs nothing new: the zeros after the last batch are not a valid batch, so the
//! scan stops there and cuts them, as it cuts a torn tail. A leftover spare ends in `.tmp` and
//! is removed at open, whatever state it was left in. The cost: each busy partition writes its
//! data twice (zeros first), holds up to one more `segment.bytes` of disk from when its active
//! segment is half full until the roll, and rolls early a few times in its life (once after
//! each restart, and while its spares grow to `segment.bytes`).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::io::Disk;

/// The spare's file name in the partition directory. The `.tmp` suffix makes recovery remove a
/// spare left by a crash: it is never trusted, since nothing records that it was completed.
pub const SPARE_FILE_NAME: &str = "spare.log.tmp";
/// The length of the spare that follows a segment growing its file. Small enough to be written
/// in a fraction of a second; a partition that has written half of it into one segment is
/// busy enough to be worth it. (Scaled down in unit tests, so that their small segments go
/// through the whole progression.)
#[cfg(not(test))]
pub const SPARE_BYTES_FIRST: u64 = 64 << 20;
#[cfg(test)]
pub const SPARE_BYTES_FIRST: u64 = 1024;
/// Zeros written per `write_at` while preparing a spare.
pub const SPARE_WRITE_CHUNK_BYTES: usize = 1 << 20;
/// Zeros written between two syncs while preparing a spare: bounds the dirty page cache the
/// preparation builds up, so that its writeback never lands at once in one sync.
pub const SPARE_SYNC_BYTES: u64 = 16 << 20;

const _: () = assert!(SPARE_SYNC_BYTES % SPARE_WRITE_CHUNK_BYTES as u64 == 0);

/// The path of a partition directory's spare.
pub fn spare_path(dir: &Path) -> PathBuf {
    dir.join(SPARE_FILE_NAME)
}

/// The work of preparing one spare, taken by [`super::PartitionLog::begin_spare`], run by the
/// driver off the append path with [`SparePlan::execute`], and handed back with
/// [`super::PartitionLog::complete_spare`].
#[derive(Debug)]
pub struct SparePlan {
    pub path: PathBuf,
    /// The spare's length: the `segment.bytes` in force when it was planned.
    pub bytes: u64,
}

impl SparePlan {
    /// Writes the spare with zeros and syncs it, unless `gate` is closed first. Blocking; reads
    /// no shared state of the log, so appends and syncs go on meanwhile. On error the partial
    /// spare is removed (best effort): a full disk must not keep space that appends need.
    pub fn execute(&self, disk: &dyn Disk, gate: &SpareGate) -> io::Result<()> {
        let _turn = gate
            .turn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if gate.closed.load(Ordering::Acquire) {
            return Err(gate_closed());
        }
        let result = self.write_zeros(disk, &gate.closed);
        if result.is_err() && disk.exists(&self.path) {
            let _ = disk.remove_file(&self.path);
        }
        result
    }

    fn write_zeros(&self, disk: &dyn Disk, closed: &AtomicBool) -> io::Result<()> {
        let stop = || closed.load(Ordering::Acquire).then(gate_closed);
        let file = disk.open(&self.path, true)?;
        file.truncate(0)?;
        let zeros = vec![0u8; SPARE_WRITE_CHUNK_BYTES];
        let mut written = 0u64;
        // Bounded: each step writes at least one byte, until `bytes`.
        while written < self.bytes {
            let length = (self.bytes - written).min(SPARE_WRITE_CHUNK_BYTES as u64) as usize;
            if let Some(error) = stop() {
                return Err(error);
            }
            file.write_at(&zeros[..length], written)?;
            written += length as u64;
            if written % SPARE_SYNC_BYTES == 0 {
                file.sync()?;
            }
        }
        file.sync()
    }
}

/// Why a spare was not written: its gate was closed.
fn gate_closed() -> io::Error {
    io::Error::other("the partition's directory is being removed")
}

/// Lets a partition's directory be removed safely while a spare may be being written: once
/// [`SpareGate::close`] returns, no spare write is running or will start, so none can land in a
/// directory of the same name created afterwards.
#[derive(Debug, Default)]
pub struct SpareGate {
    closed: AtomicBool,
    /// Held for the whole of a spare's preparation.
    turn: Mutex<()>,
}

impl SpareGate {
    /// Stops spare preparation for good, waiting for one in progress to stop (within one
    /// chunk's write, checked before each).
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        drop(
            self.turn
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimDisk;

    #[test]
    fn a_spare_is_zeros_of_the_planned_length_and_durable() {
        let disk = SimDisk::new();
        let dir = Path::new("/p");
        disk.create_dir_all(dir).unwrap();
        let bytes = SPARE_SYNC_BYTES + 3 * SPARE_WRITE_CHUNK_BYTES as u64 + 17;
        let plan = SparePlan {
            path: spare_path(dir),
            bytes,
        };
        plan.execute(&disk, &SpareGate::default()).unwrap();
        disk.sync_dir(dir).unwrap();
        disk.crash_losing_everything_unsynced();
        let file = disk.open(&spare_path(dir), false).unwrap();
        assert_eq!(file.len().unwrap(), bytes);
        let mut contents = vec![1u8; bytes as usize];
        file.read_exact_at(&mut contents, 0).unwrap();
        assert!(contents.iter().all(|&byte| byte == 0));
    }

    #[test]
    fn a_closed_gate_writes_nothing() {
        let disk = SimDisk::new();
        let dir = Path::new("/p");
        disk.create_dir_all(dir).unwrap();
        let gate = SpareGate::default();
        gate.close();
        let plan = SparePlan {
            path: spare_path(dir),
            bytes: 10,
        };
        assert!(plan.execute(&disk, &gate).is_err());
        assert!(!disk.exists(&plan.path));
    }
}
