//! Slipway's built-in reverse proxy and load balancer: routes user traffic by
//! Host and path to the healthy replicas of an app, balancing round-robin or
//! by least connections, with active and passive health checks, connection
//! draining for rollouts, TLS, upgrades (WebSocket) and per-app metrics.
//!
//! The deployer owns a [`Proxy`], feeds it [`RouteTable`]s as replicas come
//! and go, and waits on [`Proxy::wait_idle`] before stopping a replica.
#![warn(missing_docs)]

mod error;
mod forward;
mod headers;
mod health;
mod metrics;
mod pool;
mod proxy;
mod route;
mod shard;
mod sockio;
mod table;
mod threads;
mod tls;
mod upstream;

pub use error::ProxyError;
pub use metrics::{AppSnapshot, MetricsSnapshot, LATENCY_BUCKETS};
pub use proxy::{Proxy, ProxyConfig};
pub use route::{Balance, HealthCheck, HostPattern, Pool, Route, RouteTable};
pub use threads::ServeThreads;
pub use tls::{SelfSigned, TlsConfig};
pub use upstream::UpstreamStatus;

/// Body type of the proxy's answers and of requests it forwards: streamed,
/// never buffered whole.
pub type ProxyBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>;
