//! Per-partition log settings, named after the Kafka topic configs they implement.

/// The default `segment.bytes`: one GiB, as in Kafka.
pub const SEGMENT_BYTES_DEFAULT: u64 = 1 << 30;
/// The largest `segment.bytes` accepted: file positions in the offset index are `u32`.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;
/// The default `segment.ms`: seven days.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// The default `retention.ms`: seven days.
pub const RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;
/// The value of `retention.ms` and `retention.bytes` that disables the limit.
pub const RETENTION_UNLIMITED: i64 = -1;
/// The default `index.interval.bytes`.
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
/// The default `preallocate`: off, as in Kafka. Writing the zeros costs disk bandwidth and CPU
/// that, on the machines measured, took more from latency than the shorter fsyncs gave back
/// (see [`super::spare`]).
pub const PREALLOCATE_DEFAULT: bool = false;
/// The default `max.message.bytes`: one MiB plus the 12 bytes of a batch's offset and length.
pub const MAX_MESSAGE_BYTES_DEFAULT: u32 = 1_048_588;

const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
const _: () = assert!((MAX_MESSAGE_BYTES_DEFAULT as u64) < SEGMENT_BYTES_DEFAULT);

/// The settings of one partition's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: a segment is rolled before it would grow past this size.
    pub segment_bytes: u64,
    /// `segment.ms`: a non-empty segment older than this (by the wall clock) is rolled.
    pub segment_ms: i64,
    /// `retention.ms`: sealed segments whose newest timestamp is older than this are deleted;
    /// [`RETENTION_UNLIMITED`] keeps them.
    pub retention_ms: i64,
    /// `retention.bytes`: sealed segments are deleted, oldest first, while the log is larger;
    /// [`RETENTION_UNLIMITED`] keeps them.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: log bytes between two sparse index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: the largest batch `append` accepts.
    pub max_message_bytes: u32,
    /// `preallocate`: prepare the next segment's file, zero-filled and synced, while the active
    /// one fills (see [`super::spare`]).
    pub preallocate: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_ms: SEGMENT_MS_DEFAULT,
            retention_ms: RETENTION_MS_DEFAULT,
            retention_bytes: RETENTION_UNLIMITED,
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            max_message_bytes: MAX_MESSAGE_BYTES_DEFAULT,
            preallocate: PREALLOCATE_DEFAULT,
        }
    }
}

impl LogConfig {
    /// Panics on settings no operator could mean: a configuration layer validates user input
    /// before it reaches the log, so a bad value here is a programmer error.
    pub fn assert_valid(&self) {
        assert!(
            self.segment_bytes >= 1 && self.segment_bytes <= SEGMENT_BYTES_MAX,
            "segment.bytes {} must be in [1, {SEGMENT_BYTES_MAX}]",
            self.segment_bytes
        );
        assert!(self.segment_ms > 0, "segment.ms must be positive");
        assert!(self.retention_ms >= RETENTION_UNLIMITED);
        assert!(self.retention_bytes >= RETENTION_UNLIMITED);
        assert!(self.index_interval_bytes > 0);
        assert!(self.max_message_bytes > 0);
    }
}
