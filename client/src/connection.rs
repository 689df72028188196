//! One TCP connection to one broker, with pipelined requests matched by correlation id.
//!
//! ```text
//!  send(request) ──encode──> writer (mutex, flush) ──────────> socket
//!        │                                                        │
//!        └─ waits on a oneshot <── pending[correlation id] <── reader task
//! ```
//!
//! Any number of tasks may call [`Connection::send`] at once (up to
//! [`REQUESTS_IN_FLIGHT_MAX`]); their requests are written in turn and the reader task hands
//! each response frame to the waiter registered under its correlation id. Every request has
//! its own timeout. A timeout or any I/O error closes the connection, failing every request
//! still in flight, as the Java client does: after a timeout, the connection's state is
//! unknown and a later response could be mistaken for a fresh one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use crate::error::{check_error_code, ConnectionError};
use crate::versions::{
    NegotiatedVersions, API_VERSIONS_FALLBACK_VERSION, API_VERSIONS_PREFERRED_VERSION,
};
use crate::wire::{self, WireError, FRAME_BYTES_MAX};

/// The most requests awaiting a response on one connection; more wait for a slot.
pub const REQUESTS_IN_FLIGHT_MAX: usize = 64;
/// The default time allowed to open a TCP connection and finish the ApiVersions handshake.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// The default time allowed for one request, from queueing to its response.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 10_000;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// The client id sent in every request header.
    pub client_id: String,
    /// Time allowed to connect and finish the handshake.
    pub connect_timeout: Duration,
    /// Default time allowed for one request (callers may pass a longer one, e.g. for a Fetch
    /// that the broker holds for `max_wait_ms`).
    pub request_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "skiff-client".to_string(),
            connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS_DEFAULT),
            request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS_DEFAULT),
        }
    }
}

/// Requests waiting for their response, and why the connection closed if it did.
#[derive(Default)]
struct PendingTable {
    waiting: BTreeMap<i32, oneshot::Sender<Bytes>>,
    closed_reason: Option<String>,
}

impl PendingTable {
    /// Marks the connection closed and fails every waiter (dropping a sender wakes its receiver).
    fn close(&mut self, reason: String) {
        if self.closed_reason.is_none() {
            self.closed_reason = Some(reason);
        }
        self.waiting.clear();
    }
}

/// A connected, handshaken connection to one broker.
pub struct Connection {
    address: String,
    client_id: StrBytes,
    request_timeout: Duration,
    writer: tokio::sync::Mutex<WriteHalf<TcpStream>>,
    pending: Arc<Mutex<PendingTable>>,
    next_correlation_id: AtomicI32,
    in_flight: Semaphore,
    versions: NegotiatedVersions,
    reader: JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("address", &self.address)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    /// Connects to `address` ("host:port") and negotiates API versions.
    pub async fn connect(
        address: &str,
        config: &ConnectionConfig,
    ) -> Result<Connection, ConnectionError> {
        let mut connection = Self::open(address, config).await?;
        match connection.handshake(API_VERSIONS_PREFERRED_VERSION).await {
            Ok(versions) => {
                connection.versions = versions;
                Ok(connection)
            }
            Err(
                ConnectionError::Decode { .. }
                | ConnectionError::Closed { .. }
                | ConnectionError::Handshake {
                    error: ResponseError::UnsupportedVersion,
                    ..
                },
            ) => {
                // An older broker answers an ApiVersions version it does not know with a v0
                // body or by closing; retry with the version every broker understands.
                drop(connection);
                let mut connection = Self::open(address, config).await?;
                connection.versions = connection.handshake(API_VERSIONS_FALLBACK_VERSION).await?;
                Ok(connection)
            }
            Err(error) => Err(error),
        }
    }

    async fn open(address: &str, config: &ConnectionConfig) -> Result<Connection, ConnectionError> {
        let stream =
            match tokio::time::timeout(config.connect_timeout, TcpStream::connect(address)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => return Err(io_error(address, &error)),
                Err(_) => {
                    return Err(ConnectionError::Io {
                        address: address.to_string(),
                        message: format!(
                            "connect timed out after {} ms",
                            config.connect_timeout.as_millis()
                        ),
                    })
                }
            };
        // Latency matters more than packet count for a test client; failure is harmless.
        let _ = stream.set_nodelay(true);
        let (read_half, write_half) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(PendingTable::default()));
        let reader = tokio::spawn(read_frames(
            address.to_string(),
            read_half,
            Arc::clone(&pending),
        ));
        Ok(Connection {
            address: address.to_string(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            writer: tokio::sync::Mutex::new(write_half),
            pending,
            next_correlation_id: AtomicI32::new(0),
            in_flight: Semaphore::new(REQUESTS_IN_FLIGHT_MAX),
            versions: NegotiatedVersions::default(),
            reader,
        })
    }

    async fn handshake(&self, version: i16) -> Result<NegotiatedVersions, ConnectionError> {
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request = request
                .with_client_software_name(StrBytes::from_static_str("skiff-client"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        }
        let response: ApiVersionsResponse = self
            .send_with_timeout(&request, version, self.request_timeout)
            .await?;
        check_error_code(response.error_code).map_err(|error| ConnectionError::Handshake {
            address: self.address.clone(),
            error,
        })?;
        let versions = NegotiatedVersions::negotiate(&response.api_keys);
        for api_key in [ApiKey::ApiVersions, ApiKey::Metadata] {
            if versions.version(api_key).is_none() {
                return Err(ConnectionError::UnsupportedApi {
                    address: self.address.clone(),
                    api_key,
                });
            }
        }
        Ok(versions)
    }

    /// The broker address this connection was opened to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the connection has failed or been closed; a closed connection stays closed.
    pub fn is_closed(&self) -> bool {
        lock(&self.pending).closed_reason.is_some()
    }

    /// The default request timeout of this connection.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The negotiated version of `api_key`, or [`ConnectionError::UnsupportedApi`].
    pub fn version(&self, api_key: ApiKey) -> Result<i16, ConnectionError> {
        self.versions
            .version(api_key)
            .ok_or_else(|| ConnectionError::UnsupportedApi {
                address: self.address.clone(),
                api_key,
            })
    }

    /// Sends `request` at `version` and waits for its response for the default request timeout.
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ConnectionError> {
        self.send_with_timeout(request, version, self.request_timeout)
            .await
    }

    /// Sends `request` at `version` and waits at most `timeout` for its response. On timeout
    /// the connection is closed (the request may still be applied by the broker).
    pub async fn send_with_timeout<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, ConnectionError> {
        let api_key = api_key_of::<R>();
        match tokio::time::timeout(timeout, self.round_trip(request, api_key, version)).await {
            Ok(result) => result,
            Err(_) => {
                self.close(format!("{api_key:?} request timed out"));
                Err(ConnectionError::Timeout {
                    address: self.address.clone(),
                    api_key,
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Sends a request that the broker never answers (a Produce with `acks = 0`).
    pub async fn send_without_response<R: Request>(
        &self,
        request: &R,
        version: i16,
    ) -> Result<(), ConnectionError> {
        let api_key = api_key_of::<R>();
        let correlation_id = self.next_correlation_id();
        let frame = self.encode(request, api_key, version, correlation_id)?;
        let timeout = self.request_timeout;
        match tokio::time::timeout(timeout, self.write_frame(frame)).await {
            Ok(result) => result,
            Err(_) => {
                self.close(format!("{api_key:?} write timed out"));
                Err(ConnectionError::Timeout {
                    address: self.address.clone(),
                    api_key,
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
        }
    }

    /// Closes the connection: every request in flight fails with [`ConnectionError::Closed`].
    pub fn close(&self, reason: String) {
        tracing::debug!(address = %self.address, %reason, "closing connection");
        lock(&self.pending).close(reason);
        self.reader.abort();
    }

    async fn round_trip<R: Request>(
        &self,
        request: &R,
        api_key: ApiKey,
        version: i16,
    ) -> Result<R::Response, ConnectionError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .expect("the in-flight semaphore is never closed");
        let correlation_id = self.next_correlation_id();
        let frame = self.encode(request, api_key, version, correlation_id)?;
        let receiver = self.register(correlation_id)?;
        // If this future is dropped (its caller timed out or gave up), the guard removes the
        // waiter so the table never holds more entries than there are permits.
        let _waiter = WaiterGuard {
            pending: &self.pending,
            correlation_id,
        };
        self.write_frame(frame).await?;
        let response_frame = receiver.await.map_err(|_| self.closed_error())?;
        let (header, response) =
            wire::decode_response::<R::Response>(api_key, version, response_frame)
                .map_err(|error| self.wire_error(error, api_key, version))?;
        assert_eq!(header.correlation_id, correlation_id);
        Ok(response)
    }

    fn encode<R: Request>(
        &self,
        request: &R,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes, ConnectionError> {
        wire::encode_request(api_key, version, correlation_id, &self.client_id, request)
            .map_err(|error| self.wire_error(error, api_key, version))
    }

    fn next_correlation_id(&self) -> i32 {
        // Wrapping is fine: far fewer than 2^31 requests are ever in flight at once.
        self.next_correlation_id.fetch_add(1, Ordering::Relaxed) & i32::MAX
    }

    fn register(&self, correlation_id: i32) -> Result<oneshot::Receiver<Bytes>, ConnectionError> {
        let mut pending = lock(&self.pending);
        if let Some(reason) = &pending.closed_reason {
            return Err(ConnectionError::Closed {
                address: self.address.clone(),
                reason: reason.clone(),
            });
        }
        assert!(pending.waiting.len() < REQUESTS_IN_FLIGHT_MAX);
        let (sender, receiver) = oneshot::channel();
        let previous = pending.waiting.insert(correlation_id, sender);
        assert!(previous.is_none(), "correlation id reused while in flight");
        Ok(receiver)
    }

    async fn write_frame(&self, frame: Bytes) -> Result<(), ConnectionError> {
        if self.is_closed() {
            return Err(self.closed_error());
        }
        let mut writer = self.writer.lock().await;
        let result = match writer.write_all(&frame).await {
            Ok(()) => writer.flush().await,
            Err(error) => Err(error),
        };
        result.map_err(|error| {
            self.close(format!("write failed: {error}"));
            io_error(&self.address, &error)
        })
    }

    fn closed_error(&self) -> ConnectionError {
        ConnectionError::Closed {
            address: self.address.clone(),
            reason: lock(&self.pending)
                .closed_reason
                .clone()
                .unwrap_or_else(|| "closed".to_string()),
        }
    }

    fn wire_error(&self, error: WireError, api_key: ApiKey, version: i16) -> ConnectionError {
        match error {
            WireError::Encode(message) => ConnectionError::Encode {
                api_key,
                version,
                message,
            },
            WireError::Decode(message) => {
                self.close(format!("undecodable {api_key:?} response"));
                ConnectionError::Decode {
                    api_key,
                    version,
                    message,
                }
            }
        }
    }
}

/// Removes a request's waiter from the pending table when the request finishes or is dropped.
struct WaiterGuard<'connection> {
    pending: &'connection Mutex<PendingTable>,
    correlation_id: i32,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).waiting.remove(&self.correlation_id);
    }
}

/// The reader task: reads frames until the socket fails, handing each to its waiter.
async fn read_frames(
    address: String,
    mut reader: ReadHalf<TcpStream>,
    pending: Arc<Mutex<PendingTable>>,
) {
    let reason = loop {
        match read_frame(&mut reader).await {
            Ok(frame) => {
                let Some(correlation_id) = wire::peek_correlation_id(&frame) else {
                    break "response frame shorter than its header".to_string();
                };
                let waiter = lock(&pending).waiting.remove(&correlation_id);
                match waiter {
                    // The waiter may have given up; its response is dropped.
                    Some(sender) => drop(sender.send(frame)),
                    None => tracing::debug!(%address, correlation_id, "response nobody awaits"),
                }
            }
            Err(reason) => break reason,
        }
    };
    tracing::debug!(%address, %reason, "connection reader stopped");
    lock(&pending).close(reason);
}

async fn read_frame(reader: &mut ReadHalf<TcpStream>) -> Result<Bytes, String> {
    let mut length = [0_u8; wire::FRAME_LENGTH_PREFIX_BYTES];
    reader
        .read_exact(&mut length)
        .await
        .map_err(|error| format!("read failed: {error}"))?;
    let length = i32::from_be_bytes(length);
    if length < 4 || length as usize > FRAME_BYTES_MAX {
        return Err(format!("invalid frame length {length}"));
    }
    let mut frame = vec![0_u8; length as usize];
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|error| format!("read failed: {error}"))?;
    Ok(Bytes::from(frame))
}

fn api_key_of<R: Request>() -> ApiKey {
    ApiKey::try_from(R::KEY).expect("every Request type has a known API key")
}

fn io_error(address: &str, error: &std::io::Error) -> ConnectionError {
    ConnectionError::Io {
        address: address.to_string(),
        message: error.to_string(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the table inconsistent (each operation is
    // a single insert, remove or clear), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
