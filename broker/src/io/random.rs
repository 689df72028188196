//! The randomness seam: one seeded generator per node.
//!
//! Production seeds it from the operating system once at start-up; the simulator seeds it from
//! the run's seed. Broker logic draws from it and from nowhere else, so member ids, topic ids
//! and jitter are reproducible in simulation.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

/// A shared, seeded random number generator.
#[derive(Clone, Debug)]
pub struct Random {
    generator: Arc<Mutex<StdRng>>,
}

impl Random {
    pub fn from_seed(seed: u64) -> Self {
        Self {
            generator: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
        }
    }

    /// Seeds from the operating system's entropy (under madsim, from the simulation's seed).
    pub fn from_entropy() -> Self {
        Self {
            generator: Arc::new(Mutex::new(StdRng::from_entropy())),
        }
    }

    pub fn next_u64(&self) -> u64 {
        self.lock().next_u64()
    }

    /// A value in `low..high`.
    pub fn range(&self, low: u64, high: u64) -> u64 {
        assert!(low < high, "empty random range {low}..{high}");
        self.lock().gen_range(low..high)
    }

    /// Sixteen random bytes, for topic ids and the cluster id.
    pub fn uuid_bytes(&self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        self.lock().fill_bytes(&mut bytes);
        bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StdRng> {
        // A poisoned lock only means another thread panicked while drawing a number; the
        // generator state is still valid.
        self.generator
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}
