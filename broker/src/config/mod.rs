//! Broker configuration: Kafka's property names, read from a TOML file and `--set` overrides.
//!
//! A Kafka user looks for `log.dirs`, `listeners`, `num.partitions`, `log.retention.ms`; those
//! are the names here. In TOML the dots simply nest, so a file can say
//!
//! ```toml
//! log.dirs = "/var/lib/skiff"
//! listeners = "0.0.0.0:9092"
//! log.flush.policy = "sync"
//! ```
//!
//! The file and the overrides are flattened into one map of dotted names, then parsed into a
//! typed [`BrokerConfig`]. Unknown names and bad values are errors that name the setting: a typo
//! in a config file must not silently fall back to a default.

mod properties;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use thiserror::Error;

use crate::log::LogConfig;
pub use properties::flatten_toml;

use crate::group::OFFSETS_RETENTION_MS_DEFAULT;

/// The smallest `log.segment.bytes` accepted: a segment must hold at least a few batches.
pub const SEGMENT_BYTES_MIN: u64 = 1024;
/// The largest request frame accepted, in bytes (`socket.request.max.bytes`, Kafka's default).
pub const SOCKET_REQUEST_BYTES_MAX_DEFAULT: u32 = 100 * 1024 * 1024;
/// How often time-based retention is checked (`log.retention.check.interval.ms`).
pub const RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// How long a new group waits for more members before its first rebalance completes.
pub const GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT: u64 = 3_000;
/// The flush interval of the `interval` policy (`log.flush.interval.ms`).
pub const FLUSH_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Open client connections accepted at once; further connections are closed at once.
pub const CONNECTIONS_MAX_DEFAULT: u32 = 10_000;
/// How often expired offsets are looked for (`offsets.retention.check.interval.ms`).
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT: u64 = 10 * 60 * 1000;
/// Requests that take longer than this from read to answered are logged with where the time
/// went (`request.slow.log.ms`; 0 turns it off).
pub const REQUEST_SLOW_LOG_MS_DEFAULT: u64 = 1_000;

/// When produced data is made durable, and so when acks=1/-1 are answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum FlushPolicy {
    /// Acknowledge acks=1/-1 only after the batch is fsynced. One fsync covers every batch
    /// waiting for it (group commit). Consumers see only synced data, so a crash can never take
    /// back a record a consumer has read. The default.
    Sync,
    /// Acknowledge as soon as the batch is written to the page cache; fsync every
    /// `interval_ms`. A machine crash (not a process crash) can lose up to one interval of
    /// acknowledged records, as with Kafka's `log.flush.interval.ms`.
    Interval { interval_ms: u64 },
}

/// A broker's settings.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `log.dirs` (one directory).
    pub data_dir: PathBuf,
    /// `listeners`: where to accept clients.
    pub listener: SocketAddr,
    /// `advertised.listeners`: the host and port given to clients in Metadata.
    pub advertised_host: String,
    pub advertised_port: u16,
    /// `num.partitions`: partitions of an auto-created topic.
    pub default_partitions: i32,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_bytes_max: u32,
    /// `log.flush.policy` and `log.flush.interval.ms`.
    pub flush_policy: FlushPolicy,
    /// Segment, retention and index settings for topics without overrides.
    pub log: LogConfig,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: u64,
    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets`, small enough that
    /// superseded offsets are deleted long before the log grows large.
    pub offsets_segment_bytes: u64,
    /// `offsets.retention.minutes` (or `offsets.retention.ms`): see
    /// [`crate::group::GroupConfig::offsets_retention_ms`].
    pub offsets_retention_ms: u64,
    /// `offsets.retention.check.interval.ms`.
    pub offsets_retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms`.
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`.
    pub group_session_timeout_ms_min: u64,
    pub group_session_timeout_ms_max: u64,
    /// `max.connections`.
    pub connections_max: u32,
    /// `request.slow.log.ms`: log requests slower than this, by phase. `None`: never.
    pub request_slow_log_ms: Option<u64>,
    /// The cluster's members (`controller.quorum.voters`, `id@host:port`, the address being each
    /// member's replication listener). Empty: a single broker with no replication.
    pub quorum_voters: Vec<QuorumVoter>,
    /// `default.replication.factor`: the replicas of a topic created without naming a
    /// replication factor (auto-created, or asked with -1). `None`: the smaller of
    /// [`DEFAULT_REPLICATION_FACTOR_MAX`] and the cluster size.
    pub default_replication_factor: Option<usize>,
}

/// One member of the cluster, as named by `controller.quorum.voters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub node_id: i32,
    /// Where the member listens for replication traffic from the other members.
    pub address: SocketAddr,
}

/// The largest cluster: every member votes in the metadata quorum and holds a replica of the
/// metadata log and of the offsets topic, so this bounds the fan-out of their appends.
pub const QUORUM_VOTERS_MAX: usize = 7;
/// Unless `default.replication.factor` says otherwise, topics get this many replicas (or one
/// per broker in a smaller cluster): Kafka's recommended production setting, which survives
/// the loss of any one broker with acks=all.
pub const DEFAULT_REPLICATION_FACTOR_MAX: usize = 3;
/// Kafka's default `offsets.topic.segment.bytes` (100 MiB).
pub const OFFSETS_SEGMENT_BYTES_DEFAULT: u64 = 100 * 1024 * 1024;
/// Node ids of cluster members are below this (producer ids are spread by node id).
pub const CLUSTER_NODE_ID_LIMIT: i32 = 1024;

impl Default for BrokerConfig {
    fn default() -> Self {
        let listener: SocketAddr = "127.0.0.1:9092".parse().expect("literal address");
        Self {
            node_id: 1,
            data_dir: PathBuf::from("./data"),
            listener,
            advertised_host: listener.ip().to_string(),
            advertised_port: listener.port(),
            default_partitions: 1,
            auto_create_topics: true,
            socket_request_bytes_max: SOCKET_REQUEST_BYTES_MAX_DEFAULT,
            flush_policy: FlushPolicy::Sync,
            log: LogConfig::default(),
            retention_check_interval_ms: RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            offsets_segment_bytes: OFFSETS_SEGMENT_BYTES_DEFAULT,
            offsets_retention_ms: OFFSETS_RETENTION_MS_DEFAULT,
            offsets_retention_check_interval_ms: OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT,
            group_initial_rebalance_delay_ms: GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT,
            group_session_timeout_ms_min: 6_000,
            group_session_timeout_ms_max: 1_800_000,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            request_slow_log_ms: Some(REQUEST_SLOW_LOG_MS_DEFAULT),
            quorum_voters: Vec::new(),
            default_replication_factor: None,
        }
    }
}

/// A configuration that cannot be used, naming the setting at fault.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown setting `{0}` (Skiff uses Kafka's property names, e.g. log.dirs, listeners)")]
    Unknown(String),
    #[error("setting `{name}` has an invalid value `{value}`: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("cannot read the config file {path}: {reason}")]
    File { path: String, reason: String },
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

fn parse_number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|error| invalid(name, value, error.to_string()))
}

fn parse_positive<T>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default,
    T::Err: std::fmt::Display,
{
    let parsed: T = parse_number(name, value)?;
    if parsed <= T::default() {
        return Err(invalid(name, value, "must be greater than zero"));
    }
    Ok(parsed)
}

/// A segment size: at least [`SEGMENT_BYTES_MIN`].
fn parse_segment_bytes(name: &str, value: &str) -> Result<u64, ConfigError> {
    let bytes: u64 = parse_positive(name, value)?;
    if bytes < SEGMENT_BYTES_MIN {
        return Err(invalid(
            name,
            value,
            format!("must be at least {}", SEGMENT_BYTES_MIN),
        ));
    }
    Ok(bytes)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "must be true or false")),
    }
}

/// Accepts `host:port`, `PLAINTEXT://host:port`, and Kafka's comma-separated lists (the first
/// entry is used: one listener per broker).
fn parse_listener(name: &str, value: &str) -> Result<(String, u16), ConfigError> {
    let first = value.split(',').next().unwrap_or("").trim();
    let without_scheme = first.rsplit("://").next().unwrap_or(first);
    let (host, port) = without_scheme
        .rsplit_once(':')
        .ok_or_else(|| invalid(name, value, "expected host:port"))?;
    let port: u16 = parse_number(name, port)?;
    let host = host.trim_matches(|c| c == '[' || c == ']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok((host.to_string(), port))
}

/// `controller.quorum.voters`: `id@host:port,...`, hosts as IP addresses, ids and addresses
/// distinct.
fn parse_voters(name: &str, value: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| invalid(name, value, "expected id@host:port entries"))?;
        let node_id: i32 = parse_number(name, id.trim())?;
        if !(0..CLUSTER_NODE_ID_LIMIT).contains(&node_id) {
            return Err(invalid(
                name,
                value,
                format!("node ids are between 0 and {}", CLUSTER_NODE_ID_LIMIT - 1),
            ));
        }
        let address: SocketAddr = address
            .trim()
            .parse()
            .map_err(|_| invalid(name, value, "each address must be ip:port"))?;
        if voters
            .iter()
            .any(|voter| voter.node_id == node_id || voter.address == address)
        {
            return Err(invalid(
                name,
                value,
                "node ids and addresses must be distinct",
            ));
        }
        voters.push(QuorumVoter { node_id, address });
    }
    if voters.len() > QUORUM_VOTERS_MAX {
        return Err(invalid(
            name,
            value,
            format!("at most {QUORUM_VOTERS_MAX} voters"),
        ));
    }
    voters.sort_by_key(|voter| voter.node_id);
    Ok(voters)
}

/// Kafka allows retention in ms, minutes or hours; the most precise given wins.
fn retention_from_units(properties: &BTreeMap<String, String>) -> Result<Option<i64>, ConfigError> {
    for (name, unit_ms) in [
        ("log.retention.ms", 1i64),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", 3_600_000),
    ] {
        if let Some(value) = properties.get(name) {
            let amount: i64 = parse_number(name, value)?;
            if amount < 0 {
                return Ok(Some(-1));
            }
            return Ok(Some(amount.saturating_mul(unit_ms)));
        }
    }
    Ok(None)
}

impl BrokerConfig {
    /// Whether this broker is one member of a replicated cluster.
    pub fn is_clustered(&self) -> bool {
        self.quorum_voters.len() > 1
    }

    /// The brokers in the cluster: 1 for a single broker.
    pub fn cluster_size(&self) -> usize {
        self.quorum_voters.len().max(1)
    }

    /// The replication factor of topics created without one.
    pub fn replication_factor_default(&self) -> usize {
        self.default_replication_factor
            .unwrap_or(DEFAULT_REPLICATION_FACTOR_MAX)
            .min(self.cluster_size())
    }

    /// Builds a configuration from flattened properties; every name must be known.
    pub fn from_properties(properties: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let mut advertised: Option<(String, u16)> = None;
        let mut flush_interval_ms = FLUSH_INTERVAL_MS_DEFAULT;
        let mut flush_policy_name = "sync".to_string();
        for (name, value) in properties {
            let value = value.as_str();
            match name.as_str() {
                "node.id" | "broker.id" => config.node_id = parse_number(name, value)?,
                "log.dirs" | "log.dir" | "data.dir" => {
                    let first = value.split(',').next().unwrap_or("").trim();
                    if first.is_empty() {
                        return Err(invalid(name, value, "must name a directory"));
                    }
                    config.data_dir = PathBuf::from(first);
                }
                "listeners" => {
                    let (host, port) = parse_listener(name, value)?;
                    config.listener = format!("{host}:{port}")
                        .parse()
                        .or_else(|_| format!("[{host}]:{port}").parse())
                        .map_err(|_| invalid(name, value, "host must be an IP address"))?;
                }
                "advertised.listeners" => advertised = Some(parse_listener(name, value)?),
                "num.partitions" => config.default_partitions = parse_positive(name, value)?,
                "auto.create.topics.enable" => config.auto_create_topics = parse_bool(name, value)?,
                "socket.request.max.bytes" => {
                    config.socket_request_bytes_max = parse_positive(name, value)?
                }
                "log.flush.policy" => flush_policy_name = value.trim().to_string(),
                "log.flush.interval.ms" => flush_interval_ms = parse_positive(name, value)?,
                "log.segment.bytes" => config.log.segment_bytes = parse_segment_bytes(name, value)?,
                "offsets.topic.segment.bytes" => {
                    config.offsets_segment_bytes = parse_segment_bytes(name, value)?
                }
                "log.roll.ms" => config.log.segment_ms = parse_positive(name, value)?,
                "log.roll.hours" => {
                    config.log.segment_ms =
                        parse_positive::<i64>(name, value)?.saturating_mul(3_600_000)
                }
                "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => {}
                "log.retention.bytes" => config.log.retention_bytes = parse_number(name, value)?,
                "log.index.interval.bytes" => {
                    config.log.index_interval_bytes = parse_positive(name, value)?
                }
                "message.max.bytes" => config.log.max_message_bytes = parse_positive(name, value)?,
                "log.preallocate" => config.log.preallocate = parse_bool(name, value)?,
                "log.retention.check.interval.ms" => {
                    config.retention_check_interval_ms = parse_positive(name, value)?
                }
                // The finer-grained form wins, as with log.retention.*.
                "offsets.retention.ms" => {
                    config.offsets_retention_ms = parse_positive(name, value)?
                }
                "offsets.retention.minutes" => {
                    if !properties.contains_key("offsets.retention.ms") {
                        config.offsets_retention_ms =
                            parse_positive::<u64>(name, value)?.saturating_mul(60_000);
                    }
                }
                "offsets.retention.check.interval.ms" => {
                    config.offsets_retention_check_interval_ms = parse_positive(name, value)?
                }
                "group.initial.rebalance.delay.ms" => {
                    config.group_initial_rebalance_delay_ms = parse_number(name, value)?
                }
                "group.min.session.timeout.ms" => {
                    config.group_session_timeout_ms_min = parse_positive(name, value)?
                }
                "group.max.session.timeout.ms" => {
                    config.group_session_timeout_ms_max = parse_positive(name, value)?
                }
                "max.connections" => config.connections_max = parse_positive(name, value)?,
                "request.slow.log.ms" => {
                    let threshold_ms: u64 = parse_number(name, value)?;
                    config.request_slow_log_ms = (threshold_ms > 0).then_some(threshold_ms);
                }
                "controller.quorum.voters" => config.quorum_voters = parse_voters(name, value)?,
                "default.replication.factor" => {
                    config.default_replication_factor = Some(parse_positive(name, value)?)
                }
                // Honoured by construction up to the majority (acks=-1 commits on a majority);
                // checked below once the voters are known.
                "min.insync.replicas" => {
                    let _: u32 = parse_positive(name, value)?;
                }
                _ => return Err(ConfigError::Unknown(name.clone())),
            }
        }
        if let Some(retention_ms) = retention_from_units(properties)? {
            config.log.retention_ms = retention_ms;
        }
        config.flush_policy = match flush_policy_name.as_str() {
            "sync" => FlushPolicy::Sync,
            "interval" => FlushPolicy::Interval {
                interval_ms: flush_interval_ms,
            },
            other => {
                return Err(invalid(
                    "log.flush.policy",
                    other,
                    "must be `sync` (acknowledge after fsync) or `interval`",
                ))
            }
        };
        let (host, port) = advertised.unwrap_or_else(|| {
            let host = if config.listener.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                config.listener.ip().to_string()
            };
            (host, config.listener.port())
        });
        config.advertised_host = host;
        config.advertised_port = port;
        if !config.quorum_voters.is_empty()
            && !config
                .quorum_voters
                .iter()
                .any(|voter| voter.node_id == config.node_id)
        {
            return Err(invalid(
                "controller.quorum.voters",
                &properties["controller.quorum.voters"],
                format!("does not list this broker's node.id {}", config.node_id),
            ));
        }
        if let Some(wanted) = config.default_replication_factor {
            let brokers = config.cluster_size();
            if wanted > brokers {
                return Err(invalid(
                    "default.replication.factor",
                    &wanted.to_string(),
                    format!("the cluster has {brokers} broker(s)"),
                ));
            }
        }
        if let Some(value) = properties.get("min.insync.replicas") {
            let wanted: usize = parse_positive("min.insync.replicas", value)?;
            let replicas = config.replication_factor_default();
            if wanted > replicas / 2 + 1 {
                return Err(invalid(
                    "min.insync.replicas",
                    value,
                    format!(
                        "cannot be met: with {replicas} replicas an acks=all write commits on a majority ({})",
                        replicas / 2 + 1
                    ),
                ));
            }
        }
        if config.group_session_timeout_ms_min > config.group_session_timeout_ms_max {
            return Err(invalid(
                "group.min.session.timeout.ms",
                &config.group_session_timeout_ms_min.to_string(),
                "must not exceed group.max.session.timeout.ms",
            ));
        }
        Ok(config)
    }

    /// The settings a DescribeConfigs of this broker reports, by Kafka name.
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let (policy, interval) = match self.flush_policy {
            FlushPolicy::Sync => ("sync", FLUSH_INTERVAL_MS_DEFAULT),
            FlushPolicy::Interval { interval_ms } => ("interval", interval_ms),
        };
        vec![
            ("node.id", self.node_id.to_string()),
            ("log.dirs", self.data_dir.display().to_string()),
            ("listeners", self.listener.to_string()),
            (
                "advertised.listeners",
                format!("{}:{}", self.advertised_host, self.advertised_port),
            ),
            ("num.partitions", self.default_partitions.to_string()),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
            ),
            (
                "socket.request.max.bytes",
                self.socket_request_bytes_max.to_string(),
            ),
            ("log.flush.policy", policy.to_string()),
            ("log.flush.interval.ms", interval.to_string()),
            ("log.segment.bytes", self.log.segment_bytes.to_string()),
            ("log.roll.ms", self.log.segment_ms.to_string()),
            ("log.retention.ms", self.log.retention_ms.to_string()),
            ("log.retention.bytes", self.log.retention_bytes.to_string()),
            (
                "log.index.interval.bytes",
                self.log.index_interval_bytes.to_string(),
            ),
            ("message.max.bytes", self.log.max_message_bytes.to_string()),
            ("log.preallocate", self.log.preallocate.to_string()),
            (
                "log.retention.check.interval.ms",
                self.retention_check_interval_ms.to_string(),
            ),
            (
                "offsets.topic.segment.bytes",
                self.offsets_segment_bytes.to_string(),
            ),
            (
                "offsets.retention.minutes",
                (self.offsets_retention_ms / 60_000).to_string(),
            ),
            (
                "offsets.retention.check.interval.ms",
                self.offsets_retention_check_interval_ms.to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group_initial_rebalance_delay_ms.to_string(),
            ),
            (
                "default.replication.factor",
                self.replication_factor_default().to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn quorum_voters_make_a_cluster_and_are_checked() {
        let voters = "3@10.0.0.3:9093, 1@10.0.0.1:9093,2@10.0.0.2:9093";
        let config = BrokerConfig::from_properties(&properties(&[
            ("node.id", "2"),
            ("controller.quorum.voters", voters),
            ("min.insync.replicas", "2"),
        ]))
        .unwrap();
        assert!(config.is_clustered());
        let ids: Vec<i32> = config
            .quorum_voters
            .iter()
            .map(|voter| voter.node_id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(config.quorum_voters[1].address.to_string(), "10.0.0.2:9093");
        for (bad, reason) in [
            ("1@10.0.0.1:9093,1@10.0.0.2:9093", "distinct"),
            ("1@10.0.0.1:9093,2@10.0.0.1:9093", "distinct"),
            ("1@somehost:9093", "ip:port"),
            ("1-10.0.0.1:9093", "id@host:port"),
            ("4096@10.0.0.1:9093", "between"),
            ("1@10.0.0.1:9093,3@10.0.0.3:9093", "does not list"),
        ] {
            let error = BrokerConfig::from_properties(&properties(&[
                ("node.id", "2"),
                ("controller.quorum.voters", bad),
            ]))
            .unwrap_err();
            assert!(error.to_string().contains(reason), "{bad}: {error}");
        }
        let too_strict = BrokerConfig::from_properties(&properties(&[
            ("node.id", "2"),
            ("controller.quorum.voters", voters),
            ("min.insync.replicas", "3"),
        ]));
        assert!(too_strict.unwrap_err().to_string().contains("majority"));
        assert_eq!(config.replication_factor_default(), 3);
        let five =
            "1@10.0.0.1:9093,2@10.0.0.2:9093,3@10.0.0.3:9093,4@10.0.0.4:9093,5@10.0.0.5:9093";
        let defaulted = BrokerConfig::from_properties(&properties(&[
            ("node.id", "2"),
            ("controller.quorum.voters", five),
        ]))
        .unwrap();
        assert_eq!(defaulted.replication_factor_default(), 3);
        let wider = BrokerConfig::from_properties(&properties(&[
            ("node.id", "2"),
            ("controller.quorum.voters", five),
            ("default.replication.factor", "5"),
            ("min.insync.replicas", "3"),
        ]))
        .unwrap();
        assert_eq!(wider.replication_factor_default(), 5);
        let too_wide = BrokerConfig::from_properties(&properties(&[
            ("node.id", "2"),
            ("controller.quorum.voters", voters),
            ("default.replication.factor", "4"),
        ]));
        assert!(too_wide.unwrap_err().to_string().contains("3 broker(s)"));
        let single = BrokerConfig::from_properties(&BTreeMap::new()).unwrap();
        assert_eq!(single.replication_factor_default(), 1);
    }

    #[test]
    fn defaults_are_a_local_single_node_broker() {
        let config = BrokerConfig::from_properties(&BTreeMap::new()).unwrap();
        assert_eq!(config.listener.to_string(), "127.0.0.1:9092");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.flush_policy, FlushPolicy::Sync);
        assert!(config.auto_create_topics);
        assert_eq!(
            config.request_slow_log_ms,
            Some(REQUEST_SLOW_LOG_MS_DEFAULT)
        );
        let quiet =
            BrokerConfig::from_properties(&properties(&[("request.slow.log.ms", "0")])).unwrap();
        assert_eq!(quiet.request_slow_log_ms, None);
    }

    #[test]
    fn kafka_names_and_listener_forms_are_understood() {
        let config = BrokerConfig::from_properties(&properties(&[
            ("listeners", "PLAINTEXT://0.0.0.0:19092"),
            ("advertised.listeners", "PLAINTEXT://broker-1:19092"),
            ("log.retention.hours", "2"),
            ("log.flush.policy", "interval"),
            ("log.flush.interval.ms", "250"),
        ]))
        .unwrap();
        assert_eq!(config.listener.port(), 19092);
        assert_eq!(config.advertised_host, "broker-1");
        assert_eq!(config.log.retention_ms, 7_200_000);
        assert_eq!(config.offsets_retention_ms, OFFSETS_RETENTION_MS_DEFAULT);
        let offsets = BrokerConfig::from_properties(&properties(&[
            ("offsets.retention.minutes", "1440"),
            ("offsets.retention.check.interval.ms", "5000"),
        ]))
        .unwrap();
        assert_eq!(offsets.offsets_retention_ms, 86_400_000);
        assert_eq!(offsets.offsets_retention_check_interval_ms, 5000);
        let finer = BrokerConfig::from_properties(&properties(&[
            ("offsets.retention.minutes", "1440"),
            ("offsets.retention.ms", "3000"),
        ]))
        .unwrap();
        assert_eq!(finer.offsets_retention_ms, 3000);
        assert_eq!(
            config.flush_policy,
            FlushPolicy::Interval { interval_ms: 250 }
        );
    }

    #[test]
    fn typos_and_bad_values_name_the_setting() {
        let unknown = BrokerConfig::from_properties(&properties(&[("log.dirz", "x")]));
        assert_eq!(
            unknown.unwrap_err(),
            ConfigError::Unknown("log.dirz".into())
        );
        let bad = BrokerConfig::from_properties(&properties(&[("num.partitions", "0")]));
        assert!(matches!(bad, Err(ConfigError::Invalid { name, .. }) if name == "num.partitions"));
        let policy = BrokerConfig::from_properties(&properties(&[("log.flush.policy", "never")]));
        assert!(matches!(policy, Err(ConfigError::Invalid { .. })));
    }
}
