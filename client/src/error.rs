//! Error types, one enum per operation.
//!
//! Transport failures ([`ConnectionError`]) are kept apart from errors the broker reports
//! with a Kafka error code ([`ResponseError`]), so a caller can tell "the request may or may
//! not have been applied" (a timeout or a dropped connection) from "the broker refused it".

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// A failure of one TCP connection or of one request on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    /// Connecting, reading or writing failed at the socket level.
    #[error("I/O error talking to {address}: {message}")]
    Io {
        /// The broker address.
        address: String,
        /// The operating system's description.
        message: String,
    },
    /// No response arrived within the request's own timeout. The request may have been applied.
    #[error("{api_key:?} request to {address} timed out after {timeout_ms} ms")]
    Timeout {
        /// The broker address.
        address: String,
        /// The API of the request that timed out.
        api_key: ApiKey,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The connection was closed (by the peer, by an earlier failure or by a timeout).
    #[error("connection to {address} is closed: {reason}")]
    Closed {
        /// The broker address.
        address: String,
        /// Why it closed.
        reason: String,
    },
    /// A frame length was negative or above [`crate::wire::FRAME_BYTES_MAX`].
    #[error("frame of {bytes} bytes from {address} is outside the allowed size")]
    FrameSize {
        /// The broker address.
        address: String,
        /// The announced frame length.
        bytes: i64,
    },
    /// A request could not be encoded (a programming error in building it, usually a field
    /// that the negotiated version does not have).
    #[error("cannot encode {api_key:?} v{version}: {message}")]
    Encode {
        /// The API being encoded.
        api_key: ApiKey,
        /// The version used.
        version: i16,
        /// The encoder's description.
        message: String,
    },
    /// A response could not be decoded.
    #[error("cannot decode {api_key:?} v{version} response: {message}")]
    Decode {
        /// The API being decoded.
        api_key: ApiKey,
        /// The version used.
        version: i16,
        /// The decoder's description.
        message: String,
    },
    /// The broker supports no version of this API that the client also supports.
    #[error("broker {address} supports no version of {api_key:?} that this client supports")]
    UnsupportedApi {
        /// The broker address.
        address: String,
        /// The API without a common version.
        api_key: ApiKey,
    },
    /// The broker refused the ApiVersions handshake.
    #[error("ApiVersions handshake with {address} failed: {error}")]
    Handshake {
        /// The broker address.
        address: String,
        /// The broker's error code.
        error: ResponseError,
    },
}

impl ConnectionError {
    /// Whether the request may be retried on a fresh connection. Every transport failure is
    /// retriable; encoding errors and version mismatches are not.
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            ConnectionError::Io { .. }
                | ConnectionError::Timeout { .. }
                | ConnectionError::Closed { .. }
                | ConnectionError::FrameSize { .. }
                | ConnectionError::Decode { .. }
        )
    }
}

/// A failure to learn or use the cluster layout (metadata, leaders, coordinators).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClusterError {
    /// A request failed in transport.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// None of the bootstrap or known brokers could be reached.
    #[error("no broker reachable (last error: {last_error})")]
    NoBrokerReachable {
        /// The last connection error seen.
        last_error: String,
    },
    /// The topic does not exist.
    #[error("unknown topic {topic}")]
    UnknownTopic {
        /// The topic name.
        topic: String,
    },
    /// The partition does not exist in the topic.
    #[error("unknown partition {topic}-{partition}")]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// The partition currently has no leader.
    #[error("partition {topic}-{partition} has no leader")]
    LeaderNotAvailable {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// Metadata names a broker id that has no known address.
    #[error("broker {broker_id} has no known address")]
    UnknownBroker {
        /// The broker id.
        broker_id: i32,
    },
    /// The broker answered with an error code.
    #[error("broker error: {0}")]
    Broker(ResponseError),
}

impl ClusterError {
    /// Whether refreshing metadata and retrying may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClusterError::Connection(error) => error.is_retriable(),
            ClusterError::NoBrokerReachable { .. }
            | ClusterError::UnknownTopic { .. }
            | ClusterError::UnknownPartition { .. }
            | ClusterError::LeaderNotAvailable { .. }
            | ClusterError::UnknownBroker { .. } => true,
            ClusterError::Broker(error) => error.is_retriable(),
        }
    }
}

/// A failure of an administrative request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdminError {
    /// The cluster layout could not be learnt or a request failed in transport.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The topic already exists (CreateTopics).
    #[error("topic {topic} already exists")]
    TopicAlreadyExists {
        /// The topic name.
        topic: String,
    },
    /// The broker refused the request for one topic.
    #[error("{operation} of topic {topic} failed: {error} ({message})")]
    Topic {
        /// `"create"`, `"delete"` or `"alter the settings of"`.
        operation: &'static str,
        /// The topic name.
        topic: String,
        /// The broker's error code.
        error: ResponseError,
        /// The broker's error message, if any.
        message: String,
    },
    /// Waiting for a condition ran out of time.
    #[error("timed out waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
    },
}

impl From<ConnectionError> for AdminError {
    fn from(error: ConnectionError) -> Self {
        AdminError::Cluster(ClusterError::Connection(error))
    }
}

/// A failure to produce one batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The cluster layout could not be learnt or a request failed in transport, and retries
    /// were exhausted. The batch may or may not have been written.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The broker refused the batch with a non-retriable error, or retries were exhausted on a
    /// retriable one.
    #[error("produce to {topic}-{partition} failed: {error}")]
    Broker {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The broker's error code.
        error: ResponseError,
    },
    /// The broker saw a sequence gap: data may have been lost. The producer stops and every
    /// later send fails with [`ProduceError::ProducerFailed`].
    #[error("out-of-order sequence number on {topic}-{partition}; the producer is stopped")]
    OutOfOrderSequence {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// An earlier fatal error (out-of-order sequence, fencing) stopped this producer.
    #[error("the producer stopped after a fatal error: {reason}")]
    ProducerFailed {
        /// The fatal error that stopped it.
        reason: String,
    },
    /// The last attempt failed but an earlier one may have been written (it timed out or its
    /// connection broke after sending): whether the records are in the log is unknown. A
    /// history checker must treat this as "maybe" (Jepsen's `:info`), never as "not written".
    #[error("the write may or may not have happened; last error: {last_error}")]
    Indeterminate {
        /// The last attempt's error.
        last_error: String,
    },
    /// The batch was empty or larger than the configured bounds.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// Why it is invalid.
        reason: String,
    },
}

impl ProduceError {
    /// Whether the records may have been written despite the error. `false` means they
    /// were certainly not written.
    pub fn is_indeterminate(&self) -> bool {
        match self {
            ProduceError::Indeterminate { .. } => true,
            // The broker rejected this batch, or it was never sent.
            ProduceError::OutOfOrderSequence { .. } | ProduceError::ProducerFailed { .. } => false,
            ProduceError::Cluster(ClusterError::Connection(error)) => matches!(
                error,
                ConnectionError::Timeout { .. }
                    | ConnectionError::Closed { .. }
                    | ConnectionError::Io { .. }
                    | ConnectionError::Decode { .. }
                    | ConnectionError::FrameSize { .. }
            ),
            _ => false,
        }
    }
}

impl From<ConnectionError> for ProduceError {
    fn from(error: ConnectionError) -> Self {
        ProduceError::Cluster(ClusterError::Connection(error))
    }
}

/// A failure while consuming: fetching, resolving positions, or group membership.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConsumeError {
    /// The cluster layout could not be learnt or a request failed in transport.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The fetch position is out of range and the reset policy is [`crate::OffsetReset::None`].
    #[error("offset {offset} out of range on {topic}-{partition}")]
    OffsetOutOfRange {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The position that was out of range.
        offset: i64,
    },
    /// The partition is not assigned to this consumer.
    #[error("partition {topic}-{partition} is not assigned")]
    NotAssigned {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
    },
    /// The operation needs a consumer group but none is configured.
    #[error("no group id configured")]
    NoGroup,
    /// The group rebalanced under us; the commit was refused. The consumer rejoins on the
    /// next poll.
    #[error("the group is rebalancing or this member was removed: {error}")]
    RebalanceNeeded {
        /// The broker's error code.
        error: ResponseError,
    },
    /// An OffsetCommit was sent but no answer came (a timeout or a broken connection). It
    /// may still take effect, even after a later commit: it is not retried, since a retry
    /// could succeed first and then be overwritten by this attempt arriving late.
    #[error("the offset commit's outcome is unknown: {reason}")]
    CommitOutcomeUnknown {
        /// What went wrong in transport.
        reason: String,
    },
    /// The broker refused a request with a Kafka error.
    #[error("{operation} failed: {error}")]
    Broker {
        /// The request that failed.
        operation: &'static str,
        /// The broker's error code.
        error: ResponseError,
    },
    /// A fetched record batch could not be decoded.
    #[error("corrupt record batch from {topic}-{partition}: {message}")]
    CorruptBatch {
        /// The topic name.
        topic: String,
        /// The partition index.
        partition: i32,
        /// The decoder's description.
        message: String,
    },
    /// Joining the group did not finish within the bounded number of attempts.
    #[error("could not join group {group_id}: {reason}")]
    JoinFailed {
        /// The group id.
        group_id: String,
        /// The last reason.
        reason: String,
    },
}

impl From<ConnectionError> for ConsumeError {
    fn from(error: ConnectionError) -> Self {
        ConsumeError::Cluster(ClusterError::Connection(error))
    }
}

/// Turns a Kafka error code into `Ok(())` for 0 and the matching [`ResponseError`] otherwise.
pub fn check_error_code(code: i16) -> Result<(), ResponseError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(error),
    }
}
