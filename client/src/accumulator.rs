//! The linger accumulator: records sent to one partition within the linger time travel in
//! one batch.
//!
//! ```text
//!  send(r1) ─┐ first record: a flush is scheduled `linger` later
//!  send(r2) ─┼─> pending[(topic, partition)] = { id, [r1, r2, r3], [waiter1..3] }
//!  send(r3) ─┘ full (batch_records_max): flushed at once, the next record starts a new batch
//!                  ▼
//!           one Produce; each waiter gets base offset + its index
//! ```
//!
//! Each pending batch has an id so that a scheduled flush only takes the batch it was
//! scheduled for, never a newer one that has its own flush.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::error::ProduceError;
use crate::records::KeyValue;

/// Where a record's result is delivered: the batch's base offset, or its error.
pub type Waiter = oneshot::Sender<Result<i64, ProduceError>>;

/// Records waiting for one partition's next batch.
#[derive(Debug)]
pub struct PendingBatch {
    /// Identifies this batch among the successive batches of its partition.
    pub id: u64,
    /// The records, in send order.
    pub records: Vec<KeyValue>,
    /// One waiter per record, in the same order.
    pub waiters: Vec<Waiter>,
}

/// What the sender of a record must do next.
#[derive(Debug)]
pub enum Enqueued {
    /// The record opened a new batch: schedule its flush after the linger time.
    ScheduleFlush {
        /// The new batch's id.
        id: u64,
        /// The record's index in the batch.
        index: usize,
    },
    /// The record filled the batch: flush it now.
    FlushNow {
        /// The full batch, already removed from the accumulator.
        batch: PendingBatch,
        /// The record's index in the batch.
        index: usize,
    },
    /// The record joined a batch whose flush is already scheduled.
    Joined {
        /// The record's index in the batch.
        index: usize,
    },
}

/// Pending batches by partition.
#[derive(Debug, Default)]
pub struct Accumulator {
    next_id: u64,
    pending: BTreeMap<(String, i32), PendingBatch>,
}

impl Accumulator {
    /// Adds a record (and its waiter) to its partition's pending batch.
    pub fn enqueue(
        &mut self,
        topic: &str,
        partition: i32,
        record: KeyValue,
        waiter: Waiter,
        batch_records_max: usize,
    ) -> Enqueued {
        assert!(batch_records_max > 0);
        let key = (topic.to_string(), partition);
        let opened = !self.pending.contains_key(&key);
        if opened {
            self.next_id += 1;
        }
        let id = self.next_id;
        let batch = self
            .pending
            .entry(key.clone())
            .or_insert_with(|| PendingBatch {
                id,
                records: Vec::new(),
                waiters: Vec::new(),
            });
        batch.records.push(record);
        batch.waiters.push(waiter);
        let index = batch.records.len() - 1;
        assert_eq!(batch.records.len(), batch.waiters.len());
        if batch.records.len() >= batch_records_max {
            let batch = self
                .pending
                .remove(&key)
                .expect("the batch was just filled");
            return Enqueued::FlushNow { batch, index };
        }
        if opened {
            Enqueued::ScheduleFlush { id, index }
        } else {
            Enqueued::Joined { index }
        }
    }

    /// Removes the pending batch `id` of a partition, if it is still pending.
    pub fn take(&mut self, topic: &str, partition: i32, id: u64) -> Option<PendingBatch> {
        let key = (topic.to_string(), partition);
        if self.pending.get(&key)?.id != id {
            return None;
        }
        self.pending.remove(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(value: &'static str) -> KeyValue {
        (None, Some(Bytes::from_static(value.as_bytes())))
    }

    #[test]
    fn records_join_the_open_batch_until_it_is_full() {
        let mut accumulator = Accumulator::default();
        let (first, _) = oneshot::channel();
        let Enqueued::ScheduleFlush { id, index: 0 } =
            accumulator.enqueue("t", 0, record("a"), first, 3)
        else {
            panic!("the first record opens a batch");
        };
        let (second, _) = oneshot::channel();
        assert!(matches!(
            accumulator.enqueue("t", 0, record("b"), second, 3),
            Enqueued::Joined { index: 1 }
        ));
        let (third, _) = oneshot::channel();
        let Enqueued::FlushNow { batch, index: 2 } =
            accumulator.enqueue("t", 0, record("c"), third, 3)
        else {
            panic!("the third record fills the batch");
        };
        assert_eq!(batch.id, id);
        assert_eq!(batch.records.len(), 3);
        // The scheduled flush of the full batch finds nothing.
        assert!(accumulator.take("t", 0, id).is_none());
    }

    #[test]
    fn a_scheduled_flush_never_takes_a_newer_batch() {
        let mut accumulator = Accumulator::default();
        let (first, _) = oneshot::channel();
        let Enqueued::FlushNow { batch, .. } = accumulator.enqueue("t", 0, record("a"), first, 1)
        else {
            panic!("a one-record batch is full at once");
        };
        let (second, _) = oneshot::channel();
        let Enqueued::ScheduleFlush { id, .. } =
            accumulator.enqueue("t", 0, record("b"), second, 2)
        else {
            panic!("the next record opens a new batch");
        };
        assert_ne!(id, batch.id);
        assert!(accumulator.take("t", 0, batch.id).is_none());
        assert_eq!(
            accumulator
                .take("t", 0, id)
                .map(|batch| batch.records.len()),
            Some(1)
        );
    }

    #[test]
    fn partitions_accumulate_separately() {
        let mut accumulator = Accumulator::default();
        let (first, _) = oneshot::channel();
        let (second, _) = oneshot::channel();
        assert!(matches!(
            accumulator.enqueue("t", 0, record("a"), first, 5),
            Enqueued::ScheduleFlush { .. }
        ));
        assert!(matches!(
            accumulator.enqueue("t", 1, record("b"), second, 5),
            Enqueued::ScheduleFlush { .. }
        ));
    }
}
