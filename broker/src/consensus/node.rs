//! [`RaftNode`]: one node of one Raft group, as a pure state machine.
//!
//! Inputs: [`RaftNode::tick`], [`RaftNode::step`], [`RaftNode::propose`],
//! [`RaftNode::persisted`], [`RaftNode::transfer_leadership`]. Outputs: the [`Command`]s queued
//! by those calls, taken with [`RaftNode::take_commands`], plus the queries
//! [`RaftNode::read_index`] (lease reads) and the accessors.

use std::collections::BTreeMap;

use super::config::{
    RaftConfig, APPEND_INDEXES_PER_MESSAGE_MAX, PROPOSAL_INDEXES_MAX,
    REPLICATION_WINDOW_INDEXES_MAX,
};
use super::log_terms::LogTerms;
use super::types::{
    AppendResult, Command, EntrySpan, HardState, LogIndex, Message, NodeId, ProposeError,
    ReadError, Term, TransferError,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking "would you vote for me?" without changing any term (PreVote).
    PreCandidate,
    Candidate,
    Leader,
}

/// How the leader replicates to one follower (raft-rs's `Progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplicationMode {
    /// Looking for the point where the logs agree: one append in flight at a time.
    Probe { in_flight: bool },
    /// The logs agree up to `match_index`: stream appends optimistically.
    Replicate,
}

#[derive(Clone, Debug)]
struct Progress {
    next_index: LogIndex,
    match_index: LogIndex,
    mode: ReplicationMode,
    /// The leader's clock when the follower was last heard from (CheckQuorum).
    last_heard_ms: u64,
    /// The latest leader send time the follower echoed: the follower had heard from this leader
    /// at that time, so it will not vote for anyone else for an election timeout (lease).
    acknowledged_sent_ms: Option<u64>,
    /// `match_index` and `next_index` at the previous heartbeat, to notice a stalled stream.
    match_index_at_last_heartbeat: LogIndex,
    next_index_at_last_heartbeat: LogIndex,
}

#[derive(Clone, Copy, Debug)]
struct Transfer {
    target: NodeId,
    deadline_ms: u64,
}

/// A small deterministic generator (SplitMix64) for the election jitter, seeded by the driver.
#[derive(Clone, Debug)]
struct Jitter {
    state: u64,
}

impl Jitter {
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }
}

#[derive(Debug)]
pub struct RaftNode {
    config: RaftConfig,
    hard_state: HardState,
    role: Role,
    leader: Option<NodeId>,
    log: LogTerms,
    /// Entries `1..=persisted_index` of the current log are durable on this node.
    persisted_index: LogIndex,
    commit_index: LogIndex,
    /// The largest index known committed by the current or an earlier leader and present in
    /// this log; it becomes `commit_index` once durable here.
    known_committed_index: LogIndex,
    /// The log matches the current leader's through this index (reset when the term changes).
    verified_index: LogIndex,
    /// The largest match index already reported to the current leader.
    acknowledged_index: LogIndex,
    /// When a leader of the current term was last heard from, on this node's clock.
    leader_heard_ms: Option<u64>,
    /// The leader's `sent_ms` of the latest append or heartbeat, echoed in responses.
    leader_sent_ms: u64,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    transfer: Option<Transfer>,
    /// The leader's own first entry; reads need it committed (Raft §8).
    leader_marker_index: LogIndex,
    /// Set once this leader has sent TimeoutNow: the target's election bypasses the voters'
    /// stickiness, so this leader's lease means nothing for the rest of its term.
    lease_revoked: bool,
    election_deadline_ms: u64,
    heartbeat_deadline_ms: u64,
    jitter: Jitter,
    now_ms: u64,
    commands: Vec<Command>,
}

impl RaftNode {
    /// A node with an empty log and no history: a new group.
    pub fn new(config: RaftConfig, now_ms: u64) -> Self {
        RaftNode::restart(config, HardState::default(), LogTerms::new(), now_ms)
    }

    /// A node recovering its durable state: the hard state and the term runs of its durable log.
    ///
    /// The node behaves as if it had just heard from a leader: it grants no vote for one
    /// election timeout, because before the crash it may have promised a leader exactly that
    /// (the leader's lease counts on it).
    pub fn restart(config: RaftConfig, hard_state: HardState, log: LogTerms, now_ms: u64) -> Self {
        config.validate();
        assert!(
            log.last_term() <= hard_state.term,
            "no entry is newer than the term"
        );
        let mut node = RaftNode {
            jitter: Jitter {
                state: config.random_seed ^ config.node_id.wrapping_mul(0x2545_f491_4f6c_dd1d),
            },
            config,
            hard_state,
            role: Role::Follower,
            leader: None,
            persisted_index: log.last_index(),
            // Entries through the log start are committed: retention deletes nothing else.
            commit_index: log.start().0,
            known_committed_index: log.start().0,
            log,
            verified_index: 0,
            acknowledged_index: 0,
            leader_heard_ms: Some(now_ms),
            leader_sent_ms: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            transfer: None,
            leader_marker_index: 0,
            lease_revoked: false,
            election_deadline_ms: 0,
            heartbeat_deadline_ms: 0,
            now_ms,
            commands: Vec::new(),
        };
        node.reset_election_deadline();
        node
    }

    // ----------------------------------------------------------------------------------------
    // Accessors.

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.hard_state.term
    }
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }
    pub fn persisted_index(&self) -> LogIndex {
        self.persisted_index
    }
    pub fn log(&self) -> &LogTerms {
        &self.log
    }
    pub fn config(&self) -> &RaftConfig {
        &self.config
    }
    /// The time by which the driver should call [`RaftNode::tick`] again (quinn's
    /// `poll_timeout`); ticking more often is harmless.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.role {
            Role::Leader => self.heartbeat_deadline_ms,
            _ => self.election_deadline_ms,
        }
    }

    /// Takes the commands queued since the last call, in the order they must be executed.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    // ----------------------------------------------------------------------------------------
    // Inputs.

    /// Advances time: elections on followers, heartbeats and CheckQuorum on the leader.
    pub fn tick(&mut self, now_ms: u64) {
        self.advance_clock(now_ms);
        if self.role == Role::Leader {
            self.tick_leader();
        } else if now_ms >= self.election_deadline_ms {
            self.start_pre_vote();
        }
        self.check_invariants();
    }

    /// Handles a message from another voter of this group.
    pub fn step(&mut self, now_ms: u64, from: NodeId, message: Message) {
        self.advance_clock(now_ms);
        if from == self.config.node_id || !self.config.voters.contains(&from) {
            // Bad input from the network (a misrouted envelope, a removed replica): ignored.
            return;
        }
        let term_before = self.hard_state.term;
        let commit_before = self.commit_index;
        if self.step_term(from, &message) {
            self.step_same_term(from, message);
        }
        assert!(self.hard_state.term >= term_before, "terms never decrease");
        assert!(
            self.commit_index >= commit_before,
            "the commit index never decreases"
        );
        self.check_invariants();
    }

    /// Assigns the next `index_count` indexes to a new entry on the leader. The driver writes
    /// the payload at the returned span and executes the `Persist` that follows.
    pub fn propose(&mut self, now_ms: u64, index_count: u64) -> Result<EntrySpan, ProposeError> {
        self.advance_clock(now_ms);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::TransferInProgress);
        }
        if index_count == 0 || index_count > PROPOSAL_INDEXES_MAX {
            return Err(ProposeError::InvalidSize {
                index_count,
                maximum: PROPOSAL_INDEXES_MAX,
            });
        }
        let first_index = self.log.last_index() + 1;
        let span = EntrySpan::new(first_index, first_index + index_count - 1, self.term());
        self.append_as_leader(span);
        self.check_invariants();
        Ok(span)
    }

    /// The driver made this node's log durable through `up_to_index`, whose entry had `term`.
    /// A report about entries that have since been truncated is ignored.
    pub fn persisted(&mut self, now_ms: u64, up_to_index: LogIndex, term: Term) {
        self.advance_clock(now_ms);
        if up_to_index <= self.persisted_index || self.log.term_at(up_to_index) != Some(term) {
            return;
        }
        self.persisted_index = up_to_index;
        if self.role == Role::Leader {
            self.leader_advance_commit();
            self.maybe_send_timeout_now();
        } else {
            self.follower_advance_commit();
            self.acknowledge_to_leader();
        }
        self.check_invariants();
    }

    /// Whether `peer` could take over from this leader without a wait: heard from within
    /// an election timeout and at most `max_lag` entries behind the leader's log. A transfer
    /// to a replica that is not stops proposals until it catches up or the transfer times
    /// out, so optional hand-overs (balancing) ask this first. False on a non-leader.
    pub fn follower_in_sync(&self, now_ms: u64, peer: NodeId, max_lag: LogIndex) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        self.progress.get(&peer).is_some_and(|progress| {
            now_ms.saturating_sub(progress.last_heard_ms) < self.config.election_timeout_min_ms
                && progress.match_index.saturating_add(max_lag) >= self.log.last_index()
        })
    }

    /// Asks the leader to hand over to `target` (for a clean shutdown): proposals stop, the
    /// target is caught up, then told to start an election at once.
    pub fn transfer_leadership(
        &mut self,
        now_ms: u64,
        target: NodeId,
    ) -> Result<(), TransferError> {
        self.advance_clock(now_ms);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if target == self.config.node_id {
            return Err(TransferError::TargetIsSelf);
        }
        if !self.config.voters.contains(&target) {
            return Err(TransferError::UnknownTarget { target });
        }
        self.transfer = Some(Transfer {
            target,
            deadline_ms: now_ms + self.config.election_timeout_min_ms,
        });
        self.maybe_send_timeout_now();
        if self.transfer.is_some() {
            self.replicate_to(target);
        }
        self.check_invariants();
        Ok(())
    }

    /// The index up to which a read on the leader may be served as committed, without a round
    /// trip, while the leader holds a lease from a majority.
    pub fn read_index(&self, now_ms: u64) -> Result<LogIndex, ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transfer.is_some() || self.lease_revoked {
            return Err(ReadError::TransferInProgress);
        }
        if self.commit_index < self.leader_marker_index {
            return Err(ReadError::NotCommittedInTerm);
        }
        match self.lease_expiry_ms(now_ms) {
            Some(expiry_ms) if now_ms < expiry_ms => Ok(self.commit_index),
            _ => Err(ReadError::LeaseExpired),
        }
    }

    /// When the current lease ends, if this node leads: the time a majority (counting this
    /// node at `now_ms`) last acknowledged it, plus the lease length.
    pub fn lease_expiry_ms(&self, now_ms: u64) -> Option<u64> {
        if self.role != Role::Leader {
            return None;
        }
        let mut acknowledged: Vec<u64> = vec![now_ms];
        acknowledged.extend(
            self.progress
                .values()
                .filter_map(|progress| progress.acknowledged_sent_ms),
        );
        if acknowledged.len() < self.config.quorum() {
            return None;
        }
        acknowledged.sort_unstable_by(|a, b| b.cmp(a));
        Some(acknowledged[self.config.quorum() - 1] + self.config.leader_lease_ms)
    }

    // ----------------------------------------------------------------------------------------
    // Terms and role changes.

    /// The relations every input must preserve (TigerBeetle style: checked on exit).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let last_index = self.log.last_index();
        assert!(
            self.log.last_term() <= self.hard_state.term,
            "no entry from the future"
        );
        assert!(self.persisted_index <= last_index);
        assert!(
            self.commit_index <= self.persisted_index,
            "commit only durable entries"
        );
        assert!(self.leader_marker_index <= last_index);
        match self.role {
            Role::Leader => {
                assert_eq!(self.leader, Some(self.config.node_id));
                assert_eq!(self.hard_state.voted_for, Some(self.config.node_id));
                assert_eq!(self.progress.len(), self.config.voters.len() - 1);
                if self.leader_marker_index >= self.log.start().0 {
                    assert_eq!(
                        self.log.term_at(self.leader_marker_index),
                        Some(self.term())
                    );
                }
                for progress in self.progress.values() {
                    assert!(progress.match_index < progress.next_index);
                    assert!(progress.next_index <= last_index + 1);
                }
            }
            Role::Candidate => {
                assert_eq!(self.hard_state.voted_for, Some(self.config.node_id));
                assert!(self.progress.is_empty());
            }
            Role::Follower | Role::PreCandidate => {
                assert_ne!(self.leader, Some(self.config.node_id));
                assert!(self.progress.is_empty());
                assert!(self.transfer.is_none());
            }
        }
    }

    fn advance_clock(&mut self, now_ms: u64) {
        assert!(now_ms >= self.now_ms, "the driver's clock is monotonic");
        self.now_ms = now_ms;
    }

    /// Applies the rules that depend on the message's term. Returns whether the message should
    /// be handled further.
    fn step_term(&mut self, from: NodeId, message: &Message) -> bool {
        let message_term = message.term();
        let term = self.hard_state.term;
        if message_term > term {
            match message {
                Message::RequestVote {
                    pre_vote,
                    leadership_transfer,
                    ..
                } => {
                    // Leader stickiness: while a leader is alive, ignore would-be candidates,
                    // so a node returning from a partition cannot depose it (and the lease holds).
                    if !leadership_transfer && self.hears_from_leader() {
                        return false;
                    }
                    if !pre_vote {
                        self.become_follower(message_term, None);
                    }
                }
                // A granted pre-vote carries the term the pre-candidate asked about.
                Message::VoteResponse {
                    pre_vote: true,
                    granted: true,
                    ..
                } => {}
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::TimeoutNow { .. }
                | Message::InstallSnapshot { .. } => {
                    self.become_follower(message_term, Some(from));
                }
                _ => self.become_follower(message_term, None),
            }
        } else if message_term < term {
            match message {
                // Tell a stale leader about the newer term, so it steps down.
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::InstallSnapshot { .. } => {
                    self.send(from, Message::HeartbeatResponse { term, echo_ms: 0 })
                }
                Message::RequestVote { pre_vote: true, .. } => self.send(
                    from,
                    Message::VoteResponse {
                        term,
                        granted: false,
                        pre_vote: true,
                    },
                ),
                _ => {}
            }
            return false;
        }
        true
    }

    fn step_same_term(&mut self, from: NodeId, message: Message) {
        match message {
            Message::RequestVote {
                term,
                last_index,
                last_term,
                pre_vote,
                leadership_transfer,
            } => self.handle_request_vote(
                from,
                term,
                (last_term, last_index),
                pre_vote,
                leadership_transfer,
            ),
            Message::VoteResponse {
                term,
                granted,
                pre_vote,
            } => self.handle_vote_response(from, term, granted, pre_vote),
            Message::Append {
                previous_index,
                previous_term,
                entries,
                commit_index,
                sent_ms,
                ..
            } => {
                self.follow(from, sent_ms);
                self.handle_append(from, previous_index, previous_term, entries, commit_index);
            }
            Message::AppendResponse {
                result, echo_ms, ..
            } => self.handle_append_response(from, result, echo_ms),
            Message::Heartbeat {
                commit_index,
                sent_ms,
                ..
            } => {
                self.follow(from, sent_ms);
                self.known_committed_index = self.known_committed_index.max(commit_index);
                self.follower_advance_commit();
                let term = self.term();
                self.send(
                    from,
                    Message::HeartbeatResponse {
                        term,
                        echo_ms: sent_ms,
                    },
                );
            }
            Message::HeartbeatResponse { echo_ms, .. } => {
                if let Some(progress) = self.progress.get_mut(&from) {
                    progress.last_heard_ms = self.now_ms;
                    progress.acknowledged_sent_ms =
                        progress.acknowledged_sent_ms.max(Some(echo_ms));
                }
            }
            Message::TimeoutNow { .. } => {
                self.follow(from, 0);
                self.start_election(true);
            }
            Message::InstallSnapshot {
                last_index,
                last_term,
                sent_ms,
                ..
            } => {
                self.follow(from, sent_ms);
                self.handle_install_snapshot(from, last_index, last_term);
            }
        }
    }

    fn hears_from_leader(&self) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        self.leader_heard_ms
            .is_some_and(|heard_ms| self.now_ms < heard_ms + self.config.election_timeout_min_ms)
    }

    /// Records that the leader of the current term spoke; candidates of this term give up.
    fn follow(&mut self, leader: NodeId, sent_ms: u64) {
        assert_ne!(
            self.role,
            Role::Leader,
            "two leaders in term {}",
            self.term()
        );
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term(), Some(leader));
        }
        self.leader_heard_ms = Some(self.now_ms);
        self.leader_sent_ms = self.leader_sent_ms.max(sent_ms);
        self.reset_election_deadline();
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        assert!(term >= self.hard_state.term);
        if term > self.hard_state.term {
            self.hard_state = HardState {
                term,
                voted_for: None,
            };
            self.persist_hard_state();
            self.verified_index = 0;
            self.acknowledged_index = 0;
            self.leader_sent_ms = 0;
            self.leader_heard_ms = None;
        }
        let changed = self.role != Role::Follower || self.leader != leader;
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.votes.clear();
        self.transfer = None;
        self.leader_marker_index = 0;
        if leader.is_some() {
            self.leader_heard_ms = Some(self.now_ms);
        }
        self.reset_election_deadline();
        if changed {
            self.commands.push(Command::BecameFollower { term, leader });
        }
    }

    fn reset_election_deadline(&mut self) {
        let range = self.config.election_timeout_max_ms - self.config.election_timeout_min_ms;
        let timeout = self.config.election_timeout_min_ms + self.jitter.next() % range;
        self.election_deadline_ms = self.now_ms + timeout;
    }

    fn persist_hard_state(&mut self) {
        self.commands.push(Command::Persist {
            hard_state: Some(self.hard_state),
            entries: None,
        });
    }

    fn send(&mut self, to: NodeId, message: Message) {
        debug_assert_ne!(to, self.config.node_id);
        self.commands.push(Command::Send { to, message });
    }

    fn peers(&self) -> Vec<NodeId> {
        let me = self.config.node_id;
        self.config
            .voters
            .iter()
            .copied()
            .filter(|voter| *voter != me)
            .collect()
    }

    // ----------------------------------------------------------------------------------------
    // Elections.

    fn start_pre_vote(&mut self) {
        if self.leader.is_some() {
            let term = self.term();
            self.commands
                .push(Command::BecameFollower { term, leader: None });
        }
        self.role = Role::PreCandidate;
        self.leader = None;
        self.leader_heard_ms = None;
        self.votes.clear();
        self.votes.insert(self.config.node_id, true);
        self.reset_election_deadline();
        if self.has_quorum(true) {
            self.start_election(false);
            return;
        }
        let message = Message::RequestVote {
            term: self.term() + 1,
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            pre_vote: true,
            leadership_transfer: false,
        };
        for peer in self.peers() {
            self.send(peer, message.clone());
        }
    }

    fn start_election(&mut self, leadership_transfer: bool) {
        self.hard_state = HardState {
            term: self.term() + 1,
            voted_for: Some(self.config.node_id),
        };
        self.persist_hard_state();
        self.role = Role::Candidate;
        self.leader = None;
        self.leader_heard_ms = None;
        self.verified_index = 0;
        self.acknowledged_index = 0;
        self.votes.clear();
        self.votes.insert(self.config.node_id, true);
        self.reset_election_deadline();
        if self.has_quorum(true) {
            self.become_leader();
            return;
        }
        let message = Message::RequestVote {
            term: self.term(),
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            pre_vote: false,
            leadership_transfer,
        };
        for peer in self.peers() {
            self.send(peer, message.clone());
        }
    }

    fn handle_request_vote(
        &mut self,
        from: NodeId,
        term: Term,
        candidate_last: (Term, LogIndex),
        pre_vote: bool,
        leadership_transfer: bool,
    ) {
        let our_last = (self.log.last_term(), self.log.last_index());
        // Raft §5.4.1: vote only for a log at least as up to date as ours.
        let up_to_date = candidate_last >= our_last;
        let granted = if pre_vote {
            let sticky = !leadership_transfer && self.hears_from_leader();
            term > self.term() && up_to_date && !sticky
        } else {
            let free = match self.hard_state.voted_for {
                Some(voted_for) => voted_for == from,
                None => self.leader.is_none(),
            };
            free && up_to_date
        };
        if granted && !pre_vote {
            self.hard_state.voted_for = Some(from);
            self.persist_hard_state();
            self.reset_election_deadline();
        }
        let response_term = if pre_vote && granted {
            term
        } else {
            self.term()
        };
        self.send(
            from,
            Message::VoteResponse {
                term: response_term,
                granted,
                pre_vote,
            },
        );
    }

    fn handle_vote_response(&mut self, from: NodeId, term: Term, granted: bool, pre_vote: bool) {
        let expected = match self.role {
            // A grant names the term asked about; a refusal carries the voter's (equal) term.
            Role::PreCandidate => pre_vote && (term == self.term() + 1 || !granted),
            Role::Candidate => !pre_vote && term == self.term(),
            _ => false,
        };
        if !expected {
            return;
        }
        self.votes.insert(from, granted);
        if self.has_quorum(true) {
            match self.role {
                Role::PreCandidate => self.start_election(false),
                _ => self.become_leader(),
            }
        } else if self.has_quorum(false) {
            let term = self.term();
            self.become_follower(term, None);
        }
    }

    fn has_quorum(&self, granted: bool) -> bool {
        let count = self.votes.values().filter(|vote| **vote == granted).count();
        count >= self.config.quorum()
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader = Some(self.config.node_id);
        self.votes.clear();
        self.transfer = None;
        self.lease_revoked = false;
        let next_index = self.log.last_index() + 1;
        let now_ms = self.now_ms;
        self.progress = self
            .peers()
            .into_iter()
            .map(|peer| {
                let progress = Progress {
                    next_index,
                    match_index: 0,
                    mode: ReplicationMode::Probe { in_flight: false },
                    last_heard_ms: now_ms,
                    acknowledged_sent_ms: None,
                    match_index_at_last_heartbeat: 0,
                    next_index_at_last_heartbeat: next_index,
                };
                (peer, progress)
            })
            .collect();
        self.heartbeat_deadline_ms = now_ms + self.config.heartbeat_interval_ms;
        let term = self.term();
        self.commands.push(Command::BecameLeader { term });
        self.leader_marker_index = next_index;
        self.commands.push(Command::AppendLeaderMarker {
            index: next_index,
            term,
        });
        self.append_as_leader(EntrySpan::new(next_index, next_index, term));
    }

    // ----------------------------------------------------------------------------------------
    // Leader: replication, commit, heartbeats, CheckQuorum, transfer.

    fn append_as_leader(&mut self, span: EntrySpan) {
        self.log.append(span);
        self.commands.push(Command::Persist {
            hard_state: None,
            entries: Some(span),
        });
        for peer in self.peers() {
            self.replicate_to(peer);
        }
        // A single-node group commits on its own persistence alone.
    }

    fn replicate_to(&mut self, peer: NodeId) {
        loop {
            let Some(progress) = self.progress.get(&peer) else {
                return;
            };
            let last_index = self.log.last_index();
            match progress.mode {
                ReplicationMode::Probe { in_flight: true } => return,
                ReplicationMode::Probe { in_flight: false } => {
                    self.send_append(peer);
                    return;
                }
                ReplicationMode::Replicate => {
                    // Indexes sent but not acknowledged: match_index + 1 ..= next_index - 1.
                    let in_flight = progress.next_index - progress.match_index - 1;
                    let window_full = in_flight >= REPLICATION_WINDOW_INDEXES_MAX;
                    if progress.next_index > last_index || window_full {
                        return;
                    }
                    self.send_append(peer);
                }
            }
        }
    }

    /// Sends one append from the follower's next index and advances the progress; or, when
    /// the leader no longer holds the entry before it, its log start to continue from.
    fn send_append(&mut self, peer: NodeId) {
        let progress = self.progress.get(&peer).expect("a peer's progress");
        let next_index = progress.next_index;
        let (start_index, start_term) = self.log.start();
        if next_index <= start_index {
            let progress = self.progress.get_mut(&peer).expect("a peer's progress");
            progress.mode = ReplicationMode::Probe { in_flight: true };
            let message = Message::InstallSnapshot {
                term: self.hard_state.term,
                last_index: start_index,
                last_term: start_term,
                sent_ms: self.now_ms,
            };
            self.send(peer, message);
            return;
        }
        let previous_index = next_index - 1;
        let previous_term = self
            .log
            .term_at(previous_index)
            .expect("the next index is at most one past the leader's log");
        let entries = (next_index <= self.log.last_index()).then(|| {
            let run_end = self.log.run_end(next_index);
            let last_index = run_end.min(next_index + APPEND_INDEXES_PER_MESSAGE_MAX - 1);
            let term = self.log.term_at(next_index).expect("inside the log");
            EntrySpan::new(next_index, last_index, term)
        });
        let commit_index = self.commit_index;
        let progress = self.progress.get_mut(&peer).expect("a peer's progress");
        match progress.mode {
            ReplicationMode::Probe { .. } => {
                progress.mode = ReplicationMode::Probe { in_flight: true }
            }
            ReplicationMode::Replicate => {
                if let Some(span) = entries {
                    progress.next_index = span.last_index + 1;
                }
            }
        }
        let message = Message::Append {
            term: self.hard_state.term,
            previous_index,
            previous_term,
            entries,
            commit_index,
            sent_ms: self.now_ms,
        };
        self.send(peer, message);
    }

    fn handle_append_response(&mut self, from: NodeId, result: AppendResult, echo_ms: u64) {
        if self.role != Role::Leader {
            return;
        }
        let last_index = self.log.last_index();
        let now_ms = self.now_ms;
        let Some(progress) = self.progress.get_mut(&from) else {
            return;
        };
        progress.last_heard_ms = now_ms;
        progress.acknowledged_sent_ms = progress.acknowledged_sent_ms.max(Some(echo_ms));
        match result {
            AppendResult::Accepted { match_index } => {
                assert!(
                    match_index <= last_index,
                    "a follower cannot hold more than the leader"
                );
                if match_index > progress.match_index {
                    progress.match_index = match_index;
                }
                progress.next_index = progress.next_index.max(progress.match_index + 1);
                progress.mode = ReplicationMode::Replicate;
                self.leader_advance_commit();
                self.maybe_send_timeout_now();
            }
            AppendResult::Rejected {
                rejected_index,
                hint_index,
                hint_term,
            } => {
                let stale = match progress.mode {
                    ReplicationMode::Replicate => rejected_index <= progress.match_index,
                    ReplicationMode::Probe { .. } => rejected_index + 1 != progress.next_index,
                };
                if stale {
                    return;
                }
                let agreement = self
                    .log
                    .last_index_with_term_at_most(hint_index.min(rejected_index), hint_term);
                let progress = self.progress.get_mut(&from).expect("checked above");
                let next_index = (agreement + 1)
                    .min(rejected_index)
                    .max(progress.match_index + 1);
                progress.next_index = next_index;
                progress.mode = ReplicationMode::Probe { in_flight: false };
            }
        }
        self.replicate_to(from);
    }

    fn leader_advance_commit(&mut self) {
        let mut matches: Vec<LogIndex> = vec![self.persisted_index];
        matches.extend(self.progress.values().map(|progress| progress.match_index));
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matches[self.config.quorum() - 1];
        // Raft §5.4.2: count replicas only for entries of the current term; earlier entries
        // commit indirectly with them.
        if candidate > self.commit_index && self.log.term_at(candidate) == Some(self.term()) {
            self.set_commit_index(candidate);
        }
    }

    fn follower_advance_commit(&mut self) {
        let target = self.known_committed_index.min(self.persisted_index);
        if target > self.commit_index {
            self.set_commit_index(target);
        }
    }

    fn set_commit_index(&mut self, index: LogIndex) {
        assert!(
            index > self.commit_index,
            "the commit index never decreases"
        );
        assert!(
            index <= self.persisted_index,
            "only durable entries are committed here"
        );
        let marker_newly_committed = self.role == Role::Leader
            && self.commit_index < self.leader_marker_index
            && self.leader_marker_index <= index;
        self.commit_index = index;
        self.commands.push(Command::Commit { up_to_index: index });
        if marker_newly_committed {
            let term = self.term();
            self.commands.push(Command::ReadyForRead {
                term,
                commit_index: index,
            });
        }
    }

    fn tick_leader(&mut self) {
        let now_ms = self.now_ms;
        if !self.quorum_recently_active() {
            // CheckQuorum: a leader cut off from a majority steps down, so clients go elsewhere.
            let term = self.term();
            self.become_follower(term, None);
            return;
        }
        if self
            .transfer
            .is_some_and(|transfer| now_ms >= transfer.deadline_ms)
        {
            self.transfer = None;
        }
        if now_ms >= self.heartbeat_deadline_ms {
            self.heartbeat_deadline_ms = now_ms + self.config.heartbeat_interval_ms;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let window_start = self
            .now_ms
            .saturating_sub(self.config.election_timeout_min_ms);
        let active = self
            .progress
            .values()
            .filter(|progress| progress.last_heard_ms >= window_start)
            .count();
        active + 1 >= self.config.quorum()
    }

    fn broadcast_heartbeat(&mut self) {
        let last_index = self.log.last_index();
        for peer in self.peers() {
            let progress = self.progress.get_mut(&peer).expect("a peer's progress");
            // A lost append in a stream leaves a gap nobody reports; after a quiet heartbeat
            // interval, fall back to probing from the match index.
            let stalled = progress.mode == ReplicationMode::Replicate
                && progress.match_index == progress.match_index_at_last_heartbeat
                && progress.match_index + 1 < progress.next_index_at_last_heartbeat;
            progress.match_index_at_last_heartbeat = progress.match_index;
            progress.next_index_at_last_heartbeat = progress.next_index;
            if stalled {
                progress.next_index = progress.match_index + 1;
            }
            if stalled || matches!(progress.mode, ReplicationMode::Probe { .. }) {
                // A probe whose answer was lost is retried once per heartbeat interval.
                progress.mode = ReplicationMode::Probe { in_flight: false };
            }
            let commit_index = self.commit_index.min(progress.match_index);
            let match_index = progress.match_index;
            let message = Message::Heartbeat {
                term: self.hard_state.term,
                commit_index,
                sent_ms: self.now_ms,
            };
            self.send(peer, message);
            if match_index < last_index {
                self.replicate_to(peer);
            }
        }
    }

    fn maybe_send_timeout_now(&mut self) {
        let Some(transfer) = self.transfer else {
            return;
        };
        let caught_up = self
            .progress
            .get(&transfer.target)
            .is_some_and(|progress| progress.match_index == self.log.last_index());
        if caught_up {
            let term = self.term();
            self.lease_revoked = true;
            self.send(transfer.target, Message::TimeoutNow { term });
        }
    }

    // ----------------------------------------------------------------------------------------
    // Follower: appends.

    fn handle_append(
        &mut self,
        from: NodeId,
        previous_index: LogIndex,
        previous_term: Term,
        entries: Option<EntrySpan>,
        leader_commit_index: LogIndex,
    ) {
        // Entries through the start, and through the commit index, are committed, so every
        // leader holds them as they are here (whatever term either side has on record for
        // the start itself, which a restart may only know approximately): only what lies
        // beyond is new (etcd answers appends below its commit index the same way).
        let matched_through = self.log.start().0.max(self.commit_index);
        let (previous_index, entries) = if previous_index <= matched_through {
            let entries = entries
                .filter(|span| span.last_index > matched_through)
                .map(|span| EntrySpan::new(matched_through + 1, span.last_index, span.term));
            (matched_through, entries)
        } else {
            if self.log.term_at(previous_index) != Some(previous_term) {
                self.reject_append(from, previous_index, previous_term);
                return;
            }
            (previous_index, entries)
        };
        let verified_index = entries.map_or(previous_index, |span| span.last_index);
        if let Some(span) = entries {
            assert_eq!(
                span.first_index,
                previous_index + 1,
                "appends are contiguous"
            );
            self.append_as_follower(span);
        }
        self.verified_index = self.verified_index.max(verified_index);
        let committed_here = leader_commit_index.min(verified_index);
        self.known_committed_index = self.known_committed_index.max(committed_here);
        self.follower_advance_commit();
        // Acknowledge what is both verified and durable; the rest is acknowledged by
        // `persisted`. An append that brought nothing new is answered now, so probes progress.
        let match_index = self.verified_index.min(self.persisted_index);
        let nothing_new = self.persisted_index >= verified_index;
        if nothing_new {
            self.send_append_accepted(from, match_index);
        }
    }

    /// Writes the part of `span` this log does not hold yet, truncating a divergent suffix.
    fn append_as_follower(&mut self, span: EntrySpan) {
        assert_ne!(
            self.role,
            Role::Leader,
            "a leader never truncates or overwrites its log"
        );
        let first_missing = (span.first_index..=span.last_index.min(self.log.last_index()))
            .find(|index| self.log.term_at(*index) != Some(span.term))
            .unwrap_or(self.log.last_index().max(span.first_index - 1) + 1);
        if first_missing > span.last_index {
            return;
        }
        if first_missing <= self.log.last_index() {
            assert!(
                first_missing > self.commit_index,
                "a committed entry at {first_missing} conflicts with the leader"
            );
            self.log.truncate_from(first_missing);
            self.persisted_index = self.persisted_index.min(first_missing - 1);
            self.commands.push(Command::TruncateLogFrom {
                index: first_missing,
            });
        }
        let new_span = EntrySpan::new(first_missing, span.last_index, span.term);
        self.log.append(new_span);
        self.commands.push(Command::Persist {
            hard_state: None,
            entries: Some(new_span),
        });
    }

    fn reject_append(&mut self, from: NodeId, previous_index: LogIndex, previous_term: Term) {
        let (hint_index, hint_term) = if previous_index > self.log.last_index() {
            (self.log.last_index(), self.log.last_term())
        } else {
            let index = self
                .log
                .last_index_with_term_at_most(previous_index, previous_term);
            // 0 when nothing from the start on can agree: the leader then starts this log over.
            (index, self.log.term_at(index).unwrap_or(0))
        };
        let term = self.term();
        let echo_ms = self.leader_sent_ms;
        self.send(
            from,
            Message::AppendResponse {
                term,
                result: AppendResult::Rejected {
                    rejected_index: previous_index,
                    hint_index,
                    hint_term,
                },
                echo_ms,
            },
        );
    }

    fn send_append_accepted(&mut self, leader: NodeId, match_index: LogIndex) {
        self.acknowledged_index = self.acknowledged_index.max(match_index);
        let term = self.term();
        let echo_ms = self.leader_sent_ms;
        self.send(
            leader,
            Message::AppendResponse {
                term,
                result: AppendResult::Accepted { match_index },
                echo_ms,
            },
        );
    }

    /// The leader's log starts after `last_index`: continue from there, keeping this log if it
    /// holds that very entry, else starting over (entries through it are committed, so the log
    /// never loses anything the group needs).
    fn handle_install_snapshot(&mut self, from: NodeId, last_index: LogIndex, last_term: Term) {
        let matched_through = self.log.start().0.max(self.commit_index);
        if last_index <= matched_through || self.log.term_at(last_index) == Some(last_term) {
            // Already held (committed, or compacted here): an empty append at that point.
            return self.handle_append(from, last_index, last_term, None, 0);
        }
        assert!(
            last_index > self.commit_index,
            "a committed entry at {last_index} conflicts with the leader's log start"
        );
        self.log.reset_to(last_index, last_term);
        self.persisted_index = self.commit_index;
        self.acknowledged_index = self.acknowledged_index.min(self.commit_index);
        self.verified_index = last_index;
        self.known_committed_index = self.known_committed_index.max(last_index);
        self.commands.push(Command::ResetLog {
            index: last_index,
            term: last_term,
        });
    }

    /// Retention deleted the log through `index`, which is committed: forget those entries.
    /// A follower that needs them later is sent the new log start instead.
    pub fn compact(&mut self, now_ms: u64, index: LogIndex) {
        self.advance_clock(now_ms);
        assert!(
            index <= self.commit_index,
            "only committed entries are deleted (at {index}, committed {})",
            self.commit_index
        );
        self.log.compact_through(index);
        self.check_invariants();
    }

    /// After a sync, tells the leader about newly durable entries it sent.
    fn acknowledge_to_leader(&mut self) {
        let Some(leader) = self.leader else {
            return;
        };
        let match_index = self.verified_index.min(self.persisted_index);
        if match_index > self.acknowledged_index {
            self.send_append_accepted(leader, match_index);
        }
    }
}
