//! The Kafka v2 record batch, as stored on disk and carried by Produce and Fetch.
//!
//! Only the 61-byte header is interpreted on the hot path; records stay opaque bytes.
//!
//! ```text
//! offset  size  field                 covered by CRC
//!      0     8  baseOffset     i64    no   (patched by the broker on append)
//!      8     4  batchLength    i32    no   (bytes after this field)
//!     12     4  partitionLeaderEpoch  no   (patched by the broker on append)
//!     16     1  magic          i8     no   (must be 2)
//!     17     4  crc            u32    no   (CRC32C of bytes 21..end)
//!     21     2  attributes     i16    yes  (bits 0-2 compression, 4 transactional, 5 control)
//!     23     4  lastOffsetDelta i32   yes
//!     27     8  baseTimestamp  i64    yes
//!     35     8  maxTimestamp   i64    yes
//!     43     8  producerId     i64    yes
//!     51     2  producerEpoch  i16    yes
//!     53     4  baseSequence   i32    yes
//!     57     4  recordCount    i32    yes
//!     61     …  records               yes
//! ```
//! All integers are big-endian.

use super::error::BatchError;

/// Size of the v2 batch header.
pub const HEADER_BYTES: usize = 61;
/// Bytes before and including `batchLength`, which `batchLength` does not count.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Where the CRC-covered region starts.
pub const CRC_START_BYTES: usize = 21;
/// The only message format Skiff stores.
pub const MAGIC_V2: i8 = 2;
/// The largest batch length recovery and `split_batches` believe before reading it: keeps a
/// corrupt length field from asking for gigabytes. Larger than any `max.message.bytes`.
pub const BATCH_BYTES_MAX: usize = 1 << 30;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

const _: () = assert!(RECORD_COUNT_AT + 4 == HEADER_BYTES);
const _: () = assert!(CRC_AT + 4 == CRC_START_BYTES && ATTRIBUTES_AT == CRC_START_BYTES);
const _: () = assert!(BATCH_LENGTH_AT + 4 == LOG_OVERHEAD_BYTES);

/// The decoded header of one v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordBatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

/// The compression codec named by a batch's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codes 5-7, which no Kafka version defines.
    Unknown(u8),
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}
fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().expect("two bytes"))
}

impl RecordBatchHeader {
    /// Decodes the header at the start of `bytes`, checking only what is needed to trust the
    /// length: the magic byte and that `batchLength` covers at least a header. Neither the CRC
    /// nor the presence of the whole batch is checked here; see [`validate`].
    pub fn parse(bytes: &[u8]) -> Result<RecordBatchHeader, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Incomplete {
                available: bytes.len(),
                needed: HEADER_BYTES,
            });
        }
        let magic = bytes[MAGIC_AT] as i8;
        if magic < MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic { magic });
        }
        if magic > MAGIC_V2 {
            return Err(BatchError::UnknownMagic { magic });
        }
        let batch_length = read_i32(bytes, BATCH_LENGTH_AT);
        let total = i64::from(batch_length) + LOG_OVERHEAD_BYTES as i64;
        if total < HEADER_BYTES as i64 || total > BATCH_BYTES_MAX as i64 {
            return Err(BatchError::InvalidLength { batch_length });
        }
        Ok(RecordBatchHeader {
            base_offset: read_i64(bytes, BASE_OFFSET_AT),
            batch_length,
            partition_leader_epoch: read_i32(bytes, PARTITION_LEADER_EPOCH_AT),
            magic,
            crc: read_i32(bytes, CRC_AT) as u32,
            attributes: read_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: read_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: read_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: read_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: read_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: read_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: read_i32(bytes, BASE_SEQUENCE_AT),
            record_count: read_i32(bytes, RECORD_COUNT_AT),
        })
    }

    /// The offset of the batch's last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// The offset just past the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// The whole batch's size in bytes, header included.
    pub fn total_bytes(&self) -> usize {
        debug_assert!(self.batch_length >= (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32);
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }
}

/// Checks that `bytes` is exactly one well-formed v2 batch: magic, length, record count and
/// CRC32C. This is the per-batch CPU cost of a Produce request; `append` trusts its result.
pub fn validate(bytes: &[u8]) -> Result<RecordBatchHeader, BatchError> {
    let header = RecordBatchHeader::parse(bytes)?;
    if bytes.len() != header.total_bytes() {
        return Err(BatchError::Incomplete {
            available: bytes.len(),
            needed: header.total_bytes(),
        });
    }
    // A v2 batch holds at least one record, and its last offset delta can be at most the count
    // minus one. It can be less, after compaction removed records, so only the bound is checked.
    if header.record_count < 1
        || header.last_offset_delta < 0
        || header.last_offset_delta < header.record_count - 1
    {
        return Err(BatchError::InvalidRecordCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    let computed = crc32c::crc32c(&bytes[CRC_START_BYTES..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Splits a Produce request's `records` blob into its batches, without validating them. A
/// partial batch or trailing bytes yield an error as the last item.
pub fn split_batches(records: &[u8]) -> SplitBatches<'_> {
    SplitBatches { rest: records }
}

/// The iterator returned by [`split_batches`].
pub struct SplitBatches<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SplitBatches<'a> {
    type Item = Result<&'a [u8], BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let header = match RecordBatchHeader::parse(self.rest) {
            Ok(header) => header,
            Err(error) => {
                // Stop after the first error: nothing after it can be framed.
                self.rest = &[];
                return Some(Err(error));
            }
        };
        let total = header.total_bytes();
        if total > self.rest.len() {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(BatchError::Incomplete {
                available,
                needed: total,
            }));
        }
        let (batch, rest) = self.rest.split_at(total);
        self.rest = rest;
        Some(Ok(batch))
    }
}

/// The bytes at the start of a batch that the log rewrites: the base offset and the partition
/// leader epoch (with the batch length between them). The CRC covers none of them.
pub const REWRITTEN_PREFIX_BYTES: usize = PARTITION_LEADER_EPOCH_AT + 4;

const _: () = assert!(BASE_OFFSET_AT + 8 <= REWRITTEN_PREFIX_BYTES);
const _: () = assert!(REWRITTEN_PREFIX_BYTES <= HEADER_BYTES);

/// The first [`REWRITTEN_PREFIX_BYTES`] of `batch` as the log stores them: with `base_offset`
/// and `leader_epoch`. The rest of the batch is written as received, so appending a batch
/// copies only these bytes.
pub fn rewritten_prefix(
    batch: &[u8],
    base_offset: i64,
    leader_epoch: i32,
) -> [u8; REWRITTEN_PREFIX_BYTES] {
    assert!(batch.len() >= HEADER_BYTES, "not a record batch");
    let mut prefix = [0u8; REWRITTEN_PREFIX_BYTES];
    prefix.copy_from_slice(&batch[..REWRITTEN_PREFIX_BYTES]);
    prefix[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
    prefix[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
    prefix
}

/// Sets the base offset. It lies outside the CRC, so the batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= HEADER_BYTES, "not a record batch");
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets the partition leader epoch. It lies outside the CRC, so the batch stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], leader_epoch: i32) {
    assert!(batch.len() >= HEADER_BYTES, "not a record batch");
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
        .copy_from_slice(&leader_epoch.to_be_bytes());
}

/// Encodes one uncompressed v2 batch of key/value records, as a non-idempotent producer sends
/// it, the first record at `timestamp_ms` and each later one a millisecond after. The broker's
/// own writers (committed group offsets) and tests use it.
pub fn encode_batch(
    records: &[(Option<bytes::Bytes>, Option<bytes::Bytes>)],
    timestamp_ms: i64,
) -> bytes::Bytes {
    encode_batch_with_timestamps(
        records
            .iter()
            .enumerate()
            .map(|(index, (key, value))| (key.clone(), value.clone(), timestamp_ms + index as i64)),
    )
}

/// Encodes one uncompressed v2 batch of `(key, value, timestamp)` records, each with its own
/// timestamp, in any order (a producer may set them).
pub fn encode_batch_with_timestamps(
    records: impl Iterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>, i64)>,
) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let records: Vec<Record> = records
        .enumerate()
        .map(|(index, (key, value, timestamp))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch unless `offset - sequence` stays constant; this
            // keeps one batch whose base sequence is -1, as a non-idempotent producer sends.
            sequence: index as i32 - 1,
            timestamp,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buffer = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options)
        .expect("encoding uncompressed records into memory cannot fail");
    buffer.freeze()
}

#[cfg(test)]
pub(crate) mod test_batches {
    //! Builders of real batches for the log's tests.

    use bytes::Bytes;

    /// Encodes one uncompressed v2 batch of `values`, the first record at `timestamp` and each
    /// later one a millisecond after.
    pub fn batch(values: &[&[u8]], timestamp: i64) -> Vec<u8> {
        let records: Vec<(Option<Bytes>, Option<Bytes>)> = values
            .iter()
            .map(|value| (None, Some(Bytes::copy_from_slice(value))))
            .collect();
        super::encode_batch(&records, timestamp).to_vec()
    }

    /// A batch of `count` records of `value_bytes` bytes each.
    pub fn sized_batch(count: usize, value_bytes: usize, timestamp: i64) -> Vec<u8> {
        let value = vec![0x5a; value_bytes];
        let values: Vec<&[u8]> = (0..count).map(|_| value.as_slice()).collect();
        batch(&values, timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::test_batches::batch;
    use super::*;

    #[test]
    fn parses_and_validates_an_encoded_batch() {
        let bytes = batch(&[b"one", b"two", b"three"], 1_700_000_000_000);
        let header = validate(&bytes).expect("valid");
        assert_eq!(header.record_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.last_offset(), header.base_offset + 2);
        assert_eq!(header.total_bytes(), bytes.len());
        assert_eq!(header.max_timestamp, 1_700_000_000_002);
        assert_eq!(header.compression(), Compression::None);
        assert!(!header.is_transactional() && !header.is_control());
        insta::assert_debug_snapshot!(header);
    }

    #[test]
    fn patching_offset_and_epoch_keeps_the_crc_valid() {
        let mut bytes = batch(&[b"a"], 5);
        set_base_offset(&mut bytes, 42);
        set_partition_leader_epoch(&mut bytes, 7);
        let header = validate(&bytes).expect("still valid");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.partition_leader_epoch, 7);
    }

    #[test]
    fn the_rewritten_prefix_and_the_rest_are_the_patched_batch() {
        let original = batch(&[b"key-value", b"another"], 5);
        let prefix = rewritten_prefix(&original, 4_000_000_000, 11);
        let mut joined = prefix.to_vec();
        joined.extend_from_slice(&original[REWRITTEN_PREFIX_BYTES..]);
        let mut patched = original.clone();
        set_base_offset(&mut patched, 4_000_000_000);
        set_partition_leader_epoch(&mut patched, 11);
        assert_eq!(joined, patched);
        let header = validate(&joined).expect("still valid");
        assert_eq!(header.base_offset, 4_000_000_000);
        assert_eq!(header.partition_leader_epoch, 11);
    }

    #[test]
    fn detects_a_flipped_bit_anywhere_in_the_crc_region() {
        let bytes = batch(&[b"payload", b"more payload"], 9);
        for position in CRC_START_BYTES..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[position] ^= 0x01;
            let result = validate(&corrupt);
            assert!(result.is_err(), "flip at {position} went unnoticed");
        }
    }

    #[test]
    fn rejects_old_magic_and_bad_lengths() {
        let mut bytes = batch(&[b"x"], 0);
        bytes[MAGIC_AT] = 1;
        let error = validate(&bytes).unwrap_err();
        assert_eq!(error, BatchError::UnsupportedMagic { magic: 1 });
        assert_eq!(
            error.kafka_error(),
            kafka_protocol::ResponseError::UnsupportedForMessageFormat
        );
        let bytes = batch(&[b"x"], 0);
        assert!(matches!(
            validate(&bytes[..bytes.len() - 1]),
            Err(BatchError::Incomplete { .. })
        ));
        assert!(matches!(
            validate(&bytes[..10]),
            Err(BatchError::Incomplete { .. })
        ));
        let mut short = bytes.clone();
        short[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            validate(&short),
            Err(BatchError::InvalidLength { batch_length: 10 })
        ));
    }

    #[test]
    fn splits_concatenated_batches_and_reports_trailing_garbage() {
        let first = batch(&[b"a"], 1);
        let second = batch(&[b"b", b"c"], 2);
        let mut blob = first.clone();
        blob.extend_from_slice(&second);
        let parts: Vec<&[u8]> = split_batches(&blob).map(|part| part.unwrap()).collect();
        assert_eq!(parts, vec![first.as_slice(), second.as_slice()]);

        blob.extend_from_slice(&[0u8; 5]);
        let results: Vec<_> = split_batches(&blob).collect();
        assert_eq!(results.len(), 3);
        assert!(matches!(results[2], Err(BatchError::Incomplete { .. })));

        let partial = &blob[..first.len() + 70];
        let results: Vec<_> = split_batches(partial).collect();
        assert!(matches!(results[1], Err(BatchError::Incomplete { .. })));
    }
}
