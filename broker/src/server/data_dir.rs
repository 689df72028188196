//! The data directory's own files: identity (`meta.properties`) and the topic catalogue
//! (`topics.json`). Partition directories (`<topic>-<partition>/`) belong to the log.
//!
//! ```text
//!   data/
//!     meta.properties          cluster.id, node.id, format version
//!     topics.json              every topic: id, partition count, config overrides
//!     producer-ids.checkpoint  the highest producer id reserved
//!     orders-0/ orders-1/ …    partition logs
//!     __consumer_offsets-0/    committed group offsets
//! ```
//!
//! Both files are replaced atomically (write, sync, rename, sync the directory), so a crash
//! leaves the old or the new version, never a mix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::io::disk::{read_whole, write_atomically};
use crate::io::{Disk, Random};

/// The format of the data directory; bumped on incompatible changes.
pub const DATA_FORMAT_VERSION: u32 = 1;
const META_FILE: &str = "meta.properties";
const TOPICS_FILE: &str = "topics.json";
const PRODUCER_IDS_FILE: &str = "producer-ids.checkpoint";

/// A data directory the broker must not start on.
#[derive(Debug, Error)]
pub enum DataDirError {
    #[error("data directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data directory {0} is not empty but has no meta.properties: it is not a Skiff data \
         directory (or it was damaged); refusing to start on it"
    )]
    Foreign(String),
    #[error("data directory file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("data directory belongs to node {found}, but this broker is node {expected}")]
    WrongNode { expected: i32, found: i32 },
    #[error("data directory format version {0} is not supported (this broker reads {DATA_FORMAT_VERSION})")]
    UnsupportedVersion(u32),
}

/// The identity recorded in `meta.properties`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDirIdentity {
    pub cluster_id: String,
    pub node_id: i32,
}

/// A topic in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// The topic id, 16 bytes as 32 hex digits.
    pub id: String,
    pub partitions: i32,
    /// Topic-level config overrides by Kafka name.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Partition `i`'s log start as DeleteRecords set it; absent where it never did.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_start_offsets: BTreeMap<i32, i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TopicsFile {
    version: u32,
    topics: BTreeMap<String, TopicRecord>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> DataDirError {
    DataDirError::Corrupt {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 characters).
fn new_cluster_id(random: &Random) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = random.uuid_bytes();
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut encoded = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        bit_count += 8;
        while bit_count >= 6 {
            bit_count -= 6;
            encoded.push(ALPHABET[((bits >> bit_count) & 63) as usize] as char);
        }
    }
    if bit_count > 0 {
        encoded.push(ALPHABET[((bits << (6 - bit_count)) & 63) as usize] as char);
    }
    encoded
}

/// Opens the data directory, creating and formatting it if it is new or empty, and checks that
/// an existing one belongs to this node.
pub fn open_data_dir(
    disk: &dyn Disk,
    root: &Path,
    node_id: i32,
    random: &Random,
) -> Result<DataDirIdentity, DataDirError> {
    let meta_path = root.join(META_FILE);
    if !disk.exists(root) {
        disk.create_dir_all(root).map_err(io_error(root))?;
        if let Some(parent) = root
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            disk.sync_dir(parent).map_err(io_error(parent))?;
        }
    }
    if !disk.exists(&meta_path) {
        let entries = disk.list(root).map_err(io_error(root))?;
        if entries.iter().any(|entry| !entry.name.starts_with('.')) {
            return Err(DataDirError::Foreign(root.display().to_string()));
        }
        let identity = DataDirIdentity {
            cluster_id: new_cluster_id(random),
            node_id,
        };
        let text = format!(
            "# Skiff data directory. Do not edit.\nversion={DATA_FORMAT_VERSION}\ncluster.id={}\nnode.id={}\n",
            identity.cluster_id, identity.node_id
        );
        write_atomically(disk, &meta_path, text.as_bytes()).map_err(io_error(&meta_path))?;
        return Ok(identity);
    }
    let text = read_whole(disk, &meta_path).map_err(io_error(&meta_path))?;
    let text = String::from_utf8(text).map_err(|_| corrupt(&meta_path, "not UTF-8"))?;
    let mut properties = BTreeMap::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        let (name, value) = line
            .split_once('=')
            .ok_or_else(|| corrupt(&meta_path, format!("line `{line}` is not name=value")))?;
        properties.insert(name.trim().to_string(), value.trim().to_string());
    }
    let field = |name: &str| {
        properties
            .get(name)
            .cloned()
            .ok_or_else(|| corrupt(&meta_path, format!("missing {name}")))
    };
    let version: u32 = field("version")?
        .parse()
        .map_err(|_| corrupt(&meta_path, "version is not a number"))?;
    if version != DATA_FORMAT_VERSION {
        return Err(DataDirError::UnsupportedVersion(version));
    }
    let found: i32 = field("node.id")?
        .parse()
        .map_err(|_| corrupt(&meta_path, "node.id is not a number"))?;
    if found != node_id {
        return Err(DataDirError::WrongNode {
            expected: node_id,
            found,
        });
    }
    Ok(DataDirIdentity {
        cluster_id: field("cluster.id")?,
        node_id,
    })
}

/// Loads the topic catalogue (empty if the broker never created a topic).
pub fn load_topics(
    disk: &dyn Disk,
    root: &Path,
) -> Result<BTreeMap<String, TopicRecord>, DataDirError> {
    let path = root.join(TOPICS_FILE);
    if !disk.exists(&path) {
        return Ok(BTreeMap::new());
    }
    let bytes = read_whole(disk, &path).map_err(io_error(&path))?;
    let file: TopicsFile =
        serde_json::from_slice(&bytes).map_err(|error| corrupt(&path, error.to_string()))?;
    if file.version != DATA_FORMAT_VERSION {
        return Err(DataDirError::UnsupportedVersion(file.version));
    }
    Ok(file.topics)
}

/// Durably replaces the topic catalogue.
pub fn store_topics(
    disk: &dyn Disk,
    root: &Path,
    topics: &BTreeMap<String, TopicRecord>,
) -> Result<(), DataDirError> {
    let path = root.join(TOPICS_FILE);
    let file = TopicsFile {
        version: DATA_FORMAT_VERSION,
        topics: topics.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&file).expect("the catalogue always serializes");
    write_atomically(disk, &path, &bytes).map_err(io_error(&path))
}

/// Reads the highest reserved producer id (0 if none was ever reserved).
pub fn load_producer_id_limit(disk: &dyn Disk, root: &Path) -> Result<i64, DataDirError> {
    let path = root.join(PRODUCER_IDS_FILE);
    if !disk.exists(&path) {
        return Ok(0);
    }
    let bytes = read_whole(disk, &path).map_err(io_error(&path))?;
    let text = String::from_utf8(bytes).map_err(|_| corrupt(&path, "not UTF-8"))?;
    text.trim()
        .parse()
        .map_err(|_| corrupt(&path, format!("`{}` is not a producer id", text.trim())))
}

/// Durably records a new producer id reservation.
pub fn store_producer_id_limit(
    disk: &dyn Disk,
    root: &Path,
    limit: i64,
) -> Result<(), DataDirError> {
    let path = root.join(PRODUCER_IDS_FILE);
    write_atomically(disk, &path, format!("{limit}\n").as_bytes()).map_err(io_error(&path))
}

/// The directory of one partition's log.
pub fn partition_directory(root: &Path, topic: &str, partition: i32) -> PathBuf {
    root.join(format!("{topic}-{partition}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::SimDisk;

    #[test]
    fn a_new_directory_is_formatted_and_then_recognised() {
        let disk = SimDisk::new();
        let random = Random::from_seed(7);
        let root = Path::new("/data");
        let first = open_data_dir(&disk, root, 1, &random).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        let again = open_data_dir(&disk, root, 1, &random).unwrap();
        assert_eq!(first, again);
        assert!(matches!(
            open_data_dir(&disk, root, 2, &random),
            Err(DataDirError::WrongNode {
                expected: 2,
                found: 1
            })
        ));
    }

    #[test]
    fn a_foreign_directory_is_refused() {
        let disk = SimDisk::new();
        let root = Path::new("/data");
        disk.create_dir_all(root).unwrap();
        disk.open(&root.join("something-else"), true).unwrap();
        let error = open_data_dir(&disk, root, 1, &Random::from_seed(1)).unwrap_err();
        assert!(matches!(error, DataDirError::Foreign(_)), "{error}");
    }

    #[test]
    fn the_topic_catalogue_round_trips_and_survives_a_crash() {
        let disk = SimDisk::new();
        let root = Path::new("/data");
        open_data_dir(&disk, root, 1, &Random::from_seed(1)).unwrap();
        let mut topics = BTreeMap::new();
        topics.insert(
            "orders".to_string(),
            TopicRecord {
                id: "00".repeat(16),
                partitions: 3,
                configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
                log_start_offsets: BTreeMap::from([(2, 40)]),
            },
        );
        store_topics(&disk, root, &topics).unwrap();
        disk.crash_losing_everything_unsynced();
        assert_eq!(load_topics(&disk, root).unwrap(), topics);
    }

    #[test]
    fn a_corrupt_catalogue_is_a_clear_error() {
        let disk = SimDisk::new();
        let root = Path::new("/data");
        open_data_dir(&disk, root, 1, &Random::from_seed(1)).unwrap();
        write_atomically(&disk, &root.join(TOPICS_FILE), b"{not json").unwrap();
        assert!(matches!(
            load_topics(&disk, root),
            Err(DataDirError::Corrupt { .. })
        ));
    }
}
