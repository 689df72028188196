//! The sparse offset index of one segment: which file position holds which offset.
//!
//! File `<base offset>.index`, a sequence of 8-byte big-endian entries:
//!
//! ```text
//! ┌──────────────────────────┬──────────────────────────┐
//! │ relative offset  u32     │ file position  u32       │   × one per index.interval.bytes
//! └──────────────────────────┴──────────────────────────┘
//! ```
//!
//! The relative offset is that of the first record of a batch starting at the position, minus
//! the segment's base offset. Entries strictly increase in both fields. The index lives in memory
//! while the segment is active and is written out when the segment is sealed or the log closed.

/// Size of one entry on disk.
pub const INDEX_ENTRY_BYTES: usize = 8;

/// One entry: the batch whose base offset is `base + relative_offset` starts at `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// The in-memory offset index of a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<OffsetIndexEntry>,
}

impl OffsetIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn entries(&self) -> &[OffsetIndexEntry] {
        &self.entries
    }

    /// Adds an entry past every existing one.
    pub fn append(&mut self, relative_offset: u32, position: u32) {
        if let Some(last) = self.entries.last() {
            assert!(
                relative_offset > last.relative_offset && position > last.position,
                "offset index entries must increase"
            );
        }
        self.entries.push(OffsetIndexEntry {
            relative_offset,
            position,
        });
    }

    /// The file position to start scanning from for `relative_offset`: that of the last entry at
    /// or below it, or 0 when there is none.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        if after == 0 {
            0
        } else {
            self.entries[after - 1].position
        }
    }

    /// Drops entries at or past `relative_offset` (truncation).
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self
            .entries
            .partition_point(|entry| entry.relative_offset < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn last_position(&self) -> Option<u32> {
        self.entries.last().map(|entry| entry.position)
    }

    /// The index's file contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * INDEX_ENTRY_BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.relative_offset.to_be_bytes());
            bytes.extend_from_slice(&entry.position.to_be_bytes());
        }
        bytes
    }

    /// Decodes an index file and checks it against its segment: entries strictly increasing,
    /// relative offsets below `offset_count` and positions below `segment_bytes`. Returns `None`
    /// for an index that is not sane, which the caller rebuilds from the log instead.
    pub fn decode_checked(bytes: &[u8], offset_count: u64, segment_bytes: u64) -> Option<Self> {
        if bytes.len() % INDEX_ENTRY_BYTES != 0 {
            return None;
        }
        let mut index = OffsetIndex::new();
        for chunk in bytes.chunks_exact(INDEX_ENTRY_BYTES) {
            let relative_offset = u32::from_be_bytes(chunk[0..4].try_into().expect("four"));
            let position = u32::from_be_bytes(chunk[4..8].try_into().expect("four"));
            let increasing = index.entries.last().is_none_or(|last| {
                relative_offset > last.relative_offset && position > last.position
            });
            if !increasing
                || u64::from(relative_offset) >= offset_count
                || u64::from(position) >= segment_bytes
            {
                return None;
            }
            index.entries.push(OffsetIndexEntry {
                relative_offset,
                position,
            });
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OffsetIndex {
        let mut index = OffsetIndex::new();
        index.append(10, 4100);
        index.append(25, 8300);
        index.append(40, 12_500);
        index
    }

    #[test]
    fn lookup_finds_the_last_entry_at_or_below() {
        let index = sample();
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 4100);
        assert_eq!(index.lookup(24), 4100);
        assert_eq!(index.lookup(25), 8300);
        assert_eq!(index.lookup(1000), 12_500);
    }

    #[test]
    fn round_trips_and_rejects_insane_files() {
        let index = sample();
        let bytes = index.encode();
        assert_eq!(bytes.len(), 3 * INDEX_ENTRY_BYTES);
        assert_eq!(OffsetIndex::decode_checked(&bytes, 50, 20_000), Some(index));
        assert_eq!(OffsetIndex::decode_checked(&bytes, 40, 20_000), None);
        assert_eq!(OffsetIndex::decode_checked(&bytes, 50, 12_500), None);
        assert_eq!(OffsetIndex::decode_checked(&bytes[..5], 50, 20_000), None);
        let mut swapped = bytes.clone();
        swapped.copy_within(0..8, 8);
        assert_eq!(OffsetIndex::decode_checked(&swapped, 50, 20_000), None);
    }

    #[test]
    fn truncation_drops_entries_at_and_after_the_offset() {
        let mut index = sample();
        index.truncate_to_offset(25);
        assert_eq!(index.entries().len(), 1);
        index.truncate_to_offset(0);
        assert!(index.entries().is_empty());
    }
}
