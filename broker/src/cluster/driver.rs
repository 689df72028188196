//! The cluster driver: the one task that moves every Raft group of this broker.
//!
//! Each turn: take the peers' frames (up to a bound), tick and step every group, flush, then
//! execute the commands in order (truncate, leader marker, write a follower's entries, persist
//! the hard state), sync every partition that was written (one sync per partition per turn,
//! however many proposals it covers: group commit), report what is durable, and only then send
//! the envelopes, with each append's record batches read from the log. Nothing leaves this
//! broker before what it claims is durable (the ordering contract of `consensus`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

use super::metadata::METADATA_GROUP;
use super::peer_wire::{self, PeerFrame};
use super::transport::InboundFrame;
use super::{replicas, Cluster};
use crate::consensus::{
    Command, EntrySpan, GroupId, GroupSetOutput, LogIndex, Message, NodeId, Term,
};
use crate::io::tasks;
use crate::log::record_batch::{self, RecordBatchHeader};
use crate::server::broker::OFFSETS_TOPIC;
use crate::server::partition::{
    index_to_offset, offset_to_index, Leadership, Partition, PartitionError,
};
use crate::server::{groups, Broker};

/// Bytes of record batches one append carries to one follower (at least one whole batch).
pub const APPEND_PAYLOAD_BYTES_MAX: usize = 1024 * 1024;
/// Bytes of record batches in one frame to one peer; appends beyond it are dropped this turn
/// (the leader resends them), so many groups catching up at once cannot build a huge frame.
pub const FRAME_PAYLOAD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Frames taken from the inbox per turn.
pub const INBOX_FRAMES_PER_TURN_MAX: usize = 256;
/// Rounds of execute / sync / report per turn; each round's reports may produce more commands.
pub const ROUNDS_PER_TURN_MAX: usize = 8;
/// The longest the driver sleeps without a tick.
pub const TICK_INTERVAL_MS_MAX: u64 = 50;

/// Payloads of the appends stepped this turn, by group, term, then last and first index of
/// the append's span. A leader may send two appends ending at the same index in one turn (a
/// resend beside the late original): both are kept, and a `Persist` span is written from every
/// append of its term that ends inside it, in order (batches already written are skipped).
type Payloads = BTreeMap<(GroupId, Term, LogIndex, LogIndex), Bytes>;

struct Driver {
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    /// The next metadata offset to apply.
    metadata_applied: i64,
    offsets_topic_requested: bool,
    /// Commands left over by the round limit of the previous turn.
    carried: Option<GroupSetOutput>,
    /// Groups whose Raft node was restarted this round: their remaining commands are moot.
    reset: BTreeSet<GroupId>,
}

pub async fn run(
    broker: Arc<Broker>,
    cluster: Arc<Cluster>,
    mut inbox: mpsc::Receiver<InboundFrame>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut driver = Driver {
        broker,
        cluster,
        metadata_applied: 0,
        offsets_topic_requested: false,
        carried: None,
        reset: BTreeSet::new(),
    };
    loop {
        let raft = driver.cluster.raft.clone();
        let now_ms = raft.now_ms();
        let deadline = raft.lock().next_deadline_ms().unwrap_or(u64::MAX);
        let sleep_ms = deadline
            .saturating_sub(now_ms)
            .clamp(1, TICK_INTERVAL_MS_MAX);
        let mut frames = Vec::new();
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            frame = inbox.recv() => match frame {
                Some(frame) => frames.push(frame),
                None => return,
            },
            _ = raft.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
        }
        while frames.len() < INBOX_FRAMES_PER_TURN_MAX {
            match inbox.try_recv() {
                Ok(frame) => frames.push(frame),
                Err(_) => break,
            }
        }
        driver.turn(frames).await;
    }
}

impl Driver {
    async fn turn(&mut self, frames: Vec<InboundFrame>) {
        let mut payloads = Payloads::new();
        let mut held = Vec::with_capacity(frames.len());
        let output = {
            let raft = &self.cluster.raft;
            let mut groups = raft.lock();
            let now_ms = raft.now_ms();
            groups.tick(now_ms);
            for InboundFrame { frame, budget } in frames {
                // The frame's share of the inbox budget is released when this turn ends.
                held.push(budget);
                match frame {
                    PeerFrame::Raft {
                        envelope,
                        payloads: attached,
                    } => {
                        for ((group, message), payload) in envelope.messages.iter().zip(attached) {
                            if let (
                                Message::Append {
                                    entries: Some(span),
                                    ..
                                },
                                Some(payload),
                            ) = (message, payload)
                            {
                                payloads.insert(
                                    (*group, span.term, span.last_index, span.first_index),
                                    payload,
                                );
                            }
                        }
                        groups.step(now_ms, envelope);
                    }
                    PeerFrame::ProposeMetadata { record, .. } => {
                        // Proposed outside the lock below; a forwarded record that finds this
                        // broker no longer the controller is dropped (the sender retries).
                        drop(groups);
                        let partition = self.cluster.metadata_partition();
                        if let Err(error) = self.cluster.append_metadata(&partition, &record) {
                            tracing::debug!(%error, "forwarded metadata record not proposed");
                        }
                        groups = raft.lock();
                    }
                    PeerFrame::Hello { .. } => {}
                }
            }
            let flushed = groups.flush();
            match self.carried.take() {
                None => flushed,
                Some(mut carried) => {
                    carried.commands.extend(flushed.commands);
                    carried.envelopes.extend(flushed.envelopes);
                    carried
                }
            }
        };
        self.execute(output, &payloads).await;
        drop(held);
    }

    async fn execute(&mut self, mut output: GroupSetOutput, payloads: &Payloads) {
        for _ in 0..ROUNDS_PER_TURN_MAX {
            if output.commands.is_empty() && output.envelopes.is_empty() {
                return;
            }
            let mut written: BTreeMap<GroupId, EntrySpan> = BTreeMap::new();
            let mut metadata_committed = false;
            self.reset.clear();
            for (group, command) in std::mem::take(&mut output.commands) {
                if self.reset.contains(&group) {
                    continue;
                }
                let Some(partition) = self.cluster.replica(group) else {
                    continue;
                };
                if self
                    .run_command(group, &partition, command, payloads, &mut written)
                    .await
                {
                    metadata_committed |= group == METADATA_GROUP;
                }
            }
            // Make every write of this round durable before anything is sent.
            let mut persisted = Vec::new();
            for (group, span) in written {
                let Some(partition) = self.cluster.replica(group) else {
                    continue;
                };
                if partition.sync_once(&self.broker.seams.disk).await {
                    persisted.push((group, span.last_index, span.term));
                }
            }
            self.send(std::mem::take(&mut output.envelopes));
            if metadata_committed {
                self.apply_metadata().await;
            }
            let raft = &self.cluster.raft;
            let mut groups = raft.lock();
            let now_ms = raft.now_ms();
            for (group, last_index, term) in persisted {
                groups.persisted(now_ms, group, last_index, term);
            }
            output = groups.flush();
        }
        // Whatever is left opens the next turn, before anything flushed then.
        if !output.commands.is_empty() || !output.envelopes.is_empty() {
            tracing::debug!("driver round limit reached; continuing next turn");
            self.carried = Some(output);
            self.cluster.raft.wake.notify_one();
        }
    }

    /// Executes one command; returns whether it was a commit.
    async fn run_command(
        &mut self,
        group: GroupId,
        partition: &Arc<Partition>,
        command: Command,
        payloads: &Payloads,
        written: &mut BTreeMap<GroupId, EntrySpan>,
    ) -> bool {
        let wall_ms = self.broker.seams.clock.wall_ms();
        let result = match command {
            Command::TruncateLogFrom { index } => {
                tracing::info!(topic = %partition.topic, partition = partition.index, index, "truncating a divergent suffix");
                partition.truncate_from_index(index).await
            }
            Command::ResetLog { index, term } => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, index, term,
                    "the leader no longer holds what this replica needs next; starting over at its log start");
                let disk = self.broker.seams.disk.clone();
                let result = partition
                    .reset_log(disk.as_ref(), index, term, wall_ms)
                    .await;
                if result.is_ok() {
                    // Whatever this round wrote before is gone: only the reset point counts.
                    written.insert(group, EntrySpan::new(index, index, term));
                }
                result
            }
            Command::AppendLeaderMarker { index, term } => {
                let result = partition.write_leader_marker(index, term, wall_ms);
                if result.is_ok() {
                    note_written(written, group, EntrySpan::new(index, index, term));
                }
                result
            }
            Command::Persist {
                hard_state,
                entries,
            } => {
                let mut result = Ok(());
                if let Some(hard_state) = hard_state {
                    let for_io = partition.clone();
                    let disk = self.broker.seams.disk.clone();
                    result = tasks::run_blocking(move || {
                        for_io.store_hard_state(disk.as_ref(), hard_state)
                    })
                    .await;
                }
                if let (Ok(()), Some(span)) = (&result, entries) {
                    // A leader's entries are in its log since the proposal; a follower's come
                    // from the append just stepped.
                    if partition.log_end_offset() <= index_to_offset(span.last_index) {
                        // Every append of this turn and term that ends inside the span.
                        let contributing: Vec<&Bytes> = payloads
                            .range(
                                (group, span.term, span.first_index, 0)
                                    ..=(group, span.term, span.last_index, LogIndex::MAX),
                            )
                            .map(|(_, payload)| payload)
                            .collect();
                        result = partition.write_replicated(&contributing, span, wall_ms);
                    }
                    if result.is_ok() {
                        note_written(written, group, span);
                    }
                }
                result
            }
            Command::Commit { up_to_index } => {
                partition.set_committed(up_to_index);
                return true;
            }
            Command::BecameLeader { term } => {
                tracing::info!(topic = %partition.topic, partition = partition.index, term, "leading");
                partition.set_leadership(Leadership {
                    leader: Some(self.cluster.node_id),
                    term,
                });
                Ok(())
            }
            Command::BecameFollower { term, leader } => {
                let was_leader = partition.leadership().leader == Some(self.cluster.node_id);
                partition.set_leadership(Leadership { leader, term });
                if was_leader && partition.topic == OFFSETS_TOPIC {
                    groups::resign(&self.broker);
                }
                Ok(())
            }
            Command::ReadyForRead { term, .. } => {
                if partition.topic == OFFSETS_TOPIC {
                    let broker = self.broker.clone();
                    tasks::spawn(async move { groups::take_over(&broker, term).await });
                }
                if group == METADATA_GROUP {
                    self.request_offsets_topic();
                }
                Ok(())
            }
            Command::Send { .. } => unreachable!("a group set returns sends in envelopes"),
        };
        match result {
            Ok(()) => {}
            Err(PartitionError::Replication(reason)) => {
                // The stream brought something this log cannot take (a bug somewhere, or a
                // payload lost between appends): restart this replica's Raft node from what
                // its log really holds, as after a crash, and let the leader resend.
                tracing::warn!(topic = %partition.topic, partition = partition.index, %reason,
                    "replication step failed; restarting the replica from its log");
                written.remove(&group);
                self.reset.insert(group);
                if let Err(error) = self.restart_replica(group, partition).await {
                    tracing::error!(topic = %partition.topic, partition = partition.index, %error,
                        "cannot restart the replica; taking it offline");
                    partition.take_offline(error);
                }
            }
            // An offline replica fails every later step the same way: said once, at the cause.
            Err(error) if partition.is_offline() => {
                tracing::debug!(topic = %partition.topic, partition = partition.index, %error,
                    "replication step on an offline replica");
            }
            Err(error) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error,
                    "replication step failed; taking the replica offline");
                partition.take_offline(error.to_string());
            }
        }
        false
    }

    /// Replaces a group's Raft node with one recovered from the replica's durable state.
    async fn restart_replica(
        &self,
        group: GroupId,
        partition: &Arc<Partition>,
    ) -> Result<(), String> {
        if !partition.sync_once(&self.broker.seams.disk).await {
            return Err("sync failed".to_string());
        }
        let (hard_state, terms) = partition
            .recover_raft_state(self.broker.seams.disk.as_ref())
            .map_err(|error| error.to_string())?;
        let mut set = self.cluster.raft.lock();
        let Some(voters) = set.get(group).map(|node| node.config().voters.clone()) else {
            return Err("the group is gone".to_string());
        };
        let node = replicas::raft_node(&self.cluster, group, voters, hard_state, terms);
        set.remove(group);
        set.insert(group, node);
        Ok(())
    }

    async fn apply_metadata(&mut self) {
        let broker = self.broker.clone();
        let cluster = self.cluster.clone();
        let from = self.metadata_applied;
        let applied =
            tasks::run_blocking(move || replicas::apply_committed(&broker, &cluster, from)).await;
        match applied {
            Ok(next) => {
                self.metadata_applied = next;
                self.cluster.metadata_applied.store(next, Ordering::Release);
                self.cluster.applied.send_modify(|_| {});
            }
            Err(error) => tracing::error!(%error, "applying the metadata log failed"),
        }
        if self.cluster.controller() == Some(self.cluster.node_id) {
            self.request_offsets_topic();
        }
    }

    /// The controller creates the offsets topic the first time the cluster runs.
    fn request_offsets_topic(&mut self) {
        if self.offsets_topic_requested || self.cluster.image().topics.contains_key(OFFSETS_TOPIC) {
            return;
        }
        self.offsets_topic_requested = true;
        let cluster = self.cluster.clone();
        let id = uuid::Uuid::from_bytes(self.broker.seams.random.uuid_bytes());
        tasks::spawn(async move {
            let record = replicas::offsets_topic_record(id);
            if let Err(error) = cluster
                .change_metadata(record, |image| image.topics.contains_key(OFFSETS_TOPIC))
                .await
            {
                tracing::warn!(%error, "creating the offsets topic failed; retried by the next controller");
            }
        });
    }

    /// Attaches each append's batches from the log and hands the frames to the links.
    fn send(&self, envelopes: Vec<crate::consensus::Envelope>) {
        for mut envelope in envelopes {
            let mut payloads = Vec::with_capacity(envelope.messages.len());
            let mut payload_bytes = 0usize;
            let mut kept = Vec::with_capacity(envelope.messages.len());
            for (group, message) in envelope.messages {
                // A replica whose persist failed must not speak: its vote or acknowledgement
                // may not be durable.
                if self
                    .cluster
                    .replica(group)
                    .is_none_or(|partition| partition.is_offline())
                {
                    continue;
                }
                match message {
                    Message::Append {
                        term,
                        entries: Some(span),
                        commit_index,
                        sent_ms,
                        ..
                    } => match self.attach(group, span) {
                        Some((previous_index, previous_term, span, payload))
                            if payload_bytes + payload.len() <= FRAME_PAYLOAD_BYTES_MAX
                                || payload_bytes == 0 =>
                        {
                            payload_bytes += payload.len();
                            kept.push((
                                group,
                                Message::Append {
                                    term,
                                    previous_index,
                                    previous_term,
                                    entries: Some(span),
                                    commit_index,
                                    sent_ms,
                                },
                            ));
                            payloads.push(Some(payload));
                        }
                        _ => continue,
                    },
                    other => {
                        kept.push((group, other));
                        payloads.push(None);
                    }
                }
            }
            envelope.messages = kept;
            if envelope.messages.is_empty() {
                continue;
            }
            let to: NodeId = envelope.to;
            let frame = peer_wire::encode(&PeerFrame::Raft { envelope, payloads });
            self.cluster.send_frame(to, frame);
        }
    }

    /// The batches covering `span`, widened to whole batches (a batch is never split between
    /// two appends: down to the batch holding its first index, up to the end of the batch
    /// holding its last, which the same proposal made durable) and cut at
    /// [`APPEND_PAYLOAD_BYTES_MAX`]; with the previous index and term of the widened span. `None` when the log cannot supply them (the append is dropped; Raft
    /// resends).
    fn attach(
        &self,
        group: GroupId,
        span: EntrySpan,
    ) -> Option<(LogIndex, Term, EntrySpan, Bytes)> {
        let partition = self.cluster.replica(group)?;
        let payload = match partition
            .read_for_replication(index_to_offset(span.first_index), APPEND_PAYLOAD_BYTES_MAX)
        {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "cannot read entries for a follower");
                return None;
            }
        };
        // Only the batches covering the span: the log may already hold later entries that are
        // not durable here yet, and nothing leaves this broker before it is durable.
        let span_end_offset = index_to_offset(span.last_index);
        let mut first: Option<RecordBatchHeader> = None;
        let mut last: Option<RecordBatchHeader> = None;
        let mut length = 0;
        for batch in record_batch::split_batches(&payload) {
            let batch = batch.ok()?;
            let header = RecordBatchHeader::parse(batch).ok()?;
            if header.base_offset > span_end_offset {
                break;
            }
            first.get_or_insert(header);
            last = Some(header);
            length += batch.len();
        }
        let (first, last) = (first?, last?);
        let payload = payload.slice(..length);
        if first.partition_leader_epoch as Term != span.term {
            tracing::error!(topic = %partition.topic, partition = partition.index, epoch = first.partition_leader_epoch, term = span.term,
                "the log's epoch differs from the Raft term of the entries; not sending");
            return None;
        }
        let widened = EntrySpan::new(
            offset_to_index(first.base_offset),
            offset_to_index(last.last_offset()),
            span.term,
        );
        let previous_index = widened.first_index - 1;
        let previous_term = self
            .cluster
            .raft
            .lock()
            .get(group)?
            .log()
            .term_at(previous_index)?;
        Some((previous_index, previous_term, widened, payload))
    }
}

fn note_written(written: &mut BTreeMap<GroupId, EntrySpan>, group: GroupId, span: EntrySpan) {
    let entry = written.entry(group).or_insert(span);
    if span.last_index >= entry.last_index {
        *entry = span;
    }
}
