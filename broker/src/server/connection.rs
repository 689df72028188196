//! One client connection: read a request, serve it, write the response, in order.
//!
//! Requests on one connection are served one at a time, as Kafka does: a client may pipeline
//! requests, but responses come back in request order and each request sees the effects of the
//! ones before it (an OffsetFetch after an OffsetCommit reads the committed offset).

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::broker::Broker;
use super::handlers;
use crate::io::net::TcpStream;
use crate::wire::{self, api_versions_response, FrameError, RequestDecodeError};

/// Socket read buffer per connection.
const CONNECTION_READ_BUFFER_BYTES: usize = 64 * 1024;

/// Who is on the other end, for group membership and logs.
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
}

/// Serves a connection until the client closes it, misbehaves, or the broker shuts down (the
/// request in progress is finished and answered first).
pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: Peer,
    mut shutdown: watch::Receiver<bool>,
) {
    let (reader, mut writer) = tokio::io::split(stream);
    let mut reader = BufReader::with_capacity(CONNECTION_READ_BUFFER_BYTES, reader);
    let limit = broker.config.socket_request_bytes_max;
    loop {
        let frame = tokio::select! {
            biased;
            frame = wire::read_frame(&mut reader, limit) => frame,
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::Io(error)) => {
                tracing::debug!(peer = %peer.address, %error, "connection closed");
                return;
            }
            Err(error) => {
                tracing::warn!(peer = %peer.address, %error, "closing the connection");
                return;
            }
        };
        let request = match wire::decode_request(frame) {
            Ok(request) => request,
            Err(RequestDecodeError::ApiVersionsTooNew {
                version,
                correlation_id,
            }) => {
                tracing::info!(peer = %peer.address, version, "ApiVersions version too new; answering with version 0");
                let body = ResponseKind::ApiVersions(api_versions_response(
                    ResponseError::UnsupportedVersion.code(),
                ));
                if write_response(&mut writer, ApiKey::ApiVersions, 0, correlation_id, &body)
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Err(error) => {
                tracing::warn!(peer = %peer.address, %error, "closing the connection");
                return;
            }
        };
        let (api_key, version, correlation_id) =
            (request.api_key, request.version, request.correlation_id);
        let Some(response) = handlers::handle(&broker, request, &peer).await else {
            continue; // acks=0 produce: no response.
        };
        if write_response(&mut writer, api_key, version, correlation_id, &response)
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn write_response<W>(
    writer: &mut W,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), ()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    let frame = match wire::encode_response(api_key, version, correlation_id, body) {
        Ok(frame) => frame,
        Err(error) => {
            // A response the codec cannot encode at the negotiated version is a broker bug;
            // closing the connection lets the client retry elsewhere instead of hanging.
            tracing::error!(?api_key, version, %error, "could not encode a response");
            return Err(());
        }
    };
    let written = async {
        writer.write_all(&frame).await?;
        writer.flush().await
    };
    written
        .await
        .map_err(|error| tracing::debug!(%error, "could not write a response"))
}
