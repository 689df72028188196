//! The values that cross the boundary of the Raft core: identifiers, messages between nodes,
//! and the commands the core asks its driver to execute.
//!
//! Nothing here owns payload bytes. An [`EntrySpan`] names a run of log indexes that share one
//! term; the driver keeps the bytes (record batches for a partition, metadata records for the
//! controller) and attaches them to an [`Message::Append`] when it puts the message on the wire.

use std::fmt;

/// A broker (node) in the cluster; the same identifier in every Raft group the broker serves.
pub type NodeId = u64;

/// One Raft group: the metadata quorum, or one partition's replica set.
pub type GroupId = u64;

/// A Raft term. For a partition log this is Kafka's partition leader epoch.
pub type Term = u64;

/// A position in the replicated log. Index 0 means "before the first entry" and always has term 0.
/// For a partition log, index `i` holds Kafka offset `i - 1`, so the commit index equals the high
/// watermark (the first offset a consumer cannot yet read).
pub type LogIndex = u64;

/// A run of consecutive log indexes written in one term: the unit the core reasons about
/// instead of entry payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntrySpan {
    pub first_index: LogIndex,
    /// Inclusive.
    pub last_index: LogIndex,
    pub term: Term,
}

impl EntrySpan {
    pub fn new(first_index: LogIndex, last_index: LogIndex, term: Term) -> Self {
        assert!(first_index >= 1, "index 0 is the empty-log sentinel");
        assert!(first_index <= last_index, "a span holds at least one index");
        assert!(term >= 1, "term 0 belongs to the sentinel only");
        EntrySpan {
            first_index,
            last_index,
            term,
        }
    }

    pub fn index_count(&self) -> u64 {
        self.last_index - self.first_index + 1
    }
}

/// The state that must survive a crash besides the log itself (Raft figure 2: currentTerm,
/// votedFor). The commit index is not persisted: a restarted node relearns it from the leader.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub voted_for: Option<NodeId>,
}

/// How a follower answers an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResult {
    /// The follower's log matches the leader's through `match_index`, and those entries are
    /// durable on the follower.
    Accepted { match_index: LogIndex },
    /// The entry at `rejected_index` (the append's `previous_index`) did not match. The hint is
    /// the follower's best guess for where the logs agree (etcd's fast backtracking): the largest
    /// index at or below `rejected_index` whose term is at most the leader's `previous_term`,
    /// or the follower's last index when its log is shorter.
    Rejected {
        rejected_index: LogIndex,
        hint_index: LogIndex,
        hint_term: Term,
    },
}

/// A message between two nodes of one Raft group. The group id travels beside it in an
/// [`crate::consensus::Envelope`]; the sender is known from the envelope too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request for a vote, or with `pre_vote` a question "would you vote for me in `term`?"
    /// that changes no state on the receiver (Raft thesis §9.6).
    RequestVote {
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        pre_vote: bool,
        /// Set when the old leader asked for this election (TimeoutNow): voters then ignore
        /// their leader stickiness, because the leader itself is stepping aside.
        leadership_transfer: bool,
    },
    VoteResponse {
        term: Term,
        granted: bool,
        pre_vote: bool,
    },
    /// Log replication. The payloads for `entries` are attached by the driver from its log.
    Append {
        term: Term,
        previous_index: LogIndex,
        previous_term: Term,
        entries: Option<EntrySpan>,
        commit_index: LogIndex,
        /// The leader's clock when it sent this; echoed back so the leader can date its lease.
        sent_ms: u64,
    },
    AppendResponse {
        term: Term,
        result: AppendResult,
        echo_ms: u64,
    },
    /// Keeps followers from starting elections and renews the leader's lease. The commit index
    /// is capped at what the follower is known to hold, as in raft-rs.
    Heartbeat {
        term: Term,
        commit_index: LogIndex,
        sent_ms: u64,
    },
    HeartbeatResponse {
        term: Term,
        echo_ms: u64,
    },
    /// "Start an election now": the last step of a leadership transfer (Raft thesis §3.10).
    TimeoutNow {
        term: Term,
    },
    /// The leader no longer holds the entries this follower needs next (retention deleted
    /// them): the follower's log must continue after `last_index` of `last_term`, the leader's
    /// log start. Entries through it are committed, so the follower may drop everything it
    /// holds that disagrees and start over there (Raft's InstallSnapshot with an empty state
    /// machine: a partition log's "state" is its entries). Answered by an `AppendResponse`.
    InstallSnapshot {
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        sent_ms: u64,
    },
}

impl Message {
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::InstallSnapshot { term, .. } => *term,
        }
    }
}

/// What the core asks its driver to do, in order.
///
/// The ordering contract (raft-rs's `Ready`): the driver executes commands in the order given,
/// and every [`Command::Persist`] must be durable before any later [`Command::Send`] is put on
/// the wire. A driver may batch (write everything, sync once, then send everything), but it may
/// never send first. A vote granted before the vote was durable could be granted twice after a
/// crash; an entry acknowledged before it was durable could be counted towards a commit and lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Remove every entry at `index` and above. Only followers do this, and never at or below
    /// their commit index.
    TruncateLogFrom {
        index: LogIndex,
    },
    /// Replace the whole log by an empty one whose next entry is `index + 1` (the leader's log
    /// start, whose previous entry had `term`). When that is durable, call
    /// `persisted(index, term)`. Only followers do this, answering an `InstallSnapshot`.
    ResetLog {
        index: LogIndex,
        term: Term,
    },
    /// A new leader's first entry, written in its own term so that earlier entries can commit
    /// (Raft §5.4.2). The metadata quorum writes KRaft's LeaderChangeMessage control record; a
    /// partition writes a control batch. It occupies exactly one index.
    AppendLeaderMarker {
        index: LogIndex,
        term: Term,
    },
    /// Make durable the hard state, if any, and the log through `entries.last_index`, if any.
    /// Entries come from the proposal that returned this span, from the [`Message::Append`]
    /// just stepped, or from the preceding [`Command::AppendLeaderMarker`]. When the entries
    /// are durable, call `persisted(entries.last_index, entries.term)`.
    Persist {
        hard_state: Option<HardState>,
        entries: Option<EntrySpan>,
    },
    Send {
        to: NodeId,
        message: Message,
    },
    /// Entries through `up_to_index` are committed: apply them, or for a partition advance the
    /// high watermark and complete acks=-1 produce requests. Never decreases.
    Commit {
        up_to_index: LogIndex,
    },
    /// This node now leads `term`: accept proposals (and produce requests) after this.
    BecameLeader {
        term: Term,
    },
    /// The leader's own first entry is committed, so its commit index is now the group's:
    /// reads may be served through [`crate::consensus::RaftNode::read_index`] while the lease
    /// holds (the metadata controller starts answering, a partition's high watermark is exact).
    ReadyForRead {
        term: Term,
        commit_index: LogIndex,
    },
    /// This node follows `leader` (unknown while an election is going on) in `term`: redirect
    /// clients, answer produce requests with NOT_LEADER_OR_FOLLOWER.
    BecameFollower {
        term: Term,
        leader: Option<NodeId>,
    },
}

impl fmt::Display for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::TruncateLogFrom { index } => write!(formatter, "truncate from {index}"),
            Command::ResetLog { index, term } => {
                write!(
                    formatter,
                    "reset the log to start after {index} of term {term}"
                )
            }
            Command::AppendLeaderMarker { index, term } => {
                write!(formatter, "append leader marker at {index} in term {term}")
            }
            Command::Persist {
                hard_state,
                entries,
            } => {
                write!(formatter, "persist")?;
                if let Some(state) = hard_state {
                    write!(formatter, " term {} vote {:?}", state.term, state.voted_for)?;
                }
                if let Some(span) = entries {
                    write!(
                        formatter,
                        " entries {}..={} term {}",
                        span.first_index, span.last_index, span.term
                    )?;
                }
                Ok(())
            }
            Command::Send { to, message } => write!(formatter, "send to {to}: {message:?}"),
            Command::Commit { up_to_index } => write!(formatter, "commit through {up_to_index}"),
            Command::BecameLeader { term } => write!(formatter, "became leader of term {term}"),
            Command::ReadyForRead { term, commit_index } => {
                write!(
                    formatter,
                    "ready for reads in term {term} at {commit_index}"
                )
            }
            Command::BecameFollower { term, leader } => {
                write!(formatter, "became follower in term {term} of {leader:?}")
            }
        }
    }
}

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Kafka's NOT_LEADER_OR_FOLLOWER; `leader` is where the client should go.
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The leader is handing over; the client retries and finds the new leader.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    #[error("proposal of {index_count} indexes is outside 1..={maximum}")]
    InvalidSize { index_count: u64, maximum: u64 },
}

/// Why a lease read was refused; the caller falls back to NOT_LEADER_OR_FOLLOWER or retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// No majority has acknowledged this leader recently enough.
    #[error("leader lease expired")]
    LeaseExpired,
    /// A new leader does not know the commit index until its own first entry commits.
    #[error("leader has not yet committed an entry in its term")]
    NotCommittedInTerm,
    #[error("leadership transfer in progress")]
    TransferInProgress,
}

/// Why a leadership transfer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    #[error("not the leader")]
    NotLeader,
    #[error("node {target} is not a voter of this group")]
    UnknownTarget { target: NodeId },
    #[error("cannot transfer leadership to itself")]
    TargetIsSelf,
}
