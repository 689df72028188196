//! Hostile frames are errors, never a crash. Installs the production allocator, as the `skiff`
//! binary does, and feeds the decoder frames whose array lengths claim billions of elements.
#![cfg(not(madsim))]

use bytes::{BufMut, BytesMut};
use skiff::io::huge_allocation::LazyHugeAllocator;
use skiff::wire::{decode_request, RequestDecodeError};

#[global_allocator]
static ALLOCATOR: LazyHugeAllocator = LazyHugeAllocator;

/// A request header (version 1) followed by `body`.
fn frame(api_key: i16, version: i16, body: &[u8]) -> BytesMut {
    let mut frame = BytesMut::new();
    frame.put_i16(api_key);
    frame.put_i16(version);
    frame.put_i32(42); // correlation id
    frame.put_i16(4);
    frame.put_slice(b"evil");
    frame.put_slice(body);
    frame
}

#[test]
fn an_array_claiming_two_billion_topics_is_malformed() {
    // Produce v3: transactional id (null), acks, timeout, then the topic array length.
    let mut body = BytesMut::new();
    body.put_i16(-1);
    body.put_i16(1);
    body.put_i32(1000);
    body.put_i32(i32::MAX);
    let error = decode_request(frame(0, 3, &body)).unwrap_err();
    assert!(
        matches!(
            error,
            RequestDecodeError::Malformed {
                correlation_id: 42,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_fetch_claiming_two_billion_partitions_is_malformed() {
    // Fetch v4: replica id, max wait, min bytes, max bytes, isolation level, topic array with
    // one topic whose partition array claims i32::MAX entries.
    let mut body = BytesMut::new();
    body.put_i32(-1);
    body.put_i32(500);
    body.put_i32(1);
    body.put_i32(1 << 20);
    body.put_i8(0);
    body.put_i32(1);
    body.put_i16(1);
    body.put_slice(b"t");
    body.put_i32(i32::MAX);
    let error = decode_request(frame(1, 4, &body)).unwrap_err();
    assert!(
        matches!(error, RequestDecodeError::Malformed { .. }),
        "{error:?}"
    );
}

#[test]
fn garbage_after_a_valid_header_is_malformed_or_refused() {
    for seed in 0u32..200 {
        let body: Vec<u8> = (0..64u32)
            .map(|index| (index.wrapping_mul(2654435761).wrapping_add(seed * 97) >> 13) as u8)
            .collect();
        for (api_key, version) in [
            (0i16, 3i16),
            (1, 4),
            (3, 1),
            (8, 2),
            (11, 0),
            (19, 2),
            (32, 1),
        ] {
            // An error or a request are both acceptable; a panic (or an abort, which ends the
            // test process) is not.
            let decoded =
                std::panic::catch_unwind(|| decode_request(frame(api_key, version, &body)));
            assert!(
                decoded.is_ok(),
                "decoding garbage as api {api_key} v{version} panicked (seed {seed})"
            );
        }
    }
}
