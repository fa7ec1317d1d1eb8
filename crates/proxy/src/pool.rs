//! Keep-alive connections to one upstream: small stacks of idle HTTP/1.1
//! senders. Owning the pool (rather than using a generic client) lets the
//! proxy get a request back when a connection failed before sending it, and
//! keeps a drained upstream's sockets from outliving it.
//!
//! The idle stacks are sharded by thread: a connection's task runs on the
//! thread that opened it (thread-per-core runtimes), so handing its sender
//! only to requests on that same thread avoids cross-thread wake-ups and
//! keeps the shard's lock uncontended. Reuse is LIFO (the warmest socket).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{Builder, SendRequest};
use tokio::net::TcpStream;

use crate::shard::{self, Padded};
use crate::sockio::SockIo;
use crate::ProxyBody;

/// Why no connection could be had; the request was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect timed out")]
    Timeout,
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

/// Idle connections of one upstream.
pub(crate) struct ConnPool {
    shards: Box<[Padded<Mutex<Vec<Idle>>>]>,
    /// Idle connections kept per shard.
    max_idle: usize,
    idle_timeout: Duration,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool").finish_non_exhaustive()
    }
}

impl ConnPool {
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        ConnPool {
            shards: (0..shard::SHARDS).map(|_| Padded::default()).collect(),
            max_idle,
            idle_timeout,
        }
    }

    /// A ready sender: an idle one when alive, else a new connection.
    pub async fn checkout(
        &self,
        addr: SocketAddr,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ProxyBody>, ConnectError> {
        let shard = &self.shards[shard::index()].0;
        loop {
            let idle = shard.lock().expect("pool lock").pop();
            let Some(Idle { mut sender, since }) = idle else {
                break;
            };
            if sender.is_closed() || since.elapsed() > self.idle_timeout {
                continue;
            }
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = Builder::new().handshake(SockIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    /// Returns a sender whose exchange finished, for the next request.
    pub fn put_back(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shards[shard::index()].0.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Closes every idle connection (the upstream left the table).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            shard.0.lock().expect("pool lock").clear();
        }
    }
}
