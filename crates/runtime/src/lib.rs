//! Slipway's container runtime: the one place that talks to the Docker Engine.
//!
//! CI steps, app replicas and sandboxed code execution all run through
//! [`Runtime`]. Everything it creates is labelled `io.slipway.managed=true`
//! (see [`labels`]) so leftovers after a crash can be removed with
//! [`Runtime::cleanup`]. Images never come from a registry: [`images`] builds
//! them locally (busybox from the host binary, Debian via debootstrap, and
//! Dockerfile builds on top); the one pull ([`images::pull_image`]) is a
//! cluster agent fetching a release image from Slipway's own registry.

#![warn(missing_docs)]

use std::time::Duration;

use bollard::Docker;

pub mod cleanup;
pub mod container;
pub mod error;
pub mod host_guard;
pub mod images;
pub mod labels;
pub mod listen;
pub mod network;
pub mod spec;

pub use cleanup::CleanupReport;
pub use container::{
    secrets_archive, CollectedLogs, ContainerInfo, ContainerState, ExitStatus, LogChunk,
    LogOptions, LogStream, PublishedPort, RunOutput,
};
pub use error::{Result, RuntimeError};
pub use images::{ImageInfo, ProgressEvent, BUSYBOX_IMAGE, DEBIAN_IMAGE};
pub use labels::LabelFilter;
pub use listen::{Listening, PortCheck, PortWatch};
pub use network::ResourceInfo;
pub use spec::{
    ContainerSpec, HealthCheck, Mount, NetworkMode, PortPublish, Protocol, Resources, Security,
};

/// Timeout for the initial ping: a dead daemon should be reported quickly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout for the response headers of ordinary requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Timeout for requests the engine answers only when something finishes:
/// `wait` sends its headers when the container exits (seen on Engine 20.10),
/// and imports/builds upload large bodies first. A CI step may run for hours.
const LONG_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// A connection to the Docker Engine; cheap to clone and share.
///
/// There is exactly one implementation of the runtime, so this is a concrete
/// type rather than a trait. All container, network, volume and image
/// operations are methods on it (spread over this crate's modules).
#[derive(Debug, Clone)]
pub struct Runtime {
    docker: Docker,
    /// Same connection, without a practical timeout (wait, follow logs, build, import).
    long: Docker,
    host: String,
    /// Where [`Runtime::create_network`] takes subnets from.
    network_pool: ipnet::Ipv4Net,
}

impl Runtime {
    /// Connect to the engine named by `DOCKER_HOST` (default
    /// `unix:///var/run/docker.sock`), negotiate the API version and ping it.
    ///
    /// Fails with [`RuntimeError::Unreachable`], whose message tells how to
    /// start the daemon.
    pub async fn connect() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
        let unreachable = |source| RuntimeError::Unreachable {
            host: host.clone(),
            source,
        };
        let docker = Docker::connect_with_defaults()
            .map_err(unreachable)?
            .with_timeout(CONNECT_TIMEOUT);
        // The engine here may speak an older API than bollard's default; use
        // the highest version both sides know.
        let mut docker = docker.negotiate_version().await.map_err(unreachable)?;
        docker.ping().await.map_err(unreachable)?;
        docker.set_timeout(REQUEST_TIMEOUT);
        let long = docker.clone().with_timeout(LONG_TIMEOUT);
        tracing::debug!(%host, version = ?docker.client_version(), "connected to Docker Engine");
        Ok(Runtime {
            docker,
            long,
            host,
            network_pool: network::DEFAULT_NETWORK_POOL
                .parse()
                .expect("the default network pool is a valid subnet"),
        })
    }

    /// The address this runtime is connected to (for messages and `slipway doctor`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The underlying bollard client, for the rare call this crate does not wrap.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The client for calls that may legitimately take hours before the
    /// engine answers (wait, followed logs, builds, imports).
    pub(crate) fn long_docker(&self) -> &Docker {
        &self.long
    }

    /// Ping the engine again (health checks of a long-running server).
    pub async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|source| RuntimeError::Unreachable {
                host: self.host.clone(),
                source,
            })
    }
}
