//! The clock seam: a monotonic clock for timeouts and a separate wall clock for timestamps.
//!
//! They are kept apart because they fail differently: the monotonic clock never jumps, while a
//! node's wall clock can be skewed or stepped (NTP, a bad host). Timeouts, session expiry and
//! long polls use [`Clock::now`]; record timestamps, time-based retention and segment age use
//! [`Clock::wall_ms`]. The simulator injects skew and jumps through [`Clock::set_skew_ms`].

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

pub use tokio::time::Instant;

/// A node's view of time. Cloning shares the skew, so one node's clones agree.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    skew_ms: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Monotonic time. Under madsim this is simulated time.
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    /// Milliseconds since the Unix epoch, as this node believes, skew included.
    pub fn wall_ms(&self) -> i64 {
        system_wall_ms() + self.skew_ms.load(Ordering::Relaxed)
    }

    /// Sets how far this node's wall clock is from true time. Used by the simulator.
    pub fn set_skew_ms(&self, skew_ms: i64) {
        self.skew_ms.store(skew_ms, Ordering::Relaxed);
    }

    pub fn skew_ms(&self) -> i64 {
        self.skew_ms.load(Ordering::Relaxed)
    }
}

/// The one place the broker reads the system wall clock. Under madsim, the clock functions of
/// libc are intercepted, so this returns simulated time there.
fn system_wall_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
