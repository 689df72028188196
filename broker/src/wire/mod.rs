//! The Kafka wire protocol: framing, request decoding, response encoding, and the table of
//! API versions this broker really implements.
//!
//! ```text
//!   socket ─► frame (4-byte size, capped) ─► header + body (kafka-protocol) ─► Request
//!   Response ─► header + body ─► frame ─► socket
//! ```
//!
//! Message bodies are encoded and decoded by the `kafka-protocol` crate; this module owns what
//! the crate leaves to a broker: refusing oversized frames before allocating them, answering an
//! ApiVersions request of an unknown version as Kafka does, and advertising exact version ranges.

pub mod api_versions;
pub mod codec;
pub mod frame;

pub use api_versions::{api_versions_response, supported_versions};
pub use codec::{decode_request, encode_response, DecodedRequest, RequestDecodeError};
pub use frame::{read_frame, FrameError};
