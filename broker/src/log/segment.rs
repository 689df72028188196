//! One segment: a log file of record batches and its two sparse indexes.
//!
//! Files in the partition directory, named by the segment's base offset padded to 20 digits as
//! Kafka names them:
//!
//! ```text
//! 00000000000000000000.log        batches, byte for byte as Fetch returns them
//! 00000000000000000000.index      see offset_index.rs (written when sealed or closed)
//! 00000000000000000000.timeindex  see time_index.rs   (written when sealed or closed)
//! ```
//!
//! The `.log` file is a plain concatenation of v2 record batches with dense offsets starting at
//! the base offset. The active segment's file may be longer than its batches: with
//! `preallocate` it starts as a zero-filled spare (see [`super::spare`]), and the zeros after
//! the last batch are cut off when it is sealed or closed, or by recovery after a crash. The indexes are kept in memory and written out whole when the segment is
//! sealed; after a crash they are rebuilt from the log rather than trusted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::error::LogError;
use super::offset_index::OffsetIndex;
use super::record_batch::{RecordBatchHeader, HEADER_BYTES};
use super::time_index::TimeIndex;
use crate::io::{disk, Disk, DiskFile};

/// Extension of the log file.
pub const LOG_EXTENSION: &str = "log";
/// Extension of the offset index file.
pub const INDEX_EXTENSION: &str = "index";
/// Extension of the time index file.
pub const TIME_INDEX_EXTENSION: &str = "timeindex";
/// Digits of the zero-padded base offset in a segment's file names.
pub const FILE_NAME_DIGITS: usize = 20;
/// The timestamp Kafka uses for "none".
pub const NO_TIMESTAMP: i64 = -1;
/// The most offsets one segment may span: relative offsets in the indexes are `u32`.
pub const SEGMENT_OFFSETS_MAX: i64 = u32::MAX as i64;

/// `<base offset>.<extension>` in `dir`.
pub fn segment_path(dir: &Path, base_offset: i64, extension: &str) -> PathBuf {
    assert!(base_offset >= 0, "offsets are never negative");
    dir.join(format!(
        "{base_offset:0width$}.{extension}",
        width = FILE_NAME_DIGITS
    ))
}

/// The base offset named by a segment file's stem, if it is 20 decimal digits.
pub fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != FILE_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A segment and its in-memory indexes.
pub struct Segment {
    base_offset: i64,
    log_file: Arc<dyn DiskFile>,
    size_bytes: u64,
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    bytes_since_index_entry: u64,
    /// Wall-clock time at creation (or at load), for `segment.ms`.
    created_wall_ms: i64,
}

impl Segment {
    /// Creates an empty segment file, emptying a stale one of the same name.
    pub fn create(
        disk: &dyn Disk,
        dir: &Path,
        base_offset: i64,
        wall_ms: i64,
    ) -> Result<Segment, LogError> {
        let log_file = disk.open(&segment_path(dir, base_offset, LOG_EXTENSION), true)?;
        if log_file.len()? != 0 {
            log_file.truncate(0)?;
        }
        Ok(Segment::empty(log_file, base_offset, wall_ms))
    }

    /// Makes the zero-filled, synced spare file at `spare` the segment starting at
    /// `base_offset`: renamed to the segment's name, its file keeps its length, so appends
    /// overwrite blocks the file system already holds and never change the file's size. The
    /// rename is durable after the next `sync_dir`; until then a crash leaves the log ending
    /// before this segment, which held nothing acknowledged.
    pub fn adopt_spare(
        disk: &dyn Disk,
        spare: &Path,
        dir: &Path,
        base_offset: i64,
        wall_ms: i64,
    ) -> Result<Segment, LogError> {
        let path = segment_path(dir, base_offset, LOG_EXTENSION);
        disk.rename(spare, &path)?;
        let log_file = disk.open(&path, false)?;
        Ok(Segment::empty(log_file, base_offset, wall_ms))
    }

    /// Cuts the file to the segment's size if it is longer (the unused part of a preallocated
    /// file), so that a sealed segment's length is its size again. Returns whether it cut: the
    /// cut is durable only after the file's next sync.
    pub fn release_unused_tail(&self) -> Result<bool, LogError> {
        if self.log_file.len()? <= self.size_bytes {
            return Ok(false);
        }
        self.log_file.truncate(self.size_bytes)?;
        Ok(true)
    }

    /// An empty in-memory segment over an open file, to be filled by `index_batch` (recovery).
    pub fn empty(log_file: Arc<dyn DiskFile>, base_offset: i64, wall_ms: i64) -> Segment {
        Segment {
            base_offset,
            log_file,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp: NO_TIMESTAMP,
            offset_of_max_timestamp: base_offset,
            offset_index: OffsetIndex::new(),
            time_index: TimeIndex::new(),
            bytes_since_index_entry: 0,
            created_wall_ms: wall_ms,
        }
    }

    /// A segment whose indexes were loaded from trusted files instead of rebuilt.
    pub fn loaded(
        log_file: Arc<dyn DiskFile>,
        base_offset: i64,
        next_offset: i64,
        size_bytes: u64,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
        wall_ms: i64,
    ) -> Segment {
        let (max_timestamp, offset_of_max_timestamp) = match time_index.last() {
            Some(entry) => (
                entry.timestamp,
                base_offset + i64::from(entry.relative_offset),
            ),
            None => (NO_TIMESTAMP, base_offset),
        };
        let bytes_since_index_entry =
            size_bytes - u64::from(offset_index.last_position().unwrap_or(0));
        Segment {
            base_offset,
            log_file,
            size_bytes,
            next_offset,
            max_timestamp,
            offset_of_max_timestamp,
            offset_index,
            time_index,
            bytes_since_index_entry,
            created_wall_ms: wall_ms,
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }
    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }
    pub fn created_wall_ms(&self) -> i64 {
        self.created_wall_ms
    }
    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }
    pub fn log_file(&self) -> &Arc<dyn DiskFile> {
        &self.log_file
    }
    pub fn offset_index(&self) -> &OffsetIndex {
        &self.offset_index
    }
    pub fn time_index(&self) -> &TimeIndex {
        &self.time_index
    }

    fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            (0..=SEGMENT_OFFSETS_MAX).contains(&relative),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        relative as u32
    }

    /// Writes a batch (already patched to start at `next_offset`), given as consecutive parts,
    /// at the end of the file with one write, and indexes it.
    pub fn append(
        &mut self,
        parts: &[&[u8]],
        header: &RecordBatchHeader,
        index_interval_bytes: u32,
    ) -> Result<(), LogError> {
        assert_eq!(
            header.base_offset, self.next_offset,
            "offsets must be dense"
        );
        assert_eq!(
            header.total_bytes(),
            parts.iter().map(|part| part.len()).sum::<usize>()
        );
        let position = self.size_bytes;
        self.log_file.write_parts_at(parts, position)?;
        self.index_batch(header, position, index_interval_bytes);
        Ok(())
    }

    /// Accounts for a batch that lies at `position`, the current end of the segment: advances
    /// the size and next offset and adds index entries every `index_interval_bytes`.
    pub fn index_batch(
        &mut self,
        header: &RecordBatchHeader,
        position: u64,
        index_interval_bytes: u32,
    ) {
        assert_eq!(position, self.size_bytes);
        assert_eq!(header.base_offset, self.next_offset);
        let position_u32 = u32::try_from(position).expect("segment positions fit in u32");
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        // The first batch needs no entry: a lookup below every entry starts at position 0.
        if self.bytes_since_index_entry >= u64::from(index_interval_bytes) {
            self.offset_index
                .append(self.relative(header.base_offset), position_u32);
            self.time_index.maybe_append(
                self.max_timestamp,
                self.relative(self.offset_of_max_timestamp),
            );
            self.bytes_since_index_entry = 0;
        }
        let total = header.total_bytes() as u64;
        self.bytes_since_index_entry += total;
        self.size_bytes += total;
        self.next_offset = header.next_offset();
        debug_assert!(self.next_offset - self.base_offset <= SEGMENT_OFFSETS_MAX);
    }

    /// Reads the header of the batch at `position`.
    pub fn header_at(&self, position: u64) -> Result<RecordBatchHeader, LogError> {
        assert!(position + HEADER_BYTES as u64 <= self.size_bytes);
        let mut bytes = [0u8; HEADER_BYTES];
        self.log_file.read_exact_at(&mut bytes, position)?;
        let header = RecordBatchHeader::parse(&bytes)?;
        if position + header.total_bytes() as u64 > self.size_bytes {
            return Err(LogError::CorruptDirectory(format!(
                "batch at position {position} of segment {} runs past its end",
                self.base_offset
            )));
        }
        Ok(header)
    }

    /// The position and header of the batch holding `offset`, or `None` if the segment ends
    /// before it. Scans forward from the offset index's hint.
    pub fn find(&self, offset: i64) -> Result<Option<(u64, RecordBatchHeader)>, LogError> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let mut position = u64::from(
            self.offset_index
                .lookup(self.relative(offset.max(self.base_offset))),
        );
        // Bounded: every step moves forward by at least one header.
        while position < self.size_bytes {
            let header = self.header_at(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.total_bytes() as u64;
        }
        Ok(None)
    }

    /// Reads `length` bytes at `position` with one read.
    pub fn read_bytes(&self, position: u64, length: usize) -> Result<Bytes, LogError> {
        assert!(position + length as u64 <= self.size_bytes);
        let buffer = disk::read_exact_to_vec(self.log_file.as_ref(), length, position)?;
        Ok(Bytes::from(buffer))
    }

    /// Cuts the segment so that it ends just before the batch at `position`, whose base offset is
    /// `next_offset`, and brings the indexes and the newest timestamp back in line.
    pub fn truncate(&mut self, position: u64, next_offset: i64) -> Result<u64, LogError> {
        assert!(position <= self.size_bytes && next_offset >= self.base_offset);
        let removed = self.size_bytes - position;
        self.log_file.truncate(position)?;
        let relative = self.relative(next_offset);
        self.offset_index.truncate_to_offset(relative);
        self.time_index.truncate_to_offset(relative);
        self.size_bytes = position;
        self.next_offset = next_offset;
        // Batches after the last surviving index entry are not covered by the time index, so
        // walk them (at most about one index interval of bytes) to find the newest timestamp.
        match self.time_index.last() {
            Some(entry) => {
                self.max_timestamp = entry.timestamp;
                self.offset_of_max_timestamp = self.base_offset + i64::from(entry.relative_offset);
            }
            None => {
                self.max_timestamp = NO_TIMESTAMP;
                self.offset_of_max_timestamp = self.base_offset;
            }
        }
        let mut walk = u64::from(self.offset_index.last_position().unwrap_or(0));
        self.bytes_since_index_entry = position - walk;
        while walk < self.size_bytes {
            let header = self.header_at(walk)?;
            if header.max_timestamp > self.max_timestamp {
                self.max_timestamp = header.max_timestamp;
                self.offset_of_max_timestamp = header.last_offset();
            }
            walk += header.total_bytes() as u64;
        }
        Ok(removed)
    }

    /// Adds the final time index entry, so a sealed segment's newest timestamp is on disk.
    pub fn seal_time_index(&mut self) {
        if self.size_bytes > 0 {
            let relative = self.relative(self.offset_of_max_timestamp);
            self.time_index.maybe_append(self.max_timestamp, relative);
        }
    }

    /// Writes both index files whole and returns them, unsynced, for the next sync.
    pub fn write_indexes(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
    ) -> Result<Vec<Arc<dyn DiskFile>>, LogError> {
        self.seal_time_index();
        let mut files = Vec::with_capacity(2);
        for (extension, contents) in [
            (INDEX_EXTENSION, self.offset_index.encode()),
            (TIME_INDEX_EXTENSION, self.time_index.encode()),
        ] {
            let file = disk.open(&segment_path(dir, self.base_offset, extension), true)?;
            file.truncate(0)?;
            file.write_at(&contents, 0)?;
            files.push(file);
        }
        Ok(files)
    }
}

/// Removes a segment's files; index files that were never written are not an error.
pub fn remove_segment_files(disk: &dyn Disk, dir: &Path, base_offset: i64) -> Result<(), LogError> {
    for extension in [LOG_EXTENSION, INDEX_EXTENSION, TIME_INDEX_EXTENSION] {
        let path = segment_path(dir, base_offset, extension);
        if disk.exists(&path) {
            disk.remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimDisk;
    use crate::log::record_batch::{set_base_offset, test_batches::sized_batch, validate};

    #[test]
    fn names_segments_like_kafka() {
        let path = segment_path(Path::new("/d"), 42, LOG_EXTENSION);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        assert_eq!(parse_base_offset("00000000000000000042"), Some(42));
        assert_eq!(parse_base_offset("42"), None);
        assert_eq!(parse_base_offset("0000000000000000004x"), None);
    }

    #[test]
    fn finds_batches_through_the_sparse_index_and_truncates() {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new("/d")).unwrap();
        let mut segment = Segment::create(&disk, Path::new("/d"), 100, 0).unwrap();
        let mut positions = Vec::new();
        for index in 0..20 {
            let mut batch = sized_batch(3, 100, 1000 + index);
            set_base_offset(&mut batch, segment.next_offset());
            let header = validate(&batch).unwrap();
            positions.push(segment.size_bytes());
            segment.append(&[&batch], &header, 512).unwrap();
        }
        assert_eq!(segment.next_offset(), 160);
        assert!(segment.offset_index().entries().len() > 3);
        for offset in 100..160 {
            let (position, header) = segment.find(offset).unwrap().unwrap();
            assert_eq!(position, positions[((offset - 100) / 3) as usize]);
            assert!(header.base_offset <= offset && offset <= header.last_offset());
        }
        assert!(segment.find(160).unwrap().is_none());
        assert_eq!(segment.max_timestamp(), 1019 + 2);

        let (position, header) = segment.find(130).unwrap().unwrap();
        segment.truncate(position, header.base_offset).unwrap();
        assert_eq!(segment.next_offset(), 130);
        assert_eq!(segment.max_timestamp(), 1009 + 2);
        assert!(segment.find(130).unwrap().is_none());
        assert!(segment.find(129).unwrap().is_some());
    }
}
