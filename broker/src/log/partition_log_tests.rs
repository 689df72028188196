//! Scenario tests of [`PartitionLog`] over the simulated disk.

use std::path::Path;
use std::sync::Arc;

use super::config::{LogConfig, RETENTION_UNLIMITED};
use super::error::LogError;
use super::partition_log::{Cleanup, PartitionLog};
use super::record_batch::test_batches::{batch, sized_batch};
use super::record_batch::{split_batches, validate};
use super::segment::{segment_path, LOG_EXTENSION};
use super::spare::{SpareGate, SPARE_BYTES_FIRST};
use crate::io::{Disk, SimDisk};

const DIR: &str = "/data/topic-0";
const START_MS: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 256,
        retention_ms: RETENTION_UNLIMITED,
        ..LogConfig::default()
    }
}

fn open(disk: &SimDisk, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, START_MS)
        .expect("open")
        .0
}

fn sync(log: &mut PartitionLog, disk: &SimDisk) {
    if let Some(plan) = log.begin_sync() {
        plan.execute(disk).expect("sync");
        log.complete_sync(plan.end_offset);
    }
}

/// Appends `count` batches of three 100-byte records, timestamps one second apart.
fn fill(log: &mut PartitionLog, count: i64) {
    for index in 0..count {
        let timestamp = START_MS + index * 1000;
        log.append(&sized_batch(3, 100, timestamp), 5, timestamp)
            .expect("append");
    }
}

fn offsets_of(bytes: &[u8]) -> Vec<(i64, i64)> {
    split_batches(bytes)
        .map(|part| {
            let header = validate(part.expect("whole")).expect("valid");
            (header.base_offset, header.last_offset())
        })
        .collect()
}

#[test]
fn appends_assign_dense_offsets_and_read_back_patched_batches() {
    let disk = SimDisk::new();
    let mut log = open(&disk, LogConfig::default());
    let first = log
        .append(&batch(&[b"a", b"b"], START_MS), 3, START_MS)
        .unwrap();
    let second = log
        .append(&batch(&[b"c"], START_MS + 5), 3, START_MS)
        .unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 1));
    assert_eq!((second.base_offset, second.last_offset), (2, 2));
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(log.durable_end_offset(), 0);
    let bytes = log.read(0, 1 << 20, 3).unwrap();
    assert_eq!(offsets_of(&bytes), vec![(0, 1), (2, 2)]);
    let header = validate(&bytes[..first.bytes]).unwrap();
    assert_eq!(header.partition_leader_epoch, 3);
    assert!(log.read(3, 1 << 20, 3).unwrap().is_empty());
    assert!(matches!(
        log.read(4, 1, 3),
        Err(LogError::OffsetOutOfRange { offset: 4, .. })
    ));
    sync(&mut log, &disk);
    assert_eq!(log.durable_end_offset(), 3);
    assert!(log.begin_sync().is_none());
}

#[test]
fn unsynced_bytes_count_the_batches_appended_since_the_last_sync_began() {
    let disk = SimDisk::new();
    let mut log = open(&disk, LogConfig::default());
    assert_eq!(log.unsynced_bytes(), 0);
    let first = log.append(&batch(&[b"a"], START_MS), 1, START_MS).unwrap();
    let second = log.append(&batch(&[b"bc"], START_MS), 1, START_MS).unwrap();
    assert_eq!(log.unsynced_bytes(), (first.bytes + second.bytes) as u64);
    let plan = log.begin_sync().expect("there is something to sync");
    assert_eq!(log.unsynced_bytes(), 0);
    // An append during the sync counts towards the next one.
    let third = log.append(&batch(&[b"d"], START_MS), 1, START_MS).unwrap();
    plan.execute(&disk).expect("sync");
    log.complete_sync(plan.end_offset);
    assert_eq!(log.unsynced_bytes(), third.bytes as u64);
}

#[test]
fn read_honours_max_bytes_but_returns_at_least_one_batch_below_the_bound() {
    let disk = SimDisk::new();
    let mut log = open(&disk, LogConfig::default());
    fill(&mut log, 5);
    let one = log.read(0, 1, 15).unwrap();
    assert_eq!(offsets_of(&one), vec![(0, 2)]);
    let two = log.read(4, 2 * one.len(), 15).unwrap();
    assert_eq!(offsets_of(&two), vec![(3, 5), (6, 8)]);
    let bounded = log.read(0, 1 << 20, 9).unwrap();
    assert_eq!(offsets_of(&bounded), vec![(0, 2), (3, 5), (6, 8)]);
    assert!(log.read(9, 1 << 20, 9).unwrap().is_empty());
    assert!(log.read(10, 1 << 20, 10).unwrap().is_empty());
}

#[test]
fn rolls_by_size_and_by_age_and_reads_across_segments() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    let mut offset = 0;
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX).unwrap();
        let batches = offsets_of(&bytes);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].0, offset);
        offset = batches[0].1 + 1;
    }
    assert_eq!(offset, 60);

    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let disk = SimDisk::new();
    let mut log = open(&disk, config);
    log.append(&batch(&[b"x"], START_MS), 0, START_MS).unwrap();
    log.append(&batch(&[b"x"], START_MS), 0, START_MS + 999)
        .unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(&[b"x"], START_MS), 0, START_MS + 1000)
        .unwrap();
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn rejects_batches_over_the_limits() {
    let disk = SimDisk::new();
    let config = LogConfig {
        max_message_bytes: 200,
        ..LogConfig::default()
    };
    let mut log = open(&disk, config);
    let error = log
        .append(&sized_batch(3, 100, START_MS), 0, START_MS)
        .unwrap_err();
    assert!(matches!(error, LogError::RecordTooLarge { limit: 200, .. }));
    assert_eq!(
        error.kafka_error(),
        kafka_protocol::ResponseError::MessageTooLarge
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn retention_by_time_and_size_deletes_whole_sealed_segments() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let segments = log.segment_count();
    assert_eq!(log.apply_retention(START_MS + 100_000).unwrap(), 0);

    log.update_config(LogConfig {
        retention_ms: 10_000,
        ..small_config()
    });
    // Every timestamp is at most START_MS + 19 002, so with wall time far ahead all sealed
    // segments are past retention, but the active one stays.
    let deleted = log.apply_retention(START_MS + 1_000_000).unwrap();
    assert_eq!(deleted, segments - 1);
    assert_eq!(log.segment_count(), 1);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 10, 100),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    let base = log.log_start_offset();
    assert!(!disk.exists(&segment_path(Path::new(DIR), 0, LOG_EXTENSION)));
    assert!(disk.exists(&segment_path(Path::new(DIR), base, LOG_EXTENSION)));

    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    log.update_config(LogConfig {
        retention_bytes: 4096,
        ..small_config()
    });
    let deleted = log.apply_retention(START_MS).unwrap();
    assert!(deleted > 0);
    assert!(log.size_bytes() <= 4096 + 2048);
    assert!(log.size_bytes() > 4096 - 2048);
}

#[test]
fn retention_below_a_limit_keeps_every_segment_reaching_past_it() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let segments = log.segment_count();
    assert!(segments > 3);
    log.update_config(LogConfig {
        retention_ms: 10_000,
        ..small_config()
    });
    // Everything is past retention, but only entries below offset `limit` may go: segments
    // that end at or below it are deleted, the one holding it stays.
    let limit = log.log_end_offset() / 2;
    let deleted = log
        .apply_retention_below(START_MS + 1_000_000, limit)
        .unwrap();
    assert!(
        deleted > 0 && deleted < segments - 1,
        "{deleted} of {segments}"
    );
    assert!(log.log_start_offset() <= limit);
    assert!(log.read(limit, 10, log.log_end_offset()).is_ok());
    assert_eq!(
        log.apply_retention_below(START_MS + 1_000_000, 0).unwrap(),
        0
    );
}

#[test]
fn superseded_cleanup_deletes_every_sealed_segment_below_the_bound_whatever_its_age() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let segments = log.segment_count();
    assert!(segments > 3);
    // Retention keeps everything (nothing is old): superseded cleanup ignores it.
    assert_eq!(log.apply_retention(START_MS).unwrap(), 0);
    let bound = log.log_end_offset() / 2;
    let start = log
        .cleanup_start(Cleanup::Superseded, bound)
        .expect("segments end below the bound");
    let deleted = log.apply_cleanup(Cleanup::Superseded, bound).unwrap();
    assert!(deleted > 0 && deleted < segments - 1);
    assert_eq!(log.log_start_offset(), start);
    assert!(start <= bound);
    assert!(log.read(bound, 10, log.log_end_offset()).is_ok());
    // Past the end it deletes every sealed segment, never the active one.
    log.apply_cleanup(Cleanup::Superseded, i64::MAX).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), log.active_segment_base());
}

#[test]
fn truncate_to_cuts_at_the_batch_holding_the_offset_and_survives_a_crash() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    sync(&mut log, &disk);
    log.truncate_to(31).unwrap();
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.durable_end_offset(), 30);
    log.append(&batch(&[b"new"], START_MS), 9, START_MS)
        .unwrap();
    sync(&mut log, &disk);
    drop(log);
    disk.crash(7);
    let mut log = open(&disk, small_config());
    assert_eq!(log.log_end_offset(), 31);
    let bytes = log.read(30, 1 << 20, 31).unwrap();
    assert_eq!(validate(&bytes).unwrap().partition_leader_epoch, 9);
    assert!(matches!(
        log.truncate_to(-1),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn offset_for_timestamp_finds_the_first_record_at_or_after() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    // Batch `i` holds offsets 3i..3i+2 with timestamps START_MS + 1000 i + 0..2.
    assert_eq!(
        log.offset_for_timestamp(0, 0, i64::MAX).unwrap(),
        Some((0, START_MS))
    );
    assert_eq!(
        log.offset_for_timestamp(START_MS + 7001, 0, i64::MAX)
            .unwrap(),
        Some((22, START_MS + 7001))
    );
    assert_eq!(
        log.offset_for_timestamp(START_MS + 7003, 0, i64::MAX)
            .unwrap(),
        Some((24, START_MS + 8000))
    );
    assert_eq!(
        log.offset_for_timestamp(START_MS + 7003, 0, 24).unwrap(),
        None
    );
    assert_eq!(
        log.offset_for_timestamp(START_MS + 50_000, 0, i64::MAX)
            .unwrap(),
        None
    );
}

#[test]
fn for_each_batch_visits_headers_in_order() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let mut seen = Vec::new();
    log.for_each_batch(10, |header| seen.push(header.base_offset))
        .unwrap();
    assert_eq!(seen, (9..60).step_by(3).collect::<Vec<i64>>());
}

#[test]
fn clean_close_trusts_indexes_and_crash_rescans() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let before = log.read(0, 1 << 20, i64::MAX).unwrap();
    log.close().unwrap();
    let (log, report) = PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(DIR),
        small_config(),
        START_MS,
    )
    .unwrap();
    assert!(report.clean_shutdown);
    assert_eq!(report.segments_scanned, 0);
    assert_eq!(report.segments_loaded, log.segment_count());
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap(), before);
    assert_eq!(
        log.offset_for_timestamp(START_MS + 7001, 0, i64::MAX)
            .unwrap(),
        Some((22, START_MS + 7001))
    );
    drop(log);
    disk.crash_losing_everything_unsynced();
    let (log, report) = PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(DIR),
        small_config(),
        START_MS,
    )
    .unwrap();
    assert!(!report.clean_shutdown);
    assert_eq!(report.segments_scanned, 1, "{report:?}");
    assert_eq!(log.log_end_offset(), 60);
}

#[test]
fn recovery_truncates_at_a_corrupt_batch_and_deletes_later_segments() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    sync(&mut log, &disk);
    let segments = log.segment_count();
    // Flip a byte inside the records of the second batch of the second segment.
    drop(log);
    let names: Vec<String> = disk
        .list(Path::new(DIR))
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .filter(|name| name.ends_with(".log"))
        .collect();
    let second: i64 = names[1].trim_end_matches(".log").parse().unwrap();
    let file = disk
        .open(&segment_path(Path::new(DIR), second, LOG_EXTENSION), false)
        .unwrap();
    let mut header = [0u8; 61];
    file.read_exact_at(&mut header, 0).unwrap();
    let first_bytes = validate_prefix_length(&header);
    file.write_at(&[0xff], first_bytes as u64 + 70).unwrap();
    file.sync().unwrap();
    // Without a checkpoint nothing is trusted, so every segment is scanned and checked.
    disk.remove_file(&Path::new(DIR).join("recovery-point.checkpoint"))
        .unwrap();

    let (log, report) = PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(DIR),
        small_config(),
        START_MS,
    )
    .unwrap();
    assert!(report.truncated_bytes > 0);
    assert_eq!(report.segments_deleted, segments - 2);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_end_offset(), second + 3);
    let all = log.read(0, 1 << 20, i64::MAX).unwrap();
    assert!(!all.is_empty());
}

fn validate_prefix_length(header: &[u8]) -> usize {
    super::record_batch::RecordBatchHeader::parse(header)
        .unwrap()
        .total_bytes()
}

#[test]
fn unexpected_files_make_the_directory_corrupt_and_leftovers_are_removed() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    log.close().unwrap();
    let dir = Path::new(DIR);
    disk.open(&dir.join("recovery-point.checkpoint.tmp"), true)
        .unwrap();
    disk.open(&dir.join("00000000000000000500.index"), true)
        .unwrap();
    let (_, report) =
        PartitionLog::open(Arc::new(disk.clone()), dir, small_config(), START_MS).unwrap();
    assert_eq!(report.stray_files_removed, 2);

    for name in ["notes.txt", "123.log", "00000000000000000000.bak"] {
        let disk = SimDisk::new();
        let mut reopened = open(&disk, small_config());
        reopened.close().unwrap();
        disk.open(&dir.join(name), true).unwrap();
        let result = PartitionLog::open(Arc::new(disk.clone()), dir, small_config(), START_MS);
        match result {
            Err(LogError::CorruptDirectory(message)) => assert!(message.contains(name)),
            other => panic!("{name}: expected CorruptDirectory, got {:?}", other.err()),
        }
    }
}

#[test]
fn a_new_directory_survives_a_crash() {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new("/data")).unwrap();
    disk.sync_dir(Path::new("/data")).unwrap();
    let mut log = open(&disk, small_config());
    fill(&mut log, 3);
    sync(&mut log, &disk);
    drop(log);
    disk.crash_losing_everything_unsynced();
    let log = open(&disk, small_config());
    assert_eq!(log.log_end_offset(), 9);
}

#[test]
fn insane_index_files_are_rebuilt_from_the_log() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    let before = log.read(0, 1 << 20, i64::MAX).unwrap();
    log.close().unwrap();
    let dir = Path::new(DIR);
    // Swap the first two entries of the first offset index: no longer increasing.
    let index = disk
        .open(
            &segment_path(dir, 0, super::segment::INDEX_EXTENSION),
            false,
        )
        .unwrap();
    let mut entries = [0u8; 16];
    index.read_exact_at(&mut entries, 0).unwrap();
    let (first, second) = entries.split_at(8);
    index.write_at(&[second, first].concat(), 0).unwrap();
    index.sync().unwrap();
    let (log, report) =
        PartitionLog::open(Arc::new(disk.clone()), dir, small_config(), START_MS).unwrap();
    assert_eq!(report.indexes_rebuilt, 1, "{report:?}");
    assert_eq!(log.read(0, 1 << 20, i64::MAX).unwrap(), before);
    for offset in 0..60 {
        let bytes = log.read(offset, 1, i64::MAX).unwrap();
        let header = validate(&bytes).unwrap();
        assert!(header.base_offset <= offset && offset <= header.last_offset());
    }
}

#[test]
fn a_recovery_point_past_the_log_end_is_lowered_on_open() {
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    fill(&mut log, 20);
    log.close().unwrap();
    let dir = Path::new(DIR);
    super::recovery::Checkpoint {
        recovery_point: 1_000,
        clean: false,
    }
    .write(&disk, dir)
    .unwrap();
    let log = open(&disk, small_config());
    drop(log);
    let checkpoint = super::recovery::Checkpoint::read(&disk, dir)
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.recovery_point, 60);
}

/// The length of each segment file in the directory, in offset order.
fn segment_file_lengths(disk: &SimDisk) -> Vec<u64> {
    disk.list(Path::new(DIR))
        .unwrap()
        .iter()
        .filter(|entry| entry.name.ends_with(".log"))
        .map(|entry| {
            let path = Path::new(DIR).join(&entry.name);
            disk.open(&path, false).unwrap().len().unwrap()
        })
        .collect()
}

#[test]
fn preallocated_spares_grow_with_the_partition_and_their_zeros_never_outlive_a_segment() {
    let disk = SimDisk::new();
    let config = LogConfig {
        segment_bytes: 8 * SPARE_BYTES_FIRST,
        preallocate: true,
        ..small_config()
    };
    let mut log = open(&disk, config);
    let gate = SpareGate::default();
    let mut adopted = Vec::new();
    let mut index = 0;
    // Bounded: stops once the spares have grown to segment.bytes.
    while adopted.last() != Some(&(8 * SPARE_BYTES_FIRST)) {
        assert!(index < 1000, "the spares never reached segment.bytes");
        let segments = log.segment_count();
        fill(&mut log, 1);
        index += 1;
        sync(&mut log, &disk);
        if log.segment_count() > segments {
            let lengths = segment_file_lengths(&disk);
            adopted.push(*lengths.last().unwrap());
            // Every sealed segment's file was cut back to its batches.
            assert_eq!(
                lengths[..lengths.len() - 1].iter().sum::<u64>(),
                log.size_bytes() - log.active_segment_bytes()
            );
        }
        if let Some(plan) = log.begin_spare() {
            plan.execute(&disk, &gate).unwrap();
            log.complete_spare(true);
        }
    }
    let first = SPARE_BYTES_FIRST;
    assert_eq!(adopted, vec![first, 2 * first, 4 * first, 8 * first]);
    // A crash leaves the active segment's zeros on disk; recovery cuts them and keeps every
    // synced batch.
    let end = log.log_end_offset();
    drop(log);
    disk.crash(7);
    let log = open(&disk, small_config());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(
        segment_file_lengths(&disk).iter().sum::<u64>(),
        log.size_bytes()
    );
    log.check_consistency().unwrap();
}

#[test]
fn max_timestamp_counts_only_records_from_the_lower_bound() {
    // One batch whose records go back in time (a producer setting its own timestamps): its
    // newest record is its first.
    let timestamps = [START_MS + 50, START_MS + 20, START_MS + 30, START_MS + 10];
    let encoded = super::record_batch::encode_batch_with_timestamps(
        timestamps
            .iter()
            .map(|&timestamp| (None, Some(bytes::Bytes::from_static(b"v")), timestamp)),
    );
    let disk = SimDisk::new();
    let mut log = open(&disk, small_config());
    log.append(&encoded, 0, START_MS).unwrap();
    assert_eq!(
        log.offset_of_max_timestamp(0, 4).unwrap(),
        Some((0, START_MS + 50))
    );
    // From offset 1 (a DeleteRecords start inside the batch) the newest record is offset 2.
    assert_eq!(
        log.offset_of_max_timestamp(1, 4).unwrap(),
        Some((2, START_MS + 30))
    );
    assert_eq!(log.offset_of_max_timestamp(4, 4).unwrap(), None);
}
