//! Errors of the partition log, each variant carrying its Kafka meaning.
//!
//! Bad input from a producer (`BatchError`) and operating errors of the log (`LogError`) are
//! kept apart: the first is answered to the client, the second may mean the disk is failing.

use kafka_protocol::ResponseError;

/// Why a record batch was rejected. Produced by [`super::record_batch::validate`] and by
/// recovery when it finds a torn or corrupt batch on disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than the header or the declared batch length need.
    #[error("record batch is incomplete: {available} bytes available, {needed} needed")]
    Incomplete { available: usize, needed: usize },
    /// `batchLength` is smaller than a v2 header or larger than any batch may be.
    #[error("record batch declares an invalid length of {batch_length} bytes")]
    InvalidLength { batch_length: i32 },
    /// Message format v0 or v1, which Skiff does not store.
    #[error("record batch magic {magic} predates message format v2")]
    UnsupportedMagic { magic: i8 },
    /// A magic byte from the future (or noise).
    #[error("record batch magic {magic} is unknown")]
    UnknownMagic { magic: i8 },
    /// The stored CRC32C does not match the bytes it covers.
    #[error("record batch CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    /// The record count or last offset delta cannot describe a real batch.
    #[error(
        "record batch has {record_count} records but a last offset delta of {last_offset_delta}"
    )]
    InvalidRecordCount {
        record_count: i32,
        last_offset_delta: i32,
    },
}

impl BatchError {
    /// The Kafka error a Produce response carries for this rejection.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            BatchError::UnsupportedMagic { .. } => ResponseError::UnsupportedForMessageFormat,
            BatchError::InvalidRecordCount { .. } => ResponseError::InvalidRecord,
            BatchError::Incomplete { .. }
            | BatchError::InvalidLength { .. }
            | BatchError::UnknownMagic { .. }
            | BatchError::CrcMismatch { .. } => ResponseError::CorruptMessage,
        }
    }
}

/// Errors of [`super::PartitionLog`] operations.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The requested offset lies outside `[log_start, log_end]` (Kafka `OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is outside the log range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    /// The batch handed to `append` is malformed (Kafka `CORRUPT_MESSAGE` and friends).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(#[from] BatchError),
    /// The batch exceeds `max.message.bytes` or `segment.bytes` (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge { bytes: usize, limit: u64 },
    /// The disk failed (Kafka `KAFKA_STORAGE_ERROR`).
    #[error("disk error: {0}")]
    Io(#[from] std::io::Error),
    /// The partition directory holds something the log did not write.
    #[error("corrupt partition directory: {0}")]
    CorruptDirectory(String),
}

impl LogError {
    /// The Kafka error a response carries for this failure.
    pub fn kafka_error(&self) -> ResponseError {
        match self {
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::CorruptBatch(batch) => batch.kafka_error(),
            LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
            LogError::Io(_) | LogError::CorruptDirectory(_) => ResponseError::KafkaStorageError,
        }
    }
}
