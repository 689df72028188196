//! The partition log: durable, segmented, indexed storage of record batches.
//!
//! A producer's batch is validated once ([`record_batch::validate`]: header and CRC32C), then
//! [`PartitionLog::append`] stamps it with the next offset and the leader epoch and writes it,
//! byte for byte, at the end of the active segment. Nothing is durable until the driver runs a
//! sync: [`PartitionLog::begin_sync`] says what to sync, the driver runs [`SyncPlan::execute`]
//! off the reactor, and [`PartitionLog::complete_sync`] advances the durable end offset. Fetch
//! reads whole batches back with one read per request; ListOffsets searches the time index.
//!
//! ```text
//!  Produce ──► validate ──► append ──► active segment ──(roll)──► sealed segments ──► retention
//!                              │        00000000000000001234.log       .log .index .timeindex
//!                              │        in-memory indexes              (index files written at seal)
//!                              ▼
//!                    begin_sync ─► SyncPlan::execute (files, then directory, then checkpoint)
//!                              ─► complete_sync ─► durable_end_offset
//!
//!  Fetch ──► read(offset) ─► segment (binary search) ─► offset index ─► one read_at ─► Bytes
//!  open ──► recovery: trust segments below the recovery point, scan the rest (CRC32C), cut the
//!           torn tail, delete what follows a gap, rebuild indexes
//! ```
//!
//! Each file's documentation gives its on-disk format: [`segment`] (file names, `.log`),
//! [`offset_index`] (`.index`), [`time_index`] (`.timeindex`), [`recovery`] (the checkpoint).
//!
//! The log does blocking disk I/O through the [`crate::io::Disk`] seam but never reads a clock:
//! the caller passes `wall_ms` (milliseconds since the Unix epoch) where time matters.

pub mod config;
pub mod error;
pub mod offset_index;
pub mod partition_log;
pub mod record_batch;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod spare;
pub mod time_index;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod partition_log_tests;

pub use config::LogConfig;
pub use error::{BatchError, LogError};
pub use partition_log::{AppendInfo, Cleanup, PartitionLog, SyncPlan};
pub use record_batch::{
    encode_batch, set_base_offset, set_partition_leader_epoch, split_batches, validate,
    RecordBatchHeader,
};
pub use recovery::RecoveryReport;
pub use spare::{SpareGate, SparePlan};
