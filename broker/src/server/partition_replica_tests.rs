//! The replication driver's side of a replicated partition: leader markers, follower writes
//! from append payloads, truncation of a divergent suffix, and recovery of the Raft state.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Notify;

use super::*;
use crate::consensus::{GroupSet, RaftConfig, RaftNode};
use crate::io::{Random, SimDisk};
use crate::log::record_batch::{set_base_offset, set_partition_leader_epoch, test_batches::batch};

const GROUP: GroupId = 7;

fn seams(disk: &SimDisk) -> Seams {
    Seams {
        disk: Arc::new(disk.clone()),
        clock: Clock::new(),
        random: Random::from_seed(1),
    }
}

fn open(disk: &SimDisk) -> Arc<Partition> {
    open_with(disk, LogConfig::default())
}

fn open_with(disk: &SimDisk, log_config: LogConfig) -> Arc<Partition> {
    let seams = seams(disk);
    let mut groups = GroupSet::new(1);
    groups.insert(
        GROUP,
        RaftNode::new(RaftConfig::new(1, vec![1, 2, 3], 5), 0),
    );
    let link = ReplicaLink {
        group: GROUP,
        raft: Arc::new(RaftSet::new(groups, seams.clock.clone())),
    };
    Partition::open_replica(
        &seams,
        "t",
        0,
        "/data/t-0.g7".into(),
        log_config,
        FlushPolicy::Sync,
        Arc::new(Notify::new()),
        Some(link),
    )
    .expect("a fresh replica opens")
}

/// A batch of `count` records at `base_offset` in leader epoch `term`, as a leader stores it.
fn leader_batch(base_offset: i64, count: usize, term: Term) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..count).map(|i| format!("v{i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut bytes = batch(&refs, 1_000);
    set_base_offset(&mut bytes, base_offset);
    set_partition_leader_epoch(&mut bytes, term as i32);
    bytes
}

fn payload(batches: &[Vec<u8>]) -> Bytes {
    Bytes::from(batches.concat())
}

#[test]
fn a_follower_writes_overlapping_payloads_once_and_recovers_its_terms() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    partition.write_leader_marker(1, 1, 0).unwrap();
    // Offsets 1..=3 and 4..=5 in term 1; the second payload repeats the first batch, as a
    // widened append does.
    let first = leader_batch(1, 3, 1);
    let second = leader_batch(4, 2, 1);
    let a = payload(std::slice::from_ref(&first));
    let b = payload(&[first.clone(), second.clone()]);
    partition
        .write_replicated(&[&a, &b], EntrySpan::new(2, 6, 1), 0)
        .unwrap();
    assert_eq!(partition.log_end_offset(), 6);

    // Term 2 begins at offset 6.
    let third = leader_batch(6, 1, 2);
    partition
        .write_replicated(&[&payload(&[third])], EntrySpan::new(7, 7, 2), 0)
        .unwrap();
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(terms.last_index(), 7);
    assert_eq!(
        terms.runs(),
        &[
            TermRun {
                term: 1,
                first_index: 1
            },
            TermRun {
                term: 2,
                first_index: 7
            }
        ]
    );
}

#[test]
fn payloads_that_do_not_fit_the_span_are_refused() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    partition.write_leader_marker(1, 1, 0).unwrap();
    // A batch that runs past the span's end.
    let long = payload(&[leader_batch(1, 5, 1)]);
    assert!(matches!(
        partition.write_replicated(&[&long], EntrySpan::new(2, 3, 1), 0),
        Err(PartitionError::Replication(_))
    ));
    // A batch of another term than the span's.
    let other_term = payload(&[leader_batch(1, 2, 2)]);
    assert!(matches!(
        partition.write_replicated(&[&other_term], EntrySpan::new(2, 3, 1), 0),
        Err(PartitionError::Replication(_))
    ));
    // A payload that stops short.
    let short = payload(&[leader_batch(1, 1, 1)]);
    assert!(matches!(
        partition.write_replicated(&[&short], EntrySpan::new(2, 3, 1), 0),
        Err(PartitionError::Replication(_))
    ));
    // Nothing was half-written past the last whole fitting batch.
    assert!(partition.log_end_offset() <= 2);
}

#[test]
fn a_leader_marker_must_land_at_the_log_end() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    assert!(matches!(
        partition.write_leader_marker(3, 1, 0),
        Err(PartitionError::Replication(_))
    ));
    partition.write_leader_marker(1, 1, 0).unwrap();
    assert_eq!(partition.log_end_offset(), 1);
}

#[tokio::test]
async fn truncation_removes_the_divergent_suffix_from_log_and_terms() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    partition.write_leader_marker(1, 1, 0).unwrap();
    partition
        .write_replicated(
            &[&payload(&[leader_batch(1, 2, 1), leader_batch(3, 2, 1)])],
            EntrySpan::new(2, 5, 1),
            0,
        )
        .unwrap();
    partition.truncate_from_index(4).await.unwrap();
    assert_eq!(partition.log_end_offset(), 3);
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(terms.last_index(), 3);
}

#[test]
fn the_hard_state_survives_a_reopen() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    let stored = HardState {
        term: 4,
        voted_for: Some(2),
    };
    partition.store_hard_state(&disk, stored).unwrap();
    drop(partition);
    let reopened = open(&disk);
    let (hard_state, terms) = reopened.recover_raft_state(&disk).unwrap();
    assert_eq!(hard_state, stored);
    assert_eq!(terms.last_index(), 0);
}

#[test]
fn the_committed_end_is_the_high_watermark_and_never_goes_back() {
    let disk = SimDisk::new();
    let partition = open(&disk);
    assert_eq!(partition.high_watermark(), 0);
    partition.set_committed(5);
    assert_eq!(partition.high_watermark(), 5);
    partition.set_committed(3);
    assert_eq!(partition.high_watermark(), 5);
}

/// An idempotent producer's batch (producer 42, epoch 0, sequence 0) at `base_offset` in
/// leader epoch `term`.
fn idempotent_batch(base_offset: i64, term: Term) -> Vec<u8> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: 42,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 1_000,
        key: None,
        value: Some(Bytes::from_static(b"once")),
        headers: Default::default(),
    };
    let mut buffer = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, [record].iter(), &options).expect("encodes");
    let mut bytes = buffer.to_vec();
    set_base_offset(&mut bytes, base_offset);
    set_partition_leader_epoch(&mut bytes, term as i32);
    bytes
}

#[test]
fn only_the_leader_answers_a_retried_batch() {
    // A follower holds an idempotent batch it replicated (seed 1142 of the five-broker swarm:
    // the old leader still held a batch the new leader lacked). A retry sent to it must be
    // refused, not answered as a duplicate: the leader may truncate that batch away.
    let disk = SimDisk::new();
    let partition = open(&disk);
    partition.write_leader_marker(1, 1, 0).unwrap();
    let held = idempotent_batch(1, 1);
    partition
        .write_replicated(
            &[&payload(std::slice::from_ref(&held))],
            EntrySpan::new(2, 2, 1),
            0,
        )
        .unwrap();
    let header = record_batch::validate(&held).unwrap();
    assert!(matches!(
        partition.append_in_term(&held, &header, 0),
        Err(PartitionError::NotLeader { .. })
    ));
}

/// A log of term-1 batches (offsets 0..=30, the marker first) then term-2 batches (31..=60),
/// in segments of about 1 KiB, with everything before offset `delete_before` deleted.
fn trimmed_log(disk: &SimDisk, delete_before: i64) -> Arc<Partition> {
    let config = LogConfig {
        segment_bytes: 1024,
        retention_bytes: 1,
        ..LogConfig::default()
    };
    let partition = open_with(disk, config);
    partition.write_leader_marker(1, 1, 0).unwrap();
    let first: Vec<Vec<u8>> = (1..=30).map(|offset| leader_batch(offset, 1, 1)).collect();
    partition
        .write_replicated(&[&payload(&first)], EntrySpan::new(2, 31, 1), 0)
        .unwrap();
    partition.write_leader_marker(32, 2, 0).unwrap();
    let second: Vec<Vec<u8>> = (32..=60).map(|offset| leader_batch(offset, 1, 2)).collect();
    partition
        .write_replicated(&[&payload(&second)], EntrySpan::new(33, 61, 2), 0)
        .unwrap();
    let mut state = partition.lock();
    state.log.apply_retention_below(0, delete_before).unwrap();
    drop(state);
    partition
}

#[test]
fn recovery_takes_the_log_starts_term_from_its_record() {
    let disk = SimDisk::new();
    let partition = trimmed_log(&disk, 45);
    let start = partition.log_start_offset();
    assert!(
        start > 31 && start <= 45,
        "the start {start} is among the term-2 batches"
    );
    // Without a record the first kept entry's term stands in.
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(terms.start(), (start as LogIndex, 2));
    assert_eq!(terms.last_index(), 61);
    // With one for this very start, its term is used.
    partition
        .store_log_start(&disk, start as LogIndex, 1)
        .unwrap();
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(terms.start(), (start as LogIndex, 1));
    // A record of another start (a crash between recording and deleting) is not used.
    partition
        .store_log_start(&disk, start as LogIndex + 1, 1)
        .unwrap();
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(terms.start(), (start as LogIndex, 2));
}

#[tokio::test]
async fn a_reset_log_starts_empty_at_the_leaders_start_and_survives_a_reopen() {
    let disk = SimDisk::new();
    let partition = trimmed_log(&disk, 0);
    partition.reset_log(&disk, 80, 3, 0).await.unwrap();
    assert_eq!(partition.log_start_offset(), 80);
    assert_eq!(partition.log_end_offset(), 80);
    let (_, terms) = partition.recover_raft_state(&disk).unwrap();
    assert_eq!(
        terms.start(),
        (80, 3),
        "nothing is kept: the record gives the term"
    );
    assert_eq!(terms.last_index(), 80);
    // The next leader batch lands right after the start.
    partition
        .write_replicated(
            &[&payload(&[leader_batch(80, 2, 3)])],
            EntrySpan::new(81, 82, 3),
            0,
        )
        .unwrap();
    assert_eq!(partition.log_end_offset(), 82);
}
