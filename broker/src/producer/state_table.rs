//! Per-partition idempotent-producer state, as Kafka's `ProducerStateManager`.
//!
//! For every producer id the table keeps the current epoch and the metadata of its last
//! `PRODUCER_BATCHES_REMEMBERED` batches. A produce request is first `check`ed: a retry of
//! a remembered batch is a `Duplicate` (answered with the original offsets, not appended
//! again), a batch that continues the sequence is an `Append`, anything else is an error
//! the client understands. After the batch is in the log the driver calls
//! `record_append`. After a restart the table is rebuilt by `replay`ing the batch headers
//! of the log in order, and `truncate_to` follows log truncation.
//!
//! Time here is wall-clock milliseconds (batch timestamps and `now` for expiry), because
//! producer expiry is defined against record timestamps, as in Kafka.

use std::collections::{BTreeMap, VecDeque};

use thiserror::Error;

/// How many of a producer's most recent batches are remembered for duplicate detection.
/// The Java producer keeps at most 5 requests in flight per connection when idempotence
/// is on, so 5 suffices to recognise any retry.
pub const PRODUCER_BATCHES_REMEMBERED: usize = 5;

/// The most producers remembered per partition; beyond it the least recently used one is
/// forgotten (it will get UNKNOWN_PRODUCER_ID and re-initialise).
pub const PRODUCERS_PER_PARTITION_MAX: usize = 10_000;

/// `producer.id.expiration.ms` default: a producer idle for a day is forgotten.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: u64 = 86_400_000;

/// The producer id of a non-idempotent batch.
pub const NO_PRODUCER_ID: i64 = -1;

/// The producer epoch of a non-idempotent batch.
pub const NO_PRODUCER_EPOCH: i16 = -1;

const _: () = assert!(PRODUCER_BATCHES_REMEMBERED > 0);
const _: () = assert!(PRODUCERS_PER_PARTITION_MAX > 0);

/// Tunables of a `ProducerStateTable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// The most producers remembered; must be in 1..=`PRODUCERS_PER_PARTITION_MAX`.
    pub producers_max: usize,
    /// `producer.id.expiration.ms`.
    pub producer_id_expiration_ms: u64,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        Self {
            producers_max: PRODUCERS_PER_PARTITION_MAX,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

/// The outcome of checking a batch that may be appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// The batch continues the producer's sequence (or is not idempotent): append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Why a batch of an idempotent producer is rejected; each maps to a Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerError {
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: the sequence does not follow the last one (a gap, a
    /// new epoch not starting at 0, or a retry of a batch too old to be remembered).
    #[error(
        "out of order sequence {base_sequence} after {last_sequence} at epoch {producer_epoch}"
    )]
    OutOfOrderSequence {
        producer_epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
    },
    /// INVALID_PRODUCER_EPOCH: a newer epoch of this producer id exists; the sender is a
    /// fenced zombie.
    #[error("producer epoch {producer_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        producer_epoch: i16,
        current_epoch: i16,
    },
    /// UNKNOWN_PRODUCER_ID: the partition has no state for this producer (expired,
    /// evicted or truncated away) and the batch does not start a sequence at 0, so a
    /// duplicate cannot be ruled out. The client re-initialises (KIP-360).
    #[error("unknown producer id {producer_id}")]
    UnknownProducerId { producer_id: i64 },
    /// INVALID_RECORD: the batch header is inconsistent (negative sequence or epoch).
    #[error("invalid producer batch header")]
    InvalidBatchHeader,
}

impl ProducerError {
    /// The Kafka error code to answer with.
    pub fn code(&self) -> i16 {
        use kafka_protocol::error::ResponseError;
        match self {
            ProducerError::OutOfOrderSequence { .. } => {
                ResponseError::OutOfOrderSequenceNumber.code()
            }
            ProducerError::InvalidProducerEpoch { .. } => {
                ResponseError::InvalidProducerEpoch.code()
            }
            ProducerError::UnknownProducerId { .. } => ResponseError::UnknownProducerId.code(),
            ProducerError::InvalidBatchHeader => ResponseError::InvalidRecord.code(),
        }
    }
}

/// Metadata of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub base_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: i64,
    pub last_offset: i64,
    /// The batch's (max) timestamp in wall-clock milliseconds.
    pub timestamp_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    producer_epoch: i16,
    /// Oldest first; never longer than `PRODUCER_BATCHES_REMEMBERED`, never empty.
    batches: VecDeque<BatchMetadata>,
    /// The value of the table's use counter at the last append, for LRU eviction.
    last_use: u64,
}

impl ProducerEntry {
    fn last_batch(&self) -> &BatchMetadata {
        self.batches.back().expect("an entry always has a batch")
    }
}

/// The idempotent-producer state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateTable {
    config: ProducerStateConfig,
    producers: BTreeMap<i64, ProducerEntry>,
    /// `last_use` -> producer id, to find the least recently used producer in O(log n).
    by_last_use: BTreeMap<u64, i64>,
    /// Incremented on every append; a logical clock for recency.
    use_counter: u64,
}

impl Default for ProducerStateTable {
    fn default() -> Self {
        Self::new(ProducerStateConfig::default())
    }
}

/// Kafka's `inSequence`: the next sequence follows the last one, wrapping at `i32::MAX`.
fn in_sequence(last_sequence: i32, next_sequence: i32) -> bool {
    next_sequence == last_sequence.wrapping_add(1)
        || (last_sequence == i32::MAX && next_sequence == 0)
}

impl ProducerStateTable {
    pub fn new(config: ProducerStateConfig) -> Self {
        assert!(config.producers_max > 0 && config.producers_max <= PRODUCERS_PER_PARTITION_MAX);
        Self {
            config,
            producers: BTreeMap::new(),
            by_last_use: BTreeMap::new(),
            use_counter: 0,
        }
    }

    /// How many producers are remembered.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// The current epoch of a producer, if it is known.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.producers
            .get(&producer_id)
            .map(|entry| entry.producer_epoch)
    }

    /// The remembered batches of a producer, oldest first.
    pub fn batches(&self, producer_id: i64) -> Vec<BatchMetadata> {
        self.producers
            .get(&producer_id)
            .map(|entry| entry.batches.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Decides whether a batch may be appended. Pure: call `record_append` once the batch
    /// is in the log.
    pub fn check(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
    ) -> Result<SequenceCheck, ProducerError> {
        if producer_id == NO_PRODUCER_ID {
            return Ok(SequenceCheck::Append);
        }
        if producer_id < 0 || producer_epoch < 0 || base_sequence < 0 || last_sequence < 0 {
            return Err(ProducerError::InvalidBatchHeader);
        }
        let Some(entry) = self.producers.get(&producer_id) else {
            // Nothing is known: only the start of a sequence is safe to accept.
            if base_sequence == 0 {
                return Ok(SequenceCheck::Append);
            }
            return Err(ProducerError::UnknownProducerId { producer_id });
        };
        if producer_epoch < entry.producer_epoch {
            return Err(ProducerError::InvalidProducerEpoch {
                producer_epoch,
                current_epoch: entry.producer_epoch,
            });
        }
        let last = entry.last_batch();
        if producer_epoch > entry.producer_epoch {
            // A bumped epoch restarts the sequence.
            if base_sequence == 0 {
                return Ok(SequenceCheck::Append);
            }
            return Err(ProducerError::OutOfOrderSequence {
                producer_epoch,
                base_sequence,
                last_sequence: last.last_sequence,
            });
        }
        // Duplicates first, as Kafka does: a retry is matched by its exact sequence range.
        if let Some(duplicate) = entry.batches.iter().find(|batch| {
            batch.base_sequence == base_sequence && batch.last_sequence == last_sequence
        }) {
            return Ok(SequenceCheck::Duplicate {
                base_offset: duplicate.base_offset,
                last_offset: duplicate.last_offset,
            });
        }
        if in_sequence(last.last_sequence, base_sequence) {
            return Ok(SequenceCheck::Append);
        }
        Err(ProducerError::OutOfOrderSequence {
            producer_epoch,
            base_sequence,
            last_sequence: last.last_sequence,
        })
    }

    /// Records a batch that is now in the log (after `check` returned `Append`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_append(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
        base_offset: i64,
        last_offset: i64,
        timestamp_ms: i64,
    ) {
        if producer_id == NO_PRODUCER_ID {
            return;
        }
        assert!(producer_id >= 0 && producer_epoch >= 0);
        assert!(base_sequence >= 0 && last_sequence >= 0);
        assert!(base_offset >= 0 && base_offset <= last_offset);
        let batch = BatchMetadata {
            base_sequence,
            last_sequence,
            base_offset,
            last_offset,
            timestamp_ms,
        };
        self.use_counter += 1;
        let last_use = self.use_counter;
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            assert!(
                producer_epoch >= entry.producer_epoch,
                "check() rejects older epochs before they are appended"
            );
            let removed = self.by_last_use.remove(&entry.last_use);
            assert_eq!(removed, Some(producer_id));
            if producer_epoch > entry.producer_epoch {
                entry.producer_epoch = producer_epoch;
                entry.batches.clear();
            }
            if entry.batches.len() == PRODUCER_BATCHES_REMEMBERED {
                entry.batches.pop_front();
            }
            entry.batches.push_back(batch);
            entry.last_use = last_use;
        } else {
            if self.producers.len() == self.config.producers_max {
                self.evict_least_recently_used();
            }
            self.producers.insert(
                producer_id,
                ProducerEntry {
                    producer_epoch,
                    batches: VecDeque::from([batch]),
                    last_use,
                },
            );
        }
        self.by_last_use.insert(last_use, producer_id);
        self.assert_invariants();
    }

    /// Rebuilds state from a batch header read from the log at start-up, in log order.
    /// No validation: what is in the log was accepted once.
    #[allow(clippy::too_many_arguments)]
    pub fn replay(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
        base_offset: i64,
        last_offset: i64,
        timestamp_ms: i64,
    ) {
        if producer_id < 0 || producer_epoch < 0 || base_sequence < 0 || last_sequence < 0 {
            return;
        }
        // An older epoch in the log cannot be followed by a newer one being forgotten:
        // ignore out-of-date headers rather than regress the epoch.
        if let Some(entry) = self.producers.get(&producer_id) {
            if producer_epoch < entry.producer_epoch {
                return;
            }
        }
        self.record_append(
            producer_id,
            producer_epoch,
            base_sequence,
            last_sequence,
            base_offset,
            last_offset,
            timestamp_ms,
        );
    }

    /// Forgets every batch whose offsets reach `offset` or beyond (the log was truncated
    /// to end before `offset`). A producer left with no batches is forgotten entirely.
    pub fn truncate_to(&mut self, offset: i64) {
        let mut emptied = Vec::new();
        for (producer_id, entry) in self.producers.iter_mut() {
            entry.batches.retain(|batch| batch.last_offset < offset);
            if entry.batches.is_empty() {
                emptied.push((*producer_id, entry.last_use));
            }
        }
        for (producer_id, last_use) in emptied {
            self.producers.remove(&producer_id);
            self.by_last_use.remove(&last_use);
        }
        self.assert_invariants();
    }

    /// Forgets producers whose last batch is older than `producer.id.expiration.ms`.
    pub fn expire(&mut self, now_wall_ms: i64) {
        let expiration_ms =
            i64::try_from(self.config.producer_id_expiration_ms).unwrap_or(i64::MAX);
        let expired: Vec<(i64, u64)> = self
            .producers
            .iter()
            .filter(|(_, entry)| {
                entry
                    .last_batch()
                    .timestamp_ms
                    .saturating_add(expiration_ms)
                    <= now_wall_ms
            })
            .map(|(producer_id, entry)| (*producer_id, entry.last_use))
            .collect();
        for (producer_id, last_use) in expired {
            self.producers.remove(&producer_id);
            self.by_last_use.remove(&last_use);
        }
        self.assert_invariants();
    }

    fn evict_least_recently_used(&mut self) {
        let (_, producer_id) = self
            .by_last_use
            .pop_first()
            .expect("a full table has a least recently used producer");
        let removed = self.producers.remove(&producer_id);
        assert!(removed.is_some());
    }

    fn assert_invariants(&self) {
        assert_eq!(self.producers.len(), self.by_last_use.len());
        assert!(self.producers.len() <= self.config.producers_max);
        debug_assert!(self.producers.iter().all(|(producer_id, entry)| {
            !entry.batches.is_empty()
                && entry.batches.len() <= PRODUCER_BATCHES_REMEMBERED
                && self.by_last_use.get(&entry.last_use) == Some(producer_id)
        }));
    }
}

#[cfg(test)]
#[path = "state_table_tests.rs"]
mod tests;
