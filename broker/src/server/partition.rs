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
use crate::cluster::RaftSet;
use crate::config::FlushPolicy;
use crate::consensus::{
    EntrySpan, GroupId, HardState, LogIndex, LogTerms, NodeId, ProposeError, RaftNode, Term,
    TermRun,
};
use crate::io::{disk, tasks, Clock, Disk};
use crate::log::{
    record_batch, AppendInfo, Cleanup, LogConfig, LogError, PartitionLog, RecordBatchHeader,
    SpareGate, SparePlan,
};
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
    /// A replicated partition's follower, or a leader between elections.
    #[error("this broker does not lead the partition (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The replication stream handed this replica something its log cannot take.
    #[error("replication: {0}")]
    Replication(String),
}

struct PartitionState {
    log: PartitionLog,
    producers: ProducerStateTable,
    /// Set after a failed sync: the log's unsynced contents are unknown, so the partition stops
    /// serving rather than acknowledge data it may have lost.
    offline: Option<String>,
    /// A replicated partition accepts produce requests only in the term whose leader marker
    /// its log holds: proposals must land after the marker.
    writable_term: Option<Term>,
    /// The log start DeleteRecords asked for: offsets below it are gone for clients, and the
    /// segments wholly below it are deleted by the next retention pass. Kept by the catalogue
    /// (one broker) or the metadata log (a cluster), not by the log itself.
    log_start_floor: i64,
}

impl PartitionState {
    /// The log start clients see: the log's first offset, or the DeleteRecords floor where
    /// that is later. A replica that has not yet reached the floor starts at its log end.
    fn visible_log_start(&self) -> i64 {
        self.log
            .log_start_offset()
            .max(self.log_start_floor.min(self.log.log_end_offset()))
    }
}

/// How a replicated partition reaches its Raft group.
pub struct ReplicaLink {
    pub group: GroupId,
    pub raft: Arc<RaftSet>,
}

/// The leader and term a replica last saw, for metadata responses and fencing waiters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    pub term: Term,
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
    /// Closed before the partition's directory is removed: no spare is written after.
    spare_gate: Arc<SpareGate>,
    /// Woken whenever the high watermark moves, for long-polling fetches.
    data_visible: Arc<Notify>,
    /// Set for a replicated partition (cluster mode).
    replica: Option<ReplicaLink>,
    /// A replicated partition's committed end offset: its high watermark.
    committed_end: watch::Sender<i64>,
    leadership: watch::Sender<Leadership>,
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
        Self::open_replica(
            seams,
            topic,
            index,
            directory,
            log_config,
            flush_policy,
            data_visible,
            None,
        )
    }

    /// Opens a partition; with a link, one replica of a replicated partition.
    #[allow(clippy::too_many_arguments)]
    pub fn open_replica(
        seams: &Seams,
        topic: &str,
        index: i32,
        directory: PathBuf,
        log_config: LogConfig,
        flush_policy: FlushPolicy,
        data_visible: Arc<Notify>,
        replica: Option<ReplicaLink>,
    ) -> Result<Arc<Self>, LogError> {
        let wall_ms = seams.clock.wall_ms();
        let (log, _report) =
            PartitionLog::open(seams.disk.clone(), &directory, log_config, wall_ms)?;
        let producers = producers_from_log(&log)?;
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
                writable_term: None,
                log_start_floor: 0,
            }),
            durable_end: watch::channel(durable).0,
            sync_requested: Notify::new(),
            sync_turn: tokio::sync::Mutex::new(()),
            spare_gate: Arc::new(SpareGate::default()),
            data_visible,
            replica,
            committed_end: watch::channel(0).0,
            leadership: watch::channel(Leadership::default()).0,
        }))
    }

    pub fn is_replicated(&self) -> bool {
        self.replica.is_some()
    }

    pub fn group(&self) -> Option<GroupId> {
        self.replica.as_ref().map(|link| link.group)
    }

    pub fn leadership(&self) -> Leadership {
        *self.leadership.borrow()
    }

    /// Why this broker may not serve reads of the partition for a client that believes the
    /// leader epoch is `current_leader_epoch` (-1: unknown), in Kafka's terms; `None` if it may.
    pub fn read_refusal(
        &self,
        node_id: NodeId,
        current_leader_epoch: i32,
    ) -> Option<kafka_protocol::error::ResponseError> {
        use kafka_protocol::error::ResponseError;
        if !self.is_replicated() {
            return None;
        }
        let leadership = self.leadership();
        if leadership.leader != Some(node_id) {
            return Some(ResponseError::NotLeaderOrFollower);
        }
        if current_leader_epoch >= 0 {
            let term = leadership.term;
            let epoch = u64::try_from(current_leader_epoch).unwrap_or(0);
            if epoch < term {
                return Some(ResponseError::FencedLeaderEpoch);
            }
            if epoch > term {
                return Some(ResponseError::UnknownLeaderEpoch);
            }
        }
        None
    }

    /// OffsetsForLeaderEpoch: the largest leader epoch at or below `epoch` in this replica's
    /// log and the offset where it ends (where the next epoch starts, or the log end offset for
    /// the latest). `None` (Kafka's undefined epoch and offset) if the log holds only later
    /// epochs. A single broker's log is all epoch 0.
    pub fn epoch_end_offset(&self, epoch: i32) -> Option<(i32, i64)> {
        let epoch = u64::try_from(epoch).ok()?;
        let Some(link) = &self.replica else {
            return Some((0, self.log_end_offset()));
        };
        let groups = link.raft.lock();
        let (term, end_index) = groups.get(link.group)?.log().epoch_end(epoch)?;
        // The end is an exclusive offset: the last index of the epoch, as an offset, plus one.
        Some((
            i32::try_from(term).unwrap_or(i32::MAX),
            index_to_offset(end_index) + 1,
        ))
    }

    /// A replicated partition's leader whose lease has run out: no majority of the replicas has
    /// answered it lately, so an acks=-1 write could not commit (Kafka's NOT_ENOUGH_REPLICAS).
    pub fn quorum_unreachable(&self) -> bool {
        let Some(link) = &self.replica else {
            return false;
        };
        let groups = link.raft.lock();
        let now_ms = link.raft.now_ms();
        let Some(node) = groups.get(link.group) else {
            return false;
        };
        node.is_leader()
            && node
                .lease_expiry_ms(now_ms)
                .is_some_and(|expiry| now_ms >= expiry)
    }

    /// Whether this broker serves produce and fetch for the partition.
    pub fn is_leader_here(&self, node_id: NodeId) -> bool {
        !self.is_replicated() || self.leadership().leader == Some(node_id)
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
        self.append_in_term(batch, header, wall_ms)
            .map(|(outcome, _)| outcome)
    }

    /// [`Partition::append`], also returning, for a replicated partition, the leader term the
    /// outcome holds in: an acknowledgement must wait for the commit in that very term (see
    /// [`Partition::wait_acknowledgeable`]). Only the leader answers, duplicates included: a
    /// replica that is not (or no longer) the leader may hold a retried batch that the new
    /// leader does not, and will truncate.
    pub fn append_in_term(
        &self,
        batch: &[u8],
        header: &RecordBatchHeader,
        wall_ms: i64,
    ) -> Result<(AppendOutcome, Option<Term>), PartitionError> {
        let mut state = self.lock();
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        let leader_term = match &self.replica {
            None => None,
            Some(link) => Some(writable_term(&state, link.raft.lock().get(link.group))?),
        };
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
                return Ok((
                    AppendOutcome::Duplicate {
                        base_offset,
                        last_offset,
                    },
                    leader_term,
                ));
            }
        }
        let mut term = leader_term;
        let info = match &self.replica {
            None => state.log.append(batch, 0, wall_ms)?,
            Some(link) => {
                let limit = u64::from(state.log.config().max_message_bytes)
                    .min(state.log.config().segment_bytes);
                // Checked before proposing: once the core has assigned indexes, the batch must
                // land in the log.
                if batch.len() as u64 > limit {
                    return Err(LogError::RecordTooLarge {
                        bytes: batch.len(),
                        limit,
                    }
                    .into());
                }
                let span = {
                    let mut groups = link.raft.lock();
                    let now_ms = link.raft.now_ms();
                    writable_term(&state, groups.get(link.group))?;
                    let node = groups
                        .get_mut(link.group)
                        .ok_or(PartitionError::NotLeader { leader: None })?;
                    let count = u64::try_from(header.last_offset_delta).unwrap_or(0) + 1;
                    node.propose(now_ms, count).map_err(|error| match error {
                        ProposeError::NotLeader { leader } => PartitionError::NotLeader { leader },
                        ProposeError::TransferInProgress => {
                            PartitionError::NotLeader { leader: None }
                        }
                        ProposeError::InvalidSize { .. } => {
                            PartitionError::Replication(error.to_string())
                        }
                    })?
                };
                assert_eq!(
                    state.log.log_end_offset(),
                    index_to_offset(span.first_index),
                    "the leader's log and its Raft log agree on the next offset"
                );
                term = Some(span.term);
                match state.log.append(batch, term_as_epoch(span.term), wall_ms) {
                    Ok(info) => {
                        link.raft.wake.notify_one();
                        info
                    }
                    Err(error) => {
                        // The core holds indexes the log does not: stop serving this replica.
                        tracing::error!(topic = %self.topic, partition = self.index, %error,
                            "append after a proposal failed; taking the replica offline");
                        state.offline = Some(error.to_string());
                        return Err(error.into());
                    }
                }
            }
        };
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
        let unsynced_bytes = state.log.unsynced_bytes();
        drop(state);
        if self.replica.is_none() {
            match self.flush_policy {
                FlushPolicy::Sync => self.sync_requested.notify_one(),
                FlushPolicy::Interval { .. } => {
                    if unsynced_bytes >= INTERVAL_POLICY_SYNC_BYTES {
                        self.sync_requested.notify_one();
                    }
                    self.data_visible.notify_waiters();
                }
            }
        }
        Ok((AppendOutcome::Appended(info), term))
    }

    /// Waits until a produce with `acks` may be acknowledged through `end_offset`: for a
    /// replicated partition with acks=-1, committed by the quorum; otherwise durable here (the
    /// sync policy) or at once (the interval policy). Returns whether that happened in time;
    /// a replica that loses leadership meanwhile answers NOT_LEADER_OR_FOLLOWER.
    ///
    /// `term` is the leader term [`Partition::append_in_term`] returned: if the replica is in
    /// another term by the time this wait starts, the batch may already be gone (a new leader
    /// truncates what it lacks, and its own commits would otherwise seem to cover it).
    pub async fn wait_acknowledgeable(
        &self,
        end_offset: i64,
        acks: i16,
        timeout: Duration,
        term: Option<Term>,
    ) -> Result<bool, PartitionError> {
        if self.replica.is_none() || acks != -1 {
            if self.flush_policy == FlushPolicy::Sync || self.replica.is_some() {
                return self.wait_durable(end_offset, timeout).await;
            }
            return Ok(true);
        }
        let term = term.unwrap_or_else(|| self.leadership().term);
        let mut committed = self.committed_end.subscribe();
        let mut leadership = self.leadership.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                if *committed.borrow_and_update() >= end_offset {
                    return Ok(());
                }
                let current = *leadership.borrow_and_update();
                if current.term != term {
                    return Err(PartitionError::NotLeader {
                        leader: current.leader,
                    });
                }
                tokio::select! {
                    biased;
                    changed = committed.changed() => if changed.is_err() { return Ok(()) },
                    changed = leadership.changed() => if changed.is_err() { return Ok(()) },
                }
            }
        })
        .await;
        if let Some(reason) = &self.lock().offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        match waited {
            Ok(Ok(())) => Ok(*self.committed_end.borrow() >= end_offset),
            Ok(Err(error)) => Err(error),
            Err(_) => Ok(false),
        }
    }

    // --- The replication driver's side of a replicated partition. ---

    /// The Raft state this replica recovers with: its hard state file and the term runs of its
    /// log (each batch's partition leader epoch).
    pub fn recover_raft_state(
        &self,
        disk: &dyn Disk,
    ) -> Result<(HardState, LogTerms), PartitionError> {
        let hard_state = load_hard_state(disk, &self.directory)?;
        let state = self.lock();
        let mut runs: Vec<TermRun> = Vec::new();
        // Retention (or a reset to a leader's log start) may have removed the log's start:
        // offset `start - 1`, index `start`, is the last entry gone.
        let start_index =
            LogIndex::try_from(state.log.log_start_offset()).expect("offsets are not negative");
        let mut last_index: LogIndex = start_index;
        state
            .log
            .for_each_batch(state.log.log_start_offset(), |header| {
                let term = epoch_as_term(header.partition_leader_epoch);
                if runs.last().is_none_or(|run| run.term != term) {
                    runs.push(TermRun {
                        term,
                        first_index: offset_to_index(header.base_offset),
                    });
                }
                last_index = offset_to_index(header.last_offset());
            })?;
        if runs.iter().any(|run| run.term == 0)
            || runs.windows(2).any(|pair| pair[0].term >= pair[1].term)
        {
            return Err(PartitionError::Replication(format!(
                "{} holds batches without increasing leader epochs: not a replicated log",
                self.directory.display()
            )));
        }
        let hard_state = HardState {
            term: hard_state.term.max(runs.last().map_or(0, |run| run.term)),
            ..hard_state
        };
        // The term of the last entry gone, as recorded before it went. A record of another
        // index (a crash between recording and deleting) leaves the first kept entry's term to
        // stand in for it, which only decides whether a leader's log start looks like this
        // one's (the worst it does is make a leader start this replica over needlessly); the
        // last term, which votes compare, is then a kept entry's own.
        let recorded = load_log_start(disk, &self.directory)?;
        let start_term = match (start_index, recorded) {
            (0, _) => 0,
            (_, Some((index, term))) if index == start_index => term,
            _ => match runs.first() {
                Some(run) => run.term,
                None => {
                    return Err(PartitionError::Replication(format!(
                        "{}: the log starts at offset {} with nothing kept and no record of the term before it",
                        self.directory.display(),
                        state.log.log_start_offset()
                    )))
                }
            },
        };
        Ok((
            hard_state,
            LogTerms::with_start(start_index, start_term, runs, last_index),
        ))
    }

    /// Records the log start (the index of the last entry about to be deleted) and that
    /// entry's term, durably, before the deletion: a recovered log whose every entry is gone
    /// still knows the term its start had, which its votes depend on.
    fn store_log_start(
        &self,
        disk: &dyn Disk,
        index: LogIndex,
        term: Term,
    ) -> Result<(), PartitionError> {
        let text = serde_json::json!({ "index": index, "term": term }).to_string();
        disk::write_atomically(disk, &self.directory.join(LOG_START_FILE), text.as_bytes())
            .map_err(|error| PartitionError::Offline(format!("writing the log start: {error}")))
    }

    /// Makes the hard state durable (written to a temporary file, synced, renamed).
    pub fn store_hard_state(
        &self,
        disk: &dyn Disk,
        hard_state: HardState,
    ) -> Result<(), PartitionError> {
        let text = serde_json::json!({
            "term": hard_state.term,
            "voted_for": hard_state.voted_for,
        })
        .to_string();
        disk::write_atomically(disk, &self.directory.join(HARD_STATE_FILE), text.as_bytes())
            .map_err(|error| PartitionError::Offline(format!("writing the Raft state: {error}")))
    }

    /// A new leader's marker: a control batch at `index` in `term`, after which produce
    /// requests are accepted.
    pub fn write_leader_marker(
        &self,
        index: LogIndex,
        term: Term,
        wall_ms: i64,
    ) -> Result<(), PartitionError> {
        let mut state = self.lock();
        if state.log.log_end_offset() != index_to_offset(index) {
            return Err(PartitionError::Replication(format!(
                "leader marker at index {index} but the log ends at offset {}",
                state.log.log_end_offset()
            )));
        }
        let marker = leader_marker_batch(wall_ms);
        state.log.append(&marker, term_as_epoch(term), wall_ms)?;
        state.writable_term = Some(term);
        Ok(())
    }

    /// A follower writes the batches of `span` from the payloads of the appends that brought
    /// them, in order (the core may persist several appends' entries as one span, and a
    /// payload may begin with batches the log already holds).
    pub fn write_replicated(
        &self,
        payloads: &[&Bytes],
        span: EntrySpan,
        wall_ms: i64,
    ) -> Result<(), PartitionError> {
        let mut state = self.lock();
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        let start = index_to_offset(span.first_index);
        let end = index_to_offset(span.last_index) + 1;
        if state.log.log_end_offset() != start {
            return Err(PartitionError::Replication(format!(
                "entries from offset {start} but the log ends at {}",
                state.log.log_end_offset()
            )));
        }
        let batches = payloads
            .iter()
            .flat_map(|payload| record_batch::split_batches(payload));
        for batch in batches {
            let batch = batch.map_err(|error| PartitionError::Replication(error.to_string()))?;
            let header = record_batch::validate(batch)
                .map_err(|error| PartitionError::Replication(error.to_string()))?;
            if header.last_offset() < state.log.log_end_offset() {
                continue;
            }
            if header.base_offset != state.log.log_end_offset()
                || epoch_as_term(header.partition_leader_epoch) != span.term
                || header.last_offset() >= end
            {
                return Err(PartitionError::Replication(format!(
                    "batch at {} (epoch {}) does not fit entries {start}..{end} of term {}",
                    header.base_offset, header.partition_leader_epoch, span.term
                )));
            }
            state
                .log
                .append(batch, header.partition_leader_epoch, wall_ms)?;
            replay_producer(&mut state.producers, &header);
        }
        if state.log.log_end_offset() != end {
            return Err(PartitionError::Replication(format!(
                "payload ended at offset {} short of {end}",
                state.log.log_end_offset()
            )));
        }
        Ok(())
    }

    /// A follower drops a divergent suffix from `index` on, and rebuilds its producer state.
    pub async fn truncate_from_index(&self, index: LogIndex) -> Result<(), PartitionError> {
        let _turn = self.sync_turn.lock().await;
        let mut state = self.lock();
        // A failed sync leaves the log's sync in flight and its contents unknown: an offline
        // replica changes nothing until a restart recovers it.
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        let offset = index_to_offset(index);
        assert!(
            offset >= *self.committed_end.borrow(),
            "a committed entry is never truncated"
        );
        state.log.truncate_to(offset)?;
        state.producers = producers_from_log(&state.log)?;
        let end = state.log.durable_end_offset();
        drop(state);
        self.durable_end.send_replace(end);
        Ok(())
    }

    /// A follower starts over after `index` (its leader's log start; see
    /// `Command::ResetLog`): every entry it held is dropped, the next one is at `index + 1`.
    pub async fn reset_log(
        &self,
        disk: &dyn Disk,
        index: LogIndex,
        term: Term,
        wall_ms: i64,
    ) -> Result<(), PartitionError> {
        let _turn = self.sync_turn.lock().await;
        let mut state = self.lock();
        if let Some(reason) = &state.offline {
            return Err(PartitionError::Offline(reason.clone()));
        }
        self.store_log_start(disk, index, term)?;
        // Index `i` is offset `i - 1`: the next offset is `index`.
        let next_offset = index_to_offset(index) + 1;
        state.log.reset_to(next_offset, wall_ms)?;
        state.producers = producers_from_log(&state.log)?;
        drop(state);
        self.durable_end.send_replace(next_offset);
        Ok(())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` and within one leader
    /// epoch, for an append to a follower. Ignores the high watermark.
    pub fn read_for_replication(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, PartitionError> {
        let state = self.lock();
        let bytes = state
            .log
            .read(offset, max_bytes, state.log.log_end_offset())?;
        drop(state);
        // Cut at the first change of epoch: one append carries one term.
        let mut first_epoch = None;
        let mut length = 0;
        for batch in record_batch::split_batches(&bytes) {
            let batch = batch.map_err(|error| PartitionError::Replication(error.to_string()))?;
            let header = RecordBatchHeader::parse(batch)
                .map_err(|error| PartitionError::Replication(error.to_string()))?;
            if *first_epoch.get_or_insert(header.partition_leader_epoch)
                != header.partition_leader_epoch
            {
                break;
            }
            length += batch.len();
        }
        Ok(bytes.slice(..length))
    }

    /// Stops serving after a replication step failed: the replica's log and its Raft state may
    /// disagree, so it answers nothing until a restart recovers both from disk.
    pub fn take_offline(&self, reason: String) {
        self.lock().offline.get_or_insert(reason);
        self.durable_end.send_modify(|_| {});
        self.leadership.send_modify(|_| {});
    }

    /// The committed end moved (the quorum's commit index).
    pub fn set_committed(&self, up_to_index: LogIndex) {
        let end = index_to_offset(up_to_index) + 1;
        let moved = self.committed_end.send_if_modified(|committed| {
            if end > *committed {
                *committed = end;
                true
            } else {
                false
            }
        });
        if moved {
            self.data_visible.notify_waiters();
        }
    }

    pub fn set_leadership(&self, leadership: Leadership) {
        {
            let mut state = self.lock();
            if state.writable_term != Some(leadership.term) {
                state.writable_term = None;
            }
        }
        self.leadership.send_replace(leadership);
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
            self.start_spare_if_wanted(&disk);
        }
    }

    /// Starts writing the next segment's spare file if the log wants one (see
    /// [`crate::log::spare`]). Checked after each sync: appends are what fill the segment.
    fn start_spare_if_wanted(self: &Arc<Self>, disk: &Arc<dyn Disk>) {
        let plan = {
            let mut state = self.lock();
            if state.offline.is_some() {
                return;
            }
            state.log.begin_spare()
        };
        if let Some(plan) = plan {
            tasks::spawn(self.clone().prepare_spare(disk.clone(), plan));
        }
    }

    /// Writes a spare off the append path; appends and syncs go on meanwhile.
    async fn prepare_spare(self: Arc<Self>, disk: Arc<dyn Disk>, plan: SparePlan) {
        let disk_for_io = disk.clone();
        let gate = self.spare_gate.clone();
        let result = tasks::run_blocking(move || plan.execute(disk_for_io.as_ref(), &gate)).await;
        if let Err(error) = &result {
            tracing::warn!(topic = %self.topic, partition = self.index, %error,
                "could not preallocate the next segment; it will grow as it fills");
        }
        sleep_for_simulated_latency(disk.as_ref()).await;
        self.lock().log.complete_spare(result.is_ok());
    }

    /// Stops spare preparation, waiting (one chunk's write at most) for one in progress: called
    /// before the partition's directory is removed, so that no spare lands in a directory of
    /// the same name created afterwards.
    pub fn retire_spares(&self) {
        self.spare_gate.close();
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
        tracing::trace!(topic = %self.topic, partition = self.index, end_offset = plan.end_offset,
            ?took, "synced");
        if took >= Duration::from_millis(SLOW_SYNC_WARNING_MS) {
            let waiting = match self.flush_policy {
                FlushPolicy::Sync => "acknowledgements wait for it",
                FlushPolicy::Interval { .. } => "appends to the segment may stall while it runs",
            };
            tracing::warn!(topic = %self.topic, partition = self.index, took_ms = took.as_millis() as u64,
                "slow sync: {waiting}");
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
        if self.replica.is_some() {
            return *self.committed_end.borrow();
        }
        let state = self.lock();
        match self.flush_policy {
            FlushPolicy::Sync => state.log.durable_end_offset(),
            FlushPolicy::Interval { .. } => state.log.log_end_offset(),
        }
    }

    pub fn log_start_offset(&self) -> i64 {
        self.lock().visible_log_start()
    }

    /// The log start DeleteRecords set (0 if it never did), for the catalogue.
    pub fn log_start_floor(&self) -> i64 {
        self.lock().log_start_floor
    }

    /// Raises the DeleteRecords floor to `offset` (never lowers it).
    pub fn raise_log_start_floor(&self, offset: i64) {
        let mut state = self.lock();
        state.log_start_floor = state.log_start_floor.max(offset);
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
        let log_start = state.visible_log_start();
        if offset < log_start {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                log_end: state.log.log_end_offset(),
            }
            .into());
        }
        let bytes = state.log.read(offset, max_bytes, high_watermark)?;
        Ok((bytes, high_watermark, log_start))
    }

    /// Calls `visit` with every data record (control records skipped) from `from_offset` up to
    /// the high watermark as it stands now, reading `read_bytes` at a time; returns the offset
    /// after the last record read. For the broker's own logs (committed offsets, metadata),
    /// whose batches its own encoder wrote.
    pub fn for_each_committed_record(
        &self,
        from_offset: i64,
        read_bytes: usize,
        mut visit: impl FnMut(kafka_protocol::records::Record) -> Result<(), String>,
    ) -> Result<i64, String> {
        let mut offset = from_offset.max(self.log_start_offset());
        let end = self.high_watermark();
        // Bounded: each step passes at least one batch, and stops at the high watermark.
        while offset < end {
            let (bytes, _, _) = self
                .read(offset, read_bytes)
                .map_err(|error| error.to_string())?;
            if bytes.is_empty() {
                break;
            }
            let mut buffer = bytes;
            let mut next = offset;
            while !buffer.is_empty() {
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buffer)
                    .map_err(|error| format!("{}-{}: {error:#}", self.topic, self.index))?;
                for record in set.records {
                    next = next.max(record.offset + 1);
                    // Leader markers and other control records carry no data.
                    if record.offset >= offset && !record.control {
                        visit(record)?;
                    }
                }
            }
            if next <= offset {
                return Err(format!(
                    "{}-{} made no progress at offset {offset}",
                    self.topic, self.index
                ));
            }
            offset = next;
        }
        Ok(offset)
    }

    /// The first offset with a timestamp at or after `timestamp`, below the high watermark.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(i64, i64)>, PartitionError> {
        let high_watermark = self.high_watermark();
        let state = self.lock();
        let log_start = state.visible_log_start();
        Ok(state
            .log
            .offset_for_timestamp(timestamp, log_start, high_watermark)?)
    }

    /// The record with the largest timestamp, below the high watermark and from the log start
    /// clients see, as `(offset, timestamp)`.
    pub fn offset_of_max_timestamp(&self) -> Result<Option<(i64, i64)>, PartitionError> {
        let high_watermark = self.high_watermark();
        let state = self.lock();
        let log_start = state.visible_log_start();
        Ok(state
            .log
            .offset_of_max_timestamp(log_start, high_watermark)?)
    }

    /// Applies retention; returns how many segments were deleted.
    /// Also forgets idempotent producers idle for longer than `producer.id.expiration.ms`.
    /// A replica deletes only committed segments: the core may still send or truncate the
    /// entries above its commit index.
    /// Segments wholly below the DeleteRecords floor go first, whatever their age.
    pub fn apply_retention(&self, disk: &dyn Disk, wall_ms: i64) -> Result<usize, PartitionError> {
        let (visible_start, log_start) = {
            let state = self.lock();
            (state.visible_log_start(), state.log.log_start_offset())
        };
        let mut deleted = 0;
        if visible_start > log_start {
            deleted += self.apply_cleanup(disk, wall_ms, Cleanup::Superseded, visible_start)?;
        }
        deleted += self.apply_cleanup(disk, wall_ms, Cleanup::Retention { wall_ms }, i64::MAX)?;
        Ok(deleted)
    }

    /// Deletes the oldest sealed segments that `cleanup` allows and that end at or below
    /// `keep_from` (and, for a replica, at or below what its quorum committed).
    pub fn apply_cleanup(
        &self,
        disk: &dyn Disk,
        wall_ms: i64,
        cleanup: Cleanup,
        keep_from: i64,
    ) -> Result<usize, PartitionError> {
        let keep_from = if self.is_replicated() {
            keep_from.min(self.high_watermark())
        } else {
            keep_from
        };
        let mut state = self.lock();
        state.producers.expire(wall_ms);
        let Some(link) = &self.replica else {
            return Ok(state.log.apply_cleanup(cleanup, keep_from)?);
        };
        // The core's own commit index bounds it too: a replica restarted after a replication
        // error relearns its commit index while the high watermark stays where it was.
        let core_committed_end = link.raft.lock().get(link.group).map_or(0, |node| {
            i64::try_from(node.commit_index()).unwrap_or(i64::MAX)
        });
        let keep_from = keep_from.min(core_committed_end);
        let Some(start) = state.log.cleanup_start(cleanup, keep_from) else {
            return Ok(0);
        };
        // Offset `o` is index `o + 1`, so the last offset deleted, `start - 1`, is index
        // `start`. Its term is recorded before the deletion: after it, no batch carries it.
        let index = LogIndex::try_from(start).expect("offsets are not negative");
        let term = {
            let groups = link.raft.lock();
            groups
                .get(link.group)
                .and_then(|node| node.log().term_at(index))
        };
        let Some(term) = term else {
            return Ok(0);
        };
        self.store_log_start(disk, index, term)?;
        let deleted = state.log.apply_cleanup(cleanup, keep_from)?;
        debug_assert_eq!(state.log.log_start_offset(), start);
        // The core forgets the deleted entries too: a follower that needs them is sent the new
        // log start instead.
        let mut groups = link.raft.lock();
        let now_ms = link.raft.now_ms();
        if let Some(node) = groups.get_mut(link.group) {
            node.compact(now_ms, index);
        }
        Ok(deleted)
    }

    /// The end of what this replica's log has made durable.
    pub fn durable_end_offset(&self) -> i64 {
        self.lock().log.durable_end_offset()
    }

    /// The base offset of the active segment.
    pub fn active_segment_base(&self) -> i64 {
        self.lock().log.active_segment_base()
    }

    /// Checks that the log's indexes agree with its segments; see
    /// [`PartitionLog::check_consistency`].
    pub fn check_consistency(&self) -> Result<(), String> {
        self.lock().log.check_consistency()
    }

    pub fn update_config(&self, config: LogConfig) {
        self.lock().log.update_config(config);
    }

    /// The settings the log runs with now.
    pub fn log_config(&self) -> LogConfig {
        self.lock().log.config().clone()
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

/// The replica's Raft hard state (term and vote), beside its segments.
pub const HARD_STATE_FILE: &str = crate::log::recovery::RAFT_STATE_FILE_NAME;
pub const LOG_START_FILE: &str = crate::log::recovery::LOG_START_FILE_NAME;

/// A small JSON state file beside a replica's log; `None` if it was never written.
fn load_state_file<T: serde::de::DeserializeOwned>(
    disk: &dyn Disk,
    path: &std::path::Path,
) -> Result<Option<T>, PartitionError> {
    let bytes = match disk::read_whole(disk, path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(PartitionError::Offline(format!(
                "reading {}: {error}",
                path.display()
            )))
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| {
        PartitionError::Replication(format!("{} is corrupt: {error}", path.display()))
    })
}

/// The recorded log start and its term, if any.
fn load_log_start(
    disk: &dyn Disk,
    directory: &std::path::Path,
) -> Result<Option<(LogIndex, Term)>, PartitionError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        index: LogIndex,
        term: Term,
    }
    let stored: Option<Stored> = load_state_file(disk, &directory.join(LOG_START_FILE))?;
    Ok(stored.map(|stored| (stored.index, stored.term)))
}

fn load_hard_state(
    disk: &dyn Disk,
    directory: &std::path::Path,
) -> Result<HardState, PartitionError> {
    #[derive(serde::Deserialize)]
    struct Stored {
        term: u64,
        voted_for: Option<u64>,
    }
    let stored: Option<Stored> = load_state_file(disk, &directory.join(HARD_STATE_FILE))?;
    Ok(stored.map_or_else(HardState::default, |stored| HardState {
        term: stored.term,
        voted_for: stored.voted_for,
    }))
}

/// The term a replica accepts produce requests in: it leads, and its leader marker of that
/// term is in the log. NOT_LEADER_OR_FOLLOWER otherwise, naming the leader if known.
fn writable_term(state: &PartitionState, node: Option<&RaftNode>) -> Result<Term, PartitionError> {
    let node = node.ok_or(PartitionError::NotLeader { leader: None })?;
    if !node.is_leader() || state.writable_term != Some(node.term()) {
        return Err(PartitionError::NotLeader {
            leader: node
                .leader()
                .filter(|leader| !node.is_leader() || *leader != node.node_id()),
        });
    }
    Ok(node.term())
}

/// Kafka offset `o` is Raft index `o + 1`.
pub fn index_to_offset(index: LogIndex) -> i64 {
    i64::try_from(index).expect("indexes fit in an offset") - 1
}

pub fn offset_to_index(offset: i64) -> LogIndex {
    LogIndex::try_from(offset + 1).expect("offsets are not negative")
}

fn term_as_epoch(term: Term) -> i32 {
    i32::try_from(term).expect("a term fits in a partition leader epoch")
}

/// Batches written before replication (epoch -1 or 0) map to term 0, which no replicated log
/// may hold.
fn epoch_as_term(epoch: i32) -> Term {
    Term::try_from(epoch.max(0)).expect("not negative")
}

/// A control batch with one record, as Kafka's transaction markers: every client skips control
/// batches, so consumers never see the marker, only a gap of one offset.
fn leader_marker_batch(wall_ms: i64) -> Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: wall_ms,
        // Control record key: version 0, type 1 (a commit marker with no transaction to commit).
        key: Some(Bytes::from_static(&[0, 0, 0, 1])),
        // Marker value: version 0, coordinator epoch 0.
        value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let mut buffer = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &[record], &options)
        .expect("encoding one record into memory cannot fail");
    buffer.freeze()
}

/// A sync slower than this is logged: under the sync policy, produce latency is at least this.
const SLOW_SYNC_WARNING_MS: u64 = 100;

/// Under the interval policy, the syncer also runs as soon as this many bytes are appended
/// and not yet synced, besides every `log.flush.interval.ms`. Acknowledgements never wait for
/// it; what it bounds is the burst one fsync writes out, because appends to a segment stall
/// while a large fsync of it runs (seen on ext4, where the fsync's journal commit waits for
/// the file's dirty data). One second of a 130 MB/s stream synced at once held every producer
/// of the partition for 15-40 ms, once a second; with syncs of this size that stall left the
/// latency tail (p99 2.4-2.9 ms at 1.3 M records/s, from 5.7-19 ms). Records also become
/// durable sooner than the interval alone promises.
const INTERVAL_POLICY_SYNC_BYTES: u64 = 4 * 1024 * 1024;

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

/// Records an idempotent batch found in the log (at open, on a follower, after truncation).
fn replay_producer(producers: &mut ProducerStateTable, header: &RecordBatchHeader) {
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
}

/// The idempotent-producer state a log implies: rebuilt from every batch it holds.
fn producers_from_log(log: &PartitionLog) -> Result<ProducerStateTable, LogError> {
    let mut producers = ProducerStateTable::new(ProducerStateConfig::default());
    log.for_each_batch(log.log_start_offset(), |header| {
        replay_producer(&mut producers, header)
    })?;
    Ok(producers)
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

#[cfg(test)]
#[path = "partition_replica_tests.rs"]
mod replica_tests;

#[cfg(test)]
#[path = "partition_flush_tests.rs"]
mod flush_tests;
