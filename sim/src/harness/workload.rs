//! The clients: producers and consumers recording a history, and the final drain.
//!
//! # What is recorded, and how
//!
//! - A send is an `invoke` before the call and, after it, `ok` with the partition and offset
//!   (in a cluster, only for acks=-1: an acks=1 acknowledgement is recorded as `info`, since a
//!   leader change may take it back),
//!   `fail` only when the client knows the record was not written (see [`send_definitely_failed`]),
//!   and `info` otherwise (a timeout, a broken connection, a storage error after the append).
//! - Values are unique: producer `p`'s `n`-th record has value `(p + 1) * VALUE_STRIDE + n`,
//!   written as decimal digits padded with dots to the drawn record size.
//! - A poll is recorded when it returns, as an `invoke` immediately followed by its
//!   completion: a poll may join a group or reset a position before fetching, and the
//!   resulting `rebalance` or `seek` must come before the records it fetched.
//! - A commit records the exact offsets committed (`info` on any error). Before each, the
//!   consumer reads the group's committed offsets of every partition of its topic: `ok` with
//!   what the coordinator returned (or `fail`: a read changes nothing), which the checker
//!   holds to the commits before it.
//! - The quiet group: one more client commits a single offset for a group of its own, as a
//!   non-member, and then only reads it back, every [`QUIET_READ_INTERVAL_MS`], until the run
//!   stops. The other groups' commits meanwhile fill the offsets log, which is snapshotted and
//!   cleaned many times over, so a cleanup or failover that loses a group's only commit shows.
//!
//! # Fault model
//!
//! Clients are never killed; each runs on its own node so the nemesis can cut one off from
//! a broker. They rely on their own request timeouts, since a clogged link delays packets.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use skiff_checker::{CommittedOffset, Op, Outcome, PolledRecord, RecordValue, TopicPartition};
use skiff_client::{
    Acks, ClientConfig, ConnectionConfig, ConsumeError, ConsumedRecord, Consumer, ConsumerConfig,
    ConsumerEvent, GroupConfig, ProduceError, Producer, ProducerConfig, ResponseError,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::recorder::Recorder;
use crate::world::{
    AcksSetting, ConsumerMode, ConsumerSettings, PartitionChoice, ProducerSettings, World,
};

/// Producer `p`'s values start at `(p + 1) * VALUE_STRIDE`.
pub const VALUE_STRIDE: u64 = 1_000_000_000;
/// Distinct keys of a keyed producer.
pub const KEYS_PER_PRODUCER: u64 = 16;
/// Time allowed to open a connection and finish the handshake.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Time allowed for one request.
pub const REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Pause before building a new client after a failure.
pub const CLIENT_RETRY_BACKOFF_MS: u64 = 200;
/// Failed polls in a row after which a consumer is rebuilt.
pub const POLL_FAILURES_BEFORE_REBUILD: u32 = 5;
/// The group of the quiet client, and the offset it commits for partition 0 of the first
/// topic (the start: never past the log's end, which the checker would flag).
pub const QUIET_GROUP: &str = "quiet";
pub const QUIET_OFFSET: i64 = 0;
/// How often the quiet client reads its group's committed offset.
pub const QUIET_READ_INTERVAL_MS: u64 = 1_000;
/// How long one drain poll waits.
pub const DRAIN_POLL_TIMEOUT_MS: u64 = 1_000;
/// Group session timeout of the workload's consumers: short, so a member cut off by a
/// partition is replaced within the run.
pub const SESSION_TIMEOUT_MS: u64 = 6_000;
/// Heartbeat interval of the workload's consumers.
pub const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// Rebalance timeout of the workload's consumers.
pub const REBALANCE_TIMEOUT_MS: u64 = 10_000;

const _: () = assert!(HEARTBEAT_INTERVAL_MS * 3 <= SESSION_TIMEOUT_MS);

/// Where the run is; clients stop when it says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Faults on.
    Safety,
    /// Faults healed.
    Liveness,
    /// Clients stop after their current operation.
    Stopped,
}

/// The client settings every workload client uses.
pub fn client_config(bootstrap: &[String], client_id: String) -> ClientConfig {
    let mut config = ClientConfig::new(bootstrap.iter().cloned());
    config.connection = ConnectionConfig {
        client_id,
        connect_timeout: Duration::from_millis(CONNECT_TIMEOUT_MS),
        request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
    };
    config
}

/// The payload of a value: its decimal digits, padded with dots to `record_bytes`.
pub fn encode_value(value: u64, record_bytes: u32) -> Bytes {
    let mut text = value.to_string();
    let length = usize::try_from(record_bytes).expect("record sizes fit");
    while text.len() < length {
        text.push('.');
    }
    Bytes::from(text)
}

/// The value a payload holds: a number when it was written by [`encode_value`].
pub fn decode_value(payload: Option<&Bytes>) -> RecordValue {
    let Some(payload) = payload else {
        return RecordValue::Text(String::new());
    };
    let text = String::from_utf8_lossy(payload);
    let digits = text.split('.').next().unwrap_or_default();
    match digits.parse::<u64>() {
        Ok(number) => RecordValue::Number(number),
        Err(_) => RecordValue::Text(text.into_owned()),
    }
}

/// Whether a failed send certainly did not write its record. Only refusals the broker makes
/// before appending, and sends never attempted, count; everything else is indeterminate.
/// NOT_LEADER_OR_FOLLOWER is not one: a cluster's leader that loses its leadership while an
/// acks=-1 batch waits for the quorum answers it after appending.
pub fn send_definitely_failed(error: &ProduceError) -> bool {
    if error.is_indeterminate() {
        return false;
    }
    match error {
        ProduceError::OutOfOrderSequence { .. }
        | ProduceError::ProducerFailed { .. }
        | ProduceError::InvalidBatch { .. } => true,
        ProduceError::Broker { error, .. } => matches!(
            error,
            ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
                | ResponseError::CorruptMessage
                | ResponseError::InvalidRecord
                | ResponseError::MessageTooLarge
                | ResponseError::RecordListTooLarge
                | ResponseError::InvalidRequiredAcks
                | ResponseError::InvalidProducerEpoch
                | ResponseError::UnknownProducerId
        ),
        _ => false,
    }
}

/// Whether a producer must be rebuilt after this error.
fn producer_is_stopped(error: &ProduceError) -> bool {
    matches!(
        error,
        ProduceError::OutOfOrderSequence { .. } | ProduceError::ProducerFailed { .. }
    )
}

fn producer_config(settings: &ProducerSettings, seed: u64) -> ProducerConfig {
    ProducerConfig {
        acks: match settings.acks {
            AcksSetting::Leader => Acks::Leader,
            AcksSetting::All => Acks::All,
        },
        idempotence: settings.idempotent,
        request_timeout: Duration::from_millis(REQUEST_TIMEOUT_MS),
        partitioner_seed: seed,
        ..ProducerConfig::default()
    }
}

fn partition_count(world: &World, topic: &str) -> u32 {
    world
        .workload
        .topics
        .iter()
        .find(|settings| settings.name == topic)
        .map(|settings| settings.partitions)
        .expect("workload topics exist")
}

/// One producer process: sends unique values until the run stops.
pub async fn run_producer(
    world: World,
    index: usize,
    bootstrap: Vec<String>,
    recorder: Recorder,
    phase: watch::Receiver<Phase>,
) {
    let settings = world.workload.producers[index].clone();
    let process = index as u64;
    let seed = crate::report::fnv1a_64(format!("{}/producer/{index}", world.seed).as_bytes());
    let mut random = StdRng::seed_from_u64(seed);
    let partitions = partition_count(&world, &settings.topic);
    // In a cluster, acks=1 is answered once the leader alone has the record: a leader change
    // may truncate it (as in Kafka), so its acknowledgement is recorded as indeterminate.
    let acknowledgement_is_durable =
        settings.acks == AcksSetting::All || world.cluster.brokers == 1;
    let mut producer: Option<Producer> = None;
    let mut sequence = 0;
    while *phase.borrow() != Phase::Stopped {
        let Some(client) = producer.as_ref() else {
            let config = client_config(&bootstrap, format!("producer-{index}"));
            match Producer::connect(config, producer_config(&settings, seed)).await {
                Ok(built) => producer = Some(built),
                Err(_) => tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await,
            }
            continue;
        };
        let value = (process + 1) * VALUE_STRIDE + sequence;
        sequence += 1;
        let (partition, key) = match settings.partition_choice {
            PartitionChoice::Explicit => (Some(random.gen_range(0..partitions)), None),
            PartitionChoice::Keyed => {
                let key = format!("key-{}", random.gen_range(0..KEYS_PER_PRODUCER));
                (None, Some(key))
            }
            PartitionChoice::RoundRobin => (None, None),
        };
        let invocation = Op::Send {
            topic: settings.topic.clone(),
            partition,
            key: key.clone(),
            value: RecordValue::Number(value),
            idempotent: settings.idempotent,
            offset: None,
        };
        let id = recorder.invoke(process, invocation.clone());
        let result = client
            .send(
                &settings.topic,
                partition.map(|partition| partition as i32),
                key.map(Bytes::from),
                Some(encode_value(value, settings.record_bytes)),
            )
            .await;
        match result {
            Ok(_) if !acknowledgement_is_durable => {
                recorder.acknowledged_by_leader_only(index, id, invocation);
            }
            Ok(metadata) => {
                let written_partition =
                    u32::try_from(metadata.partition).expect("partitions are not negative");
                let offset = u64::try_from(metadata.offset).ok();
                let Op::Send {
                    topic,
                    key,
                    value,
                    idempotent,
                    ..
                } = invocation
                else {
                    unreachable!("the invocation is a send")
                };
                let completion = Op::Send {
                    topic: topic.clone(),
                    partition: Some(written_partition),
                    key,
                    value,
                    idempotent,
                    offset,
                };
                recorder.acknowledged(index, id, completion, (topic, written_partition), offset);
            }
            Err(error) => {
                let outcome = if send_definitely_failed(&error) {
                    Outcome::Fail(invocation)
                } else {
                    Outcome::Info(invocation)
                };
                recorder.complete(id, outcome);
                if producer_is_stopped(&error) {
                    producer = None;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(settings.send_interval_ms)).await;
    }
}

fn checker_partitions(partitions: &[(String, i32)]) -> Vec<TopicPartition> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            TopicPartition::new(
                topic.clone(),
                u32::try_from(*partition).expect("not negative"),
            )
        })
        .collect()
}

fn polled(records: &[ConsumedRecord]) -> Vec<PolledRecord> {
    records
        .iter()
        .map(|record| PolledRecord {
            topic: record.topic.clone(),
            partition: u32::try_from(record.partition).expect("not negative"),
            offset: u64::try_from(record.offset).expect("not negative"),
            key: record
                .key
                .as_ref()
                .map(|key| String::from_utf8_lossy(key).into_owned()),
            value: decode_value(record.value.as_ref()),
        })
        .collect()
}

/// Records what a poll changed before its records: a new assignment, reset positions.
fn record_events(recorder: &Recorder, process: u64, consumer: &mut Consumer) {
    let mut reassigned = false;
    for event in consumer.drain_events() {
        match event {
            ConsumerEvent::Assigned { .. } | ConsumerEvent::Revoked { .. } => reassigned = true,
            ConsumerEvent::PositionReset { partition, offset } => {
                if reassigned {
                    continue;
                }
                recorder.record(
                    process,
                    Op::Seek {
                        topic: partition.0.clone(),
                        partition: u32::try_from(partition.1).expect("not negative"),
                        offset: u64::try_from(offset).unwrap_or(0),
                    },
                );
            }
        }
    }
    if reassigned {
        let assigned = checker_partitions(&consumer.assignment());
        recorder.record(process, Op::Rebalance { assigned });
    }
}

/// Polls once and records it; returns whether it succeeded.
async fn recorded_poll(
    recorder: &Recorder,
    process: u64,
    consumer: &mut Consumer,
    timeout: Duration,
    drain: bool,
) -> bool {
    let result = consumer.poll(timeout).await;
    record_events(recorder, process, consumer);
    let invocation = Op::Poll {
        drain,
        records: Vec::new(),
    };
    let id = recorder.invoke(process, invocation.clone());
    match result {
        Ok(records) => {
            let records = polled(&records);
            recorder.complete(id, Outcome::Ok(Op::Poll { drain, records }));
            true
        }
        Err(_) => {
            recorder.complete(id, Outcome::Info(invocation));
            false
        }
    }
}

/// Builds a consumer and records its assign or subscribe.
fn start_consumer(
    consumer: &mut Consumer,
    settings: &ConsumerSettings,
    partitions: u32,
    recorder: &Recorder,
    process: u64,
) -> Result<(), ConsumeError> {
    match settings.mode {
        ConsumerMode::Assign => {
            let assigned: Vec<(String, i32)> = (0..partitions)
                .map(|partition| (settings.topic.clone(), partition as i32))
                .collect();
            consumer.assign(assigned.clone());
            recorder.record(
                process,
                Op::Assign {
                    partitions: checker_partitions(&assigned),
                },
            );
        }
        ConsumerMode::Subscribe => {
            consumer.subscribe(vec![settings.topic.clone()])?;
            recorder.record(
                process,
                Op::Subscribe {
                    topics: vec![settings.topic.clone()],
                    assigned: Vec::new(),
                },
            );
        }
    }
    Ok(())
}

async fn recorded_commit(recorder: &Recorder, process: u64, group: &str, consumer: &mut Consumer) {
    let offsets: BTreeMap<(String, i32), i64> = consumer
        .assignment()
        .into_iter()
        .filter_map(|(topic, partition)| {
            let position = consumer.position(&topic, partition)?;
            Some(((topic, partition), position))
        })
        .collect();
    if offsets.is_empty() {
        return;
    }
    recorded_commit_offsets(recorder, process, group, consumer, offsets).await;
}

/// Commits `offsets` for `group`, recorded; true if the commit was acknowledged.
async fn recorded_commit_offsets(
    recorder: &Recorder,
    process: u64,
    group: &str,
    consumer: &mut Consumer,
    offsets: BTreeMap<(String, i32), i64>,
) -> bool {
    let committed = offsets
        .iter()
        .map(|((topic, partition), offset)| CommittedOffset {
            topic: topic.clone(),
            partition: u32::try_from(*partition).expect("not negative"),
            offset: u64::try_from(*offset).unwrap_or(0),
        })
        .collect();
    let op = Op::Commit {
        group: group.to_string(),
        offsets: committed,
    };
    let id = recorder.invoke(process, op.clone());
    let (outcome, acknowledged) = match consumer.commit_offsets(offsets).await {
        Ok(()) => (Outcome::Ok(op), true),
        Err(_) => (Outcome::Info(op), false),
    };
    recorder.complete(id, outcome);
    acknowledged
}

/// Reads the group's committed offsets of every partition of the consumer's topic, before
/// the consumer commits its own: a commit that a coordinator failover or the offsets log's
/// cleanup lost or rolled back since the group's last commits shows here.
async fn recorded_fetch_committed(
    recorder: &Recorder,
    process: u64,
    group: &str,
    topic: &str,
    partitions: u32,
    consumer: &mut Consumer,
) -> bool {
    let partitions: Vec<(String, i32)> = (0..partitions)
        .map(|partition| {
            (
                topic.to_string(),
                i32::try_from(partition).expect("few partitions"),
            )
        })
        .collect();
    let asked: Vec<TopicPartition> = partitions
        .iter()
        .map(|(topic, partition)| {
            TopicPartition::new(
                topic.clone(),
                u32::try_from(*partition).expect("not negative"),
            )
        })
        .collect();
    let read = |offsets| Op::FetchCommitted {
        group: group.to_string(),
        partitions: asked.clone(),
        offsets,
    };
    let id = recorder.invoke(process, read(Vec::new()));
    let outcome = match consumer.committed(&partitions).await {
        Ok(found) => Outcome::Ok(read(
            found
                .into_iter()
                .filter_map(|((topic, partition), offset)| {
                    Some(CommittedOffset {
                        topic,
                        partition: u32::try_from(partition).ok()?,
                        offset: u64::try_from(offset).ok()?,
                    })
                })
                .collect(),
        )),
        Err(_) => Outcome::Fail(read(Vec::new())),
    };
    let answered = matches!(outcome, Outcome::Ok(_));
    recorder.complete(id, outcome);
    answered
}

/// One consumer process: polls (and commits) until the run stops.
pub async fn run_consumer(
    world: World,
    index: usize,
    bootstrap: Vec<String>,
    recorder: Recorder,
    phase: watch::Receiver<Phase>,
) {
    let settings = world.workload.consumers[index].clone();
    let process = (world.workload.producers.len() + index) as u64;
    let partitions = partition_count(&world, &settings.topic);
    let group = match settings.mode {
        ConsumerMode::Subscribe => Some(GroupConfig {
            session_timeout: Duration::from_millis(SESSION_TIMEOUT_MS),
            heartbeat_interval: Duration::from_millis(HEARTBEAT_INTERVAL_MS),
            rebalance_timeout: Duration::from_millis(REBALANCE_TIMEOUT_MS),
            ..GroupConfig::new(&settings.group)
        }),
        ConsumerMode::Assign => None,
    };
    let config = ConsumerConfig {
        group,
        ..ConsumerConfig::default()
    };
    let timeout = Duration::from_millis(settings.poll_timeout_ms);
    let mut consumer: Option<Consumer> = None;
    let mut polls: u32 = 0;
    let mut failures_in_a_row = 0;
    while *phase.borrow() != Phase::Stopped {
        let Some(active) = consumer.as_mut() else {
            let client = client_config(&bootstrap, format!("consumer-{index}"));
            match Consumer::connect(client, config.clone()).await {
                Ok(mut built) => {
                    if start_consumer(&mut built, &settings, partitions, &recorder, process).is_ok()
                    {
                        consumer = Some(built);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await,
            }
            continue;
        };
        if recorded_poll(&recorder, process, active, timeout, false).await {
            failures_in_a_row = 0;
            polls += 1;
            let commit_every = settings.commit_every_polls;
            if settings.mode == ConsumerMode::Subscribe
                && commit_every > 0
                && polls % commit_every == 0
            {
                recorded_fetch_committed(
                    &recorder,
                    process,
                    &settings.group,
                    &settings.topic,
                    partitions,
                    active,
                )
                .await;
                recorded_commit(&recorder, process, &settings.group, active).await;
            }
        } else {
            failures_in_a_row += 1;
            if failures_in_a_row >= POLL_FAILURES_BEFORE_REBUILD {
                failures_in_a_row = 0;
                if let Some(stale) = consumer.take() {
                    stale.close().await;
                }
                tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await;
            }
        }
    }
    if let Some(active) = consumer {
        active.close().await;
    }
}

/// The quiet client (see the module notes): commits once, then reads the commit back until
/// the run stops. Its process number follows the drain's.
pub async fn run_quiet_group(
    world: World,
    bootstrap: Vec<String>,
    recorder: Recorder,
    mut phase: watch::Receiver<Phase>,
) {
    let process = (world.workload.producers.len() + world.workload.consumers.len() + 1) as u64;
    let Some(topic) = world
        .workload
        .topics
        .first()
        .map(|topic| topic.name.clone())
    else {
        return;
    };
    let config = ConsumerConfig {
        group: Some(GroupConfig::new(QUIET_GROUP)),
        ..ConsumerConfig::default()
    };
    let mut consumer: Option<Consumer> = None;
    let mut committed = false;
    while *phase.borrow() != Phase::Stopped {
        let Some(active) = consumer.as_mut() else {
            let client = client_config(&bootstrap, "quiet".to_string());
            match Consumer::connect(client, config.clone()).await {
                Ok(built) => consumer = Some(built),
                Err(_) => tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await,
            }
            continue;
        };
        let succeeded = if committed {
            // Ends with the run, not a read interval later.
            let interval = tokio::time::sleep(Duration::from_millis(QUIET_READ_INTERVAL_MS));
            tokio::select! {
                _ = interval => {}
                _ = phase.wait_for(|phase| *phase == Phase::Stopped) => break,
            }
            recorded_fetch_committed(&recorder, process, QUIET_GROUP, &topic, 1, active).await
        } else {
            let offsets = BTreeMap::from([((topic.clone(), 0), QUIET_OFFSET)]);
            committed =
                recorded_commit_offsets(&recorder, process, QUIET_GROUP, active, offsets).await;
            committed
        };
        if !succeeded {
            if let Some(stale) = consumer.take() {
                stale.close().await;
            }
            tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await;
        }
    }
    if let Some(active) = consumer {
        active.close().await;
    }
}

/// What the final drain reached.
#[derive(Debug, Default)]
pub struct DrainResult {
    /// Whether every partition was read to its end.
    pub complete: bool,
    /// Records read.
    pub records: u64,
    /// Per partition: the end to reach and the position reached.
    pub progress: Vec<crate::report::DrainProgress>,
}

/// The final drain: a fresh consumer reads every partition from its first offset to its end,
/// within `deadline`.
pub async fn drain(
    world: World,
    bootstrap: Vec<String>,
    recorder: Recorder,
    deadline: Instant,
) -> DrainResult {
    let process = (world.workload.producers.len() + world.workload.consumers.len()) as u64;
    let partitions: Vec<(String, i32)> = world
        .workload
        .topics
        .iter()
        .flat_map(|topic| {
            (0..topic.partitions).map(|partition| (topic.name.clone(), partition as i32))
        })
        .collect();
    let mut result = DrainResult::default();
    let mut consumer = loop {
        let client = client_config(&bootstrap, "drain".to_string());
        match Consumer::connect(client, ConsumerConfig::default()).await {
            Ok(consumer) => break consumer,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await;
            }
            Err(_) => return result,
        }
    };
    consumer.assign(partitions.clone());
    recorder.record(
        process,
        Op::Assign {
            partitions: checker_partitions(&partitions),
        },
    );
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    while ends.len() < partitions.len() && Instant::now() < deadline {
        for partition in &partitions {
            if ends.contains_key(partition) {
                continue;
            }
            if let Ok(end) = consumer
                .list_offset(partition, skiff_client::consumer::LATEST_TIMESTAMP)
                .await
            {
                ends.insert(partition.clone(), end);
            }
        }
        if ends.len() < partitions.len() {
            tokio::time::sleep(Duration::from_millis(CLIENT_RETRY_BACKOFF_MS)).await;
        }
    }
    let reached = |consumer: &Consumer, ends: &BTreeMap<(String, i32), i64>| {
        partitions.iter().all(|partition| {
            let end = ends.get(partition).copied();
            let position = consumer.position(&partition.0, partition.1).unwrap_or(0);
            end.is_some_and(|end| position >= end)
        })
    };
    while !reached(&consumer, &ends) && Instant::now() < deadline {
        let before = recorder.lock().history.events().len();
        recorded_poll(
            &recorder,
            process,
            &mut consumer,
            Duration::from_millis(DRAIN_POLL_TIMEOUT_MS),
            true,
        )
        .await;
        let state = recorder.lock();
        for event in &state.history.events()[before..] {
            if let (skiff_checker::EventType::Ok, Op::Poll { records, .. }) =
                (event.event_type, &event.op)
            {
                result.records += records.len() as u64;
            }
        }
    }
    result.complete = reached(&consumer, &ends);
    result.progress = partitions
        .iter()
        .map(|partition| crate::report::DrainProgress {
            topic: partition.0.clone(),
            partition: u32::try_from(partition.1).expect("not negative"),
            end_offset: ends.get(partition).copied(),
            position: consumer.position(&partition.0, partition.1).unwrap_or(-1),
        })
        .collect();
    result
}
