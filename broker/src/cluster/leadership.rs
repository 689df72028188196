//! Where leadership should be: handed over before a clean shutdown, and moved back to each
//! group's preferred leader once that broker is live again.
//!
//! Elections pick whichever replica times out first, so after a restart one broker can end up
//! leading everything. Each group has a preferred leader: the first of its replicas, as the
//! metadata log placed them (placement rotates the first replica over the brokers, so leaders
//! spread evenly). A leader that is not the preferred one, while the preferred broker is live, asks
//! the Raft core to transfer: the core catches the target up first, stops proposals for at
//! most an election timeout, and gives up if the target does not take over.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Cluster;
use crate::consensus::{GroupId, NodeId, Term};

/// How often leaders check whether to hand over to the preferred broker.
pub const LEADER_BALANCE_INTERVAL_MS: u64 = 5_000;
/// How long a broker must have been live before leadership moves to it: a broker that just
/// restarted first catches up with what it missed.
pub const LEADER_BALANCE_SETTLE_MS: u64 = 10_000;
/// How far behind the leader's log (in entries) a preferred broker may be and still be
/// offered leadership by a balancing pass; the transfer catches it up before it takes over.
pub const LEADER_BALANCE_MAX_LAG_ENTRIES: u64 = 64;
/// How long a clean shutdown waits for its groups to change leader.
pub const SHUTDOWN_HANDOVER_MS_MAX: u64 = 5_000;
/// Pause between hand-over passes during a clean shutdown.
const HANDOVER_RETRY_MS: u64 = 500;

impl Cluster {
    /// The replicas of a group this broker holds, preferred leader first.
    fn group_voters(&self, group: GroupId) -> Vec<NodeId> {
        self.raft
            .lock()
            .get(group)
            .map(|node| node.config().voters.clone())
            .unwrap_or_default()
    }

    /// Groups this broker leads now.
    fn led_groups(&self) -> Vec<GroupId> {
        self.led_groups_with_terms()
            .into_iter()
            .map(|(group, _)| group)
            .collect()
    }

    /// Groups this broker leads now, with their terms.
    pub(super) fn led_groups_with_terms(&self) -> Vec<(GroupId, Term)> {
        let groups: Vec<GroupId> = self
            .replicas
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .keys()
            .copied()
            .collect();
        let set = self.raft.lock();
        groups
            .into_iter()
            .filter_map(|group| {
                let node = set.get(group)?;
                node.is_leader().then(|| (group, node.term()))
            })
            .collect()
    }

    fn transfer(&self, group: GroupId, target: NodeId) {
        let mut set = self.raft.lock();
        let now_ms = self.raft.now_ms();
        if let Some(node) = set.get_mut(group) {
            match node.transfer_leadership(now_ms, target) {
                Ok(()) => tracing::info!(group, target, "handing leadership over"),
                Err(error) => tracing::debug!(group, target, %error, "no hand-over"),
            }
        }
        drop(set);
        self.raft.wake.notify_one();
    }

    /// Before a clean shutdown: every group this broker leads is handed to another live
    /// broker, so clients fail over at once instead of after an election timeout.
    pub async fn hand_over_leadership(&self) {
        let deadline = self.clock.now() + Duration::from_millis(SHUTDOWN_HANDOVER_MS_MAX);
        // Bounded by the deadline; each pass re-asks for groups still led here (a transfer
        // is abandoned after an election timeout).
        while self.clock.now() < deadline {
            let led = self.led_groups();
            if led.is_empty() {
                return;
            }
            let live: Vec<NodeId> = self
                .live_brokers()
                .iter()
                .map(|broker| broker.node_id)
                .filter(|node| *node != self.node_id)
                .collect();
            if live.is_empty() {
                tracing::warn!("no live peer to hand leadership to");
                return;
            }
            for group in led {
                // The first live replica in preference order.
                let target = self
                    .group_voters(group)
                    .into_iter()
                    .find(|replica| live.contains(replica));
                match target {
                    Some(target) => self.transfer(group, target),
                    None => tracing::debug!(group, "no live replica to hand the group to"),
                }
            }
            tokio::time::sleep(Duration::from_millis(HANDOVER_RETRY_MS)).await;
        }
        tracing::warn!("some groups were still led here when the hand-over time ran out");
    }

    /// One balancing pass: groups led here whose preferred broker has been live for a while
    /// are handed to it.
    fn balance_once(&self) {
        let settled: Vec<NodeId> =
            self.settled_peers(Duration::from_millis(LEADER_BALANCE_SETTLE_MS));
        for group in self.led_groups() {
            let Some(preferred) = self.group_voters(group).first().copied() else {
                continue;
            };
            if preferred == self.node_id || !settled.contains(&preferred) {
                continue;
            }
            // A live broker can still be behind on one group (its replica failed to open, or
            // it is still catching up): offering it leadership would stop the group's
            // proposals until the offer times out, every pass.
            let in_sync = {
                let set = self.raft.lock();
                let now_ms = self.raft.now_ms();
                set.get(group).is_some_and(|node| {
                    node.follower_in_sync(now_ms, preferred, LEADER_BALANCE_MAX_LAG_ENTRIES)
                })
            };
            if in_sync {
                self.transfer(group, preferred);
            } else {
                tracing::debug!(
                    group,
                    preferred,
                    "preferred leader not in sync; not balancing"
                );
            }
        }
    }
}

/// Moves leadership back to preferred leaders, every [`LEADER_BALANCE_INTERVAL_MS`].
pub async fn balance_leaders(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            biased;
            _ = shutdown.wait_for(|stopping| *stopping) => return,
            _ = tokio::time::sleep(Duration::from_millis(LEADER_BALANCE_INTERVAL_MS)) => {}
        }
        cluster.balance_once();
    }
}
