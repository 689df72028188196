//! The simulation itself (only under `--cfg madsim`): nodes, workload, nemesis, phases.
//!
//! [`run_world`] builds a fresh madsim runtime seeded with the world's seed, so two runs of
//! one world are the same run. Call it on a fresh OS thread per seed (the sweep does):
//! nothing then leaks from one run into the next.

pub mod cluster;
pub mod nemesis;
pub mod recorder;
pub mod workload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle, Runtime};
use skiff::server::Broker;
use skiff_checker::CheckOptions;
use skiff_client::Admin;
use tokio::sync::watch;
use tokio::time::Instant;

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
    let task = node.spawn(async move {
        let deadline = Instant::now() + Duration::from_millis(SETUP_MS_MAX);
        while Instant::now() < deadline {
            let config = workload::client_config(&bootstrap, "setup".to_string());
            if let Ok(admin) = Admin::connect(config).await {
                let mut created = true;
                for topic in &world.workload.topics {
                    let partitions = topic.partitions as i32;
                    // An earlier attempt may have created it: TOPIC_ALREADY_EXISTS is fine.
                    let _ = admin.create_topic(&topic.name, partitions, 1).await;
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

/// Looks at every running broker's partitions until told to stop.
async fn monitor(
    slots: Vec<Arc<Mutex<Option<Arc<Broker>>>>>,
    recorder: Recorder,
    mut stop: watch::Receiver<bool>,
) {
    // The broker instance last checked per slot: a new instance is a restart, whose recovered
    // logs are checked once.
    let mut checked: Vec<Option<usize>> = vec![None; slots.len()];
    loop {
        for (index, slot) in slots.iter().enumerate() {
            let broker = slot
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .clone();
            let Some(broker) = broker else { continue };
            let time_ms = recorder.now_ms();
            let mut state = recorder.lock();
            if checked[index] != Some(Arc::as_ptr(&broker) as usize) {
                checked[index] = Some(Arc::as_ptr(&broker) as usize);
                for topic in broker.topics() {
                    for partition in &topic.partitions {
                        if let Err(problem) = partition.check_consistency() {
                            let key = (
                                topic.name.clone(),
                                u32::try_from(partition.index).expect("not negative"),
                            );
                            state.invariants.log_inconsistent(
                                time_ms,
                                index as u32,
                                &key,
                                &problem,
                            );
                        }
                    }
                }
            }
            for topic in broker.topics() {
                for partition in &topic.partitions {
                    let key = (
                        topic.name.clone(),
                        u32::try_from(partition.index).expect("not negative"),
                    );
                    state.invariants.observe(
                        time_ms,
                        index as u32,
                        key,
                        partition.high_watermark(),
                    );
                }
            }
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(INVARIANT_CHECK_INTERVAL_MS)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
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

    let (stop_monitor, monitor_stop) = watch::channel(false);
    let slots = brokers.iter().map(|broker| broker.slot.clone()).collect();
    let monitor_task = tokio::spawn(monitor(slots, recorder.clone(), monitor_stop));

    let topics_created = create_topics(&world, &bootstrap, &setup_node).await;
    assert!(
        topics_created,
        "the topics could not be created within {SETUP_MS_MAX} ms"
    );

    // The safety phase: faults on.
    let safety_start = Instant::now();
    for broker in &brokers {
        broker.disk.set_faults(world.disk_faults.to_disk());
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
    nemesis::run_schedule(&world, &mut brokers, &clients, &recorder, safety_start).await;
    tokio::time::sleep_until(safety_start + Duration::from_millis(world.phases.safety_ms)).await;

    // The liveness phase: everything healed; every producer must make progress again.
    nemesis::heal(&mut brokers, &clients, &recorder).await;
    let healed_at_ms = recorder.now_ms();
    recorder.lock().healed_at_ms = Some(healed_at_ms);
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
    let verdict = skiff_checker::check(&state.history, &CheckOptions::default());
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
        },
        disk_fault_counts,
        simulated_seconds,
    }
}
