//! Slipway's embedded image registry.
//!
//! App images built by CI are kept here rather than in an outside registry:
//! content-addressed blobs on disk, per-repository manifests and tags, served
//! over the OCI distribution API ([`router`]) so other nodes and a plain
//! `docker pull` can fetch them. [`import_from_docker`] copies an image out of
//! the local Docker Engine without any network hop; [`Registry::retain`] and
//! [`Registry::gc`] keep the disk bounded.
//!
//! Layout under the registry directory:
//! - `blobs/sha256/<2 hex>/<hex>`: every blob and manifest, by digest;
//! - `repositories/<name>/tags/<tag>`: the manifest digest a tag points at;
//! - `repositories/<name>/pushed/<tag>`: when the tag was last pushed (ns);
//! - `repositories/<name>/manifests/<hex>`: manifests of the repository
//!   (holding their media type); `repositories/<name>/blobs/<hex>`: blobs
//!   linked into the repository, so one repository cannot read another's
//!   blobs by guessing digests;
//! - `uploads/<id>/`: upload sessions in progress, and temp files.

#![warn(missing_docs)]

mod blobs;
mod error;
mod gc;
mod http;
mod import;
pub mod manifest;
mod names;
mod quota;
mod repos;

pub use error::{oci_error, RegistryError, Result};
pub use gc::GcReport;
pub use http::{catalog_response, router, Endpoint};
pub use import::import_from_docker;
pub use names::{validate_name, validate_tag, Digest, RESERVED_COMPONENTS};
pub use repos::StoredManifest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Bounds and timings of a registry; the defaults suit a server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest blob (layer) accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Largest manifest accepted, in bytes (the spec suggests 4 MiB).
    pub max_manifest_bytes: usize,
    /// Upload sessions untouched for this long are removed.
    pub upload_ttl: Duration,
    /// Garbage collection leaves blobs younger than this alone, so pushes in
    /// progress (blobs uploaded, manifest not yet) keep their layers.
    pub gc_grace: Duration,
    /// Storage each owner (a repository name's first component) may use, in
    /// bytes; 0 means unlimited. See the `quota` module for the accounting.
    pub quota_bytes: u64,
    /// Per-owner overrides of `quota_bytes` (0: unlimited).
    pub owner_quotas: std::collections::BTreeMap<String, u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_blob_bytes: 10 << 30,
            max_manifest_bytes: 4 << 20,
            upload_ttl: Duration::from_secs(24 * 3600),
            gc_grace: Duration::from_secs(3600),
            quota_bytes: 0,
            owner_quotas: Default::default(),
        }
    }
}

/// A registry on disk; cheap to clone and share between handlers.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    limits: Limits,
    /// Manifest writes take it shared, garbage collection and retention
    /// exclusively, so a sweep never races a manifest's blob check.
    lock: tokio::sync::RwLock<()>,
    /// Bytes being written right now, per owner (quota accounting).
    inflight: std::sync::Mutex<std::collections::HashMap<String, u64>>,
}

impl Registry {
    /// A registry at `dir` with default limits; directories are created on
    /// first write, so this cannot fail (the server builds it at start-up).
    pub fn new(dir: PathBuf) -> Self {
        Self::with_limits(dir, Limits::default())
    }

    /// Like [`Registry::new`] with explicit limits (tests use a zero grace).
    pub fn with_limits(dir: PathBuf, limits: Limits) -> Self {
        Registry {
            inner: Arc::new(Inner {
                root: dir,
                limits,
                lock: tokio::sync::RwLock::new(()),
                inflight: Default::default(),
            }),
        }
    }

    /// Opens (creating) the registry at `dir` and removes expired uploads.
    pub fn open(dir: PathBuf) -> Result<Self> {
        Self::open_with(dir, Limits::default())
    }

    /// [`Registry::open`] with explicit limits.
    pub fn open_with(dir: PathBuf, limits: Limits) -> Result<Self> {
        for sub in ["blobs/sha256", "repositories", "uploads"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let registry = Self::with_limits(dir, limits);
        blobs::expire_uploads_sync(&registry.uploads_dir(), registry.limits().upload_ttl)?;
        Ok(registry)
    }

    /// The directory everything lives in.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The bounds in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root().join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root().join("repositories").join(name)
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root().join("uploads")
    }
}
