//! Length-prefixed frames: a big-endian `i32` size, then that many bytes.

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The smallest valid request: api key, api version and correlation id.
pub const REQUEST_HEADER_BYTES_MIN: usize = 8;

/// Why a frame could not be read.
#[derive(Debug, Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes ({limit})")]
    TooLarge { size: i64, limit: u32 },
    #[error("frame size {0} is too small to hold a request header")]
    TooSmall(i32),
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` means the peer closed the connection between frames. The size is
/// checked against `limit` before any buffer is allocated, so a hostile size cannot exhaust
/// memory.
pub async fn read_frame<R>(reader: &mut R, limit: u32) -> Result<Option<BytesMut>, FrameError>
where
    R: AsyncRead + Unpin,
{
    let mut size_bytes = [0u8; 4];
    match reader.read_exact(&mut size_bytes).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    }
    let size = i32::from_be_bytes(size_bytes);
    if size < REQUEST_HEADER_BYTES_MIN as i32 {
        return Err(FrameError::TooSmall(size));
    }
    if size as u32 > limit {
        return Err(FrameError::TooLarge {
            size: i64::from(size),
            limit,
        });
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut frame).await?;
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_frames_are_refused_before_allocation() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        let error = read_frame(&mut input, 1024).await.unwrap_err();
        assert!(matches!(
            error,
            FrameError::TooLarge {
                size: 2147483647,
                limit: 1024
            }
        ));
    }

    #[tokio::test]
    async fn negative_and_tiny_sizes_are_refused() {
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut negative, 1024).await,
            Err(FrameError::TooSmall(-1))
        ));
        let mut tiny: &[u8] = &[0, 0, 0, 2, 1, 2];
        assert!(matches!(
            read_frame(&mut tiny, 1024).await,
            Err(FrameError::TooSmall(2))
        ));
    }

    #[tokio::test]
    async fn a_whole_frame_is_read_and_a_clean_close_is_none() {
        let mut input: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        let frame = read_frame(&mut input, 1024).await.unwrap().unwrap();
        assert_eq!(&frame[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(read_frame(&mut input, 1024).await.unwrap().is_none());
    }
}
