//! Timing and sizing of one Raft group, with the relationships between limits asserted.

use super::types::NodeId;

/// Followers wait at least this long without hearing from a leader before asking for votes.
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 1_000;
/// The randomized election timeout is drawn from `[min, max)`; a range as wide as the minimum
/// makes split votes rare (Raft §5.2 suggests 150–300 ms for the same reason).
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 2_000;
/// How often a leader heartbeats each follower. Several heartbeats fit in one election timeout
/// so that a dropped message or two does not start an election.
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
/// How long a majority's acknowledgement lets the leader serve reads without a round trip.
/// See [`CLOCK_DRIFT_PERCENT_MAX`] for why it is shorter than the election timeout.
pub const LEADER_LEASE_MS: u64 = 800;
/// The lease is safe as long as no two clocks run apart by more than this rate (parts per
/// hundred) over one election timeout: a follower measures its stickiness window on its own
/// clock and the leader measures its lease on its own, so the lease must end before the
/// fastest follower could believe the window is over.
pub const CLOCK_DRIFT_PERCENT_MAX: u64 = 10;
/// One proposal (one record batch or metadata batch) covers at most this many indexes.
pub const PROPOSAL_INDEXES_MAX: u64 = 1 << 20;
/// One append message covers at most this many indexes; the driver may cap bytes further by
/// splitting on its own batch boundaries before it proposes.
pub const APPEND_INDEXES_PER_MESSAGE_MAX: u64 = 1 << 16;
/// A leader streams at most this many indexes past a follower's acknowledged match index, so a
/// slow follower bounds the memory held in flight.
pub const REPLICATION_WINDOW_INDEXES_MAX: u64 = 1 << 18;

const _: () = assert!(HEARTBEAT_INTERVAL_MS * 3 <= ELECTION_TIMEOUT_MIN_MS);
const _: () = assert!(ELECTION_TIMEOUT_MIN_MS < ELECTION_TIMEOUT_MAX_MS);
const _: () = assert!(
    LEADER_LEASE_MS * (100 + CLOCK_DRIFT_PERCENT_MAX)
        < ELECTION_TIMEOUT_MIN_MS * (100 - CLOCK_DRIFT_PERCENT_MAX)
);
const _: () = assert!(APPEND_INDEXES_PER_MESSAGE_MAX <= REPLICATION_WINDOW_INDEXES_MAX);

/// The configuration of one node in one group. Membership is fixed: `voters` never changes
/// during the group's life (joint consensus is not implemented).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    pub node_id: NodeId,
    /// Every voter, including this node.
    pub voters: Vec<NodeId>,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub leader_lease_ms: u64,
    /// Seeds the election-timeout jitter. The driver draws it from its own random source (the
    /// simulator's seed under madsim), so the core stays a pure function of its inputs.
    pub random_seed: u64,
}

impl RaftConfig {
    pub fn new(node_id: NodeId, voters: Vec<NodeId>, random_seed: u64) -> Self {
        RaftConfig {
            node_id,
            voters,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            leader_lease_ms: LEADER_LEASE_MS,
            random_seed,
        }
    }

    /// Panics on a configuration that would break safety or liveness: a programming error.
    pub fn validate(&self) {
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), self.voters.len(), "voters are distinct");
        assert!(self.voters.contains(&self.node_id), "this node is a voter");
        assert!(self.election_timeout_min_ms < self.election_timeout_max_ms);
        assert!(self.heartbeat_interval_ms * 3 <= self.election_timeout_min_ms);
        assert!(
            self.leader_lease_ms * (100 + CLOCK_DRIFT_PERCENT_MAX)
                < self.election_timeout_min_ms * (100 - CLOCK_DRIFT_PERCENT_MAX),
            "the lease must expire before a follower may vote for someone else"
        );
    }

    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}
