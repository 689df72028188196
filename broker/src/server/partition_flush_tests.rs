//! When an unreplicated partition's syncer makes appends durable under each flush policy.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::*;
use crate::io::{Random, SimDisk};
use crate::log::record_batch::test_batches::sized_batch;
use crate::log::RecordBatchHeader;

/// Long enough that no timer fires during a test: a sync seen is one the syncer chose early.
const NEVER_MS: u64 = 3_600_000;

/// How long a test waits for the syncer, in steps of `POLL`.
const WAIT_STEPS: usize = 500;
const POLL: Duration = Duration::from_millis(10);

fn open(disk: &SimDisk, flush_policy: FlushPolicy) -> Arc<Partition> {
    let seams = Seams {
        disk: Arc::new(disk.clone()),
        clock: Clock::new(),
        random: Random::from_seed(1),
    };
    Partition::open(
        &seams,
        "t",
        0,
        "/data/t-0".into(),
        LogConfig::default(),
        flush_policy,
        Arc::new(Notify::new()),
    )
    .expect("a fresh partition opens")
}

/// Appends batches of `value_bytes`-byte records until at least `bytes` are in the log.
fn append_bytes(partition: &Partition, bytes: u64, value_bytes: usize) {
    let mut appended = 0;
    while appended < bytes {
        let batch = sized_batch(4, value_bytes, 1_000);
        let header = RecordBatchHeader::parse(&batch).expect("a built batch parses");
        partition.append(&batch, &header, 1_000).expect("append");
        appended += batch.len() as u64;
    }
}

/// The partition's syncer, running as the broker runs it, until `stop`.
struct Syncer {
    stop: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Syncer {
    fn start(partition: &Arc<Partition>, disk: &SimDisk) -> Syncer {
        let stop = Arc::new(Notify::new());
        let task = tokio::spawn(
            partition
                .clone()
                .run_syncer(Arc::new(disk.clone()), stop.clone()),
        );
        Syncer { stop, task }
    }

    async fn stop(self) {
        self.stop.notify_one();
        self.task.await.expect("the syncer stops");
    }
}

/// Polls until the partition's durable end reaches its log end; returns whether it did.
async fn becomes_durable(partition: &Partition) -> bool {
    for _ in 0..WAIT_STEPS {
        if partition.durable_end_offset() == partition.log_end_offset() {
            return true;
        }
        tokio::time::sleep(POLL).await;
    }
    false
}

#[tokio::test]
async fn the_interval_policy_syncs_early_once_enough_bytes_are_unsynced() {
    let disk = SimDisk::new();
    let partition = open(
        &disk,
        FlushPolicy::Interval {
            interval_ms: NEVER_MS,
        },
    );
    let syncer = Syncer::start(&partition, &disk);

    // A little data waits for the timer.
    append_bytes(&partition, 4_096, 100);
    tokio::time::sleep(POLL * 10).await;
    assert_eq!(partition.durable_end_offset(), 0);
    assert!(partition.log_end_offset() > 0);

    // A burst of the threshold's size is synced without waiting for the timer.
    append_bytes(&partition, INTERVAL_POLICY_SYNC_BYTES, 64 * 1024);
    assert!(
        becomes_durable(&partition).await,
        "durable end {} stayed below log end {}",
        partition.durable_end_offset(),
        partition.log_end_offset()
    );

    syncer.stop().await;
}

#[tokio::test]
async fn the_sync_policy_syncs_every_append() {
    let disk = SimDisk::new();
    let partition = open(&disk, FlushPolicy::Sync);
    let syncer = Syncer::start(&partition, &disk);
    append_bytes(&partition, 100, 100);
    assert!(becomes_durable(&partition).await);
    syncer.stop().await;
}
