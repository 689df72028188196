//! Worlds: everything a run does, drawn from its seed (swarm testing).
//!
//! A [`World`] is plain data: the cluster's settings, the workload, the fault mix and the
//! exact fault schedule of the safety phase. [`World::draw`] derives all of it from one seed,
//! first drawing a [`FaultProfile`] so that different seeds explore different kinds of world
//! (no faults at all, heavy partitions, a slow disk, many crashes...), the way TigerBeetle's
//! VOPR draws its fault probabilities per seed rather than using one fixed mix. A scenario
//! file (see `scenario.rs`) can then pin any part of it.
//!
//! Every world draws a small `offsets.topic.segment.bytes` and a short
//! `log.retention.check.interval.ms`, so the group coordinator snapshots the offsets log and
//! every broker deletes its superseded segments many times a run, under the run's faults.
//!
//! # Fault model
//!
//! The faults a world may hold, and the rules that keep a correct broker from losing an
//! acknowledged record under them (so that any loss the checker finds is a bug):
//!
//! - **Machine crash** (`crash` with `kind = "machine-crash"`): the broker node is killed and
//!   its simulated disk loses what was not synced (by a [`DiskCrashMode`]). Only drawn with
//!   the `sync` flush policy, under which the broker acknowledges only synced records. With
//!   the `interval` policy a machine crash may legitimately lose acknowledged records, so it
//!   is never drawn there.
//! - **Process crash** (`process-crash`): the node is killed, the page cache survives (the
//!   disk is not crashed). **Clean restart** (`clean-restart`): the broker shuts down
//!   cleanly, then the node restarts.
//! - **Pause**: the node stops running for a while (a long GC pause, a frozen VM).
//! - **Client partition**: the links between one client node and one broker node are
//!   clogged both ways. madsim delays clogged packets rather than dropping them, so clients
//!   rely on their request timeouts.
//! - **Network weather**: packet loss (TCP retransmits with a backoff, so this is delay)
//!   and latency spikes on every link, for a window.
//! - **Clock skew and jumps**: a broker's wall clock is set ahead or behind by up to
//!   [`CLOCK_SKEW_MS_MAX`]; its monotonic clock is untouched. The bound keeps time-based
//!   retention and segment rolling (days) out of reach, since retention is not modelled by
//!   the checker yet.
//! - **Disk faults**: the rates of [`skiff::io::SimDiskFaults`], always with
//!   [`skiff::io::FaultBudget::protecting_synced_data`], for the whole safety phase. With the
//!   `interval` policy, failed syncs are never drawn: a failed sync may drop acknowledged
//!   pages there.
//!
//! Node-level faults of one broker (crashes, pauses) lie on one timeline and never overlap;
//! so do the partitions of one client, and the network weather windows.
//!
//! # Clusters
//!
//! A world of more than one broker runs them as one cluster (`controller.quorum.voters` lists
//! every broker; topics get the default replication factor, so every partition has a replica
//! on every broker of a three-broker world and on three of a five-broker one, and each
//! partition is its own Raft group over its replicas).
//! Besides the faults above, drawn per broker, a cluster world draws a timeline of its own:
//!
//! - **Leader crash** and **leader pause** (`leader-crash`, `leader-pause`): the target is
//!   resolved when the fault starts, as the broker that leads a given partition then (the
//!   metadata quorum's leader for `__cluster_metadata`, the group coordinator for
//!   `__consumer_offsets` partition 0). A paused leader is a zombie: the others elect a new
//!   leader while it sleeps, and it wakes believing it still leads.
//! - **Broker partitions** (`broker-partition`): the links between a set of brokers and the
//!   others (all of them, or a named few: a single cut link makes a non-transitive partition)
//!   are clogged, both ways or one way. **Leader partition** (`leader-partition`): the same
//!   for the current leader of a partition against every other broker. Clients still reach
//!   every broker. madsim 0.2 clogs a link by holding its TCP segments, not by dropping them:
//!   a connection stalls, and its queued frames arrive, in order, once the link is unclogged
//!   and its retry backoff (at most ten seconds) has passed. Raft tolerates the late,
//!   stale messages; the liveness phase of a cluster world is long enough to cover the
//!   backoff ([`CLUSTER_LIVENESS_PHASE_MS_MIN`]).
//! - **Rolling restart** (`rolling-restart`): every listed broker goes down and comes back, one
//!   after the other.
//! - **Disk faults on a minority** (`disk_fault_brokers`): the disk fault rates apply to those
//!   brokers only, so a quorum always keeps a healthy disk.
//!
//! Every partition's replicas sync before they acknowledge, whatever the flush policy, so a
//! machine crash of any number of brokers loses nothing committed; the interval policy still
//! never draws one, to keep one rule for every world.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The brokers a world may hold.
pub const BROKERS_MAX: u32 = 5;
/// The broker counts the swarm draws, each with its weight (out of the weights' sum).
pub const BROKER_COUNT_WEIGHTS: [(u32, u32); 3] = [(1, 10), (3, 7), (5, 3)];
/// The shortest liveness phase of a cluster world, in simulated milliseconds: a link that was
/// clogged may hold its frames for up to ten seconds of madsim's retry backoff after the heal,
/// and an election follows.
pub const CLUSTER_LIVENESS_PHASE_MS_MIN: u64 = 20_000;
/// The shortest drawn safety phase, in simulated milliseconds.
pub const SAFETY_PHASE_MS_MIN: u64 = 10_000;
/// The longest drawn safety phase, in simulated milliseconds.
pub const SAFETY_PHASE_MS_MAX: u64 = 30_000;
/// The shortest drawn liveness phase, in simulated milliseconds.
pub const LIVENESS_PHASE_MS_MIN: u64 = 10_000;
/// The longest drawn liveness phase, in simulated milliseconds.
pub const LIVENESS_PHASE_MS_MAX: u64 = 20_000;
/// The time the final drain may take, in simulated milliseconds.
pub const DRAIN_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// The time faults stay away from the start and the end of the safety phase, so that the
/// workload starts cleanly and a fault never outlives its phase.
pub const FAULT_MARGIN_MS: u64 = 1_000;
/// The smallest drawn segment size, in bytes: small, so segments roll during a run.
pub const SEGMENT_BYTES_MIN_DRAWN: u64 = 4 * 1024;
/// The largest drawn segment size, in bytes.
pub const SEGMENT_BYTES_MAX_DRAWN: u64 = 256 * 1024;
/// The most topics a workload creates.
pub const TOPICS_MAX: usize = 2;
/// The most partitions of one topic.
pub const PARTITIONS_PER_TOPIC_MAX: u32 = 4;
/// The most producers of a workload.
pub const PRODUCERS_MAX: usize = 3;
/// The most consumers of a workload (besides the final drain).
pub const CONSUMERS_MAX: usize = 2;
/// The largest drawn record payload, in bytes.
pub const RECORD_BYTES_MAX: u32 = 512;
/// The smallest record payload: it must hold the decimal value.
pub const RECORD_BYTES_MIN: u32 = 20;
/// The shortest pause between two sends of one producer, in milliseconds.
pub const SEND_INTERVAL_MS_MIN: u64 = 20;
/// The longest pause between two sends of one producer, in milliseconds.
pub const SEND_INTERVAL_MS_MAX: u64 = 300;
/// The largest wall-clock skew drawn for a node, in milliseconds (either direction).
pub const CLOCK_SKEW_MS_MAX: i64 = 60 * 60 * 1000;
/// The highest packet loss rate drawn: TCP retransmits lost packets with a backoff of up to
/// ten seconds, so a higher rate is a partition in all but name.
pub const PACKET_LOSS_RATE_MAX: f64 = 0.2;
/// The range of the slow-disk profile's per-operation probability of slow latency. The
/// broker sleeps for the whole disk's accrued latency after each sync, so above about a
/// fifth the latency accrues faster than simulated time passes and the backlog outlasts the
/// liveness phase (a modelling limit, not a broker bug; see the final report).
pub const SLOW_OPERATION_PROBABILITY_MIN: f64 = 0.01;
pub const SLOW_OPERATION_PROBABILITY_MAX: f64 = 0.2;
/// The flush interval range of the `interval` policy, in milliseconds.
pub const FLUSH_INTERVAL_MS_MIN: u64 = 50;
pub const FLUSH_INTERVAL_MS_MAX: u64 = 2_000;
/// The group's initial rebalance delay in simulated worlds: short, to keep runs fast.
pub const GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 200;
/// The share of drawn worlds that change a topic's `segment.bytes` during the safety phase.
pub const SETTINGS_CHANGE_PROBABILITY: f64 = 0.5;
/// The share of worlds whose brokers preallocate segments (`log.preallocate`, off by default).
pub const PREALLOCATE_PROBABILITY: f64 = 0.5;

/// The range of the drawn `offsets.topic.segment.bytes`: a few commits fill a segment, so
/// the offsets log is snapshotted and cleaned many times a run, under the run's faults.
pub const OFFSETS_SEGMENT_BYTES_MIN_DRAWN: u64 = skiff::config::SEGMENT_BYTES_MIN;
pub const OFFSETS_SEGMENT_BYTES_MAX_DRAWN: u64 = 16 * 1024;
/// The range of the drawn `log.retention.check.interval.ms`, which also paces offsets
/// snapshots and cleanup.
pub const RETENTION_CHECK_INTERVAL_MS_MIN: u64 = 100;
pub const RETENTION_CHECK_INTERVAL_MS_MAX: u64 = 3_000;

const _: () = assert!(SAFETY_PHASE_MS_MIN > 4 * FAULT_MARGIN_MS);
const _: () = assert!(SAFETY_PHASE_MS_MIN <= SAFETY_PHASE_MS_MAX);
const _: () = assert!(LIVENESS_PHASE_MS_MIN <= LIVENESS_PHASE_MS_MAX);
const _: () = assert!(CLUSTER_LIVENESS_PHASE_MS_MIN >= LIVENESS_PHASE_MS_MIN);
const _: () = assert!(SEGMENT_BYTES_MIN_DRAWN >= skiff::config::SEGMENT_BYTES_MIN);
const _: () = assert!(RECORD_BYTES_MIN <= RECORD_BYTES_MAX);
const _: () = assert!(SEND_INTERVAL_MS_MIN <= SEND_INTERVAL_MS_MAX);
const _: () = assert!(FLUSH_INTERVAL_MS_MIN <= FLUSH_INTERVAL_MS_MAX);
const _: () = assert!(OFFSETS_SEGMENT_BYTES_MIN_DRAWN <= OFFSETS_SEGMENT_BYTES_MAX_DRAWN);
const _: () = assert!(RETENTION_CHECK_INTERVAL_MS_MIN > 0);
const _: () = assert!(RETENTION_CHECK_INTERVAL_MS_MIN <= RETENTION_CHECK_INTERVAL_MS_MAX);

/// The kind of world a seed draws: the fault mix itself is part of the swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultProfile {
    /// No fault at all: the baseline every other world is compared with.
    NoFaults,
    /// A bit of everything.
    Mixed,
    /// Clients cut off from brokers often and for long.
    HeavyPartitions,
    /// Every disk operation slow.
    SlowDisk,
    /// The broker crashes and restarts over and over.
    ManyCrashes,
    /// Disk errors (EIO on sync, read and write; corruption of unsynced bytes).
    DiskFaults,
    /// Clocks skewed and jumping, packets lost and delayed.
    ClockAndNetworkChaos,
}

impl FaultProfile {
    /// Every profile, in drawing order.
    pub const ALL: [FaultProfile; 7] = [
        FaultProfile::NoFaults,
        FaultProfile::Mixed,
        FaultProfile::HeavyPartitions,
        FaultProfile::SlowDisk,
        FaultProfile::ManyCrashes,
        FaultProfile::DiskFaults,
        FaultProfile::ClockAndNetworkChaos,
    ];
}

/// When the broker makes produced data durable (mirrors `skiff::config::FlushPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FlushPolicySetting {
    /// Acknowledge after fsync.
    Sync,
    /// Acknowledge after the page cache write; fsync every `interval_ms`.
    Interval {
        /// The flush period.
        interval_ms: u64,
    },
}

impl FlushPolicySetting {
    /// The broker's configuration value.
    pub fn to_broker(self) -> skiff::config::FlushPolicy {
        match self {
            FlushPolicySetting::Sync => skiff::config::FlushPolicy::Sync,
            FlushPolicySetting::Interval { interval_ms } => {
                skiff::config::FlushPolicy::Interval { interval_ms }
            }
        }
    }

    /// Whether a machine crash may take back an acknowledged record.
    pub fn acknowledges_unsynced_data(self) -> bool {
        matches!(self, FlushPolicySetting::Interval { .. })
    }
}

/// The brokers' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// How many broker nodes; more than one form a cluster.
    pub brokers: u32,
    /// The flush policy of every broker.
    pub flush_policy: FlushPolicySetting,
    /// `log.segment.bytes`.
    pub segment_bytes: u64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `offsets.topic.segment.bytes`.
    pub offsets_segment_bytes: u64,
    /// `log.retention.check.interval.ms`: how often retention, offsets snapshots and offsets
    /// cleanup run. (Retention itself is unlimited in simulated worlds.)
    pub retention_check_interval_ms: u64,
    /// `log.preallocate`: whether partitions write their next segment's file ahead of the roll,
    /// so that crashes land on segments with zeros after their last batch.
    #[serde(default)]
    pub preallocate: bool,
}

/// One topic the workload creates before the safety phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicSettings {
    /// Its name.
    pub name: String,
    /// Its partition count.
    pub partitions: u32,
}

/// The acknowledgement level of a producer. `acks = 0` is excluded: without a response, a
/// loss cannot be told from a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcksSetting {
    /// `acks = 1`.
    Leader,
    /// `acks = -1`.
    All,
}

/// How a producer picks the partition of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionChoice {
    /// The workload picks a partition itself and says so in the send.
    Explicit,
    /// The record has a key; the client hashes it (murmur2).
    Keyed,
    /// No key, no partition: the client's round-robin partitioner picks.
    RoundRobin,
}

/// One producer process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerSettings {
    /// The topic it writes to.
    pub topic: String,
    /// `acks`.
    pub acks: AcksSetting,
    /// Whether it uses a producer id and sequence numbers (needs `acks = all`).
    pub idempotent: bool,
    /// How it picks partitions.
    pub partition_choice: PartitionChoice,
    /// The payload size of each record, in bytes.
    pub record_bytes: u32,
    /// The pause between two sends, in milliseconds.
    pub send_interval_ms: u64,
}

/// How a consumer gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsumerMode {
    /// Every partition of its topic, assigned by hand.
    Assign,
    /// A member of a consumer group subscribed to its topic.
    Subscribe,
}

/// One consumer process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSettings {
    /// The topic it reads.
    pub topic: String,
    /// Assign or subscribe.
    pub mode: ConsumerMode,
    /// The group it joins (subscribe) and commits to; assign-mode consumers never commit.
    pub group: String,
    /// Commit after every this many polls; zero: never.
    pub commit_every_polls: u32,
    /// The longest time one poll waits, in milliseconds.
    pub poll_timeout_ms: u64,
}

/// What the clients do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadSettings {
    /// Topics created before the safety phase.
    pub topics: Vec<TopicSettings>,
    /// Producer processes.
    pub producers: Vec<ProducerSettings>,
    /// Consumer processes (the final drain is extra).
    pub consumers: Vec<ConsumerSettings>,
    /// Changes to topic settings made during the safety phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings_changes: Vec<SettingsChange>,
}

/// A topic's `segment.bytes` changed while the faults run, with IncrementalAlterConfigs: in a
/// cluster the change goes through the metadata log, and every broker must end up with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsChange {
    /// Simulated milliseconds after the safety phase starts.
    pub at_ms: u64,
    /// The topic.
    pub topic: String,
    /// Its new `segment.bytes`.
    pub segment_bytes: u64,
}

/// Which pending writes a machine crash keeps (mirrors `skiff::io::sim_disk::CrashMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskCrashMode {
    /// A random prefix of the pending writes, the first dropped one possibly torn.
    KeepPrefix,
    /// Each pending write independently (reordered writeback), possibly torn.
    KeepIndependently,
    /// Nothing unsynced.
    LoseEverythingUnsynced,
}

impl DiskCrashMode {
    /// The simulated disk's crash mode.
    pub fn to_disk(self) -> skiff::io::sim_disk::CrashMode {
        match self {
            DiskCrashMode::KeepPrefix => skiff::io::sim_disk::CrashMode::KeepPrefix,
            DiskCrashMode::KeepIndependently => skiff::io::sim_disk::CrashMode::KeepIndependently,
            DiskCrashMode::LoseEverythingUnsynced => {
                skiff::io::sim_disk::CrashMode::LoseEverythingUnsynced
            }
        }
    }
}

/// How a broker goes down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CrashKind {
    /// Power loss: the process dies and the disk loses what was not synced.
    MachineCrash {
        /// What the disk keeps.
        mode: DiskCrashMode,
    },
    /// The process dies; the operating system's page cache survives.
    ProcessCrash,
    /// The broker shuts down cleanly, then starts again.
    CleanRestart,
}

/// One fault of the safety phase. Node and client numbers count from zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "kebab-case")]
pub enum Fault {
    /// A broker goes down and comes back after `down_ms`.
    Crash {
        /// The broker.
        broker: u32,
        /// How it goes down.
        kind: CrashKind,
        /// How long it stays down.
        down_ms: u64,
    },
    /// A broker node is paused for `duration_ms`.
    Pause {
        /// The broker.
        broker: u32,
        /// How long.
        duration_ms: u64,
    },
    /// The links between a client node and a broker are clogged for `duration_ms`, in one
    /// direction or both.
    ClientPartition {
        /// The client process (its node).
        client: u32,
        /// The broker.
        broker: u32,
        /// How long.
        duration_ms: u64,
        /// Which way messages stop; both unless a scenario says otherwise.
        #[serde(default)]
        direction: PartitionDirection,
    },
    /// Every link loses packets with this rate for `duration_ms`.
    PacketLoss {
        /// The loss rate, at most [`PACKET_LOSS_RATE_MAX`].
        rate: f64,
        /// How long.
        duration_ms: u64,
    },
    /// Every link's latency is drawn from `min_ms..max_ms` for `duration_ms`.
    LatencySpike {
        /// The least latency.
        min_ms: u64,
        /// The most latency.
        max_ms: u64,
        /// How long.
        duration_ms: u64,
    },
    /// A broker's wall clock jumps to `skew_ms` away from true time (until the next jump or
    /// the heal).
    ClockJump {
        /// The broker.
        broker: u32,
        /// The new skew.
        skew_ms: i64,
    },
    /// The broker leading `target` when the fault starts goes down and comes back after
    /// `down_ms` (nothing happens if no running broker leads it then).
    LeaderCrash {
        /// Whose leader.
        target: LeaderTarget,
        /// How it goes down.
        kind: CrashKind,
        /// How long it stays down.
        down_ms: u64,
    },
    /// The broker leading `target` when the fault starts is paused for `duration_ms`: a
    /// zombie leader once the others have elected another.
    LeaderPause {
        /// Whose leader.
        target: LeaderTarget,
        /// How long.
        duration_ms: u64,
    },
    /// The links between the `isolated` brokers and the `others` (every other broker when
    /// empty) are clogged for `duration_ms`, in one direction or both.
    BrokerPartition {
        /// One side.
        isolated: Vec<u32>,
        /// The other side; empty: every broker not isolated.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        others: Vec<u32>,
        /// How long.
        duration_ms: u64,
        /// Which way messages stop.
        #[serde(default)]
        direction: LinkDirection,
    },
    /// The broker leading `target` when the fault starts is cut off from every other broker
    /// for `duration_ms` (clients still reach it).
    LeaderPartition {
        /// Whose leader.
        target: LeaderTarget,
        /// How long.
        duration_ms: u64,
        /// Which way messages stop, seen from the leader.
        #[serde(default)]
        direction: LinkDirection,
    },
    /// Each broker of `brokers`, in order, goes down for `down_ms`, then the next one starts
    /// `gap_ms` after it came back.
    RollingRestart {
        /// The brokers, in restart order.
        brokers: Vec<u32>,
        /// How each goes down.
        kind: CrashKind,
        /// How long each stays down.
        down_ms: u64,
        /// The pause after a broker is back before the next goes down.
        gap_ms: u64,
    },
}

/// The partition whose current leader a leader-targeted fault hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderTarget {
    /// A workload topic, [`METADATA_TOPIC`] (the metadata quorum's leader, the active
    /// controller) or [`OFFSETS_TOPIC`] (partition 0: the group coordinator).
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

/// The metadata quorum, as a leader target.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The group offsets topic, as a leader target.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Which way a partition between brokers stops messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkDirection {
    /// Nothing passes either way.
    #[default]
    Both,
    /// The isolated side's messages are lost; it still hears the others.
    Outbound,
    /// The others' messages to the isolated side are lost; it is still heard.
    Inbound,
}

impl Fault {
    /// How long the fault lasts; zero for instantaneous ones.
    pub fn duration_ms(&self) -> u64 {
        match self {
            Fault::Crash { down_ms, .. } => *down_ms,
            Fault::Pause { duration_ms, .. }
            | Fault::ClientPartition { duration_ms, .. }
            | Fault::PacketLoss { duration_ms, .. }
            | Fault::LatencySpike { duration_ms, .. }
            | Fault::LeaderPause { duration_ms, .. }
            | Fault::BrokerPartition { duration_ms, .. }
            | Fault::LeaderPartition { duration_ms, .. } => *duration_ms,
            Fault::LeaderCrash { down_ms, .. } => *down_ms,
            Fault::RollingRestart {
                brokers,
                down_ms,
                gap_ms,
                ..
            } => brokers.len() as u64 * (down_ms + gap_ms),
            Fault::ClockJump { .. } => 0,
        }
    }
}

/// Which way a partition stops messages. A one-way partition is the nastier case: requests
/// arrive and take effect but their responses never come back (or the reverse), so a client
/// sees timeouts for writes that happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionDirection {
    /// Nothing passes either way.
    #[default]
    Both,
    /// The client's requests are lost; the broker's messages still arrive.
    ClientToBroker,
    /// The broker's responses are lost; the client's requests still arrive.
    BrokerToClient,
}

/// A fault and when it starts, in milliseconds since the safety phase began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledFault {
    /// When it starts.
    pub at_ms: u64,
    /// What it is.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Disk fault rates for the whole safety phase (see `skiff::io::SimDiskFaults`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskFaultSettings {
    /// Per sync: EIO, leaving the partition offline until a restart.
    pub sync_error_probability: f64,
    /// Per read: a transient EIO.
    pub read_error_probability: f64,
    /// Per write: a transient EIO, possibly partly applied.
    pub write_error_probability: f64,
    /// Per read: one bit flipped (unsynced bytes only).
    pub read_corruption_probability: f64,
    /// Per read: a sector becomes unreadable (unsynced bytes only).
    pub latent_sector_error_probability: f64,
    /// Per operation: slow-disk latency.
    pub slow_operation_probability: f64,
    /// Per crash: reordered writeback rather than a prefix.
    pub crash_independent_writes_probability: f64,
    /// Whether healthy latency accrues (the broker does not sleep for it yet).
    pub latency_enabled: bool,
}

impl DiskFaultSettings {
    /// A perfect disk.
    pub const fn none() -> Self {
        DiskFaultSettings {
            sync_error_probability: 0.0,
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            read_corruption_probability: 0.0,
            latent_sector_error_probability: 0.0,
            slow_operation_probability: 0.0,
            crash_independent_writes_probability: 0.0,
            latency_enabled: false,
        }
    }

    /// The simulated disk's configuration, always within the budget protecting synced data.
    pub fn to_disk(self) -> skiff::io::SimDiskFaults {
        skiff::io::SimDiskFaults {
            crash_independent_writes_probability: self.crash_independent_writes_probability,
            sync_error_probability: self.sync_error_probability,
            read_error_probability: self.read_error_probability,
            write_error_probability: self.write_error_probability,
            read_corruption_probability: self.read_corruption_probability,
            latent_sector_error_probability: self.latent_sector_error_probability,
            slow_operation_probability: self.slow_operation_probability,
            latency_enabled: self.latency_enabled,
            capacity_bytes: None,
            budget: skiff::io::FaultBudget::protecting_synced_data(),
        }
    }
}

/// How long each phase lasts, in simulated milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseSettings {
    /// Faults on; invariants checked continuously.
    pub safety_ms: u64,
    /// Faults healed; every producer must get an acknowledgement within it.
    pub liveness_ms: u64,
    /// The final drain must read every partition to its end within it.
    pub drain_timeout_ms: u64,
}

/// Everything a run does, derived from its seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// The seed everything derives from (the simulation's own randomness included).
    pub seed: u64,
    /// The kind of world.
    pub profile: FaultProfile,
    /// The brokers.
    pub cluster: ClusterSettings,
    /// The clients.
    pub workload: WorkloadSettings,
    /// Disk fault rates of the safety phase.
    pub disk_faults: DiskFaultSettings,
    /// The brokers whose disks get the fault rates; empty: every broker.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disk_fault_brokers: Vec<u32>,
    /// The faults of the safety phase, in start order.
    pub schedule: Vec<ScheduledFault>,
    /// Phase lengths.
    pub phases: PhaseSettings,
}

/// How often each kind of fault happens in a profile: mean gaps between faults in
/// milliseconds (`None`: never), and how long they last.
#[derive(Debug, Clone, Copy)]
struct Intensity {
    crash_gap_ms: Option<(u64, u64)>,
    crash_down_ms: (u64, u64),
    pause_gap_ms: Option<(u64, u64)>,
    pause_ms: (u64, u64),
    partition_gap_ms: Option<(u64, u64)>,
    partition_ms: (u64, u64),
    weather_gap_ms: Option<(u64, u64)>,
    weather_ms: (u64, u64),
    clock_gap_ms: Option<(u64, u64)>,
}

impl Intensity {
    const NONE: Intensity = Intensity {
        crash_gap_ms: None,
        crash_down_ms: (100, 2_000),
        pause_gap_ms: None,
        pause_ms: (100, 3_000),
        partition_gap_ms: None,
        partition_ms: (500, 5_000),
        weather_gap_ms: None,
        weather_ms: (500, 4_000),
        clock_gap_ms: None,
    };

    fn of(profile: FaultProfile) -> Intensity {
        match profile {
            FaultProfile::NoFaults | FaultProfile::SlowDisk | FaultProfile::DiskFaults => {
                Intensity::NONE
            }
            FaultProfile::Mixed => Intensity {
                crash_gap_ms: Some((3_000, 10_000)),
                pause_gap_ms: Some((3_000, 10_000)),
                partition_gap_ms: Some((2_000, 8_000)),
                weather_gap_ms: Some((3_000, 10_000)),
                clock_gap_ms: Some((3_000, 10_000)),
                ..Intensity::NONE
            },
            FaultProfile::HeavyPartitions => Intensity {
                partition_gap_ms: Some((200, 2_000)),
                partition_ms: (1_000, 8_000),
                ..Intensity::NONE
            },
            FaultProfile::ManyCrashes => Intensity {
                crash_gap_ms: Some((500, 3_000)),
                crash_down_ms: (50, 1_500),
                ..Intensity::NONE
            },
            FaultProfile::ClockAndNetworkChaos => Intensity {
                weather_gap_ms: Some((500, 3_000)),
                clock_gap_ms: Some((500, 3_000)),
                ..Intensity::NONE
            },
        }
    }
}

impl World {
    /// Draws a world from `seed`. Pure: the same seed always gives the same world.
    pub fn draw(seed: u64) -> World {
        World::draw_with_brokers(seed, draw_broker_count(seed))
    }

    /// Draws the world of `seed` with `brokers` brokers. The broker count comes from a random
    /// stream of its own, and a single-broker world draws exactly what it drew before clusters
    /// existed: cluster faults are drawn last, and only for clusters.
    pub fn draw_with_brokers(seed: u64, brokers: u32) -> World {
        let mut random = StdRng::seed_from_u64(seed);
        let profile = FaultProfile::ALL[random.gen_range(0..FaultProfile::ALL.len())];
        let mut cluster = draw_cluster(&mut random, profile);
        cluster.brokers = brokers;
        let workload = draw_workload(&mut random);
        let disk_faults = draw_disk_faults(&mut random, profile, cluster.flush_policy);
        let mut phases = PhaseSettings {
            safety_ms: random.gen_range(SAFETY_PHASE_MS_MIN..=SAFETY_PHASE_MS_MAX),
            liveness_ms: random.gen_range(LIVENESS_PHASE_MS_MIN..=LIVENESS_PHASE_MS_MAX),
            drain_timeout_ms: DRAIN_TIMEOUT_MS_DEFAULT,
        };
        let clients = (workload.producers.len() + workload.consumers.len()) as u32;
        let mut schedule = draw_schedule(&mut random, profile, &cluster, clients, phases.safety_ms);
        let mut disk_fault_brokers = Vec::new();
        if brokers > 1 {
            phases.liveness_ms = phases.liveness_ms.max(CLUSTER_LIVENESS_PHASE_MS_MIN);
            disk_fault_brokers = draw_minority(&mut random, brokers);
            schedule.extend(draw_cluster_schedule(
                &mut random,
                profile,
                &cluster,
                &workload,
                phases.safety_ms,
            ));
            schedule.sort_by_key(|scheduled| scheduled.at_ms);
        }
        cluster.offsets_segment_bytes =
            random.gen_range(OFFSETS_SEGMENT_BYTES_MIN_DRAWN..=OFFSETS_SEGMENT_BYTES_MAX_DRAWN);
        cluster.retention_check_interval_ms =
            random.gen_range(RETENTION_CHECK_INTERVAL_MS_MIN..=RETENTION_CHECK_INTERVAL_MS_MAX);
        // Drawn last, so that every other draw of a seed is what it was before.
        let mut workload = workload;
        if random.gen_bool(SETTINGS_CHANGE_PROBABILITY) {
            workload.settings_changes.push(SettingsChange {
                at_ms: random.gen_range(0..phases.safety_ms),
                topic: workload.topics[random.gen_range(0..workload.topics.len())]
                    .name
                    .clone(),
                segment_bytes: random.gen_range(SEGMENT_BYTES_MIN_DRAWN..=SEGMENT_BYTES_MAX_DRAWN),
            });
        }
        cluster.preallocate = random.gen_bool(PREALLOCATE_PROBABILITY);
        let world = World {
            seed,
            profile,
            cluster,
            workload,
            disk_faults,
            disk_fault_brokers,
            schedule,
            phases,
        };
        world.assert_valid();
        world
    }

    /// The number of client processes (producers, then consumers), each on its own node.
    pub fn client_count(&self) -> u32 {
        (self.workload.producers.len() + self.workload.consumers.len()) as u32
    }

    /// Checks the rules of the fault model; a world breaking them (drawn or pinned by a
    /// scenario) would make the checker cry wolf. Returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cluster.brokers == 0 || self.cluster.brokers > BROKERS_MAX {
            problems.push(format!("brokers must be within 1..={BROKERS_MAX}"));
        }
        if self
            .disk_fault_brokers
            .iter()
            .any(|broker| *broker >= self.cluster.brokers)
        {
            problems.push("disk_fault_brokers names a broker that does not exist".to_string());
        }
        if self.cluster.segment_bytes < skiff::config::SEGMENT_BYTES_MIN {
            problems.push("segment_bytes is below the broker's minimum".to_string());
        }
        if self.cluster.offsets_segment_bytes < skiff::config::SEGMENT_BYTES_MIN {
            problems.push("offsets_segment_bytes is below the broker's minimum".to_string());
        }
        if self.cluster.retention_check_interval_ms == 0 {
            problems.push("retention_check_interval_ms must be positive".to_string());
        }
        let interval = self.cluster.flush_policy.acknowledges_unsynced_data();
        if interval && self.disk_faults.sync_error_probability > 0.0 {
            problems.push(
                "failed syncs may drop acknowledged pages under the interval policy".to_string(),
            );
        }
        for producer in &self.workload.producers {
            if producer.idempotent && producer.acks != AcksSetting::All {
                problems.push("an idempotent producer needs acks = all".to_string());
            }
            if !(RECORD_BYTES_MIN..=RECORD_BYTES_MAX).contains(&producer.record_bytes) {
                problems.push(format!(
                    "record_bytes must be within {RECORD_BYTES_MIN}..={RECORD_BYTES_MAX}"
                ));
            }
            if !self.has_topic(&producer.topic) {
                problems.push(format!("producer topic {} is not created", producer.topic));
            }
        }
        for change in &self.workload.settings_changes {
            if !self.has_topic(&change.topic) {
                problems.push(format!(
                    "settings change of {}: no such topic",
                    change.topic
                ));
            }
            if change.segment_bytes < skiff::config::SEGMENT_BYTES_MIN {
                problems.push(
                    "a settings change's segment_bytes is below the broker's minimum".to_string(),
                );
            }
            if change.at_ms >= self.phases.safety_ms {
                problems.push("a settings change comes after the safety phase".to_string());
            }
        }
        for consumer in &self.workload.consumers {
            if !self.has_topic(&consumer.topic) {
                problems.push(format!("consumer topic {} is not created", consumer.topic));
            }
        }
        for scheduled in &self.schedule {
            problems.extend(self.fault_problems(scheduled, interval));
        }
        problems
    }

    fn fault_problems(&self, scheduled: &ScheduledFault, interval: bool) -> Vec<String> {
        let mut problems = Vec::new();
        let end_ms = scheduled.at_ms + scheduled.fault.duration_ms();
        if end_ms > self.phases.safety_ms {
            problems.push(format!(
                "a fault at {} ms outlives the safety phase",
                scheduled.at_ms
            ));
        }
        let broker = match &scheduled.fault {
            Fault::Crash { broker, kind, .. } => {
                if interval && matches!(kind, CrashKind::MachineCrash { .. }) {
                    problems.push(
                        "a machine crash loses acknowledged data under the interval policy"
                            .to_string(),
                    );
                }
                Some(*broker)
            }
            Fault::Pause { broker, .. } => Some(*broker),
            Fault::ClientPartition { broker, client, .. } => {
                if *client >= self.client_count() {
                    problems.push(format!("client {client} does not exist"));
                }
                Some(*broker)
            }
            Fault::PacketLoss { rate, .. } => {
                if !(0.0..=PACKET_LOSS_RATE_MAX).contains(rate) {
                    problems.push(format!(
                        "packet loss must be within 0..={PACKET_LOSS_RATE_MAX}"
                    ));
                }
                None
            }
            Fault::LatencySpike { min_ms, max_ms, .. } => {
                if min_ms >= max_ms {
                    problems.push("a latency spike needs min_ms < max_ms".to_string());
                }
                None
            }
            Fault::ClockJump {
                broker, skew_ms, ..
            } => {
                if skew_ms.abs() > CLOCK_SKEW_MS_MAX {
                    problems.push(format!("clock skew is bounded by {CLOCK_SKEW_MS_MAX} ms"));
                }
                Some(*broker)
            }
            Fault::LeaderCrash { target, kind, .. } => {
                problems.extend(self.machine_crash_problem(kind, interval));
                problems.extend(self.target_problem(target));
                None
            }
            Fault::LeaderPause { target, .. } | Fault::LeaderPartition { target, .. } => {
                problems.extend(self.target_problem(target));
                None
            }
            Fault::BrokerPartition {
                isolated, others, ..
            } => {
                problems.extend(self.broker_partition_problems(isolated, others));
                None
            }
            Fault::RollingRestart { brokers, kind, .. } => {
                problems.extend(self.machine_crash_problem(kind, interval));
                if brokers.is_empty() {
                    problems.push("a rolling restart names no broker".to_string());
                }
                brokers
                    .iter()
                    .copied()
                    .find(|broker| *broker >= self.cluster.brokers)
            }
        };
        if broker.is_some_and(|broker| broker >= self.cluster.brokers) {
            problems.push(format!(
                "a fault names broker {broker:?}, which does not exist"
            ));
        }
        problems
    }

    fn machine_crash_problem(&self, kind: &CrashKind, interval: bool) -> Option<String> {
        (interval && matches!(kind, CrashKind::MachineCrash { .. })).then(|| {
            "a machine crash loses acknowledged data under the interval policy".to_string()
        })
    }

    fn target_problem(&self, target: &LeaderTarget) -> Option<String> {
        let known = match target.topic.as_str() {
            METADATA_TOPIC | OFFSETS_TOPIC => target.partition == 0,
            name => self
                .workload
                .topics
                .iter()
                .any(|topic| topic.name == name && target.partition < topic.partitions),
        };
        (!known).then(|| {
            format!(
                "a leader fault targets {}-{}, which does not exist",
                target.topic, target.partition
            )
        })
    }

    fn broker_partition_problems(&self, isolated: &[u32], others: &[u32]) -> Vec<String> {
        let mut problems = Vec::new();
        let brokers = self.cluster.brokers;
        if isolated.is_empty() || isolated.len() as u32 >= brokers {
            problems.push("a broker partition must isolate some brokers, not all".to_string());
        }
        if isolated
            .iter()
            .chain(others)
            .any(|broker| *broker >= brokers)
        {
            problems.push("a broker partition names a broker that does not exist".to_string());
        }
        if others.iter().any(|broker| isolated.contains(broker)) {
            problems.push("a broker partition puts a broker on both sides".to_string());
        }
        problems
    }

    fn has_topic(&self, name: &str) -> bool {
        self.workload.topics.iter().any(|topic| topic.name == name)
    }

    /// Panics if the world breaks the fault model: a drawn world doing so is a bug here.
    pub fn assert_valid(&self) {
        let problems = self.problems();
        assert!(problems.is_empty(), "invalid world: {problems:?}");
    }

    /// Every setting, one per line, for the start of a run's output.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let json = serde_json::to_value(self).expect("a world serializes");
        describe_value(&mut text, "", &json);
        text
    }
}

/// Flattens a JSON value into `path = value` lines.
fn describe_value(text: &mut String, path: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields {
                let nested = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                describe_value(text, &nested, field);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for (index, item) in items.iter().enumerate() {
                describe_value(text, &format!("{path}[{index}]"), item);
            }
        }
        _ => {
            text.push_str(&format!("  {path} = {value}\n"));
        }
    }
}

fn draw_cluster(random: &mut StdRng, profile: FaultProfile) -> ClusterSettings {
    // Disk-fault worlds need failed syncs, which only the sync policy tolerates.
    let interval = profile != FaultProfile::DiskFaults && random.gen_bool(0.3);
    let flush_policy = if interval {
        FlushPolicySetting::Interval {
            interval_ms: random.gen_range(FLUSH_INTERVAL_MS_MIN..=FLUSH_INTERVAL_MS_MAX),
        }
    } else {
        FlushPolicySetting::Sync
    };
    ClusterSettings {
        brokers: 1,
        flush_policy,
        segment_bytes: random.gen_range(SEGMENT_BYTES_MIN_DRAWN..=SEGMENT_BYTES_MAX_DRAWN),
        group_initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS,
        // Drawn last, in `draw_with_brokers`, so that the draws before them stay as they were.
        offsets_segment_bytes: skiff::config::OFFSETS_SEGMENT_BYTES_DEFAULT,
        retention_check_interval_ms: skiff::config::RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        // Drawn last, in `draw_with_brokers`.
        preallocate: false,
    }
}

fn draw_workload(random: &mut StdRng) -> WorkloadSettings {
    let topics: Vec<TopicSettings> = (0..random.gen_range(1..=TOPICS_MAX))
        .map(|index| TopicSettings {
            name: format!("topic-{index}"),
            partitions: random.gen_range(1..=PARTITIONS_PER_TOPIC_MAX),
        })
        .collect();
    let producers = (0..random.gen_range(1..=PRODUCERS_MAX))
        .map(|_| {
            let acks = if random.gen_bool(0.5) {
                AcksSetting::All
            } else {
                AcksSetting::Leader
            };
            let choices = [
                PartitionChoice::Explicit,
                PartitionChoice::Keyed,
                PartitionChoice::RoundRobin,
            ];
            ProducerSettings {
                topic: topics[random.gen_range(0..topics.len())].name.clone(),
                acks,
                idempotent: acks == AcksSetting::All && random.gen_bool(0.7),
                partition_choice: choices[random.gen_range(0..choices.len())],
                record_bytes: random.gen_range(RECORD_BYTES_MIN..=RECORD_BYTES_MAX),
                send_interval_ms: random.gen_range(SEND_INTERVAL_MS_MIN..=SEND_INTERVAL_MS_MAX),
            }
        })
        .collect();
    let consumers = (0..random.gen_range(0..=CONSUMERS_MAX))
        .map(|index| {
            let mode = if random.gen_bool(0.5) {
                ConsumerMode::Subscribe
            } else {
                ConsumerMode::Assign
            };
            ConsumerSettings {
                topic: topics[random.gen_range(0..topics.len())].name.clone(),
                mode,
                group: format!("group-{}", index % 2),
                commit_every_polls: if mode == ConsumerMode::Subscribe {
                    random.gen_range(0..=5)
                } else {
                    0
                },
                poll_timeout_ms: random.gen_range(100..=1_000),
            }
        })
        .collect();
    WorkloadSettings {
        topics,
        producers,
        consumers,
        settings_changes: Vec::new(),
    }
}

fn draw_disk_faults(
    random: &mut StdRng,
    profile: FaultProfile,
    flush_policy: FlushPolicySetting,
) -> DiskFaultSettings {
    let mut faults = DiskFaultSettings {
        crash_independent_writes_probability: random.gen_range(0.0..=1.0),
        latency_enabled: random.gen_bool(0.5),
        ..DiskFaultSettings::none()
    };
    match profile {
        FaultProfile::SlowDisk => {
            faults.latency_enabled = true;
            faults.slow_operation_probability =
                random.gen_range(SLOW_OPERATION_PROBABILITY_MIN..=SLOW_OPERATION_PROBABILITY_MAX);
        }
        FaultProfile::DiskFaults => {
            faults.sync_error_probability = random.gen_range(0.0..=0.01);
            faults.read_error_probability = random.gen_range(0.0..=0.05);
            faults.write_error_probability = random.gen_range(0.0..=0.02);
            faults.read_corruption_probability = random.gen_range(0.0..=0.02);
            faults.latent_sector_error_probability = random.gen_range(0.0..=0.01);
        }
        FaultProfile::Mixed if random.gen_bool(0.5) => {
            faults.read_error_probability = random.gen_range(0.0..=0.01);
            faults.write_error_probability = random.gen_range(0.0..=0.01);
            if !flush_policy.acknowledges_unsynced_data() {
                faults.sync_error_probability = random.gen_range(0.0..=0.002);
            }
        }
        _ => {}
    }
    if profile == FaultProfile::ManyCrashes {
        // Syncs that take simulated time leave writes pending when a crash lands.
        faults.latency_enabled = true;
    }
    faults
}

/// Draws the next start time on a timeline: a gap after `after`, or `None` past `end`.
fn next_start(random: &mut StdRng, after: u64, gap_ms: (u64, u64), end: u64) -> Option<u64> {
    let start = after + random.gen_range(gap_ms.0..=gap_ms.1);
    (start < end).then_some(start)
}

/// Draws a duration within `range`, cut so the fault ends by `end`.
fn draw_duration(random: &mut StdRng, start: u64, range: (u64, u64), end: u64) -> u64 {
    random.gen_range(range.0..=range.1).min(end - start)
}

fn draw_schedule(
    random: &mut StdRng,
    profile: FaultProfile,
    cluster: &ClusterSettings,
    clients: u32,
    safety_ms: u64,
) -> Vec<ScheduledFault> {
    let intensity = Intensity::of(profile);
    let end = safety_ms - FAULT_MARGIN_MS;
    let mut schedule = Vec::new();
    for broker in 0..cluster.brokers {
        draw_node_timeline(random, &intensity, cluster, broker, end, &mut schedule);
        if let Some(gap) = intensity.clock_gap_ms {
            let mut time = FAULT_MARGIN_MS;
            while let Some(start) = next_start(random, time, gap, end) {
                let skew_ms = random.gen_range(-CLOCK_SKEW_MS_MAX..=CLOCK_SKEW_MS_MAX);
                schedule.push(ScheduledFault {
                    at_ms: start,
                    fault: Fault::ClockJump { broker, skew_ms },
                });
                time = start;
            }
        }
    }
    if let Some(gap) = intensity.partition_gap_ms {
        for client in 0..clients {
            let mut time = FAULT_MARGIN_MS;
            while let Some(start) = next_start(random, time, gap, end) {
                let duration_ms = draw_duration(random, start, intensity.partition_ms, end);
                let broker = random.gen_range(0..cluster.brokers);
                let direction = match random.gen_range(0..4) {
                    0 => PartitionDirection::ClientToBroker,
                    1 => PartitionDirection::BrokerToClient,
                    _ => PartitionDirection::Both,
                };
                schedule.push(ScheduledFault {
                    at_ms: start,
                    fault: Fault::ClientPartition {
                        client,
                        broker,
                        duration_ms,
                        direction,
                    },
                });
                time = start + duration_ms;
            }
        }
    }
    if let Some(gap) = intensity.weather_gap_ms {
        let mut time = FAULT_MARGIN_MS;
        while let Some(start) = next_start(random, time, gap, end) {
            let duration_ms = draw_duration(random, start, intensity.weather_ms, end);
            let fault = if random.gen_bool(0.5) {
                Fault::PacketLoss {
                    rate: random.gen_range(0.01..=PACKET_LOSS_RATE_MAX),
                    duration_ms,
                }
            } else {
                let min_ms = random.gen_range(10..=200);
                Fault::LatencySpike {
                    min_ms,
                    max_ms: min_ms + random.gen_range(1..=1_000),
                    duration_ms,
                }
            };
            schedule.push(ScheduledFault {
                at_ms: start,
                fault,
            });
            time = start + duration_ms;
        }
    }
    // A stable sort keeps the drawing order of faults that start together.
    schedule.sort_by_key(|scheduled| scheduled.at_ms);
    schedule
}

/// Crashes and pauses of one broker, on one timeline so they never overlap.
fn draw_node_timeline(
    random: &mut StdRng,
    intensity: &Intensity,
    cluster: &ClusterSettings,
    broker: u32,
    end: u64,
    schedule: &mut Vec<ScheduledFault>,
) {
    let gaps: Vec<(u64, u64)> = [intensity.crash_gap_ms, intensity.pause_gap_ms]
        .into_iter()
        .flatten()
        .collect();
    if gaps.is_empty() {
        return;
    }
    let shortest_gap = (
        gaps.iter().map(|gap| gap.0).min().unwrap_or(0),
        gaps.iter().map(|gap| gap.1).min().unwrap_or(0),
    );
    let mut time = FAULT_MARGIN_MS;
    while let Some(start) = next_start(random, time, shortest_gap, end) {
        let crash = match (intensity.crash_gap_ms, intensity.pause_gap_ms) {
            (Some(_), Some(_)) => random.gen_bool(0.5),
            (crash, _) => crash.is_some(),
        };
        let fault = if crash {
            let down_ms = draw_duration(random, start, intensity.crash_down_ms, end);
            Fault::Crash {
                broker,
                kind: draw_crash_kind(random, cluster.flush_policy),
                down_ms,
            }
        } else {
            Fault::Pause {
                broker,
                duration_ms: draw_duration(random, start, intensity.pause_ms, end),
            }
        };
        time = start + fault.duration_ms();
        schedule.push(ScheduledFault {
            at_ms: start,
            fault,
        });
    }
}

fn draw_crash_kind(random: &mut StdRng, flush_policy: FlushPolicySetting) -> CrashKind {
    let machine_crash_allowed = !flush_policy.acknowledges_unsynced_data();
    match random.gen_range(0..4) {
        0 | 1 if machine_crash_allowed => {
            let modes = [
                DiskCrashMode::KeepPrefix,
                DiskCrashMode::KeepIndependently,
                DiskCrashMode::LoseEverythingUnsynced,
            ];
            CrashKind::MachineCrash {
                mode: modes[random.gen_range(0..modes.len())],
            }
        }
        0 | 2 => CrashKind::ProcessCrash,
        _ => CrashKind::CleanRestart,
    }
}

/// The broker count of `seed`'s world, from a random stream of its own.
fn draw_broker_count(seed: u64) -> u32 {
    let stream = crate::report::fnv1a_64(format!("{seed}/brokers").as_bytes());
    let mut random = StdRng::seed_from_u64(stream);
    let total: u32 = BROKER_COUNT_WEIGHTS.iter().map(|(_, weight)| weight).sum();
    let mut drawn = random.gen_range(0..total);
    for (brokers, weight) in BROKER_COUNT_WEIGHTS {
        if drawn < weight {
            return brokers;
        }
        drawn -= weight;
    }
    unreachable!("the draw is below the weights' sum")
}

/// A random minority of a cluster's brokers (at least one), in increasing order.
fn draw_minority(random: &mut StdRng, brokers: u32) -> Vec<u32> {
    let size = random.gen_range(1..=(brokers - 1) / 2);
    let mut chosen: Vec<u32> = Vec::new();
    while chosen.len() < size as usize {
        let broker = random.gen_range(0..brokers);
        if !chosen.contains(&broker) {
            chosen.push(broker);
        }
    }
    chosen.sort_unstable();
    chosen
}

/// How often a profile hits a cluster as a whole: the gaps between cluster faults and which
/// kinds it draws (leader crashes, leader pauses, leader partitions, broker partitions, single
/// link cuts), with their weights.
struct ClusterIntensity {
    gap_ms: Option<(u64, u64)>,
    weights: [u32; 5],
    rolling_restart_probability: f64,
}

impl ClusterIntensity {
    fn of(profile: FaultProfile) -> ClusterIntensity {
        let (gap_ms, weights, rolling_restart_probability) = match profile {
            FaultProfile::NoFaults | FaultProfile::SlowDisk | FaultProfile::DiskFaults => {
                (None, [0; 5], 0.0)
            }
            FaultProfile::Mixed => (Some((2_000, 6_000)), [3, 2, 2, 2, 1], 0.2),
            FaultProfile::HeavyPartitions => (Some((500, 3_000)), [0, 0, 3, 3, 2], 0.0),
            FaultProfile::ManyCrashes => (Some((1_000, 4_000)), [5, 1, 0, 0, 0], 0.4),
            FaultProfile::ClockAndNetworkChaos => (Some((1_000, 5_000)), [0, 1, 1, 1, 3], 0.0),
        };
        ClusterIntensity {
            gap_ms,
            weights,
            rolling_restart_probability,
        }
    }
}

/// A partition whose leader a fault targets: mostly a workload partition, sometimes the
/// active controller or the group coordinator.
fn draw_leader_target(random: &mut StdRng, workload: &WorkloadSettings) -> LeaderTarget {
    match random.gen_range(0..10) {
        0 => LeaderTarget {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        },
        1 => LeaderTarget {
            topic: OFFSETS_TOPIC.to_string(),
            partition: 0,
        },
        _ => {
            let topic = &workload.topics[random.gen_range(0..workload.topics.len())];
            LeaderTarget {
                topic: topic.name.clone(),
                partition: random.gen_range(0..topic.partitions),
            }
        }
    }
}

fn draw_link_direction(random: &mut StdRng) -> LinkDirection {
    match random.gen_range(0..4) {
        0 => LinkDirection::Outbound,
        1 => LinkDirection::Inbound,
        _ => LinkDirection::Both,
    }
}

/// The cluster's own timeline: leader-targeted faults and partitions between brokers, one
/// at a time, and maybe one rolling restart at its end.
fn draw_cluster_schedule(
    random: &mut StdRng,
    profile: FaultProfile,
    cluster: &ClusterSettings,
    workload: &WorkloadSettings,
    safety_ms: u64,
) -> Vec<ScheduledFault> {
    let intensity = ClusterIntensity::of(profile);
    let end = safety_ms - FAULT_MARGIN_MS;
    let brokers = cluster.brokers;
    let mut schedule = Vec::new();
    let Some(gap) = intensity.gap_ms else {
        return schedule;
    };
    let total: u32 = intensity.weights.iter().sum();
    let mut time = FAULT_MARGIN_MS;
    while let Some(start) = next_start(random, time, gap, end) {
        let mut drawn = random.gen_range(0..total);
        let kind = intensity
            .weights
            .iter()
            .position(|weight| {
                let hit = drawn < *weight;
                drawn = drawn.saturating_sub(*weight);
                hit
            })
            .expect("the draw is below the weights' sum");
        let fault = match kind {
            0 => Fault::LeaderCrash {
                target: draw_leader_target(random, workload),
                kind: draw_crash_kind(random, cluster.flush_policy),
                down_ms: draw_duration(random, start, (200, 5_000), end),
            },
            1 => Fault::LeaderPause {
                target: draw_leader_target(random, workload),
                duration_ms: draw_duration(random, start, (500, 5_000), end),
            },
            2 => Fault::LeaderPartition {
                target: draw_leader_target(random, workload),
                duration_ms: draw_duration(random, start, (1_000, 8_000), end),
                direction: draw_link_direction(random),
            },
            3 => Fault::BrokerPartition {
                isolated: draw_minority(random, brokers),
                others: Vec::new(),
                duration_ms: draw_duration(random, start, (1_000, 8_000), end),
                direction: draw_link_direction(random),
            },
            _ => {
                let first = random.gen_range(0..brokers);
                let second = (first + random.gen_range(1..brokers)) % brokers;
                Fault::BrokerPartition {
                    isolated: vec![first],
                    others: vec![second],
                    duration_ms: draw_duration(random, start, (500, 6_000), end),
                    direction: draw_link_direction(random),
                }
            }
        };
        time = start + fault.duration_ms();
        schedule.push(ScheduledFault {
            at_ms: start,
            fault,
        });
    }
    if random.gen_bool(intensity.rolling_restart_probability) {
        let down_ms = random.gen_range(200..=2_000);
        let gap_ms = random.gen_range(500..=3_000);
        let first = random.gen_range(0..brokers);
        let order: Vec<u32> = (0..brokers).map(|step| (first + step) % brokers).collect();
        let kind = match random.gen_range(0..3) {
            0 => draw_crash_kind(random, cluster.flush_policy),
            _ => CrashKind::CleanRestart,
        };
        let fault = Fault::RollingRestart {
            brokers: order,
            kind,
            down_ms,
            gap_ms,
        };
        let latest_start = end.saturating_sub(fault.duration_ms());
        if latest_start > FAULT_MARGIN_MS {
            schedule.push(ScheduledFault {
                at_ms: random.gen_range(FAULT_MARGIN_MS..=latest_start),
                fault,
            });
        }
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_is_a_pure_function_of_the_seed() {
        for seed in 0..50 {
            assert_eq!(World::draw(seed), World::draw(seed));
        }
    }

    #[test]
    fn every_profile_is_drawn_by_some_seed() {
        for profile in FaultProfile::ALL {
            assert!(
                (0..200).any(|seed| World::draw(seed).profile == profile),
                "{profile:?} is never drawn"
            );
        }
    }

    #[test]
    fn drawn_worlds_follow_the_fault_model() {
        for seed in 0..500 {
            let world = World::draw(seed);
            assert!(
                world.problems().is_empty(),
                "seed {seed}: {:?}",
                world.problems()
            );
            if world.profile == FaultProfile::NoFaults {
                assert!(world.schedule.is_empty());
                assert_eq!(world.disk_faults.sync_error_probability, 0.0);
            }
        }
    }

    #[test]
    fn the_interval_policy_never_draws_a_machine_crash() {
        for seed in 0..500 {
            let world = World::draw(seed);
            if world.cluster.flush_policy.acknowledges_unsynced_data() {
                assert!(!world.schedule.iter().any(|scheduled| matches!(
                    scheduled.fault,
                    Fault::Crash {
                        kind: CrashKind::MachineCrash { .. },
                        ..
                    }
                )));
            }
        }
    }

    #[test]
    fn the_swarm_draws_single_brokers_and_clusters_of_three_and_five() {
        let counts: Vec<u32> = (0..300)
            .map(|seed| World::draw(seed).cluster.brokers)
            .collect();
        for brokers in [1, 3, 5] {
            let drawn = counts.iter().filter(|count| **count == brokers).count();
            assert!(drawn >= 30, "{brokers} brokers drawn {drawn} times in 300");
        }
    }

    #[test]
    fn a_single_broker_world_draws_no_cluster_fault() {
        for seed in 0..300 {
            let world = World::draw_with_brokers(seed, 1);
            assert!(world.disk_fault_brokers.is_empty());
            assert!(world.schedule.iter().all(|scheduled| matches!(
                scheduled.fault,
                Fault::Crash { .. }
                    | Fault::Pause { .. }
                    | Fault::ClientPartition { .. }
                    | Fault::PacketLoss { .. }
                    | Fault::LatencySpike { .. }
                    | Fault::ClockJump { .. }
            )));
        }
    }

    #[test]
    fn cluster_worlds_follow_the_fault_model_and_draw_every_cluster_fault() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..300 {
            for brokers in [3, 5] {
                let world = World::draw_with_brokers(seed, brokers);
                assert!(
                    world.problems().is_empty(),
                    "seed {seed}: {:?}",
                    world.problems()
                );
                assert!(world.phases.liveness_ms >= CLUSTER_LIVENESS_PHASE_MS_MIN);
                assert!(2 * world.disk_fault_brokers.len() < brokers as usize);
                for scheduled in &world.schedule {
                    let name = serde_json::to_value(&scheduled.fault).unwrap()["fault"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    kinds.insert(name);
                }
            }
        }
        for kind in [
            "leader-crash",
            "leader-pause",
            "leader-partition",
            "broker-partition",
            "rolling-restart",
        ] {
            assert!(kinds.contains(kind), "{kind} is never drawn");
        }
    }

    #[test]
    fn a_world_round_trips_through_json() {
        let world = World::draw(7);
        let text = serde_json::to_string(&world).unwrap();
        assert_eq!(serde_json::from_str::<World>(&text).unwrap(), world);
    }

    #[test]
    fn the_drawn_world_of_seed_1_is_stable() {
        insta::assert_json_snapshot!(World::draw(1));
    }
}
