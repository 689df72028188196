//! Producer id allocation in durably reserved blocks.
//!
//! The allocator never hands out an id that is not below a limit the driver has made
//! durable. When the reserved block runs out, `allocate` asks the driver to persist a new
//! limit (`NeedsReservation`); once that write is synced the driver calls
//! `reservation_durable` and retries. After a restart `recover(persisted_limit)` starts at
//! the persisted limit, skipping any ids of the old block that may have been handed out:
//! ids are cheap, repeating one is a correctness bug.

use thiserror::Error;

/// How many producer ids one reservation covers. Larger blocks mean fewer durable writes;
/// the cost is that a crash skips up to this many ids.
pub const PRODUCER_ID_BLOCK_SIZE_COUNT: i64 = 1000;

const _: () = assert!(PRODUCER_ID_BLOCK_SIZE_COUNT > 0);

/// The result of asking for one producer id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// A fresh producer id, never handed out before.
    Ready(i64),
    /// The reserved block is used up: the driver must durably record `reserve_up_to` as
    /// the new limit, call `reservation_durable(reserve_up_to)`, then allocate again.
    NeedsReservation { reserve_up_to: i64 },
}

/// The result of an InitProducerId request for a non-transactional producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitProducerIdOutcome {
    /// Answer the client with this id and epoch.
    Ready {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// As `Allocation::NeedsReservation`: persist, acknowledge, then retry the request.
    NeedsReservation { reserve_up_to: i64 },
}

/// Operating errors of producer id allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProducerIdError {
    /// Every producer id up to `i64::MAX` has been used; Kafka reports this as
    /// UNKNOWN_SERVER_ERROR since no client can recover from it.
    #[error("producer ids exhausted")]
    Exhausted,
}

impl ProducerIdError {
    /// The Kafka error code to answer InitProducerId with.
    pub fn code(&self) -> i16 {
        match self {
            ProducerIdError::Exhausted => {
                kafka_protocol::error::ResponseError::UnknownServerError.code()
            }
        }
    }
}

/// Hands out producer ids below a durably reserved limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerIdAllocator {
    /// The next id to hand out.
    next_id: i64,
    /// Ids strictly below this limit are durably reserved for this allocator.
    reserved_limit: i64,
}

impl Default for ProducerIdAllocator {
    fn default() -> Self {
        Self::recover(0)
    }
}

impl ProducerIdAllocator {
    /// Starts from the last durably persisted limit (0 for a brand-new cluster). Every id
    /// below it may already have been handed out, so allocation starts at the limit.
    pub fn recover(persisted_limit: i64) -> Self {
        assert!(persisted_limit >= 0, "a persisted limit is never negative");
        Self {
            next_id: persisted_limit,
            reserved_limit: persisted_limit,
        }
    }

    /// The next id to be handed out (for tests and diagnostics).
    pub fn next_id(&self) -> i64 {
        self.next_id
    }

    /// The durable limit: every id handed out is below it.
    pub fn reserved_limit(&self) -> i64 {
        self.reserved_limit
    }

    /// Hands out a fresh id, or asks the driver to reserve the next block first.
    pub fn allocate(&mut self) -> Result<Allocation, ProducerIdError> {
        assert!(self.next_id <= self.reserved_limit);
        if self.next_id < self.reserved_limit {
            let producer_id = self.next_id;
            self.next_id += 1;
            return Ok(Allocation::Ready(producer_id));
        }
        let reserve_up_to = self
            .reserved_limit
            .checked_add(PRODUCER_ID_BLOCK_SIZE_COUNT)
            .ok_or(ProducerIdError::Exhausted)?;
        Ok(Allocation::NeedsReservation { reserve_up_to })
    }

    /// The driver has durably written `limit`; ids below it may now be handed out. A stale
    /// acknowledgement (a limit at or below the current one) is ignored, since two requests
    /// may both have asked for the same reservation.
    pub fn reservation_durable(&mut self, limit: i64) {
        if limit > self.reserved_limit {
            self.reserved_limit = limit;
        }
        assert!(self.next_id <= self.reserved_limit);
    }

    /// InitProducerId without a transactional id. A request carrying an existing id and
    /// epoch (KIP-360: the producer lost track of its sequence numbers) keeps its id with
    /// the epoch bumped, which fences any zombie batches of the old epoch. Otherwise, or
    /// when the epoch would overflow, a fresh id with epoch 0 is handed out.
    pub fn init_producer_id(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<InitProducerIdOutcome, ProducerIdError> {
        let has_existing = producer_id >= 0 && producer_epoch >= 0;
        if has_existing && producer_id < self.reserved_limit && producer_epoch < i16::MAX - 1 {
            return Ok(InitProducerIdOutcome::Ready {
                producer_id,
                producer_epoch: producer_epoch + 1,
            });
        }
        match self.allocate()? {
            Allocation::Ready(producer_id) => Ok(InitProducerIdOutcome::Ready {
                producer_id,
                producer_epoch: 0,
            }),
            Allocation::NeedsReservation { reserve_up_to } => {
                Ok(InitProducerIdOutcome::NeedsReservation { reserve_up_to })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocate_reserving(allocator: &mut ProducerIdAllocator) -> i64 {
        match allocator.allocate().unwrap() {
            Allocation::Ready(id) => id,
            Allocation::NeedsReservation { reserve_up_to } => {
                allocator.reservation_durable(reserve_up_to);
                match allocator.allocate().unwrap() {
                    Allocation::Ready(id) => id,
                    other => panic!("still needs a reservation: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn a_new_allocator_needs_a_reservation_first() {
        let mut allocator = ProducerIdAllocator::recover(0);
        assert_eq!(
            allocator.allocate(),
            Ok(Allocation::NeedsReservation {
                reserve_up_to: PRODUCER_ID_BLOCK_SIZE_COUNT
            })
        );
        allocator.reservation_durable(PRODUCER_ID_BLOCK_SIZE_COUNT);
        assert_eq!(allocator.allocate(), Ok(Allocation::Ready(0)));
        assert_eq!(allocator.allocate(), Ok(Allocation::Ready(1)));
    }

    #[test]
    fn ids_never_repeat_across_restarts() {
        let mut allocator = ProducerIdAllocator::recover(0);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..(PRODUCER_ID_BLOCK_SIZE_COUNT + 5) {
            assert!(seen.insert(allocate_reserving(&mut allocator)));
        }
        // A crash: only the durable limit survives.
        let mut allocator = ProducerIdAllocator::recover(allocator.reserved_limit());
        for _ in 0..10 {
            assert!(seen.insert(allocate_reserving(&mut allocator)));
        }
    }

    #[test]
    fn stale_reservation_acknowledgement_is_ignored() {
        let mut allocator = ProducerIdAllocator::recover(0);
        allocator.reservation_durable(2000);
        allocator.reservation_durable(1000);
        assert_eq!(allocator.reserved_limit(), 2000);
    }

    #[test]
    fn init_producer_id_without_existing_id_gets_epoch_zero() {
        let mut allocator = ProducerIdAllocator::recover(5000);
        allocator.reservation_durable(6000);
        assert_eq!(
            allocator.init_producer_id(-1, -1),
            Ok(InitProducerIdOutcome::Ready {
                producer_id: 5000,
                producer_epoch: 0
            })
        );
        assert_eq!(
            allocator.init_producer_id(-1, -1),
            Ok(InitProducerIdOutcome::Ready {
                producer_id: 5001,
                producer_epoch: 0
            })
        );
    }

    #[test]
    fn init_producer_id_with_existing_id_bumps_the_epoch() {
        let mut allocator = ProducerIdAllocator::recover(0);
        allocator.reservation_durable(1000);
        assert_eq!(
            allocator.init_producer_id(7, 3),
            Ok(InitProducerIdOutcome::Ready {
                producer_id: 7,
                producer_epoch: 4
            })
        );
        // An exhausted epoch gets a fresh id instead.
        assert_eq!(
            allocator.init_producer_id(7, i16::MAX - 1),
            Ok(InitProducerIdOutcome::Ready {
                producer_id: 0,
                producer_epoch: 0
            })
        );
    }

    #[test]
    fn exhaustion_is_an_error_not_a_panic() {
        let mut allocator = ProducerIdAllocator::recover(i64::MAX - 1);
        assert_eq!(allocator.allocate(), Err(ProducerIdError::Exhausted));
    }
}
