//! What the broker's integration tests share: a broker on a simulated disk.

use std::path::PathBuf;
use std::sync::Arc;

use skiff::config::BrokerConfig;
use skiff::io::{Clock, Random, SimDisk};
use skiff::server::{Broker, Seams};

/// A fresh broker on an empty simulated disk. A fixed seed makes cluster and topic ids, and so
/// every response byte, the same on every run.
pub fn simulated_broker(seed: u64) -> Arc<Broker> {
    let config = BrokerConfig {
        data_dir: PathBuf::from("/data"),
        ..BrokerConfig::default()
    };
    let seams = Seams {
        disk: Arc::new(SimDisk::new()),
        clock: Clock::new(),
        random: Random::from_seed(seed),
    };
    Broker::open(config, seams).expect("a fresh simulated data directory opens")
}
