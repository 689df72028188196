//! Sequence numbers of the idempotent producer, one counter per partition, tied to the
//! producer identity that owns them.
//!
//! The broker accepts a batch whose base sequence is the partition's next expected one,
//! answers DUPLICATE_SEQUENCE_NUMBER for a batch it already has, and
//! OUT_OF_ORDER_SEQUENCE_NUMBER for a gap. A retried batch keeps its sequence, so a counter
//! only advances once its batch is acknowledged. Sequences wrap from `i32::MAX` to 0.
//!
//! Counters belong to one producer id and epoch: when the identity is replaced every counter
//! restarts at 0, and acknowledgements of batches stamped with an older identity are ignored.
//! Stamping (identity plus next sequence) happens under one lock, so a batch never carries a
//! new identity with an old counter or the reverse.

use std::collections::BTreeMap;

/// The producer id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
}

/// The current identity and the next sequence number of each partition written with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceNumbers {
    identity: Option<ProducerIdentity>,
    next_by_partition: BTreeMap<(String, i32), i32>,
}

impl SequenceNumbers {
    /// The identity in use, if any.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Starts using `identity`; every counter restarts at 0.
    pub fn install(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.next_by_partition.clear();
    }

    /// Stops using `identity` (if it is still the current one), e.g. after a write whose
    /// outcome is unknown; the next batch needs a fresh identity.
    pub fn invalidate(&mut self, identity: ProducerIdentity) {
        if self.identity == Some(identity) {
            self.identity = None;
            self.next_by_partition.clear();
        }
    }

    /// Replaces `identity` (if it is still the current one) by the same producer id with the
    /// next epoch, restarting every counter at 0, as Java's idempotent producer does after a
    /// write whose outcome is unknown. Once the broker has seen the new epoch on a partition
    /// it rejects late batches of the old one, so a delayed copy of the failed batch cannot
    /// land after newer records. At the last epoch the identity is dropped instead, so that
    /// a fresh producer id is obtained.
    pub fn bump_epoch(&mut self, identity: ProducerIdentity) {
        if self.identity != Some(identity) {
            return;
        }
        match identity.producer_epoch.checked_add(1) {
            Some(producer_epoch) => self.install(ProducerIdentity {
                producer_id: identity.producer_id,
                producer_epoch,
            }),
            None => self.invalidate(identity),
        }
    }

    /// The identity and base sequence for the next batch of this partition, or `None`
    /// without an identity.
    pub fn stamp(&self, topic: &str, partition: i32) -> Option<(ProducerIdentity, i32)> {
        let identity = self.identity?;
        let next = self
            .next_by_partition
            .get(&(topic.to_string(), partition))
            .copied()
            .unwrap_or(0);
        Some((identity, next))
    }

    /// Records that a batch of `record_count` records stamped `(identity, base_sequence)`
    /// was acknowledged. Returns false (and changes nothing) if `identity` is no longer
    /// current.
    pub fn acknowledge(
        &mut self,
        identity: ProducerIdentity,
        topic: &str,
        partition: i32,
        base_sequence: i32,
        record_count: i32,
    ) -> bool {
        assert!(record_count > 0);
        if self.identity != Some(identity) {
            return false;
        }
        let key = (topic.to_string(), partition);
        let expected = self.next_by_partition.get(&key).copied().unwrap_or(0);
        assert_eq!(
            base_sequence, expected,
            "batches of one partition are acknowledged in sequence order"
        );
        self.next_by_partition
            .insert(key, sequence_after(base_sequence, record_count));
        true
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

    const FIRST: ProducerIdentity = ProducerIdentity {
        producer_id: 1,
        producer_epoch: 0,
    };
    const SECOND: ProducerIdentity = ProducerIdentity {
        producer_id: 2,
        producer_epoch: 0,
    };

    #[test]
    fn counters_start_at_zero_and_advance_per_partition() {
        let mut sequences = SequenceNumbers::default();
        assert_eq!(sequences.stamp("a", 0), None);
        sequences.install(FIRST);
        assert_eq!(sequences.stamp("a", 0), Some((FIRST, 0)));
        assert!(sequences.acknowledge(FIRST, "a", 0, 0, 5));
        assert!(sequences.acknowledge(FIRST, "a", 0, 5, 1));
        assert!(sequences.acknowledge(FIRST, "a", 1, 0, 2));
        assert_eq!(sequences.stamp("a", 0), Some((FIRST, 6)));
        assert_eq!(sequences.stamp("a", 1), Some((FIRST, 2)));
        assert_eq!(sequences.stamp("b", 0), Some((FIRST, 0)));
    }

    #[test]
    fn a_new_identity_restarts_counters_and_ignores_old_acknowledgements() {
        let mut sequences = SequenceNumbers::default();
        sequences.install(FIRST);
        assert!(sequences.acknowledge(FIRST, "a", 0, 0, 3));
        sequences.invalidate(FIRST);
        assert_eq!(sequences.stamp("a", 0), None);
        sequences.install(SECOND);
        // A batch stamped with the first identity finishing late changes nothing.
        assert!(!sequences.acknowledge(FIRST, "a", 0, 3, 1));
        assert_eq!(sequences.stamp("a", 0), Some((SECOND, 0)));
        // Invalidating an identity that was already replaced is a no-op.
        sequences.invalidate(FIRST);
        assert_eq!(sequences.identity(), Some(SECOND));
    }

    #[test]
    fn bumping_the_epoch_keeps_the_id_and_restarts_counters() {
        let mut sequences = SequenceNumbers::default();
        sequences.install(FIRST);
        assert!(sequences.acknowledge(FIRST, "a", 0, 0, 3));
        sequences.bump_epoch(FIRST);
        let bumped = ProducerIdentity {
            producer_id: 1,
            producer_epoch: 1,
        };
        assert_eq!(sequences.stamp("a", 0), Some((bumped, 0)));
        // A second failure under the old identity does not bump twice.
        sequences.bump_epoch(FIRST);
        assert_eq!(sequences.identity(), Some(bumped));
        let last = ProducerIdentity {
            producer_id: 1,
            producer_epoch: i16::MAX,
        };
        sequences.install(last);
        sequences.bump_epoch(last);
        assert_eq!(sequences.identity(), None);
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
        sequences.install(FIRST);
        sequences.acknowledge(FIRST, "a", 0, 3, 1);
    }
}
