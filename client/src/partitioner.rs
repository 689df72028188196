//! Choosing a partition: murmur2 of the key like the Java client, round-robin for null keys.

use std::collections::BTreeMap;

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const MULTIPLIER: u32 = 0x5bd1_e995;
    const SHIFT: u32 = 24;
    let length = data.len();
    let mut hash: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut word = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        word = word.wrapping_mul(MULTIPLIER);
        word ^= word >> SHIFT;
        word = word.wrapping_mul(MULTIPLIER);
        hash = hash.wrapping_mul(MULTIPLIER);
        hash ^= word;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        hash ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        hash ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        hash ^= u32::from(tail[0]);
        hash = hash.wrapping_mul(MULTIPLIER);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(MULTIPLIER);
    hash ^= hash >> 15;
    hash as i32
}

/// The partition of a keyed record: `toPositive(murmur2(key)) % partitions`, as in Java.
pub fn partition_for_key(key: &[u8], partition_count: i32) -> i32 {
    assert!(partition_count > 0);
    (murmur2(key) & 0x7fff_ffff) % partition_count
}

/// Round-robin over partitions for records without a key, one counter per topic, starting
/// from a seed so that simulated runs are reproducible.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    seed: u64,
    next_by_topic: BTreeMap<String, u64>,
}

impl RoundRobin {
    /// A round-robin partitioner whose first choice for every topic derives from `seed`.
    pub fn new(seed: u64) -> Self {
        RoundRobin {
            seed,
            next_by_topic: BTreeMap::new(),
        }
    }

    /// The next partition of `topic`.
    pub fn next(&mut self, topic: &str, partition_count: i32) -> i32 {
        assert!(partition_count > 0);
        let counter = self
            .next_by_topic
            .entry(topic.to_string())
            .or_insert(self.seed);
        let partition = (*counter % partition_count as u64) as i32;
        *counter = counter.wrapping_add(1);
        partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of Kafka's `UtilsTest.testMurmur2`.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                murmur2(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn keyed_partition_is_positive_hash_modulo_count() {
        // (-973932308 & 0x7fffffff) = 1173551340; 1173551340 % 10 = 0.
        assert_eq!(partition_for_key(b"21", 10), 0);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        for count in 1..20 {
            let partition = partition_for_key(b"foobar", count);
            assert!((0..count).contains(&partition));
        }
    }

    #[test]
    fn round_robin_cycles_per_topic_from_the_seed() {
        let mut round_robin = RoundRobin::new(5);
        let first: Vec<i32> = (0..4).map(|_| round_robin.next("a", 3)).collect();
        assert_eq!(first, vec![2, 0, 1, 2]);
        assert_eq!(round_robin.next("b", 3), 2);
    }
}
