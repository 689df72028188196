//! Connections between the brokers of a cluster: one outbound link per peer carrying this
//! broker's frames, and a listener taking every peer's frames to the driver.
//!
//! Links are lossy by design: a full queue or a broken connection drops frames, and Raft
//! retransmits (heartbeats, probes). Nothing here waits on a peer while holding anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::peer_wire::{self, PeerFrame, PEER_FRAME_BYTES_MAX};
use super::Cluster;
use crate::consensus::NodeId;
use crate::io::{net, tasks};
use crate::wire::frame::read_frame;

/// Frames queued for one peer; beyond this they are dropped.
pub const PEER_QUEUE_FRAMES_MAX: usize = 1024;
/// Bytes queued for one peer; beyond this frames are dropped (Raft resends).
pub const PEER_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Frames queued from all peers for the driver; a full inbox slows the peers' connections.
pub const INBOX_FRAMES_MAX: usize = 1024;
/// Bytes of frames from all peers waiting for the driver; beyond this, peer connections are
/// not read until the driver catches up (TCP backpressure).
pub const INBOX_BYTES_MAX: usize = 64 * 1024 * 1024;

/// A byte budget in KiB permits, so that frames of any size fit a semaphore's count.
pub fn kib_permits(bytes: usize, budget_bytes: usize) -> u32 {
    let permits = bytes.div_ceil(1024).max(1).min(budget_bytes / 1024);
    u32::try_from(permits).expect("budgets are far below 4 TiB")
}

/// A frame on its way to the driver, holding its share of the inbox budget until processed.
pub struct InboundFrame {
    pub frame: PeerFrame,
    pub budget: OwnedSemaphorePermit,
}

/// A frame queued for a peer, holding its share of that peer's queue budget until written.
pub struct OutboundFrame {
    pub bytes: Bytes,
    pub _budget: OwnedSemaphorePermit,
}
/// How often a link announces itself (the peer's liveness signal).
pub const HELLO_INTERVAL_MS: u64 = 500;
/// A peer not heard from for this long is not listed in metadata responses.
pub const PEER_LIVENESS_MS: u64 = 3_000;
/// Pause between connection attempts to an unreachable peer.
pub const RECONNECT_BACKOFF_MS: u64 = 200;
/// How long one connection attempt may take.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;

/// Starts the listener and one outbound link per peer; returns the per-peer queues.
pub fn start(
    cluster: &Arc<Cluster>,
    listener: net::TcpListener,
    inbox: mpsc::Sender<InboundFrame>,
    shutdown: watch::Receiver<bool>,
) -> Vec<(NodeId, PeerLink)> {
    tasks::spawn(accept_loop(
        cluster.clone(),
        listener,
        inbox,
        shutdown.clone(),
    ));
    let mut links = Vec::new();
    for voter in &cluster.voters {
        let peer = voter.node_id as NodeId;
        if peer == cluster.node_id {
            continue;
        }
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_FRAMES_MAX);
        let budget = Arc::new(Semaphore::new(PEER_QUEUE_BYTES_MAX / 1024));
        tasks::spawn(link(
            cluster.clone(),
            peer,
            voter.address,
            receiver,
            shutdown.clone(),
        ));
        links.push((peer, PeerLink { sender, budget }));
    }
    links
}

/// The queue of frames for one peer, bounded in frames and bytes.
pub struct PeerLink {
    sender: mpsc::Sender<OutboundFrame>,
    budget: Arc<Semaphore>,
}

impl PeerLink {
    /// Queues a frame, or drops it when the queue is full: Raft resends what matters.
    pub fn try_send(&self, bytes: Bytes) -> bool {
        let permits = kib_permits(bytes.len(), PEER_QUEUE_BYTES_MAX);
        let Ok(budget) = self.budget.clone().try_acquire_many_owned(permits) else {
            return false;
        };
        self.sender
            .try_send(OutboundFrame {
                bytes,
                _budget: budget,
            })
            .is_ok()
    }
}

async fn link(
    cluster: Arc<Cluster>,
    peer: NodeId,
    address: SocketAddr,
    mut frames: mpsc::Receiver<OutboundFrame>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            net::connect(address),
        )
        .await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(peer, %address, %error, "cannot reach peer");
                drain(&mut frames);
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                    _ = tokio::time::sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)) => {}
                }
                continue;
            }
            Err(_) => {
                drain(&mut frames);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (_, mut writer) = tokio::io::split(stream);
        tracing::info!(peer, %address, "connected to peer");
        let mut outcome: std::io::Result<()> = async {
            writer
                .write_all(&peer_wire::encode(&cluster.hello()))
                .await?;
            writer.flush().await
        }
        .await;
        let hello_interval = Duration::from_millis(HELLO_INTERVAL_MS);
        let mut next_hello = cluster.clock.now() + hello_interval;
        while outcome.is_ok() {
            // A hello goes out every interval however busy the link is: it is the peer's
            // liveness signal, and Raft traffic alone never stops.
            let frame = tokio::select! {
                biased;
                _ = shutdown.wait_for(|stopping| *stopping) => return,
                _ = tokio::time::sleep_until(next_hello) => {
                    next_hello = cluster.clock.now() + hello_interval;
                    peer_wire::encode(&cluster.hello())
                }
                frame = frames.recv() => match frame {
                    Some(frame) => frame.bytes,
                    None => return,
                },
            };
            outcome = async {
                writer.write_all(&frame).await?;
                // Coalesce whatever else is already queued into the same flush.
                for _ in 0..PEER_QUEUE_FRAMES_MAX {
                    match frames.try_recv() {
                        Ok(more) => writer.write_all(&more.bytes).await?,
                        Err(_) => break,
                    }
                }
                writer.flush().await
            }
            .await;
        }
        if let Err(error) = outcome {
            tracing::info!(peer, %address, %error, "peer link broke; reconnecting");
        }
        drain(&mut frames);
    }
}

/// Frames queued while a link is down are stale by the time it is back: Raft resends.
fn drain(frames: &mut mpsc::Receiver<OutboundFrame>) {
    while frames.try_recv().is_ok() {}
}

async fn accept_loop(
    cluster: Arc<Cluster>,
    listener: net::TcpListener,
    inbox: mpsc::Sender<InboundFrame>,
    mut shutdown: watch::Receiver<bool>,
) {
    let budget = Arc::new(Semaphore::new(INBOX_BYTES_MAX / 1024));
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, address)) => {
                let _ = stream.set_nodelay(true);
                tasks::spawn(serve_peer(
                    cluster.clone(),
                    stream,
                    address,
                    (inbox.clone(), budget.clone()),
                    shutdown.clone(),
                ));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a peer connection failed");
                tokio::time::sleep(Duration::from_millis(RECONNECT_BACKOFF_MS)).await;
            }
        }
    }
}

async fn serve_peer(
    cluster: Arc<Cluster>,
    stream: net::TcpStream,
    address: SocketAddr,
    (inbox, budget): (mpsc::Sender<InboundFrame>, Arc<Semaphore>),
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut reader, _writer) = tokio::io::split(stream);
    let mut speaker: Option<NodeId> = None;
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            frame = read_frame(&mut reader, PEER_FRAME_BYTES_MAX) => frame,
        };
        let body = match frame {
            Ok(Some(body)) => body.freeze(),
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%address, %error, "closing a peer connection");
                return;
            }
        };
        let frame_bytes = body.len();
        let frame = match peer_wire::decode(body) {
            Ok(frame) => frame,
            Err(error) => {
                tracing::warn!(%address, %error, "malformed peer frame; closing the connection");
                return;
            }
        };
        // A connection speaks for the one voter that said hello on it.
        let from = match &frame {
            PeerFrame::Hello { node_id, .. } => Some(*node_id),
            PeerFrame::Raft { envelope, .. } => Some(envelope.from),
            PeerFrame::ProposeMetadata { from, .. } => Some(*from),
        };
        if !from.is_some_and(|from| cluster.is_peer(from))
            || speaker.is_some_and(|speaker| Some(speaker) != from)
        {
            tracing::warn!(%address, ?from, "frame from a node that is not a peer; closing");
            return;
        }
        speaker = from;
        match frame {
            PeerFrame::Hello {
                node_id,
                kafka_host,
                kafka_port,
                leading,
            } => {
                cluster.heard_from(node_id, kafka_host, kafka_port);
                cluster.heard_leading(node_id, &leading);
            }
            PeerFrame::Raft { ref envelope, .. } if envelope.to != cluster.node_id => {
                tracing::warn!(%address, to = envelope.to, "envelope for another node; closing");
                return;
            }
            other => {
                // Waits while the driver is behind: this connection stops being read.
                let permits = kib_permits(frame_bytes, INBOX_BYTES_MAX);
                let Ok(share) = budget.clone().acquire_many_owned(permits).await else {
                    return;
                };
                let inbound = InboundFrame {
                    frame: other,
                    budget: share,
                };
                if inbox.send(inbound).await.is_err() {
                    return;
                }
            }
        }
    }
}
