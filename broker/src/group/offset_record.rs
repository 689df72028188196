//! The on-disk encoding of committed offsets and group deletions.
//!
//! The driver appends each `OffsetRecord` to the internal `__consumer_offsets` log as a
//! record with the key and value below, and replays them in order at start-up (last write
//! wins; a group tombstone removes every offset of the group). The key of a commit is
//! unique per (group, topic, partition), so the log can be compacted by key.
//!
//! All integers are big-endian. Strings are a `u16` byte length then UTF-8 bytes.
//!
//! ```text
//! key   = format_version:u8 (0) | kind:u8 | [all but snapshot complete] group_id:string
//!         | [commit, offset tombstone] topic:string partition:i32
//!         kind 0 = offset commit, kind 1 = group tombstone, kind 2 = snapshot complete,
//!         kind 3 = offset tombstone (OffsetDelete: one partition's committed offset is gone)
//! value = format_version:u8 (0) | [commit only] offset:i64 leader_epoch:i32 metadata:string
//!         | [snapshot complete only] start_offset:i64
//!   or, for a commit, format_version:u8 (1) | offset:i64 leader_epoch:i32 metadata:string
//!         commit_timestamp_ms:i64
//! ```
//!
//! Commits are written with value version 1, which adds the coordinator's wall-clock time of
//! the commit (offsets of a group without members expire by it). Version 0 commits, written
//! before it existed, are still read; their commit time is unknown.
//!
//! A snapshot is every committed offset, written as commits from `start_offset` on and closed
//! by a snapshot-complete record: the log from `start_offset` replays to the same offsets as
//! the whole log, so everything before it may be deleted (see `server::offsets_cleanup`).
//!
//! Decoding never panics: any malformed input is an `OffsetRecordError`.

use thiserror::Error;

use super::{GROUP_ID_BYTES_MAX, OFFSET_METADATA_BYTES_MAX, TOPIC_NAME_BYTES_MAX};

/// The only format version written so far. Bump it (and keep decoding the old one) when
/// the layout changes.
pub const OFFSET_RECORD_FORMAT_VERSION: u8 = 0;
/// The value version of a commit that carries its commit time.
pub const COMMIT_VALUE_TIMESTAMPED_VERSION: u8 = 1;

const KIND_OFFSET_COMMIT: u8 = 0;
const KIND_GROUP_TOMBSTONE: u8 = 1;
const KIND_SNAPSHOT_COMPLETE: u8 = 2;
const KIND_OFFSET_TOMBSTONE: u8 = 3;

const _: () = assert!(GROUP_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(TOPIC_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(OFFSET_METADATA_BYTES_MAX <= u16::MAX as usize);

/// One durable change to the committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum OffsetRecord {
    /// A committed offset for one partition of one group.
    Commit {
        group_id: String,
        topic: String,
        partition: i32,
        offset: i64,
        leader_epoch: i32,
        metadata: String,
        /// The coordinator's wall-clock time of the commit. `None`: read from a version 0
        /// record, which did not say.
        commit_timestamp_ms: Option<i64>,
    },
    /// The group was deleted (or its offsets expired): forget all of its offsets.
    GroupTombstone { group_id: String },
    /// OffsetDelete: forget the group's committed offset for this one partition.
    OffsetTombstone {
        group_id: String,
        topic: String,
        partition: i32,
    },
    /// The records from `start_offset` up to this one hold every committed offset there was
    /// when they were written. Replay ignores it; cleanup of the offsets log looks for it.
    SnapshotComplete { start_offset: i64 },
}

/// Why bytes read back from the offsets log are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OffsetRecordError {
    #[error("record ends early")]
    Truncated,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("a string field is not UTF-8")]
    InvalidUtf8,
    #[error("a string field of {length} bytes exceeds its maximum {max}")]
    FieldTooLong { length: usize, max: usize },
    #[error("negative partition {0}")]
    NegativePartition(i32),
    #[error("{0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

impl OffsetRecord {
    /// Encodes as (key bytes, value bytes). Panics if a field exceeds its bound: records
    /// are built by the coordinator, which validated them.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        let mut key = vec![OFFSET_RECORD_FORMAT_VERSION];
        let mut value = vec![OFFSET_RECORD_FORMAT_VERSION];
        match self {
            OffsetRecord::Commit {
                group_id,
                topic,
                partition,
                offset,
                leader_epoch,
                metadata,
                commit_timestamp_ms,
            } => {
                assert!(*partition >= 0);
                key.push(KIND_OFFSET_COMMIT);
                put_string(&mut key, group_id, GROUP_ID_BYTES_MAX);
                put_string(&mut key, topic, TOPIC_NAME_BYTES_MAX);
                key.extend_from_slice(&partition.to_be_bytes());
                value.extend_from_slice(&offset.to_be_bytes());
                value.extend_from_slice(&leader_epoch.to_be_bytes());
                put_string(&mut value, metadata, OFFSET_METADATA_BYTES_MAX);
                if let Some(timestamp_ms) = commit_timestamp_ms {
                    value[0] = COMMIT_VALUE_TIMESTAMPED_VERSION;
                    value.extend_from_slice(&timestamp_ms.to_be_bytes());
                }
            }
            OffsetRecord::GroupTombstone { group_id } => {
                key.push(KIND_GROUP_TOMBSTONE);
                put_string(&mut key, group_id, GROUP_ID_BYTES_MAX);
            }
            OffsetRecord::OffsetTombstone {
                group_id,
                topic,
                partition,
            } => {
                assert!(*partition >= 0);
                key.push(KIND_OFFSET_TOMBSTONE);
                put_string(&mut key, group_id, GROUP_ID_BYTES_MAX);
                put_string(&mut key, topic, TOPIC_NAME_BYTES_MAX);
                key.extend_from_slice(&partition.to_be_bytes());
            }
            OffsetRecord::SnapshotComplete { start_offset } => {
                key.push(KIND_SNAPSHOT_COMPLETE);
                value.extend_from_slice(&start_offset.to_be_bytes());
            }
        }
        // Check the data after writing it as well as before.
        debug_assert_eq!(Self::decode(&key, &value).as_ref(), Ok(self));
        (key, value)
    }

    /// Decodes a (key, value) pair written by `encode`.
    pub fn decode(key: &[u8], value: &[u8]) -> Result<Self, OffsetRecordError> {
        let mut key = Reader { bytes: key };
        let mut value = Reader { bytes: value };
        let key_version = key.u8()?;
        if key_version != OFFSET_RECORD_FORMAT_VERSION {
            return Err(OffsetRecordError::UnsupportedVersion(key_version));
        }
        let value_version = value.u8()?;
        let kind = key.u8()?;
        if ![
            KIND_OFFSET_COMMIT,
            KIND_GROUP_TOMBSTONE,
            KIND_SNAPSHOT_COMPLETE,
            KIND_OFFSET_TOMBSTONE,
        ]
        .contains(&kind)
        {
            return Err(OffsetRecordError::UnknownKind(kind));
        }
        let value_version_known = value_version == OFFSET_RECORD_FORMAT_VERSION
            || (kind == KIND_OFFSET_COMMIT && value_version == COMMIT_VALUE_TIMESTAMPED_VERSION);
        if !value_version_known {
            return Err(OffsetRecordError::UnsupportedVersion(value_version));
        }
        let record = match kind {
            KIND_OFFSET_COMMIT => {
                let group_id = key.string(GROUP_ID_BYTES_MAX)?;
                let topic = key.string(TOPIC_NAME_BYTES_MAX)?;
                let partition = key.i32()?;
                if partition < 0 {
                    return Err(OffsetRecordError::NegativePartition(partition));
                }
                OffsetRecord::Commit {
                    group_id,
                    topic,
                    partition,
                    offset: value.i64()?,
                    leader_epoch: value.i32()?,
                    metadata: value.string(OFFSET_METADATA_BYTES_MAX)?,
                    commit_timestamp_ms: if value_version == COMMIT_VALUE_TIMESTAMPED_VERSION {
                        Some(value.i64()?)
                    } else {
                        None
                    },
                }
            }
            KIND_GROUP_TOMBSTONE => OffsetRecord::GroupTombstone {
                group_id: key.string(GROUP_ID_BYTES_MAX)?,
            },
            KIND_SNAPSHOT_COMPLETE => OffsetRecord::SnapshotComplete {
                start_offset: value.i64()?,
            },
            KIND_OFFSET_TOMBSTONE => {
                let group_id = key.string(GROUP_ID_BYTES_MAX)?;
                let topic = key.string(TOPIC_NAME_BYTES_MAX)?;
                let partition = key.i32()?;
                if partition < 0 {
                    return Err(OffsetRecordError::NegativePartition(partition));
                }
                OffsetRecord::OffsetTombstone {
                    group_id,
                    topic,
                    partition,
                }
            }
            other => return Err(OffsetRecordError::UnknownKind(other)),
        };
        key.finish()?;
        value.finish()?;
        Ok(record)
    }
}

fn put_string(buffer: &mut Vec<u8>, text: &str, max_bytes: usize) {
    assert!(
        text.len() <= max_bytes,
        "a validated field exceeds its bound"
    );
    let length = u16::try_from(text.len()).expect("bounded by u16::MAX at compile time");
    buffer.extend_from_slice(&length.to_be_bytes());
    buffer.extend_from_slice(text.as_bytes());
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], OffsetRecordError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<N>()
            .ok_or(OffsetRecordError::Truncated)?;
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, OffsetRecordError> {
        Ok(self.take::<1>()?[0])
    }

    fn i32(&mut self) -> Result<i32, OffsetRecordError> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    fn i64(&mut self) -> Result<i64, OffsetRecordError> {
        Ok(i64::from_be_bytes(self.take()?))
    }

    fn string(&mut self, max_bytes: usize) -> Result<String, OffsetRecordError> {
        let length = usize::from(u16::from_be_bytes(self.take()?));
        if length > max_bytes {
            return Err(OffsetRecordError::FieldTooLong {
                length,
                max: max_bytes,
            });
        }
        if self.bytes.len() < length {
            return Err(OffsetRecordError::Truncated);
        }
        let (text, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        String::from_utf8(text.to_vec()).map_err(|_| OffsetRecordError::InvalidUtf8)
    }

    fn finish(&self) -> Result<(), OffsetRecordError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(OffsetRecordError::TrailingBytes(self.bytes.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit() -> OffsetRecord {
        OffsetRecord::Commit {
            group_id: "payments".to_owned(),
            topic: "orders".to_owned(),
            partition: 3,
            offset: 1234,
            leader_epoch: 7,
            metadata: "consumer-1".to_owned(),
            commit_timestamp_ms: Some(1_700_000_000_123),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    #[test]
    fn encoding_is_stable() {
        let tombstone = OffsetRecord::GroupTombstone {
            group_id: "payments".to_owned(),
        };
        let mut text = String::new();
        let snapshot = OffsetRecord::SnapshotComplete { start_offset: 4321 };
        let mut untimed = commit();
        if let OffsetRecord::Commit {
            commit_timestamp_ms,
            ..
        } = &mut untimed
        {
            *commit_timestamp_ms = None;
        }
        let offset_tombstone = OffsetRecord::OffsetTombstone {
            group_id: "payments".to_owned(),
            topic: "orders".to_owned(),
            partition: 3,
        };
        for record in [commit(), untimed, tombstone, snapshot, offset_tombstone] {
            let (key, value) = record.encode();
            text.push_str(&format!(
                "{record:?}\nkey   {}\nvalue {}\n",
                hex(&key),
                hex(&value)
            ));
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let (key, value) = commit().encode();
        assert_eq!(
            OffsetRecord::decode(&[], &value),
            Err(OffsetRecordError::Truncated)
        );
        assert_eq!(
            OffsetRecord::decode(&key[..key.len() - 1], &value),
            Err(OffsetRecordError::Truncated)
        );
        let mut future = key.clone();
        future[0] = 9;
        assert_eq!(
            OffsetRecord::decode(&future, &value),
            Err(OffsetRecordError::UnsupportedVersion(9))
        );
        let mut unknown_kind = key.clone();
        unknown_kind[1] = 7;
        assert_eq!(
            OffsetRecord::decode(&unknown_kind, &value),
            Err(OffsetRecordError::UnknownKind(7))
        );
        let mut trailing = value.clone();
        trailing.push(0);
        assert_eq!(
            OffsetRecord::decode(&key, &trailing),
            Err(OffsetRecordError::TrailingBytes(1))
        );
        let tombstone = OffsetRecord::GroupTombstone {
            group_id: "payments".to_owned(),
        };
        let (tombstone_key, mut tombstone_value) = tombstone.encode();
        tombstone_value[0] = COMMIT_VALUE_TIMESTAMPED_VERSION;
        assert_eq!(
            OffsetRecord::decode(&tombstone_key, &tombstone_value),
            Err(OffsetRecordError::UnsupportedVersion(1))
        );
        let mut not_utf8 = key.clone();
        not_utf8[4] = 0xff;
        assert_eq!(
            OffsetRecord::decode(&not_utf8, &value),
            Err(OffsetRecordError::InvalidUtf8)
        );
    }

    proptest! {
        #[test]
        fn round_trip(
            group_id in "[a-z0-9._-]{1,40}",
            topic in "[a-zA-Z0-9._-]{1,60}",
            partition in 0i32..=i32::MAX,
            offset in any::<i64>(),
            leader_epoch in any::<i32>(),
            metadata in ".{0,50}",
            commit_timestamp_ms in proptest::option::of(any::<i64>()),
            kind in 0u8..4,
        ) {
            let record = match kind {
                0 => OffsetRecord::GroupTombstone { group_id },
                1 => OffsetRecord::SnapshotComplete { start_offset: offset },
                2 => OffsetRecord::OffsetTombstone { group_id, topic, partition },
                _ => OffsetRecord::Commit {
                    group_id, topic, partition, offset, leader_epoch, metadata, commit_timestamp_ms,
                },
            };
            let (key, value) = record.encode();
            prop_assert_eq!(OffsetRecord::decode(&key, &value), Ok(record));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = OffsetRecord::decode(&key, &value);
        }
    }
}
