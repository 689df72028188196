//! One test per Raft rule, asserting the exact commands a [`RaftNode`] emits.

use super::*;

const SEED: u64 = 5;
/// Late enough that every node's first election timeout has fired.
const ELECTION_DUE_MS: u64 = ELECTION_TIMEOUT_MAX_MS;

fn node(id: NodeId, voters: &[NodeId]) -> RaftNode {
    RaftNode::new(RaftConfig::new(id, voters.to_vec(), SEED), 0)
}

fn restarted(id: NodeId, term: Term, runs: &[(Term, LogIndex)], last_index: LogIndex) -> RaftNode {
    let runs = runs
        .iter()
        .map(|(term, first_index)| TermRun {
            term: *term,
            first_index: *first_index,
        })
        .collect();
    let hard_state = HardState {
        term,
        voted_for: None,
    };
    let config = RaftConfig::new(id, vec![1, 2, 3], SEED);
    RaftNode::restart(config, hard_state, LogTerms::from_runs(runs, last_index), 0)
}

fn send(to: NodeId, message: Message) -> Command {
    Command::Send { to, message }
}

fn request_vote(term: Term, last_index: LogIndex, last_term: Term, pre_vote: bool) -> Message {
    Message::RequestVote {
        term,
        last_index,
        last_term,
        pre_vote,
        leadership_transfer: false,
    }
}

fn vote(term: Term, granted: bool, pre_vote: bool) -> Message {
    Message::VoteResponse {
        term,
        granted,
        pre_vote,
    }
}

fn accepted(term: Term, match_index: LogIndex, echo_ms: u64) -> Message {
    Message::AppendResponse {
        term,
        result: AppendResult::Accepted { match_index },
        echo_ms,
    }
}

fn append(
    term: Term,
    previous: (LogIndex, Term),
    entries: Option<EntrySpan>,
    commit_index: LogIndex,
    sent_ms: u64,
) -> Message {
    Message::Append {
        term,
        previous_index: previous.0,
        previous_term: previous.1,
        entries,
        commit_index,
        sent_ms,
    }
}

fn persist_state(term: Term, voted_for: Option<NodeId>) -> Command {
    Command::Persist {
        hard_state: Some(HardState { term, voted_for }),
        entries: None,
    }
}

fn persist_entries(first_index: LogIndex, last_index: LogIndex, term: Term) -> Command {
    Command::Persist {
        hard_state: None,
        entries: Some(EntrySpan::new(first_index, last_index, term)),
    }
}

/// Elects `node` (which must be able to reach `voter`) at `now_ms` and clears its commands.
fn elect(node: &mut RaftNode, voter: NodeId, now_ms: u64) {
    node.tick(now_ms);
    let next_term = node.term() + 1;
    node.step(now_ms, voter, vote(next_term, true, true));
    node.step(now_ms, voter, vote(next_term, true, false));
    assert!(node.is_leader());
    node.take_commands();
}

/// Node 1 leading {1, 2, 3} in term 1, marker at index 1 not yet durable.
fn leader_of_three() -> RaftNode {
    let mut leader = node(1, &[1, 2, 3]);
    elect(&mut leader, 2, ELECTION_DUE_MS);
    leader
}

#[test]
fn an_election_timeout_starts_a_pre_vote_that_changes_no_term() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick(ELECTION_TIMEOUT_MIN_MS - 1);
    assert_eq!(node.take_commands(), vec![]);
    node.tick(ELECTION_DUE_MS);
    let request = request_vote(1, 0, 0, true);
    assert_eq!(
        node.take_commands(),
        vec![send(2, request.clone()), send(3, request)]
    );
    assert_eq!(node.role(), Role::PreCandidate);
    assert_eq!(node.term(), 0);
}

#[test]
fn winning_the_pre_vote_persists_the_vote_before_requesting_votes() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick(ELECTION_DUE_MS);
    node.take_commands();
    node.step(ELECTION_DUE_MS, 2, vote(1, true, true));
    let request = request_vote(1, 0, 0, false);
    assert_eq!(
        node.take_commands(),
        vec![
            persist_state(1, Some(1)),
            send(2, request.clone()),
            send(3, request)
        ]
    );
    assert_eq!(node.role(), Role::Candidate);
}

#[test]
fn a_new_leader_writes_a_marker_in_its_term_before_replicating() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick(ELECTION_DUE_MS);
    node.step(ELECTION_DUE_MS, 2, vote(1, true, true));
    node.take_commands();
    node.step(ELECTION_DUE_MS, 3, vote(1, true, false));
    let marker = EntrySpan::new(1, 1, 1);
    let replicate = append(1, (0, 0), Some(marker), 0, ELECTION_DUE_MS);
    assert_eq!(
        node.take_commands(),
        vec![
            Command::BecameLeader { term: 1 },
            Command::AppendLeaderMarker { index: 1, term: 1 },
            persist_entries(1, 1, 1),
            send(2, replicate.clone()),
            send(3, replicate),
        ]
    );
}

#[test]
fn losing_the_pre_vote_returns_to_follower_without_a_term_change() {
    let mut node = node(1, &[1, 2, 3]);
    node.tick(ELECTION_DUE_MS);
    node.take_commands();
    node.step(ELECTION_DUE_MS, 2, vote(0, false, true));
    node.step(ELECTION_DUE_MS, 3, vote(0, false, true));
    assert_eq!(
        node.take_commands(),
        vec![Command::BecameFollower {
            term: 0,
            leader: None
        }]
    );
    assert_eq!(node.term(), 0);
}

#[test]
fn a_vote_is_persisted_before_it_is_sent_and_granted_once_per_term() {
    let mut follower = node(2, &[1, 2, 3]);
    let now_ms = ELECTION_TIMEOUT_MIN_MS;
    follower.step(now_ms, 1, request_vote(1, 0, 0, false));
    assert_eq!(
        follower.take_commands(),
        vec![
            persist_state(1, None),
            persist_state(1, Some(1)),
            send(1, vote(1, true, false)),
        ]
    );
    follower.step(now_ms, 3, request_vote(1, 0, 0, false));
    assert_eq!(
        follower.take_commands(),
        vec![send(3, vote(1, false, false))]
    );
    // A repeated request from the same candidate is granted again (its response was lost).
    follower.step(now_ms, 1, request_vote(1, 0, 0, false));
    assert_eq!(
        follower.take_commands(),
        vec![persist_state(1, Some(1)), send(1, vote(1, true, false))]
    );
}

#[test]
fn votes_go_only_to_logs_at_least_as_up_to_date() {
    // Log: indexes 1..=2 in term 1, 3 in term 2.
    let mut follower = restarted(2, 2, &[(1, 1), (2, 3)], 3);
    let now_ms = ELECTION_TIMEOUT_MIN_MS;
    // A longer log with an older last term loses (Raft §5.4.1).
    follower.step(now_ms, 1, request_vote(3, 9, 1, false));
    follower.step(now_ms, 1, request_vote(4, 2, 2, false));
    let granted: Vec<bool> = follower
        .take_commands()
        .into_iter()
        .filter_map(|command| match command {
            Command::Send {
                message: Message::VoteResponse { granted, .. },
                ..
            } => Some(granted),
            _ => None,
        })
        .collect();
    assert_eq!(granted, vec![false, false]);
    follower.step(now_ms, 3, request_vote(5, 3, 2, false));
    assert_eq!(
        follower.take_commands(),
        vec![
            persist_state(5, None),
            persist_state(5, Some(3)),
            send(3, vote(5, true, false))
        ]
    );
}

#[test]
fn a_follower_hearing_its_leader_ignores_pre_votes_and_votes() {
    let mut follower = node(2, &[1, 2, 3]);
    let now_ms = ELECTION_TIMEOUT_MIN_MS;
    follower.step(
        now_ms,
        1,
        Message::Heartbeat {
            term: 1,
            commit_index: 0,
            sent_ms: 7,
        },
    );
    follower.take_commands();
    follower.step(now_ms + 10, 3, request_vote(2, 0, 0, true));
    follower.step(now_ms + 10, 3, request_vote(2, 0, 0, false));
    assert_eq!(follower.take_commands(), vec![]);
    assert_eq!(follower.term(), 1);
    // Once the leader has been silent for an election timeout, the pre-vote is granted,
    // still without a term change.
    let later_ms = now_ms + ELECTION_TIMEOUT_MIN_MS;
    follower.step(later_ms, 3, request_vote(2, 0, 0, true));
    assert_eq!(follower.take_commands(), vec![send(3, vote(2, true, true))]);
    assert_eq!(follower.term(), 1);
}

#[test]
fn a_restarted_node_grants_no_vote_for_an_election_timeout() {
    let config = RaftConfig::new(2, vec![1, 2, 3], SEED);
    let mut follower = RaftNode::restart(config, HardState::default(), LogTerms::new(), 5_000);
    follower.step(5_100, 1, request_vote(1, 0, 0, false));
    assert_eq!(follower.take_commands(), vec![]);
    follower.step(
        5_000 + ELECTION_TIMEOUT_MIN_MS,
        1,
        request_vote(1, 0, 0, false),
    );
    assert!(follower
        .take_commands()
        .contains(&send(1, vote(1, true, false))));
}

#[test]
fn appended_entries_are_acknowledged_only_once_durable() {
    let mut follower = node(2, &[1, 2, 3]);
    let entries = EntrySpan::new(1, 3, 1);
    follower.step(10, 1, append(1, (0, 0), Some(entries), 2, 9));
    assert_eq!(
        follower.take_commands(),
        vec![
            persist_state(1, None),
            Command::BecameFollower {
                term: 1,
                leader: Some(1)
            },
            persist_entries(1, 3, 1),
        ]
    );
    // A report about a different term at that index is stale and ignored.
    follower.persisted(11, 3, 7);
    assert_eq!(follower.take_commands(), vec![]);
    follower.persisted(12, 3, 1);
    assert_eq!(
        follower.take_commands(),
        vec![
            Command::Commit { up_to_index: 2 },
            send(1, accepted(1, 3, 9))
        ]
    );
    // A duplicate append brings nothing new and is answered at once.
    follower.step(13, 1, append(1, (0, 0), Some(entries), 3, 10));
    assert_eq!(
        follower.take_commands(),
        vec![
            Command::Commit { up_to_index: 3 },
            send(1, accepted(1, 3, 10))
        ]
    );
}

#[test]
fn a_mismatch_is_rejected_with_a_hint_and_a_divergent_suffix_truncated() {
    // Log: 1..=3 in term 1, 4..=6 in term 2 (never committed).
    let mut follower = restarted(2, 2, &[(1, 1), (2, 4)], 6);
    follower.step(10, 1, append(3, (6, 3), None, 0, 5));
    let rejected = |rejected_index, hint_index, hint_term| Message::AppendResponse {
        term: 3,
        result: AppendResult::Rejected {
            rejected_index,
            hint_index,
            hint_term,
        },
        echo_ms: 5,
    };
    assert_eq!(
        follower.take_commands(),
        vec![
            persist_state(3, None),
            Command::BecameFollower {
                term: 3,
                leader: Some(1)
            },
            send(1, rejected(6, 6, 2)),
        ]
    );
    // Past the end of the log, the hint is the last entry.
    follower.step(11, 1, append(3, (9, 3), None, 0, 5));
    assert_eq!(follower.take_commands(), vec![send(1, rejected(9, 6, 2))]);
    // The leader has term 1 through index 3, then its own term 3.
    follower.step(
        12,
        1,
        append(3, (3, 1), Some(EntrySpan::new(4, 5, 3)), 0, 6),
    );
    assert_eq!(
        follower.take_commands(),
        vec![
            Command::TruncateLogFrom { index: 4 },
            persist_entries(4, 5, 3)
        ]
    );
    assert_eq!(follower.log().last_index(), 5);
    assert_eq!(follower.persisted_index(), 3);
}

#[test]
fn a_leader_backtracks_a_whole_term_per_rejection() {
    // The leader's log: 1..=3 in term 1, 4..=8 in term 3.
    let mut leader = restarted(1, 3, &[(1, 1), (3, 4)], 8);
    elect(&mut leader, 2, ELECTION_DUE_MS);
    assert_eq!(leader.term(), 4);
    // Follower 2 holds term 2 at 4..=6: the leader skips straight to index 3.
    let rejection = Message::AppendResponse {
        term: 4,
        result: AppendResult::Rejected {
            rejected_index: 8,
            hint_index: 6,
            hint_term: 2,
        },
        echo_ms: ELECTION_DUE_MS,
    };
    leader.step(ELECTION_DUE_MS + 1, 2, rejection);
    assert_eq!(
        leader.take_commands(),
        vec![send(
            2,
            append(
                4,
                (3, 1),
                Some(EntrySpan::new(4, 8, 3)),
                0,
                ELECTION_DUE_MS + 1
            )
        )]
    );
}

#[test]
fn entries_of_an_earlier_term_commit_only_with_one_of_the_current_term() {
    let mut leader = restarted(1, 3, &[(1, 1), (3, 4)], 8);
    elect(&mut leader, 2, ELECTION_DUE_MS);
    let now_ms = ELECTION_DUE_MS + 1;
    // Leader and follower 2 both hold 1..=8 from term 3: a majority, yet no commit (§5.4.2).
    leader.step(now_ms, 2, accepted(4, 8, now_ms));
    assert!(!leader
        .take_commands()
        .iter()
        .any(|command| matches!(command, Command::Commit { .. })));
    leader.persisted(now_ms, 9, 4);
    assert_eq!(leader.take_commands(), vec![]);
    leader.step(now_ms, 2, accepted(4, 9, now_ms));
    assert_eq!(
        leader.take_commands(),
        vec![
            Command::Commit { up_to_index: 9 },
            Command::ReadyForRead {
                term: 4,
                commit_index: 9
            }
        ]
    );
    assert_eq!(leader.commit_index(), 9);
}

#[test]
fn a_leader_that_hears_no_majority_for_an_election_timeout_steps_down() {
    let mut leader = leader_of_three();
    let elected_ms = ELECTION_DUE_MS;
    leader.tick(elected_ms + 400);
    assert!(leader.is_leader());
    leader.step(
        elected_ms + 500,
        3,
        Message::HeartbeatResponse {
            term: 1,
            echo_ms: elected_ms,
        },
    );
    leader.tick(elected_ms + ELECTION_TIMEOUT_MIN_MS + 1);
    assert!(leader.is_leader(), "node 3 answered within the window");
    leader.take_commands();
    leader.tick(elected_ms + 500 + ELECTION_TIMEOUT_MIN_MS + 1);
    assert_eq!(
        leader.take_commands(),
        vec![Command::BecameFollower {
            term: 1,
            leader: None
        }]
    );
    assert_eq!(
        leader.read_index(elected_ms + 500 + ELECTION_TIMEOUT_MIN_MS + 1),
        Err(ReadError::NotLeader { leader: None })
    );
}

#[test]
fn lease_reads_need_a_commit_in_the_term_and_a_fresh_majority() {
    let mut leader = leader_of_three();
    let now_ms = ELECTION_DUE_MS + 10;
    assert_eq!(
        leader.read_index(now_ms),
        Err(ReadError::NotCommittedInTerm)
    );
    leader.persisted(now_ms, 1, 1);
    leader.step(now_ms, 2, accepted(1, 1, ELECTION_DUE_MS));
    assert_eq!(
        leader.take_commands(),
        vec![
            Command::Commit { up_to_index: 1 },
            Command::ReadyForRead {
                term: 1,
                commit_index: 1
            }
        ]
    );
    assert_eq!(leader.read_index(now_ms), Ok(1));
    assert_eq!(
        leader.lease_expiry_ms(now_ms),
        Some(ELECTION_DUE_MS + LEADER_LEASE_MS)
    );
    let expired_ms = ELECTION_DUE_MS + LEADER_LEASE_MS;
    assert_eq!(leader.read_index(expired_ms), Err(ReadError::LeaseExpired));
    // A heartbeat acknowledged by one follower renews the lease from its send time.
    leader.step(
        expired_ms,
        3,
        Message::HeartbeatResponse {
            term: 1,
            echo_ms: expired_ms - 50,
        },
    );
    assert_eq!(leader.read_index(expired_ms), Ok(1));
}

#[test]
fn leadership_transfer_waits_for_the_target_then_sends_timeout_now() {
    let mut leader = leader_of_three();
    let now_ms = ELECTION_DUE_MS + 10;
    leader.persisted(now_ms, 1, 1);
    leader.step(now_ms, 2, accepted(1, 1, now_ms));
    leader.take_commands();
    // Node 3 has not acknowledged the marker: it is caught up first.
    leader.transfer_leadership(now_ms, 3).unwrap();
    assert_eq!(leader.take_commands(), vec![]);
    assert_eq!(
        leader.propose(now_ms, 1),
        Err(ProposeError::TransferInProgress)
    );
    assert_eq!(
        leader.read_index(now_ms),
        Err(ReadError::TransferInProgress)
    );
    leader.step(now_ms + 1, 3, accepted(1, 1, now_ms));
    assert_eq!(
        leader.take_commands(),
        vec![send(3, Message::TimeoutNow { term: 1 })]
    );
    assert_eq!(
        leader.transfer_leadership(now_ms + 1, 1),
        Err(TransferError::TargetIsSelf)
    );
    assert_eq!(
        leader.transfer_leadership(now_ms + 1, 9),
        Err(TransferError::UnknownTarget { target: 9 })
    );
}

#[test]
fn a_follower_is_in_sync_only_when_recently_heard_and_close_behind() {
    let mut leader = leader_of_three();
    let now_ms = ELECTION_DUE_MS + 10;
    leader.persisted(now_ms, 1, 1);
    leader.step(now_ms, 2, accepted(1, 1, now_ms));
    leader.take_commands();
    // Node 2 holds the marker; node 3 has acknowledged nothing yet.
    assert!(leader.follower_in_sync(now_ms, 2, 0));
    assert!(!leader.follower_in_sync(now_ms, 3, 0));
    assert!(leader.follower_in_sync(now_ms, 3, 1));
    // Three more entries: node 2 is now three behind.
    for _ in 0..3 {
        leader.propose(now_ms, 1).unwrap();
    }
    assert!(!leader.follower_in_sync(now_ms, 2, 2));
    assert!(leader.follower_in_sync(now_ms, 2, 3));
    // Silence for an election timeout makes even a caught-up follower not in sync.
    let silent_ms = now_ms + ELECTION_TIMEOUT_MIN_MS;
    assert!(!leader.follower_in_sync(silent_ms, 2, 3));
    // Only a leader can tell.
    let follower = node(2, &[1, 2, 3]);
    assert!(!follower.follower_in_sync(now_ms, 1, 100));
}

#[test]
fn timeout_now_starts_an_election_that_sticky_voters_accept() {
    let mut target = node(3, &[1, 2, 3]);
    target.step(10, 1, Message::TimeoutNow { term: 1 });
    let request = Message::RequestVote {
        term: 2,
        last_index: 0,
        last_term: 0,
        pre_vote: false,
        leadership_transfer: true,
    };
    let commands = target.take_commands();
    assert_eq!(
        &commands[commands.len() - 3..],
        &[
            persist_state(2, Some(3)),
            send(1, request.clone()),
            send(2, request.clone())
        ]
    );
    // Node 2 just heard from the leader, yet grants: the leader asked for this election.
    let mut voter = node(2, &[1, 2, 3]);
    voter.step(
        10,
        1,
        Message::Heartbeat {
            term: 1,
            commit_index: 0,
            sent_ms: 9,
        },
    );
    voter.take_commands();
    voter.step(11, 3, request);
    assert!(voter
        .take_commands()
        .contains(&send(3, vote(2, true, false))));
}

#[test]
fn higher_terms_depose_and_lower_terms_are_answered_with_the_current_one() {
    let mut leader = leader_of_three();
    let now_ms = ELECTION_DUE_MS + 1;
    leader.step(
        now_ms,
        2,
        Message::HeartbeatResponse {
            term: 2,
            echo_ms: 0,
        },
    );
    assert_eq!(
        leader.take_commands(),
        vec![
            persist_state(2, None),
            Command::BecameFollower {
                term: 2,
                leader: None
            }
        ]
    );
    // The node's old term-1 leader speaking now learns about term 2.
    leader.step(now_ms, 3, append(1, (0, 0), None, 0, 4));
    assert_eq!(
        leader.take_commands(),
        vec![send(
            3,
            Message::HeartbeatResponse {
                term: 2,
                echo_ms: 0
            }
        )]
    );
}

#[test]
fn proposals_are_refused_off_the_leader_and_outside_the_size_limits() {
    let mut follower = node(2, &[1, 2, 3]);
    follower.step(
        10,
        1,
        Message::Heartbeat {
            term: 1,
            commit_index: 0,
            sent_ms: 9,
        },
    );
    assert_eq!(
        follower.propose(11, 1),
        Err(ProposeError::NotLeader { leader: Some(1) })
    );
    let mut leader = leader_of_three();
    assert!(matches!(
        leader.propose(ELECTION_DUE_MS, 0),
        Err(ProposeError::InvalidSize { .. })
    ));
    assert!(matches!(
        leader.propose(ELECTION_DUE_MS, PROPOSAL_INDEXES_MAX + 1),
        Err(ProposeError::InvalidSize { .. })
    ));
    assert_eq!(
        leader.propose(ELECTION_DUE_MS, 4),
        Ok(EntrySpan::new(2, 5, 1))
    );
    // Followers are still probing (the marker is in flight), so nothing more is sent yet.
    assert_eq!(leader.take_commands(), vec![persist_entries(2, 5, 1)]);
}

#[test]
fn a_replicating_follower_receives_new_entries_at_once() {
    let mut leader = leader_of_three();
    let now_ms = ELECTION_DUE_MS + 1;
    leader.step(now_ms, 2, accepted(1, 1, now_ms));
    leader.take_commands();
    leader.propose(now_ms, 3).unwrap();
    assert_eq!(
        leader.take_commands(),
        vec![
            persist_entries(2, 4, 1),
            send(
                2,
                append(1, (1, 1), Some(EntrySpan::new(2, 4, 1)), 0, now_ms)
            ),
        ]
    );
}

#[test]
fn a_single_node_group_commits_on_its_own_sync() {
    let mut single = node(1, &[1]);
    single.tick(ELECTION_DUE_MS);
    assert_eq!(
        single.take_commands(),
        vec![
            persist_state(1, Some(1)),
            Command::BecameLeader { term: 1 },
            Command::AppendLeaderMarker { index: 1, term: 1 },
            persist_entries(1, 1, 1),
        ]
    );
    single.persisted(ELECTION_DUE_MS, 1, 1);
    assert_eq!(
        single.take_commands(),
        vec![
            Command::Commit { up_to_index: 1 },
            Command::ReadyForRead {
                term: 1,
                commit_index: 1
            }
        ]
    );
    assert_eq!(single.read_index(ELECTION_DUE_MS), Ok(1));
}

#[test]
fn a_group_set_coalesces_messages_per_destination() {
    let mut set = GroupSet::new(1);
    for group in [10, 20, 30] {
        set.insert(group, node(1, &[1, 2, 3]));
    }
    set.tick(ELECTION_DUE_MS);
    let output = set.flush();
    assert_eq!(output.commands, vec![]);
    let request = request_vote(1, 0, 0, true);
    let expected = |to| Envelope {
        from: 1,
        to,
        messages: vec![
            (10, request.clone()),
            (20, request.clone()),
            (30, request.clone()),
        ],
    };
    assert_eq!(output.envelopes, vec![expected(2), expected(3)]);
    // Grants for two of the groups arrive in one envelope.
    set.step(
        ELECTION_DUE_MS,
        Envelope {
            from: 2,
            to: 1,
            messages: vec![(10, vote(1, true, true)), (30, vote(1, true, true))],
        },
    );
    let output = set.flush();
    assert_eq!(
        output.commands,
        vec![
            (10, persist_state(1, Some(1))),
            (30, persist_state(1, Some(1)))
        ]
    );
    assert_eq!(output.envelopes.len(), 2);
    assert_eq!(output.envelopes[0].messages.len(), 2);
    assert_eq!(
        set.next_deadline_ms()
            .map(|deadline| deadline > ELECTION_DUE_MS),
        Some(true)
    );
}

/// A hand-driven network for scripted scenarios: syncs are instant, messages are delivered one
/// at a time in order, and a node that is down neither sends nor receives.
struct Network {
    nodes: BTreeMap<NodeId, RaftNode>,
    up: std::collections::BTreeSet<NodeId>,
    in_flight: std::collections::VecDeque<(NodeId, NodeId, Message)>,
    /// The term of every entry any node committed, by index.
    committed: BTreeMap<LogIndex, Term>,
    /// (node, index) of every `ResetLog` executed.
    resets: Vec<(NodeId, LogIndex)>,
    now_ms: u64,
}

use std::collections::BTreeMap;

impl Network {
    fn new(node_count: u64) -> Self {
        let voters: Vec<NodeId> = (1..=node_count).collect();
        Network {
            nodes: voters.iter().map(|id| (*id, node(*id, &voters))).collect(),
            up: voters.iter().copied().collect(),
            in_flight: Default::default(),
            committed: BTreeMap::new(),
            resets: Vec::new(),
            now_ms: 0,
        }
    }

    fn collect(&mut self, id: NodeId) {
        loop {
            let node = self.nodes.get_mut(&id).unwrap();
            let commands = node.take_commands();
            if commands.is_empty() {
                return;
            }
            for command in commands {
                let node = self.nodes.get_mut(&id).unwrap();
                match command {
                    Command::Persist {
                        entries: Some(span),
                        ..
                    } => node.persisted(self.now_ms, span.last_index, span.term),
                    Command::ResetLog { index, term } => {
                        self.resets.push((id, index));
                        node.persisted(self.now_ms, index, term);
                    }
                    Command::Send { to, message } => self.in_flight.push_back((id, to, message)),
                    Command::Commit { up_to_index } => {
                        let (start, _) = node.log().start();
                        for index in (start + 1).max(1)..=up_to_index {
                            let term = node.log().term_at(index).unwrap();
                            let previous = self.committed.insert(index, term);
                            assert!(previous.is_none_or(|previous| previous == term));
                        }
                    }
                    Command::BecameLeader { .. } => {
                        // Leader completeness: the new leader holds every committed entry.
                        let (start, _) = node.log().start();
                        for (index, term) in self.committed.range(start + 1..) {
                            assert_eq!(node.log().term_at(*index), Some(*term), "index {index}");
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Delivers messages one by one until `stop` says so after a delivery, or none are left.
    fn run_until(&mut self, mut stop: impl FnMut(&Network, NodeId, &Message) -> bool) {
        while let Some((from, to, message)) = self.in_flight.pop_front() {
            if !self.up.contains(&from) || !self.up.contains(&to) {
                continue;
            }
            self.nodes
                .get_mut(&to)
                .unwrap()
                .step(self.now_ms, from, message.clone());
            self.collect(to);
            if stop(self, to, &message) {
                return;
            }
        }
    }

    /// Lets time pass beyond every stickiness window, then times out `id` until it leads,
    /// stopping the moment it does (its first appends are still in flight).
    fn elect(&mut self, id: NodeId) {
        for _ in 0..5 {
            self.now_ms += 2 * ELECTION_TIMEOUT_MAX_MS;
            self.nodes.get_mut(&id).unwrap().tick(self.now_ms);
            self.collect(id);
            self.run_until(|network, _, _| network.nodes[&id].is_leader());
            if self.nodes[&id].is_leader() {
                return;
            }
        }
        panic!("node {id} was not elected");
    }

    fn crash(&mut self, id: NodeId) {
        self.up.remove(&id);
        self.in_flight.retain(|(from, _, _)| *from != id);
    }
}

/// Raft's figure 8: an entry of an old term replicated to a majority by a later leader is not
/// committed by counting, because a node with a newer last term can still be elected and
/// overwrite it. Only the leader's own-term entry commits it.
#[test]
fn figure_8_an_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    let mut network = Network::new(5);
    // (a) Node 1 leads term 1; everyone holds its marker (index 1). Index 2 reaches node 2 only.
    network.elect(1);
    network.run_until(|_, _, _| false);
    network.up = [1, 2].into_iter().collect();
    network
        .nodes
        .get_mut(&1)
        .unwrap()
        .propose(network.now_ms, 1)
        .unwrap();
    network.collect(1);
    network.run_until(|_, _, _| false);
    assert_eq!(network.nodes[&2].log().term_at(2), Some(1));
    // (b) Node 1 is gone; node 5 wins term 2 with nodes 3 and 4, writes its marker at index 2
    // and crashes before sending it.
    network.crash(1);
    network.up = [3, 4, 5].into_iter().collect();
    network.elect(5);
    network.crash(5);
    assert_eq!(network.nodes[&5].log().term_at(2), Some(2));
    // (c) Node 1 returns and wins term 3 with nodes 2 and 3, and copies index 2 (term 1) to
    // node 3: now on a majority. It stops the moment node 3 acknowledges index 2.
    network.up = [1, 2, 3].into_iter().collect();
    network.elect(1);
    assert_eq!(network.nodes[&1].term(), 3);
    network.run_until(|network, to, message| {
        to == 1
            && matches!(
                message,
                Message::AppendResponse {
                    result: AppendResult::Accepted { match_index: 2 },
                    ..
                }
            )
            && network.nodes[&3].log().last_index() == 2
    });
    assert_eq!(network.nodes[&3].log().term_at(2), Some(1));
    assert!(
        network.nodes[&1].commit_index() < 2,
        "index 2 is of term 1: counting replicas must not commit it in term 3"
    );
    // (d) Node 1 crashes; node 5 (last term 2) is elected by nodes 3 and 4 and overwrites
    // index 2, which is legal precisely because it was never committed.
    network.crash(1);
    network.up = [2, 3, 4, 5].into_iter().collect();
    network.elect(5);
    network.run_until(|_, _, _| false);
    assert_eq!(network.nodes[&3].log().term_at(2), Some(2));
}

impl Network {
    fn propose(&mut self, id: NodeId, count: u64) {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .propose(self.now_ms, count)
            .unwrap();
        self.collect(id);
        self.run_until(|_, _, _| false);
    }

    /// A few heartbeat intervals on `id`, delivering everything after each.
    fn heartbeats(&mut self, id: NodeId, count: u64) {
        for _ in 0..count {
            self.now_ms += HEARTBEAT_INTERVAL_MS;
            self.nodes.get_mut(&id).unwrap().tick(self.now_ms);
            self.collect(id);
            self.run_until(|_, _, _| false);
        }
    }
}

/// Retention deleted entries a follower still needs: the leader sends its log start, the
/// follower drops what it holds and starts over there, and replication resumes after it.
#[test]
fn a_follower_behind_the_leaders_log_start_starts_over_there() {
    let mut network = Network::new(3);
    network.elect(1);
    network.run_until(|_, _, _| false);
    network.crash(3);
    network.propose(1, 3);
    network.propose(1, 2);
    let committed = network.nodes[&1].commit_index();
    assert_eq!(committed, 6);
    let now_ms = network.now_ms;
    for id in [1, 2] {
        network.nodes.get_mut(&id).unwrap().compact(now_ms, 4);
    }
    assert_eq!(network.nodes[&1].log().start(), (4, 1));
    assert_eq!(network.nodes[&1].log().term_at(3), None);
    // Node 3 holds only the marker (index 1): it needs index 2, which is gone everywhere.
    network.up.insert(3);
    let mut snapshots = 0;
    for _ in 0..5 {
        network.now_ms += HEARTBEAT_INTERVAL_MS;
        network.nodes.get_mut(&1).unwrap().tick(network.now_ms);
        network.collect(1);
        network.run_until(|_, _, message| {
            snapshots += u64::from(matches!(message, Message::InstallSnapshot { .. }));
            false
        });
    }
    assert!(snapshots >= 1, "the leader sent its log start");
    assert_eq!(network.resets, vec![(3, 4)]);
    let follower = &network.nodes[&3];
    assert_eq!(follower.log().start(), (4, 1));
    assert_eq!(follower.log().last_index(), 6, "caught up after the start");
    network.propose(1, 1);
    network.heartbeats(1, 2);
    assert_eq!(network.nodes[&3].log().last_index(), 7);
    assert_eq!(network.nodes[&3].commit_index(), 7);
    // Node 3 can now stand in for node 2: with node 2 down, writes still commit.
    network.crash(2);
    network.propose(1, 1);
    network.heartbeats(1, 2);
    assert_eq!(network.nodes[&1].commit_index(), 8);
    // A follower that holds the leader's log start keeps its log: nothing is reset.
    network.up.insert(2);
    let now_ms = network.now_ms;
    network.nodes.get_mut(&1).unwrap().compact(now_ms, 6);
    network.heartbeats(1, 3);
    assert_eq!(network.resets, vec![(3, 4)]);
    assert_eq!(network.nodes[&2].log().last_index(), 8);
}

#[test]
fn committed_entries_match_whatever_term_a_leader_has_on_record_for_them() {
    // Log: 1..=3 in term 1, 4..=6 in term 2, all committed. A leader restarted between
    // recording its log start and deleting up to it knows the start's term only approximately:
    // its log start (5, term 3 on record) and appends after it must still be taken as matching.
    let mut follower = restarted(2, 2, &[(1, 1), (2, 4)], 6);
    follower.step(10, 1, append(3, (6, 2), None, 6, 9));
    assert_eq!(follower.commit_index(), 6);
    follower.take_commands();
    follower.step(
        20,
        1,
        Message::InstallSnapshot {
            term: 3,
            last_index: 5,
            last_term: 3,
            sent_ms: 19,
        },
    );
    assert_eq!(follower.take_commands(), vec![send(1, accepted(3, 6, 19))]);
    // An append whose previous entry is committed here matches too, and its new entries land.
    follower.step(
        30,
        1,
        append(3, (5, 3), Some(EntrySpan::new(6, 7, 3)), 6, 29),
    );
    let commands = follower.take_commands();
    assert!(commands.contains(&persist_entries(7, 7, 3)), "{commands:?}");
    assert_eq!(follower.log().term_at(6), Some(2), "committed entries stay");
    assert_eq!(follower.log().term_at(7), Some(3));
}

#[test]
fn a_follower_commits_only_what_it_verified_against_the_leader() {
    // Log: 1..=2 in term 1, 3..=5 in term 2; the term-3 leader holds other entries at 3..=4.
    let mut follower = restarted(2, 2, &[(1, 1), (2, 3)], 5);
    follower.step(10, 1, append(3, (2, 1), None, 4, 9));
    assert_eq!(
        follower.take_commands(),
        vec![
            persist_state(3, None),
            Command::BecameFollower {
                term: 3,
                leader: Some(1)
            },
            Command::Commit { up_to_index: 2 },
            send(1, accepted(3, 2, 9)),
        ]
    );
}

/// Three brokers, eight groups each, driven only through `GroupSet`: every group elects a
/// leader and commits, and each flush sends at most one envelope per destination broker.
#[test]
fn many_groups_run_over_one_envelope_stream_per_broker_pair() {
    const GROUP_COUNT: u64 = 8;
    let brokers: Vec<NodeId> = vec![1, 2, 3];
    let mut sets: BTreeMap<NodeId, GroupSet> = BTreeMap::new();
    for broker in &brokers {
        let mut set = GroupSet::new(*broker);
        for group in 0..GROUP_COUNT {
            // Different seeds per group and broker spread the elections across brokers.
            let config = RaftConfig::new(*broker, brokers.clone(), group * 31 + broker);
            set.insert(group, RaftNode::new(config, 0));
        }
        sets.insert(*broker, set);
    }
    let mut in_flight: Vec<Envelope> = Vec::new();
    let mut proposed: BTreeMap<GroupId, LogIndex> = BTreeMap::new();
    let mut now_ms = 0;
    while now_ms < 10 * ELECTION_TIMEOUT_MAX_MS {
        now_ms += 10;
        for envelope in std::mem::take(&mut in_flight) {
            sets.get_mut(&envelope.to).unwrap().step(now_ms, envelope);
        }
        for (broker, set) in sets.iter_mut() {
            set.tick(now_ms);
            for group in 0..GROUP_COUNT {
                let node = set.get_mut(group).unwrap();
                if node.is_leader() && !proposed.contains_key(&group) {
                    let span = node.propose(now_ms, 2).unwrap();
                    proposed.insert(group, span.last_index);
                }
            }
            let output = set.flush();
            // Instant disk: every Persist is durable at once, then the envelopes go.
            for (group, command) in &output.commands {
                if let Command::Persist {
                    entries: Some(span),
                    ..
                } = command
                {
                    set.persisted(now_ms, *group, span.last_index, span.term);
                }
            }
            let destinations: Vec<NodeId> = output
                .envelopes
                .iter()
                .map(|envelope| envelope.to)
                .collect();
            let expected: Vec<NodeId> = brokers
                .iter()
                .copied()
                .filter(|other| other != broker)
                .collect();
            assert!(destinations.iter().all(|to| expected.contains(to)));
            assert!(
                destinations.windows(2).all(|pair| pair[0] < pair[1]),
                "one per broker"
            );
            in_flight.extend(output.envelopes);
            // Commands produced by `persisted` go out with the next flush.
        }
        let all_committed = (0..GROUP_COUNT).all(|group| {
            proposed.get(&group).is_some_and(|index| {
                sets.values()
                    .all(|set| set.get(group).unwrap().commit_index() >= *index)
            })
        });
        if all_committed {
            let leaders: std::collections::BTreeSet<NodeId> = (0..GROUP_COUNT)
                .flat_map(|group| {
                    sets.values().filter_map(move |set| {
                        set.get(group).unwrap().is_leader().then_some(set.node_id())
                    })
                })
                .collect();
            assert!(!leaders.is_empty());
            return;
        }
    }
    panic!("not every group committed: {proposed:?}");
}
