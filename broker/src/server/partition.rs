//! One partition replica on this broker: its log, its idempotent-producer state, and the
//! driver that makes appended data durable.
//!
//! ```text
//!  produce ─► append (under the lock: dedupe, write to page cache) ─► wait_durable(offset)
//!                                                                        ▲
//!  syncer task:  wake ─► begin_sync (lock) ─► fsync off the reactor ─► complete_sync (lock)
//!                        └ every batch appended so far rides on the same fsync (group commit)
//! ```
//!
//! The high watermark, the end of what consumers may read, is the durable end under the `sync`
//! policy (a consumer never sees a record that a crash could take back) and the log end under
//! the `interval` policy (as Kafka with a single replica).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use super::broker::Seams;
use crate::config::FlushPolicy;
use crate::io::{tasks, Clock, Disk};
use crate::log::{AppendInfo, LogConfig, LogError, PartitionLog, RecordBatchHeader};
use crate::producer::{ProducerError, ProducerStateConfig, ProducerStateTable, SequenceCheck};

/// What happened to one appended batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Appended now at these offsets.
    Appended(AppendInfo),
    /// A retry of a batch already in the log: answered with its original offsets.
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Why a batch was refused.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Producer(#[from] ProducerError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("partition is offline after a storage error: {0}")]
    Offline(String),
}

struct PartitionState {
    log: PartitionLog,
    producers: ProducerStateTable,
    /// Set after a failed sync: the log's unsynced contents are unknown, so the partition stops
    /// serving rather than acknowledge data it may have lost.
    offline: Option<String>,
}

/// A partition replica, shared by every connection.
pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub directory: PathBuf,
    flush_policy: FlushPolicy,
    clock: Clock,
    state: Mutex<PartitionState>,
    /// The durable end offset, published after each sync.
    durable_end: watch::Sender<i64>,
    sync_requested: Notify,
    /// The log allows one sync at a time; the syncer, a shutdown flush and a close take turns.
    sync_turn: tokio::sync::Mutex<()>,
    /// Woken whenever the high watermark moves, for long-polling fetches.
    data_visible: Arc<Notify>,
}

impl Partition {
    /// Opens (and recovers) the partition's log and rebuilds its producer state from it.
    pub fn open(
        seams: &Seams,
        topic: &str,
        index: i32,
        directory: PathBuf,
        log_config: LogConfig,
        flush_policy: FlushPolicy,
        data_visible: Arc<Notify>,
    ) -> Result<Arc<Self>, LogError> {
        let wall_ms = seams.clock.wall_ms();
        let (log, _report) =
            PartitionLog::open(seams.disk.clone(), &directory, log_config, wall_ms)?;
        let mut producers = ProducerStateTable::new(ProducerStateConfig::default());
        log.for_each_batch(log.log_start_offset(), |header: &RecordBatchHeader| {
            if header.producer_id >= 0 {
                producers.replay(
                    header.producer_id,
                    header.producer_epoch,
                    header.base_sequence,
                    last_sequence(header),
                    header.base_offset,
                    header.last_offset(),
                    header.max_timestamp,
                );
            }
        })?;
        let durable = log.durable_end_offset();
        Ok(Arc::new(Self {
            topic: topic.to_string(),
            index,
            directory,
            flush_policy,
            clock: seams.clock.clone(),
            state: Mutex::new(PartitionState {
                log,
                producers,
                offline: None,
            }),
            durable_end: watch::channel(durable).0,
            sync_requested: Notify::new(),
            sync_turn: tokio::sync::Mutex::new(()),
            data_visible,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, PartitionState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Appends one validated batch, deduplicating idempotent retries. Does not wait for
    /// durability: see [`Partition::wait_durable`].
    pub fn append(
        &self,
        batch: &[u8],
        header: &RecordBatchHeader,
        wall_ms: i64,
    ) -> Result<AppendOutcome, PartitionError> {
        let mut state = self.lock();
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        let idempotent = header.producer_id >= 0;
        if idempotent {
            let check = state.producers.check(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                last_sequence(header),
            )?;
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = check
            {
                return Ok(AppendOutcome::Duplicate {
                    base_offset,
                    last_offset,
                });
            }
        }
        let info = state.log.append(batch, 0, wall_ms)?;
        if idempotent {
            state.producers.record_append(
                header.producer_id,
                header.producer_epoch,
                header.base_sequence,
                last_sequence(header),
                info.base_offset,
                info.last_offset,
                wall_ms,
            );
        }
        drop(state);
        match self.flush_policy {
            FlushPolicy::Sync => self.sync_requested.notify_one(),
            FlushPolicy::Interval { .. } => self.data_visible.notify_waiters(),
        }
        Ok(AppendOutcome::Appended(info))
    }

    /// Waits until every offset below `end_offset` is durable, or the timeout passes. Returns
    /// whether it is durable.
    pub async fn wait_durable(
        &self,
        end_offset: i64,
        timeout: Duration,
    ) -> Result<bool, PartitionError> {
        let mut durable = self.durable_end.subscribe();
        self.sync_requested.notify_one();
        let reached =
            tokio::time::timeout(timeout, durable.wait_for(|end| *end >= end_offset)).await;
        if let Some(reason) = &self.lock().offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        Ok(matches!(reached, Ok(Ok(_))))
    }

    /// The syncer: runs until the partition is dropped from the broker (`stop` resolves).
    /// Under the sync policy it syncs whenever asked; under the interval policy, on a timer.
    pub async fn run_syncer(self: Arc<Self>, disk: Arc<dyn Disk>, stop: Arc<Notify>) {
        let interval = match self.flush_policy {
            FlushPolicy::Sync => None,
            FlushPolicy::Interval { interval_ms } => Some(Duration::from_millis(interval_ms)),
        };
        loop {
            let stopped = match interval {
                None => tokio::select! {
                    biased;
                    _ = self.sync_requested.notified() => false,
                    _ = stop.notified() => true,
                },
                Some(period) => tokio::select! {
                    biased;
                    _ = tokio::time::sleep(period) => false,
                    _ = self.sync_requested.notified() => false,
                    _ = stop.notified() => true,
                },
            };
            if !self.sync_once(&disk).await || stopped {
                return;
            }
        }
    }

    /// One group commit. Returns false if the partition went offline.
    pub async fn sync_once(&self, disk: &Arc<dyn Disk>) -> bool {
        let _turn = self.sync_turn.lock().await;
        if self.lock().offline.is_some() {
            return false;
        }
        let Some(plan) = self.lock().log.begin_sync() else {
            return true;
        };
        // A simulated disk reports how long its operations took (the real disk reports nothing,
        // having taken the time already). Time spent by earlier writes passes before the sync
        // starts and the sync's own time before it completes, so that a crash in the simulator
        // can land while writes are still pending, as on a real disk.
        sleep_for_simulated_latency(disk.as_ref()).await;
        let disk_for_io = disk.clone();
        let started = self.clock.now();
        let (plan, result) = tasks::run_blocking(move || {
            let result = plan.execute(disk_for_io.as_ref());
            (plan, result)
        })
        .await;
        let took = self.clock.now().saturating_duration_since(started);
        if took >= Duration::from_millis(SLOW_SYNC_WARNING_MS) {
            tracing::warn!(topic = %self.topic, partition = self.index, took_ms = took.as_millis() as u64,
                "slow sync: acknowledgements under the sync policy wait for it");
        }
        sleep_for_simulated_latency(disk.as_ref()).await;
        match result {
            Ok(()) => {
                self.lock().log.complete_sync(plan.end_offset);
                self.durable_end.send_replace(plan.end_offset);
                self.data_visible.notify_waiters();
                true
            }
            Err(error) => {
                // After a failed fsync the kernel may have dropped the dirty pages: the data is in
                // an unknown state, so the partition stops rather than acknowledge it.
                tracing::error!(topic = %self.topic, partition = self.index, %error,
                    "sync failed; taking the partition offline");
                self.lock().offline = Some(error.to_string());
                self.durable_end.send_modify(|_| {});
                false
            }
        }
    }

    /// The end of what consumers may read.
    pub fn high_watermark(&self) -> i64 {
        let state = self.lock();
        match self.flush_policy {
            FlushPolicy::Sync => state.log.durable_end_offset(),
            FlushPolicy::Interval { .. } => state.log.log_end_offset(),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.lock().log.log_end_offset()
    }

    pub fn is_offline(&self) -> bool {
        self.lock().offline.is_some()
    }

    /// Reads whole batches from `offset`, below the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<(Bytes, i64, i64), PartitionError> {
        let high_watermark = self.high_watermark();
        let state = self.lock();
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        let bytes = state.log.read(offset, max_bytes, high_watermark)?;
        Ok((bytes, high_watermark, state.log.log_start_offset()))
    }

    /// The first offset with a timestamp at or after `timestamp`, below the high watermark.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        let high_watermark = self.high_watermark();
        let state = self.lock();
        Ok(state.log.offset_for_timestamp(timestamp, high_watermark)?)
    }

    /// Applies retention; returns how many segments were deleted.
    /// Also forgets idempotent producers idle for longer than `producer.id.expiration.ms`.
    pub fn apply_retention(&self, wall_ms: i64) -> Result<usize, PartitionError> {
        let mut state = self.lock();
        state.producers.expire(wall_ms);
        Ok(state.log.apply_retention(wall_ms)?)
    }

    /// Checks that the log's indexes agree with its segments; see
    /// [`PartitionLog::check_consistency`].
    pub fn check_consistency(&self) -> Result<(), String> {
        self.lock().log.check_consistency()
    }

    pub fn update_config(&self, config: LogConfig) {
        self.lock().log.update_config(config);
    }

    pub fn size_bytes(&self) -> u64 {
        self.lock().log.size_bytes()
    }

    /// Syncs everything for a clean shutdown.
    pub async fn flush(&self, disk: &Arc<dyn Disk>) -> bool {
        self.sync_once(disk).await
    }

    /// Writes the log's indexes and its clean-shutdown checkpoint, so the next start trusts it
    /// without a scan. The partition serves nothing afterwards.
    pub async fn close(&self) {
        let _turn = self.sync_turn.lock().await;
        let mut state = self.lock();
        if state.offline.is_some() {
            return;
        }
        if let Err(error) = state.log.close() {
            tracing::error!(topic = %self.topic, partition = self.index, %error, "clean close failed");
        }
        state.offline = Some("the broker is shutting down".to_string());
    }
}

/// A sync slower than this is logged: under the sync policy, produce latency is at least this.
const SLOW_SYNC_WARNING_MS: u64 = 100;

/// The longest one simulated-latency sleep lasts. A simulated disk can accrue latency faster
/// than simulated time passes (every read of every fetch adds some); the excess is dropped rather
/// than let one sync fall ever further behind.
const SIMULATED_LATENCY_SLEEP_MS_MAX: u64 = 1_000;

async fn sleep_for_simulated_latency(disk: &dyn Disk) {
    let latency = disk.take_simulated_latency();
    if !latency.is_zero() {
        let capped = latency.min(Duration::from_millis(SIMULATED_LATENCY_SLEEP_MS_MAX));
        tokio::time::sleep(capped).await;
    }
}

/// The sequence number of a batch's last record. Sequences wrap from `i32::MAX` to 0, as in
/// Kafka; a batch without a producer id has none (-1).
fn last_sequence(header: &RecordBatchHeader) -> i32 {
    if header.base_sequence < 0 {
        return -1;
    }
    let sum = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}
