//! The partition log against a model, under random appends, syncs, crashes, clean restarts,
//! truncations, retention and reads.
//!
//! The model is the list of batches ever appended (offsets and exact stored bytes) plus the
//! durable end offset. Properties checked:
//! - offsets are dense and monotonic from the log start to the log end, and every batch the log
//!   returns is byte for byte the one appended at that offset;
//! - every batch appended before a completed sync survives any crash;
//! - after a crash the log is a prefix of what was appended: never garbage, never a gap;
//! - `durable_end_offset <= log_end_offset` always;
//! - after open, the segment files hold nothing past their last batch, whether or not the
//!   active segment was preallocated (a spare zero-filled ahead of the roll).

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;

use super::config::{LogConfig, RETENTION_UNLIMITED};
use super::error::LogError;
use super::partition_log::PartitionLog;
use super::record_batch::test_batches::sized_batch;
use super::record_batch::{split_batches, validate};
use super::spare::SpareGate;
use crate::io::{Disk, SimDisk};

const DIR: &str = "/data/model-0";
const START_MS: i64 = 1_700_000_000_000;
/// Operations per generated case.
const OPERATIONS_PER_CASE_MAX: usize = 60;

#[derive(Clone, Debug)]
enum Operation {
    Append {
        records: usize,
        value_bytes: usize,
        leader_epoch: i32,
        /// How far before the wall clock the batch's first timestamp is: producers' clocks
        /// differ, so timestamps in a log go back and forth, and equal ones recur.
        timestamp_back_ms: i64,
    },
    Sync,
    /// Prepares the spare for the next segment, if the log wants one now (`preallocate`).
    PrepareSpare,
    Crash {
        seed: u64,
    },
    CrashLosingEverythingUnsynced,
    CloseAndReopen,
    /// Truncates at the given fraction (per mille) of the way from log start to log end.
    TruncateTo {
        per_mille: i64,
    },
    Retention,
    /// Reads at the given fraction (per mille) of the way from log start to log end.
    Read {
        per_mille: i64,
        max_bytes: usize,
    },
    /// ListOffsets by a timestamp this many milliseconds after the start, from the given
    /// fraction (per mille) of the way from log start to log end (a log start DeleteRecords
    /// raised past the first segment's base).
    FindTimestamp {
        after_start_ms: i64,
        from_per_mille: i64,
    },
    /// ListOffsets' MAX_TIMESTAMP from the given fraction (per mille) of the way from log start
    /// to log end.
    FindMaxTimestamp {
        from_per_mille: i64,
    },
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        8 => (1usize..6, 0usize..300, 0i32..3, prop_oneof![Just(0i64), 0i64..300]).prop_map(
            |(records, value_bytes, leader_epoch, timestamp_back_ms)| Operation::Append {
                records,
                value_bytes,
                leader_epoch,
                timestamp_back_ms,
            },
        ),
        3 => Just(Operation::Sync),
        2 => Just(Operation::PrepareSpare),
        1 => any::<u64>().prop_map(|seed| Operation::Crash { seed }),
        1 => Just(Operation::CrashLosingEverythingUnsynced),
        1 => Just(Operation::CloseAndReopen),
        1 => (0i64..=1000).prop_map(|per_mille| Operation::TruncateTo { per_mille }),
        1 => Just(Operation::Retention),
        2 => (0i64..=1000, 1usize..3000).prop_map(|(per_mille, max_bytes)| Operation::Read { per_mille, max_bytes }),
        1 => (0i64..800, prop_oneof![Just(0i64), 0i64..=1000]).prop_map(
            |(after_start_ms, from_per_mille)| Operation::FindTimestamp { after_start_ms, from_per_mille },
        ),
        1 => prop_oneof![Just(0i64), 0i64..=1000]
            .prop_map(|from_per_mille| Operation::FindMaxTimestamp { from_per_mille }),
    ]
}

fn config(preallocate: bool) -> LogConfig {
    LogConfig {
        preallocate,
        segment_bytes: 3072,
        index_interval_bytes: 512,
        retention_ms: RETENTION_UNLIMITED,
        retention_bytes: 12_288,
        ..LogConfig::default()
    }
}

/// One appended batch as the model remembers it.
#[derive(Clone, Debug)]
struct ModelBatch {
    base_offset: i64,
    next_offset: i64,
    bytes: Vec<u8>,
}

struct Harness {
    disk: SimDisk,
    log: Option<PartitionLog>,
    batches: Vec<ModelBatch>,
    durable_end_offset: i64,
    wall_ms: i64,
    preallocate: bool,
}

impl Harness {
    fn new(preallocate: bool) -> Self {
        let disk = SimDisk::new();
        let mut harness = Harness {
            disk,
            log: None,
            batches: Vec::new(),
            durable_end_offset: 0,
            wall_ms: START_MS,
            preallocate,
        };
        harness.reopen();
        harness
    }

    fn log(&mut self) -> &mut PartitionLog {
        self.log.as_mut().expect("open")
    }

    fn model_end(&self) -> i64 {
        self.batches.last().map_or(0, |batch| batch.next_offset)
    }

    fn reopen(&mut self) {
        let (log, _report) = PartitionLog::open(
            Arc::new(self.disk.clone()),
            Path::new(DIR),
            config(self.preallocate),
            self.wall_ms,
        )
        .expect("reopen");
        // Whatever was preallocated, an opened log's files end with its last batch.
        let file_bytes: u64 = self
            .disk
            .list(Path::new(DIR))
            .expect("list")
            .iter()
            .filter(|entry| entry.name.ends_with(".log"))
            .map(|entry| {
                let path = Path::new(DIR).join(&entry.name);
                self.disk
                    .open(&path, false)
                    .expect("open")
                    .len()
                    .expect("len")
            })
            .sum();
        assert_eq!(
            file_bytes,
            log.size_bytes(),
            "segment files hold bytes past their batches"
        );
        self.log = Some(log);
    }

    fn apply(&mut self, operation: &Operation) {
        self.wall_ms += 10;
        let wall_ms = self.wall_ms;
        match *operation {
            Operation::Append {
                records,
                value_bytes,
                leader_epoch,
                timestamp_back_ms,
            } => {
                let batch = sized_batch(records, value_bytes, wall_ms - timestamp_back_ms);
                let info = self
                    .log()
                    .append(&batch, leader_epoch, wall_ms)
                    .expect("append");
                assert_eq!(info.base_offset, self.model_end());
                let stored = self
                    .log()
                    .read(info.base_offset, 1, i64::MAX)
                    .expect("read back");
                assert_eq!(stored.len(), batch.len());
                assert_eq!(&stored[61..], &batch[61..]);
                self.batches.push(ModelBatch {
                    base_offset: info.base_offset,
                    next_offset: info.last_offset + 1,
                    bytes: stored.to_vec(),
                });
            }
            Operation::Sync => {
                let disk = self.disk.clone();
                let log = self.log();
                if let Some(plan) = log.begin_sync() {
                    plan.execute(&disk).expect("sync");
                    log.complete_sync(plan.end_offset);
                }
                assert_eq!(self.log().durable_end_offset(), self.model_end());
                self.durable_end_offset = self.model_end();
            }
            Operation::PrepareSpare => {
                let disk = self.disk.clone();
                if let Some(plan) = self.log().begin_spare() {
                    plan.execute(&disk, &SpareGate::default()).expect("spare");
                    self.log().complete_spare(true);
                }
            }
            Operation::Crash { seed } => {
                self.log = None;
                self.disk.crash(seed);
                self.recover_after_crash();
            }
            Operation::CrashLosingEverythingUnsynced => {
                self.log = None;
                self.disk.crash_losing_everything_unsynced();
                self.recover_after_crash();
            }
            Operation::CloseAndReopen => {
                let end = self.model_end();
                let mut closing = self.log.take().expect("open");
                closing.close().expect("close");
                self.reopen();
                assert_eq!(self.log().log_end_offset(), end);
                self.durable_end_offset = end;
            }
            Operation::TruncateTo { per_mille } => {
                let offset = self.offset_at(per_mille);
                self.log().truncate_to(offset).expect("truncate");
                // A truncation is synced before it returns, making what stays durable; a
                // truncation at or past the end changes nothing and syncs nothing.
                if offset < self.model_end() {
                    self.batches.retain(|batch| batch.next_offset <= offset);
                    self.durable_end_offset = self.model_end();
                }
                assert_eq!(self.log().log_end_offset(), self.model_end());
            }
            Operation::Retention => {
                self.log().apply_retention(wall_ms).expect("retention");
                let start = self.log().log_start_offset();
                assert!(self.is_boundary(start), "log start {start} inside a batch");
            }
            Operation::Read {
                per_mille,
                max_bytes,
            } => {
                let offset = self.offset_at(per_mille);
                self.check_read(offset, max_bytes);
            }
            Operation::FindTimestamp {
                after_start_ms,
                from_per_mille,
            } => {
                let from = self.offset_at(from_per_mille);
                self.check_offset_for_timestamp(START_MS + after_start_ms, from);
            }
            Operation::FindMaxTimestamp { from_per_mille } => {
                let from = self.offset_at(from_per_mille);
                self.check_offset_of_max_timestamp(from);
            }
        }
        let log = self.log.as_ref().expect("open");
        assert!(log.durable_end_offset() <= log.log_end_offset());
        assert_eq!(log.log_end_offset(), self.model_end());
    }

    fn offset_at(&mut self, per_mille: i64) -> i64 {
        let start = self.log().log_start_offset();
        let end = self.log().log_end_offset();
        start + (end - start) * per_mille / 1000
    }

    fn is_boundary(&self, offset: i64) -> bool {
        offset == self.model_end() || self.batches.iter().any(|batch| batch.base_offset == offset)
    }

    fn recover_after_crash(&mut self) {
        self.reopen();
        let end = self.log().log_end_offset();
        assert!(
            end >= self.durable_end_offset,
            "lost synced data: log end {end}, durable {}",
            self.durable_end_offset
        );
        assert!(
            end <= self.model_end(),
            "log end {end} beyond anything appended"
        );
        assert!(self.is_boundary(end), "log end {end} inside a batch");
        self.batches.retain(|batch| batch.next_offset <= end);
        assert_eq!(self.log().durable_end_offset(), end);
        self.durable_end_offset = end;
        self.check_whole_log();
    }

    fn check_read(&mut self, offset: i64, max_bytes: usize) {
        let end = self.model_end();
        let bytes = self.log().read(offset, max_bytes, end).expect("read");
        if offset == end {
            assert!(bytes.is_empty());
            return;
        }
        let first = self
            .batches
            .iter()
            .position(|batch| batch.next_offset > offset)
            .expect("a batch holds the offset");
        let mut expected_position = 0;
        let mut count = 0;
        for (index, part) in split_batches(&bytes).enumerate() {
            let part = part.expect("whole batches");
            validate(part).expect("valid batch");
            assert_eq!(part, self.batches[first + index].bytes.as_slice());
            expected_position += part.len();
            count += 1;
        }
        assert_eq!(expected_position, bytes.len());
        assert!(count >= 1, "at least one batch");
        assert!(count == 1 || bytes.len() <= max_bytes);
    }

    /// Compares ListOffsets with a brute-force search of the model's records.
    fn check_offset_for_timestamp(&mut self, timestamp: i64, from: i64) {
        let start = self.log().log_start_offset();
        let end = self.model_end();
        let expected = self
            .batches
            .iter()
            .filter(|batch| batch.base_offset >= start)
            .find_map(|batch| {
                let mut bytes = bytes::Bytes::copy_from_slice(&batch.bytes);
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
                    .expect("decodable");
                set.records
                    .iter()
                    .find(|record| record.timestamp >= timestamp && record.offset >= from)
                    .map(|record| (record.offset, record.timestamp))
            });
        let found = self
            .log()
            .offset_for_timestamp(timestamp, from, end)
            .expect("offset for timestamp");
        assert_eq!(found, expected, "timestamp {timestamp} from offset {from}");
    }

    /// Compares MAX_TIMESTAMP with a brute-force search of the model's records: the largest
    /// timestamp from `from`, at its earliest offset.
    fn check_offset_of_max_timestamp(&mut self, from: i64) {
        let start = self.log().log_start_offset();
        let end = self.model_end();
        let mut expected: Option<(i64, i64)> = None;
        for batch in self
            .batches
            .iter()
            .filter(|batch| batch.base_offset >= start)
        {
            let mut bytes = bytes::Bytes::copy_from_slice(&batch.bytes);
            let set =
                kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodable");
            for record in set.records.iter().filter(|record| record.offset >= from) {
                if expected.is_none_or(|(_, timestamp)| record.timestamp > timestamp) {
                    expected = Some((record.offset, record.timestamp));
                }
            }
        }
        let found = self
            .log()
            .offset_of_max_timestamp(from, end)
            .expect("offset of the max timestamp");
        assert_eq!(found, expected, "max timestamp from offset {from}");
    }

    /// Reads the whole log and compares it with the model, batch by batch.
    fn check_whole_log(&mut self) {
        let start = self.log().log_start_offset();
        let end = self.log().log_end_offset();
        assert!(self.is_boundary(start));
        let expected: Vec<&ModelBatch> = self
            .batches
            .iter()
            .filter(|batch| batch.base_offset >= start)
            .collect();
        let mut offset = start;
        let mut seen = 0;
        // Bounded: each read returns at least one batch until the end.
        while offset < end {
            let bytes = self
                .log
                .as_ref()
                .expect("open")
                .read(offset, 1 << 20, end)
                .expect("read");
            assert!(!bytes.is_empty());
            for part in split_batches(&bytes) {
                let part = part.expect("whole");
                let header = validate(part).expect("valid");
                assert_eq!(header.base_offset, offset, "offsets are dense");
                assert_eq!(part, expected[seen].bytes.as_slice());
                offset = header.last_offset() + 1;
                seen += 1;
            }
        }
        assert_eq!(seen, expected.len());
        let mut visited = Vec::new();
        self.log
            .as_ref()
            .expect("open")
            .for_each_batch(start, |header| visited.push(header.base_offset))
            .expect("walk");
        let expected_bases: Vec<i64> = expected.iter().map(|batch| batch.base_offset).collect();
        assert_eq!(visited, expected_bases);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 64 cases keep CI quick on two cores; PROPTEST_CASES asks for a longer search.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model(
        preallocate in any::<bool>(),
        operations in proptest::collection::vec(operation(), 1..OPERATIONS_PER_CASE_MAX),
    ) {
        let mut harness = Harness::new(preallocate);
        for operation in &operations {
            harness.apply(operation);
        }
        harness.check_whole_log();
        let end = harness.model_end();
        let mut closing = harness.log.take().expect("open");
        closing.close().expect("close");
        harness.reopen();
        prop_assert_eq!(harness.log().log_end_offset(), end);
        harness.check_whole_log();
        let result = harness.log().read(end + 1, 10, end + 1);
        prop_assert!(
            matches!(result, Err(LogError::OffsetOutOfRange { .. })),
            "reading past the end must fail"
        );
    }
}
