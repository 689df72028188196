//! Which version of each API this client speaks, and the negotiation with a broker.
//!
//! The client supports a fixed range per API ([`CLIENT_API_VERSIONS`]): ranges stop before
//! the version where a request switches from topic names to topic ids, or where its shape
//! changes in a way this client does not build. At connect time the broker's ApiVersions
//! answer is intersected with these ranges and the highest common version is used.

use std::collections::BTreeMap;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiKey;

/// The inclusive version range this client can build and parse for each API it uses.
pub const CLIENT_API_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 3),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::InitProducerId, 0, 4),
];

/// The version of ApiVersions tried first; older brokers get [`API_VERSIONS_FALLBACK_VERSION`].
pub const API_VERSIONS_PREFERRED_VERSION: i16 = 3;
/// The version of ApiVersions every broker understands.
pub const API_VERSIONS_FALLBACK_VERSION: i16 = 0;

/// The version chosen for each API both sides support, keyed by API key number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    versions: BTreeMap<i16, i16>,
}

impl NegotiatedVersions {
    /// Intersects the broker's advertised ranges with [`CLIENT_API_VERSIONS`], keeping the
    /// highest common version of every API with an overlap.
    pub fn negotiate(broker_versions: &[ApiVersion]) -> NegotiatedVersions {
        let mut versions = BTreeMap::new();
        for &(api_key, client_min, client_max) in CLIENT_API_VERSIONS {
            let Some(broker) = broker_versions
                .iter()
                .find(|version| version.api_key == api_key as i16)
            else {
                continue;
            };
            let chosen = client_max.min(broker.max_version);
            if chosen >= client_min.max(broker.min_version) {
                versions.insert(api_key as i16, chosen);
            }
        }
        NegotiatedVersions { versions }
    }

    /// The negotiated version of `api_key`, or `None` when there is no overlap.
    pub fn version(&self, api_key: ApiKey) -> Option<i16> {
        self.versions.get(&(api_key as i16)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(api_key: ApiKey, min: i16, max: i16) -> ApiVersion {
        ApiVersion::default()
            .with_api_key(api_key as i16)
            .with_min_version(min)
            .with_max_version(max)
    }

    #[test]
    fn picks_the_highest_common_version() {
        let negotiated = NegotiatedVersions::negotiate(&[
            broker(ApiKey::Produce, 0, 11),
            broker(ApiKey::Fetch, 0, 17),
            broker(ApiKey::Metadata, 0, 4),
        ]);
        assert_eq!(negotiated.version(ApiKey::Produce), Some(11));
        assert_eq!(negotiated.version(ApiKey::Fetch), Some(12));
        assert_eq!(negotiated.version(ApiKey::Metadata), Some(4));
        assert_eq!(negotiated.version(ApiKey::JoinGroup), None);
    }

    #[test]
    fn no_overlap_means_unsupported() {
        let negotiated = NegotiatedVersions::negotiate(&[broker(ApiKey::Produce, 0, 2)]);
        assert_eq!(negotiated.version(ApiKey::Produce), None);
    }

    #[test]
    fn client_ranges_are_within_the_protocol_library() {
        for &(api_key, min, max) in CLIENT_API_VERSIONS {
            let valid = api_key.valid_versions();
            assert!(min <= max, "{api_key:?}");
            assert!(valid.min <= min && max <= valid.max, "{api_key:?}");
        }
    }
}
