//! The producer: partitioning, batch encoding, the idempotent sequence protocol and retries.
//!
//! ```text
//!  send(topic, partition?, key, value)      send_batch(topic, partition, records)
//!        │ partitioner (murmur2 / round-robin)        │
//!        └───────────────┬────────────────────────────┘
//!                        ▼
//!   [idempotent: lock the partition, stamp producer id, epoch, next sequence]
//!                        ▼
//!   Produce ──> leader ──> ok / DUPLICATE_SEQUENCE_NUMBER  ─> acknowledge the sequence
//!                      ──> stale metadata, transport error ─> refresh, retry the same bytes
//!                      ──> OUT_OF_ORDER_SEQUENCE_NUMBER     ─> the producer stops (fatal)
//! ```
//!
//! By default each call sends its records as one batch straight away; with
//! [`ProducerConfig::linger`] set, concurrent [`Producer::send`] calls to one partition share
//! a batch (see `accumulator.rs`), and [`Producer::send_batch`] always sends its records as
//! one batch. Calls from several tasks run
//! concurrently and are pipelined on the leader's connection; with idempotence, calls for the
//! same partition are serialized so that at most one batch per partition is in flight, which
//! keeps the sequence bookkeeping exact across retries.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::accumulator::{Accumulator, Enqueued, PendingBatch};
use crate::cluster::{is_stale_metadata, ClientConfig, Cluster};
use crate::connection::Connection;
use crate::error::{check_error_code, ClusterError, ProduceError};
use crate::partitioner::{partition_for_key, RoundRobin};
use crate::records::{encode_batch, BatchIdentity, KeyValue};
pub use crate::sequence::ProducerIdentity;
use crate::sequence::SequenceNumbers;

/// The default bound on attempts after the first one.
pub const RETRIES_MAX_DEFAULT: u32 = 10;
/// The most records one batch may hold.
pub const BATCH_RECORDS_MAX: usize = 10_000;
/// The default number of records at which a lingering batch is sent.
pub const BATCH_RECORDS_DEFAULT: usize = 1_000;
/// The longest linger time allowed.
pub const LINGER_MS_MAX: u64 = 1_000;
/// The default bound on the encoded size of one batch.
pub const BATCH_BYTES_MAX_DEFAULT: usize = 1024 * 1024;
/// Extra time the client waits beyond the broker-side produce timeout before giving up.
pub const PRODUCE_RESPONSE_MARGIN_MS: u64 = 1_000;
/// The transaction timeout sent with InitProducerId (unused without transactions).
pub const TRANSACTION_TIMEOUT_MS: i32 = 60_000;
/// The most attempts to obtain a producer id.
pub const INIT_PRODUCER_ID_ATTEMPTS_MAX: u32 = 20;

const _: () = assert!(BATCH_BYTES_MAX_DEFAULT <= crate::wire::FRAME_BYTES_MAX);
const _: () = assert!(BATCH_RECORDS_DEFAULT <= BATCH_RECORDS_MAX);

/// How many replicas must have a batch before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// `acks = 0`: the broker sends no response; offsets are unknown (-1).
    None,
    /// `acks = 1`: the leader has it.
    Leader,
    /// `acks = -1`: every in-sync replica has it.
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire_value(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// Where record timestamps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTimestamp {
    /// The system clock (simulated under madsim, which intercepts `clock_gettime`).
    SystemClock,
    /// A fixed value, for fully reproducible batches.
    Fixed(i64),
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Acknowledgement level. Idempotence needs [`Acks::All`].
    pub acks: Acks,
    /// Whether to use a producer id and sequence numbers so retries never duplicate.
    pub idempotence: bool,
    /// Time the broker may take to replicate (sent as the produce timeout) and, plus
    /// [`PRODUCE_RESPONSE_MARGIN_MS`], the client waits for a response.
    pub request_timeout: Duration,
    /// Attempts after the first one for retriable failures.
    pub retries_max: u32,
    /// Bound on the encoded size of one batch.
    pub batch_bytes_max: usize,
    /// How long [`Producer::send`] waits for more records to the same partition before
    /// sending a batch (zero: every send is its own batch). At most [`LINGER_MS_MAX`].
    pub linger: Duration,
    /// A lingering batch is sent as soon as it holds this many records.
    pub batch_records_max: usize,
    /// Seed of the round-robin partitioner for records without a key.
    pub partitioner_seed: u64,
    /// Where record timestamps come from.
    pub timestamp: RecordTimestamp,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            idempotence: true,
            request_timeout: Duration::from_millis(crate::connection::REQUEST_TIMEOUT_MS_DEFAULT),
            retries_max: RETRIES_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX_DEFAULT,
            linger: Duration::ZERO,
            batch_records_max: BATCH_RECORDS_DEFAULT,
            partitioner_seed: 0,
            timestamp: RecordTimestamp::SystemClock,
        }
    }
}

/// Where an acknowledged record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 when unknown (`acks = 0`, or a duplicate whose offset the
    /// broker did not report).
    pub offset: i64,
}

/// The outcome of one produce attempt.
enum AttemptError {
    /// Worth retrying after a metadata refresh.
    Retriable(ProduceError, Option<Arc<Connection>>),
    /// The broker refused the batch; it was not written.
    Refused(ProduceError),
    /// The producer cannot continue.
    Fatal(ProduceError),
}

/// One async lock per partition, serializing idempotent sends to it.
type PartitionLocks = BTreeMap<(String, i32), Arc<tokio::sync::Mutex<()>>>;

/// A Kafka producer. Every method takes `&self`; share it between tasks with an `Arc`.
pub struct Producer {
    core: Arc<ProducerCore>,
}

/// The producer's state, shared with the tasks that flush lingering batches.
struct ProducerCore {
    cluster: Arc<Cluster>,
    config: ProducerConfig,
    /// Serializes InitProducerId so concurrent sends obtain one identity, not several.
    identity_initialization: tokio::sync::Mutex<()>,
    sequences: Mutex<SequenceNumbers>,
    partition_locks: Mutex<PartitionLocks>,
    round_robin: Mutex<RoundRobin>,
    fatal_error: Mutex<Option<String>>,
    accumulator: Mutex<Accumulator>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("config", &self.core.config)
            .finish()
    }
}

impl Producer {
    /// Connects to the cluster and, with idempotence, obtains a producer id.
    pub async fn connect(
        client: ClientConfig,
        config: ProducerConfig,
    ) -> Result<Producer, ProduceError> {
        let cluster = Cluster::connect(client).await?;
        Producer::new(cluster, config).await
    }

    /// A producer over an existing cluster handle; with idempotence, obtains a producer id.
    pub async fn new(
        cluster: Arc<Cluster>,
        config: ProducerConfig,
    ) -> Result<Producer, ProduceError> {
        assert!(
            !config.idempotence || config.acks == Acks::All,
            "idempotence requires acks = all"
        );
        assert!(
            config.batch_bytes_max > 0 && config.batch_bytes_max <= crate::wire::FRAME_BYTES_MAX
        );
        assert!(
            config.batch_records_max > 0 && config.batch_records_max <= BATCH_RECORDS_MAX,
            "batch_records_max must be within 1..={BATCH_RECORDS_MAX}"
        );
        assert!(
            config.linger <= Duration::from_millis(LINGER_MS_MAX),
            "linger is bounded by {LINGER_MS_MAX} ms"
        );
        let core = ProducerCore {
            round_robin: Mutex::new(RoundRobin::new(config.partitioner_seed)),
            cluster,
            config,
            identity_initialization: tokio::sync::Mutex::new(()),
            sequences: Mutex::new(SequenceNumbers::default()),
            partition_locks: Mutex::new(BTreeMap::new()),
            fatal_error: Mutex::new(None),
            accumulator: Mutex::new(Accumulator::default()),
        };
        if core.config.idempotence {
            core.ensure_identity().await?;
        }
        Ok(Producer {
            core: Arc::new(core),
        })
    }

    /// The cluster handle this producer uses.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.core.cluster
    }

    /// The producer id and epoch in use, if idempotent and initialized.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        lock(&self.core.sequences).identity()
    }

    /// Sends one record and waits for its acknowledgement. With `partition = None` the
    /// partition is murmur2 of the key, or round-robin when the key is null. With a linger
    /// time, records sent to one partition within it (by concurrent callers) share a batch.
    pub async fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<Bytes>,
        value: Option<Bytes>,
    ) -> Result<RecordMetadata, ProduceError> {
        let partition = match partition {
            Some(partition) => partition,
            None => self.core.choose_partition(topic, key.as_deref()).await?,
        };
        let offset = if self.core.config.linger.is_zero() {
            self.core
                .send_batch(topic, partition, vec![(key, value)])
                .await?
        } else {
            self.send_lingering(topic, partition, (key, value)).await?
        };
        Ok(RecordMetadata {
            topic: topic.to_string(),
            partition,
            offset,
        })
    }

    /// Sends `records` to one partition as a single batch and returns the offset of the
    /// first one (-1 when unknown).
    pub async fn send_batch(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<KeyValue>,
    ) -> Result<i64, ProduceError> {
        self.core.send_batch(topic, partition, records).await
    }

    async fn send_lingering(
        &self,
        topic: &str,
        partition: i32,
        record: KeyValue,
    ) -> Result<i64, ProduceError> {
        let (waiter, result) = tokio::sync::oneshot::channel();
        let enqueued = lock(&self.core.accumulator).enqueue(
            topic,
            partition,
            record,
            waiter,
            self.core.config.batch_records_max,
        );
        let index = match enqueued {
            Enqueued::ScheduleFlush { id, index } => {
                let core = Arc::clone(&self.core);
                let topic = topic.to_string();
                tokio::spawn(async move {
                    tokio::time::sleep(core.config.linger).await;
                    let batch = lock(&core.accumulator).take(&topic, partition, id);
                    if let Some(batch) = batch {
                        core.flush(&topic, partition, batch).await;
                    }
                });
                index
            }
            Enqueued::FlushNow { batch, index } => {
                let core = Arc::clone(&self.core);
                let topic = topic.to_string();
                tokio::spawn(async move { core.flush(&topic, partition, batch).await });
                index
            }
            Enqueued::Joined { index } => index,
        };
        let base_offset = result.await.map_err(|_| ProduceError::ProducerFailed {
            reason: "the task flushing the batch stopped".to_string(),
        })??;
        Ok(if base_offset < 0 {
            base_offset
        } else {
            base_offset + index as i64
        })
    }
}

impl ProducerCore {
    /// Sends a lingering batch and hands every waiter its result.
    async fn flush(&self, topic: &str, partition: i32, batch: PendingBatch) {
        let result = self.send_batch(topic, partition, batch.records).await;
        for waiter in batch.waiters {
            // A waiter that gave up has dropped its receiver; nothing to deliver.
            let _ = waiter.send(result.clone());
        }
    }

    /// Sends `records` to one partition as a single batch and returns the offset of the
    /// first one (-1 when unknown).
    pub async fn send_batch(
        &self,
        topic: &str,
        partition: i32,
        records: Vec<KeyValue>,
    ) -> Result<i64, ProduceError> {
        if records.is_empty() || records.len() > BATCH_RECORDS_MAX {
            return Err(ProduceError::InvalidBatch {
                reason: format!(
                    "{} records (allowed: 1 to {BATCH_RECORDS_MAX})",
                    records.len()
                ),
            });
        }
        self.check_not_failed()?;
        if !self.config.idempotence {
            let batch = self.encode(&records, None)?;
            return self.produce_with_retries(topic, partition, batch).await;
        }
        let partition_lock = self.partition_lock(topic, partition);
        let _serialized = partition_lock.lock().await;
        self.check_not_failed()?;
        let (identity, base_sequence) = self.stamp(topic, partition).await?;
        let batch = self.encode(
            &records,
            Some(BatchIdentity {
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                base_sequence,
            }),
        )?;
        let result = self.produce_with_retries(topic, partition, batch).await;
        match &result {
            Ok(_) => {
                let current = lock(&self.sequences).acknowledge(
                    identity,
                    topic,
                    partition,
                    base_sequence,
                    records.len() as i32,
                );
                if !current {
                    tracing::debug!(topic, partition, "acknowledged under a replaced identity");
                }
            }
            Err(_) if lock(&self.fatal_error).is_some() => {}
            Err(error) => {
                // The outcome may be unknown (a timeout, or retries exhausted after the broker
                // appended the batch). Reusing this sequence for different records could then
                // be acknowledged as a duplicate without being written, so move to the next
                // epoch, which restarts sequences and fences late copies of this batch; a
                // resend by the caller may duplicate, as in Java.
                tracing::warn!(topic, partition, %error, "produce failed; bumping the producer epoch");
                lock(&self.sequences).bump_epoch(identity);
            }
        }
        result
    }

    async fn choose_partition(&self, topic: &str, key: Option<&[u8]>) -> Result<i32, ProduceError> {
        let partition_count = self.cluster.partition_count(topic).await?;
        Ok(match key {
            Some(key) => partition_for_key(key, partition_count),
            None => lock(&self.round_robin).next(topic, partition_count),
        })
    }

    fn encode(
        &self,
        records: &[KeyValue],
        identity: Option<BatchIdentity>,
    ) -> Result<Bytes, ProduceError> {
        let timestamp_ms = match self.config.timestamp {
            RecordTimestamp::SystemClock => system_time_ms(),
            RecordTimestamp::Fixed(timestamp_ms) => timestamp_ms,
        };
        let batch = encode_batch(records, timestamp_ms, identity)
            .map_err(|reason| ProduceError::InvalidBatch { reason })?;
        if batch.len() > self.config.batch_bytes_max {
            return Err(ProduceError::InvalidBatch {
                reason: format!(
                    "{} bytes encoded, above the bound of {}",
                    batch.len(),
                    self.config.batch_bytes_max
                ),
            });
        }
        Ok(batch)
    }

    async fn produce_with_retries(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64, ProduceError> {
        let mut attempt = 0;
        // Whether some failed attempt may still have been written, which turns a final
        // failure into an indeterminate one.
        let mut maybe_written = false;
        loop {
            match self.produce_once(topic, partition, batch.clone()).await {
                Ok(offset) => return Ok(offset),
                Err(AttemptError::Refused(error)) => {
                    return Err(indeterminate_if(maybe_written, error));
                }
                Err(AttemptError::Fatal(error)) => {
                    *lock(&self.fatal_error) = Some(error.to_string());
                    return Err(error);
                }
                Err(AttemptError::Retriable(error, connection)) => {
                    maybe_written |= may_have_been_written(&error, connection.is_some());
                    if attempt >= self.config.retries_max {
                        return Err(indeterminate_if(maybe_written, error));
                    }
                    attempt += 1;
                    tracing::debug!(topic, partition, attempt, %error, "retrying produce");
                    self.cluster
                        .recover(connection.as_ref(), &[topic.to_string()])
                        .await;
                    self.cluster.backoff().await;
                }
            }
        }
    }

    async fn produce_once(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<i64, AttemptError> {
        let (_, connection) = self
            .cluster
            .leader_connection(topic, partition)
            .await
            .map_err(|error| classify_cluster_error(error, None))?;
        let version = connection
            .version(ApiKey::Produce)
            .map_err(|error| AttemptError::Refused(error.into()))?;
        let request = produce_request(
            topic,
            partition,
            batch,
            self.config.acks,
            self.config.request_timeout,
        );
        if self.config.acks == Acks::None {
            connection
                .send_without_response(&request, version)
                .await
                .map_err(|error| classify_cluster_error(error.into(), Some(&connection)))?;
            return Ok(-1);
        }
        let timeout =
            self.config.request_timeout + Duration::from_millis(PRODUCE_RESPONSE_MARGIN_MS);
        let response = connection
            .send_with_timeout(&request, version, timeout)
            .await
            .map_err(|error| classify_cluster_error(error.into(), Some(&connection)))?;
        let (error_code, base_offset) =
            partition_result(&response, topic, partition).ok_or_else(|| {
                AttemptError::Retriable(
                    ProduceError::Broker {
                        topic: topic.to_string(),
                        partition,
                        error: ResponseError::UnknownServerError,
                    },
                    Some(Arc::clone(&connection)),
                )
            })?;
        classify_produce_result(topic, partition, error_code, base_offset).map_err(|error| {
            match error {
                AttemptError::Retriable(error, _) => {
                    AttemptError::Retriable(error, Some(Arc::clone(&connection)))
                }
                other => other,
            }
        })
    }

    fn check_not_failed(&self) -> Result<(), ProduceError> {
        match lock(&self.fatal_error).as_ref() {
            Some(reason) => Err(ProduceError::ProducerFailed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn partition_lock(&self, topic: &str, partition: i32) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = lock(&self.partition_locks);
        Arc::clone(
            locks
                .entry((topic.to_string(), partition))
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        )
    }

    /// The identity and next base sequence for a batch to this partition, obtaining an
    /// identity with InitProducerId when there is none.
    async fn stamp(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(ProducerIdentity, i32), ProduceError> {
        for _ in 0..INIT_PRODUCER_ID_ATTEMPTS_MAX {
            if let Some(stamp) = lock(&self.sequences).stamp(topic, partition) {
                return Ok(stamp);
            }
            self.ensure_identity().await?;
        }
        Err(ProduceError::ProducerFailed {
            reason: "the producer identity kept being replaced".to_string(),
        })
    }

    /// Obtains a producer identity unless one is installed.
    async fn ensure_identity(&self) -> Result<(), ProduceError> {
        let _initializing = self.identity_initialization.lock().await;
        if lock(&self.sequences).identity().is_some() {
            return Ok(());
        }
        let fresh = self.init_producer_id().await?;
        tracing::debug!(?fresh, "obtained producer id");
        lock(&self.sequences).install(fresh);
        Ok(())
    }

    async fn init_producer_id(&self) -> Result<ProducerIdentity, ProduceError> {
        let mut last_error = None;
        for _ in 0..INIT_PRODUCER_ID_ATTEMPTS_MAX {
            let connection = match self.cluster.any_connection().await {
                Ok(connection) => connection,
                Err(error) => {
                    last_error = Some(ProduceError::from(error));
                    self.cluster.backoff().await;
                    continue;
                }
            };
            let version = connection.version(ApiKey::InitProducerId)?;
            let request = InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(TRANSACTION_TIMEOUT_MS);
            match connection.send(&request, version).await {
                Ok(response) => match check_error_code(response.error_code) {
                    Ok(()) => {
                        return Ok(ProducerIdentity {
                            producer_id: response.producer_id.0,
                            producer_epoch: response.producer_epoch,
                        })
                    }
                    Err(error) if error.is_retriable() || is_stale_metadata(error) => {
                        last_error = Some(ProduceError::Cluster(ClusterError::Broker(error)));
                    }
                    Err(error) => return Err(ProduceError::Cluster(ClusterError::Broker(error))),
                },
                Err(error) => {
                    self.cluster.forget_connection(&connection).await;
                    last_error = Some(error.into());
                }
            }
            self.cluster.backoff().await;
        }
        Err(last_error.expect("at least one attempt was made"))
    }
}

/// Builds a Produce request for one batch to one partition.
pub fn produce_request(
    topic: &str,
    partition: i32,
    batch: Bytes,
    acks: Acks,
    timeout: Duration,
) -> ProduceRequest {
    let partition_data = PartitionProduceData::default()
        .with_index(partition)
        .with_records(Some(batch));
    let topic_data = TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![partition_data]);
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks.wire_value())
        .with_timeout_ms(timeout.as_millis().min(i32::MAX as u128) as i32)
        .with_topic_data(vec![topic_data])
}

/// The error code and base offset of one partition in a Produce response.
fn partition_result(response: &ProduceResponse, topic: &str, partition: i32) -> Option<(i16, i64)> {
    response
        .responses
        .iter()
        .filter(|topic_response| topic_response.name.as_str() == topic)
        .flat_map(|topic_response| topic_response.partition_responses.iter())
        .find(|partition_response| partition_response.index == partition)
        .map(|partition_response| {
            (
                partition_response.error_code,
                partition_response.base_offset,
            )
        })
}

/// Sorts a partition's produce result into success, retry, refusal or a fatal error.
fn classify_produce_result(
    topic: &str,
    partition: i32,
    error_code: i16,
    base_offset: i64,
) -> Result<i64, AttemptError> {
    let Err(error) = check_error_code(error_code) else {
        return Ok(base_offset);
    };
    let broker_error = ProduceError::Broker {
        topic: topic.to_string(),
        partition,
        error,
    };
    match error {
        // The broker already has this batch: a retry of an acknowledged write.
        ResponseError::DuplicateSequenceNumber => Ok(base_offset),
        ResponseError::OutOfOrderSequenceNumber => {
            Err(AttemptError::Fatal(ProduceError::OutOfOrderSequence {
                topic: topic.to_string(),
                partition,
            }))
        }
        ResponseError::InvalidProducerEpoch
        | ResponseError::ProducerFenced
        | ResponseError::UnknownProducerId
        | ResponseError::InvalidProducerIdMapping
        | ResponseError::ClusterAuthorizationFailed
        | ResponseError::TransactionalIdAuthorizationFailed => {
            Err(AttemptError::Fatal(broker_error))
        }
        error if error.is_retriable() || is_stale_metadata(error) => {
            Err(AttemptError::Retriable(broker_error, None))
        }
        _ => Err(AttemptError::Refused(broker_error)),
    }
}

/// Whether a failed attempt may have been appended: a transport failure after the request
/// was handed to a connection, or a broker error reported after appending. A replicated
/// partition's leader that loses its leadership while an acks=-1 batch waits for the quorum
/// answers NOT_LEADER_OR_FOLLOWER after the append, as Kafka does, and the next leader may
/// well have committed the batch; the same code before an append cannot be told apart.
fn may_have_been_written(error: &ProduceError, sent: bool) -> bool {
    match error {
        ProduceError::Cluster(ClusterError::Connection(_)) => sent,
        ProduceError::Broker { error, .. } => matches!(
            error,
            ResponseError::RequestTimedOut
                | ResponseError::NotEnoughReplicasAfterAppend
                | ResponseError::NotLeaderOrFollower
        ),
        _ => false,
    }
}

fn indeterminate_if(maybe_written: bool, error: ProduceError) -> ProduceError {
    if maybe_written {
        ProduceError::Indeterminate {
            last_error: error.to_string(),
        }
    } else {
        error
    }
}

fn classify_cluster_error(
    error: ClusterError,
    connection: Option<&Arc<Connection>>,
) -> AttemptError {
    if error.is_retriable() {
        AttemptError::Retriable(ProduceError::Cluster(error), connection.cloned())
    } else {
        AttemptError::Refused(ProduceError::Cluster(error))
    }
}

fn system_time_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each guarded value is updated by whole operations, so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn duplicate_is_success_and_out_of_order_is_fatal() {
        assert!(matches!(classify_produce_result("t", 0, 0, 12), Ok(12)));
        assert!(matches!(
            classify_produce_result("t", 0, ResponseError::DuplicateSequenceNumber.code(), 12),
            Ok(12)
        ));
        assert!(matches!(
            classify_produce_result("t", 0, ResponseError::OutOfOrderSequenceNumber.code(), -1),
            Err(AttemptError::Fatal(ProduceError::OutOfOrderSequence { .. }))
        ));
        assert!(matches!(
            classify_produce_result("t", 0, ResponseError::NotLeaderOrFollower.code(), -1),
            Err(AttemptError::Retriable(..))
        ));
        assert!(matches!(
            classify_produce_result("t", 0, ResponseError::NotEnoughReplicas.code(), -1),
            Err(AttemptError::Retriable(..))
        ));
        assert!(matches!(
            classify_produce_result("t", 0, ResponseError::MessageTooLarge.code(), -1),
            Err(AttemptError::Refused(..))
        ));
    }

    #[test]
    fn transport_failures_after_sending_are_indeterminate() {
        let timeout = ProduceError::from(crate::error::ConnectionError::Timeout {
            address: "broker:9092".to_string(),
            api_key: ApiKey::Produce,
            timeout_ms: 1,
        });
        assert!(may_have_been_written(&timeout, true));
        assert!(!may_have_been_written(&timeout, false));
        let not_leader = ProduceError::Broker {
            topic: "t".to_string(),
            partition: 0,
            error: ResponseError::NotLeaderOrFollower,
        };
        assert!(
            may_have_been_written(&not_leader, true),
            "a leader that loses its leadership after appending answers NOT_LEADER_OR_FOLLOWER"
        );
        let unknown = ProduceError::Broker {
            topic: "t".to_string(),
            partition: 0,
            error: ResponseError::UnknownTopicOrPartition,
        };
        assert!(!may_have_been_written(&unknown, true));
        assert!(matches!(
            indeterminate_if(true, not_leader.clone()),
            ProduceError::Indeterminate { .. }
        ));
        assert!(matches!(
            indeterminate_if(false, not_leader),
            ProduceError::Broker { .. }
        ));
        assert!(ProduceError::Indeterminate {
            last_error: String::new()
        }
        .is_indeterminate());
    }

    #[test]
    fn produce_request_round_trips_at_every_client_version() {
        let batch = encode_batch(&[(None, Some(Bytes::from("v")))], 1, None).expect("encodes");
        let request = produce_request("t", 3, batch, Acks::All, Duration::from_secs(5));
        for version in 3..=12 {
            let mut buffer = bytes::BytesMut::new();
            request.encode(&mut buffer, version).expect("encodes");
            let decoded = ProduceRequest::decode(&mut buffer.freeze(), version).expect("decodes");
            assert_eq!(decoded, request);
        }
    }
}
