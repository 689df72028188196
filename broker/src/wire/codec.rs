//! Request decoding and response encoding on top of `kafka-protocol`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use thiserror::Error;

use super::api_versions::supported_versions;

/// A request that decoded cleanly and whose API and version are served.
#[derive(Debug)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub body: RequestKind,
}

/// Why a frame is not a servable request. Each variant says how the connection answers it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestDecodeError {
    /// An ApiVersions request of a version newer than served: Kafka answers with a version 0
    /// response carrying UNSUPPORTED_VERSION and the served ranges, so the client can retry.
    #[error("ApiVersions version {version} is not supported")]
    ApiVersionsTooNew { version: i16, correlation_id: i32 },
    /// Any other unsupported version: the connection is closed, as Kafka does.
    #[error("{api_key:?} version {version} is not supported")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    },
    /// An API key this broker does not serve: the connection is closed.
    #[error("API key {api_key} is not served")]
    UnknownApi { api_key: i16, correlation_id: i32 },
    /// The bytes do not parse as the request they claim to be: the connection is closed.
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Decodes one request frame (without its size prefix).
pub fn decode_request(frame: BytesMut) -> Result<DecodedRequest, RequestDecodeError> {
    let mut bytes = frame.freeze();
    debug_assert!(bytes.len() >= super::frame::REQUEST_HEADER_BYTES_MIN);
    let mut peek = bytes.clone();
    let raw_api_key = peek.get_i16();
    let version = peek.get_i16();
    let correlation_id = peek.get_i32();
    let api_key = ApiKey::try_from(raw_api_key).map_err(|_| RequestDecodeError::UnknownApi {
        api_key: raw_api_key,
        correlation_id,
    })?;
    let Some(range) = supported_versions(api_key) else {
        return Err(RequestDecodeError::UnknownApi {
            api_key: raw_api_key,
            correlation_id,
        });
    };
    if version < range.min || version > range.max {
        if api_key == ApiKey::ApiVersions && version > range.max {
            return Err(RequestDecodeError::ApiVersionsTooNew {
                version,
                correlation_id,
            });
        }
        return Err(RequestDecodeError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }
    let malformed = |reason: String| RequestDecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let header = RequestHeader::decode(&mut bytes, api_key.request_header_version(version))
        .map_err(|error| malformed(format!("header: {error:#}")))?;
    let body = RequestKind::decode(api_key, &mut bytes, version)
        .map_err(|error| malformed(format!("body: {error:#}")))?;
    Ok(DecodedRequest {
        api_key,
        version,
        correlation_id,
        client_id: header
            .client_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        body,
    })
}

/// Encodes a response frame, size prefix included.
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> anyhow::Result<Bytes> {
    let mut frame = BytesMut::with_capacity(256);
    frame.put_i32(0); // The size, patched below once known.
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header.encode(&mut frame, api_key.response_header_version(version))?;
    body.encode(&mut frame, version)?;
    let size = i32::try_from(frame.len() - 4)?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}
