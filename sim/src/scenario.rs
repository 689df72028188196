//! Scenario files: TOML that pins part of a world, or all of it.
//!
//! A scenario is a partial [`World`] under a `[world]` table. It is merged over the world the
//! seed draws: tables merge key by key, and any other value (a number, a string, an array
//! such as `schedule` or `producers`) replaces the drawn one. So a file may pin just the
//! flush policy and keep everything else drawn, or pin a whole fault schedule:
//!
//! ```toml
//! name = "single-broker-kill-mid-stream"
//! description = "The broker loses power mid-stream and restarts."
//!
//! [world]
//! profile = "many-crashes"
//! cluster.flush_policy = { kind = "sync" }
//! schedule = [
//!   { at_ms = 5000, fault = "crash", broker = 0, down_ms = 500, kind = { kind = "machine-crash", mode = "lose-everything-unsynced" } },
//! ]
//! ```
//!
//! The seed still drives everything the file leaves open, and the simulation's own
//! randomness (network latencies, crash writeback). The merged world must follow the fault
//! model ([`World::problems`]); a scenario breaking it is refused rather than run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::report::FailureKind;
use crate::world::World;

/// A parsed scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, usually the file name without `.toml`.
    #[serde(default)]
    pub name: String,
    /// What the scenario is about.
    #[serde(default)]
    pub description: String,
    /// The partial world merged over the drawn one.
    #[serde(default)]
    pub world: toml::Table,
    /// Whether the world deliberately breaks the fault model (a known-bad world, to show
    /// that the simulator detects what it must): the merged world is then not validated.
    #[serde(default)]
    pub breaks_fault_model: bool,
    /// The failure a known-bad world must produce.
    #[serde(default)]
    pub expected_failure: Option<FailureKind>,
}

/// Why a scenario cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path} is not a valid scenario: {reason}")]
    Parse {
        /// The file.
        path: String,
        /// The parse error.
        reason: String,
    },
    /// The merged world is not a world, or breaks the fault model.
    #[error("scenario {name} gives an invalid world: {reason}")]
    InvalidWorld {
        /// The scenario.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl Scenario {
    /// Reads a scenario file; its name defaults to the file stem.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: display.clone(),
            source,
        })?;
        let mut scenario = Scenario::parse(&text).map_err(|reason| ScenarioError::Parse {
            path: display,
            reason,
        })?;
        if scenario.name.is_empty() {
            scenario.name = path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        Ok(scenario)
    }

    /// Parses scenario text.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|error| error.to_string())?;
        if scenario.world.contains_key("seed") {
            return Err("a scenario cannot pin the seed; pass --seed".to_string());
        }
        Ok(scenario)
    }

    /// The broker count the scenario pins (`cluster.brokers`), if any.
    pub fn pinned_brokers(&self) -> Option<u32> {
        self.world
            .get("cluster")?
            .as_table()?
            .get("brokers")?
            .as_integer()
            .and_then(|brokers| u32::try_from(brokers).ok())
    }

    /// The world of `seed` under this scenario: drawn with the broker count the scenario pins
    /// (so that the drawn faults cover every broker), then merged with [`Scenario::apply`].
    pub fn world_for_seed(&self, seed: u64) -> Result<World, ScenarioError> {
        let drawn = match self.pinned_brokers() {
            Some(brokers) if (1..=crate::world::BROKERS_MAX).contains(&brokers) => {
                World::draw_with_brokers(seed, brokers)
            }
            _ => World::draw(seed),
        };
        self.apply(&drawn)
    }

    /// The drawn world with this scenario's settings merged over it.
    pub fn apply(&self, drawn: &World) -> Result<World, ScenarioError> {
        let invalid = |reason: String| ScenarioError::InvalidWorld {
            name: self.name.clone(),
            reason,
        };
        let mut merged = serde_json::to_value(drawn).expect("a world serializes");
        let overrides =
            serde_json::to_value(&self.world).map_err(|error| invalid(error.to_string()))?;
        let pins_settings_changes = overrides.pointer("/workload/settings_changes").is_some();
        merge(&mut merged, overrides);
        let mut world: World =
            serde_json::from_value(merged).map_err(|error| invalid(error.to_string()))?;
        if !pins_settings_changes {
            // A drawn change may name a drawn topic the scenario replaced, or come after a
            // safety phase the scenario shortened: it is dropped rather than moved.
            let safety_ms = world.phases.safety_ms;
            let topics: Vec<String> = world
                .workload
                .topics
                .iter()
                .map(|topic| topic.name.clone())
                .collect();
            world
                .workload
                .settings_changes
                .retain(|change| topics.contains(&change.topic) && change.at_ms < safety_ms);
        }
        world.schedule.sort_by_key(|scheduled| scheduled.at_ms);
        let problems = world.problems();
        if !problems.is_empty() && !self.breaks_fault_model {
            return Err(invalid(problems.join("; ")));
        }
        Ok(world)
    }
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
fn merge(base: &mut serde_json::Value, overrides: serde_json::Value) {
    match (base, overrides) {
        (serde_json::Value::Object(base), serde_json::Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overrides) => *base = overrides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{CrashKind, Fault, FlushPolicySetting};

    #[test]
    fn a_scenario_pins_only_what_it_names() {
        let scenario = Scenario::parse(
            r#"
            [world]
            cluster.flush_policy = { kind = "sync" }
            schedule = [
              { at_ms = 5000, fault = "crash", broker = 0, down_ms = 500, kind = { kind = "machine-crash", mode = "keep-prefix" } },
            ]
            "#,
        )
        .unwrap();
        let drawn = World::draw(3);
        let world = scenario.apply(&drawn).unwrap();
        assert_eq!(world.cluster.flush_policy, FlushPolicySetting::Sync);
        assert_eq!(world.cluster.segment_bytes, drawn.cluster.segment_bytes);
        assert_eq!(world.workload, drawn.workload);
        assert_eq!(world.schedule.len(), 1);
        assert!(matches!(
            world.schedule[0].fault,
            Fault::Crash {
                kind: CrashKind::MachineCrash { .. },
                ..
            }
        ));
    }

    #[test]
    fn a_scenario_breaking_the_fault_model_is_refused() {
        let scenario = Scenario::parse(
            r#"
            [world]
            cluster.flush_policy = { kind = "interval", interval_ms = 500 }
            schedule = [
              { at_ms = 5000, fault = "crash", broker = 0, down_ms = 500, kind = { kind = "machine-crash", mode = "keep-prefix" } },
            ]
            "#,
        )
        .unwrap();
        assert!(scenario.apply(&World::draw(3)).is_err());
    }

    #[test]
    fn a_scenario_cannot_pin_the_seed() {
        assert!(Scenario::parse("[world]\nseed = 4\n").is_err());
    }

    #[test]
    fn known_bad_scenarios_say_what_they_break() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/known-bad");
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            let scenario = Scenario::load(&path).unwrap();
            assert!(scenario.breaks_fault_model, "{}", path.display());
            assert!(scenario.expected_failure.is_some(), "{}", path.display());
            scenario.world_for_seed(1).unwrap();
        }
    }

    #[test]
    fn every_checked_in_scenario_applies_to_many_seeds() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let mut count = 0;
        for entry in std::fs::read_dir(directory).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let scenario = Scenario::load(&path).unwrap();
                for seed in 0..50 {
                    if let Err(error) = scenario.world_for_seed(seed) {
                        panic!("{}: seed {seed}: {error}", path.display());
                    }
                }
                count += 1;
            }
        }
        assert!(count >= 5, "expected the checked-in scenarios");
    }
}
