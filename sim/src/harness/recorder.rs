//! The run's shared record: the history, the fault log and the invariant tracker.
//!
//! Every client task and the nemesis write here; times are simulated nanoseconds since the
//! run started. One process runs one operation at a time, as the checker requires.

use std::sync::{Arc, Mutex, MutexGuard};

use skiff_checker::{History, Op, OperationId, Outcome, Process};
use tokio::time::Instant;

use crate::invariants::{InvariantTracker, PartitionKey};
use crate::report::FaultLogEntry;

/// The record shared by every task of a run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    state: Arc<Mutex<RecordState>>,
}

/// What the recorder holds.
pub struct RecordState {
    /// The history.
    pub history: History,
    /// The nemesis' log.
    pub fault_log: Vec<FaultLogEntry>,
    /// The simulator-side invariants.
    pub invariants: InvariantTracker,
    /// When everything was healed, in simulated milliseconds.
    pub healed_at_ms: Option<u64>,
    /// Per producer, its first acknowledgement after the heal.
    pub first_acknowledgement_after_heal_ms: Vec<Option<u64>>,
}

impl Recorder {
    /// An empty record for `producers` producers, starting the clock now.
    pub fn new(producers: usize) -> Recorder {
        Recorder {
            start: Instant::now(),
            state: Arc::new(Mutex::new(RecordState {
                history: History::new(),
                fault_log: Vec::new(),
                invariants: InvariantTracker::new(),
                healed_at_ms: None,
                first_acknowledgement_after_heal_ms: vec![None; producers],
            })),
        }
    }

    /// Simulated nanoseconds since the run started.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Simulated milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        self.now_ns() / 1_000_000
    }

    /// The state, locked.
    pub fn lock(&self) -> MutexGuard<'_, RecordState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Records an invocation.
    pub fn invoke(&self, process: u64, op: Op) -> OperationId {
        let time = self.now_ns();
        self.lock().history.invoke(process, time, op)
    }

    /// Records a completion.
    pub fn complete(&self, id: OperationId, outcome: Outcome) {
        let time = self.now_ns();
        self.lock().history.complete(id, time, outcome);
    }

    /// Records an instantaneous operation of a client.
    pub fn record(&self, process: u64, op: Op) {
        let time = self.now_ns();
        self.lock().history.record(process, time, op);
    }

    /// Records an acknowledged send by `producer` at `partition` and `offset`.
    pub fn acknowledged(
        &self,
        producer: usize,
        id: OperationId,
        op: Op,
        partition: PartitionKey,
        offset: Option<u64>,
    ) {
        let time = self.now_ns();
        let time_ms = time / 1_000_000;
        let mut state = self.lock();
        state.history.complete(id, time, Outcome::Ok(op));
        if let Some(offset) = offset {
            state.invariants.acknowledged(partition, offset);
        }
        note_progress(&mut state, producer, time_ms);
    }

    /// Records a send that `producer` got acknowledged, but whose acknowledgement promises
    /// nothing durable (acks=1 in a cluster: a leader change may take it back), as
    /// indeterminate; it still counts as the producer's progress.
    pub fn acknowledged_by_leader_only(&self, producer: usize, id: OperationId, invocation: Op) {
        let time = self.now_ns();
        let mut state = self.lock();
        state.history.complete(id, time, Outcome::Info(invocation));
        note_progress(&mut state, producer, time / 1_000_000);
    }

    /// Records an administrative action (not a fault) in the fault log, for the timeline.
    pub fn admin(&self, action: String) {
        let time = self.now_ns();
        self.lock().fault_log.push(FaultLogEntry {
            time_ms: time / 1_000_000,
            action,
        });
    }

    /// Records a nemesis action in the history and the fault log.
    pub fn nemesis(&self, op: Op, action: String) {
        let time = self.now_ns();
        let mut state = self.lock();
        state.history.record(Process::Nemesis, time, op);
        state.fault_log.push(FaultLogEntry {
            time_ms: time / 1_000_000,
            action,
        });
    }
}

/// Notes `producer`'s first acknowledgement after the heal.
fn note_progress(state: &mut RecordState, producer: usize, time_ms: u64) {
    if state.healed_at_ms.is_some() && state.first_acknowledgement_after_heal_ms[producer].is_none()
    {
        state.first_acknowledgement_after_heal_ms[producer] = Some(time_ms);
    }
}
