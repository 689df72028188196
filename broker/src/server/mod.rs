//! The broker server: accepts connections and drives the state machines with real I/O.
//!
//! ```text
//!   listener ─► connection task (one per client) ─► handlers ─► Broker
//!                                                              ├─ topics ─► Partition ─► log
//!                                                              ├─ groups ─► coordinator
//!                                                              └─ producer ids
//!   background: one syncer per partition, the group ticker, the retention timer
//! ```
//!
//! [`start`] is the one entry point, used by the `skiff` binary and by the simulator alike: it
//! takes a configuration and the seams, and returns a handle to shut the server down cleanly.

pub mod broker;
pub mod connection;
pub mod data_dir;
pub mod groups;
pub mod handlers;
pub mod offsets_cleanup;
pub mod partition;
pub mod request_timing;
pub mod topic_config;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

pub use broker::{Broker, Seams, TopicError};

use crate::config::BrokerConfig;
use crate::io::{net, tasks};

/// How long a clean shutdown waits for in-flight requests before syncing and stopping.
pub const SHUTDOWN_DRAIN_MS_MAX: u64 = 10_000;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the data directory: {0}")]
    DataDirectory(#[from] TopicError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterStartError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running server.
pub struct RunningServer {
    pub broker: Arc<Broker>,
    pub local_address: SocketAddr,
    shutdown: watch::Sender<bool>,
    connections: Arc<ConnectionCount>,
}

#[derive(Default)]
struct ConnectionCount {
    open: AtomicUsize,
    all_closed: Notify,
}

struct ConnectionGuard(Arc<ConnectionCount>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.all_closed.notify_waiters();
        }
    }
}

/// Opens the data directory, recovers every log, and starts serving.
pub async fn start(config: BrokerConfig, seams: Seams) -> Result<RunningServer, StartError> {
    let listen_address = config.listener;
    let broker = tasks::run_blocking(move || Broker::open(config, seams)).await?;
    let (shutdown, shutdown_watch) = watch::channel(false);
    if broker.config.is_clustered() {
        let cluster = crate::cluster::start(&broker, shutdown_watch.clone()).await?;
        let _ = broker.cluster.set(cluster);
    }
    groups::start(&broker).await?;
    let listener = net::listen(listen_address)
        .await
        .map_err(|source| StartError::Listen {
            address: listen_address,
            source,
        })?;
    let local_address = listener.local_addr().unwrap_or(listen_address);
    let connections = Arc::new(ConnectionCount::default());
    tasks::spawn(accept_loop(
        broker.clone(),
        listener,
        shutdown_watch.clone(),
        connections.clone(),
    ));
    tasks::spawn(retention_loop(broker.clone(), shutdown_watch));
    tracing::info!(address = %local_address, node = broker.identity.node_id,
        cluster = %broker.identity.cluster_id, data = %broker.config.data_dir.display(), "serving");
    Ok(RunningServer {
        broker,
        local_address,
        shutdown,
        connections,
    })
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish (bounded), then syncs every log.
    pub async fn shutdown(self) {
        tracing::info!("shutting down");
        if let Some(cluster) = self.broker.cluster.get() {
            // While everything still runs: clients fail over to the new leaders at once.
            cluster.hand_over_leadership().await;
        }
        self.shutdown.send_replace(true);
        let drained = async {
            while self.connections.open.load(Ordering::Acquire) > 0 {
                let closed = self.connections.all_closed.notified();
                tokio::pin!(closed);
                closed.as_mut().enable();
                if self.connections.open.load(Ordering::Acquire) == 0 {
                    break;
                }
                closed.await;
            }
        };
        if tokio::time::timeout(Duration::from_millis(SHUTDOWN_DRAIN_MS_MAX), drained)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the drain period; stopping anyway");
        }
        groups::stop(&self.broker);
        self.broker.flush_all().await;
        tracing::info!("shut down cleanly");
    }
}

async fn accept_loop(
    broker: Arc<Broker>,
    listener: net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    connections: Arc<ConnectionCount>,
) {
    let connections_max = broker.config.connections_max as usize;
    loop {
        let accepted = tokio::select! {
            biased;
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let (stream, address) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Running out of file descriptors is transient; back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if connections.open.load(Ordering::Acquire) >= connections_max {
            tracing::warn!(peer = %address, connections_max, "too many connections; closing the new one");
            continue;
        }
        let _ = stream.set_nodelay(true);
        connections.open.fetch_add(1, Ordering::AcqRel);
        let guard = ConnectionGuard(connections.clone());
        let peer = connection::Peer { address };
        let served = connection::serve(broker.clone(), stream, peer, shutdown.clone());
        tasks::spawn(async move {
            served.await;
            drop(guard);
        });
    }
}

async fn retention_loop(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(broker.config.retention_check_interval_ms);
    loop {
        tokio::select! {
            biased;
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
        offsets_cleanup::write_snapshot_if_due(&broker).await;
        let for_io = broker.clone();
        tasks::run_blocking(move || for_io.apply_retention()).await;
    }
}
