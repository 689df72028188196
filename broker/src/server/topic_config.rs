//! Topic-level settings: Kafka's names, validated, layered over the broker's defaults.

use std::collections::BTreeMap;

use crate::config::SEGMENT_BYTES_MIN;
use crate::log::LogConfig;

/// The topic settings a client may set or describe, with the broker setting each defaults to.
pub const TOPIC_SETTINGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("retention.ms", "log.retention.ms"),
    ("retention.bytes", "log.retention.bytes"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("preallocate", "log.preallocate"),
];

/// Applies topic overrides to the broker's log defaults, refusing unknown names and bad values
/// with a message for the client.
pub fn log_config_for_topic(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig, String> {
    let mut config = defaults.clone();
    for (name, value) in overrides {
        let bad = |reason: &str| format!("invalid value `{value}` for {name}: {reason}");
        let number = || value.trim().parse::<i64>().map_err(|_| bad("not a number"));
        match name.as_str() {
            "cleanup.policy" => {
                if value.trim() != "delete" {
                    return Err(bad("only `delete` is supported (log compaction is not)"));
                }
            }
            "retention.ms" => config.retention_ms = number()?.max(-1),
            "retention.bytes" => config.retention_bytes = number()?.max(-1),
            "segment.bytes" => {
                let bytes = number()?;
                if bytes < SEGMENT_BYTES_MIN as i64 {
                    return Err(bad(&format!("must be at least {SEGMENT_BYTES_MIN}")));
                }
                config.segment_bytes = bytes as u64;
            }
            "segment.ms" => {
                let ms = number()?;
                if ms <= 0 {
                    return Err(bad("must be positive"));
                }
                config.segment_ms = ms;
            }
            "max.message.bytes" => {
                let bytes = number()?;
                if bytes <= 0 || bytes > i64::from(i32::MAX) {
                    return Err(bad("must be a positive 32-bit number"));
                }
                config.max_message_bytes = bytes as u32;
            }
            "index.interval.bytes" => {
                let bytes = number()?;
                if bytes <= 0 || bytes > i64::from(i32::MAX) {
                    return Err(bad("must be a positive 32-bit number"));
                }
                config.index_interval_bytes = bytes as u32;
            }
            "preallocate" => {
                config.preallocate = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("must be `true` or `false`")),
                }
            }
            // Checked against the replica count by the broker: the log has no use for it.
            "min.insync.replicas" => {
                if number()? < 1 {
                    return Err(bad("must be at least 1"));
                }
            }
            _ => return Err(format!("unknown or unsupported topic setting {name}")),
        }
    }
    Ok(config)
}

/// The largest `min.insync.replicas` a partition of `replicas` replicas honours: acks=-1
/// commits on a majority, so any value up to the majority is met by every commit, and a larger
/// one would need a commit rule that Raft does not have (refused rather than ignored).
pub fn min_insync_replicas_max(replicas: usize) -> i64 {
    (replicas / 2 + 1) as i64
}

/// Refuses a `min.insync.replicas` that a partition of `replicas` replicas cannot honour.
pub fn check_min_insync_replicas(
    overrides: &BTreeMap<String, String>,
    replicas: usize,
) -> Result<(), String> {
    let Some(value) = overrides.get("min.insync.replicas") else {
        return Ok(());
    };
    let wanted: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("invalid value `{value}` for min.insync.replicas: not a number"))?;
    let most = min_insync_replicas_max(replicas);
    if wanted > most {
        return Err(format!(
            "min.insync.replicas {wanted} cannot be met: with {replicas} replicas an acks=all write commits on a majority ({most})"
        ));
    }
    Ok(())
}

/// The effective value of every topic setting, and whether it is a topic override. The
/// internal offsets topic is described as compacted: it is not subject to retention, and what
/// its cleanup removes is what later records supersede (see `offsets_cleanup`).
pub fn describe_topic(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
    internal: bool,
) -> Vec<(&'static str, String, bool)> {
    let effective = log_config_for_topic(defaults, overrides).unwrap_or_else(|_| defaults.clone());
    TOPIC_SETTINGS
        .iter()
        .map(|(name, _)| {
            let value = match *name {
                "cleanup.policy" if internal => "compact".to_string(),
                "cleanup.policy" => "delete".to_string(),
                "retention.ms" => effective.retention_ms.to_string(),
                "retention.bytes" => effective.retention_bytes.to_string(),
                "segment.bytes" => effective.segment_bytes.to_string(),
                "segment.ms" => effective.segment_ms.to_string(),
                "max.message.bytes" => effective.max_message_bytes.to_string(),
                "index.interval.bytes" => effective.index_interval_bytes.to_string(),
                "preallocate" => effective.preallocate.to_string(),
                "min.insync.replicas" => overrides
                    .get("min.insync.replicas")
                    .map_or_else(|| "1".to_string(), |value| value.trim().to_string()),
                other => unreachable!("setting {other} is listed but not described"),
            };
            (*name, value, overrides.contains_key(*name))
        })
        .collect()
}

/// Kafka's topic name rules: 1 to 249 characters from `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    const TOPIC_NAME_CHARACTERS_MAX: usize = 249;
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("topic name `{name}` is illegal"));
    }
    if name.len() > TOPIC_NAME_CHARACTERS_MAX {
        return Err(format!(
            "topic name is longer than {TOPIC_NAME_CHARACTERS_MAX} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name `{name}` contains the illegal character `{bad}`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_insync_replicas_up_to_the_majority_is_accepted() {
        let wanting =
            |value: &str| BTreeMap::from([("min.insync.replicas".to_string(), value.to_string())]);
        assert!(check_min_insync_replicas(&wanting("2"), 3).is_ok());
        assert!(check_min_insync_replicas(&wanting("3"), 5).is_ok());
        assert!(check_min_insync_replicas(&wanting("3"), 3).is_err());
        assert!(check_min_insync_replicas(&wanting("2"), 1).is_err());
        assert!(check_min_insync_replicas(&BTreeMap::new(), 1).is_ok());
        assert!(log_config_for_topic(&LogConfig::default(), &wanting("0")).is_err());
        let described = describe_topic(&LogConfig::default(), &wanting("2"), false);
        assert!(described.contains(&("min.insync.replicas", "2".to_string(), true)));
        assert!(described.contains(&("cleanup.policy", "delete".to_string(), false)));
        let internal = describe_topic(&LogConfig::default(), &BTreeMap::new(), true);
        assert!(internal.contains(&("cleanup.policy", "compact".to_string(), false)));
    }

    #[test]
    fn overrides_apply_and_bad_ones_are_refused() {
        let defaults = LogConfig::default();
        let overrides = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        assert_eq!(
            log_config_for_topic(&defaults, &overrides)
                .unwrap()
                .retention_ms,
            1000
        );
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        assert!(log_config_for_topic(&defaults, &compact).is_err());
        let unknown = BTreeMap::from([("retention.msx".to_string(), "1".to_string())]);
        assert!(log_config_for_topic(&defaults, &unknown).is_err());
    }

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}
