//! [`GroupSet`]: every Raft group one broker takes part in, driven together.
//!
//! A broker hosting a thousand partition replicas runs a thousand Raft groups, but it talks to
//! each other broker over one connection. The set ticks every group at the same instant and,
//! on [`GroupSet::flush`], gathers every group's messages for a destination into one
//! [`Envelope`]: a thousand heartbeats to broker 2 become one network write (CockroachDB and
//! TiKV coalesce the same way). Local commands (persist, truncate, commit, role changes) come
//! out tagged with their group, in each group's order.
//!
//! The ordering contract becomes: execute all local commands of a flush (one sync per disk
//! covers every group's `Persist`), then send the envelopes. That is stronger than each group
//! needs, and it is what lets one fsync serve many groups.
//!
//! Payloads: an envelope on the wire carries, beside each `Append`, the bytes of its span.
//! The driver keeps the payloads of the envelopes it stepped until the next flush, because a
//! follower's `Persist { entries }` names indexes whose bytes came in those appends; and it
//! attaches payloads to outgoing appends from its log when it sends.
//!
//! ```text
//!   broker 1                                             broker 2
//!   GroupSet ── flush ──► Envelope{to: 2, [(g1, Heartbeat), (g7, Append 10..=12),  ...]}
//!       ▲                    + payload of g7 10..=12 ───────────────► GroupSet.step
//!       └───────────── Envelope{to: 1, [(g1, HeartbeatResponse), (g7, AppendResponse)]}
//! ```

use std::collections::BTreeMap;

use super::node::RaftNode;
use super::types::{Command, GroupId, LogIndex, Message, NodeId, Term};

/// Every message from one broker to another since the last flush, across groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    /// In the order the groups produced them; messages of one group keep their order.
    pub messages: Vec<(GroupId, Message)>,
}

/// What one flush asks of the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupSetOutput {
    /// Every command except `Send`, tagged with its group, in each group's order. Execute
    /// them all (and make every `Persist` durable) before sending any envelope.
    pub commands: Vec<(GroupId, Command)>,
    /// One envelope per destination broker, in destination order.
    pub envelopes: Vec<Envelope>,
}

#[derive(Debug)]
pub struct GroupSet {
    node_id: NodeId,
    groups: BTreeMap<GroupId, RaftNode>,
}

impl GroupSet {
    pub fn new(node_id: NodeId) -> Self {
        GroupSet {
            node_id,
            groups: BTreeMap::new(),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    pub fn insert(&mut self, group: GroupId, node: RaftNode) {
        assert_eq!(
            node.node_id(),
            self.node_id,
            "a set holds one broker's replicas"
        );
        let previous = self.groups.insert(group, node);
        assert!(previous.is_none(), "group {group} inserted twice");
    }

    pub fn remove(&mut self, group: GroupId) -> Option<RaftNode> {
        self.groups.remove(&group)
    }

    pub fn get(&self, group: GroupId) -> Option<&RaftNode> {
        self.groups.get(&group)
    }

    /// For proposals, transfers and reads on one group; its commands come out at the next flush.
    pub fn get_mut(&mut self, group: GroupId) -> Option<&mut RaftNode> {
        self.groups.get_mut(&group)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The earliest time any group needs a tick.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups.values().map(RaftNode::next_deadline_ms).min()
    }

    pub fn tick(&mut self, now_ms: u64) {
        for node in self.groups.values_mut() {
            node.tick(now_ms);
        }
    }

    /// Delivers an envelope from another broker. Messages for groups this broker no longer
    /// hosts are dropped: the sender will learn through its own reassignment.
    pub fn step(&mut self, now_ms: u64, envelope: Envelope) {
        assert_eq!(
            envelope.to, self.node_id,
            "envelope delivered to the wrong broker"
        );
        for (group, message) in envelope.messages {
            if let Some(node) = self.groups.get_mut(&group) {
                node.step(now_ms, envelope.from, message);
            }
        }
    }

    pub fn persisted(&mut self, now_ms: u64, group: GroupId, up_to_index: LogIndex, term: Term) {
        if let Some(node) = self.groups.get_mut(&group) {
            node.persisted(now_ms, up_to_index, term);
        }
    }

    /// Takes every group's commands, coalescing messages per destination broker.
    pub fn flush(&mut self) -> GroupSetOutput {
        let mut output = GroupSetOutput::default();
        let mut by_destination: BTreeMap<NodeId, Vec<(GroupId, Message)>> = BTreeMap::new();
        for (group, node) in self.groups.iter_mut() {
            for command in node.take_commands() {
                match command {
                    Command::Send { to, message } => by_destination
                        .entry(to)
                        .or_default()
                        .push((*group, message)),
                    other => output.commands.push((*group, other)),
                }
            }
        }
        output.envelopes = by_destination
            .into_iter()
            .map(|(to, messages)| Envelope {
                from: self.node_id,
                to,
                messages,
            })
            .collect();
        output
    }
}
