//! The network seam: TCP listeners and streams.
//!
//! `tokio::net` here is real tokio in production and madsim's simulated network under
//! `--cfg madsim` (madsim-tokio swaps it at build time). Streams are split with
//! `tokio::io::split`, which works on both, and writers must `flush`: the simulated stream holds
//! written bytes until then.

pub use tokio::net::{TcpListener, TcpStream};

use std::io;
use std::net::SocketAddr;

/// Binds a listener.
pub async fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Connects to a peer.
pub async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
    TcpStream::connect(address).await
}
