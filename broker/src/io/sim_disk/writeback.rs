//! Pending operations and which of them reach the platter when a crash or a failed sync
//! interrupts writeback. Pure functions of their inputs and a random number generator.

use rand::rngs::StdRng;
use rand::Rng;

use super::SECTOR_BYTES;

/// In independent writeback, the probability that a pending write reaches the disk whole.
pub const INDEPENDENT_WRITE_KEPT_PROBABILITY: f64 = 0.5;
/// In independent writeback, the probability that a write not kept whole is torn (some of its
/// sectors reach the disk, each with even odds) rather than lost entirely.
pub const INDEPENDENT_WRITE_TORN_PROBABILITY: f64 = 0.5;
/// In a torn write, the probability that each of its sectors reaches the disk.
pub const TORN_WRITE_SECTOR_KEPT_PROBABILITY: f64 = 0.5;
/// In independent writeback, the probability that a pending truncation reaches the disk.
pub const INDEPENDENT_TRUNCATE_KEPT_PROBABILITY: f64 = 0.5;
/// In prefix writeback, the probability that the first dropped write is torn.
pub const PREFIX_FIRST_DROPPED_WRITE_TORN_PROBABILITY: f64 = 0.5;

/// A change to a file made since its last successful sync, kept in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PendingOperation {
    Write { offset: u64, data: Vec<u8> },
    Truncate { len: u64 },
}

/// What writeback did to a sequence of pending operations.
#[derive(Default, Debug)]
pub(super) struct Writeback {
    /// The operations, whole or torn pieces of them, that reached the disk, in order.
    pub survivors: Vec<PendingOperation>,
    pub writes_lost: u64,
    pub writes_torn: u64,
}

pub(super) fn apply(contents: &mut Vec<u8>, operation: &PendingOperation) {
    match operation {
        PendingOperation::Write { offset, data } => {
            let start = to_index(*offset);
            let end = start + data.len();
            if contents.len() < end {
                contents.resize(end, 0);
            }
            contents[start..end].copy_from_slice(data);
        }
        PendingOperation::Truncate { len } => contents.resize(to_index(*len), 0),
    }
}

pub(super) fn apply_all(contents: &mut Vec<u8>, operations: &[PendingOperation]) {
    for operation in operations {
        apply(contents, operation);
    }
}

/// Converts a file offset to a memory index; a simulated file never outgrows memory.
pub(super) fn to_index(offset: u64) -> usize {
    usize::try_from(offset).expect("a simulated file offset fits in memory")
}

/// Splits a write into pieces at the disk's sector boundaries (absolute file offsets), the units a
/// disk writes atomically.
pub(super) fn sector_pieces(offset: u64, data: &[u8]) -> Vec<PendingOperation> {
    let mut pieces = Vec::new();
    let mut start = 0usize;
    while start < data.len() {
        let position = offset + start as u64;
        let to_boundary = SECTOR_BYTES - position % SECTOR_BYTES;
        let end = (start + to_index(to_boundary)).min(data.len());
        pieces.push(PendingOperation::Write {
            offset: position,
            data: data[start..end].to_vec(),
        });
        start = end;
    }
    debug_assert_eq!(
        pieces
            .iter()
            .map(|piece| match piece {
                PendingOperation::Write { data, .. } => data.len(),
                PendingOperation::Truncate { .. } => 0,
            })
            .sum::<usize>(),
        data.len()
    );
    pieces
}

/// The prefix model: a random prefix of the operations survives, and the first dropped one, if a
/// write, may be cut after a whole number of its sectors (counted from its start). The draws are
/// exactly those of the original simulated disk, so old seeds replay the same crashes.
pub(super) fn keep_a_prefix(random: &mut StdRng, pending: &[PendingOperation]) -> Writeback {
    let kept = random.gen_range(0..=pending.len());
    let mut writeback = Writeback {
        survivors: pending[..kept].to_vec(),
        ..Writeback::default()
    };
    let dropped_writes = pending[kept..]
        .iter()
        .filter(|operation| matches!(operation, PendingOperation::Write { .. }))
        .count() as u64;
    writeback.writes_lost = dropped_writes;
    if let Some(PendingOperation::Write { offset, data }) = pending.get(kept) {
        if random.gen_bool(PREFIX_FIRST_DROPPED_WRITE_TORN_PROBABILITY) {
            let sectors = (data.len() as u64).div_ceil(SECTOR_BYTES);
            let torn_bytes = to_index(random.gen_range(0..sectors.max(1)) * SECTOR_BYTES);
            let torn_bytes = torn_bytes.min(data.len());
            if torn_bytes > 0 {
                writeback.writes_lost -= 1;
                writeback.writes_torn += 1;
                writeback.survivors.push(PendingOperation::Write {
                    offset: *offset,
                    data: data[..torn_bytes].to_vec(),
                });
            }
        }
    }
    writeback
}

/// The reordering model: each operation survives or not independently of the others, so a later
/// write may survive an earlier one lost; a write may be torn, each of its sectors surviving
/// independently. Survivors are applied in their original order.
pub(super) fn keep_independently(random: &mut StdRng, pending: &[PendingOperation]) -> Writeback {
    let mut writeback = Writeback::default();
    for operation in pending {
        match operation {
            PendingOperation::Truncate { .. } => {
                if random.gen_bool(INDEPENDENT_TRUNCATE_KEPT_PROBABILITY) {
                    writeback.survivors.push(operation.clone());
                }
            }
            PendingOperation::Write { offset, data } => {
                if random.gen_bool(INDEPENDENT_WRITE_KEPT_PROBABILITY) {
                    writeback.survivors.push(operation.clone());
                } else if random.gen_bool(INDEPENDENT_WRITE_TORN_PROBABILITY) {
                    let pieces = sector_pieces(*offset, data);
                    let total = pieces.len();
                    let kept: Vec<PendingOperation> = pieces
                        .into_iter()
                        .filter(|_| random.gen_bool(TORN_WRITE_SECTOR_KEPT_PROBABILITY))
                        .collect();
                    match kept.len() {
                        0 => writeback.writes_lost += 1,
                        count if count == total => {}
                        _ => writeback.writes_torn += 1,
                    }
                    writeback.survivors.extend(kept);
                } else {
                    writeback.writes_lost += 1;
                }
            }
        }
    }
    writeback
}
