//! The simulation itself (only under `--cfg madsim`): nodes, workload, nemesis, phases.
//!
//! [`run_world`] builds a fresh madsim runtime seeded with the world's seed, so two runs of
//! one world are the same run. Call it on a fresh OS thread per seed (the sweep does):
//! nothing then leaks from one run into the next.

pub mod cluster;
pub mod nemesis;
pub mod recorder;
pub mod settings;
pub mod workload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle, Runtime};
use skiff::io::SimDisk;
use skiff::server::partition::Partition;
use skiff::server::Broker;
use skiff_checker::CheckOptions;
use skiff_client::Admin;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::invariants::{CommittedBatch, PartitionKey, ReplicaObservation};
use crate::report::{LivenessReport, RunResult};
use crate::world::World;
use cluster::BrokerNode;
use recorder::Recorder;
use workload::Phase;

/// How often the invariant monitor looks at every broker's partitions.
pub const INVARIANT_CHECK_INTERVAL_MS: u64 = 100;
/// The longest the setup (creating topics) may take, in simulated milliseconds.
pub const SETUP_MS_MAX: u64 = 30_000;
/// How long clients may take to finish their last operation once told to stop.
pub const CLIENT_STOP_MS_MAX: u64 = 30_000;
/// Simulated time allowed beyond the phases before madsim aborts the run.
pub const TIME_LIMIT_MARGIN_MS: u64 = 120_000;

/// Runs `world` in a fresh simulation on the current thread and returns everything it
/// recorded, checked.
pub fn run_world(world: &World, scenario: Option<&str>) -> RunResult {
    let mut runtime = Runtime::with_seed_and_config(world.seed, madsim::Config::default());
    let phases = world.phases;
    let limit = SETUP_MS_MAX
        + phases.safety_ms
        + phases.liveness_ms
        + CLIENT_STOP_MS_MAX
        + phases.drain_timeout_ms
        + TIME_LIMIT_MARGIN_MS;
    runtime.set_time_limit(Duration::from_millis(limit));
    let world = world.clone();
    let scenario = scenario.map(str::to_string);
    runtime.block_on(async move { simulate(world, scenario).await })
}

/// Creates a client node with its own address.
fn client_node(name: String, host: [u8; 4]) -> NodeHandle {
    Handle::current()
        .create_node()
        .name(name)
        .ip(std::net::IpAddr::from(host))
        .build()
}

async fn create_topics(world: &World, bootstrap: &[String], node: &NodeHandle) -> bool {
    let world = world.clone();
    let bootstrap = bootstrap.to_vec();
    // -1 asks for the default replication factor: every broker in a cluster of three, three
    // replicas of each partition in a cluster of five.
    let replication_factor: i16 = if world.cluster.brokers > 1 { -1 } else { 1 };
    let task = node.spawn(async move {
        let deadline = Instant::now() + Duration::from_millis(SETUP_MS_MAX);
        while Instant::now() < deadline {
            let config = workload::client_config(&bootstrap, "setup".to_string());
            if let Ok(admin) = Admin::connect(config).await {
                let mut created = true;
                for topic in &world.workload.topics {
                    let partitions = topic.partitions as i32;
                    // An earlier attempt may have created it: TOPIC_ALREADY_EXISTS is fine.
                    let _ = admin
                        .create_topic(&topic.name, partitions, replication_factor)
                        .await;
                    created &= admin
                        .wait_for_leaders(&topic.name, Duration::from_secs(5))
                        .await
                        .is_ok();
                }
                if created {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(workload::CLIENT_RETRY_BACKOFF_MS)).await;
        }
        false
    });
    task.await.unwrap_or(false)
}

/// Every partition replica a running broker has: its topics' partitions and, in a cluster,
/// the metadata log.
fn replicas_of(broker: &Broker) -> Vec<(PartitionKey, Arc<Partition>)> {
    let mut replicas = Vec::new();
    for topic in broker.topics() {
        for partition in topic.hosted() {
            let key = (
                topic.name.clone(),
                u32::try_from(partition.index).expect("not negative"),
            );
            replicas.push((key, partition.clone()));
        }
    }
    if let Some(metadata) = broker
        .cluster
        .get()
        .and_then(|cluster| cluster.replica(skiff::cluster::METADATA_GROUP))
    {
        replicas.push(((crate::world::METADATA_TOPIC.to_string(), 0), metadata));
    }
    replicas
}

/// What a replica's Raft group says now: (term, is leader, believed leader).
fn raft_view(broker: &Broker, partition: &Partition) -> Option<(u64, bool, Option<u64>)> {
    let cluster = broker.cluster.get()?;
    let group = partition.group()?;
    let groups = cluster.raft.lock();
    let node = groups.get(group)?;
    Some((node.term(), node.is_leader(), node.leader()))
}

/// The broker incarnation each slot last showed: a new one is a restart.
#[derive(Default)]
struct Incarnation {
    /// Kept alive, so that a new broker can never reuse its address.
    broker: Option<Arc<Broker>>,
    number: u64,
    /// Partitions whose recovered logs were checked in this incarnation.
    checked: std::collections::BTreeSet<PartitionKey>,
}

/// Whether reads of `disk` return exactly what is stored now: no read errors, corruption or
/// latent sector errors are drawn.
fn reads_are_exact(disk: &SimDisk) -> bool {
    let faults = disk.faults();
    faults.read_error_probability == 0.0
        && faults.read_corruption_probability == 0.0
        && faults.latent_sector_error_probability == 0.0
}

/// Looks at every running broker's partitions until told to stop.
async fn monitor(
    slots: Vec<Arc<Mutex<Option<Arc<Broker>>>>>,
    disks: Vec<SimDisk>,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    let mut incarnations: Vec<Incarnation> = slots.iter().map(|_| Incarnation::default()).collect();
    loop {
        for (index, slot) in slots.iter().enumerate() {
            let broker = slot
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .clone();
            let Some(broker) = broker else { continue };
            let time_ms = recorder.now_ms();
            let mut state = recorder.lock();
            let incarnation = &mut incarnations[index];
            if !incarnation
                .broker
                .as_ref()
                .is_some_and(|known| Arc::ptr_eq(known, &broker))
            {
                if incarnation.broker.is_some() {
                    incarnation.number += 1;
                }
                incarnation.broker = Some(broker.clone());
                incarnation.checked.clear();
            }
            for (key, partition) in replicas_of(&broker) {
                // Each partition's log is checked once per incarnation of its broker, on a disk
                // whose reads are exact (a read fault during the check is no recovery bug): as
                // soon as the broker runs if its disk reads exactly, else once the faults are
                // healed. In a cluster, replicas appear as the metadata log is applied. An
                // offline replica is never read, its unsynced contents being unknown by
                // definition.
                let checkable = reads_are_exact(&disks[index]) && !partition.is_offline();
                if checkable && incarnation.checked.insert(key.clone()) {
                    if let Err(problem) = partition.check_consistency() {
                        state
                            .invariants
                            .log_inconsistent(time_ms, index as u32, &key, &problem);
                    }
                }
                if !partition.is_replicated() {
                    let high_watermark = partition.high_watermark();
                    state
                        .invariants
                        .observe(time_ms, index as u32, key, high_watermark);
                    continue;
                }
                let Some((term, is_leader, leader)) = raft_view(&broker, &partition) else {
                    continue;
                };
                let observation = ReplicaObservation {
                    broker: index as u32,
                    incarnation: incarnation.number,
                    partition: key,
                    high_watermark: partition.high_watermark(),
                    term,
                    is_leader,
                    leader,
                };
                state.invariants.observe_replica(time_ms, observation);
            }
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(INVARIANT_CHECK_INTERVAL_MS)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// How long the end-of-run replica check lets followers learn the last commit index first.
pub const REPLICA_SETTLE_MS: u64 = 3_000;
/// Bytes one read of a replica's log returns, for the end-of-run comparison.
const REPLICA_READ_BYTES_MAX: usize = 1024 * 1024;

/// A replica's batches below its high watermark, or `None` if its log cannot be read now.
fn committed_batches(partition: &Partition) -> Option<Vec<CommittedBatch>> {
    let high_watermark = partition.high_watermark();
    let mut batches = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < high_watermark {
        let (bytes, _, _) = partition.read(offset, REPLICA_READ_BYTES_MAX).ok()?;
        let before = offset;
        for batch in skiff::log::record_batch::split_batches(&bytes) {
            let batch = batch.ok()?;
            let header = skiff::log::record_batch::RecordBatchHeader::parse(batch).ok()?;
            if header.last_offset() >= high_watermark {
                break;
            }
            batches.push(CommittedBatch {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                digest: crate::report::fnv1a_64(batch),
            });
            offset = header.last_offset() + 1;
        }
        if offset == before {
            break;
        }
    }
    Some(batches)
}

/// At the end, in a cluster: every running replica's committed batches agree, and for every
/// partition some replica's high watermark covers every acknowledged offset.
async fn check_replicas(brokers: &[BrokerNode], recorder: &Recorder) {
    tokio::time::sleep(Duration::from_millis(REPLICA_SETTLE_MS)).await;
    let mut replicas: std::collections::BTreeMap<PartitionKey, Vec<(u32, Arc<Partition>)>> =
        std::collections::BTreeMap::new();
    for node in brokers {
        let Some(broker) = node.broker() else {
            continue;
        };
        for (key, partition) in replicas_of(&broker) {
            replicas
                .entry(key)
                .or_default()
                .push((node.index, partition));
        }
    }
    let time_ms = recorder.now_ms();
    let mut state = recorder.lock();
    for partition in state.invariants.acknowledged_partitions() {
        let highest = replicas.get(&partition).and_then(|replicas| {
            replicas
                .iter()
                .map(|(broker, replica)| (replica.high_watermark(), *broker))
                .max()
        });
        let (high_watermark, broker) = highest.unwrap_or((0, 0));
        state
            .invariants
            .check_acknowledged_committed(time_ms, &partition, broker, high_watermark);
    }
    for (key, partitions) in &replicas {
        let batches: Vec<(u32, Vec<CommittedBatch>)> = partitions
            .iter()
            .filter_map(|(broker, partition)| Some((*broker, committed_batches(partition)?)))
            .collect();
        state.invariants.compare_replicas(time_ms, key, &batches);
    }
}

/// The checker's options: in a cluster, the drain's log end offsets, because each new leader's
/// control batch takes an offset no consumer observes.
fn check_options(world: &World, drained: &workload::DrainResult) -> CheckOptions {
    let mut options = CheckOptions::default();
    if world.cluster.brokers > 1 {
        options.known_log_end_offsets = drained
            .progress
            .iter()
            .filter_map(|progress| {
                let end = u64::try_from(progress.end_offset?).ok()?;
                Some((
                    skiff_checker::TopicPartition::new(progress.topic.clone(), progress.partition),
                    end,
                ))
            })
            .collect();
    }
    options
}

async fn simulate(world: World, scenario: Option<String>) -> RunResult {
    let run_start = Instant::now();
    let recorder = Recorder::new(world.workload.producers.len());
    let mut brokers: Vec<BrokerNode> = (0..world.cluster.brokers)
        .map(|index| BrokerNode::start(&world, index, &recorder))
        .collect();
    let bootstrap: Vec<String> = brokers
        .iter()
        .map(|broker| broker.address.to_string())
        .collect();
    let clients: Vec<NodeHandle> = (0..world.client_count())
        .map(|index| {
            let host = u8::try_from(index + 1).expect("few clients");
            client_node(format!("client-{index}"), [10, 0, 2, host])
        })
        .collect();
    let setup_node = client_node("setup".to_string(), [10, 0, 3, 1]);
    let drain_node = client_node("drain".to_string(), [10, 0, 3, 2]);
    // Not among `clients`: the nemesis never cuts it off, so its reads keep coming.
    let quiet_node = client_node("quiet".to_string(), [10, 0, 3, 3]);

    let (stop_monitor, monitor_stop) = watch::channel(false);
    let slots = brokers.iter().map(|broker| broker.slot.clone()).collect();
    let disks = brokers.iter().map(|broker| broker.disk.clone()).collect();
    let monitor_task = tokio::spawn(monitor(slots, disks, recorder.clone(), monitor_stop));

    let topics_created = create_topics(&world, &bootstrap, &setup_node).await;
    assert!(
        topics_created,
        "the topics could not be created within {SETUP_MS_MAX} ms"
    );

    // The safety phase: faults on.
    let safety_start = Instant::now();
    for broker in &brokers {
        let faulty =
            world.disk_fault_brokers.is_empty() || world.disk_fault_brokers.contains(&broker.index);
        if faulty {
            broker.disk.set_faults(world.disk_faults.to_disk());
        }
    }
    let (phase_sender, phase) = watch::channel(Phase::Safety);
    let mut client_tasks = Vec::new();
    let producer_nodes = clients.iter().take(world.workload.producers.len());
    for (index, node) in producer_nodes.enumerate() {
        let task = workload::run_producer(
            world.clone(),
            index,
            bootstrap.clone(),
            recorder.clone(),
            phase.clone(),
        );
        client_tasks.push(node.spawn(task));
    }
    for index in 0..world.workload.consumers.len() {
        let node = &clients[world.workload.producers.len() + index];
        let task = workload::run_consumer(
            world.clone(),
            index,
            bootstrap.clone(),
            recorder.clone(),
            phase.clone(),
        );
        client_tasks.push(node.spawn(task));
    }
    client_tasks.push(quiet_node.spawn(workload::run_quiet_group(
        world.clone(),
        bootstrap.clone(),
        recorder.clone(),
        phase.clone(),
    )));
    // Only worlds with changes get the task: another task would change the schedule (and so
    // the trace) of every seed.
    let settings_task = (!world.workload.settings_changes.is_empty()).then(|| {
        setup_node.spawn(settings::run_settings_changes(
            world.clone(),
            bootstrap.clone(),
            recorder.clone(),
            safety_start,
            phase.clone(),
        ))
    });
    nemesis::run_schedule(&world, &mut brokers, &clients, &recorder, safety_start).await;
    tokio::time::sleep_until(safety_start + Duration::from_millis(world.phases.safety_ms)).await;

    // The liveness phase: everything healed; every producer must make progress again.
    nemesis::heal(&mut brokers, &clients, &recorder).await;
    let healed_at_ms = recorder.now_ms();
    recorder.lock().healed_at_ms = Some(healed_at_ms);
    recorder.lock().invariants.healed(healed_at_ms);
    phase_sender.send_replace(Phase::Liveness);
    tokio::time::sleep(Duration::from_millis(world.phases.liveness_ms)).await;
    phase_sender.send_replace(Phase::Stopped);
    let stop_deadline = Instant::now() + Duration::from_millis(CLIENT_STOP_MS_MAX);
    for task in client_tasks {
        // A client stuck past the bound leaves its operation open: the checker treats it as
        // indeterminate.
        let remaining = stop_deadline.saturating_duration_since(Instant::now());
        let _ = tokio::time::timeout(remaining, task).await;
    }

    // The final drain, by a fresh consumer.
    let drain_deadline = Instant::now() + Duration::from_millis(world.phases.drain_timeout_ms);
    let drained = drain_node
        .spawn(workload::drain(
            world.clone(),
            bootstrap.clone(),
            recorder.clone(),
            drain_deadline,
        ))
        .await
        .unwrap_or_default();
    let settings_outcomes = match settings_task {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    if world.cluster.brokers > 1 {
        check_replicas(&brokers, &recorder).await;
    }
    settings::check_settings(&brokers, &recorder, &settings_outcomes);
    stop_monitor.send_replace(true);
    let _ = monitor_task.await;

    let simulated_seconds = run_start.elapsed().as_secs_f64();
    let disk_fault_counts = brokers
        .iter()
        .map(|broker| {
            broker
                .disk
                .fault_counts()
                .to_map()
                .into_iter()
                .map(|(name, count)| (name.to_string(), count))
                .collect()
        })
        .collect();
    let progress_deadline_ms = healed_at_ms + world.phases.liveness_ms;
    let state = recorder.lock();
    let verdict = skiff_checker::check(&state.history, &check_options(&world, &drained));
    RunResult {
        world,
        scenario,
        history: state.history.clone(),
        fault_log: state.fault_log.clone(),
        verdict,
        violations: state.invariants.violations().to_vec(),
        invariant_observations: state.invariants.observation_count(),
        liveness: LivenessReport {
            healed_at_ms,
            progress_deadline_ms,
            first_acknowledgement_after_heal_ms: state.first_acknowledgement_after_heal_ms.clone(),
            drain_complete: drained.complete,
            drained_records: drained.records,
            drain_progress: drained.progress,
            leaderless_after_heal: state.invariants.leaderless_after_heal(),
        },
        disk_fault_counts,
        simulated_seconds,
    }
}
