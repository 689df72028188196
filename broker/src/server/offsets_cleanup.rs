//! Keeps the offsets log bounded without losing a committed offset.
//!
//! Time and size retention would delete a group's last commit along with its segment, and a
//! group that is alive but has nothing new to commit (a quiet topic) would lose its position.
//! So the offsets log is not subject to retention. Instead:
//!
//! ```text
//!   coordinator, each retention pass:  snapshot due? ─► writes paused ─► append every committed
//!                                      offset, then SnapshotComplete { start } ─► durable
//!   every replica, each retention pass: scan newly committed records for SnapshotComplete
//!                                      ─► delete the sealed segments below the latest start
//! ```
//!
//! A snapshot is taken while commits and group deletions are paused (they hold
//! [`GroupService::offsets_writes`] shared from the moment they change the coordinator until
//! their records are durable), so the coordinator's offsets are then exactly what replaying
//! the log gives, and the log from `start` on replays to the same offsets as the whole log.
//! Only committed records are scanned, so a replica acts on a snapshot only once its quorum
//! holds all of it, and only once its own copy is durable.
//!
//! [`GroupService::offsets_writes`]: super::groups::GroupService::offsets_writes

use std::sync::Arc;

use super::broker::{Broker, OFFSETS_TOPIC};
use super::groups;
use super::partition::{Partition, PartitionError};
use crate::group::OffsetRecord;
use crate::log::Cleanup;

/// Bytes read per step while scanning the offsets log for snapshot markers.
const SCAN_READ_BYTES: usize = 1024 * 1024;
/// Encoded bytes of offset records per batch of a snapshot: well under the default
/// `max.message.bytes` (1 MiB), whatever the groups' names and metadata.
pub const SNAPSHOT_BATCH_BYTES: usize = 256 * 1024;

/// Where the latest complete snapshot in the offsets log lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotMark {
    /// The offset of the snapshot's first record: the log from here on is enough.
    pub start_offset: i64,
    /// The offset of its SnapshotComplete record.
    pub marker_offset: i64,
}

/// What this replica has learned from scanning its committed offsets log.
#[derive(Debug, Default)]
pub struct SnapshotScan {
    /// Every committed record below this offset has been scanned.
    scanned_to: i64,
    latest: Option<SnapshotMark>,
}

impl SnapshotScan {
    /// Scans the committed records not scanned yet and returns the latest complete snapshot.
    pub fn advance(&mut self, partition: &Partition) -> Result<Option<SnapshotMark>, String> {
        let mut latest = self.latest;
        let scanned_to =
            partition.for_each_committed_record(self.scanned_to, SCAN_READ_BYTES, |record| {
                let (Some(key), Some(value)) = (record.key, record.value) else {
                    return Ok(());
                };
                if let Ok(OffsetRecord::SnapshotComplete { start_offset }) =
                    OffsetRecord::decode(&key, &value)
                {
                    if (0..=record.offset).contains(&start_offset) {
                        latest = Some(SnapshotMark {
                            start_offset,
                            marker_offset: record.offset,
                        });
                    } else {
                        tracing::warn!(
                            offset = record.offset,
                            start_offset,
                            "ignoring a snapshot marker that starts after itself"
                        );
                    }
                }
                Ok(())
            })?;
        self.scanned_to = self.scanned_to.max(scanned_to);
        self.latest = latest;
        Ok(latest)
    }
}

/// Whether the coordinator should write a snapshot now. Only if one would let cleanup delete
/// something (a segment was sealed after the latest snapshot's start), and only once at least
/// as many records were appended after the latest snapshot as it holds, so that the work of
/// writing snapshots stays proportional to the commits (a log of a million committed offsets
/// is not rewritten on every segment roll).
pub fn snapshot_due(
    log_start: i64,
    active_segment_base: i64,
    committed_end: i64,
    latest: Option<SnapshotMark>,
) -> bool {
    match latest {
        None => active_segment_base > log_start,
        Some(mark) => {
            active_segment_base > mark.start_offset
                && committed_end - mark.marker_offset >= mark.marker_offset - mark.start_offset
        }
    }
}

/// Splits a snapshot's records into groups whose encoded size stays within
/// [`SNAPSHOT_BATCH_BYTES`] (a single larger record still gets a group of its own).
pub fn snapshot_batches(records: Vec<OffsetRecord>) -> Vec<Vec<OffsetRecord>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut current_bytes = 0;
    for record in records {
        let (key, value) = record.encode();
        let bytes = key.len() + value.len();
        if !current.is_empty() && current_bytes + bytes > SNAPSHOT_BATCH_BYTES {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += bytes;
        current.push(record);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The coordinator's part: writes a snapshot of every committed offset if one is due. Does
/// nothing on a broker that does not coordinate groups now.
pub async fn write_snapshot_if_due(broker: &Arc<Broker>) {
    if !broker.is_group_coordinator() {
        return;
    }
    let Some(partition) = broker.partition(OFFSETS_TOPIC, 0) else {
        return;
    };
    let latest = match scan(broker, &partition) {
        Ok(latest) => latest,
        Err(error) => {
            tracing::warn!(%error, "cannot scan the offsets log for snapshots");
            return;
        }
    };
    if !snapshot_due(
        partition.log_start_offset(),
        partition.active_segment_base(),
        partition.high_watermark(),
        latest,
    ) {
        return;
    }
    // Commits and deletions wait from here until the snapshot is durable.
    let _paused = broker.groups.offsets_writes.write().await;
    if !broker.is_group_coordinator() {
        return;
    }
    let records = broker.groups.coordinator().offsets_snapshot();
    let count = records.len();
    // Nothing that changes offsets is appended meanwhile, so the snapshot starts here.
    let start_offset = partition.log_end_offset();
    for batch in snapshot_batches(records) {
        if let Err(error) = groups::persist(broker, &batch).await {
            tracing::warn!(%error, "could not write an offsets snapshot; will retry");
            return;
        }
    }
    let marker = [OffsetRecord::SnapshotComplete { start_offset }];
    if let Err(error) = groups::persist(broker, &marker).await {
        tracing::warn!(%error, "could not complete an offsets snapshot; will retry");
        return;
    }
    tracing::info!(
        offsets = count,
        start_offset,
        "wrote a snapshot of the committed offsets"
    );
}

/// Every replica's part: deletes the offsets log's sealed segments that lie below the latest
/// complete snapshot. Returns how many were deleted.
pub fn clean(broker: &Broker, partition: &Partition) -> Result<usize, PartitionError> {
    let latest = scan(broker, partition).map_err(PartitionError::Replication)?;
    let Some(mark) = latest else {
        return Ok(0);
    };
    // Only once the snapshot is durable here: under the interval flush policy the high
    // watermark runs ahead of the last sync, and a crash must not find the old segments
    // deleted and the snapshot that replaced them lost with the unsynced tail.
    if mark.marker_offset >= partition.durable_end_offset() {
        return Ok(0);
    }
    partition.apply_cleanup(
        broker.seams.disk.as_ref(),
        broker.seams.clock.wall_ms(),
        Cleanup::Superseded,
        mark.start_offset,
    )
}

fn scan(broker: &Broker, partition: &Partition) -> Result<Option<SnapshotMark>, String> {
    broker
        .groups
        .snapshots
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .advance(partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(start_offset: i64, marker_offset: i64) -> Option<SnapshotMark> {
        Some(SnapshotMark {
            start_offset,
            marker_offset,
        })
    }

    #[test]
    fn a_snapshot_is_due_once_a_segment_is_sealed_after_the_last_one() {
        // One segment, no snapshot: nothing could be deleted.
        assert!(!snapshot_due(0, 0, 500, None));
        // A sealed segment and no snapshot yet.
        assert!(snapshot_due(0, 400, 500, None));
        // The latest snapshot starts in the active segment: nothing more to delete.
        assert!(!snapshot_due(0, 400, 5_000, mark(450, 460)));
        // A segment sealed since, and more records appended than the snapshot holds.
        assert!(snapshot_due(0, 1_000, 5_000, mark(450, 460)));
    }

    #[test]
    fn large_snapshots_wait_until_as_much_was_appended_after_them() {
        // A snapshot of 10,000 records ending at 20,000, segments rolling often.
        assert!(!snapshot_due(0, 25_000, 29_999, mark(10_000, 20_000)));
        assert!(snapshot_due(0, 25_000, 30_000, mark(10_000, 20_000)));
    }

    #[test]
    fn snapshot_batches_respect_the_byte_bound_and_keep_order() {
        let records: Vec<OffsetRecord> = (0..5_000)
            .map(|i| OffsetRecord::Commit {
                group_id: format!("group-{}", i % 7),
                topic: "orders".to_owned(),
                partition: i,
                offset: i64::from(i) * 10,
                leader_epoch: 1,
                metadata: "m".repeat(200),
                commit_timestamp_ms: Some(1_700_000_000_000 + i64::from(i)),
            })
            .collect();
        let batches = snapshot_batches(records.clone());
        assert!(batches.len() > 1);
        for batch in &batches {
            let bytes: usize = batch
                .iter()
                .map(|record| {
                    let (key, value) = record.encode();
                    key.len() + value.len()
                })
                .sum();
            assert!(bytes <= SNAPSHOT_BATCH_BYTES, "{bytes} bytes in one batch");
        }
        assert_eq!(batches.concat(), records);
        assert!(snapshot_batches(Vec::new()).is_empty());
    }
}
