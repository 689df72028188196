//! The driver of the group coordinator: real time in, deferred responses out, and committed
//! offsets made durable in the internal `__consumer_offsets` log before they are acknowledged.
//!
//! ```text
//!   JoinGroup ─► token + oneshot ─► coordinator.join_group ─► outputs ─► deliver(token) ─► reply
//!   ticker task: sleep until the coordinator's next deadline ─► tick ─► deliver
//!                every offsets.retention.check.interval.ms ─► expire offsets (own task)
//!   OffsetCommit ─► prepare ─► append records to __consumer_offsets ─► wait durable ─► apply
//!   start-up: replay __consumer_offsets ─► load_offset_records
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{oneshot, Notify};

use super::broker::{Broker, OFFSETS_TOPIC};
use super::offsets_cleanup::SnapshotScan;
use super::partition::{AppendOutcome, Partition, PartitionError};
use super::StartError;
use crate::group::{GroupConfig, GroupCoordinator, GroupOutput, OffsetRecord, ReplyToken};
use crate::io::clock::Instant;
use crate::io::tasks;
use crate::log::record_batch;

/// The longest the ticker sleeps, so that a missed wake-up costs at most this much delay.
pub const GROUP_TICK_INTERVAL_MS_MAX: u64 = 250;
/// How long an offset commit waits to become durable.
pub const OFFSET_COMMIT_TIMEOUT_MS: u64 = 30_000;
/// Bytes read per step while replaying the offsets log at start-up.
const OFFSETS_REPLAY_READ_BYTES: usize = 4 * 1024 * 1024;

/// The group coordinator with its driver state.
pub struct GroupService {
    coordinator: Mutex<GroupCoordinator>,
    config: GroupConfig,
    /// Cluster mode: whether this broker coordinates groups now (it leads the offsets partition
    /// and has loaded its committed offsets). A single broker always does.
    serving: AtomicBool,
    waiting: Mutex<BTreeMap<ReplyToken, oneshot::Sender<GroupOutput>>>,
    next_token: AtomicU64,
    /// The origin of the coordinator's `now_ms`.
    origin: Instant,
    /// Wakes the ticker early: a request may have moved the next deadline closer.
    wake: Notify,
    /// Set while an expiry pass runs, so that passes never pile up behind a slow append.
    expiring: AtomicBool,
    /// Held shared by each offset commit and group deletion from the moment it changes the
    /// coordinator until its records are durable (or have failed), and exclusively while a
    /// snapshot of the offsets is written: see [`super::offsets_cleanup`].
    pub offsets_writes: tokio::sync::RwLock<()>,
    /// The latest complete snapshot in this replica's offsets log.
    pub snapshots: Mutex<SnapshotScan>,
    stop: Notify,
}

impl GroupService {
    pub fn new(broker_config: &crate::config::BrokerConfig, origin: Instant) -> Self {
        let config = GroupConfig {
            initial_rebalance_delay_ms: broker_config.group_initial_rebalance_delay_ms,
            session_timeout_ms_min: broker_config.group_session_timeout_ms_min,
            session_timeout_ms_max: broker_config.group_session_timeout_ms_max,
            offsets_retention_ms: broker_config.offsets_retention_ms,
            ..GroupConfig::default()
        };
        Self {
            coordinator: Mutex::new(GroupCoordinator::new(config)),
            config,
            serving: AtomicBool::new(!broker_config.is_clustered()),
            waiting: Mutex::new(BTreeMap::new()),
            next_token: AtomicU64::new(1),
            origin,
            wake: Notify::new(),
            expiring: AtomicBool::new(false),
            offsets_writes: tokio::sync::RwLock::new(()),
            snapshots: Mutex::new(SnapshotScan::default()),
            stop: Notify::new(),
        }
    }

    pub fn coordinator(&self) -> MutexGuard<'_, GroupCoordinator> {
        self.coordinator
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }

    /// Milliseconds since the service started, on the monotonic clock.
    pub fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a waiting request; the receiver gets its response when the coordinator emits it.
    pub fn register(&self) -> (ReplyToken, oneshot::Receiver<GroupOutput>) {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(token, sender);
        (token, receiver)
    }

    /// Hands each output to the request waiting for it.
    pub fn deliver(&self, outputs: Vec<GroupOutput>) {
        if outputs.is_empty() {
            return;
        }
        let mut waiting = self
            .waiting
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        for output in outputs {
            if let Some(sender) = waiting.remove(&output.token()) {
                // The client may have gone away; its response is simply dropped.
                let _ = sender.send(output);
            }
        }
        drop(waiting);
        self.wake.notify_one();
    }
}

/// Replays committed offsets and starts the ticker. In cluster mode the offsets are loaded by
/// [`take_over`] when this broker becomes the offsets partition's leader.
pub async fn start(broker: &Arc<Broker>) -> Result<(), StartError> {
    if broker.config.is_clustered() {
        tasks::spawn(ticker(broker.clone()));
        return Ok(());
    }
    let partition = offsets_partition(broker);
    let for_io = partition.clone();
    let records = tasks::run_blocking(move || replay_offsets(&for_io)).await;
    let records =
        records.map_err(|error| StartError::DataDirectory(super::TopicError::Storage(error)))?;
    tracing::info!(records = records.len(), "replayed committed group offsets");
    let now_ms = broker.groups.now_ms(broker.seams.clock.now());
    broker
        .groups
        .coordinator()
        .load_offset_records(records, now_ms, broker.seams.clock.wall_ms());
    tasks::spawn(ticker(broker.clone()));
    Ok(())
}

/// Cluster mode: this broker leads the offsets partition in `term` and its commit index is
/// current, so the committed offsets below the high watermark are all there are. Loads them
/// into a fresh coordinator and starts answering group requests.
pub async fn take_over(broker: &Arc<Broker>, term: u64) {
    let partition = offsets_partition(broker);
    let for_io = partition.clone();
    let records = match tasks::run_blocking(move || replay_offsets(&for_io)).await {
        Ok(records) => records,
        Err(error) => {
            tracing::error!(%error, "cannot load committed offsets; not coordinating groups");
            return;
        }
    };
    let service = &broker.groups;
    let mut coordinator = GroupCoordinator::new(service.config);
    let count = records.len();
    let now_ms = service.now_ms(broker.seams.clock.now());
    coordinator.load_offset_records(records, now_ms, broker.seams.clock.wall_ms());
    let leadership = partition.leadership();
    let node = broker.cluster.get().map(|cluster| cluster.node_id);
    if leadership.term != term || leadership.leader != node {
        return;
    }
    *service.coordinator() = coordinator;
    service.serving.store(true, Ordering::Release);
    tracing::info!(records = count, term, "coordinating consumer groups");
}

/// Cluster mode: this broker no longer leads the offsets partition. Forgets every group (the
/// next coordinator reloads them from the log) and fails requests waiting on the old state.
pub fn resign(broker: &Broker) {
    let service = &broker.groups;
    service.serving.store(false, Ordering::Release);
    *service.coordinator() = GroupCoordinator::new(service.config);
    service
        .waiting
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .clear();
    tracing::info!("no longer coordinating consumer groups");
}

/// Stops the ticker.
pub fn stop(broker: &Broker) {
    broker.groups.stop.notify_one();
}

fn offsets_partition(broker: &Broker) -> Arc<Partition> {
    broker
        .partition(OFFSETS_TOPIC, 0)
        .expect("the offsets topic exists before groups are served")
}

/// Reads every offset record in the offsets log. Undecodable records are skipped with a warning:
/// they can only come from a newer format, and skipping loses nothing the CRC vouched for.
fn replay_offsets(partition: &Partition) -> Result<Vec<OffsetRecord>, String> {
    let mut records = Vec::new();
    partition.for_each_committed_record(0, OFFSETS_REPLAY_READ_BYTES, |record| {
        let (Some(key), Some(value)) = (record.key, record.value) else {
            return Ok(());
        };
        match OffsetRecord::decode(&key, &value) {
            Ok(decoded) => records.push(decoded),
            Err(error) => {
                tracing::warn!(offset = record.offset, %error, "skipping an unreadable offset record")
            }
        }
        Ok(())
    })?;
    Ok(records)
}

async fn ticker(broker: Arc<Broker>) {
    let service = &broker.groups;
    let expiry_interval_ms = broker.config.offsets_retention_check_interval_ms;
    let mut next_expiry_ms = expiry_interval_ms;
    loop {
        let now_ms = service.now_ms(broker.seams.clock.now());
        let outputs = service.coordinator().tick(now_ms);
        service.deliver(outputs);
        if now_ms >= next_expiry_ms {
            next_expiry_ms = now_ms.saturating_add(expiry_interval_ms);
            if service.is_serving() && !service.expiring.swap(true, Ordering::AcqRel) {
                tasks::spawn(expire_offsets(broker.clone()));
            }
        }
        let next = service.coordinator().next_deadline_ms();
        let sleep_ms = next
            .map(|deadline| deadline.min(next_expiry_ms).saturating_sub(now_ms))
            .unwrap_or(GROUP_TICK_INTERVAL_MS_MAX)
            .clamp(1, GROUP_TICK_INTERVAL_MS_MAX);
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            _ = service.wake.notified() => {}
            _ = service.stop.notified() => return,
        }
    }
}

/// One expiry pass: the coordinator forgets the groups whose offsets expired, and their
/// tombstones are made durable. Like a group deletion, it holds the offsets writes shared
/// so that no snapshot is taken between the two. If the append fails, this coordinator has
/// forgotten offsets its log still holds; the next coordinator to load them expires them
/// again.
async fn expire_offsets(broker: Arc<Broker>) {
    let service = &broker.groups;
    {
        let _writing = service.offsets_writes.read().await;
        let now_ms = service.now_ms(broker.seams.clock.now());
        let tombstones = service
            .coordinator()
            .expire_offsets(now_ms, broker.seams.clock.wall_ms());
        if !tombstones.is_empty() {
            match persist(&broker, &tombstones).await {
                Ok(()) => tracing::info!(
                    groups = tombstones.len(),
                    "deleted the committed offsets of groups past offsets.retention.minutes"
                ),
                Err(error) => {
                    tracing::warn!(%error, groups = tombstones.len(), "could not persist expired offsets")
                }
            }
        }
    }
    service.expiring.store(false, Ordering::Release);
}

/// Encodes offset records as a record batch for the offsets log.
fn encode_records(records: &[OffsetRecord], wall_ms: i64) -> Bytes {
    let encoded: Vec<(Option<Bytes>, Option<Bytes>)> = records
        .iter()
        .map(|record| {
            let (key, value) = record.encode();
            (Some(Bytes::from(key)), Some(Bytes::from(value)))
        })
        .collect();
    record_batch::encode_batch(&encoded, wall_ms)
}

/// Durably appends offset records (commits or group deletions) to the offsets log.
pub async fn persist(broker: &Arc<Broker>, records: &[OffsetRecord]) -> Result<(), PartitionError> {
    if records.is_empty() {
        return Ok(());
    }
    let partition = offsets_partition(broker);
    let batch = encode_records(records, broker.seams.clock.wall_ms());
    // The encoder may split the records into several batches; they are appended in order and
    // the wait covers the last.
    let mut end_offset = 0;
    let mut wait_term = None;
    for batch in record_batch::split_batches(&batch) {
        let batch = batch.expect("batches this broker encoded split cleanly");
        let header = record_batch::validate(batch).expect("a batch this broker encoded is valid");
        let (outcome, term) =
            partition.append_in_term(batch, &header, broker.seams.clock.wall_ms())?;
        wait_term.get_or_insert(term);
        let AppendOutcome::Appended(info) = outcome else {
            unreachable!("offset records carry no producer id, so they are never duplicates")
        };
        end_offset = info.last_offset + 1;
    }
    // acks=-1: durable under the sync policy, and committed by the quorum in a cluster.
    let timeout = Duration::from_millis(OFFSET_COMMIT_TIMEOUT_MS);
    if !partition
        .wait_acknowledgeable(end_offset, -1, timeout, wait_term.flatten())
        .await?
    {
        return Err(PartitionError::Offline(
            "offset commit was not durable in time".to_string(),
        ));
    }
    Ok(())
}
