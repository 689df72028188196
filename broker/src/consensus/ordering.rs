//! [`OrderingChecker`]: the persist-before-send contract, asserted on the driver's side.
//!
//! The core cannot see when its driver writes, syncs or sends, so it cannot check the contract
//! itself. A driver feeds this checker what it does, in the order it does it, and the checker
//! panics the moment a message would leave before an earlier `Persist` is durable. The test
//! cluster runs every command through one; the server driver and the simulator should too
//! (it costs one counter).

use super::types::Command;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderingChecker {
    /// `Persist` commands executed (written) since the last completed sync.
    persists_not_synced: u64,
    persists_total: u64,
    sends_total: u64,
}

impl OrderingChecker {
    pub fn new() -> Self {
        OrderingChecker::default()
    }

    /// Call just before executing `command`. A `Send` with a write still waiting for its sync
    /// is a programming error in the driver.
    pub fn before_execute(&mut self, command: &Command) {
        match command {
            Command::Persist { .. } => {
                self.persists_not_synced += 1;
                self.persists_total += 1;
            }
            Command::Send { to, message } => {
                assert_eq!(
                    self.persists_not_synced, 0,
                    "send to {to} of {message:?} before {} earlier persist(s) were synced",
                    self.persists_not_synced
                );
                self.sends_total += 1;
            }
            _ => {}
        }
    }

    /// Call when a sync completes that covers every write executed so far.
    pub fn synced(&mut self) {
        self.persists_not_synced = 0;
    }

    /// Whether a sync is owed before the next send.
    pub fn sync_owed(&self) -> bool {
        self.persists_not_synced > 0
    }

    pub fn persists_total(&self) -> u64 {
        self.persists_total
    }

    pub fn sends_total(&self) -> u64 {
        self.sends_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::{HardState, Message};

    fn persist() -> Command {
        Command::Persist {
            hard_state: Some(HardState {
                term: 1,
                voted_for: Some(2),
            }),
            entries: None,
        }
    }

    fn send() -> Command {
        Command::Send {
            to: 2,
            message: Message::VoteResponse {
                term: 1,
                granted: true,
                pre_vote: false,
            },
        }
    }

    #[test]
    fn a_send_after_a_sync_is_fine() {
        let mut checker = OrderingChecker::new();
        checker.before_execute(&persist());
        assert!(checker.sync_owed());
        checker.synced();
        checker.before_execute(&send());
        assert_eq!((checker.persists_total(), checker.sends_total()), (1, 1));
    }

    #[test]
    #[should_panic(expected = "before 1 earlier persist(s) were synced")]
    fn a_send_before_the_sync_panics() {
        let mut checker = OrderingChecker::new();
        checker.before_execute(&persist());
        checker.before_execute(&send());
    }
}
