//! Framing: how a request becomes bytes on the socket and a response frame becomes a message.
//!
//! ```text
//! request frame:  [i32 length][RequestHeader v1|v2][request body]
//! response frame: [i32 length][ResponseHeader v0|v1][response body]
//! ```
//!
//! The header version follows from the API and its version
//! (`ApiKey::request_header_version`, `ApiKey::response_header_version`): flexible versions
//! carry tagged fields in the header.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// The largest frame accepted from a broker, so a corrupt length cannot exhaust memory.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The size of the length prefix in front of every frame.
pub const FRAME_LENGTH_PREFIX_BYTES: usize = 4;

/// Why a frame could not be built or parsed; the caller adds the broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Encoding failed.
    Encode(String),
    /// Decoding failed.
    Decode(String),
}

/// Encodes a full request frame, length prefix included.
pub fn encode_request<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    body: &R,
) -> Result<Bytes, WireError> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let header_version = api_key.request_header_version(version);
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    header
        .encode(&mut buffer, header_version)
        .map_err(|error| WireError::Encode(error.to_string()))?;
    body.encode(&mut buffer, version)
        .map_err(|error| WireError::Encode(error.to_string()))?;
    let frame_bytes = buffer.len() - FRAME_LENGTH_PREFIX_BYTES;
    assert!(frame_bytes <= FRAME_BYTES_MAX, "request frame too large");
    buffer[..FRAME_LENGTH_PREFIX_BYTES].copy_from_slice(&(frame_bytes as i32).to_be_bytes());
    Ok(buffer.freeze())
}

/// The correlation id of a response frame (without its length prefix): its first four bytes.
pub fn peek_correlation_id(frame: &[u8]) -> Option<i32> {
    let bytes: [u8; 4] = frame.get(..4)?.try_into().ok()?;
    Some(i32::from_be_bytes(bytes))
}

/// Decodes a response frame (without its length prefix) into its header and body.
pub fn decode_response<R: Decodable>(
    api_key: ApiKey,
    version: i16,
    mut frame: Bytes,
) -> Result<(ResponseHeader, R), WireError> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|error| WireError::Decode(format!("header: {error}")))?;
    let body =
        R::decode(&mut frame, version).map_err(|error| WireError::Decode(error.to_string()))?;
    if frame.has_remaining() {
        tracing::debug!(
            ?api_key,
            version,
            trailing_bytes = frame.remaining(),
            "response has trailing bytes"
        );
    }
    Ok((header, body))
}

/// Encodes a response frame, length prefix included. The client never sends responses; this
/// exists for tests and for fake brokers built on this crate.
pub fn encode_response<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, WireError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buffer = BytesMut::new();
    buffer.put_i32(0);
    header
        .encode(&mut buffer, api_key.response_header_version(version))
        .map_err(|error| WireError::Encode(error.to_string()))?;
    body.encode(&mut buffer, version)
        .map_err(|error| WireError::Encode(error.to_string()))?;
    let frame_bytes = (buffer.len() - FRAME_LENGTH_PREFIX_BYTES) as i32;
    buffer[..FRAME_LENGTH_PREFIX_BYTES].copy_from_slice(&frame_bytes.to_be_bytes());
    Ok(buffer.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
    use kafka_protocol::protocol::decode_request_header_from_buffer;

    #[test]
    fn request_frame_round_trips_for_every_header_version() {
        for version in [1_i16, 8, 9, 12] {
            let request = MetadataRequest::default().with_topics(None);
            let client_id = StrBytes::from_static_str("test-client");
            let frame = encode_request(ApiKey::Metadata, version, 42, &client_id, &request)
                .expect("encodes");
            let mut frame = frame;
            let length = frame.get_i32() as usize;
            assert_eq!(length, frame.len());
            let header = decode_request_header_from_buffer(&mut frame).expect("header decodes");
            assert_eq!(header.correlation_id, 42);
            assert_eq!(header.request_api_version, version);
            assert_eq!(header.client_id.as_deref(), Some("test-client"));
            let decoded = MetadataRequest::decode(&mut frame, version).expect("body decodes");
            assert_eq!(decoded, request);
        }
    }

    #[test]
    fn response_frame_round_trips() {
        for version in [1_i16, 9, 12] {
            let response = MetadataResponse::default();
            let mut frame =
                encode_response(ApiKey::Metadata, version, 7, &response).expect("encodes");
            let length = frame.get_i32() as usize;
            assert_eq!(length, frame.len());
            assert_eq!(peek_correlation_id(&frame), Some(7));
            let (header, decoded): (ResponseHeader, MetadataResponse) =
                decode_response(ApiKey::Metadata, version, frame).expect("decodes");
            assert_eq!(header.correlation_id, 7);
            assert_eq!(decoded, response);
        }
    }
}
