//! The nemesis: executes the world's fault schedule during the safety phase, then heals
//! everything before the liveness phase.
//!
//! # Fault model
//!
//! See `world.rs` for what each fault means. Here, each scheduled fault becomes a start
//! action and, unless it is instantaneous, an end action `duration` later (a restart, a
//! resume, an unclog, normal weather). Actions run in time order, ends before starts at the
//! same millisecond. Every action is recorded in the history (`crash`, `restart`, `fault`,
//! `heal`, process `nemesis`) and in the fault log. [`heal`] undoes whatever is still in
//! force: network, pauses, dead nodes, disk faults and the latency backlog they accrued,
//! clock skew, and restarts any broker with an offline partition (a failed sync keeps a
//! partition offline until the broker restarts).
//!
//! In a cluster, faults may overlap on one broker (a leader crash may pick a broker whose own
//! timeline pauses it later): each down or paused broker remembers the fault that put it
//! there, and only that fault's end brings it back. A leader-targeted fault resolves its
//! broker when it starts, from the brokers' published state (the running broker that claims
//! the partition's leadership in the highest term), and its end undoes exactly that. Links
//! between brokers are clogged with a count per link, so overlapping partitions unclog a link
//! only when the last of them ends. A rolling restart is a sequence of crashes, one broker at
//! a time.

use std::collections::BTreeMap;
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::NodeHandle;
use skiff::io::Disk;
use skiff_checker::Op;
use tokio::time::Instant;

use super::cluster::{node_id, BrokerNode, NodeState};
use super::recorder::Recorder;
use crate::world::{
    CrashKind, Fault, LeaderTarget, LinkDirection, PartitionDirection, ScheduledFault, World,
    METADATA_TOPIC,
};

/// One thing the nemesis does at a given time.
#[derive(Debug, Clone)]
struct Action {
    at_ms: u64,
    /// Ends sort before starts at the same time.
    is_start: bool,
    fault: Fault,
    /// The fault this action starts or ends: its end undoes only what its start did.
    owner: usize,
}

fn actions(schedule: &[ScheduledFault]) -> Vec<Action> {
    let mut actions = Vec::new();
    let push = |at_ms: u64, fault: Fault, actions: &mut Vec<Action>| {
        let owner = actions.len();
        if fault.duration_ms() > 0
            || matches!(fault, Fault::Crash { .. } | Fault::LeaderCrash { .. })
        {
            actions.push(Action {
                at_ms: at_ms + fault.duration_ms(),
                is_start: false,
                fault: fault.clone(),
                owner,
            });
        }
        actions.push(Action {
            at_ms,
            is_start: true,
            fault,
            owner,
        });
    };
    for scheduled in schedule {
        match &scheduled.fault {
            Fault::RollingRestart {
                brokers,
                kind,
                down_ms,
                gap_ms,
            } => {
                for (step, broker) in brokers.iter().enumerate() {
                    let crash = Fault::Crash {
                        broker: *broker,
                        kind: *kind,
                        down_ms: *down_ms,
                    };
                    let at_ms = scheduled.at_ms + step as u64 * (down_ms + gap_ms);
                    push(at_ms, crash, &mut actions);
                }
            }
            fault => push(scheduled.at_ms, fault.clone(), &mut actions),
        }
    }
    actions.sort_by_key(|action| (action.at_ms, action.is_start));
    actions
}

/// What the nemesis remembers between a fault's start and its end.
#[derive(Default)]
struct NemesisState {
    /// Per broker, the fault that took it down or paused it.
    holders: BTreeMap<u32, usize>,
    /// The brokers a leader-targeted fault resolved to when it started.
    resolved: BTreeMap<usize, u32>,
    /// How many partitions clog each link between brokers (from, to).
    clogged: BTreeMap<(u32, u32), u32>,
}

/// The running broker that leads `target`: the one claiming it in the highest term. A single
/// broker (no replication) leads every partition it has.
fn current_leader(brokers: &[BrokerNode], target: &LeaderTarget) -> Option<u32> {
    brokers
        .iter()
        .filter(|node| node.state == NodeState::Up)
        .filter_map(|node| {
            let broker = node.broker()?;
            let partition = if target.topic == METADATA_TOPIC {
                broker
                    .cluster
                    .get()?
                    .replica(skiff::cluster::METADATA_GROUP)?
            } else {
                broker.partition(&target.topic, i32::try_from(target.partition).ok()?)?
            };
            if !partition.is_replicated() {
                return Some((0, node.index));
            }
            let leadership = partition.leadership();
            (leadership.leader == Some(node_id(node.index)))
                .then_some((leadership.term, node.index))
        })
        .max()
        .map(|(_, index)| index)
}

/// The links a partition between `isolated` and `others` clogs.
fn partition_links(isolated: &[u32], others: &[u32], direction: LinkDirection) -> Vec<(u32, u32)> {
    let mut links = Vec::new();
    for &inside in isolated {
        for &outside in others {
            if matches!(direction, LinkDirection::Both | LinkDirection::Outbound) {
                links.push((inside, outside));
            }
            if matches!(direction, LinkDirection::Both | LinkDirection::Inbound) {
                links.push((outside, inside));
            }
        }
    }
    links
}

fn direction_name(direction: LinkDirection) -> &'static str {
    match direction {
        LinkDirection::Both => "both ways",
        LinkDirection::Outbound => "outbound only",
        LinkDirection::Inbound => "inbound only",
    }
}

/// Applies the network's normal weather: no loss, madsim's default latency.
fn normal_weather() {
    NetSim::current().update_config(|config| {
        let defaults = madsim::net::Config::default();
        config.packet_loss_rate = defaults.packet_loss_rate;
        config.send_latency = defaults.send_latency;
    });
}

/// Runs the schedule from `safety_start`. Brokers are shared with the heal that follows.
pub async fn run_schedule(
    world: &World,
    brokers: &mut [BrokerNode],
    clients: &[NodeHandle],
    recorder: &Recorder,
    safety_start: Instant,
) {
    let mut state = NemesisState::default();
    for (sequence, action) in actions(&world.schedule).into_iter().enumerate() {
        tokio::time::sleep_until(safety_start + Duration::from_millis(action.at_ms)).await;
        let crash_seed =
            crate::report::fnv1a_64(format!("{}/crash/{sequence}", world.seed).as_bytes());
        apply(action, brokers, clients, recorder, crash_seed, &mut state).await;
    }
}

/// A broker hit by one fault (the fault's owner number).
#[derive(Debug, Clone, Copy)]
struct Hit {
    broker: u32,
    owner: usize,
}

/// Takes the broker down for the fault, if it is running.
async fn crash(
    brokers: &mut [BrokerNode],
    Hit { broker, owner }: Hit,
    kind: CrashKind,
    crash_seed: u64,
    state: &mut NemesisState,
    recorder: &Recorder,
    why: &str,
) {
    let node = &mut brokers[broker as usize];
    if node.state != NodeState::Up {
        return;
    }
    let description = node.go_down(kind, crash_seed).await;
    state.holders.insert(broker, owner);
    let op = Op::Crash {
        node: format!("broker-{broker}"),
    };
    recorder.nemesis(op, format!("{description}{why}"));
}

/// Restarts `broker` if fault `owner` took it down.
fn restart(
    brokers: &mut [BrokerNode],
    Hit { broker, owner }: Hit,
    state: &mut NemesisState,
    recorder: &Recorder,
) {
    let node = &mut brokers[broker as usize];
    if node.state != NodeState::Down || state.holders.get(&broker) != Some(&owner) {
        return;
    }
    state.holders.remove(&broker);
    node.restart();
    let name = format!("broker-{broker}");
    recorder.nemesis(
        Op::Restart { node: name.clone() },
        format!("restart of {name}"),
    );
}

/// Pauses `broker` for fault `owner`, if it is running.
fn pause(
    brokers: &mut [BrokerNode],
    Hit { broker, owner }: Hit,
    state: &mut NemesisState,
    recorder: &Recorder,
    why: &str,
) {
    let node = &mut brokers[broker as usize];
    if node.state != NodeState::Up {
        return;
    }
    node.pause();
    state.holders.insert(broker, owner);
    fault(recorder, format!("pause broker-{broker}{why}"));
}

/// Resumes `broker` if fault `owner` paused it.
fn resume(
    brokers: &mut [BrokerNode],
    Hit { broker, owner }: Hit,
    state: &mut NemesisState,
    recorder: &Recorder,
) {
    let node = &mut brokers[broker as usize];
    if node.state != NodeState::Paused || state.holders.get(&broker) != Some(&owner) {
        return;
    }
    state.holders.remove(&broker);
    node.resume();
    heal_event(recorder, format!("resume broker-{broker}"));
}

/// Clogs (or, at the end, unclogs) the links of a partition between brokers.
fn clog_brokers(
    brokers: &[BrokerNode],
    links: &[(u32, u32)],
    is_start: bool,
    state: &mut NemesisState,
) {
    let net = NetSim::current();
    for &(from, to) in links {
        let count = state.clogged.entry((from, to)).or_insert(0);
        let (from_node, to_node) = (
            brokers[from as usize].node.id(),
            brokers[to as usize].node.id(),
        );
        if is_start {
            *count += 1;
            if *count == 1 {
                net.clog_link(from_node, to_node);
            }
        } else if *count > 0 {
            *count -= 1;
            if *count == 0 {
                net.unclog_link(from_node, to_node);
            }
        }
    }
}

/// Starts or ends a fault aimed at the leader of `target`: resolves the leader at the start
/// and remembers it for the end.
fn leader_of(
    brokers: &[BrokerNode],
    target: &LeaderTarget,
    action: &Action,
    state: &mut NemesisState,
    recorder: &Recorder,
) -> Option<u32> {
    if !action.is_start {
        return state.resolved.remove(&action.owner);
    }
    let leader = current_leader(brokers, target);
    match leader {
        Some(leader) => {
            state.resolved.insert(action.owner, leader);
        }
        None => fault(
            recorder,
            format!(
                "no running leader of {}-{} to hit",
                target.topic, target.partition
            ),
        ),
    }
    leader
}

async fn apply(
    action: Action,
    brokers: &mut [BrokerNode],
    clients: &[NodeHandle],
    recorder: &Recorder,
    crash_seed: u64,
    state: &mut NemesisState,
) {
    let net = NetSim::current();
    let owner = action.owner;
    match (action.fault.clone(), action.is_start) {
        (Fault::Crash { broker, kind, .. }, true) => {
            let hit = Hit { broker, owner };
            crash(brokers, hit, kind, crash_seed, state, recorder, "").await;
        }
        (Fault::Crash { broker, .. }, false) => {
            restart(brokers, Hit { broker, owner }, state, recorder);
        }
        (Fault::Pause { broker, .. }, true) => {
            pause(brokers, Hit { broker, owner }, state, recorder, "");
        }
        (Fault::Pause { broker, .. }, false) => {
            resume(brokers, Hit { broker, owner }, state, recorder);
        }
        (Fault::LeaderCrash { target, kind, .. }, is_start) => {
            let Some(leader) = leader_of(brokers, &target, &action, state, recorder) else {
                return;
            };
            if is_start {
                let why = format!(" (leader of {}-{})", target.topic, target.partition);
                let hit = Hit {
                    broker: leader,
                    owner,
                };
                crash(brokers, hit, kind, crash_seed, state, recorder, &why).await;
            } else {
                let hit = Hit {
                    broker: leader,
                    owner,
                };
                restart(brokers, hit, state, recorder);
            }
        }
        (Fault::LeaderPause { target, .. }, is_start) => {
            let Some(leader) = leader_of(brokers, &target, &action, state, recorder) else {
                return;
            };
            if is_start {
                let why = format!(" (leader of {}-{})", target.topic, target.partition);
                let hit = Hit {
                    broker: leader,
                    owner,
                };
                pause(brokers, hit, state, recorder, &why);
            } else {
                let hit = Hit {
                    broker: leader,
                    owner,
                };
                resume(brokers, hit, state, recorder);
            }
        }
        (
            Fault::LeaderPartition {
                target, direction, ..
            },
            is_start,
        ) => {
            let Some(leader) = leader_of(brokers, &target, &action, state, recorder) else {
                return;
            };
            let others: Vec<u32> = (0..brokers.len() as u32)
                .filter(|other| *other != leader)
                .collect();
            let links = partition_links(&[leader], &others, direction);
            clog_brokers(brokers, &links, is_start, state);
            let description = format!(
                "partition broker-{leader} (leader of {}-{}) from the other brokers ({})",
                target.topic,
                target.partition,
                direction_name(direction)
            );
            if is_start {
                fault(recorder, description);
            } else {
                heal_event(recorder, description);
            }
        }
        (
            Fault::BrokerPartition {
                isolated,
                others,
                direction,
                ..
            },
            is_start,
        ) => {
            let others: Vec<u32> = if others.is_empty() {
                (0..brokers.len() as u32)
                    .filter(|other| !isolated.contains(other))
                    .collect()
            } else {
                others
            };
            let links = partition_links(&isolated, &others, direction);
            clog_brokers(brokers, &links, is_start, state);
            let description = format!(
                "partition brokers {isolated:?} from brokers {others:?} ({})",
                direction_name(direction)
            );
            if is_start {
                fault(recorder, description);
            } else {
                heal_event(recorder, description);
            }
        }
        (Fault::RollingRestart { .. }, _) => {
            unreachable!("a rolling restart is expanded into crashes")
        }
        (
            Fault::ClientPartition {
                client,
                broker,
                direction,
                ..
            },
            is_start,
        ) => {
            let client_node = clients[client as usize].id();
            let broker_node = brokers[broker as usize].node.id();
            let (links, way) = match direction {
                PartitionDirection::Both => (
                    vec![(client_node, broker_node), (broker_node, client_node)],
                    "both ways",
                ),
                PartitionDirection::ClientToBroker => {
                    (vec![(client_node, broker_node)], "client to broker")
                }
                PartitionDirection::BrokerToClient => {
                    (vec![(broker_node, client_node)], "broker to client")
                }
            };
            let description = format!("partition client-{client} from broker-{broker} ({way})");
            for (from, to) in links {
                if is_start {
                    net.clog_link(from, to);
                } else {
                    net.unclog_link(from, to);
                }
            }
            if is_start {
                fault(recorder, description);
            } else {
                heal_event(recorder, description);
            }
        }
        (Fault::PacketLoss { rate, .. }, true) => {
            net.update_config(|config| config.packet_loss_rate = rate);
            fault(recorder, format!("packet loss {rate:.3}"));
        }
        (Fault::LatencySpike { min_ms, max_ms, .. }, true) => {
            net.update_config(|config| {
                config.send_latency = Duration::from_millis(min_ms)..Duration::from_millis(max_ms);
            });
            fault(recorder, format!("latency {min_ms}..{max_ms} ms"));
        }
        (Fault::PacketLoss { .. } | Fault::LatencySpike { .. }, false) => {
            normal_weather();
            heal_event(recorder, "normal network weather".to_string());
        }
        (Fault::ClockJump { broker, skew_ms }, _) => {
            brokers[broker as usize].clock.set_skew_ms(skew_ms);
            fault(
                recorder,
                format!("clock of broker-{broker} skewed by {skew_ms} ms"),
            );
        }
    }
}

fn fault(recorder: &Recorder, description: String) {
    recorder.nemesis(
        Op::Fault {
            description: description.clone(),
        },
        description,
    );
}

fn heal_event(recorder: &Recorder, description: String) {
    recorder.nemesis(
        Op::Heal {
            description: description.clone(),
        },
        description,
    );
}

/// Undoes every fault still in force.
pub async fn heal(brokers: &mut [BrokerNode], clients: &[NodeHandle], recorder: &Recorder) {
    let net = NetSim::current();
    for client in clients {
        for broker in brokers.iter() {
            net.unclog_link(client.id(), broker.node.id());
            net.unclog_link(broker.node.id(), client.id());
        }
    }
    for from in brokers.iter() {
        for to in brokers.iter() {
            if from.index != to.index {
                net.unclog_link(from.node.id(), to.node.id());
            }
        }
    }
    normal_weather();
    for broker in brokers.iter_mut() {
        broker.disk.heal();
        // The broker sleeps for every operation's accrued latency after its syncs, one
        // account for the whole disk: a slow disk read by busy consumers can accrue more
        // than a second per second, and the backlog would outlast any liveness phase. A
        // healed disk starts with an empty queue.
        let backlog = broker.disk.take_simulated_latency();
        if !backlog.is_zero() {
            let description = format!(
                "drop {} ms of disk latency accrued by broker-{}",
                backlog.as_millis(),
                broker.index
            );
            heal_event(recorder, description);
        }
        broker.clock.set_skew_ms(0);
        match broker.state {
            NodeState::Paused => broker.resume(),
            NodeState::Down => broker.restart(),
            NodeState::Up => {}
        }
        if broker.has_offline_partition() {
            let description = broker.go_down(CrashKind::ProcessCrash, 0).await;
            recorder.nemesis(
                Op::Crash {
                    node: format!("broker-{}", broker.index),
                },
                format!("{description} (a partition is offline after a failed sync)"),
            );
            broker.restart();
        }
    }
    heal_event(recorder, "heal everything".to_string());
}
