//! One client connection: read requests, serve them, write the responses in request order.
//!
//! ```text
//!   reader (this task)                              writer (its own task)
//!   frame ─► decode ─► Produce: append now ───┐     await each queued future in order,
//!                      other: queue as is ────┼──►  write its response, count it done
//!                      (bounded queue)        ┘
//! ```
//!
//! Requests take effect in the order they were sent, as Kafka guarantees: a request other than
//! Produce runs only when the writer reaches it, after every earlier request has completed (an
//! OffsetFetch after an OffsetCommit reads the committed offset). Produce is split: its batches
//! are appended by the reader at once (in order), and only the wait for durability is queued.
//! That lets a client that pipelines produce requests (librdkafka keeps up to five in flight)
//! have them share one fsync, instead of paying one fsync each. Before it appends, the reader
//! waits until every queued non-Produce request has run, so a Produce never overtakes, say, the
//! CreateTopics sent before it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use super::broker::Broker;
use super::handlers;
use super::request_timing::{self, RequestTiming};
use crate::io::clock::Clock;
use crate::io::net::TcpStream;
use crate::io::tasks;
use crate::wire::{self, api_versions_response, FrameError, RequestDecodeError};

/// Socket read buffer per connection.
const CONNECTION_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Requests one connection may have read but not yet answered. Bounds the memory a client can
/// tie up (each queued request holds its frame) and applies back-pressure: the reader stops
/// reading until the writer catches up.
pub const CONNECTION_REQUESTS_IN_FLIGHT_MAX: usize = 16;

/// Who is on the other end, for group membership and logs.
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// A request read and started, waiting for the writer.
struct Queued {
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: ResponseFuture,
    timing: RequestTiming,
}

/// What the writer needs to time requests.
struct Timer {
    clock: Clock,
    slow_threshold: Option<Duration>,
}

/// Serves a connection until the client closes it, misbehaves, or the broker shuts down. Every
/// request already read is finished and answered before this returns.
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: Peer,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(CONNECTION_READ_BUFFER_BYTES, reader);
    let (queue, queued) = mpsc::channel::<Queued>(CONNECTION_REQUESTS_IN_FLIGHT_MAX);
    let (completed_sender, mut completed) = watch::channel(0u64);
    let timer = Timer {
        clock: broker.seams.clock.clone(),
        slow_threshold: broker.config.request_slow_log_ms.map(Duration::from_millis),
    };
    let writer_task = tasks::spawn(write_responses(
        writer,
        queued,
        completed_sender,
        peer.clone(),
        timer,
    ));
    let limit = broker.config.socket_request_bytes_max;
    // Requests queued so far, and the position of the last one that is not a Produce.
    let mut queued_count: u64 = 0;
    let mut barrier: u64 = 0;
    loop {
        let frame = tokio::select! {
            biased;
            frame = wire::read_frame(&mut reader, limit) => frame,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(error)) => {
                tracing::debug!(peer = %peer.address, %error, "connection closed");
                break;
            }
            Err(error) => {
                tracing::warn!(peer = %peer.address, %error, "closing the connection");
                break;
            }
        };
        let mut timing = RequestTiming::new(broker.seams.clock.now());
        let request = match wire::decode_request(frame) {
            Ok(request) => request,
            Err(RequestDecodeError::ApiVersionsTooNew {
                version,
                correlation_id,
            }) => {
                tracing::info!(peer = %peer.address, version, "ApiVersions version too new; answering with version 0");
                let body = ResponseKind::ApiVersions(api_versions_response(
                    ResponseError::UnsupportedVersion.code(),
                ));
                // Answered at version 0, whatever version was asked.
                let answer = Queued {
                    api_key: ApiKey::ApiVersions,
                    version: 0,
                    correlation_id,
                    response: Box::pin(async move { Some(body) }),
                    timing,
                };
                queued_count += 1;
                if queue.send(answer).await.is_err() {
                    break;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(peer = %peer.address, %error, "closing the connection");
                break;
            }
        };
        let (api_key, version, correlation_id) =
            (request.api_key, request.version, request.correlation_id);
        timing.allowed_wait =
            request_timing::allowed_wait(&request.body, broker.config.group_session_timeout_ms_max);
        let response: ResponseFuture = match request.body {
            RequestKind::Produce(body) => {
                if completed.wait_for(|done| *done >= barrier).await.is_err() {
                    break; // The writer is gone: the client closed the connection.
                }
                timing.ordered = Some(broker.seams.clock.now());
                let appended = handlers::produce::append(&broker, version, body).await;
                timing.appended = Some(broker.seams.clock.now());
                // The append woke the partition's syncer or replication driver: let it start
                // before the next request is read (see `tasks::yield_now`).
                tasks::yield_now().await;
                Box::pin(async move { appended.finish().await.map(ResponseKind::Produce) })
            }
            body => {
                barrier = queued_count + 1;
                let broker = broker.clone();
                let peer = peer.clone();
                let request = wire::DecodedRequest { body, ..request };
                Box::pin(async move { handlers::handle(&broker, request, &peer).await })
            }
        };
        queued_count += 1;
        let queued = Queued {
            api_key,
            version,
            correlation_id,
            response,
            timing,
        };
        if queue.send(queued).await.is_err() {
            break;
        }
    }
    drop(queue);
    // The writer answers what was queued, then ends.
    let _ = writer_task.await;
}

/// Awaits queued requests in order and writes their responses.
async fn write_responses<W>(
    mut writer: W,
    mut queued: mpsc::Receiver<Queued>,
    completed: watch::Sender<u64>,
    peer: Peer,
    timer: Timer,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    while let Some(mut request) = queued.recv().await {
        request.timing.dequeued = Some(timer.clock.now());
        let response = request.response.await;
        request.timing.completed = Some(timer.clock.now());
        completed.send_modify(|done| *done += 1);
        let Some(response) = response else {
            continue; // acks=0 produce: no response.
        };
        if write_response(
            &mut writer,
            request.api_key,
            request.version,
            request.correlation_id,
            &response,
        )
        .await
        .is_err()
        {
            tracing::debug!(peer = %peer.address, "stopped writing responses");
            return;
        }
        let written = timer.clock.now();
        if let Some(phases) = request.timing.slow_phases(written, timer.slow_threshold) {
            tracing::warn!(peer = %peer.address, api = ?request.api_key,
                correlation_id = request.correlation_id, total = ?phases.total,
                ordering = ?phases.ordering, append = ?phases.append,
                behind_earlier = ?phases.behind_earlier, completion = ?phases.completion,
                write = ?phases.write, "slow request");
        }
    }
}

async fn write_response<W>(
    writer: &mut W,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), ()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let frame = match wire::encode_response(api_key, version, correlation_id, body) {
        Ok(frame) => frame,
        Err(error) => {
            // A response the codec cannot encode at the negotiated version is a broker bug;
            // closing the connection lets the client retry elsewhere instead of hanging.
            tracing::error!(?api_key, version, %error, "could not encode a response");
            return Err(());
        }
    };
    let written = async {
        writer.write_all(&frame).await?;
        writer.flush().await
    };
    written
        .await
        .map_err(|error| tracing::debug!(%error, "could not write a response"))
}
