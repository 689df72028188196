use super::*;
use proptest::prelude::*;

const PRODUCER: i64 = 42;

/// Appends `count` batches of one record each, starting at sequence `first_sequence`, at
/// offsets starting from `first_offset`.
fn append_batches(table: &mut ProducerStateTable, epoch: i16, first_sequence: i32, count: i32) {
    for index in 0..count {
        let sequence = first_sequence + index;
        assert_eq!(
            table.check(PRODUCER, epoch, sequence, sequence),
            Ok(SequenceCheck::Append)
        );
        let offset = 100 + i64::from(sequence);
        table.record_append(PRODUCER, epoch, sequence, sequence, offset, offset, 1_000);
    }
}

#[test]
fn non_idempotent_batches_bypass_the_table() {
    let mut table = ProducerStateTable::default();
    assert_eq!(
        table.check(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, -1, -1),
        Ok(SequenceCheck::Append)
    );
    table.record_append(NO_PRODUCER_ID, NO_PRODUCER_EPOCH, -1, -1, 0, 0, 0);
    assert!(table.is_empty());
}

#[test]
fn each_of_the_last_five_batches_is_a_duplicate() {
    let mut table = ProducerStateTable::default();
    append_batches(&mut table, 0, 0, 6);
    // Batches with sequences 1..=5 are remembered; sequence 0 is the sixth-oldest.
    for sequence in 1..=5 {
        let offset = 100 + i64::from(sequence);
        assert_eq!(
            table.check(PRODUCER, 0, sequence, sequence),
            Ok(SequenceCheck::Duplicate {
                base_offset: offset,
                last_offset: offset
            })
        );
    }
    assert_eq!(
        table.check(PRODUCER, 0, 0, 0),
        Err(ProducerError::OutOfOrderSequence {
            producer_epoch: 0,
            base_sequence: 0,
            last_sequence: 5
        })
    );
    assert_eq!(table.check(PRODUCER, 0, 6, 8), Ok(SequenceCheck::Append));
}

#[test]
fn a_multi_record_batch_duplicate_needs_the_same_range() {
    let mut table = ProducerStateTable::default();
    table.record_append(PRODUCER, 0, 0, 9, 0, 9, 0);
    assert_eq!(
        table.check(PRODUCER, 0, 0, 9),
        Ok(SequenceCheck::Duplicate {
            base_offset: 0,
            last_offset: 9
        })
    );
    assert!(matches!(
        table.check(PRODUCER, 0, 0, 4),
        Err(ProducerError::OutOfOrderSequence { .. })
    ));
    assert_eq!(table.check(PRODUCER, 0, 10, 19), Ok(SequenceCheck::Append));
}

#[test]
fn a_gap_is_out_of_order() {
    let mut table = ProducerStateTable::default();
    append_batches(&mut table, 0, 0, 2);
    assert_eq!(
        table.check(PRODUCER, 0, 3, 3),
        Err(ProducerError::OutOfOrderSequence {
            producer_epoch: 0,
            base_sequence: 3,
            last_sequence: 1
        })
    );
}

#[test]
fn an_older_epoch_is_fenced() {
    let mut table = ProducerStateTable::default();
    append_batches(&mut table, 3, 0, 1);
    assert_eq!(
        table.check(PRODUCER, 2, 1, 1),
        Err(ProducerError::InvalidProducerEpoch {
            producer_epoch: 2,
            current_epoch: 3
        })
    );
}

#[test]
fn a_new_epoch_must_start_at_sequence_zero() {
    let mut table = ProducerStateTable::default();
    append_batches(&mut table, 0, 0, 3);
    assert!(matches!(
        table.check(PRODUCER, 1, 3, 3),
        Err(ProducerError::OutOfOrderSequence { .. })
    ));
    assert_eq!(table.check(PRODUCER, 1, 0, 0), Ok(SequenceCheck::Append));
    table.record_append(PRODUCER, 1, 0, 0, 200, 200, 0);
    assert_eq!(table.producer_epoch(PRODUCER), Some(1));
    // The old epoch's batches are no longer duplicates: the old epoch is fenced.
    assert!(matches!(
        table.check(PRODUCER, 0, 1, 1),
        Err(ProducerError::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn an_unknown_producer_must_start_at_sequence_zero() {
    let table = ProducerStateTable::default();
    assert_eq!(
        table.check(PRODUCER, 0, 5, 5),
        Err(ProducerError::UnknownProducerId {
            producer_id: PRODUCER
        })
    );
    assert_eq!(table.check(PRODUCER, 0, 0, 4), Ok(SequenceCheck::Append));
}

#[test]
fn invalid_headers_are_rejected() {
    let table = ProducerStateTable::default();
    assert_eq!(
        table.check(PRODUCER, -1, 0, 0),
        Err(ProducerError::InvalidBatchHeader)
    );
    assert_eq!(
        table.check(PRODUCER, 0, -3, 0),
        Err(ProducerError::InvalidBatchHeader)
    );
}

#[test]
fn sequences_wrap_at_i32_max() {
    let mut table = ProducerStateTable::default();
    table.record_append(PRODUCER, 0, i32::MAX - 1, i32::MAX, 0, 1, 0);
    assert_eq!(table.check(PRODUCER, 0, 0, 0), Ok(SequenceCheck::Append));
    table.record_append(PRODUCER, 0, 0, 0, 2, 2, 0);
    assert_eq!(table.check(PRODUCER, 0, 1, 1), Ok(SequenceCheck::Append));
}

#[test]
fn least_recently_used_producer_is_evicted() {
    let mut table = ProducerStateTable::new(ProducerStateConfig {
        producers_max: 2,
        ..ProducerStateConfig::default()
    });
    table.record_append(1, 0, 0, 0, 0, 0, 0);
    table.record_append(2, 0, 0, 0, 1, 1, 0);
    table.record_append(1, 0, 1, 1, 2, 2, 0);
    table.record_append(3, 0, 0, 0, 3, 3, 0);
    assert_eq!(table.len(), 2);
    assert_eq!(table.producer_epoch(2), None);
    assert_eq!(table.producer_epoch(1), Some(0));
    assert_eq!(table.producer_epoch(3), Some(0));
}

#[test]
fn idle_producers_expire() {
    let mut table = ProducerStateTable::new(ProducerStateConfig {
        producer_id_expiration_ms: 1_000,
        ..ProducerStateConfig::default()
    });
    table.record_append(1, 0, 0, 0, 0, 0, 10_000);
    table.record_append(2, 0, 0, 0, 1, 1, 10_500);
    table.expire(10_999);
    assert_eq!(table.len(), 2);
    table.expire(11_000);
    assert_eq!(table.producer_epoch(1), None);
    assert_eq!(table.producer_epoch(2), Some(0));
    assert_eq!(
        table.check(1, 0, 1, 1),
        Err(ProducerError::UnknownProducerId { producer_id: 1 })
    );
}

#[test]
fn truncation_forgets_batches_at_or_above_the_offset() {
    let mut table = ProducerStateTable::default();
    append_batches(&mut table, 0, 0, 4); // Offsets 100..=103.
    table.record_append(7, 0, 0, 0, 104, 104, 0);
    table.truncate_to(102);
    assert_eq!(table.batches(PRODUCER).len(), 2);
    assert_eq!(table.producer_epoch(7), None);
    // The truncated batches can be appended again.
    assert_eq!(table.check(PRODUCER, 0, 2, 2), Ok(SequenceCheck::Append));
}

#[test]
fn replay_rebuilds_the_same_state() {
    let mut live = ProducerStateTable::default();
    let headers = [
        (1, 0, 0, 4, 0, 4),
        (2, 0, 0, 0, 5, 5),
        (1, 0, 5, 9, 6, 10),
        (1, 1, 0, 0, 11, 11),
    ];
    let mut replayed = ProducerStateTable::default();
    for (producer_id, epoch, base_sequence, last_sequence, base_offset, last_offset) in headers {
        assert_eq!(
            live.check(producer_id, epoch, base_sequence, last_sequence),
            Ok(SequenceCheck::Append)
        );
        live.record_append(
            producer_id,
            epoch,
            base_sequence,
            last_sequence,
            base_offset,
            last_offset,
            7,
        );
        replayed.replay(
            producer_id,
            epoch,
            base_sequence,
            last_sequence,
            base_offset,
            last_offset,
            7,
        );
    }
    assert_eq!(live, replayed);
}

/// The model: the complete log of appended batches. Whatever the table answers must be
/// what a reader of the whole log would answer, restricted to the remembered window.
#[derive(Debug, Clone, Copy)]
struct LoggedBatch {
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
    last_offset: i64,
}

fn model_check(
    log: &[LoggedBatch],
    producer_id: i64,
    epoch: i16,
    base_sequence: i32,
    last_sequence: i32,
) -> Result<SequenceCheck, ProducerError> {
    let mine: Vec<&LoggedBatch> = log
        .iter()
        .filter(|batch| batch.producer_id == producer_id)
        .collect();
    let Some(last) = mine.last() else {
        return if base_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::UnknownProducerId { producer_id })
        };
    };
    let current_epoch = mine.iter().map(|batch| batch.epoch).max().unwrap();
    if epoch < current_epoch {
        return Err(ProducerError::InvalidProducerEpoch {
            producer_epoch: epoch,
            current_epoch,
        });
    }
    if epoch > current_epoch {
        return if base_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(ProducerError::OutOfOrderSequence {
                producer_epoch: epoch,
                base_sequence,
                last_sequence: last.last_sequence,
            })
        };
    }
    let same_epoch: Vec<&&LoggedBatch> = mine.iter().filter(|batch| batch.epoch == epoch).collect();
    let window = &same_epoch[same_epoch.len().saturating_sub(PRODUCER_BATCHES_REMEMBERED)..];
    if let Some(duplicate) = window
        .iter()
        .find(|batch| batch.base_sequence == base_sequence && batch.last_sequence == last_sequence)
    {
        return Ok(SequenceCheck::Duplicate {
            base_offset: duplicate.base_offset,
            last_offset: duplicate.last_offset,
        });
    }
    if base_sequence == last.last_sequence + 1 {
        Ok(SequenceCheck::Append)
    } else {
        Err(ProducerError::OutOfOrderSequence {
            producer_epoch: epoch,
            base_sequence,
            last_sequence: last.last_sequence,
        })
    }
}

#[derive(Debug, Clone)]
enum Operation {
    /// Produce `records` records: `sequence_shift` moves the base sequence relative to the
    /// expected next one (0 = in order, negative = a retry, positive = a gap).
    Produce {
        producer_id: i64,
        epoch_shift: i16,
        sequence_shift: i32,
        records: i32,
    },
    /// Restart: rebuild from the log.
    Restart,
}

fn operation_strategy() -> impl Strategy<Value = Operation> {
    prop_oneof![
        8 => (0i64..3, -1i16..=1, -7i32..=2, 1i32..=3).prop_map(
            |(producer_id, epoch_shift, sequence_shift, records)| Operation::Produce {
                producer_id,
                epoch_shift,
                sequence_shift,
                records,
            }
        ),
        1 => Just(Operation::Restart),
    ]
}

proptest! {
    #[test]
    fn table_matches_the_full_log_model(operations in proptest::collection::vec(operation_strategy(), 1..80)) {
        let mut table = ProducerStateTable::default();
        let mut log: Vec<LoggedBatch> = Vec::new();
        for operation in operations {
            match operation {
                Operation::Produce { producer_id, epoch_shift, sequence_shift, records } => {
                    let mine: Vec<&LoggedBatch> = log.iter().filter(|batch| batch.producer_id == producer_id).collect();
                    let current_epoch = mine.iter().map(|batch| batch.epoch).max().unwrap_or(0);
                    let epoch = (current_epoch + epoch_shift).max(0);
                    let next_sequence = mine
                        .iter()
                        .filter(|batch| batch.epoch == epoch)
                        .map(|batch| batch.last_sequence + 1)
                        .next_back()
                        .unwrap_or(0);
                    // A retry picks a real earlier batch so duplicates are exercised.
                    let (base_sequence, last_sequence) = if sequence_shift < 0 {
                        let same_epoch: Vec<&&LoggedBatch> = mine.iter().filter(|batch| batch.epoch == epoch).collect();
                        match same_epoch.len().checked_sub(sequence_shift.unsigned_abs() as usize) {
                            Some(index) => (same_epoch[index].base_sequence, same_epoch[index].last_sequence),
                            None => (next_sequence, next_sequence + records - 1),
                        }
                    } else {
                        let base = next_sequence + sequence_shift;
                        (base, base + records - 1)
                    };
                    let expected = model_check(&log, producer_id, epoch, base_sequence, last_sequence);
                    let actual = table.check(producer_id, epoch, base_sequence, last_sequence);
                    prop_assert_eq!(actual, expected);
                    if actual == Ok(SequenceCheck::Append) {
                        let base_offset = log.last().map(|batch| batch.last_offset + 1).unwrap_or(0);
                        let last_offset = base_offset + i64::from(last_sequence - base_sequence);
                        log.push(LoggedBatch { producer_id, epoch, base_sequence, last_sequence, base_offset, last_offset });
                        table.record_append(producer_id, epoch, base_sequence, last_sequence, base_offset, last_offset, 0);
                    }
                }
                Operation::Restart => {
                    let mut rebuilt = ProducerStateTable::default();
                    for batch in &log {
                        rebuilt.replay(batch.producer_id, batch.epoch, batch.base_sequence, batch.last_sequence, batch.base_offset, batch.last_offset, 0);
                    }
                    prop_assert_eq!(&rebuilt.producers, &table.producers);
                    table = rebuilt;
                }
            }
        }
    }
}
