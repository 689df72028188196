//! Broker nodes: the real `skiff::server::start` on simulated nodes, with their disks.
//!
//! # Fault model
//!
//! Each broker node owns a [`SimDisk`] and a [`Clock`] created here, outside the node, and
//! captured by the node's init closure: they survive a kill and a restart the way a disk and
//! a hardware clock survive a reboot. Going down takes one of three forms (see
//! [`CrashKind`]): a machine crash kills the node and crashes the disk (unsynced writes lost
//! by the drawn mode); a process crash kills the node and leaves the disk alone (the page
//! cache survives); a clean restart asks the server to shut down, waits for it, then kills the
//! node. Restarting re-runs the init closure, which starts a fresh server on the same disk.
//! A pause freezes every task of the node. A running server's `Broker` is published in a slot
//! for the invariant monitor, and removed before the node goes down.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle};
use skiff::config::{BrokerConfig, QuorumVoter};
use skiff::io::{Clock, Disk, Random, SimDisk};
use skiff::log::LogConfig;
use skiff::server::{Broker, Seams};
use tokio::sync::Notify;

use super::recorder::Recorder;
use crate::world::{CrashKind, World};

/// The port every broker listens on.
pub const BROKER_PORT: u16 = 9092;
/// The port of every broker's replication listener, in a cluster.
pub const REPLICATION_PORT: u16 = 9093;
/// The pause before a failed broker start is tried again, as a service manager would.
pub const START_RETRY_BACKOFF_MS: u64 = 1_000;
/// How long a clean shutdown may take before the node is killed anyway.
pub const CLEAN_SHUTDOWN_MS_MAX: u64 = skiff::server::SHUTDOWN_DRAIN_MS_MAX + 5_000;

/// Whether a broker node is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Running.
    Up,
    /// Killed, waiting for a restart.
    Down,
    /// Paused.
    Paused,
}

/// One broker node and everything that outlives its restarts.
pub struct BrokerNode {
    /// Its number in the world, from zero.
    pub index: u32,
    /// The simulated node.
    pub node: NodeHandle,
    /// Its disk, shared with every incarnation.
    pub disk: SimDisk,
    /// Its clock (skew), shared with every incarnation.
    pub clock: Clock,
    /// The running server's broker, when one is running.
    pub slot: Arc<Mutex<Option<Arc<Broker>>>>,
    /// Where it listens.
    pub address: SocketAddr,
    /// Asks the running server to shut down cleanly.
    shutdown_requested: Arc<Notify>,
    /// Signalled when a clean shutdown has finished.
    shutdown_finished: Arc<Notify>,
    /// Whether it runs.
    pub state: NodeState,
}

/// The simulated address of broker `index`.
pub fn broker_address(index: u32) -> SocketAddr {
    let host = u8::try_from(index + 1).expect("few brokers");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, host)), BROKER_PORT)
}

/// Broker `index`'s node id: its number plus one (Kafka's ids start at 1 by convention).
pub fn node_id(index: u32) -> u64 {
    u64::from(index) + 1
}

/// The cluster's members: every broker of a world of more than one, none for a single broker.
fn quorum_voters(world: &World) -> Vec<QuorumVoter> {
    if world.cluster.brokers <= 1 {
        return Vec::new();
    }
    (0..world.cluster.brokers)
        .map(|index| QuorumVoter {
            node_id: i32::try_from(node_id(index)).expect("few brokers"),
            address: SocketAddr::new(broker_address(index).ip(), REPLICATION_PORT),
        })
        .collect()
}

/// The broker's configuration in `world`.
fn broker_config(world: &World, index: u32) -> BrokerConfig {
    let address = broker_address(index);
    BrokerConfig {
        quorum_voters: quorum_voters(world),
        node_id: i32::try_from(node_id(index)).expect("few brokers"),
        data_dir: format!("/data/broker-{index}").into(),
        listener: address,
        advertised_host: address.ip().to_string(),
        advertised_port: address.port(),
        default_partitions: 1,
        auto_create_topics: false,
        flush_policy: world.cluster.flush_policy.to_broker(),
        log: LogConfig {
            segment_bytes: world.cluster.segment_bytes,
            retention_ms: skiff::log::config::RETENTION_UNLIMITED,
            preallocate: world.cluster.preallocate,
            ..LogConfig::default()
        },
        group_initial_rebalance_delay_ms: world.cluster.group_initial_rebalance_delay_ms,
        offsets_segment_bytes: world.cluster.offsets_segment_bytes,
        retention_check_interval_ms: world.cluster.retention_check_interval_ms,
        ..BrokerConfig::default()
    }
}

/// Mixes the seed with a broker and an incarnation, for the broker's random seam.
fn incarnation_seed(seed: u64, index: u32, incarnation: u64) -> u64 {
    crate::report::fnv1a_64(format!("{seed}/{index}/{incarnation}").as_bytes())
}

impl BrokerNode {
    /// Creates and starts broker node `index`.
    pub fn start(world: &World, index: u32, recorder: &Recorder) -> BrokerNode {
        let disk_seed = incarnation_seed(world.seed, index, u64::MAX);
        let disk = SimDisk::with_faults(disk_seed, skiff::io::SimDiskFaults::none());
        let clock = Clock::new();
        let slot: Arc<Mutex<Option<Arc<Broker>>>> = Arc::new(Mutex::new(None));
        let shutdown_requested = Arc::new(Notify::new());
        let shutdown_finished = Arc::new(Notify::new());
        let incarnations = Arc::new(AtomicU64::new(0));
        let config = broker_config(world, index);
        let seed = world.seed;
        let init = {
            let (disk, clock, slot) = (disk.clone(), clock.clone(), slot.clone());
            let (requested, finished) = (shutdown_requested.clone(), shutdown_finished.clone());
            let recorder = recorder.clone();
            move || {
                let incarnation = incarnations.fetch_add(1, Ordering::Relaxed);
                let seams = Seams {
                    disk: Arc::new(disk.clone()) as Arc<dyn Disk>,
                    clock: clock.clone(),
                    random: Random::from_seed(incarnation_seed(seed, index, incarnation)),
                };
                let (config, slot) = (config.clone(), slot.clone());
                let (requested, finished) = (requested.clone(), finished.clone());
                let recorder = recorder.clone();
                async move {
                    serve(config, seams, index, slot, requested, finished, recorder).await;
                }
            }
        };
        let node = Handle::current()
            .create_node()
            .name(format!("broker-{index}"))
            .ip(broker_address(index).ip())
            .init(init)
            .build();
        BrokerNode {
            index,
            node,
            disk,
            clock,
            slot,
            address: broker_address(index),
            shutdown_requested,
            shutdown_finished,
            state: NodeState::Up,
        }
    }

    /// The running server's broker, if any.
    pub fn broker(&self) -> Option<Arc<Broker>> {
        lock(&self.slot).clone()
    }

    /// Takes the broker down the given way. Returns what happened, for the fault log.
    pub async fn go_down(&mut self, kind: CrashKind, crash_seed: u64) -> String {
        assert_eq!(self.state, NodeState::Up, "only a running broker goes down");
        let handle = Handle::current();
        // A clean shutdown needs a running server to ask; a broker still starting just dies.
        let kind = match kind {
            CrashKind::CleanRestart if self.broker().is_none() => CrashKind::ProcessCrash,
            kind => kind,
        };
        let description = match kind {
            CrashKind::MachineCrash { mode } => {
                lock(&self.slot).take();
                handle.kill(self.node.id());
                self.disk.crash_with_mode(crash_seed, mode.to_disk());
                format!("machine crash ({mode:?}) of broker-{}", self.index)
            }
            CrashKind::ProcessCrash => {
                lock(&self.slot).take();
                handle.kill(self.node.id());
                format!("process crash of broker-{}", self.index)
            }
            CrashKind::CleanRestart => {
                let finished = self.shutdown_finished.notified();
                self.shutdown_requested.notify_one();
                let clean =
                    tokio::time::timeout(Duration::from_millis(CLEAN_SHUTDOWN_MS_MAX), finished)
                        .await
                        .is_ok();
                lock(&self.slot).take();
                handle.kill(self.node.id());
                if clean {
                    format!("clean shutdown of broker-{}", self.index)
                } else {
                    format!("clean shutdown of broker-{} timed out; killed", self.index)
                }
            }
        };
        self.state = NodeState::Down;
        description
    }

    /// Restarts a broker that is down.
    pub fn restart(&mut self) {
        assert_eq!(
            self.state,
            NodeState::Down,
            "only a broker that is down restarts"
        );
        Handle::current().restart(self.node.id());
        self.state = NodeState::Up;
    }

    /// Pauses a running broker.
    pub fn pause(&mut self) {
        assert_eq!(self.state, NodeState::Up, "only a running broker pauses");
        Handle::current().pause(self.node.id());
        self.state = NodeState::Paused;
    }

    /// Resumes a paused broker.
    pub fn resume(&mut self) {
        assert_eq!(
            self.state,
            NodeState::Paused,
            "only a paused broker resumes"
        );
        Handle::current().resume(self.node.id());
        self.state = NodeState::Up;
    }

    /// Whether any partition of the running broker is offline (after a failed sync).
    pub fn has_offline_partition(&self) -> bool {
        self.broker().is_some_and(|broker| {
            broker
                .topics()
                .iter()
                .any(|topic| topic.hosted().any(|partition| partition.is_offline()))
        })
    }
}

/// One incarnation of a broker: start, publish, serve until asked to shut down.
///
/// Like a service manager, it retries a failed start after [`START_RETRY_BACKOFF_MS`]: while
/// disk faults are on, recovery may hit an I/O error. Each failure is logged as a fault; a
/// failure after the heal, on a healthy disk, is an invariant violation.
async fn serve(
    config: BrokerConfig,
    seams: Seams,
    index: u32,
    slot: Arc<Mutex<Option<Arc<Broker>>>>,
    shutdown_requested: Arc<Notify>,
    shutdown_finished: Arc<Notify>,
    recorder: Recorder,
) {
    loop {
        match skiff::server::start(config.clone(), seams.clone()).await {
            Ok(server) => {
                *lock(&slot) = Some(server.broker.clone());
                shutdown_requested.notified().await;
                lock(&slot).take();
                server.shutdown().await;
                shutdown_finished.notify_one();
                break;
            }
            Err(error) => {
                let description = format!("broker-{index} failed to start: {error}");
                if recorder.lock().healed_at_ms.is_some() {
                    let time_ms = recorder.now_ms();
                    let mut state = recorder.lock();
                    state
                        .invariants
                        .start_failed(time_ms, index, &error.to_string());
                }
                recorder.nemesis(
                    skiff_checker::Op::Fault {
                        description: description.clone(),
                    },
                    description,
                );
                tokio::time::sleep(Duration::from_millis(START_RETRY_BACKOFF_MS)).await;
            }
        }
    }
    // The node stays up (a finished init task would make madsim exit the node).
    std::future::pending::<()>().await;
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
