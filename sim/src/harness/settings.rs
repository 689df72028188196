//! Topic settings changed while the faults run (`workload.settings_changes`), and the check
//! at the end that every broker holds the same settings: the acknowledged change, or a later
//! one that may have landed without an answer.

use std::collections::BTreeSet;
use std::time::Duration;

use skiff_client::Admin;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cluster::BrokerNode;
use super::recorder::Recorder;
use super::workload::{self, Phase};
use crate::world::{SettingsChange, World};

/// The setting the simulator changes.
pub const CHANGED_SETTING: &str = "segment.bytes";

/// One change and whether the cluster acknowledged it.
#[derive(Debug, Clone)]
pub struct ChangeOutcome {
    pub change: SettingsChange,
    pub acknowledged: bool,
}

/// Makes each change at its time, retrying until it is acknowledged or the clients stop.
pub async fn run_settings_changes(
    world: World,
    bootstrap: Vec<String>,
    recorder: Recorder,
    safety_start: Instant,
    phase: watch::Receiver<Phase>,
) -> Vec<ChangeOutcome> {
    let mut outcomes = Vec::with_capacity(world.workload.settings_changes.len());
    for change in &world.workload.settings_changes {
        tokio::time::sleep_until(safety_start + Duration::from_millis(change.at_ms)).await;
        let value = change.segment_bytes.to_string();
        let mut acknowledged = false;
        while *phase.borrow() != Phase::Stopped {
            let config = workload::client_config(&bootstrap, "settings".to_string());
            if let Ok(admin) = Admin::connect(config).await {
                if admin
                    .set_topic_config(&change.topic, CHANGED_SETTING, &value)
                    .await
                    .is_ok()
                {
                    acknowledged = true;
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(workload::CLIENT_RETRY_BACKOFF_MS)).await;
        }
        recorder.admin(format!(
            "{CHANGED_SETTING} of {} set to {value}: {}",
            change.topic,
            if acknowledged {
                "acknowledged"
            } else {
                "no answer before the clients stopped"
            }
        ));
        outcomes.push(ChangeOutcome {
            change: change.clone(),
            acknowledged,
        });
    }
    outcomes
}

/// The values of the setting a broker may end with for `topic`: the last acknowledged
/// change's (the default, `None`, if none was) and those of the unanswered changes after it.
pub fn allowed_values(outcomes: &[ChangeOutcome], topic: &str) -> BTreeSet<Option<String>> {
    let mut allowed = BTreeSet::from([None]);
    for outcome in outcomes
        .iter()
        .filter(|outcome| outcome.change.topic == topic)
    {
        let value = Some(outcome.change.segment_bytes.to_string());
        if outcome.acknowledged {
            allowed.clear();
        }
        allowed.insert(value);
    }
    allowed
}

/// Every running broker must hold an allowed value of each changed topic's setting, the same
/// on all of them, and the logs of its partitions must run with it.
pub fn check_settings(brokers: &[BrokerNode], recorder: &Recorder, outcomes: &[ChangeOutcome]) {
    let topics: BTreeSet<&str> = outcomes
        .iter()
        .map(|outcome| outcome.change.topic.as_str())
        .collect();
    let time_ms = recorder.now_ms();
    let mut state = recorder.lock();
    for topic in topics {
        let allowed = allowed_values(outcomes, topic);
        let mut seen: BTreeSet<Option<String>> = BTreeSet::new();
        for node in brokers {
            let Some(broker) = node.broker() else {
                continue;
            };
            let Some(held) = broker.topic(topic) else {
                state.invariants.settings_wrong(
                    time_ms,
                    node.index,
                    format!("topic {topic} is missing at the end"),
                );
                continue;
            };
            let value = held.configs.get(CHANGED_SETTING).cloned();
            let effective = value
                .as_deref()
                .map_or(Some(world_default(&broker)), |value| value.parse().ok());
            for partition in held.hosted() {
                let used = partition.log_config().segment_bytes;
                if effective != Some(used) {
                    state.invariants.settings_wrong(
                        time_ms,
                        node.index,
                        format!(
                            "{topic}-{}: {CHANGED_SETTING} override {value:?} but the log uses {used}",
                            partition.index
                        ),
                    );
                }
            }
            if !allowed.contains(&value) {
                state.invariants.settings_wrong(
                    time_ms,
                    node.index,
                    format!("topic {topic}: {CHANGED_SETTING} is {value:?}, allowed {allowed:?}"),
                );
            }
            seen.insert(value);
        }
        if seen.len() > 1 {
            state.invariants.settings_wrong(
                time_ms,
                0,
                format!("topic {topic}: the brokers disagree on {CHANGED_SETTING}: {seen:?}"),
            );
        }
    }
}

/// The broker's own `log.segment.bytes`, which a topic without an override uses.
fn world_default(broker: &skiff::server::Broker) -> u64 {
    broker.config.log.segment_bytes
}
