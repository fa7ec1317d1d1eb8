//! The one error type of this crate: every message says what happened and what to do next.

use std::path::PathBuf;

/// Shorthand used by every fallible function of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Everything that can go wrong while Slipway drives the Docker Engine.
///
/// Messages are written for the person running Slipway: each one names the
/// object involved and suggests the next step.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The daemon could not be reached or did not answer `/_ping`.
    #[error(
        "cannot reach the Docker Engine at {host}: {source} — start it with `sudo dockerd` or \
         `systemctl start docker`, or point DOCKER_HOST at a running engine"
    )]
    Unreachable {
        /// The address that was tried (DOCKER_HOST or the default socket).
        host: String,
        /// What the client reported.
        #[source]
        source: bollard::errors::Error,
    },

    /// A container, image, network or volume does not exist.
    #[error("{kind} `{name}` does not exist — it may have been removed already; list what exists with `docker ps -a`, `docker images`, `docker network ls` or `docker volume ls`")]
    NotFound {
        /// "container", "image", "network" or "volume".
        kind: &'static str,
        /// The id or name that was looked up.
        name: String,
    },

    /// The image a container needs is not present locally (Slipway never pulls).
    #[error("image `{image}` is not present in the local Docker Engine and Slipway never pulls from registries — bootstrap it (slipway/busybox, slipway/debian) or build it from a Dockerfile first")]
    ImageMissing {
        /// The image reference that was asked for.
        image: String,
    },

    /// The engine refused because of a name clash or an object in use.
    #[error("conflict while {action}: {message} — pick another name, or remove the existing object (run cleanup for Slipway leftovers)")]
    Conflict {
        /// What Slipway was doing.
        action: String,
        /// The engine's message.
        message: String,
    },

    /// Any other error answered by the engine.
    #[error("the Docker Engine failed while {action}: {source} — check `journalctl -u docker` or the dockerd log for details")]
    Docker {
        /// What Slipway was doing.
        action: String,
        /// What the client reported.
        #[source]
        source: bollard::errors::Error,
    },

    /// A container specification cannot be turned into a valid request.
    #[error("invalid container spec: {0} — fix the spec and try again")]
    InvalidSpec(String),

    /// A published port was asked for, but the engine reports no host binding for it.
    #[error("container `{container}` has no host port published for {port} — publish it in the ContainerSpec and make sure the container is running")]
    PortNotPublished {
        /// The container id or name.
        container: String,
        /// The container port, e.g. `8080/tcp`.
        port: String,
    },

    /// `docker build` (or a layer build) reported an error.
    #[error("building image `{tag}` failed: {message} — read the build log lines above and fix the Dockerfile or its context")]
    Build {
        /// The tag being built.
        tag: String,
        /// The engine's error message.
        message: String,
    },

    /// Importing a root filesystem tarball failed.
    #[error("importing the root filesystem as `{tag}` failed: {message} — check that the Docker Engine has free disk space (`docker system df`)")]
    Import {
        /// The tag being imported.
        tag: String,
        /// The engine's error message.
        message: String,
    },

    /// Pulling an image from a registry failed (cluster agents pull from
    /// Slipway's own registry).
    #[error("pulling {image} failed: {message} — check that this machine reaches the registry (a remote registry needs TLS, or an `insecure-registries` entry in the engine's daemon.json) and that the credentials are current")]
    Pull {
        /// The image reference that was pulled.
        image: String,
        /// The engine's or the registry's message.
        message: String,
    },

    /// The busybox binary used to bootstrap `slipway/busybox` is missing or unusable.
    #[error("cannot use {path} to bootstrap the busybox image: {reason} — install a static busybox with `apt-get install busybox-static`")]
    Busybox {
        /// Path that was read.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },

    /// `debootstrap` is not installed on the host.
    #[error("debootstrap is not installed — install it with `apt-get install debootstrap` (it is needed only to bootstrap slipway/debian)")]
    DebootstrapMissing,

    /// `debootstrap` ran but failed.
    #[error("debootstrap of `{suite}` failed ({status}): {tail} — check network access to the Debian mirror and that Slipway runs as root; the full log is in {log}")]
    Debootstrap {
        /// Debian suite, e.g. `bookworm`.
        suite: String,
        /// Exit status as text.
        status: String,
        /// Last lines of its output.
        tail: String,
        /// Where debootstrap kept its own log (inside the target dir).
        log: String,
    },

    /// A local file operation (reading busybox, writing a tarball…) failed.
    #[error("{action}: {source} — check the path exists and Slipway may read/write it")]
    Io {
        /// What Slipway was doing.
        action: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// Map a bollard error to the most useful variant for `action` on the
    /// object `kind`/`name` (used for 404 and 409 answers).
    pub(crate) fn from_docker(
        err: bollard::errors::Error,
        action: impl Into<String>,
        kind: &'static str,
        name: &str,
    ) -> Self {
        use bollard::errors::Error as E;
        match err {
            E::DockerResponseServerError {
                status_code: 404, ..
            } => RuntimeError::NotFound {
                kind,
                name: name.to_string(),
            },
            E::DockerResponseServerError {
                status_code: 409,
                message,
            } => RuntimeError::Conflict {
                action: action.into(),
                message,
            },
            source => RuntimeError::Docker {
                action: action.into(),
                source,
            },
        }
    }

    /// Wrap an I/O error with what Slipway was doing.
    pub(crate) fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            action: action.into(),
            source,
        }
    }

    /// True when the error means the object is already gone (useful for idempotent cleanup).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RuntimeError::NotFound { .. })
    }
}
