//! One hand-made history per anomaly kind that exhibits it, and a close variant that does
//! not.

use super::*;
use crate::history::{OperationId, Outcome};
use crate::test_support::{Script, GROUP, TOPIC};

fn at(offset: Offset) -> Position {
    Position {
        topic: TOPIC.into(),
        partition: 0,
        offset,
    }
}

/// Asserts that `expected` is the one anomaly found.
fn assert_only(verdict: &Verdict, expected: Anomaly) {
    let kind = expected.kind();
    assert_kinds(verdict, &[kind]);
    assert_eq!(verdict.examples(kind), [expected]);
}

/// Asserts that the only kinds found are `kinds`.
fn assert_kinds(verdict: &Verdict, kinds: &[AnomalyKind]) {
    let found: Vec<AnomalyKind> = verdict.anomalies.keys().copied().collect();
    assert_eq!(found, kinds, "{}", verdict.summary());
}

#[test]
fn lost_write_when_a_poll_reads_past_a_never_read_value() {
    let mut script = Script::default();
    let send = script.send(1, 10, 0);
    script.send(1, 11, 1);
    let poll = script.poll(2, &[(1, 11)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::LostWrite]);
    assert!(!verdict.valid);
    let expected = Anomaly::LostWrite {
        value: 10.into(),
        position: at(0),
        send,
        witness: poll,
        witness_offset: 1,
        witness_is_drain: false,
    };
    assert_eq!(verdict.examples(AnomalyKind::LostWrite), [expected]);
}

#[test]
fn no_lost_write_when_every_value_is_read() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.poll(2, &[(0, 10), (1, 11)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[]);
    assert!(verdict.valid);
}

#[test]
fn lost_write_when_the_drain_reads_past_a_value_it_misses() {
    let mut script = Script::default();
    let send = script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.poll(2, &[(0, 10)]);
    let drain = script.drain(3, &[(1, 11)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::LostWrite]);
    let expected = Anomaly::LostWrite {
        value: 10.into(),
        position: at(0),
        send,
        witness: drain,
        witness_offset: 1,
        witness_is_drain: true,
    };
    assert_eq!(verdict.examples(AnomalyKind::LostWrite), [expected]);
}

#[test]
fn no_lost_write_when_the_drain_reads_everything() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.poll(2, &[(0, 10)]);
    script.drain(3, &[(0, 10), (1, 11)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn indeterminate_sends_are_never_lost_whether_or_not_they_appear() {
    let mut script = Script::default();
    script.send_with(1, 0, 10, true, EventType::Info, None);
    script.send_with(1, 0, 11, true, EventType::Info, None);
    script.send(1, 12, 2);
    script.drain(3, &[(1, 11), (2, 12)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[]);
    assert_eq!(verdict.statistics.indeterminate_sends, 2);
}

#[test]
fn unseen_is_reported_and_fatal_only_after_a_drain() {
    let mut script = Script::default();
    let send = script.send(1, 10, 0);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::Unseen]);
    assert!(
        verdict.valid,
        "before the drain, unread writes are expected"
    );
    let expected = Anomaly::Unseen {
        value: 10.into(),
        position: at(0),
        send,
    };
    assert_eq!(verdict.examples(AnomalyKind::Unseen), [expected]);

    script.drain(3, &[]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::Unseen]);
    assert!(
        !verdict.valid,
        "after a drain, an unseen write is data loss"
    );
}

#[test]
fn no_unseen_when_the_value_is_read() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.drain(3, &[(0, 10)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn duplicate_when_a_value_is_at_two_offsets() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.poll(2, &[(0, 10), (1, 10)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::Duplicate]);
    assert!(!verdict.valid, "the producer was idempotent");
    let expected = Anomaly::Duplicate {
        value: 10.into(),
        positions: vec![at(0), at(1)],
        idempotent: true,
    };
    assert_eq!(verdict.examples(AnomalyKind::Duplicate), [expected]);
}

#[test]
fn duplicate_of_a_non_idempotent_producer_is_reported_but_not_fatal_by_default() {
    let mut script = Script::default();
    script.send_with(1, 0, 10, false, EventType::Ok, Some(0));
    script.poll(2, &[(0, 10), (1, 10)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::Duplicate]);
    assert!(verdict.valid);
    let options = CheckOptions {
        duplicates_fatal_only_for_idempotent: false,
        ..Default::default()
    };
    assert!(!check(&script.history, &options).valid);
}

#[test]
fn no_duplicate_when_a_value_is_read_twice_at_one_offset() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.poll(2, &[(0, 10)]);
    script.poll(3, &[(0, 10)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn inconsistent_offsets_when_an_acknowledgement_and_a_poll_disagree() {
    let mut script = Script::default();
    let send = script.send(1, 10, 0);
    script.send(1, 11, 1);
    let poll = script.poll(2, &[(0, 20), (1, 11)]);
    let verdict = script.check();
    // Value 10 is never read although offset 1 is: also a lost write.
    assert_kinds(
        &verdict,
        &[AnomalyKind::LostWrite, AnomalyKind::InconsistentOffsets],
    );
    let expected = Anomaly::InconsistentOffsets {
        position: at(0),
        observations: vec![
            Observation {
                value: 10.into(),
                event: send,
            },
            Observation {
                value: 20.into(),
                event: poll,
            },
        ],
    };
    assert_eq!(
        verdict.examples(AnomalyKind::InconsistentOffsets),
        [expected]
    );
}

#[test]
fn no_inconsistent_offsets_when_observations_agree() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.poll(2, &[(0, 10)]);
    script.poll(3, &[(0, 10)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn nonmonotonic_send_when_a_producer_offset_goes_backwards() {
    let mut script = Script::default();
    let first = script.send(1, 10, 5);
    let second = script.send(1, 11, 3);
    script.poll(2, &[(3, 11), (4, 12), (5, 10)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::NonmonotonicSend]);
    let expected = Anomaly::NonmonotonicSend {
        process: Process::Client(1),
        position: at(3),
        event: second,
        previous_offset: 5,
        previous_event: first,
    };
    assert_eq!(verdict.examples(AnomalyKind::NonmonotonicSend), [expected]);
}

#[test]
fn no_nonmonotonic_send_across_producers_or_partitions() {
    let mut script = Script::default();
    script.send(1, 10, 5);
    script.send(2, 11, 3);
    script.send_with(1, 1, 12, true, EventType::Ok, Some(0));
    script.poll(3, &[(3, 11), (4, 13), (5, 10)]);
    let verdict = script.check();
    // Partition 1 is never polled, so value 12 stays unseen, which is not fatal here.
    assert_kinds(&verdict, &[AnomalyKind::Unseen]);
    assert!(verdict.valid);
}

#[test]
fn poll_skip_when_a_consumer_jumps_over_an_existing_offset() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.send(1, 12, 2);
    script.poll(3, &[(1, 11)]);
    let first = script.poll(2, &[(0, 10)]);
    let second = script.poll(2, &[(2, 12)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::PollSkip]);
    let expected = Anomaly::PollSkip {
        process: Process::Client(2),
        position: at(2),
        event: second,
        previous_offset: 0,
        previous_event: first,
        skipped_offsets: vec![1],
        skipped_count: 1,
    };
    assert_eq!(verdict.examples(AnomalyKind::PollSkip), [expected]);
}

#[test]
fn no_poll_skip_after_a_rebalance_or_over_offsets_nobody_saw() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.send(1, 12, 3);
    script.poll(3, &[(1, 11)]);
    script.poll(2, &[(0, 10)]);
    script.rebalance(2);
    // Offset 2 was never observed (a transaction marker, say), so 1 -> 3 is no skip.
    script.poll(2, &[(1, 11), (3, 12)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn nonmonotonic_poll_across_polls_and_within_one_poll() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    let first = script.poll(2, &[(0, 10), (1, 11)]);
    let second = script.poll(2, &[(1, 11)]);
    let third = script.poll(3, &[(1, 11), (0, 10)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::NonmonotonicPoll]);
    let across = Anomaly::NonmonotonicPoll {
        process: Process::Client(2),
        position: at(1),
        event: second,
        previous_offset: 1,
        previous_event: first,
    };
    let within = Anomaly::NonmonotonicPoll {
        process: Process::Client(3),
        position: at(0),
        event: third,
        previous_offset: 1,
        previous_event: third,
    };
    assert_eq!(
        verdict.examples(AnomalyKind::NonmonotonicPoll),
        [across, within]
    );
}

#[test]
fn no_nonmonotonic_poll_after_an_assignment_change_or_an_indeterminate_operation() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.poll(2, &[(0, 10), (1, 11)]);
    let partitions = vec![TopicPartition::new(TOPIC, 0)];
    let assign = Op::Assign { partitions };
    script.run(2, assign.clone(), Outcome::Ok(assign));
    script.poll(2, &[(0, 10), (1, 11)]);
    let poll = Op::Poll {
        drain: false,
        records: Vec::new(),
    };
    script.run(2, poll.clone(), Outcome::Info(poll));
    script.crash();
    script.poll(2, &[(0, 10)]);
    assert_kinds(&script.check(), &[]);
}

#[test]
fn committed_offset_backwards_within_one_assignment() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.drain(2, &[(0, 10), (1, 11)]);
    let first = script.commit(2, 2);
    let second = script.commit(2, 1);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::CommittedOffsetBackwards]);
    let expected = Anomaly::CommittedOffsetBackwards {
        group: GROUP.into(),
        position: at(1),
        event: second,
        previous_offset: 2,
        previous_event: first,
    };
    assert_eq!(
        verdict.examples(AnomalyKind::CommittedOffsetBackwards),
        [expected]
    );
}

#[test]
fn committed_offset_may_go_backwards_across_assignments_unless_whole_group_scope() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.drain(2, &[(0, 10), (1, 11)]);
    script.commit(2, 2);
    script.rebalance(2);
    script.commit(2, 1);
    script.commit(3, 0);
    assert_kinds(&script.check(), &[]);
    let options = CheckOptions {
        commit_comparison_scope: CommitComparisonScope::WholeGroup,
        ..Default::default()
    };
    let verdict = check(&script.history, &options);
    assert_eq!(verdict.count(AnomalyKind::CommittedOffsetBackwards), 2);
}

#[test]
fn committed_offset_past_end_of_the_observed_log() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.drain(2, &[(0, 10), (1, 11)]);
    let commit = script.commit(2, 3);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::CommittedOffsetPastEnd]);
    let expected = Anomaly::CommittedOffsetPastEnd {
        group: GROUP.into(),
        position: at(3),
        event: commit,
        log_end_offset: 2,
    };
    assert_eq!(
        verdict.examples(AnomalyKind::CommittedOffsetPastEnd),
        [expected]
    );
}

#[test]
fn committed_offset_past_the_observed_records_but_within_a_known_end_is_fine() {
    // A replicated log's control batches (leader markers) take offsets no consumer sees.
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.drain(2, &[(0, 10), (1, 11)]);
    script.commit(2, 3);
    let options = CheckOptions {
        known_log_end_offsets: vec![(TopicPartition::new(TOPIC, 0), 3)],
        ..Default::default()
    };
    assert_kinds(&check(&script.history, &options), &[]);
    let options = CheckOptions {
        known_log_end_offsets: vec![(TopicPartition::new(TOPIC, 0), 2)],
        ..Default::default()
    };
    assert_kinds(
        &check(&script.history, &options),
        &[AnomalyKind::CommittedOffsetPastEnd],
    );
}

#[test]
fn committed_offset_at_the_log_end_is_fine() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.drain(2, &[(0, 10), (1, 11)]);
    script.commit(2, 2);
    let fetch = Op::FetchCommitted {
        group: GROUP.into(),
        partitions: Vec::new(),
        offsets: Vec::new(),
    };
    let offsets = vec![CommittedOffset {
        topic: TOPIC.into(),
        partition: 0,
        offset: 2,
    }];
    let fetched = Op::FetchCommitted {
        group: GROUP.into(),
        partitions: Vec::new(),
        offsets,
    };
    script.run(3, fetch, Outcome::Ok(fetched));
    assert_kinds(&script.check(), &[]);
}

#[test]
fn failed_send_observed_when_a_failed_value_is_read() {
    let mut script = Script::default();
    let send = script.send_with(1, 0, 10, true, EventType::Fail, None);
    let poll = script.poll(2, &[(0, 10)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::FailedSendObserved]);
    let expected = Anomaly::FailedSendObserved {
        value: 10.into(),
        send,
        position: at(0),
        witness: poll,
    };
    assert_eq!(
        verdict.examples(AnomalyKind::FailedSendObserved),
        [expected]
    );
}

#[test]
fn no_failed_send_observed_when_the_failed_value_stays_invisible() {
    let mut script = Script::default();
    script.send_with(1, 0, 10, true, EventType::Fail, None);
    script.send(1, 11, 0);
    script.drain(2, &[(0, 11)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[]);
    assert_eq!(verdict.statistics.failed_sends, 1);
}

#[test]
fn counts_are_complete_while_examples_are_bounded() {
    let mut script = Script::default();
    let sends = EXAMPLES_PER_KIND_MAX as u64 + 3;
    for value in 0..sends {
        script.send(1, value, value);
    }
    script.drain(2, &[]);
    let verdict = script.check();
    assert_eq!(verdict.count(AnomalyKind::Unseen), sends);
    assert_eq!(
        verdict.examples(AnomalyKind::Unseen).len(),
        EXAMPLES_PER_KIND_MAX
    );
}

#[test]
fn non_fatal_kinds_leave_the_verdict_valid() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.poll(2, &[(1, 11)]);
    let mut options = CheckOptions::default();
    options.fatal.remove(&AnomalyKind::LostWrite);
    let verdict = check(&script.history, &options);
    assert_eq!(verdict.count(AnomalyKind::LostWrite), 1);
    assert!(verdict.valid);
}

#[test]
fn a_subscription_assignment_resets_poll_order() {
    let mut script = Script::default();
    script.send(1, 10, 0);
    script.send(1, 11, 1);
    script.send(1, 12, 2);
    script.poll(2, &[(0, 10), (1, 11)]);
    let subscribe = |assigned| Op::Subscribe {
        topics: vec![TOPIC.into()],
        assigned,
    };
    let assigned = vec![TopicPartition::new(TOPIC, 0)];
    script.run(2, subscribe(Vec::new()), Outcome::Ok(subscribe(assigned)));
    script.poll(2, &[(0, 10)]);
    script.poll(2, &[(2, 12)]);
    let verdict = script.check();
    assert_kinds(&verdict, &[AnomalyKind::PollSkip]);
    assert_eq!(
        verdict.count(AnomalyKind::PollSkip),
        1,
        "only the skip after subscribing"
    );
}

#[test]
fn acknowledgements_without_a_position_are_counted_but_not_placed() {
    let mut script = Script::default();
    let send = |offset| Op::Send {
        topic: TOPIC.into(),
        partition: None,
        key: Some("k".into()),
        value: 10.into(),
        idempotent: false,
        offset,
    };
    script.run(1, send(None), Outcome::Ok(send(None)));
    script.drain(2, &[]);
    let verdict = script.check();
    assert_kinds(&verdict, &[]);
    assert_eq!(verdict.statistics.acknowledged_sends, 1);
}

/// A history whose partition 0 holds offsets 0..=7, so that commits up to 8 are in range.
fn with_eight_records() -> Script {
    let mut script = Script::default();
    let records: Vec<(Offset, u64)> = (0..8).map(|offset| (offset, 100 + offset)).collect();
    script.poll(9, &records);
    script
}

/// A commit of partition 0, invoked now and left open (complete it with `History::complete`).
fn open_commit(script: &mut Script, process: u64, offset: Offset) -> OperationId {
    let commit = commit_op(offset);
    script.history.invoke(process, 0, commit)
}

fn commit_op(offset: Offset) -> Op {
    Op::Commit {
        group: GROUP.into(),
        offsets: vec![CommittedOffset {
            topic: TOPIC.into(),
            partition: 0,
            offset,
        }],
    }
}

/// An `ok` fetch-committed of partition 0 that read `offset` (`None`: nothing committed).
fn fetch_committed(script: &mut Script, process: u64, offset: Option<Offset>) -> u64 {
    let asked = |offsets| Op::FetchCommitted {
        group: GROUP.into(),
        partitions: vec![TopicPartition::new(TOPIC, 0)],
        offsets,
    };
    let read = offset
        .map(|offset| CommittedOffset {
            topic: TOPIC.into(),
            partition: 0,
            offset,
        })
        .into_iter()
        .collect();
    script.run(process, asked(Vec::new()), Outcome::Ok(asked(read)))
}

#[test]
fn a_committed_offset_missing_after_its_commit_completed_is_lost() {
    let mut script = with_eight_records();
    let commit = script.commit(1, 5);
    let fetch = fetch_committed(&mut script, 2, None);
    let expected = Anomaly::CommittedOffsetLost {
        group: GROUP.into(),
        position: at(5),
        event: fetch,
        commit,
    };
    assert_only(&script.check(), expected);
}

#[test]
fn a_committed_offset_replaced_before_the_read_began_is_stale() {
    let mut script = with_eight_records();
    script.commit(1, 5);
    let newer = script.commit(1, 7);
    let fetch = fetch_committed(&mut script, 2, Some(5));
    let expected = Anomaly::StaleCommittedOffset {
        group: GROUP.into(),
        position: at(5),
        event: fetch,
        superseded_by: newer,
        current_offset: 7,
    };
    assert_only(&script.check(), expected);
    // The latest commit read back, and a read before any commit, are fine.
    let mut script = with_eight_records();
    fetch_committed(&mut script, 2, None);
    script.commit(1, 5);
    script.commit(1, 7);
    fetch_committed(&mut script, 2, Some(7));
    assert_kinds(&script.check(), &[]);
}

#[test]
fn commits_that_may_not_have_happened_or_overlap_allow_either_offset() {
    // An `info` commit of 7 after an `ok` one of 5: either may be read.
    for read in [5, 7] {
        let mut script = with_eight_records();
        script.commit(1, 5);
        script.run(1, commit_op(7), Outcome::Info(commit_op(7)));
        fetch_committed(&mut script, 2, Some(read));
        assert_kinds(&script.check(), &[]);
    }
    // Commits of 5 and 7 that overlapped may have taken effect in either order.
    let mut script = with_eight_records();
    let five = open_commit(&mut script, 1, 5);
    let seven = open_commit(&mut script, 3, 7);
    script.history.complete(five, 1, Outcome::Ok(commit_op(5)));
    script.history.complete(seven, 2, Outcome::Ok(commit_op(7)));
    fetch_committed(&mut script, 2, Some(5));
    assert_kinds(&script.check(), &[]);
    // A commit still open when the read began may not have taken effect yet.
    let mut script = with_eight_records();
    script.commit(1, 5);
    let seven = open_commit(&mut script, 3, 7);
    fetch_committed(&mut script, 2, Some(5));
    script
        .history
        .complete(seven, 100, Outcome::Ok(commit_op(7)));
    assert_kinds(&script.check(), &[]);
}

#[test]
fn a_fetch_that_does_not_say_what_it_asked_for_proves_no_loss() {
    let mut script = with_eight_records();
    script.commit(1, 5);
    let fetch = Op::FetchCommitted {
        group: GROUP.into(),
        partitions: Vec::new(),
        offsets: Vec::new(),
    };
    script.run(2, fetch.clone(), Outcome::Ok(fetch));
    assert_kinds(&script.check(), &[]);
}
