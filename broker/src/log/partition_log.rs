//! [`PartitionLog`]: the segmented, indexed, crash-recovering log of one partition.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::config::LogConfig;
use super::error::{BatchError, LogError};
use super::record_batch::{rewritten_prefix, RecordBatchHeader, REWRITTEN_PREFIX_BYTES};
use super::recovery::{recover_segments, Checkpoint, RecoveryReport};
use super::retention::{segments_to_delete, SegmentSummary};
use super::segment::{remove_segment_files, Segment, SEGMENT_OFFSETS_MAX};
use super::spare::{spare_path, SparePlan, SPARE_BYTES_FIRST};
use crate::io::{Disk, DiskFile};

/// What `append` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub bytes: usize,
}

/// The work of one sync, taken by [`PartitionLog::begin_sync`] and run by the driver off the
/// reactor with [`SyncPlan::execute`]; then reported with [`PartitionLog::complete_sync`].
pub struct SyncPlan {
    /// The log end offset this sync makes durable.
    pub end_offset: i64,
    files: Vec<Arc<dyn DiskFile>>,
    directories: Vec<PathBuf>,
    /// A new recovery point to record after everything else is durable.
    checkpoint: Option<(PathBuf, Checkpoint)>,
}

impl std::fmt::Debug for SyncPlan {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SyncPlan")
            .field("end_offset", &self.end_offset)
            .field("files", &self.files.len())
            .field("directories", &self.directories)
            .field("checkpoint", &self.checkpoint)
            .finish()
    }
}

impl SyncPlan {
    /// Syncs the files, then the directories, then records the new recovery point. Blocking.
    /// On error the files' contents are unknown: the driver must drop the log and reopen it,
    /// which recovers from what is really on disk.
    pub fn execute(&self, disk: &dyn Disk) -> io::Result<()> {
        for file in &self.files {
            file.sync()?;
        }
        for directory in &self.directories {
            disk.sync_dir(directory)?;
        }
        if let Some((dir, checkpoint)) = &self.checkpoint {
            crate::io::disk::write_atomically(
                disk,
                &dir.join(super::recovery::CHECKPOINT_FILE_NAME),
                &checkpoint.encode(),
            )?;
        }
        Ok(())
    }

    /// How many files and directories the plan syncs.
    pub fn sync_count(&self) -> usize {
        self.files.len() + self.directories.len()
    }
}

/// Which sealed segments a cleanup pass may delete (always oldest first, never the active
/// segment, and never past the caller's bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Those past `retention.ms` or `retention.bytes` at `wall_ms`.
    Retention { wall_ms: i64 },
    /// Every one below the bound, whatever its age: its contents are superseded by later
    /// entries (the offsets log, below its latest complete snapshot).
    Superseded,
}

/// The log of one partition: a sequence of segments with dense offsets from
/// `log_start_offset` to `log_end_offset`, the last segment active.
pub struct PartitionLog {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset, contiguous, never empty; the last one is active.
    segments: Vec<Segment>,
    durable_end_offset: i64,
    /// Whether the active segment's log file has writes no sync has covered.
    active_unsynced: bool,
    /// Batch bytes appended since the last `begin_sync` (or open): what the next sync must
    /// write out, at most.
    unsynced_bytes: u64,
    /// Sealed segments' log and index files with writes no sync has covered.
    unsynced_files: Vec<Arc<dyn DiskFile>>,
    /// Whether segment files were created or removed since the directory was last synced.
    directory_unsynced: bool,
    /// The recovery point most recently handed to a sync (or read at open).
    checkpointed_recovery_point: i64,
    /// The end offset of a sync between `begin_sync` and `complete_sync`.
    sync_in_flight: Option<i64>,
    /// Where the spare for the next segment stands (`preallocate`).
    spare: SpareState,
    /// The length of the active segment's file when it was adopted from a spare: appends
    /// within it change no file size. `None`: the active segment grows its file.
    active_preallocated_bytes: Option<u64>,
}

/// The spare file for the next segment: see [`super::spare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SpareState {
    None,
    /// Handed to the driver by `begin_spare`, not yet completed.
    Preparing {
        bytes: u64,
    },
    /// Zero-filled and synced: the next roll adopts it.
    Ready {
        bytes: u64,
    },
}

impl PartitionLog {
    /// Opens (creating if absent) the log in `dir` and recovers it. Everything recovered is
    /// synced before this returns, so `durable_end_offset() == log_end_offset()`.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        wall_ms: i64,
    ) -> Result<(PartitionLog, RecoveryReport), LogError> {
        config.assert_valid();
        if !disk.exists(dir) {
            disk.create_dir_all(dir)?;
            if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
                if disk.exists(parent) {
                    disk.sync_dir(parent)?;
                }
            }
            disk.sync_dir(dir)?;
        }
        let checkpoint = Checkpoint::read(&*disk, dir)?;
        let (mut segments, report) = recover_segments(
            &*disk,
            dir,
            checkpoint,
            config.index_interval_bytes,
            wall_ms,
        )?;
        if segments.is_empty() {
            segments.push(Segment::create(&*disk, dir, 0, wall_ms)?);
        }
        // Removals and truncations made by recovery must be durable before anything new is
        // written, or a crash could bring back stale batches behind new ones.
        disk.sync_dir(dir)?;
        let log_end_offset = segments.last().expect("never empty").next_offset();
        let mut recovery_point = checkpoint.map_or(0, |checkpoint| checkpoint.recovery_point);
        let stale = checkpoint.is_some_and(|checkpoint| {
            checkpoint.clean || checkpoint.recovery_point > log_end_offset
        });
        if stale {
            // Until the next clean close the last segment's index files go stale; and a recovery
            // point past the end (a truncation that crashed before lowering it) would otherwise
            // come to cover segments written later and never synced.
            recovery_point = recovery_point.min(log_end_offset);
            Checkpoint {
                recovery_point,
                clean: false,
            }
            .write(&*disk, dir)?;
        }
        let log = PartitionLog {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments,
            durable_end_offset: log_end_offset,
            active_unsynced: false,
            unsynced_bytes: 0,
            unsynced_files: Vec::new(),
            directory_unsynced: false,
            checkpointed_recovery_point: recovery_point,
            sync_in_flight: None,
            spare: SpareState::None,
            active_preallocated_bytes: None,
        };
        log.assert_invariants();
        tracing::info!(dir = %dir.display(), ?report, log_end_offset, "opened partition log");
        Ok((log, report))
    }

    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    fn assert_invariants(&self) {
        assert!(!self.segments.is_empty());
        debug_assert!(self
            .segments
            .windows(2)
            .all(|pair| pair[0].next_offset() == pair[1].base_offset()));
        assert!(self.durable_end_offset <= self.log_end_offset());
        assert!(self.log_start_offset() <= self.log_end_offset());
    }

    pub fn log_start_offset(&self) -> i64 {
        self.segments[0].base_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Every offset below this survives a crash.
    pub fn durable_end_offset(&self) -> i64 {
        self.durable_end_offset
    }

    /// Batch bytes appended since the last sync began.
    pub fn unsynced_bytes(&self) -> u64 {
        self.unsynced_bytes
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(Segment::size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn update_config(&mut self, config: LogConfig) {
        config.assert_valid();
        self.config = config;
    }

    /// Appends one batch, exactly as received from a producer and already checked with
    /// [`super::record_batch::validate`] (its CRC is not recomputed here). The copy written gets
    /// base offset = log end offset and the given leader epoch. Rolls first if the active
    /// segment would pass `segment.bytes` or is older than `segment.ms`. Does not sync.
    pub fn append(
        &mut self,
        batch: &[u8],
        leader_epoch: i32,
        wall_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let header = RecordBatchHeader::parse(batch)?;
        if header.total_bytes() != batch.len() {
            return Err(BatchError::Incomplete {
                available: batch.len(),
                needed: header.total_bytes(),
            }
            .into());
        }
        debug_assert!(
            super::record_batch::validate(batch).is_ok(),
            "append takes only validated batches"
        );
        let limit = u64::from(self.config.max_message_bytes).min(self.config.segment_bytes);
        if batch.len() as u64 > limit {
            return Err(LogError::RecordTooLarge {
                bytes: batch.len(),
                limit,
            });
        }
        if self.should_roll(&header, batch.len(), wall_ms) {
            self.roll(wall_ms)?;
        }
        let base_offset = self.log_end_offset();
        // Only the prefix holding the base offset and leader epoch is copied to be rewritten;
        // the rest goes to the file from the request's own buffer, in the same write.
        let prefix = rewritten_prefix(batch, base_offset, leader_epoch);
        let header = RecordBatchHeader {
            base_offset,
            partition_leader_epoch: leader_epoch,
            ..header
        };
        let interval = self.config.index_interval_bytes;
        let parts: [&[u8]; 2] = [&prefix, &batch[REWRITTEN_PREFIX_BYTES..]];
        self.active_mut().append(&parts, &header, interval)?;
        self.active_unsynced = true;
        self.unsynced_bytes += batch.len() as u64;
        debug_assert_eq!(self.log_end_offset(), header.next_offset());
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
            bytes: batch.len(),
        })
    }

    fn should_roll(&self, header: &RecordBatchHeader, batch_bytes: usize, wall_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let too_big = active.size_bytes() + batch_bytes as u64 > self.config.segment_bytes;
        let too_old = wall_ms.saturating_sub(active.created_wall_ms()) >= self.config.segment_ms;
        let too_many_offsets = header.next_offset() - header.base_offset + active.next_offset()
            - active.base_offset()
            > SEGMENT_OFFSETS_MAX;
        // With a spare ready, a segment that grows its file (or would grow it past its
        // preallocated length) is sealed early: from then on appends change no file size.
        let spare_ready = matches!(self.spare, SpareState::Ready { .. });
        let outgrows_file = match self.active_preallocated_bytes {
            Some(file_bytes) => active.size_bytes() + batch_bytes as u64 > file_bytes,
            None => true,
        };
        too_big || too_old || too_many_offsets || (spare_ready && outgrows_file)
    }

    /// Seals the active segment (writing its indexes, cutting a preallocated file's unused
    /// zeros) and starts a new one at the log end, in the spare if one is ready.
    fn roll(&mut self, wall_ms: i64) -> Result<(), LogError> {
        let disk = Arc::clone(&self.disk);
        let dir = self.dir.clone();
        let index_files = self.active_mut().write_indexes(&*disk, &dir)?;
        self.unsynced_files.extend(index_files);
        // The cut must be durable before a checkpoint trusts this segment at its file's length:
        // the file goes into the next sync, which writes the checkpoint only after it.
        let released = self.active().release_unused_tail()?;
        if self.active_unsynced || released {
            let log_file = Arc::clone(self.active().log_file());
            self.unsynced_files.push(log_file);
            self.active_unsynced = false;
        }
        let base_offset = self.log_end_offset();
        self.active_preallocated_bytes = None;
        let segment = match self.spare {
            SpareState::Ready { bytes } => {
                self.spare = SpareState::None;
                match Segment::adopt_spare(&*disk, &spare_path(&dir), &dir, base_offset, wall_ms) {
                    Ok(segment) => {
                        tracing::debug!(dir = %dir.display(), base_offset, file_bytes = bytes,
                            "rolled into a preallocated segment");
                        self.active_preallocated_bytes = Some(bytes);
                        segment
                    }
                    Err(error) => {
                        tracing::warn!(dir = %dir.display(), %error,
                            "could not adopt the preallocated spare; starting an empty segment");
                        Segment::create(&*disk, &dir, base_offset, wall_ms)?
                    }
                }
            }
            SpareState::None | SpareState::Preparing { .. } => {
                Segment::create(&*disk, &dir, base_offset, wall_ms)?
            }
        };
        self.segments.push(segment);
        self.directory_unsynced = true;
        Ok(())
    }

    /// The spare the driver should prepare now, if any: with `preallocate` on, none ready or
    /// being prepared, and the active segment half way to where the spare takes over. Spares
    /// grow with the partition (see [`super::spare`]): after a segment that grows its file, the
    /// first is [`SPARE_BYTES_FIRST`]; each next one is twice the active segment's, up to
    /// `segment.bytes`. Call [`PartitionLog::complete_spare`] after.
    pub fn begin_spare(&mut self) -> Option<SparePlan> {
        if !self.config.preallocate || self.spare != SpareState::None {
            return None;
        }
        let segment_bytes = self.config.segment_bytes;
        let (takes_over_at, bytes) = match self.active_preallocated_bytes {
            Some(file_bytes) => (
                file_bytes.min(segment_bytes),
                file_bytes.saturating_mul(2).min(segment_bytes),
            ),
            None => {
                let first = SPARE_BYTES_FIRST.min(segment_bytes);
                (first, first)
            }
        };
        if self.active().size_bytes() < takes_over_at / 2 {
            return None;
        }
        self.spare = SpareState::Preparing { bytes };
        Some(SparePlan {
            path: spare_path(&self.dir),
            bytes,
        })
    }

    /// Records how the preparation of a spare from `begin_spare` ended. After a failure the
    /// next `begin_spare` tries again.
    pub fn complete_spare(&mut self, prepared: bool) {
        let SpareState::Preparing { bytes } = self.spare else {
            panic!("complete_spare must answer begin_spare");
        };
        self.spare = if prepared {
            SpareState::Ready { bytes }
        } else {
            SpareState::None
        };
    }

    /// What must be synced to make the current log end durable, or `None` if it already is.
    /// One sync runs at a time: call `complete_sync` (or drop the log after a failure) first.
    pub fn begin_sync(&mut self) -> Option<SyncPlan> {
        assert!(self.sync_in_flight.is_none(), "one sync at a time");
        let nothing_to_do = !self.active_unsynced
            && self.unsynced_files.is_empty()
            && !self.directory_unsynced
            && self.durable_end_offset == self.log_end_offset();
        if nothing_to_do {
            return None;
        }
        self.unsynced_bytes = 0;
        let mut files = std::mem::take(&mut self.unsynced_files);
        if self.active_unsynced {
            files.push(Arc::clone(self.active().log_file()));
            self.active_unsynced = false;
        }
        let mut directories = Vec::new();
        if std::mem::take(&mut self.directory_unsynced) {
            directories.push(self.dir.clone());
        }
        // Every sealed segment is in this plan or an earlier one, so once it completes the
        // active segment's base is a valid recovery point.
        let recovery_point = self.active().base_offset();
        let checkpoint = (recovery_point > self.checkpointed_recovery_point).then(|| {
            self.checkpointed_recovery_point = recovery_point;
            (
                self.dir.clone(),
                Checkpoint {
                    recovery_point,
                    clean: false,
                },
            )
        });
        let end_offset = self.log_end_offset();
        self.sync_in_flight = Some(end_offset);
        Some(SyncPlan {
            end_offset,
            files,
            directories,
            checkpoint,
        })
    }

    /// Records that a plan from `begin_sync` was executed successfully.
    pub fn complete_sync(&mut self, end_offset: i64) {
        assert_eq!(
            self.sync_in_flight.take(),
            Some(end_offset),
            "complete_sync must answer the last begin_sync"
        );
        self.durable_end_offset = self
            .durable_end_offset
            .max(end_offset.min(self.log_end_offset()));
        self.assert_invariants();
    }

    fn check_offset(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset() || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset(),
                log_end: self.log_end_offset(),
            });
        }
        Ok(())
    }

    /// The index of the segment holding `offset` (the last whose base is at or below it).
    fn segment_index(&self, offset: i64) -> usize {
        let after = self
            .segments
            .partition_point(|segment| segment.base_offset() <= offset);
        after.saturating_sub(1)
    }

    /// Reads whole batches from the one holding `offset`, as many as fit in `max_bytes` but at
    /// least one, all ending below `upper_bound` (the high watermark), from a single segment as
    /// Kafka does. Empty at the end of the log.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Bytes, LogError> {
        self.check_offset(offset)?;
        let mut index = self.segment_index(offset);
        // A segment may end exactly at `offset`; then the batch lies in a later one.
        while index < self.segments.len() && self.segments[index].next_offset() <= offset {
            index += 1;
        }
        let Some(segment) = self.segments.get(index) else {
            return Ok(Bytes::new());
        };
        let Some((start, first)) = segment.find(offset)? else {
            return Ok(Bytes::new());
        };
        let mut header = first;
        let mut end = start;
        // Bounded by the segment's size: each step consumes one batch.
        loop {
            if header.last_offset() >= upper_bound {
                break;
            }
            let total = header.total_bytes() as u64;
            if end > start && (end - start + total) as usize > max_bytes {
                break;
            }
            end += total;
            if end >= segment.size_bytes() {
                break;
            }
            header = segment.header_at(end)?;
        }
        let bytes = segment.read_bytes(start, (end - start) as usize)?;
        // Every batch is checked before it leaves the broker: a disk can return bytes other than
        // those written (a flipped bit, a misdirected read), and a consumer must never be handed
        // a batch whose CRC fails. CRC32C runs at many GB/s, so the check is cheap next to the
        // read itself. The error is transient for the caller: a retry reads again.
        for batch in super::record_batch::split_batches(&bytes) {
            super::record_batch::validate(batch?)?;
        }
        Ok(bytes)
    }

    /// The first offset at or after `lower_bound` whose record timestamp is at or after
    /// `timestamp`, with that timestamp, among batches ending below `upper_bound`. Exact to the
    /// record for batches the records codec can decode, else to the batch.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        lower_bound: i64,
        upper_bound: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        for segment in &self.segments {
            if segment.max_timestamp() < timestamp
                || segment.is_empty()
                || segment.next_offset() <= lower_bound
            {
                continue;
            }
            let from = (segment.base_offset() + i64::from(segment.time_index().lookup(timestamp)))
                .max(lower_bound);
            let Some((mut position, mut header)) = segment.find(from)? else {
                continue;
            };
            // Bounded by the segment's size.
            loop {
                if header.last_offset() >= upper_bound {
                    return Ok(None);
                }
                if header.max_timestamp >= timestamp && header.last_offset() >= lower_bound {
                    let bytes = segment.read_bytes(position, header.total_bytes())?;
                    if let Some(found) = exact_record(bytes, &header, timestamp, lower_bound) {
                        return Ok(Some(found));
                    }
                }
                position += header.total_bytes() as u64;
                if position >= segment.size_bytes() {
                    break;
                }
                header = segment.header_at(position)?;
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp among offsets from `lower_bound` in batches ending
    /// below `upper_bound`, as `(offset, timestamp)`; the earliest such record on a tie
    /// (ListOffsets' MAX_TIMESTAMP). Whole segments answer from their newest timestamp, so
    /// only the segments the bounds cut through are read batch by batch.
    pub fn offset_of_max_timestamp(
        &self,
        lower_bound: i64,
        upper_bound: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        // The batch holding the best record so far: its segment, position and timestamp.
        let mut best: Option<(usize, u64, i64)> = None;
        for (index, segment) in self.segments.iter().enumerate() {
            if segment.is_empty()
                || segment.next_offset() <= lower_bound
                || segment.base_offset() >= upper_bound
            {
                continue;
            }
            let whole =
                segment.base_offset() >= lower_bound && segment.next_offset() <= upper_bound;
            if whole {
                if best.is_some_and(|(_, _, timestamp)| segment.max_timestamp() <= timestamp) {
                    continue;
                }
                let newest = segment.max_timestamp();
                let from = segment.base_offset() + i64::from(segment.time_index().lookup(newest));
                let Some((mut position, mut header)) = segment.find(from)? else {
                    continue;
                };
                // Bounded by the segment's size; the segment's newest timestamp is in one of
                // its batches, so the walk stops at it.
                while header.max_timestamp < newest {
                    position += header.total_bytes() as u64;
                    if position >= segment.size_bytes() {
                        break;
                    }
                    header = segment.header_at(position)?;
                }
                if header.max_timestamp == newest {
                    best = Some((index, position, newest));
                }
                continue;
            }
            let Some((mut position, mut header)) =
                segment.find(lower_bound.max(segment.base_offset()))?
            else {
                continue;
            };
            // Bounded by the segment's size: each step passes one batch.
            loop {
                if header.last_offset() >= upper_bound {
                    break;
                }
                let timestamp = if header.base_offset < lower_bound {
                    // The batch the lower bound cuts through: only its records from the bound.
                    let bytes = segment.read_bytes(position, header.total_bytes())?;
                    newest_record_from(bytes, lower_bound).map(|(_, timestamp)| timestamp)
                } else {
                    Some(header.max_timestamp)
                };
                if let Some(timestamp) = timestamp {
                    if best.is_none_or(|(_, _, best_timestamp)| timestamp > best_timestamp) {
                        best = Some((index, position, timestamp));
                    }
                }
                position += header.total_bytes() as u64;
                if position >= segment.size_bytes() {
                    break;
                }
                header = segment.header_at(position)?;
            }
        }
        let Some((index, position, timestamp)) = best else {
            return Ok(None);
        };
        let segment = &self.segments[index];
        let header = segment.header_at(position)?;
        let bytes = segment.read_bytes(position, header.total_bytes())?;
        Ok(Some(
            exact_record(bytes, &header, timestamp, lower_bound)
                .unwrap_or((header.base_offset.max(lower_bound), timestamp)),
        ))
    }

    /// Calls `visit` with the header of each batch holding or following `from_offset`.
    pub fn for_each_batch(
        &self,
        from_offset: i64,
        mut visit: impl FnMut(&RecordBatchHeader),
    ) -> Result<(), LogError> {
        self.check_offset(from_offset)?;
        let first = self.segment_index(from_offset);
        for segment in &self.segments[first..] {
            let Some((mut position, _)) = segment.find(from_offset.max(segment.base_offset()))?
            else {
                continue;
            };
            while position < segment.size_bytes() {
                let header = segment.header_at(position)?;
                visit(&header);
                position += header.total_bytes() as u64;
            }
        }
        Ok(())
    }

    /// Deletes sealed segments past `retention.ms` or `retention.bytes`, oldest first, never the
    /// active one, advancing the log start. Returns how many were deleted.
    pub fn apply_retention(&mut self, wall_ms: i64) -> Result<usize, LogError> {
        self.apply_retention_below(wall_ms, i64::MAX)
    }

    /// [`PartitionLog::apply_retention`], deleting only segments that end at or below
    /// `keep_from`: a replica keeps every entry its quorum has not committed.
    pub fn apply_retention_below(
        &mut self,
        wall_ms: i64,
        keep_from: i64,
    ) -> Result<usize, LogError> {
        self.apply_cleanup(Cleanup::Retention { wall_ms }, keep_from)
    }

    /// Deletes the oldest sealed segments that `cleanup` allows, ending at or below `keep_from`.
    pub fn apply_cleanup(&mut self, cleanup: Cleanup, keep_from: i64) -> Result<usize, LogError> {
        let count = self.cleanup_cut(cleanup, keep_from);
        self.delete_oldest_segments(count)
    }

    /// The log start `apply_cleanup` would leave with the same arguments, if it would delete
    /// anything: a replica records it before the deletion.
    pub fn cleanup_start(&self, cleanup: Cleanup, keep_from: i64) -> Option<i64> {
        let count = self.cleanup_cut(cleanup, keep_from);
        (count > 0).then(|| self.segments[count].base_offset())
    }

    /// The bytes of batches in the active segment.
    pub fn active_segment_bytes(&self) -> u64 {
        self.active().size_bytes()
    }

    /// The base offset of the active segment, the one appends go to.
    pub fn active_segment_base(&self) -> i64 {
        self.segments
            .last()
            .expect("a log always has an active segment")
            .base_offset()
    }

    /// How many of the oldest segments `cleanup` deletes now.
    fn cleanup_cut(&self, cleanup: Cleanup, keep_from: i64) -> usize {
        // A sealed segment ends where the next one begins.
        let below = self
            .segments
            .windows(2)
            .take_while(|pair| pair[1].base_offset() <= keep_from)
            .count();
        match cleanup {
            Cleanup::Retention { wall_ms } => {
                let sealed: Vec<SegmentSummary> = self.segments[..self.segments.len() - 1]
                    .iter()
                    .map(|segment| SegmentSummary {
                        size_bytes: segment.size_bytes(),
                        max_timestamp: segment.max_timestamp(),
                    })
                    .collect();
                segments_to_delete(&sealed, self.size_bytes(), &self.config, wall_ms).min(below)
            }
            Cleanup::Superseded => below,
        }
    }

    fn delete_oldest_segments(&mut self, count: usize) -> Result<usize, LogError> {
        assert!(
            count < self.segments.len(),
            "retention never deletes the active segment"
        );
        for segment in self.segments.drain(..count) {
            remove_segment_files(&*self.disk, &self.dir, segment.base_offset())?;
            self.directory_unsynced = true;
        }
        self.assert_invariants();
        Ok(count)
    }

    /// Checks that the indexes agree with the segments: walking every batch from the log start
    /// (a scan of the segment files) and looking each one up through the offset index (the path
    /// reads take) must find the same batch at the same offset, with a valid CRC. Used by the
    /// simulator after every recovery; it reads the whole log, so it is not for production paths.
    pub fn check_consistency(&self) -> Result<(), String> {
        let mut expected = self.log_start_offset();
        let mut batches = Vec::new();
        self.for_each_batch(self.log_start_offset(), |header| batches.push(*header))
            .map_err(|error| format!("scanning the log failed: {error}"))?;
        for header in batches {
            if header.base_offset != expected {
                return Err(format!(
                    "the scan found a batch at offset {} where {expected} was expected",
                    header.base_offset
                ));
            }
            let read = self
                .read(header.base_offset, 1, self.log_end_offset())
                .map_err(|error| {
                    format!("reading offset {} failed: {error}", header.base_offset)
                })?;
            let found = RecordBatchHeader::parse(&read).map_err(|error| {
                format!(
                    "the index led offset {} to bad bytes: {error}",
                    header.base_offset
                )
            })?;
            if found.base_offset != header.base_offset || found.crc != header.crc {
                return Err(format!(
                    "the index led offset {} to the batch at {}",
                    header.base_offset, found.base_offset
                ));
            }
            expected = header.next_offset();
        }
        if expected != self.log_end_offset() {
            return Err(format!(
                "the scan ended at offset {expected} but the log end is {}",
                self.log_end_offset()
            ));
        }
        if self.durable_end_offset() > self.log_end_offset() {
            return Err("the durable end is past the log end".to_string());
        }
        Ok(())
    }

    /// Removes every batch at or above `offset`; a batch straddling it goes too, so the log end
    /// becomes that batch's base. The change is synced before returning, so a crash cannot bring
    /// the removed batches back. Must not be called while a sync is in flight.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        assert!(
            self.sync_in_flight.is_none(),
            "truncate_to while a sync is in flight"
        );
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        self.check_offset(offset)?;
        let index = self.segment_index(offset);
        for segment in self.segments.drain(index + 1..) {
            remove_segment_files(&*self.disk, &self.dir, segment.base_offset())?;
        }
        let segment = self
            .segments
            .last_mut()
            .expect("the holding segment remains");
        let (position, new_end) = match segment.find(offset)? {
            Some((position, header)) => (position, header.base_offset),
            None => (segment.size_bytes(), segment.next_offset()),
        };
        segment.truncate(position, new_end)?;
        segment.log_file().sync()?;
        self.active_preallocated_bytes = None;
        // Sealed files of the now active segment are synced too; their stale index files are
        // rewritten when it is sealed again.
        for file in std::mem::take(&mut self.unsynced_files) {
            file.sync()?;
        }
        self.active_unsynced = false;
        self.disk.sync_dir(&self.dir)?;
        self.directory_unsynced = false;
        if self.checkpointed_recovery_point > new_end {
            self.checkpointed_recovery_point = new_end;
            Checkpoint {
                recovery_point: new_end,
                clean: false,
            }
            .write(&*self.disk, &self.dir)?;
        }
        // Everything left was synced above.
        self.durable_end_offset = self.log_end_offset();
        self.assert_invariants();
        Ok(())
    }

    /// Replaces the whole log by one empty segment at `next_offset`: a replica starting over at
    /// its leader's log start, because the entries it needs next are gone there. Durable when
    /// this returns. The old segments go first: a crash in between leaves an empty log at 0,
    /// which the leader starts over in the same way.
    pub fn reset_to(&mut self, next_offset: i64, wall_ms: i64) -> Result<(), LogError> {
        assert!(
            self.sync_in_flight.is_none(),
            "reset_to while a sync is in flight"
        );
        assert!(next_offset >= 0);
        for segment in self.segments.drain(..) {
            remove_segment_files(&*self.disk, &self.dir, segment.base_offset())?;
        }
        self.disk.sync_dir(&self.dir)?;
        let segment = Segment::create(&*self.disk, &self.dir, next_offset, wall_ms)?;
        self.segments.push(segment);
        self.active_preallocated_bytes = None;
        self.unsynced_files.clear();
        self.active().log_file().sync()?;
        self.disk.sync_dir(&self.dir)?;
        self.active_unsynced = false;
        self.directory_unsynced = false;
        self.checkpointed_recovery_point = next_offset;
        Checkpoint {
            recovery_point: next_offset,
            clean: false,
        }
        .write(&*self.disk, &self.dir)?;
        self.durable_end_offset = next_offset;
        self.assert_invariants();
        Ok(())
    }

    /// Clean shutdown: writes the active segment's indexes, syncs everything and records a
    /// clean checkpoint at the log end, so the next open trusts every segment.
    pub fn close(&mut self) -> Result<(), LogError> {
        assert!(
            self.sync_in_flight.is_none(),
            "close while a sync is in flight"
        );
        let disk = Arc::clone(&self.disk);
        let dir = self.dir.clone();
        let index_files = self.active_mut().write_indexes(&*disk, &dir)?;
        // The clean checkpoint trusts the last segment at its file's length.
        self.active().release_unused_tail()?;
        for file in self.unsynced_files.iter().chain(&index_files) {
            file.sync()?;
        }
        self.active().log_file().sync()?;
        disk.sync_dir(&dir)?;
        Checkpoint {
            recovery_point: self.log_end_offset(),
            clean: true,
        }
        .write(&*disk, &dir)?;
        Ok(())
    }
}

/// The record with the largest timestamp of `batch` from `lower_bound` (the earliest on a tie),
/// or `None` if the batch cannot be decoded or has no record from there.
fn newest_record_from(mut batch: Bytes, lower_bound: i64) -> Option<(i64, i64)> {
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut batch).ok()?;
    set.records
        .iter()
        .filter(|record| record.offset >= lower_bound)
        .fold(None, |best: Option<(i64, i64)>, record| match best {
            Some((_, timestamp)) if timestamp >= record.timestamp => best,
            _ => Some((record.offset, record.timestamp)),
        })
}

/// The first record of `batch` at or after `timestamp` and `lower_bound`, decoded with the
/// records codec (`None` if no record of the batch qualifies); falls back to the batch's first
/// offset from `lower_bound` and its newest timestamp if the batch cannot be decoded.
fn exact_record(
    mut batch: Bytes,
    header: &RecordBatchHeader,
    timestamp: i64,
    lower_bound: i64,
) -> Option<(i64, i64)> {
    match kafka_protocol::records::RecordBatchDecoder::decode(&mut batch) {
        Ok(set) => set
            .records
            .iter()
            .find(|record| record.timestamp >= timestamp && record.offset >= lower_bound)
            .map(|record| (record.offset, record.timestamp)),
        Err(_) => Some((header.base_offset.max(lower_bound), header.max_timestamp)),
    }
}
