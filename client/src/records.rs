//! Record batches: encoding what the producer sends and decoding what a fetch returns.
//!
//! ```text
//! batch = [i64 base offset][i32 length][i32 leader epoch][i8 magic=2][u32 crc32c]
//!         [i16 attributes][i32 last offset delta][i64 first ts][i64 max ts]
//!         [i64 producer id][i16 producer epoch][i32 base sequence][i32 count][records...]
//! ```
//!
//! Encoding and decoding are delegated to kafka-protocol's `RecordBatchEncoder` and
//! `RecordBatchDecoder`; this module adds the producer identity and sequence numbers, and
//! the fetch-side rules: a fetch response may end with a partial batch (ignored), a batch
//! may start before the fetch position (earlier records are skipped), and control records
//! (transaction markers) are never returned but still advance the position.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// The bytes of a batch before its `length` field: base offset and length.
pub const BATCH_LOG_OVERHEAD_BYTES: usize = 12;
/// Where `last offset delta` sits, counted from the start of the batch.
const LAST_OFFSET_DELTA_POSITION: usize = 23;
/// The smallest valid batch (a header with no records), counted from the start of the batch.
pub const BATCH_HEADER_BYTES: usize = 61;
/// The record batch format this client writes and reads.
pub const RECORD_BATCH_MAGIC: i8 = 2;

/// The idempotent producer's identity stamped on a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    /// The producer id from InitProducerId.
    pub producer_id: i64,
    /// The producer epoch from InitProducerId.
    pub producer_epoch: i16,
    /// The sequence number of the first record in the batch.
    pub base_sequence: i32,
}

/// A key and a value, either of which may be null.
pub type KeyValue = (Option<Bytes>, Option<Bytes>);

/// Encodes `records` as one uncompressed magic-2 batch with relative offsets 0..n.
pub fn encode_batch(
    records: &[KeyValue],
    timestamp_ms: i64,
    identity: Option<BatchIdentity>,
) -> Result<Bytes, String> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let (producer_id, producer_epoch, base_sequence) = match identity {
        Some(identity) => (
            identity.producer_id,
            identity.producer_epoch,
            identity.base_sequence,
        ),
        None => (NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE),
    };
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch only while offset minus sequence is
            // constant, so the sequence advances with the offset even without idempotence;
            // only the first record's sequence is written.
            sequence: base_sequence.wrapping_add(index as i32),
            timestamp: timestamp_ms,
            key: key.clone(),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: RECORD_BATCH_MAGIC,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options)
        .map_err(|error| error.to_string())?;
    let batch = buffer.freeze();
    debug_assert_eq!(
        batch_count(&batch),
        1,
        "records must form exactly one batch"
    );
    Ok(batch)
}

/// A record returned by a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedRecord {
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp in milliseconds.
    pub timestamp: i64,
    /// Its key.
    pub key: Option<Bytes>,
    /// Its value.
    pub value: Option<Bytes>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// What a fetched `records` field holds past the fetch position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchedRecords {
    /// Data records at or after the fetch position, in offset order.
    pub records: Vec<FetchedRecord>,
    /// The offset after the last complete batch, if any complete batch ended past the fetch
    /// position (it moves the position past control batches and compacted gaps).
    pub next_offset: Option<i64>,
}

/// Decodes every complete batch in `bytes`, keeping records at or after `position`.
pub fn decode_fetched(mut bytes: Bytes, position: i64) -> Result<FetchedRecords, String> {
    let mut fetched = FetchedRecords::default();
    while bytes.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let base_offset = (&bytes[0..8]).get_i64();
        let length = (&bytes[8..12]).get_i32();
        if length < 0 {
            return Err(format!("negative batch length {length}"));
        }
        let batch_bytes = BATCH_LOG_OVERHEAD_BYTES + length as usize;
        if bytes.len() < batch_bytes {
            break; // A partial batch at the end of a fetch response is normal.
        }
        if batch_bytes < BATCH_HEADER_BYTES {
            return Err(format!(
                "batch of {batch_bytes} bytes is shorter than a header"
            ));
        }
        let magic = bytes[16] as i8;
        if magic != RECORD_BATCH_MAGIC {
            return Err(format!("unsupported record batch magic {magic}"));
        }
        let last_offset_delta =
            (&bytes[LAST_OFFSET_DELTA_POSITION..LAST_OFFSET_DELTA_POSITION + 4]).get_i32();
        let mut batch = bytes.split_to(batch_bytes);
        let next_offset = base_offset + i64::from(last_offset_delta) + 1;
        if next_offset <= position {
            continue;
        }
        let record_set =
            RecordBatchDecoder::decode(&mut batch).map_err(|error| error.to_string())?;
        for record in record_set.records {
            if record.control || record.offset < position {
                continue;
            }
            fetched.records.push(FetchedRecord {
                offset: record.offset,
                timestamp: record.timestamp,
                key: record.key,
                value: record.value,
                headers: record
                    .headers
                    .into_iter()
                    .map(|(name, value): (StrBytes, Option<Bytes>)| (name.to_string(), value))
                    .collect(),
            });
        }
        fetched.next_offset = Some(next_offset);
    }
    Ok(fetched)
}

fn batch_count(mut bytes: &[u8]) -> usize {
    let mut count = 0;
    while bytes.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let length = (&bytes[8..12]).get_i32() as usize;
        bytes = &bytes[(BATCH_LOG_OVERHEAD_BYTES + length).min(bytes.len())..];
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn key_values(count: usize) -> Vec<KeyValue> {
        (0..count)
            .map(|index| {
                (
                    (index % 2 == 0).then(|| Bytes::from(format!("key-{index}"))),
                    Some(Bytes::from(format!("value-{index}"))),
                )
            })
            .collect()
    }

    /// Rewrites a batch's base offset, as a broker does when it appends it.
    fn at_offset(batch: &Bytes, base_offset: i64) -> Bytes {
        let mut bytes = BytesMut::from(&batch[..]);
        bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
        bytes.freeze()
    }

    #[test]
    fn idempotent_batch_round_trips_with_identity() {
        let identity = BatchIdentity {
            producer_id: 7,
            producer_epoch: 3,
            base_sequence: 40,
        };
        let batch = encode_batch(&key_values(5), 1_000, Some(identity)).expect("encodes");
        let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("header");
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].record_count, 5);
        assert_eq!(info[0].producer_id, 7);
        assert_eq!(info[0].producer_epoch, 3);
        assert_eq!(info[0].base_sequence, 40);
        let decoded = RecordBatchDecoder::decode(&mut batch.clone()).expect("decodes");
        let sequences: Vec<i32> = decoded
            .records
            .iter()
            .map(|record| record.sequence)
            .collect();
        assert_eq!(sequences, vec![40, 41, 42, 43, 44]);
    }

    #[test]
    fn plain_batch_is_one_batch_without_sequence() {
        let batch = encode_batch(&key_values(4), 1_000, None).expect("encodes");
        let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).expect("header");
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].base_sequence, NO_SEQUENCE);
        assert_eq!(info[0].producer_id, NO_PRODUCER_ID);
    }

    #[test]
    fn fetch_decoding_skips_records_before_the_position_and_partial_batches() {
        let first = at_offset(&encode_batch(&key_values(3), 5, None).expect("encodes"), 10);
        let second = at_offset(&encode_batch(&key_values(2), 6, None).expect("encodes"), 13);
        let mut response = BytesMut::new();
        response.extend_from_slice(&first);
        response.extend_from_slice(&second);
        response.extend_from_slice(&second[..second.len() / 2]);
        let fetched = decode_fetched(response.freeze(), 11).expect("decodes");
        let offsets: Vec<i64> = fetched.records.iter().map(|record| record.offset).collect();
        assert_eq!(offsets, vec![11, 12, 13, 14]);
        assert_eq!(fetched.next_offset, Some(15));
        assert_eq!(fetched.records[0].value, Some(Bytes::from("value-1")));
        assert_eq!(fetched.records[0].key, None);
        assert_eq!(fetched.records[1].key, Some(Bytes::from("key-2")));
    }

    #[test]
    fn fetch_decoding_of_nothing_new() {
        let batch = at_offset(&encode_batch(&key_values(3), 5, None).expect("encodes"), 0);
        let fetched = decode_fetched(batch, 3).expect("decodes");
        assert!(fetched.records.is_empty());
        assert_eq!(fetched.next_offset, None);
        assert_eq!(
            decode_fetched(Bytes::new(), 0).expect("empty"),
            FetchedRecords::default()
        );
    }
}
