//! Sequence numbers of the idempotent producer, one counter per partition.
//!
//! The broker accepts a batch whose base sequence is the partition's next expected one,
//! answers DUPLICATE_SEQUENCE_NUMBER for a batch it already has, and
//! OUT_OF_ORDER_SEQUENCE_NUMBER for a gap. A retried batch keeps its sequence, so the counter
//! only advances once the batch is acknowledged. Sequences wrap from `i32::MAX` to 0.

use std::collections::BTreeMap;

/// The next sequence number of each partition this producer wrote to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceNumbers {
    next_by_partition: BTreeMap<(String, i32), i32>,
}

impl SequenceNumbers {
    /// The sequence number the next batch for this partition starts with.
    pub fn next(&self, topic: &str, partition: i32) -> i32 {
        self.next_by_partition
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// Records that a batch of `record_count` records starting at `base_sequence` was
    /// acknowledged.
    pub fn acknowledge(
        &mut self,
        topic: &str,
        partition: i32,
        base_sequence: i32,
        record_count: i32,
    ) {
        assert!(record_count > 0);
        assert_eq!(
            base_sequence,
            self.next(topic, partition),
            "batches are acknowledged in sequence order"
        );
        let next = sequence_after(base_sequence, record_count);
        self.next_by_partition
            .insert((topic.to_string(), partition), next);
    }

    /// Forgets every counter (a new producer id or epoch starts again from 0).
    pub fn reset(&mut self) {
        self.next_by_partition.clear();
    }
}

/// The sequence number following `record_count` records from `base_sequence`, wrapping to 0
/// after `i32::MAX` as the broker does.
pub fn sequence_after(base_sequence: i32, record_count: i32) -> i32 {
    assert!(base_sequence >= 0 && record_count >= 0);
    let next = i64::from(base_sequence) + i64::from(record_count);
    (next % (i64::from(i32::MAX) + 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_advance_per_partition() {
        let mut sequences = SequenceNumbers::default();
        assert_eq!(sequences.next("a", 0), 0);
        sequences.acknowledge("a", 0, 0, 5);
        sequences.acknowledge("a", 0, 5, 1);
        sequences.acknowledge("a", 1, 0, 2);
        assert_eq!(sequences.next("a", 0), 6);
        assert_eq!(sequences.next("a", 1), 2);
        assert_eq!(sequences.next("b", 0), 0);
        sequences.reset();
        assert_eq!(sequences.next("a", 0), 0);
    }

    #[test]
    fn sequences_wrap_after_the_maximum() {
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        assert_eq!(sequence_after(10, 0), 10);
    }

    #[test]
    #[should_panic(expected = "sequence order")]
    fn acknowledging_out_of_order_is_a_bug() {
        let mut sequences = SequenceNumbers::default();
        sequences.acknowledge("a", 0, 3, 1);
    }
}
