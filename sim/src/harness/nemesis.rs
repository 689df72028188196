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

use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::NodeHandle;
use skiff::io::Disk;
use skiff_checker::Op;
use tokio::time::Instant;

use super::cluster::{BrokerNode, NodeState};
use super::recorder::Recorder;
use crate::world::{CrashKind, Fault, PartitionDirection, ScheduledFault, World};

/// One thing the nemesis does at a given time.
#[derive(Debug, Clone)]
struct Action {
    at_ms: u64,
    /// Ends sort before starts at the same time.
    is_start: bool,
    fault: Fault,
}

fn actions(schedule: &[ScheduledFault]) -> Vec<Action> {
    let mut actions = Vec::new();
    for scheduled in schedule {
        actions.push(Action {
            at_ms: scheduled.at_ms,
            is_start: true,
            fault: scheduled.fault.clone(),
        });
        if scheduled.fault.duration_ms() > 0 || matches!(scheduled.fault, Fault::Crash { .. }) {
            actions.push(Action {
                at_ms: scheduled.at_ms + scheduled.fault.duration_ms(),
                is_start: false,
                fault: scheduled.fault.clone(),
            });
        }
    }
    actions.sort_by_key(|action| (action.at_ms, action.is_start));
    actions
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
    for (sequence, action) in actions(&world.schedule).into_iter().enumerate() {
        tokio::time::sleep_until(safety_start + Duration::from_millis(action.at_ms)).await;
        let crash_seed =
            crate::report::fnv1a_64(format!("{}/crash/{sequence}", world.seed).as_bytes());
        apply(action, brokers, clients, recorder, crash_seed).await;
    }
}

async fn apply(
    action: Action,
    brokers: &mut [BrokerNode],
    clients: &[NodeHandle],
    recorder: &Recorder,
    crash_seed: u64,
) {
    let net = NetSim::current();
    match (action.fault, action.is_start) {
        (Fault::Crash { broker, kind, .. }, true) => {
            let node = &mut brokers[broker as usize];
            if node.state != NodeState::Up {
                return;
            }
            let description = node.go_down(kind, crash_seed).await;
            let op = Op::Crash {
                node: format!("broker-{broker}"),
            };
            recorder.nemesis(op, description);
        }
        (Fault::Crash { broker, .. }, false) => {
            let node = &mut brokers[broker as usize];
            if node.state != NodeState::Down {
                return;
            }
            node.restart();
            let name = format!("broker-{broker}");
            recorder.nemesis(
                Op::Restart { node: name.clone() },
                format!("restart of {name}"),
            );
        }
        (Fault::Pause { broker, .. }, true) => {
            let node = &mut brokers[broker as usize];
            if node.state != NodeState::Up {
                return;
            }
            node.pause();
            fault(recorder, format!("pause broker-{broker}"));
        }
        (Fault::Pause { broker, .. }, false) => {
            let node = &mut brokers[broker as usize];
            if node.state != NodeState::Paused {
                return;
            }
            node.resume();
            heal_event(recorder, format!("resume broker-{broker}"));
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
