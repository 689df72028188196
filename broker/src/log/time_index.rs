//! The sparse time index of one segment: from which offset on timestamps reach a value.
//!
//! File `<base offset>.timeindex`, a sequence of 12-byte big-endian entries:
//!
//! ```text
//! ┌──────────────────────────┬──────────────────────────┐
//! │ timestamp  i64           │ relative offset  u32     │   × one per index.interval.bytes
//! └──────────────────────────┴──────────────────────────┘
//! ```
//!
//! An entry `(t, o)` says: `t` is the largest timestamp of every batch up to and including the
//! one holding relative offset `o`. Timestamps strictly increase, so a lookup may binary search.
//! When a segment is sealed, a final entry records its largest timestamp, so a loaded sealed
//! segment knows its newest timestamp (which retention needs) without reading the log.

/// Size of one entry on disk.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// One entry; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp: i64,
    pub relative_offset: u32,
}

/// The in-memory time index of a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<TimeIndexEntry>,
}

impl TimeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[TimeIndexEntry] {
        &self.entries
    }

    pub fn last(&self) -> Option<TimeIndexEntry> {
        self.entries.last().copied()
    }

    /// Adds an entry if its timestamp is newer than the last one; older or equal timestamps
    /// say nothing new.
    pub fn maybe_append(&mut self, timestamp: i64, relative_offset: u32) {
        if let Some(last) = self.entries.last() {
            if timestamp <= last.timestamp {
                return;
            }
            assert!(relative_offset >= last.relative_offset);
        }
        self.entries.push(TimeIndexEntry {
            timestamp,
            relative_offset,
        });
    }

    /// The relative offset from which to scan for the first record with a timestamp at or after
    /// `timestamp`: that of the last entry whose timestamp is below it, or 0. Every batch before
    /// the batch holding that offset has only older timestamps.
    pub fn lookup(&self, timestamp: i64) -> u32 {
        let below = self
            .entries
            .partition_point(|entry| entry.timestamp < timestamp);
        if below == 0 {
            0
        } else {
            self.entries[below - 1].relative_offset
        }
    }

    /// Drops entries for offsets at or past `relative_offset` (truncation).
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|entry| entry.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.timestamp.to_be_bytes());
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
        }
        bytes
    }

    /// Decodes a time index file, returning `None` unless timestamps strictly increase, relative
    /// offsets never decrease and all lie below `offset_count`.
    pub fn decode_checked(bytes: &[u8], offset_count: u64) -> Option<Self> {
        if bytes.len() % TIME_INDEX_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = TimeIndex::new();
        for chunk in bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES) {
            let timestamp = i64::from_be_bytes(chunk[0..8].try_into().expect("eight"));
            let relative_offset = u32::from_be_bytes(chunk[8..12].try_into().expect("four"));
            let increasing = index.entries.last().is_none_or(|last| {
                timestamp > last.timestamp && relative_offset >= last.relative_offset
            });
            if !increasing || u64::from(relative_offset) >= offset_count {
                return None;
            }
            index.entries.push(TimeIndexEntry {
                timestamp,
                relative_offset,
            });
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_increasing_timestamps_and_looks_up_below() {
        let mut index = TimeIndex::new();
        index.maybe_append(100, 0);
        index.maybe_append(90, 3);
        index.maybe_append(200, 5);
        index.maybe_append(300, 9);
        assert_eq!(index.entries().len(), 3);
        assert_eq!(index.lookup(50), 0);
        assert_eq!(index.lookup(100), 0);
        assert_eq!(index.lookup(150), 0);
        assert_eq!(index.lookup(201), 5);
        assert_eq!(index.lookup(10_000), 9);
        let bytes = index.encode();
        assert_eq!(TimeIndex::decode_checked(&bytes, 10), Some(index.clone()));
        assert_eq!(TimeIndex::decode_checked(&bytes, 9), None);
        index.truncate_to_offset(5);
        assert_eq!(index.entries().len(), 1);
    }
}
