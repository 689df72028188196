//! Length-prefixed frames: a big-endian `i32` size, then that many bytes.

use bytes::{BufMut, BytesMut};
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
    let size = size as usize;
    // Read into the buffer's spare capacity: zeroing a megabyte that the socket is about to
    // overwrite costs as much as copying it. Bounded: each step reads at least one byte.
    let mut frame = BytesMut::with_capacity(size);
    while frame.len() < size {
        let wanted = size - frame.len();
        if reader.read_buf(&mut (&mut frame).limit(wanted)).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
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

    /// Hands out its input at most three bytes per read, as a socket may.
    struct Trickle<'a> {
        input: &'a [u8],
    }

    impl tokio::io::AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _context: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let length = self.input.len().min(3).min(buf.remaining());
            let (now, later) = self.input.split_at(length);
            buf.put_slice(now);
            self.input = later;
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_arriving_in_pieces_are_read_whole_and_never_run_into_the_next() {
        let mut input = Vec::new();
        for frame in [&b"first-frame"[..], &b"the-second-one"[..]] {
            input.extend_from_slice(&(frame.len() as i32).to_be_bytes());
            input.extend_from_slice(frame);
        }
        // A third frame whose sender stopped half way.
        input.extend_from_slice(&20i32.to_be_bytes());
        input.extend_from_slice(b"cut short");
        let mut reader = Trickle { input: &input };
        let first = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(&first[..], b"first-frame");
        let second = read_frame(&mut reader, 1024).await.unwrap().unwrap();
        assert_eq!(&second[..], b"the-second-one");
        match read_frame(&mut reader, 1024).await {
            Err(FrameError::Io(error)) => {
                assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof)
            }
            other => panic!("a frame cut short must be an error, got {other:?}"),
        }
    }
}
