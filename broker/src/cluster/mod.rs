//! Cluster mode: this broker as one member of a replicated cluster (`controller.quorum.voters`).
//!
//! ```text
//!   peers ──frames──► transport ──inbox──► driver ──► GroupSet (one RaftNode per group)
//!                                            │  persist / truncate / leader markers ──► Partition logs
//!                                            │  commit ──► high watermarks, acks=-1 answers
//!                                            │  metadata commits ──► MetadataImage ──► topics
//!   produce ──► Partition::append ──► propose ┘
//! ```
//!
//! Every member is a voter of the metadata quorum (group 0, KRaft's combined mode) and holds a
//! replica of every partition: the replication factor is the cluster size, at most
//! [`crate::config::QUORUM_VOTERS_MAX`]. Each partition is its own Raft group. See
//! `docs/replication.md` for the design and what is not done yet.

mod driver;
mod leadership;
pub mod metadata;
pub mod peer_wire;
mod raft_set;
mod replicas;
mod transport;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

pub use metadata::{MetadataImage, MetadataRecord, METADATA_GROUP, METADATA_TOPIC};
pub use raft_set::RaftSet;

use crate::config::{BrokerConfig, QuorumVoter};
use crate::consensus::{GroupId, GroupSet, NodeId, Term};
use crate::io::clock::Instant;
use crate::io::{net, tasks};
use crate::server::partition::{AppendOutcome, Partition, PartitionError};
use crate::server::Broker;
use peer_wire::PeerFrame;

/// How long a starting broker waits to catch up with the metadata log before it serves
/// clients anyway (with a warning): without a quorum it cannot catch up at all.
pub const METADATA_CATCH_UP_MS_MAX: u64 = 30_000;
/// How long a topic change waits to be committed and applied here.
pub const METADATA_CHANGE_TIMEOUT_MS: u64 = 10_000;

/// Producer ids in a cluster are `local id * stride + node id`: each broker allocates local
/// ids from its own durable blocks, and the node id keeps brokers' ids apart. Node ids of a
/// cluster are below the stride (checked with the configuration).
pub const PRODUCER_ID_NODE_STRIDE: i64 = crate::config::CLUSTER_NODE_ID_LIMIT as i64;

/// The cluster-wide producer id for a broker's local id.
pub fn cluster_producer_id(local: i64, node: i64) -> i64 {
    assert!(
        (0..PRODUCER_ID_NODE_STRIDE).contains(&node),
        "node ids are below the stride"
    );
    local
        .checked_mul(PRODUCER_ID_NODE_STRIDE)
        .and_then(|spread| spread.checked_add(node))
        .expect("local producer ids stay far below i64::MAX / stride")
}

/// The local id behind a cluster-wide producer id, if this broker (`node`) handed it out.
pub fn local_producer_id(cluster_id: i64, node: i64) -> Option<i64> {
    (cluster_id >= 0 && cluster_id % PRODUCER_ID_NODE_STRIDE == node)
        .then_some(cluster_id / PRODUCER_ID_NODE_STRIDE)
}

/// A live member of the cluster as clients should reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveBroker {
    pub node_id: NodeId,
    pub host: String,
    pub port: u16,
}

struct PeerStatus {
    host: String,
    port: u16,
    last_heard: Instant,
    /// The start of the current unbroken run of hellos.
    live_since: Instant,
}

/// This broker's view of the cluster, shared by the driver and the request handlers.
pub struct Cluster {
    pub node_id: NodeId,
    pub voters: Vec<QuorumVoter>,
    pub raft: Arc<RaftSet>,
    /// Every same-named cluster reports this id: derived from the voters.
    pub cluster_id: String,
    kafka_host: String,
    kafka_port: u16,
    replicas: Mutex<BTreeMap<GroupId, Arc<Partition>>>,
    image: Mutex<MetadataImage>,
    /// Counts applied metadata records; waiters re-check the image when it moves.
    applied: watch::Sender<u64>,
    /// The next metadata log offset to apply: everything below it is in the image.
    metadata_applied: AtomicI64,
    peers: Mutex<BTreeMap<NodeId, PeerStatus>>,
    /// Who leads each group in which term, as peers' hellos say: how a broker names the leader
    /// of a partition it holds no replica of. The highest term heard wins.
    heard_leaders: Mutex<BTreeMap<GroupId, (NodeId, Term)>>,
    links: OnceLock<BTreeMap<NodeId, transport::PeerLink>>,
    clock: crate::io::Clock,
    random_seed: u64,
}

impl Cluster {
    fn new(config: &BrokerConfig, clock: crate::io::Clock, random_seed: u64) -> Self {
        let node_id = config.node_id as NodeId;
        let voters = config.quorum_voters.clone();
        let description: Vec<String> = voters
            .iter()
            .map(|voter| format!("{}@{}", voter.node_id, voter.address))
            .collect();
        let digest = crc32c::crc32c(description.join(",").as_bytes());
        let voter_ids = voters.iter().map(|voter| voter.node_id as NodeId).collect();
        Self {
            node_id,
            raft: Arc::new(RaftSet::new(GroupSet::new(node_id), clock.clone())),
            cluster_id: format!("skiff-{digest:08x}"),
            kafka_host: config.advertised_host.clone(),
            kafka_port: config.advertised_port,
            voters,
            replicas: Mutex::new(BTreeMap::new()),
            image: Mutex::new(MetadataImage::new(voter_ids)),
            applied: watch::channel(0).0,
            metadata_applied: AtomicI64::new(0),
            peers: Mutex::new(BTreeMap::new()),
            heard_leaders: Mutex::new(BTreeMap::new()),
            links: OnceLock::new(),
            clock,
            random_seed,
        }
    }

    pub fn voter_ids(&self) -> Vec<NodeId> {
        self.voters
            .iter()
            .map(|voter| voter.node_id as NodeId)
            .collect()
    }

    fn is_peer(&self, node: NodeId) -> bool {
        node != self.node_id
            && self
                .voters
                .iter()
                .any(|voter| voter.node_id as NodeId == node)
    }

    fn hello(&self) -> PeerFrame {
        PeerFrame::Hello {
            node_id: self.node_id,
            kafka_host: self.kafka_host.clone(),
            kafka_port: self.kafka_port,
            leading: self
                .led_groups_with_terms()
                .into_iter()
                .take(peer_wire::FRAME_MESSAGES_MAX)
                .collect(),
        }
    }

    /// Records a peer's claims to lead groups: a claim replaces one of a lower or equal term,
    /// and the peer's claims it no longer makes are dropped.
    fn heard_leading(&self, node: NodeId, leading: &[(GroupId, Term)]) {
        let claimed: std::collections::BTreeSet<GroupId> =
            leading.iter().map(|(group, _)| *group).collect();
        let mut leaders = self
            .heard_leaders
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        leaders.retain(|group, (leader, _)| *leader != node || claimed.contains(group));
        for (group, term) in leading {
            let newer = leaders
                .get(group)
                .is_none_or(|(_, known_term)| *known_term <= *term);
            if newer {
                leaders.insert(*group, (node, *term));
            }
        }
    }

    /// The leader of a group this broker holds no replica of, and its term, as the leader's
    /// own hellos claim; `None` if no live peer claims it.
    pub fn heard_leader_of(&self, group: GroupId) -> Option<(NodeId, Term)> {
        let claim = self
            .heard_leaders
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&group)
            .copied()?;
        self.live_brokers()
            .iter()
            .any(|live| live.node_id == claim.0)
            .then_some(claim)
    }

    fn heard_from(&self, node: NodeId, host: String, port: u16) {
        let now = self.clock.now();
        let liveness = Duration::from_millis(transport::PEER_LIVENESS_MS);
        let mut peers = self
            .peers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let live_since = peers
            .get(&node)
            .filter(|status| now.saturating_duration_since(status.last_heard) < liveness)
            .map_or(now, |status| status.live_since);
        peers.insert(
            node,
            PeerStatus {
                host,
                port,
                last_heard: now,
                live_since,
            },
        );
    }

    /// Peers live without a break for at least `settle`.
    fn settled_peers(&self, settle: Duration) -> Vec<NodeId> {
        let now = self.clock.now();
        let liveness = Duration::from_millis(transport::PEER_LIVENESS_MS);
        self.peers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .iter()
            .filter(|(_, status)| {
                now.saturating_duration_since(status.last_heard) < liveness
                    && now.saturating_duration_since(status.live_since) >= settle
            })
            .map(|(node, _)| *node)
            .collect()
    }

    /// This broker and every peer heard from lately, in node order.
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        let now = self.clock.now();
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut live: Vec<LiveBroker> = peers
            .iter()
            .filter(|(_, status)| {
                now.saturating_duration_since(status.last_heard)
                    < Duration::from_millis(transport::PEER_LIVENESS_MS)
            })
            .map(|(node, status)| LiveBroker {
                node_id: *node,
                host: status.host.clone(),
                port: status.port,
            })
            .collect();
        live.push(LiveBroker {
            node_id: self.node_id,
            host: self.kafka_host.clone(),
            port: self.kafka_port,
        });
        live.sort_by_key(|broker| broker.node_id);
        live
    }

    pub fn replica(&self, group: GroupId) -> Option<Arc<Partition>> {
        self.replicas
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(&group)
            .cloned()
    }

    fn metadata_partition(&self) -> Arc<Partition> {
        self.replica(METADATA_GROUP)
            .expect("the metadata replica is opened before serving")
    }

    /// The active controller: the metadata quorum's leader, if known.
    pub fn controller(&self) -> Option<NodeId> {
        self.metadata_partition().leadership().leader
    }

    pub fn image(&self) -> MetadataImage {
        self.image
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    /// Proposes a metadata record (here if this broker is the controller, else through the
    /// controller) and waits until `applied` holds in this broker's image.
    pub async fn change_metadata(
        &self,
        record: MetadataRecord,
        applied: impl Fn(&MetadataImage) -> bool,
    ) -> Result<(), String> {
        let mut changes = self.applied.subscribe();
        let encoded = Bytes::from(record.encode());
        let deadline = Duration::from_millis(METADATA_CHANGE_TIMEOUT_MS);
        let waited = tokio::time::timeout(deadline, async {
            // Retried while no controller is known or it changes under the proposal.
            for _ in 0..METADATA_CHANGE_TIMEOUT_MS / 100 {
                if applied(&self.image()) {
                    return Ok(());
                }
                match self.propose_metadata(&encoded) {
                    Ok(()) => {}
                    Err(error) => tracing::debug!(%error, "metadata proposal not accepted yet"),
                }
                let settle = tokio::time::sleep(Duration::from_millis(500));
                tokio::pin!(settle);
                loop {
                    tokio::select! {
                        biased;
                        changed = changes.changed() => {
                            if changed.is_err() {
                                return Err("the cluster is shutting down".to_string());
                            }
                            if applied(&self.image()) {
                                return Ok(());
                            }
                        }
                        _ = &mut settle => break,
                    }
                }
            }
            Err("no controller accepted the change".to_string())
        })
        .await;
        match waited {
            Ok(result) => result,
            Err(_) => Err("the change was not committed in time".to_string()),
        }
    }

    /// Waits until a metadata leader is known and everything it committed is applied here, so
    /// that clients are not told that existing topics are unknown (a Kafka broker is fenced
    /// until it has caught up, for the same reason). Bounded by [`METADATA_CATCH_UP_MS_MAX`].
    async fn catch_up_with_metadata(&self) {
        let mut changes = self.applied.subscribe();
        let caught_up = || {
            let partition = self.metadata_partition();
            let committed = partition.high_watermark();
            partition.leadership().leader.is_some()
                && committed > 0
                && self.metadata_applied.load(Ordering::Acquire) >= committed
        };
        let waited = tokio::time::timeout(Duration::from_millis(METADATA_CATCH_UP_MS_MAX), async {
            while !caught_up() {
                tokio::select! {
                    biased;
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
        .await;
        match waited {
            Ok(()) => tracing::info!(
                applied = self.metadata_applied.load(Ordering::Acquire),
                "caught up with the metadata log"
            ),
            Err(_) => tracing::warn!(
                "not caught up with the metadata log (no quorum?); serving clients anyway"
            ),
        }
    }

    /// Appends a metadata record if this broker is the controller; forwards it otherwise.
    fn propose_metadata(&self, record: &Bytes) -> Result<(), String> {
        let partition = self.metadata_partition();
        let leader = partition.leadership().leader;
        if leader == Some(self.node_id) {
            return self.append_metadata(&partition, record);
        }
        let Some(controller) = leader else {
            return Err("no controller elected".to_string());
        };
        self.send_frame(
            controller,
            peer_wire::encode(&PeerFrame::ProposeMetadata {
                from: self.node_id,
                record: record.clone(),
            }),
        );
        Ok(())
    }

    fn append_metadata(&self, partition: &Partition, record: &Bytes) -> Result<(), String> {
        let wall_ms = self.clock.wall_ms();
        let batch =
            crate::log::record_batch::encode_batch(&[(None, Some(record.clone()))], wall_ms);
        let header = crate::log::record_batch::validate(&batch)
            .expect("a batch this broker encoded is valid");
        match partition.append(&batch, &header, wall_ms) {
            Ok(AppendOutcome::Appended(_)) | Ok(AppendOutcome::Duplicate { .. }) => Ok(()),
            Err(PartitionError::NotLeader { .. }) => Err("not the controller".to_string()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn send_frame(&self, to: NodeId, frame: Bytes) {
        if let Some(link) = self.links.get().and_then(|links| links.get(&to)) {
            if !link.try_send(frame) {
                tracing::debug!(peer = to, "peer queue full or closed; dropping a frame");
            }
        }
    }
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterStartError {
    #[error("cannot listen for peers on {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the metadata log: {0}")]
    Metadata(String),
}

/// Opens the metadata replica, starts the peer links and the driver. The broker's topics
/// appear as the metadata log commits.
pub async fn start(
    broker: &Arc<Broker>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<Cluster>, ClusterStartError> {
    let config = &broker.config;
    let own = config
        .quorum_voters
        .iter()
        .find(|voter| voter.node_id == config.node_id)
        .expect("config validation: the voters list this node")
        .address;
    let cluster = Arc::new(Cluster::new(
        config,
        broker.seams.clock.clone(),
        broker.seams.random.next_u64(),
    ));
    let for_open = (broker.clone(), cluster.clone());
    tasks::run_blocking(move || replicas::open_metadata_replica(&for_open.0, &for_open.1))
        .await
        .map_err(ClusterStartError::Metadata)?;
    let listener = net::listen(own)
        .await
        .map_err(|source| ClusterStartError::Listen {
            address: own,
            source,
        })?;
    let (inbox_sender, inbox) = mpsc::channel(transport::INBOX_FRAMES_MAX);
    let links = transport::start(&cluster, listener, inbox_sender, shutdown.clone());
    let _ = cluster.links.set(links.into_iter().collect());
    tasks::spawn(driver::run(
        broker.clone(),
        cluster.clone(),
        inbox,
        shutdown.clone(),
    ));
    tasks::spawn(leadership::balance_leaders(cluster.clone(), shutdown));
    tracing::info!(node = cluster.node_id, peers = %own, voters = cluster.voters.len(), "cluster member started");
    cluster.catch_up_with_metadata().await;
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_term_claim_of_a_live_broker_names_a_leader() {
        let voters = "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094,4@127.0.0.1:19095";
        let properties = BTreeMap::from([
            ("node.id".to_string(), "1".to_string()),
            ("controller.quorum.voters".to_string(), voters.to_string()),
        ]);
        let config = BrokerConfig::from_properties(&properties).unwrap();
        let cluster = Cluster::new(&config, crate::io::Clock::new(), 7);
        for peer in [2, 3] {
            cluster.heard_from(peer, "127.0.0.1".to_string(), 9090 + peer as u16);
        }
        assert_eq!(cluster.heard_leader_of(5), None);
        cluster.heard_leading(2, &[(5, 1), (6, 1)]);
        assert_eq!(cluster.heard_leader_of(5), Some((2, 1)));
        cluster.heard_leading(3, &[(5, 2)]);
        assert_eq!(cluster.heard_leader_of(5), Some((3, 2)));
        // A deposed leader still claiming its old term changes nothing.
        cluster.heard_leading(2, &[(5, 1), (6, 1)]);
        assert_eq!(cluster.heard_leader_of(5), Some((3, 2)));
        // A claim no longer made is forgotten.
        cluster.heard_leading(3, &[]);
        assert_eq!(cluster.heard_leader_of(5), None);
        assert_eq!(cluster.heard_leader_of(6), Some((2, 1)));
        // A broker never heard from (not live) is not named, whatever it claims.
        cluster.heard_leading(4, &[(9, 3)]);
        assert_eq!(cluster.heard_leader_of(9), None);
    }

    #[test]
    fn producer_ids_of_different_brokers_never_collide_and_map_back() {
        let mut seen = std::collections::BTreeSet::new();
        for node in [0, 1, 2, 1023] {
            for local in 0..100 {
                let id = cluster_producer_id(local, node);
                assert!(seen.insert(id), "id {id} handed out twice");
                assert_eq!(local_producer_id(id, node), Some(local));
                assert_eq!(
                    local_producer_id(id, (node + 1) % PRODUCER_ID_NODE_STRIDE),
                    None
                );
            }
        }
        assert_eq!(local_producer_id(-1, 0), None);
    }
}
