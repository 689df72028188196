//! The classic consumer group coordinator and the committed-offsets store.
//!
//! A sans-IO state machine in the manner of Kafka's `GroupCoordinator`: the driver hands
//! in decoded requests (with the negotiated API version and `now_ms`, monotonic
//! milliseconds), and gets back response structs to encode at that version.
//!
//! ```text
//!   JoinGroup / SyncGroup ──► GroupCoordinator ──► Vec<GroupOutput>  (deferred responses,
//!   Heartbeat / LeaveGroup ─►        │                each tagged with the ReplyToken the
//!   tick(now_ms) ───────────►        │                driver gave the waiting request)
//!                                    │
//!   OffsetCommit ─► prepare_offset_commit ─► PreparedCommit { response, records }
//!                       driver appends records to __consumer_offsets and syncs,
//!                   ◄── apply_offset_commit(records), then sends the response
//!   start-up ─────► load_offset_records(replayed records)
//!   periodically ─► expire_offsets ─► tombstones the driver appends to __consumer_offsets
//!   DeleteGroups, OffsetDelete ─► applied at once ─► tombstones the driver makes durable
//!                                 before it sends the response
//! ```
//!
//! JoinGroup and SyncGroup responses may be deferred until the rebalance progresses, so
//! they come back as `GroupOutput`s from whichever call completes them (possibly `tick`).
//! Every `ReplyToken` handed in is answered exactly once. The driver calls `tick` no
//! later than `next_deadline_ms()`. Group membership itself is not persisted: after a
//! restart members get UNKNOWN_MEMBER_ID and rejoin, while committed offsets survive.
//!
//! Group states follow Kafka:
//!
//! ```text
//!   Empty ──join──► PreparingRebalance ──all rejoined / timeout──► CompletingRebalance
//!     ▲                 ▲      │ (no members left)                       │ leader SyncGroup
//!     └─────────────────┼──────┘                                         ▼
//!                       └────────── join / leave / session expiry ─── Stable
//! ```

mod coordinator;
mod error;
mod group_metadata;
mod offset_record;
mod offsets;
mod subscription;

pub use coordinator::{GroupCoordinator, PreparedCommit};
pub use error::GroupError;
pub use group_metadata::GroupState;
pub use offset_record::{OffsetRecord, OffsetRecordError, OFFSET_RECORD_FORMAT_VERSION};

use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};

/// The driver's handle for a request waiting for its response.
pub type ReplyToken = u64;

/// A response the coordinator completes, possibly long after its request arrived.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupOutput {
    /// Answer the JoinGroup request registered under this token.
    JoinResponse(ReplyToken, JoinGroupResponse),
    /// Answer the SyncGroup request registered under this token.
    SyncResponse(ReplyToken, SyncGroupResponse),
}

impl GroupOutput {
    pub fn token(&self) -> ReplyToken {
        match self {
            GroupOutput::JoinResponse(token, _) | GroupOutput::SyncResponse(token, _) => *token,
        }
    }
}

/// The most groups the coordinator holds (with members or committed offsets).
pub const GROUPS_MAX: usize = 100_000;
/// The most members (including members that still have to complete the two-step join)
/// one group may have; `group.max.size` may lower it.
pub const GROUP_MEMBERS_MAX: usize = 1_000;
/// The longest group id, in bytes.
pub const GROUP_ID_BYTES_MAX: usize = 1_024;
/// The longest topic name Kafka allows, in bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// The longest group.instance.id, protocol type or protocol name, in bytes.
pub const GROUP_NAME_FIELD_BYTES_MAX: usize = 1_024;
/// The longest client id kept in a member id, in bytes; longer ones are cut, since the
/// member id only needs to be unique and readable.
pub const MEMBER_ID_CLIENT_ID_BYTES_MAX: usize = 256;
/// The most protocols one member may offer.
pub const MEMBER_PROTOCOLS_MAX: usize = 32;
/// The most protocol metadata one member may send in one JoinGroup, in bytes.
pub const MEMBER_METADATA_BYTES_MAX: usize = 1_048_576;
/// The largest assignment the leader may give one member, in bytes.
pub const MEMBER_ASSIGNMENT_BYTES_MAX: usize = 1_048_576;
/// `offset.metadata.max.bytes`: the hard ceiling; the configured value may be lower.
pub const OFFSET_METADATA_BYTES_MAX: usize = 4_096;
/// The most partitions one group may hold committed offsets for.
pub const GROUP_COMMITTED_PARTITIONS_MAX: usize = 100_000;
/// `group.initial.rebalance.delay.ms` default.
pub const INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;
/// `group.min.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MIN_DEFAULT: u64 = 6_000;
/// `group.max.session.timeout.ms` default.
pub const SESSION_TIMEOUT_MS_MAX_DEFAULT: u64 = 1_800_000;
/// `offsets.retention.minutes` default (7 days), in milliseconds.
pub const OFFSETS_RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// The most groups one expiry pass deletes, so that its tombstones stay one modest append;
/// the rest go in the next pass.
pub const OFFSETS_EXPIRY_GROUPS_MAX: usize = 1_000;
/// Longer rebalance timeouts (clients often send `i32::MAX`) are cut to this, so that a
/// rebalance with a vanished member still ends within a day.
pub const REBALANCE_TIMEOUT_MS_MAX: u64 = 86_400_000;

const _: () = assert!(SESSION_TIMEOUT_MS_MIN_DEFAULT <= SESSION_TIMEOUT_MS_MAX_DEFAULT);
const _: () = assert!(SESSION_TIMEOUT_MS_MAX_DEFAULT <= REBALANCE_TIMEOUT_MS_MAX);
const _: () = assert!(GROUP_MEMBERS_MAX <= GROUPS_MAX);

/// Tunables of the coordinator, named after the Kafka broker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members, so a starting fleet does not rebalance once per member.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub session_timeout_ms_min: u64,
    /// `group.max.session.timeout.ms`.
    pub session_timeout_ms_max: u64,
    /// `group.max.size`, at most `GROUP_MEMBERS_MAX`.
    pub group_members_max: usize,
    /// `offset.metadata.max.bytes`, at most `OFFSET_METADATA_BYTES_MAX`.
    pub offset_metadata_bytes_max: usize,
    /// `offsets.retention.minutes`: the committed offsets of a group that has had no members
    /// for this long, and no commit for this long, are deleted.
    pub offsets_retention_ms: u64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            session_timeout_ms_min: SESSION_TIMEOUT_MS_MIN_DEFAULT,
            session_timeout_ms_max: SESSION_TIMEOUT_MS_MAX_DEFAULT,
            group_members_max: GROUP_MEMBERS_MAX,
            offset_metadata_bytes_max: OFFSET_METADATA_BYTES_MAX,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
        }
    }
}

impl GroupConfig {
    fn assert_valid(&self) {
        assert!(self.session_timeout_ms_min <= self.session_timeout_ms_max);
        assert!(self.session_timeout_ms_max <= REBALANCE_TIMEOUT_MS_MAX);
        assert!(self.initial_rebalance_delay_ms <= REBALANCE_TIMEOUT_MS_MAX);
        assert!(self.group_members_max >= 1 && self.group_members_max <= GROUP_MEMBERS_MAX);
        assert!(self.offset_metadata_bytes_max <= OFFSET_METADATA_BYTES_MAX);
        assert!(self.offsets_retention_ms > 0);
    }
}

#[cfg(test)]
mod tests;
