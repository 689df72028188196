//! Which sealed segments retention deletes: a pure decision over segment sizes and timestamps.
//!
//! Like Kafka, retention deletes whole segments from the oldest on and never the active one.
//! `retention.ms` deletes a segment once its newest timestamp is older than the limit (a segment
//! without timestamps counts as infinitely old); `retention.bytes` deletes the oldest segments
//! while the log would still be at or above the limit without them.

use super::config::{LogConfig, RETENTION_UNLIMITED};

/// What retention needs to know about one sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub size_bytes: u64,
    pub max_timestamp: i64,
}

/// How many of the oldest `sealed` segments to delete, given the whole log's size.
pub fn segments_to_delete(
    sealed: &[SegmentSummary],
    log_bytes: u64,
    config: &LogConfig,
    wall_ms: i64,
) -> usize {
    let by_time = if config.retention_ms == RETENTION_UNLIMITED {
        0
    } else {
        sealed
            .iter()
            .take_while(|segment| {
                wall_ms.saturating_sub(segment.max_timestamp) > config.retention_ms
            })
            .count()
    };
    let by_size = if config.retention_bytes == RETENTION_UNLIMITED {
        0
    } else {
        let mut excess = log_bytes.saturating_sub(config.retention_bytes as u64);
        sealed
            .iter()
            .take_while(|segment| {
                let deletable = excess >= segment.size_bytes && excess > 0;
                excess = excess.saturating_sub(segment.size_bytes);
                deletable
            })
            .count()
    };
    let count = by_time.max(by_size);
    debug_assert!(count <= sealed.len());
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments() -> Vec<SegmentSummary> {
        [(100, 1_000), (100, 2_000), (100, 3_000)]
            .into_iter()
            .map(|(size_bytes, max_timestamp)| SegmentSummary {
                size_bytes,
                max_timestamp,
            })
            .collect()
    }

    #[test]
    fn deletes_by_time_from_the_oldest() {
        let config = LogConfig {
            retention_ms: 1_500,
            ..LogConfig::default()
        };
        assert_eq!(segments_to_delete(&segments(), 350, &config, 2_000), 0);
        assert_eq!(segments_to_delete(&segments(), 350, &config, 2_501), 1);
        assert_eq!(segments_to_delete(&segments(), 350, &config, 3_501), 2);
        assert_eq!(segments_to_delete(&segments(), 350, &config, 10_000), 3);
    }

    #[test]
    fn deletes_by_size_while_still_over_the_limit() {
        let config = LogConfig {
            retention_ms: RETENTION_UNLIMITED,
            retention_bytes: 200,
            ..LogConfig::default()
        };
        // 350 bytes in all (50 in the active segment): dropping one leaves 250, two leave 150.
        assert_eq!(segments_to_delete(&segments(), 350, &config, 0), 1);
        assert_eq!(segments_to_delete(&segments(), 300, &config, 0), 1);
        assert_eq!(segments_to_delete(&segments(), 299, &config, 0), 0);
        assert_eq!(segments_to_delete(&segments(), 1000, &config, 0), 3);
    }
}
