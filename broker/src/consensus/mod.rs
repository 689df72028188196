//! The Raft core: a sans-IO state machine used twice, for the metadata quorum (KRaft-like) and
//! for every partition's data log (Redpanda-like). See `docs/replication.md` for the design.
//!
//! # A short tutorial
//!
//! A [`RaftNode`] is one node's view of one Raft group. It never reads a clock, draws a random
//! number, or touches a disk or socket: the driver hands it time (`now_ms`, monotonic) and
//! inputs, and executes the [`Command`]s it returns, in order.
//!
//! ```text
//!            tick(now) ─┐     step(now, from, message) ─┐     propose(now, n) ─┐
//!                       ▼                               ▼                      ▼
//!                  ┌──────────────────────── RaftNode ─────────────────────────────┐
//!                  │ term, vote, role · LogTerms: (term, first index) runs only    │
//!                  │ per-follower progress · commit index · lease                  │
//!                  └──────────────────────────────┬────────────────────────────────┘
//!                                take_commands()  ▼   in order:
//!   TruncateLogFrom / AppendLeaderMarker / Persist ──► driver's log + sync ──► persisted(i, t)
//!                                           Send ──► (only after earlier Persists are durable)
//!                                                    driver attaches payloads for the span
//!             Commit / BecameLeader / ReadyForRead / BecameFollower ──► apply, high watermark
//! ```
//!
//! The core owns no payload bytes. It knows, per index, only the term ([`LogTerms`]); an append
//! names an [`EntrySpan`] and the driver reads the bytes from its own log when it sends.
//!
//! ```
//! use skiff::consensus::{Command, RaftConfig, RaftNode};
//!
//! // A one-node group elects itself on its first election timeout.
//! let mut node = RaftNode::new(RaftConfig::new(1, vec![1], 7), 0);
//! node.tick(10_000);
//! let commands = node.take_commands();
//! assert!(commands.contains(&Command::BecameLeader { term: 1 }));
//! // The leader's marker entry is at index 1; once durable it commits.
//! node.persisted(10_001, 1, 1);
//! assert_eq!(
//!     node.take_commands(),
//!     vec![
//!         Command::Commit { up_to_index: 1 },
//!         Command::ReadyForRead { term: 1, commit_index: 1 },
//!     ]
//! );
//! // A proposal of a 5-record batch takes indexes 2..=6 (Kafka offsets 1..=5).
//! let span = node.propose(10_002, 5).unwrap();
//! assert_eq!((span.first_index, span.last_index), (2, 6));
//! ```
//!
//! Many groups between the same brokers go through a [`GroupSet`], which coalesces their
//! messages into one [`Envelope`] per destination per flush.
//!
//! Not implemented: membership changes (voters are fixed per group), snapshots / installing a
//! follower whose next entry was deleted by retention, learners (observers).

mod config;
mod group_set;
mod log_terms;
mod node;
mod ordering;
mod types;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod node_tests;

pub use config::{
    RaftConfig, APPEND_INDEXES_PER_MESSAGE_MAX, CLOCK_DRIFT_PERCENT_MAX, ELECTION_TIMEOUT_MAX_MS,
    ELECTION_TIMEOUT_MIN_MS, HEARTBEAT_INTERVAL_MS, LEADER_LEASE_MS, PROPOSAL_INDEXES_MAX,
    REPLICATION_WINDOW_INDEXES_MAX,
};
pub use group_set::{Envelope, GroupSet, GroupSetOutput};
pub use log_terms::{LogTerms, TermRun};
pub use node::{RaftNode, Role};
pub use ordering::OrderingChecker;
pub use types::{
    AppendResult, Command, EntrySpan, GroupId, HardState, LogIndex, Message, NodeId, ProposeError,
    ReadError, Term, TransferError,
};
