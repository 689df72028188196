//! The frames brokers of one cluster exchange on their replication listeners.
//!
//! Each frame is length-prefixed like a Kafka request (a big-endian `i32` size, then the body),
//! so the same size-capped reader serves both. Bodies are hand-encoded, big-endian, and decoded
//! defensively: a frame from a confused or hostile peer yields an error and a closed
//! connection, never a panic or an allocation sized by the peer.
//!
//! ```text
//!   Hello            tag 1 · node id · kafka host · kafka port · n · n × (group · term)
//!                    (liveness and the groups the sender leads, every half second)
//!   Raft             tag 2 · from · to · n · n × (group · message · payload?)
//!   ProposeMetadata  tag 3 · from · record bytes                   (forwarded to the controller)
//!
//!   message tags: 1 RequestVote, 2 VoteResponse, 3 Append, 4 AppendResponse, 5 Heartbeat,
//!                 6 HeartbeatResponse, 7 TimeoutNow, 8 InstallSnapshot
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::consensus::{AppendResult, EntrySpan, Envelope, GroupId, Message, NodeId, Term};

/// The largest replication frame; an append carries at most
/// [`super::driver::APPEND_PAYLOAD_BYTES_MAX`] of batches per group.
pub const PEER_FRAME_BYTES_MAX: u32 = 256 * 1024 * 1024;
/// Messages in one Raft frame, and groups one hello claims to lead: bounds decoding work per
/// frame.
pub const FRAME_MESSAGES_MAX: usize = 1 << 20;
/// Host names in Hello frames.
pub const HOST_BYTES_MAX: usize = 1024;

/// One frame between brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerFrame {
    /// Who is speaking, where clients reach it, and which groups it leads in which term (so
    /// that brokers without a replica of a partition can still name its leader); sent on
    /// connecting and then periodically.
    Hello {
        node_id: NodeId,
        kafka_host: String,
        kafka_port: u16,
        leading: Vec<(GroupId, Term)>,
    },
    /// Raft messages for many groups, each `Append` with the record batches of its span.
    Raft {
        envelope: Envelope,
        payloads: Vec<Option<Bytes>>,
    },
    /// A metadata record for the controller to propose (a topic created through another broker).
    ProposeMetadata { from: NodeId, record: Bytes },
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerWireError {
    #[error("frame ends early")]
    Truncated,
    #[error("unknown frame tag {0}")]
    UnknownFrame(u8),
    #[error("unknown message tag {0}")]
    UnknownMessage(u8),
    #[error("frame declares {0} messages, more than allowed")]
    TooManyMessages(u64),
    #[error("bad field: {0}")]
    BadField(&'static str),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const FRAME_HELLO: u8 = 1;
const FRAME_RAFT: u8 = 2;
const FRAME_PROPOSE_METADATA: u8 = 3;

const MESSAGE_REQUEST_VOTE: u8 = 1;
const MESSAGE_VOTE_RESPONSE: u8 = 2;
const MESSAGE_APPEND: u8 = 3;
const MESSAGE_APPEND_RESPONSE: u8 = 4;
const MESSAGE_HEARTBEAT: u8 = 5;
const MESSAGE_HEARTBEAT_RESPONSE: u8 = 6;
const MESSAGE_TIMEOUT_NOW: u8 = 7;
const MESSAGE_INSTALL_SNAPSHOT: u8 = 8;

/// Encodes a frame with its length prefix.
pub fn encode(frame: &PeerFrame) -> Bytes {
    let mut body = BytesMut::with_capacity(64);
    body.put_i32(0);
    match frame {
        PeerFrame::Hello {
            node_id,
            kafka_host,
            kafka_port,
            leading,
        } => {
            body.put_u8(FRAME_HELLO);
            body.put_u64(*node_id);
            put_bytes(&mut body, kafka_host.as_bytes());
            body.put_u16(*kafka_port);
            body.put_u64(leading.len() as u64);
            for (group, term) in leading {
                body.put_u64(*group);
                body.put_u64(*term);
            }
        }
        PeerFrame::Raft { envelope, payloads } => {
            assert_eq!(
                envelope.messages.len(),
                payloads.len(),
                "one payload slot per message"
            );
            body.put_u8(FRAME_RAFT);
            body.put_u64(envelope.from);
            body.put_u64(envelope.to);
            body.put_u64(envelope.messages.len() as u64);
            for ((group, message), payload) in envelope.messages.iter().zip(payloads) {
                body.put_u64(*group);
                put_message(&mut body, message);
                match payload {
                    None => body.put_u8(0),
                    Some(bytes) => {
                        body.put_u8(1);
                        put_bytes(&mut body, bytes);
                    }
                }
            }
        }
        PeerFrame::ProposeMetadata { from, record } => {
            body.put_u8(FRAME_PROPOSE_METADATA);
            body.put_u64(*from);
            put_bytes(&mut body, record);
        }
    }
    let size = (body.len() - 4) as i32;
    body[..4].copy_from_slice(&size.to_be_bytes());
    body.freeze()
}

/// Decodes a frame body (without its length prefix).
pub fn decode(mut body: Bytes) -> Result<PeerFrame, PeerWireError> {
    let frame = match get_u8(&mut body)? {
        FRAME_HELLO => {
            let node_id = get_u64(&mut body)?;
            let host = get_bytes(&mut body)?;
            if host.len() > HOST_BYTES_MAX {
                return Err(PeerWireError::BadField("host name too long"));
            }
            let kafka_host = String::from_utf8(host.to_vec())
                .map_err(|_| PeerWireError::BadField("host name is not UTF-8"))?;
            let kafka_port = get_u16(&mut body)?;
            let count = get_u64(&mut body)?;
            if count > FRAME_MESSAGES_MAX as u64 {
                return Err(PeerWireError::TooManyMessages(count));
            }
            let mut leading = Vec::with_capacity((count as usize).min(body.len() / 16));
            for _ in 0..count {
                let group = get_u64(&mut body)?;
                let term = get_u64(&mut body)?;
                leading.push((group, term));
            }
            PeerFrame::Hello {
                node_id,
                kafka_host,
                kafka_port,
                leading,
            }
        }
        FRAME_RAFT => {
            let from = get_u64(&mut body)?;
            let to = get_u64(&mut body)?;
            let count = get_u64(&mut body)?;
            if count > FRAME_MESSAGES_MAX as u64 {
                return Err(PeerWireError::TooManyMessages(count));
            }
            // Each message takes at least ten bytes: the count cannot ask for more room than
            // the frame could fill.
            let mut messages = Vec::with_capacity((count as usize).min(body.len() / 10));
            let mut payloads = Vec::with_capacity(messages.capacity());
            for _ in 0..count {
                let group: GroupId = get_u64(&mut body)?;
                let message = get_message(&mut body)?;
                let payload = match get_u8(&mut body)? {
                    0 => None,
                    1 => Some(get_bytes(&mut body)?),
                    _ => return Err(PeerWireError::BadField("payload flag")),
                };
                messages.push((group, message));
                payloads.push(payload);
            }
            PeerFrame::Raft {
                envelope: Envelope { from, to, messages },
                payloads,
            }
        }
        FRAME_PROPOSE_METADATA => {
            let from = get_u64(&mut body)?;
            let record = get_bytes(&mut body)?;
            PeerFrame::ProposeMetadata { from, record }
        }
        other => return Err(PeerWireError::UnknownFrame(other)),
    };
    if !body.is_empty() {
        return Err(PeerWireError::Trailing(body.len()));
    }
    Ok(frame)
}

fn put_bytes(body: &mut BytesMut, bytes: &[u8]) {
    body.put_u32(bytes.len() as u32);
    body.put_slice(bytes);
}

fn put_span(body: &mut BytesMut, span: &Option<EntrySpan>) {
    match span {
        None => body.put_u8(0),
        Some(span) => {
            body.put_u8(1);
            body.put_u64(span.first_index);
            body.put_u64(span.last_index);
            body.put_u64(span.term);
        }
    }
}

fn put_message(body: &mut BytesMut, message: &Message) {
    match *message {
        Message::RequestVote {
            term,
            last_index,
            last_term,
            pre_vote,
            leadership_transfer,
        } => {
            body.put_u8(MESSAGE_REQUEST_VOTE);
            body.put_u64(term);
            body.put_u64(last_index);
            body.put_u64(last_term);
            body.put_u8(u8::from(pre_vote));
            body.put_u8(u8::from(leadership_transfer));
        }
        Message::VoteResponse {
            term,
            granted,
            pre_vote,
        } => {
            body.put_u8(MESSAGE_VOTE_RESPONSE);
            body.put_u64(term);
            body.put_u8(u8::from(granted));
            body.put_u8(u8::from(pre_vote));
        }
        Message::Append {
            term,
            previous_index,
            previous_term,
            ref entries,
            commit_index,
            sent_ms,
        } => {
            body.put_u8(MESSAGE_APPEND);
            body.put_u64(term);
            body.put_u64(previous_index);
            body.put_u64(previous_term);
            put_span(body, entries);
            body.put_u64(commit_index);
            body.put_u64(sent_ms);
        }
        Message::AppendResponse {
            term,
            result,
            echo_ms,
        } => {
            body.put_u8(MESSAGE_APPEND_RESPONSE);
            body.put_u64(term);
            match result {
                AppendResult::Accepted { match_index } => {
                    body.put_u8(0);
                    body.put_u64(match_index);
                }
                AppendResult::Rejected {
                    rejected_index,
                    hint_index,
                    hint_term,
                } => {
                    body.put_u8(1);
                    body.put_u64(rejected_index);
                    body.put_u64(hint_index);
                    body.put_u64(hint_term);
                }
            }
            body.put_u64(echo_ms);
        }
        Message::Heartbeat {
            term,
            commit_index,
            sent_ms,
        } => {
            body.put_u8(MESSAGE_HEARTBEAT);
            body.put_u64(term);
            body.put_u64(commit_index);
            body.put_u64(sent_ms);
        }
        Message::HeartbeatResponse { term, echo_ms } => {
            body.put_u8(MESSAGE_HEARTBEAT_RESPONSE);
            body.put_u64(term);
            body.put_u64(echo_ms);
        }
        Message::TimeoutNow { term } => {
            body.put_u8(MESSAGE_TIMEOUT_NOW);
            body.put_u64(term);
        }
        Message::InstallSnapshot {
            term,
            last_index,
            last_term,
            sent_ms,
        } => {
            body.put_u8(MESSAGE_INSTALL_SNAPSHOT);
            body.put_u64(term);
            body.put_u64(last_index);
            body.put_u64(last_term);
            body.put_u64(sent_ms);
        }
    }
}

fn get_u8(body: &mut Bytes) -> Result<u8, PeerWireError> {
    if body.remaining() < 1 {
        return Err(PeerWireError::Truncated);
    }
    Ok(body.get_u8())
}

fn get_bool(body: &mut Bytes) -> Result<bool, PeerWireError> {
    match get_u8(body)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(PeerWireError::BadField("boolean")),
    }
}

fn get_u16(body: &mut Bytes) -> Result<u16, PeerWireError> {
    if body.remaining() < 2 {
        return Err(PeerWireError::Truncated);
    }
    Ok(body.get_u16())
}

fn get_u64(body: &mut Bytes) -> Result<u64, PeerWireError> {
    if body.remaining() < 8 {
        return Err(PeerWireError::Truncated);
    }
    Ok(body.get_u64())
}

fn get_bytes(body: &mut Bytes) -> Result<Bytes, PeerWireError> {
    if body.remaining() < 4 {
        return Err(PeerWireError::Truncated);
    }
    let length = body.get_u32() as usize;
    if body.remaining() < length {
        return Err(PeerWireError::Truncated);
    }
    Ok(body.split_to(length))
}

fn get_span(body: &mut Bytes) -> Result<Option<EntrySpan>, PeerWireError> {
    if !get_bool(body)? {
        return Ok(None);
    }
    let first_index = get_u64(body)?;
    let last_index = get_u64(body)?;
    let term = get_u64(body)?;
    if first_index == 0 || first_index > last_index || term == 0 {
        return Err(PeerWireError::BadField("entry span"));
    }
    Ok(Some(EntrySpan::new(first_index, last_index, term)))
}

fn get_message(body: &mut Bytes) -> Result<Message, PeerWireError> {
    let message = match get_u8(body)? {
        MESSAGE_REQUEST_VOTE => Message::RequestVote {
            term: get_u64(body)?,
            last_index: get_u64(body)?,
            last_term: get_u64(body)?,
            pre_vote: get_bool(body)?,
            leadership_transfer: get_bool(body)?,
        },
        MESSAGE_VOTE_RESPONSE => Message::VoteResponse {
            term: get_u64(body)?,
            granted: get_bool(body)?,
            pre_vote: get_bool(body)?,
        },
        MESSAGE_APPEND => {
            let term = get_u64(body)?;
            let previous_index = get_u64(body)?;
            let previous_term = get_u64(body)?;
            let entries = get_span(body)?;
            if entries.is_some_and(|span| span.first_index != previous_index + 1) {
                return Err(PeerWireError::BadField("append entries not contiguous"));
            }
            Message::Append {
                term,
                previous_index,
                previous_term,
                entries,
                commit_index: get_u64(body)?,
                sent_ms: get_u64(body)?,
            }
        }
        MESSAGE_APPEND_RESPONSE => {
            let term = get_u64(body)?;
            let result = match get_u8(body)? {
                0 => AppendResult::Accepted {
                    match_index: get_u64(body)?,
                },
                1 => AppendResult::Rejected {
                    rejected_index: get_u64(body)?,
                    hint_index: get_u64(body)?,
                    hint_term: get_u64(body)?,
                },
                _ => return Err(PeerWireError::BadField("append result")),
            };
            Message::AppendResponse {
                term,
                result,
                echo_ms: get_u64(body)?,
            }
        }
        MESSAGE_HEARTBEAT => Message::Heartbeat {
            term: get_u64(body)?,
            commit_index: get_u64(body)?,
            sent_ms: get_u64(body)?,
        },
        MESSAGE_HEARTBEAT_RESPONSE => Message::HeartbeatResponse {
            term: get_u64(body)?,
            echo_ms: get_u64(body)?,
        },
        MESSAGE_TIMEOUT_NOW => Message::TimeoutNow {
            term: get_u64(body)?,
        },
        MESSAGE_INSTALL_SNAPSHOT => Message::InstallSnapshot {
            term: get_u64(body)?,
            last_index: get_u64(body)?,
            last_term: get_u64(body)?,
            sent_ms: get_u64(body)?,
        },
        other => return Err(PeerWireError::UnknownMessage(other)),
    };
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn body_of(frame: &PeerFrame) -> Bytes {
        encode(frame).slice(4..)
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        let span = (1u64..1000, 0u64..1000, 1u64..50)
            .prop_map(|(first, length, term)| EntrySpan::new(first, first + length, term));
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>(),
                any::<bool>()
            )
                .prop_map(
                    |(term, last_index, last_term, pre_vote, leadership_transfer)| {
                        Message::RequestVote {
                            term,
                            last_index,
                            last_term,
                            pre_vote,
                            leadership_transfer,
                        }
                    }
                ),
            (any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(term, granted, pre_vote)| {
                Message::VoteResponse {
                    term,
                    granted,
                    pre_vote,
                }
            }),
            (
                any::<u64>(),
                proptest::option::of(span),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(term, entries, previous_term, commit_index, sent_ms)| {
                    Message::Append {
                        term,
                        previous_index: entries.map_or(7, |span| span.first_index - 1),
                        previous_term,
                        entries,
                        commit_index,
                        sent_ms,
                    }
                }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, match_index, echo_ms)| {
                Message::AppendResponse {
                    term,
                    result: AppendResult::Accepted { match_index },
                    echo_ms,
                }
            }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(term, rejected_index, hint_index, hint_term)| Message::AppendResponse {
                    term,
                    result: AppendResult::Rejected {
                        rejected_index,
                        hint_index,
                        hint_term,
                    },
                    echo_ms: 3,
                }
            ),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, commit_index, sent_ms)| {
                Message::Heartbeat {
                    term,
                    commit_index,
                    sent_ms,
                }
            }),
            (any::<u64>(), any::<u64>())
                .prop_map(|(term, echo_ms)| Message::HeartbeatResponse { term, echo_ms }),
            any::<u64>().prop_map(|term| Message::TimeoutNow { term }),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(term, last_index, last_term, sent_ms)| Message::InstallSnapshot {
                    term,
                    last_index,
                    last_term,
                    sent_ms,
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn raft_frames_round_trip(
            from in any::<u64>(),
            to in any::<u64>(),
            messages in proptest::collection::vec(
                (any::<u64>(), message_strategy(), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))),
                0..20,
            ),
        ) {
            let payloads = messages.iter().map(|(_, _, payload)| payload.clone().map(Bytes::from)).collect();
            let frame = PeerFrame::Raft {
                envelope: Envelope {
                    from,
                    to,
                    messages: messages.into_iter().map(|(group, message, _)| (group, message)).collect(),
                },
                payloads,
            };
            prop_assert_eq!(decode(body_of(&frame)), Ok(frame));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(Bytes::from(bytes));
        }
    }

    #[test]
    fn hello_and_forwarded_records_round_trip() {
        let hello = PeerFrame::Hello {
            node_id: 3,
            kafka_host: "10.0.0.3".to_string(),
            kafka_port: 9092,
            leading: vec![(0, 4), (17, 2)],
        };
        assert_eq!(decode(body_of(&hello)), Ok(hello));
        let forwarded = PeerFrame::ProposeMetadata {
            from: 2,
            record: Bytes::from_static(b"{}"),
        };
        assert_eq!(decode(body_of(&forwarded)), Ok(forwarded));
    }

    #[test]
    fn truncated_and_padded_frames_are_errors() {
        let frame = body_of(&PeerFrame::Hello {
            node_id: 1,
            kafka_host: "h".to_string(),
            kafka_port: 1,
            leading: Vec::new(),
        });
        assert_eq!(
            decode(frame.slice(..frame.len() - 1)),
            Err(PeerWireError::Truncated)
        );
        let mut padded = BytesMut::from(&frame[..]);
        padded.put_u8(0);
        assert_eq!(decode(padded.freeze()), Err(PeerWireError::Trailing(1)));
    }

    #[test]
    fn a_huge_message_count_is_refused_before_allocating() {
        let mut body = BytesMut::new();
        body.put_u8(FRAME_RAFT);
        body.put_u64(1);
        body.put_u64(2);
        body.put_u64(u64::MAX);
        assert_eq!(
            decode(body.freeze()),
            Err(PeerWireError::TooManyMessages(u64::MAX))
        );
    }
}
