//! A deterministic in-memory cluster: several [`RaftNode`]s, a simulated network and
//! simulated disks, driven by one seed, with Raft's safety properties checked continuously.
//!
//! Fault model (all drawn from the seed, swarm style: each seed picks its own fault mix):
//! - network: messages are dropped, delayed (hence reordered) and duplicated; partitions cut
//!   a random subset of nodes off from the rest, in both directions, until healed;
//! - disk: a sync takes a random time; a crash loses every write that was not synced,
//!   except that a random prefix of unsynced appends may survive (a torn tail);
//! - crashes: at most a minority of the nodes is down at any time, so a quorum's synced data
//!   always survives and no committed entry may be lost;
//! - retention: a node forgets a committed prefix of its log (`compact`), so lagging followers
//!   are sent the leader's log start and start over there (`ResetLog`). The simulated disk
//!   keeps the bytes (a reset log holds the committed prefix), so every log check still sees
//!   whole logs; the cores only know their log starts.
//!
//! A run has a safety phase (faults on) and a liveness phase (every fault healed: a leader
//! must commit a new entry on every node within a bounded simulated time).
//!
//! Checked continuously: election safety (one leader per term), log matching, leader
//! completeness, state machine safety (every node applies the same entry at each index),
//! commit indexes never decrease, terms never decrease, nothing is sent before the state it
//! depends on is durable, and lease reads are never stale.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;

/// The simulation advances in steps of this many milliseconds.
const STEP_MS: u64 = 5;
/// The faulty phase lasts this long.
const SAFETY_PHASE_MS: u64 = 30_000;
/// After healing, a leader must commit a fresh entry on every node within this time: a few
/// election rounds (randomized timeouts can split votes a few times in a row).
const LIVENESS_BOUND_MS: u64 = 10 * ELECTION_TIMEOUT_MAX_MS;

/// SplitMix64: small, seedable, and the same on every platform.
#[derive(Clone, Debug)]
pub(super) struct Random {
    state: u64,
}

impl Random {
    pub(super) fn new(seed: u64) -> Self {
        Random { state: seed }
    }
    pub(super) fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.state;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }
    pub(super) fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
    /// True with probability `per_million` / 1 000 000.
    pub(super) fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
    pub(super) fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len() as u64) as usize]
    }
}

/// One log entry as the simulated disk holds it: the payload is a unique value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) term: Term,
    pub(super) value: u64,
}

/// Mixed into a seed for the compaction stream.
const COMPACTION_STREAM: u64 = 0x636f_6d70_6163_7421;

/// Leader markers get values above this, so they never collide with proposals.
const MARKER_VALUE_BASE: u64 = 1 << 62;

/// What a node's driver still has to do, in order; the payloads are resolved when the
/// command is produced, as a real driver would from the message or proposal at hand.
#[derive(Clone, Debug)]
enum Operation {
    Truncate {
        index: LogIndex,
    },
    Write {
        first_index: LogIndex,
        entries: Vec<Entry>,
    },
    Sync {
        hard_state: Option<HardState>,
        entries: Option<EntrySpan>,
    },
    Send {
        to: NodeId,
        message: Message,
        payload: Vec<Entry>,
    },
    Notify(Command),
    /// `ResetLog`: the log becomes the committed prefix through `index`, durably.
    Reset {
        index: LogIndex,
        term: Term,
        entries: Vec<Entry>,
    },
}

/// The fault mix of one run.
#[derive(Clone, Debug)]
pub(super) struct Faults {
    pub(super) drop_per_million: u64,
    pub(super) duplicate_per_million: u64,
    pub(super) delay_max_ms: u64,
    pub(super) sync_latency_max_ms: u64,
    /// Per step.
    pub(super) crash_per_million: u64,
    pub(super) restart_per_million: u64,
    pub(super) partition_per_million: u64,
    pub(super) heal_per_million: u64,
    /// Cut one link between two nodes, both ways: a non-transitive partition, where a node
    /// can hear the others but not the leader (the case PreVote and leases must survive).
    pub(super) link_cut_per_million: u64,
    /// Crash or isolate whichever node leads: elections and truncations come from here.
    pub(super) leader_fault_per_million: u64,
    pub(super) propose_per_million: u64,
    /// Per step: a node compacts its log through a random committed index. Drawn from a
    /// stream of its own, so that seeds drawing none run exactly as before it existed.
    pub(super) compact_per_million: u64,
}

impl Faults {
    pub(super) fn none() -> Self {
        Faults {
            drop_per_million: 0,
            duplicate_per_million: 0,
            delay_max_ms: 2,
            sync_latency_max_ms: 1,
            crash_per_million: 0,
            restart_per_million: 0,
            partition_per_million: 0,
            heal_per_million: 0,
            leader_fault_per_million: 0,
            link_cut_per_million: 0,
            propose_per_million: 50_000,
            compact_per_million: 0,
        }
    }

    /// Swarm testing: the mix itself comes from the seed.
    pub(super) fn draw(random: &mut Random) -> Self {
        Faults {
            drop_per_million: random.pick(&[0, 10_000, 50_000, 200_000]),
            duplicate_per_million: random.pick(&[0, 10_000, 100_000]),
            delay_max_ms: random.pick(&[1, 20, 150, 400]),
            sync_latency_max_ms: random.pick(&[0, 5, 50, 200]),
            crash_per_million: random.pick(&[0, 200, 1_000, 3_000]),
            restart_per_million: random.pick(&[500, 2_000, 10_000]),
            partition_per_million: random.pick(&[0, 300, 1_000, 3_000]),
            heal_per_million: random.pick(&[300, 1_000, 5_000]),
            leader_fault_per_million: random.pick(&[0, 500, 2_000]),
            link_cut_per_million: random.pick(&[0, 500, 2_000]),
            propose_per_million: random.pick(&[10_000, 50_000, 200_000]),
            compact_per_million: 0,
        }
    }
}

pub(super) struct SimulatedNode {
    pub(super) id: NodeId,
    pub(super) alive: bool,
    pub(super) raft: RaftNode,
    durable_hard_state: HardState,
    durable_log: Vec<Entry>,
    /// Written, possibly not yet synced. Index `i` is at position `i - 1`.
    log: Vec<Entry>,
    /// The log once every queued operation has run: what the core believes the log is.
    projected_log: Vec<Entry>,
    queue: VecDeque<Operation>,
    /// Asserts the persist-before-send contract on everything this driver executes.
    ordering: OrderingChecker,
    sync_done_ms: Option<u64>,
    applied_index: LogIndex,
    /// The durable log start: entries through it were deleted by retention; and its term,
    /// recorded beside the log before the deletion, as the broker does (`log-start.json`).
    compacted_through: LogIndex,
    compacted_term: Term,
}

struct Packet {
    from: NodeId,
    to: NodeId,
    message: Message,
    payload: Vec<Entry>,
}

pub(super) struct Cluster {
    pub(super) now_ms: u64,
    pub(super) random: Random,
    pub(super) faults: Faults,
    pub(super) nodes: BTreeMap<NodeId, SimulatedNode>,
    network: BTreeMap<(u64, u64), Packet>,
    packet_sequence: u64,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    leaders_by_term: BTreeMap<Term, NodeId>,
    /// Every entry some node applied, with the highest term of a node that applied it (an
    /// upper bound on the term in which it was committed).
    committed: BTreeMap<LogIndex, (Entry, Term)>,
    next_value: u64,
    /// A hash of everything that happened, for the determinism test.
    pub(super) trace_hash: u64,
    pub(super) statistics: Statistics,
    /// Compaction decisions, apart from `random` (see `Faults::compact_per_million`).
    compaction_random: Random,
}

/// What a run exercised, so a test can check the harness explores what it claims to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Statistics {
    pub(super) crashes: u64,
    pub(super) partitions: u64,
    pub(super) truncations: u64,
    pub(super) rejected_appends: u64,
    pub(super) lease_reads: u64,
    pub(super) elections: u64,
    pub(super) committed: u64,
    pub(super) compactions: u64,
    pub(super) resets: u64,
}

impl Cluster {
    pub(super) fn new(seed: u64, node_count: u64, faults: Faults) -> Self {
        let mut random = Random::new(seed);
        let voters: Vec<NodeId> = (1..=node_count).collect();
        let nodes = voters
            .iter()
            .map(|id| {
                let config = RaftConfig::new(*id, voters.clone(), random.next());
                let node = SimulatedNode {
                    id: *id,
                    alive: true,
                    raft: RaftNode::new(config, 0),
                    durable_hard_state: HardState::default(),
                    durable_log: Vec::new(),
                    log: Vec::new(),
                    projected_log: Vec::new(),
                    queue: VecDeque::new(),
                    ordering: OrderingChecker::new(),
                    sync_done_ms: None,
                    applied_index: 0,
                    compacted_through: 0,
                    compacted_term: 0,
                };
                (*id, node)
            })
            .collect();
        Cluster {
            now_ms: 0,
            random,
            faults,
            nodes,
            network: BTreeMap::new(),
            packet_sequence: 0,
            blocked: BTreeSet::new(),
            leaders_by_term: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_value: 1,
            trace_hash: 0xcbf2_9ce4_8422_2325,
            statistics: Statistics::default(),
            compaction_random: Random::new(seed ^ COMPACTION_STREAM),
        }
    }

    fn hash(&mut self, value: u64) {
        self.trace_hash = (self.trace_hash ^ value).wrapping_mul(0x0100_0000_01b3);
    }

    // ------------------------------------------------------------------------------------
    // Driving.

    /// One step of simulated time: deliveries, sync completions, ticks, then random faults
    /// and proposals.
    pub(super) fn step(&mut self, with_faults: bool) {
        self.now_ms += STEP_MS;
        self.deliver_due_packets();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in &ids {
            if self.nodes[id].alive {
                self.run_queue(*id);
                let now_ms = self.now_ms;
                self.node_mut(*id).raft.tick(now_ms);
                self.drain(*id, &BTreeMap::new());
            }
        }
        if with_faults {
            self.inject_faults();
        }
        if self.random.chance(self.faults.propose_per_million) {
            self.propose_on_leaders();
        }
        self.check_lease_reads();
        if self.now_ms % 500 == 0 {
            self.check_log_matching();
        }
    }

    pub(super) fn run_for(&mut self, duration_ms: u64, with_faults: bool) {
        let end_ms = self.now_ms + duration_ms;
        while self.now_ms < end_ms {
            self.step(with_faults);
        }
    }

    pub(super) fn node(&self, id: NodeId) -> &SimulatedNode {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut SimulatedNode {
        self.nodes.get_mut(&id).expect("a node of the cluster")
    }

    /// The leader of the highest term among live nodes, if any.
    pub(super) fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|node| node.alive && node.raft.is_leader())
            .max_by_key(|node| node.raft.term())
            .map(|node| node.id)
    }

    pub(super) fn propose_on_leaders(&mut self) {
        let leaders: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| node.alive && node.raft.is_leader())
            .map(|node| node.id)
            .collect();
        for id in leaders {
            let count = 1 + self.random.below(3);
            self.propose(id, count);
        }
    }

    /// Proposes `count` fresh values on `id`; returns the span if it was leader.
    pub(super) fn propose(&mut self, id: NodeId, count: u64) -> Option<EntrySpan> {
        let now_ms = self.now_ms;
        let span = self.node_mut(id).raft.propose(now_ms, count).ok()?;
        let mut source = BTreeMap::new();
        for index in span.first_index..=span.last_index {
            let value = self.next_value;
            self.next_value += 1;
            source.insert(
                index,
                Entry {
                    term: span.term,
                    value,
                },
            );
        }
        self.drain(id, &source);
        Some(span)
    }

    fn send_packet(&mut self, from: NodeId, to: NodeId, message: Message, payload: Vec<Entry>) {
        if self.blocked.contains(&(from, to)) || self.random.chance(self.faults.drop_per_million) {
            return;
        }
        let copies = if self.random.chance(self.faults.duplicate_per_million) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let deliver_ms = self.now_ms + 1 + self.random.below(self.faults.delay_max_ms);
            self.packet_sequence += 1;
            let packet = Packet {
                from,
                to,
                message: message.clone(),
                payload: payload.clone(),
            };
            self.network
                .insert((deliver_ms, self.packet_sequence), packet);
        }
    }

    fn deliver_due_packets(&mut self) {
        while let Some(entry) = self.network.first_entry() {
            if entry.key().0 > self.now_ms {
                break;
            }
            let packet = entry.remove();
            let deliverable =
                self.nodes[&packet.to].alive && !self.blocked.contains(&(packet.from, packet.to));
            if !deliverable {
                continue;
            }
            self.hash(packet.from * 31 + packet.to);
            let mut source = BTreeMap::new();
            if let Message::Append {
                entries: Some(span),
                ..
            } = &packet.message
            {
                for (offset, entry) in packet.payload.iter().enumerate() {
                    source.insert(span.first_index + offset as u64, *entry);
                }
            }
            let now_ms = self.now_ms;
            self.node_mut(packet.to)
                .raft
                .step(now_ms, packet.from, packet.message);
            self.drain(packet.to, &source);
        }
    }

    /// Takes the node's commands, resolves their payloads, queues them and runs the queue.
    fn drain(&mut self, id: NodeId, source: &BTreeMap<LogIndex, Entry>) {
        self.queue_commands(id, source);
        self.run_queue(id);
    }

    /// Turns commands into operations. Payloads are resolved now, as a real driver does from
    /// the message or proposal at hand and from its log as the commands leave it (the
    /// projected log: every queued write applied).
    fn queue_commands(&mut self, id: NodeId, source: &BTreeMap<LogIndex, Entry>) {
        let commands = self.node_mut(id).raft.take_commands();
        self.check_roles(id);
        for command in commands {
            for byte in command.to_string().bytes() {
                self.hash(u64::from(byte));
            }
            if let Command::Send {
                message:
                    Message::AppendResponse {
                        result: AppendResult::Rejected { .. },
                        ..
                    },
                ..
            } = &command
            {
                self.statistics.rejected_appends += 1;
            }
            if let Command::TruncateLogFrom { .. } = &command {
                self.statistics.truncations += 1;
            }
            if let Command::ResetLog { index, term } = command {
                self.statistics.resets += 1;
                // Everything through the leader's log start is committed, hence applied on
                // the leader, hence known here.
                let entries: Vec<Entry> = (1..=index)
                    .map(|at| {
                        self.committed
                            .get(&at)
                            .expect("the log start is committed")
                            .0
                    })
                    .collect();
                let node = self.node_mut(id);
                node.projected_log = entries.clone();
                node.queue.push_back(Operation::Reset {
                    index,
                    term,
                    entries,
                });
                continue;
            }
            let node = self.node_mut(id);
            let operation =
                match command {
                    Command::TruncateLogFrom { index } => {
                        node.projected_log.truncate(index as usize - 1);
                        Operation::Truncate { index }
                    }
                    Command::AppendLeaderMarker { index, term } => {
                        let entry = Entry {
                            term,
                            value: MARKER_VALUE_BASE + term * 1_000 + id,
                        };
                        assert_eq!(index as usize, node.projected_log.len() + 1);
                        node.projected_log.push(entry);
                        Operation::Write {
                            first_index: index,
                            entries: vec![entry],
                        }
                    }
                    Command::Persist {
                        hard_state,
                        entries,
                    } => {
                        let already_written = entries
                            .is_none_or(|span| node.projected_log.len() as u64 >= span.last_index);
                        if !already_written {
                            let span = entries.expect("checked above");
                            let written: Vec<Entry> = (span.first_index..=span.last_index)
                                .map(|index| source[&index])
                                .collect();
                            assert!(written.iter().all(|entry| entry.term == span.term));
                            assert_eq!(span.first_index as usize, node.projected_log.len() + 1);
                            node.projected_log.extend(written.iter().copied());
                            node.queue.push_back(Operation::Write {
                                first_index: span.first_index,
                                entries: written,
                            });
                        }
                        Operation::Sync {
                            hard_state,
                            entries,
                        }
                    }
                    Command::Send { to, message } => {
                        let payload = match &message {
                            Message::Append {
                                entries: Some(span),
                                ..
                            } => node.projected_log
                                [span.first_index as usize - 1..span.last_index as usize]
                                .to_vec(),
                            _ => Vec::new(),
                        };
                        assert!(payload.iter().all(|entry| Some(entry.term)
                            == message_span(&message).map(|span| span.term)));
                        Operation::Send {
                            to,
                            message,
                            payload,
                        }
                    }
                    other => Operation::Notify(other),
                };
            node.queue.push_back(operation);
        }
    }

    /// Executes queued operations in order, stopping at a sync that is not done yet.
    fn run_queue(&mut self, id: NodeId) {
        loop {
            let node = self.node_mut(id);
            let Some(operation) = node.queue.pop_front() else {
                return;
            };
            match operation {
                Operation::Truncate { index } => node.log.truncate(index as usize - 1),
                Operation::Write {
                    first_index,
                    entries,
                } => {
                    assert_eq!(
                        first_index as usize,
                        node.log.len() + 1,
                        "writes are contiguous"
                    );
                    node.log.extend(entries);
                }
                Operation::Sync {
                    hard_state,
                    entries,
                } => {
                    if !self.sync(id, hard_state, entries) {
                        return;
                    }
                }
                Operation::Send {
                    to,
                    message,
                    payload,
                } => self.execute_send(id, to, message, payload),
                Operation::Notify(command) => self.execute_notify(id, command),
                Operation::Reset {
                    index,
                    term,
                    entries,
                } => {
                    // Deleting the segments and creating the new one is durable at once.
                    node.log = entries.clone();
                    node.durable_log = entries;
                    node.compacted_through = index;
                    node.compacted_term = term;
                    node.ordering.synced();
                    let now_ms = self.now_ms;
                    let node = self.node_mut(id);
                    node.raft.persisted(now_ms, index, term);
                    self.queue_commands(id, &BTreeMap::new());
                }
            }
        }
    }

    /// Runs a sync. A sync that starts takes every later write and sync of the queue with it
    /// (group commit: a later send only needs *at least* its own writes durable). Returns
    /// whether it completed; if not, it is back at the front of the queue.
    fn sync(
        &mut self,
        id: NodeId,
        hard_state: Option<HardState>,
        entries: Option<EntrySpan>,
    ) -> bool {
        let now_ms = self.now_ms;
        let latency_ms = self.random.below(self.faults.sync_latency_max_ms + 1);
        let node = self.node_mut(id);
        let (hard_state, entries) = match node.sync_done_ms {
            None => {
                node.ordering.before_execute(&Command::Persist {
                    hard_state,
                    entries,
                });
                let mut merged = (hard_state, entries);
                let mut remaining = VecDeque::new();
                let mut queued: VecDeque<Operation> = node.queue.drain(..).collect();
                while let Some(operation) = queued.pop_front() {
                    match operation {
                        // Writes after a reset land in the new log: stop taking them here.
                        reset @ Operation::Reset { .. } => {
                            remaining.push_back(reset);
                            remaining.append(&mut queued);
                        }
                        Operation::Truncate { index } => node.log.truncate(index as usize - 1),
                        Operation::Write {
                            first_index,
                            entries,
                        } => {
                            assert_eq!(first_index as usize, node.log.len() + 1);
                            node.log.extend(entries);
                        }
                        Operation::Sync {
                            hard_state,
                            entries,
                        } => {
                            node.ordering.before_execute(&Command::Persist {
                                hard_state,
                                entries,
                            });
                            merged = (hard_state.or(merged.0), entries.or(merged.1));
                        }
                        other => remaining.push_back(other),
                    }
                }
                node.queue = remaining;
                if latency_ms > 0 {
                    node.sync_done_ms = Some(now_ms + latency_ms);
                    node.queue.push_front(Operation::Sync {
                        hard_state: merged.0,
                        entries: merged.1,
                    });
                    return false;
                }
                merged
            }
            Some(done_ms) if done_ms > now_ms => {
                node.queue.push_front(Operation::Sync {
                    hard_state,
                    entries,
                });
                return false;
            }
            Some(_) => (hard_state, entries),
        };
        node.sync_done_ms = None;
        node.durable_log = node.log.clone();
        node.ordering.synced();
        if let Some(state) = hard_state {
            assert!(
                state.term >= node.durable_hard_state.term,
                "terms never decrease"
            );
            node.durable_hard_state = state;
        }
        if let Some(span) = entries {
            node.raft.persisted(now_ms, span.last_index, span.term);
            // Commands produced here join the end of the queue, behind what is already there.
            self.queue_commands(id, &BTreeMap::new());
        }
        true
    }

    fn execute_send(&mut self, id: NodeId, to: NodeId, message: Message, payload: Vec<Entry>) {
        let command = Command::Send {
            to,
            message: message.clone(),
        };
        self.node_mut(id).ordering.before_execute(&command);
        let node = &self.nodes[&id];
        // Persisted before sent: what a message claims must already be on the durable disk.
        match &message {
            Message::AppendResponse {
                term,
                result: AppendResult::Accepted { match_index },
                ..
            } => {
                assert!(
                    node.durable_log.len() as u64 >= *match_index,
                    "acked before durable"
                );
                assert!(node.durable_hard_state.term >= *term);
            }
            Message::VoteResponse {
                term,
                granted: true,
                pre_vote: false,
            } => {
                assert_eq!(
                    node.durable_hard_state.term, *term,
                    "vote sent before durable"
                );
                assert_eq!(node.durable_hard_state.voted_for, Some(to));
            }
            Message::RequestVote {
                term,
                pre_vote: false,
                ..
            } => {
                assert_eq!(node.durable_hard_state.term, *term);
                assert_eq!(node.durable_hard_state.voted_for, Some(id));
            }
            _ => {}
        }
        self.send_packet(id, to, message, payload);
    }

    fn execute_notify(&mut self, id: NodeId, command: Command) {
        if let Command::Commit { up_to_index } = command {
            let node = &self.nodes[&id];
            assert!(
                up_to_index > node.applied_index,
                "commit index never decreases"
            );
            let term = node.raft.term();
            for index in node.applied_index + 1..=up_to_index {
                let entry = node.log[index as usize - 1];
                match self.committed.get_mut(&index) {
                    Some((committed, committed_term)) => {
                        assert_eq!(*committed, entry, "state machine safety at index {index}");
                        *committed_term = (*committed_term).min(term);
                    }
                    None => {
                        self.committed.insert(index, (entry, term));
                    }
                }
            }
            self.node_mut(id).applied_index = up_to_index;
        }
    }

    // ------------------------------------------------------------------------------------
    // Faults.

    fn inject_faults(&mut self) {
        let node_count = self.nodes.len() as u64;
        let down = self.nodes.values().filter(|node| !node.alive).count() as u64;
        if down < (node_count - 1) / 2 && self.random.chance(self.faults.crash_per_million) {
            let id = 1 + self.random.below(node_count);
            if self.nodes[&id].alive {
                self.crash(id);
            }
        }
        if down > 0 && self.random.chance(self.faults.restart_per_million) {
            let id = 1 + self.random.below(node_count);
            if !self.nodes[&id].alive {
                self.restart(id);
            }
        }
        if self.random.chance(self.faults.partition_per_million) {
            let isolated: Vec<NodeId> = (1..=node_count)
                .filter(|_| self.random.chance(400_000))
                .collect();
            self.partition(&isolated);
        }
        if self.random.chance(self.faults.leader_fault_per_million) {
            if let Some(leader) = self.leader() {
                let down = self.nodes.values().filter(|node| !node.alive).count() as u64;
                if self.random.below(2) == 0 && down < (node_count - 1) / 2 {
                    self.crash(leader);
                } else {
                    self.partition(&[leader]);
                }
            }
        }
        if self.random.chance(self.faults.link_cut_per_million) {
            let first = 1 + self.random.below(node_count);
            let second = 1 + self.random.below(node_count);
            self.cut_link(first, second);
        }
        if !self.blocked.is_empty() && self.random.chance(self.faults.heal_per_million) {
            self.blocked.clear();
        }
        if self
            .compaction_random
            .chance(self.faults.compact_per_million)
        {
            let id = 1 + self.compaction_random.below(node_count);
            let pick = self.compaction_random.next();
            let now_ms = self.now_ms;
            let node = self.node_mut(id);
            // Retention deletes only what the replica has committed (and applied).
            let limit = node.applied_index.min(node.raft.commit_index());
            if node.alive && limit > node.compacted_through {
                let index = node.compacted_through + 1 + pick % (limit - node.compacted_through);
                let term = node.raft.log().term_at(index).expect("a held entry");
                node.raft.compact(now_ms, index);
                node.compacted_through = index;
                node.compacted_term = term;
                self.statistics.compactions += 1;
                self.hash(3_000 + index);
            }
        }
    }

    /// Cuts `isolated` off from every other node, both ways.
    pub(super) fn partition(&mut self, isolated: &[NodeId]) {
        self.statistics.partitions += 1;
        for inside in isolated {
            for outside in self.nodes.keys() {
                if !isolated.contains(outside) {
                    self.blocked.insert((*inside, *outside));
                    self.blocked.insert((*outside, *inside));
                }
            }
        }
    }

    pub(super) fn cut_link(&mut self, first: NodeId, second: NodeId) {
        if first != second {
            self.statistics.partitions += 1;
            self.blocked.insert((first, second));
            self.blocked.insert((second, first));
        }
    }

    pub(super) fn heal(&mut self) {
        self.blocked.clear();
        let down: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|node| !node.alive)
            .map(|node| node.id)
            .collect();
        for id in down {
            self.restart(id);
        }
    }

    pub(super) fn crash(&mut self, id: NodeId) {
        self.hash(1_000 + id);
        self.statistics.crashes += 1;
        // A torn tail: a prefix of appends written after the last sync may survive, if no
        // truncation happened since (a truncation that was not synced leaves the old tail).
        let keep = self.random.below(3) == 0;
        let extra = self.random.next();
        let node = self.node_mut(id);
        node.alive = false;
        node.queue.clear();
        node.ordering = OrderingChecker::new();
        node.sync_done_ms = None;
        if keep
            && node.log.starts_with(&node.durable_log)
            && node.log.len() > node.durable_log.len()
        {
            let surviving = node.durable_log.len()
                + (extra % (node.log.len() - node.durable_log.len()) as u64) as usize;
            node.durable_log = node.log[..surviving].to_vec();
        }
        node.log = node.durable_log.clone();
        node.projected_log = node.durable_log.clone();
    }

    pub(super) fn restart(&mut self, id: NodeId) {
        self.hash(2_000 + id);
        let seed = self.random.next();
        let now_ms = self.now_ms;
        let node = self.node_mut(id);
        // As the broker rebuilds it: the log start and its recorded term.
        let start = node.compacted_through;
        let start_term = node.compacted_term;
        let mut log_terms = LogTerms::with_start(start, start_term, Vec::new(), start);
        for (position, entry) in node.log.iter().enumerate().skip(start as usize) {
            let index = position as u64 + 1;
            log_terms.append(EntrySpan::new(index, index, entry.term));
        }
        // An append written but not yet synced may survive a crash (a torn tail) while the
        // hard state of its term, due in the same sync, does not: the broker then takes the
        // term of its last entry (`Partition::recover_raft_state`). No vote was sent in that
        // term, since votes are sent only once their hard state is durable.
        let hard_state = HardState {
            term: node.durable_hard_state.term.max(log_terms.last_term()),
            ..node.durable_hard_state
        };
        let mut config = node.raft.config().clone();
        config.random_seed = seed;
        node.raft = RaftNode::restart(config, hard_state, log_terms, now_ms);
        node.alive = true;
        node.applied_index = 0;
    }

    // ------------------------------------------------------------------------------------
    // Checks.

    /// Election safety and leader completeness, right after each input.
    fn check_roles(&mut self, id: NodeId) {
        let node = &self.nodes[&id];
        if !node.raft.is_leader() {
            return;
        }
        let term = node.raft.term();
        match self.leaders_by_term.get(&term) {
            Some(leader) => assert_eq!(*leader, id, "two leaders in term {term}"),
            None => {
                let (start, _) = node.raft.log().start();
                for (index, (entry, committed_term)) in self.committed.range(start + 1..) {
                    if *committed_term < term {
                        assert_eq!(
                            node.raft.log().term_at(*index),
                            Some(entry.term),
                            "leader {id} of term {term} lacks committed index {index}"
                        );
                    }
                }
                self.leaders_by_term.insert(term, id);
                self.statistics.elections += 1;
            }
        }
    }

    /// Log matching: two logs that agree on the term at an index agree on everything before.
    pub(super) fn check_log_matching(&self) {
        let nodes: Vec<&SimulatedNode> = self.nodes.values().collect();
        for (position, first) in nodes.iter().enumerate() {
            for second in &nodes[position + 1..] {
                let shorter = first.log.len().min(second.log.len());
                let agreement = (0..shorter)
                    .rev()
                    .find(|position| first.log[*position].term == second.log[*position].term);
                if let Some(last) = agreement {
                    assert_eq!(
                        first.log[..=last],
                        second.log[..=last],
                        "log matching between {} and {}",
                        first.id,
                        second.id
                    );
                }
            }
        }
    }

    /// A lease read never misses an entry some node already applied.
    fn check_lease_reads(&mut self) {
        let committed_max = self.committed.keys().next_back().copied().unwrap_or(0);
        let mut lease_reads = 0;
        for node in self.nodes.values().filter(|node| node.alive) {
            if let Ok(read_index) = node.raft.read_index(self.now_ms) {
                lease_reads += 1;
                assert!(
                    read_index >= committed_max,
                    "stale lease read on {}: {read_index} < {committed_max}",
                    node.id
                );
            }
        }
        self.statistics.lease_reads += lease_reads;
    }

    /// No committed entry was lost: every node holds every committed entry.
    pub(super) fn check_all_hold_committed(&self) {
        for node in self.nodes.values() {
            for (index, (entry, _)) in &self.committed {
                assert_eq!(
                    node.log.get(*index as usize - 1),
                    Some(entry),
                    "node {} lost committed index {index}\n{}",
                    node.id,
                    self.describe()
                );
            }
        }
    }

    fn describe(&self) -> String {
        let mut text = format!("now {} ms, faults {:?}\n", self.now_ms, self.faults);
        for node in self.nodes.values() {
            text += &format!(
                "node {} alive {} {:?} term {} leader {:?} commit {} persisted {} last {} \
                 applied {} log {} durable {} queue {} sync {:?} next deadline {}\n",
                node.id,
                node.alive,
                node.raft.role(),
                node.raft.term(),
                node.raft.leader(),
                node.raft.commit_index(),
                node.raft.persisted_index(),
                node.raft.log().last_index(),
                node.applied_index,
                node.log.len(),
                node.durable_log.len(),
                node.queue.len(),
                node.sync_done_ms,
                node.raft.next_deadline_ms(),
            );
        }
        text
    }

    /// Heals everything, then waits until a leader has committed a fresh entry on every node.
    pub(super) fn check_liveness(&mut self) {
        self.heal();
        self.faults.propose_per_million = 0;
        let deadline_ms = self.now_ms + LIVENESS_BOUND_MS;
        let mut target: Option<EntrySpan> = None;
        while self.now_ms < deadline_ms {
            self.step(false);
            if target.is_none() {
                if let Some(leader) = self.leader() {
                    target = self.propose(leader, 1);
                }
            }
            let Some(span) = target else {
                continue;
            };
            // A newer leader may have overwritten the proposal; then propose again.
            let overwritten = self.leader().is_some_and(|leader| {
                self.node(leader).raft.log().term_at(span.last_index) != Some(span.term)
            });
            if overwritten {
                target = None;
                continue;
            }
            // Every node applies the fresh entry and everything committed before it.
            let committed_max = self.committed.keys().next_back().copied().unwrap_or(0);
            let wanted = span.last_index.max(committed_max);
            if self.nodes.values().all(|node| node.applied_index >= wanted) {
                self.check_all_hold_committed();
                self.check_log_matching();
                return;
            }
        }
        panic!(
            "no progress within {LIVENESS_BOUND_MS} ms after healing; target {target:?}\n{}",
            self.describe()
        );
    }
}

fn message_span(message: &Message) -> Option<EntrySpan> {
    match message {
        Message::Append { entries, .. } => *entries,
        _ => None,
    }
}

/// One full run: faults, then healing and liveness. Returns the trace hash.
pub(super) fn run_seed(seed: u64, node_count: u64) -> u64 {
    run_seed_with_statistics(seed, node_count).0
}

pub(super) fn run_seed_with_statistics(seed: u64, node_count: u64) -> (u64, Statistics) {
    let mut random = Random::new(seed);
    let mut faults = Faults::draw(&mut random);
    faults.compact_per_million = Random::new(seed ^ COMPACTION_STREAM).pick(&[0, 0, 2_000, 20_000]);
    let mut cluster = Cluster::new(random.next(), node_count, faults);
    cluster.run_for(SAFETY_PHASE_MS, true);
    cluster.check_log_matching();
    cluster.check_liveness();
    assert!(!cluster.committed.is_empty(), "the run committed something");
    cluster.statistics.committed = cluster.committed.len() as u64;
    (cluster.trace_hash, cluster.statistics)
}

proptest! {
    // Failures are saved beside this file (`cluster_tests.proptest-regressions`) and
    // replayed first on every run.
    #![proptest_config(ProptestConfig {
        cases: 40,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn three_nodes_stay_safe_and_recover(seed in any::<u64>()) {
        run_seed(seed, 3);
    }

    #[test]
    fn five_nodes_stay_safe_and_recover(seed in any::<u64>()) {
        run_seed(seed, 5);
    }
}

/// Reproduces one seed: `SKIFF_RAFT_SEED=123 SKIFF_RAFT_NODES=3 cargo test ... replay_seed`.
#[test]
fn replay_seed() {
    if let Ok(seed) = std::env::var("SKIFF_RAFT_SEED") {
        let nodes = std::env::var("SKIFF_RAFT_NODES").map_or(3, |text| text.parse().unwrap());
        run_seed(seed.parse().unwrap(), nodes);
    }
}

/// Seeds that once failed, kept as plain tests beside the proptest regression file.
#[test]
fn seeds_that_once_failed() {
    // The simulated disk synced one write at a time: with 200 ms syncs the leader's queue
    // grew without bound and liveness failed (a harness bug: syncs now group-commit).
    run_seed(225_129_922_883_609_241, 3);
    // Liveness declared success before a lagging follower held the last committed entry
    // (a harness bug: the check now waits for every committed index on every node).
    run_seed(10_914_706_949_237_719_734, 3);
    run_seed(14_158_969_597_090_197_861, 5);
    // A follower restarted with only an approximate term for its log start (the harness then
    // took the first kept entry's) rejected every append at its start, which its leader
    // believed it already held, and replication stalled. The core now takes entries through
    // the start as matching whatever term is on record for them.
    for seed in [6_905_357_805_129_062_657, 3_149_719_191_210_158_518] {
        run_seed(seed, 3);
        run_seed(seed, 5);
    }
    // A follower crashed with an append of a new term on disk but not the hard state that
    // raised its term (both were due in one sync): the harness restarted it with a term older
    // than its log's last entry, which the core refuses (the broker takes the newer term).
    run_seed(12_776_704_895_530_588_850, 5);
}

/// The fault mixes really do produce what the safety checks are about.
#[test]
fn the_swarm_exercises_crashes_partitions_truncations_and_leases() {
    let mut total = Statistics::default();
    for seed in 0..16 {
        let (_, statistics) = run_seed_with_statistics(seed, 3 + 2 * (seed % 2));
        total.crashes += statistics.crashes;
        total.partitions += statistics.partitions;
        total.truncations += statistics.truncations;
        total.rejected_appends += statistics.rejected_appends;
        total.lease_reads += statistics.lease_reads;
        total.elections += statistics.elections;
        total.committed += statistics.committed;
        total.compactions += statistics.compactions;
        total.resets += statistics.resets;
    }
    println!("{total:?}");
    assert!(total.crashes >= 10, "{total:?}");
    assert!(total.partitions >= 10, "{total:?}");
    assert!(total.truncations >= 5, "{total:?}");
    assert!(total.rejected_appends >= 10, "{total:?}");
    assert!(total.lease_reads >= 1_000, "{total:?}");
    assert!(total.elections >= 40, "{total:?}");
    assert!(total.committed >= 1_000, "{total:?}");
    assert!(total.compactions >= 20, "{total:?}");
    assert!(total.resets >= 1, "{total:?}");
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    assert_eq!(run_seed(42, 3), run_seed(42, 3));
    assert_ne!(run_seed(42, 3), run_seed(43, 3));
}

fn quiet_cluster(node_count: u64, seed: u64) -> (Cluster, NodeId) {
    let mut cluster = Cluster::new(seed, node_count, Faults::none());
    cluster.run_for(3 * ELECTION_TIMEOUT_MAX_MS, false);
    let leader = cluster.leader().expect("a leader in a quiet cluster");
    (cluster, leader)
}

#[test]
fn a_quiet_cluster_elects_one_leader_and_commits_everywhere() {
    for node_count in [1, 3, 5] {
        let (mut cluster, _) = quiet_cluster(node_count, 9);
        cluster.check_liveness();
        assert_eq!(
            cluster.leaders_by_term.len(),
            1,
            "one election, no disruption"
        );
    }
}

#[test]
fn a_rejoining_partitioned_follower_does_not_disrupt_the_leader() {
    let (mut cluster, leader) = quiet_cluster(3, 11);
    let term = cluster.node(leader).raft.term();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    // No writes meanwhile: the follower's log stays as up to date as anyone's, so only
    // PreVote and stickiness, not the log check, keep it from winning.
    cluster.faults.propose_per_million = 0;
    cluster.run_for(500, false);
    cluster.partition(&[follower]);
    cluster.run_for(10 * ELECTION_TIMEOUT_MAX_MS, false);
    // PreVote: the isolated follower never won a pre-vote, so it never bumped its term.
    assert_eq!(cluster.node(follower).raft.term(), term);
    cluster.heal();
    cluster.run_for(3 * ELECTION_TIMEOUT_MAX_MS, false);
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(cluster.leaders_by_term.len(), 1);
    assert_eq!(cluster.node(leader).raft.term(), term);
    assert_eq!(cluster.node(follower).raft.leader(), Some(leader));
}

/// A follower that cannot hear the leader but hears the others is not elected while they
/// hear the leader (stickiness), so the leader's lease stays valid and truthful.
#[test]
fn a_follower_cut_off_from_the_leader_alone_does_not_take_over() {
    let (mut cluster, leader) = quiet_cluster(3, 23);
    let term = cluster.node(leader).raft.term();
    cluster.faults.propose_per_million = 0;
    cluster.run_for(500, false);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.cut_link(leader, follower);
    cluster.run_for(10 * ELECTION_TIMEOUT_MAX_MS, false);
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(cluster.node(leader).raft.term(), term);
    assert!(cluster.node(leader).raft.read_index(cluster.now_ms).is_ok());
    cluster.check_liveness();
}

#[test]
fn an_isolated_leader_steps_down_and_stops_serving_lease_reads() {
    let (mut cluster, old_leader) = quiet_cluster(5, 13);
    let term = cluster.node(old_leader).raft.term();
    assert!(cluster
        .node(old_leader)
        .raft
        .read_index(cluster.now_ms)
        .is_ok());
    cluster.partition(&[old_leader]);
    let isolated_ms = cluster.now_ms;
    while cluster
        .node(old_leader)
        .raft
        .read_index(cluster.now_ms)
        .is_ok()
    {
        cluster.step(false);
    }
    assert!(cluster.now_ms <= isolated_ms + LEADER_LEASE_MS + HEARTBEAT_INTERVAL_MS);
    while cluster.node(old_leader).raft.is_leader() {
        cluster.step(false);
    }
    // CheckQuorum: down within an election timeout of the last majority contact.
    assert!(cluster.now_ms <= isolated_ms + ELECTION_TIMEOUT_MIN_MS + STEP_MS);
    cluster.run_for(3 * ELECTION_TIMEOUT_MAX_MS, false);
    let new_leader = cluster.leader().unwrap();
    assert_ne!(new_leader, old_leader);
    assert!(cluster.node(new_leader).raft.term() > term);
    cluster.check_liveness();
}

#[test]
fn leadership_transfer_hands_over_without_a_gap() {
    let (mut cluster, old_leader) = quiet_cluster(3, 17);
    cluster.propose(old_leader, 2);
    cluster.run_for(200, false);
    let target = (1..=3).find(|id| *id != old_leader).unwrap();
    let now_ms = cluster.now_ms;
    cluster
        .node_mut(old_leader)
        .raft
        .transfer_leadership(now_ms, target)
        .unwrap();
    cluster.drain(old_leader, &BTreeMap::new());
    let started_ms = cluster.now_ms;
    while cluster.leader() != Some(target) || cluster.node(old_leader).raft.is_leader() {
        cluster.step(false);
        assert!(
            cluster.now_ms < started_ms + ELECTION_TIMEOUT_MIN_MS,
            "transfer was slow"
        );
    }
    cluster.check_liveness();
}

#[test]
fn committed_entries_survive_crashing_a_minority_repeatedly() {
    let (mut cluster, _) = quiet_cluster(5, 19);
    for round in 0..6 {
        cluster.faults.propose_per_million = 200_000;
        cluster.run_for(1_000, false);
        let leader = cluster.leader().unwrap();
        let victims: Vec<NodeId> = if round % 2 == 0 {
            vec![leader, leader % 5 + 1]
        } else {
            vec![leader]
        };
        for victim in &victims {
            cluster.crash(*victim);
        }
        cluster.run_for(3 * ELECTION_TIMEOUT_MAX_MS, false);
        cluster.heal();
    }
    cluster.check_liveness();
}
