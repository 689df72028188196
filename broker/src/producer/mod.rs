//! Idempotent-producer state.
//!
//! Two sans-IO pieces, both driven by the server:
//!
//! ```text
//!  InitProducerId ──► ProducerIdAllocator ──NeedsReservation──► driver persists limit
//!                          ▲                                        │
//!                          └────────── reservation_durable ◄────────┘
//!
//!  Produce batch ──► ProducerStateTable::check ──Append──► log append ──► record_append
//!                                          └──Duplicate──► answer with the original offsets
//! ```
//!
//! The allocator hands out producer ids in durably reserved blocks so that an id is never
//! handed out twice, even across restarts. The per-partition state table mirrors Kafka's
//! `ProducerStateManager`: it remembers the last few batches of every producer so that a
//! retried batch is recognised and answered with its original offsets instead of being
//! appended twice.

mod id_allocator;
mod state_table;

pub use id_allocator::{
    Allocation, InitProducerIdOutcome, ProducerIdAllocator, ProducerIdError,
    PRODUCER_ID_BLOCK_SIZE_COUNT,
};
pub use state_table::{
    BatchMetadata, ProducerError, ProducerStateConfig, ProducerStateTable, SequenceCheck,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, PRODUCERS_PER_PARTITION_MAX, PRODUCER_BATCHES_REMEMBERED,
    PRODUCER_ID_EXPIRATION_MS_DEFAULT,
};
