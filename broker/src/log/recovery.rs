//! Bringing a partition directory back to a consistent log after a clean or unclean stop.
//!
//! The checkpoint file `recovery-point.checkpoint`, replaced atomically, holds one line:
//!
//! ```text
//! skiff-recovery-point 1 <recovery point offset> <clean: 0 or 1>
//! ```
//!
//! Every batch below the recovery point was synced, and every segment lying wholly below it was
//! sealed with its index files synced, so those segments are trusted: their indexes are loaded
//! (and rebuilt if not sane) without reading the log. Every other segment is scanned batch by
//! batch: header, length and CRC32C checked, offsets dense. The scan stops at the first torn,
//! corrupt or discontinuous batch; the file is truncated there and later segments are deleted.
//! `clean = 1` (written only by a clean close, with the recovery point at the log end) also
//! trusts the last segment; the first open after a clean close rewrites it as unclean.

use std::path::Path;
use std::sync::Arc;

use super::error::LogError;
use super::offset_index::OffsetIndex;
use super::record_batch::{validate, RecordBatchHeader, HEADER_BYTES};
use super::segment::{
    parse_base_offset, remove_segment_files, segment_path, Segment, INDEX_EXTENSION, LOG_EXTENSION,
    SEGMENT_OFFSETS_MAX, TIME_INDEX_EXTENSION,
};
use super::time_index::TimeIndex;
use crate::io::disk::{read_whole, write_atomically};
use crate::io::{DirEntry, Disk};

/// Name of the checkpoint file in the partition directory.
pub const CHECKPOINT_FILE_NAME: &str = "recovery-point.checkpoint";
/// Suffix of leftovers from an interrupted `write_atomically`, deleted on open.
pub const TEMPORARY_SUFFIX: &str = ".tmp";
/// A replicated partition's Raft hard state (term and vote), kept beside its segments.
pub const RAFT_STATE_FILE_NAME: &str = "raft-state.json";
/// A replicated partition's log start and the Raft term of the entry before it, recorded
/// before retention or a reset deletes that entry.
pub const LOG_START_FILE_NAME: &str = "log-start.json";
/// Files other modules keep in a partition directory, which the log leaves alone.
pub const FOREIGN_FILE_NAMES: [&str; 4] = [
    "leader-epoch-checkpoint",
    "partition.metadata",
    RAFT_STATE_FILE_NAME,
    LOG_START_FILE_NAME,
];
/// Extension of idempotent-producer snapshots, named by offset like segments.
pub const SNAPSHOT_EXTENSION: &str = "snapshot";
/// The most segments one partition directory may hold; bounds every scan over them.
pub const SEGMENTS_PER_PARTITION_MAX: usize = 1 << 20;

const CHECKPOINT_MAGIC: &str = "skiff-recovery-point";
const CHECKPOINT_VERSION: u32 = 1;

/// What the recovery point checkpoint says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub recovery_point: i64,
    pub clean: bool,
}

impl Checkpoint {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "{CHECKPOINT_MAGIC} {CHECKPOINT_VERSION} {} {}\n",
            self.recovery_point,
            u8::from(self.clean)
        )
        .into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Option<Checkpoint> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.trim_end().split(' ');
        if fields.next()? != CHECKPOINT_MAGIC
            || fields.next()?.parse::<u32>().ok()? != CHECKPOINT_VERSION
        {
            return None;
        }
        let recovery_point: i64 = fields.next()?.parse().ok()?;
        let clean = match fields.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        if fields.next().is_some() || recovery_point < 0 {
            return None;
        }
        Some(Checkpoint {
            recovery_point,
            clean,
        })
    }

    /// Reads the checkpoint; absent or unreadable means "trust nothing".
    pub fn read(disk: &dyn Disk, dir: &Path) -> Result<Option<Checkpoint>, LogError> {
        let path = dir.join(CHECKPOINT_FILE_NAME);
        if !disk.exists(&path) {
            return Ok(None);
        }
        let checkpoint = Checkpoint::decode(&read_whole(disk, &path)?);
        if checkpoint.is_none() {
            tracing::warn!(dir = %dir.display(), "unreadable recovery checkpoint; scanning every segment");
        }
        Ok(checkpoint)
    }

    /// Replaces the checkpoint durably.
    pub fn write(&self, disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
        write_atomically(disk, &dir.join(CHECKPOINT_FILE_NAME), &self.encode())?;
        Ok(())
    }
}

/// What recovery found and did, for the log line at start-up.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The recovery point read from the checkpoint, if any.
    pub recovery_point: Option<i64>,
    pub clean_shutdown: bool,
    /// Segments whose index files were trusted.
    pub segments_loaded: usize,
    /// Segments read batch by batch.
    pub segments_scanned: usize,
    /// Trusted segments whose index files were missing or not sane.
    pub indexes_rebuilt: usize,
    /// Bytes cut from the end of the log: torn or corrupt tails, and the unused zeros of a
    /// preallocated segment.
    pub truncated_bytes: u64,
    /// Whole segments deleted after the first inconsistency.
    pub segments_deleted: usize,
    /// Leftover temporary and orphan index files removed.
    pub stray_files_removed: usize,
}

/// Lists the segment base offsets in `dir`, removing leftovers, and rejecting a directory that
/// holds anything else.
pub fn list_segments(
    disk: &dyn Disk,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<i64>, LogError> {
    let entries = disk.list(dir)?;
    if entries.len() > 3 * SEGMENTS_PER_PARTITION_MAX {
        return Err(LogError::CorruptDirectory(format!(
            "{} holds {} entries, more than any log",
            dir.display(),
            entries.len()
        )));
    }
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for DirEntry { name, is_dir } in entries {
        let unexpected = || {
            LogError::CorruptDirectory(format!(
                "unexpected entry {name:?} in partition directory {}",
                dir.display()
            ))
        };
        if is_dir {
            return Err(unexpected());
        }
        if name.ends_with(TEMPORARY_SUFFIX) {
            disk.remove_file(&dir.join(&name))?;
            report.stray_files_removed += 1;
            continue;
        }
        if name == CHECKPOINT_FILE_NAME || FOREIGN_FILE_NAMES.contains(&name.as_str()) {
            continue;
        }
        let (stem, extension) = name.rsplit_once('.').ok_or_else(unexpected)?;
        let base_offset = parse_base_offset(stem).ok_or_else(unexpected)?;
        match extension {
            LOG_EXTENSION => logs.push(base_offset),
            INDEX_EXTENSION | TIME_INDEX_EXTENSION => indexes.push((base_offset, name.clone())),
            SNAPSHOT_EXTENSION => {}
            _ => return Err(unexpected()),
        }
    }
    // The listing is sorted by name and names are zero-padded, so offsets are sorted too.
    debug_assert!(logs.windows(2).all(|pair| pair[0] < pair[1]));
    for (base_offset, name) in indexes {
        if logs.binary_search(&base_offset).is_err() {
            disk.remove_file(&dir.join(name))?;
            report.stray_files_removed += 1;
        }
    }
    Ok(logs)
}

/// Recovers every segment of `dir` in order. Returns the segments (possibly none) and the
/// report; files cut or deleted here are synced before returning.
pub fn recover_segments(
    disk: &dyn Disk,
    dir: &Path,
    checkpoint: Option<Checkpoint>,
    index_interval_bytes: u32,
    wall_ms: i64,
) -> Result<(Vec<Segment>, RecoveryReport), LogError> {
    let mut report = RecoveryReport {
        recovery_point: checkpoint.map(|checkpoint| checkpoint.recovery_point),
        clean_shutdown: checkpoint.is_some_and(|checkpoint| checkpoint.clean),
        ..RecoveryReport::default()
    };
    let bases = list_segments(disk, dir, &mut report)?;
    let mut segments: Vec<Segment> = Vec::with_capacity(bases.len());
    for (index, &base_offset) in bases.iter().enumerate() {
        if let Some(previous) = segments.last() {
            if previous.next_offset() != base_offset {
                tracing::warn!(
                    dir = %dir.display(),
                    expected = previous.next_offset(),
                    found = base_offset,
                    "offset discontinuity between segments; deleting the rest of the log"
                );
                delete_from(disk, dir, &bases[index..], &mut report)?;
                break;
            }
        }
        let trusted_end = trusted_end_offset(checkpoint, &bases, index);
        let loaded = match trusted_end {
            Some(next_offset) => load_trusted(disk, dir, base_offset, next_offset, wall_ms)?,
            None => None,
        };
        let segment = match loaded {
            Some(segment) => {
                report.segments_loaded += 1;
                segment
            }
            None => {
                if trusted_end.is_some() {
                    report.indexes_rebuilt += 1;
                }
                report.segments_scanned += 1;
                let (segment, truncated_bytes) =
                    scan_segment(disk, dir, base_offset, index_interval_bytes, wall_ms)?;
                report.truncated_bytes += truncated_bytes;
                if truncated_bytes > 0 {
                    segments.push(segment);
                    delete_from(disk, dir, &bases[index + 1..], &mut report)?;
                    break;
                }
                segment
            }
        };
        segments.push(segment);
    }
    Ok((segments, report))
}

/// The end offset a segment is trusted to have, if the checkpoint covers it wholly.
fn trusted_end_offset(checkpoint: Option<Checkpoint>, bases: &[i64], index: usize) -> Option<i64> {
    let checkpoint = checkpoint?;
    match bases.get(index + 1) {
        Some(&next_base) if next_base <= checkpoint.recovery_point => Some(next_base),
        Some(_) => None,
        None if checkpoint.clean && checkpoint.recovery_point >= bases[index] => {
            Some(checkpoint.recovery_point)
        }
        None => None,
    }
}

fn delete_from(
    disk: &dyn Disk,
    dir: &Path,
    bases: &[i64],
    report: &mut RecoveryReport,
) -> Result<(), LogError> {
    for &base_offset in bases {
        remove_segment_files(disk, dir, base_offset)?;
        report.segments_deleted += 1;
    }
    Ok(())
}

/// Loads a trusted segment's indexes, or `None` if they are missing or not sane.
fn load_trusted(
    disk: &dyn Disk,
    dir: &Path,
    base_offset: i64,
    next_offset: i64,
    wall_ms: i64,
) -> Result<Option<Segment>, LogError> {
    let offset_count = next_offset - base_offset;
    if !(0..=SEGMENT_OFFSETS_MAX).contains(&offset_count) {
        return Ok(None);
    }
    let index_path = segment_path(dir, base_offset, INDEX_EXTENSION);
    let time_index_path = segment_path(dir, base_offset, TIME_INDEX_EXTENSION);
    if !disk.exists(&index_path) || !disk.exists(&time_index_path) {
        return Ok(None);
    }
    let log_file = disk.open(&segment_path(dir, base_offset, LOG_EXTENSION), false)?;
    let size_bytes = log_file.len()?;
    let offset_count = offset_count as u64;
    let Some(offset_index) =
        OffsetIndex::decode_checked(&read_whole(disk, &index_path)?, offset_count, size_bytes)
    else {
        return Ok(None);
    };
    let Some(time_index) =
        TimeIndex::decode_checked(&read_whole(disk, &time_index_path)?, offset_count)
    else {
        return Ok(None);
    };
    // A non-empty sealed segment always ends its time index with its newest timestamp, and an
    // empty one holds no offsets: anything else means the files do not belong together.
    if (size_bytes == 0) != (offset_count == 0)
        || (size_bytes > 0 && time_index.entries().is_empty())
        || (size_bytes > 0 && (size_bytes as usize) < HEADER_BYTES)
    {
        return Ok(None);
    }
    Ok(Some(Segment::loaded(
        log_file,
        base_offset,
        next_offset,
        size_bytes,
        offset_index,
        time_index,
        wall_ms,
    )))
}

/// Reads a segment batch by batch, rebuilding its indexes, and cuts it at the first batch that
/// is incomplete, corrupt, or not at the expected offset. Returns the segment and the bytes cut.
pub fn scan_segment(
    disk: &dyn Disk,
    dir: &Path,
    base_offset: i64,
    index_interval_bytes: u32,
    wall_ms: i64,
) -> Result<(Segment, u64), LogError> {
    let log_file = disk.open(&segment_path(dir, base_offset, LOG_EXTENSION), false)?;
    let file_bytes = log_file.len()?;
    let mut segment = Segment::empty(Arc::clone(&log_file), base_offset, wall_ms);
    let mut buffer = Vec::new();
    // Bounded: each iteration consumes at least one header's worth of the file.
    while segment.size_bytes() < file_bytes {
        let position = segment.size_bytes();
        match read_valid_batch(&*log_file, position, file_bytes, &mut buffer)? {
            Some(header)
                if header.base_offset == segment.next_offset()
                    && header.next_offset() - base_offset <= SEGMENT_OFFSETS_MAX =>
            {
                segment.index_batch(&header, position, index_interval_bytes);
            }
            _ => break,
        }
    }
    let cut_bytes = file_bytes - segment.size_bytes();
    if cut_bytes > 0 {
        if starts_with_zeros(&*log_file, segment.size_bytes(), file_bytes) {
            tracing::info!(
                dir = %dir.display(),
                base_offset,
                position = segment.size_bytes(),
                cut_bytes,
                "cutting the zeros after the last batch (a preallocated segment, or a write \
                 that never reached the disk)"
            );
        } else {
            tracing::warn!(
                dir = %dir.display(),
                base_offset,
                position = segment.size_bytes(),
                cut_bytes,
                "truncating a torn or corrupt segment tail"
            );
        }
        log_file.truncate(segment.size_bytes())?;
    }
    // The scanned bytes may still sit only in the page cache (a process crash, not a power
    // loss); syncing here lets the log report everything it recovered as durable.
    log_file.sync()?;
    Ok((segment, cut_bytes))
}

/// Whether the bytes at `position` start with zeros for as long as a batch header: no batch
/// was begun there. Only for the log line (a read error says no): either way the tail is cut.
fn starts_with_zeros(file: &dyn crate::io::DiskFile, position: u64, file_bytes: u64) -> bool {
    let length = (file_bytes - position).min(HEADER_BYTES as u64) as usize;
    let mut bytes = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut bytes[..length], position).is_ok()
        && bytes[..length].iter().all(|&byte| byte == 0)
}

/// Reads and validates the batch at `position`, or `None` if it is not a whole valid batch.
fn read_valid_batch(
    file: &dyn crate::io::DiskFile,
    position: u64,
    file_bytes: u64,
    buffer: &mut Vec<u8>,
) -> Result<Option<RecordBatchHeader>, LogError> {
    let remaining = file_bytes - position;
    if remaining < HEADER_BYTES as u64 {
        return Ok(None);
    }
    let mut header_bytes = [0u8; HEADER_BYTES];
    file.read_exact_at(&mut header_bytes, position)?;
    let Ok(header) = RecordBatchHeader::parse(&header_bytes) else {
        return Ok(None);
    };
    if header.total_bytes() as u64 > remaining {
        return Ok(None);
    }
    buffer.resize(header.total_bytes(), 0);
    file.read_exact_at(buffer, position)?;
    Ok(validate(buffer).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trips_and_rejects_noise() {
        let checkpoint = Checkpoint {
            recovery_point: 1234,
            clean: true,
        };
        assert_eq!(Checkpoint::decode(&checkpoint.encode()), Some(checkpoint));
        insta::assert_snapshot!(String::from_utf8(checkpoint.encode()).unwrap(), @"skiff-recovery-point 1 1234 1");
        assert_eq!(Checkpoint::decode(b"skiff-recovery-point 1 12 2\n"), None);
        assert_eq!(Checkpoint::decode(b"skiff-recovery-point 1 -5 0\n"), None);
        assert_eq!(Checkpoint::decode(b"garbage"), None);
    }

    #[test]
    fn trusts_only_segments_wholly_below_the_recovery_point() {
        let bases = [0, 100, 200];
        let unclean = Some(Checkpoint {
            recovery_point: 150,
            clean: false,
        });
        assert_eq!(trusted_end_offset(unclean, &bases, 0), Some(100));
        assert_eq!(trusted_end_offset(unclean, &bases, 1), None);
        assert_eq!(trusted_end_offset(unclean, &bases, 2), None);
        let clean = Some(Checkpoint {
            recovery_point: 250,
            clean: true,
        });
        assert_eq!(trusted_end_offset(clean, &bases, 2), Some(250));
        assert_eq!(trusted_end_offset(None, &bases, 0), None);
    }
}
