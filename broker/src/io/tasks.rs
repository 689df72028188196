//! The task seam: spawning and blocking work.
//!
//! On tokio, blocking work (an fsync that takes milliseconds) runs on the blocking pool so the
//! reactor keeps serving requests. Under madsim there are no threads: the work runs inline, and
//! the simulated disk models its latency itself.

use std::future::Future;

pub use tokio::task::JoinHandle;

/// Spawns a task on the current runtime (tokio, or the current simulated node).
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future)
}

/// Runs blocking work without stalling other tasks.
#[cfg(not(madsim))]
pub async fn run_blocking<R, F>(work: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}

/// Runs blocking work without stalling other tasks.
#[cfg(madsim)]
pub async fn run_blocking<R, F>(work: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    work()
}

/// Lets the runtime run other ready tasks before this one goes on.
///
/// Why it is needed: tokio runs the task that a running task woke next on the same worker,
/// from a slot the other workers cannot steal from. A connection reading request after
/// request from a full socket buffer, each an append of up to a megabyte, kept the task its
/// appends woke (the partition's syncer, or the replication driver) waiting in that slot for
/// tens of milliseconds, and every acknowledgement with it.
pub async fn yield_now() {
    tokio::task::yield_now().await
}
