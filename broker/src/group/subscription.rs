//! The topics a consumer group's members subscribe to, read from the consumer protocol's
//! subscription metadata they send in JoinGroup. OffsetDelete needs them: Kafka refuses to
//! delete the offsets of a topic a live member consumes.

/// The protocol type of groups whose member metadata is a consumer subscription.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics of one member's subscription metadata, or `None` if it cannot be read.
///
/// The metadata is a version (`i16`) then a `ConsumerProtocolSubscription` at that version.
/// Every version so far starts with the topics, as an `i32` count and that many `i16`-length
/// strings, and none is a flexible version, so only that prefix is read, whatever the
/// version. It is read here rather than by the protocol codec, which reserves memory for the
/// count a member claims before checking it against the bytes there are.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let (version, rest) = metadata.split_first_chunk::<2>()?;
    if i16::from_be_bytes(*version) < 0 {
        return None;
    }
    let (count, mut rest) = rest.split_first_chunk::<4>()?;
    let count = usize::try_from(i32::from_be_bytes(*count)).ok()?;
    // Each topic takes at least its two length bytes.
    if count > rest.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let (length, tail) = rest.split_first_chunk::<2>()?;
        let length = usize::try_from(i16::from_be_bytes(*length)).ok()?;
        if tail.len() < length {
            return None;
        }
        let (name, tail) = tail.split_at(length);
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        rest = tail;
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    /// The newest subscription version the protocol codec writes.
    const SUBSCRIPTION_VERSION_MAX: i16 = 3;

    fn encoded(version: i16, topics: &[&str]) -> Vec<u8> {
        let subscription = ConsumerProtocolSubscription::default().with_topics(
            topics
                .iter()
                .map(|topic| StrBytes::from_string(topic.to_string()))
                .collect(),
        );
        let mut bytes = bytes::BytesMut::new();
        bytes.extend_from_slice(&version.to_be_bytes());
        subscription.encode(&mut bytes, version).unwrap();
        bytes.to_vec()
    }

    #[test]
    fn reads_every_known_version_and_newer_ones_by_their_known_prefix() {
        for version in 0..=SUBSCRIPTION_VERSION_MAX {
            assert_eq!(
                subscribed_topics(&encoded(version, &["orders", "payments"])),
                Some(vec!["orders".to_string(), "payments".to_string()]),
                "version {version}"
            );
        }
        let mut newer = encoded(SUBSCRIPTION_VERSION_MAX, &["orders"]);
        newer[..2].copy_from_slice(&9i16.to_be_bytes());
        newer.extend_from_slice(&[0, 0, 0, 7]);
        assert_eq!(subscribed_topics(&newer), Some(vec!["orders".to_string()]));
    }

    #[test]
    fn unreadable_metadata_is_none() {
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0]), None);
        assert_eq!(subscribed_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
        // A count of two billion topics in a few bytes.
        assert_eq!(
            subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 0]),
            None
        );
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 9, b'o']), None);
        assert_eq!(subscribed_topics(&[0, 0, 0, 0, 0, 1, 0, 1, 0xff]), None);
        assert_eq!(subscribed_topics(b"subscription"), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = subscribed_topics(&bytes);
        }
    }
}
