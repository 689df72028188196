//! The core's entire knowledge of the log: which term each index was written in.
//!
//! Stored like Kafka's leader-epoch cache (`leader-epoch-checkpoint`): one `(term, first index)`
//! run per term, plus the last index. A million-entry log written over three terms is three
//! runs. The payloads live in the driver's log; on restart the driver rebuilds this from its
//! durable log (the partition leader epoch of each batch) with [`LogTerms::from_runs`].
//!
//! ```text
//!   index:  1 2 3 4 5 6 7 8 9
//!   term:   1 1 1 2 2 4 4 4 4      runs: [(1, 1), (2, 4), (4, 6)], last_index 9
//! ```

use super::types::{EntrySpan, LogIndex, Term};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermRun {
    pub term: Term,
    pub first_index: LogIndex,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogTerms {
    /// Strictly increasing in both term and first index; the first run starts right after
    /// `start_index`, the last one at or below `last_index`.
    runs: Vec<TermRun>,
    last_index: LogIndex,
    /// The last entry no longer held (deleted by retention, or before a snapshot point the
    /// leader installed), and its term: everything through it is committed. `(0, 0)`, the
    /// sentinel before the first entry, for a log that starts at the beginning.
    start_index: LogIndex,
    start_term: Term,
}

impl LogTerms {
    pub fn new() -> Self {
        LogTerms::default()
    }

    /// Rebuilds the index of a recovered log that starts at the beginning.
    pub fn from_runs(runs: Vec<TermRun>, last_index: LogIndex) -> Self {
        LogTerms::with_start(0, 0, runs, last_index)
    }

    /// Rebuilds the index of a recovered log whose entries through `start_index` (of
    /// `start_term`) are gone.
    pub fn with_start(
        start_index: LogIndex,
        start_term: Term,
        runs: Vec<TermRun>,
        last_index: LogIndex,
    ) -> Self {
        let log_terms = LogTerms {
            runs,
            last_index,
            start_index,
            start_term,
        };
        log_terms.assert_invariants();
        log_terms
    }

    pub fn runs(&self) -> &[TermRun] {
        &self.runs
    }

    pub fn last_index(&self) -> LogIndex {
        self.last_index
    }

    pub fn last_term(&self) -> Term {
        self.runs.last().map_or(self.start_term, |run| run.term)
    }

    /// The last entry the log no longer holds, and its term (`(0, 0)` if it holds them all).
    pub fn start(&self) -> (LogIndex, Term) {
        (self.start_index, self.start_term)
    }

    /// The term of the entry at `index`: `Some(0)` for the sentinel index 0, the start term at
    /// the start index, `None` past the end or before the start.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.start_index {
            return Some(self.start_term);
        }
        if index < self.start_index || index > self.last_index {
            return None;
        }
        let position = self.runs.partition_point(|run| run.first_index <= index);
        debug_assert!(position >= 1, "the first run starts after the start index");
        Some(self.runs[position - 1].term)
    }

    /// The last index of the term run that holds `index`, so that one append never mixes terms.
    pub fn run_end(&self, index: LogIndex) -> LogIndex {
        assert!(index > self.start_index && index <= self.last_index);
        let position = self.runs.partition_point(|run| run.first_index <= index);
        match self.runs.get(position) {
            Some(next_run) => next_run.first_index - 1,
            None => self.last_index,
        }
    }

    /// Appends a span directly after the last index, in a term no older than the last one.
    pub fn append(&mut self, span: EntrySpan) {
        assert_eq!(
            span.first_index,
            self.last_index + 1,
            "appends are contiguous"
        );
        assert!(
            span.term >= self.last_term(),
            "terms never decrease along the log"
        );
        if self.runs.is_empty() || span.term != self.last_term() {
            self.runs.push(TermRun {
                term: span.term,
                first_index: span.first_index,
            });
        }
        self.last_index = span.last_index;
        self.assert_invariants();
    }

    /// Removes `index` and everything after it.
    pub fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.start_index,
            "entries through the start are committed and never truncated"
        );
        if index > self.last_index {
            return;
        }
        self.last_index = index - 1;
        self.runs.retain(|run| run.first_index < index);
        self.assert_invariants();
    }

    /// Forgets the entries through `index` (retention deleted them): `index` becomes the start.
    pub fn compact_through(&mut self, index: LogIndex) {
        if index <= self.start_index {
            return;
        }
        assert!(index <= self.last_index, "only held entries are compacted");
        let term = self.term_at(index).expect("inside the log");
        let position = self
            .runs
            .partition_point(|run| run.first_index <= index + 1);
        // The run holding `index + 1`, if any, now starts there; earlier runs go.
        let mut kept: Vec<TermRun> = self.runs.split_off(position);
        if index < self.last_index {
            let holding = self.runs.last().copied().expect("a run holds index + 1");
            if holding.first_index <= index {
                kept.insert(
                    0,
                    TermRun {
                        term: holding.term,
                        first_index: index + 1,
                    },
                );
            } else {
                kept.insert(0, holding);
            }
        }
        self.runs = kept;
        self.start_index = index;
        self.start_term = term;
        self.assert_invariants();
    }

    /// Replaces the whole log by an empty one starting after `index` of `term` (a snapshot
    /// point installed by the leader).
    pub fn reset_to(&mut self, index: LogIndex, term: Term) {
        self.runs.clear();
        self.last_index = index;
        self.start_index = index;
        self.start_term = term;
        self.assert_invariants();
    }

    /// The largest index at or below `index` whose term is at most `term` (0 if none): where a
    /// log that holds `term` at `index` can possibly agree with this one (etcd's
    /// `findConflictByTerm`). Never below the start index while the start term qualifies.
    pub fn last_index_with_term_at_most(&self, index: LogIndex, term: Term) -> LogIndex {
        let index = index.min(self.last_index);
        if index < self.start_index {
            return 0;
        }
        let position = self.runs.partition_point(|run| run.first_index <= index);
        for run in self.runs[..position].iter().rev() {
            if run.term <= term {
                // Either `index` itself lies in this run, or the run ends before the next one.
                let run_end = if run.first_index <= index && self.term_at(index) == Some(run.term) {
                    index
                } else {
                    self.run_end(run.first_index)
                };
                return run_end.min(index);
            }
        }
        if self.start_term <= term {
            self.start_index
        } else {
            0
        }
    }

    /// Kafka's OffsetsForLeaderEpoch on this log: the largest term at or below `term` that the
    /// log holds, and the last index of its run (as an exclusive offset, where the next term
    /// starts, or the log end for the last term). `None` if every entry is of a later term.
    pub fn epoch_end(&self, term: Term) -> Option<(Term, LogIndex)> {
        let position = self.runs.partition_point(|run| run.term <= term);
        match self.runs[..position].last() {
            Some(run) => Some((run.term, self.run_end(run.first_index))),
            None if self.start_index > 0 && self.start_term <= term => {
                Some((self.start_term, self.start_index))
            }
            None => None,
        }
    }

    fn assert_invariants(&self) {
        if cfg!(debug_assertions) {
            for pair in self.runs.windows(2) {
                assert!(
                    pair[0].term < pair[1].term,
                    "terms increase: {:?}",
                    self.runs
                );
                assert!(pair[0].first_index < pair[1].first_index, "{:?}", self.runs);
            }
            assert!(self.start_index <= self.last_index);
            if let Some(first) = self.runs.first() {
                assert_eq!(first.first_index, self.start_index + 1, "{self:?}");
                assert!(first.term >= 1);
                assert!(first.term >= self.start_term);
            }
            match self.runs.last() {
                Some(last) => assert!(last.first_index <= self.last_index),
                None => assert_eq!(
                    self.last_index, self.start_index,
                    "a log holding entries has a run"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> LogTerms {
        let mut log = LogTerms::new();
        log.append(EntrySpan::new(1, 3, 1));
        log.append(EntrySpan::new(4, 5, 2));
        log.append(EntrySpan::new(6, 9, 4));
        log
    }

    #[test]
    fn compaction_forgets_entries_but_keeps_the_start_term() {
        for index in 0..=9 {
            let mut log = example();
            let term = log.term_at(index).unwrap();
            log.compact_through(index);
            assert_eq!(log.start(), (index, term));
            assert_eq!(log.last_index(), 9);
            assert_eq!(log.last_term(), 4);
            for probe in 0..=10 {
                let expected = if probe < index && index > 0 {
                    None
                } else {
                    example().term_at(probe)
                };
                assert_eq!(
                    log.term_at(probe),
                    expected,
                    "compacted through {index}, at {probe}"
                );
            }
            if index < 9 {
                assert_eq!(log.run_end(index + 1), example().run_end(index + 1));
            }
            // Where logs can agree is never placed inside the compacted part.
            let agreement = log.last_index_with_term_at_most(9, 3);
            assert!(
                agreement == 0 || agreement >= index,
                "{agreement} below {index}"
            );
        }
        let mut log = example();
        log.compact_through(4);
        assert_eq!(log.last_index_with_term_at_most(9, 1), 0);
        assert_eq!(log.last_index_with_term_at_most(9, 2), 5);
        assert_eq!(log.epoch_end(1), None);
        assert_eq!(log.epoch_end(2), Some((2, 5)));
        log.compact_through(5);
        assert_eq!(
            log.epoch_end(3),
            Some((2, 5)),
            "the start term's end is the start"
        );
        log.append(EntrySpan::new(10, 11, 5));
        assert_eq!(log.term_at(11), Some(5));
    }

    #[test]
    fn a_reset_log_holds_only_its_start() {
        let mut log = example();
        log.reset_to(20, 6);
        assert_eq!(log.start(), (20, 6));
        assert_eq!(log.last_index(), 20);
        assert_eq!(log.last_term(), 6);
        assert_eq!(log.term_at(20), Some(6));
        assert_eq!(log.term_at(9), None);
        // The next append, even in the start's term, opens a run.
        log.append(EntrySpan::new(21, 22, 6));
        assert_eq!(log.run_end(21), 22);
        assert_eq!(log.last_index_with_term_at_most(22, 6), 22);
        assert_eq!(log.last_index_with_term_at_most(19, 6), 0);
    }

    #[test]
    fn epoch_end_is_where_the_next_term_starts() {
        let log = example();
        assert_eq!(log.epoch_end(0), None);
        assert_eq!(log.epoch_end(1), Some((1, 3)));
        assert_eq!(log.epoch_end(2), Some((2, 5)));
        assert_eq!(log.epoch_end(3), Some((2, 5)), "an epoch the log skipped");
        assert_eq!(log.epoch_end(4), Some((4, 9)));
        assert_eq!(
            log.epoch_end(9),
            Some((4, 9)),
            "a later epoch ends at the log end"
        );
        assert_eq!(LogTerms::new().epoch_end(1), None);
    }

    #[test]
    fn term_at_follows_runs() {
        let log = example();
        let terms: Vec<_> = (0..=10).map(|index| log.term_at(index)).collect();
        let expected = [0, 1, 1, 1, 2, 2, 4, 4, 4, 4];
        for (index, term) in expected.iter().enumerate() {
            assert_eq!(terms[index], Some(*term));
        }
        assert_eq!(terms[10], None);
        assert_eq!(log.runs().len(), 3);
        assert_eq!(log.last_term(), 4);
    }

    #[test]
    fn appending_in_the_same_term_extends_the_run() {
        let mut log = example();
        log.append(EntrySpan::new(10, 12, 4));
        assert_eq!(log.runs().len(), 3);
        assert_eq!(log.run_end(6), 12);
        assert_eq!(log.run_end(4), 5);
    }

    #[test]
    fn truncation_drops_whole_and_partial_runs() {
        let mut log = example();
        log.truncate_from(5);
        assert_eq!(log.last_index(), 4);
        assert_eq!(log.last_term(), 2);
        log.truncate_from(4);
        assert_eq!(log.last_term(), 1);
        assert_eq!(log.runs().len(), 1);
        log.truncate_from(1);
        assert_eq!(log, LogTerms::new());
    }

    #[test]
    fn conflict_search_finds_last_index_with_an_older_or_equal_term() {
        let log = example();
        assert_eq!(log.last_index_with_term_at_most(9, 4), 9);
        assert_eq!(log.last_index_with_term_at_most(9, 3), 5);
        assert_eq!(log.last_index_with_term_at_most(4, 3), 4);
        assert_eq!(log.last_index_with_term_at_most(9, 1), 3);
        assert_eq!(log.last_index_with_term_at_most(2, 1), 2);
        assert_eq!(log.last_index_with_term_at_most(9, 0), 0);
        assert_eq!(log.last_index_with_term_at_most(100, 5), 9);
    }

    #[test]
    #[should_panic(expected = "terms never decrease")]
    fn appending_an_older_term_is_a_programming_error() {
        let mut log = example();
        log.append(EntrySpan::new(10, 10, 3));
    }
}
