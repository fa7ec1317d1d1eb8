//! Manifest media types and the references a manifest makes (what must
//! exist before it is accepted, and what garbage collection keeps).

use crate::error::{RegistryError, Result};
use crate::names::Digest;
use serde_json::Value;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list (multi-platform).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index (multi-platform).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image configuration blob.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Uncompressed layer tar in a Docker schema 2 manifest.
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Gzip-compressed layer tar in a Docker schema 2 manifest.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// What a parsed manifest points at.
#[derive(Debug, Default, Clone)]
pub struct References {
    /// Config and layer blobs.
    pub blobs: Vec<Digest>,
    /// Child manifests (of an index or manifest list).
    pub manifests: Vec<Digest>,
}

/// Validates a manifest body and works out its media type (from the
/// request's `Content-Type`, else its `mediaType` field) and references.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<(String, References)> {
    let invalid = |why: &str| RegistryError::ManifestInvalid(why.to_owned());
    let json: Value =
        serde_json::from_slice(body).map_err(|e| invalid(&format!("not JSON: {e}")))?;
    if json.get("schemaVersion").and_then(Value::as_i64) != Some(2) {
        return Err(invalid(
            "only schemaVersion 2 manifests (Docker schema 2 and OCI) are accepted",
        ));
    }
    let declared = json.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| {
            [
                DOCKER_MANIFEST,
                DOCKER_MANIFEST_LIST,
                OCI_MANIFEST,
                OCI_INDEX,
            ]
            .contains(c)
        });
    let media_type = match (header, declared) {
        (_, Some(d)) if header.is_some_and(|h| h != d) => {
            return Err(invalid("Content-Type and mediaType disagree"))
        }
        (Some(h), _) => h,
        (None, Some(d)) => d,
        (None, None) if json.get("manifests").is_some() => OCI_INDEX,
        (None, None) => OCI_MANIFEST,
    };
    let digests = |list: Option<&Value>, what: &str| -> Result<Vec<Digest>> {
        let Some(list) = list else { return Ok(vec![]) };
        let list = list
            .as_array()
            .ok_or_else(|| invalid(&format!("{what} is not a list")))?;
        list.iter()
            .map(|d| descriptor_digest(Some(d), what))
            .collect()
    };
    let mut refs = References::default();
    match media_type {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            refs.blobs
                .push(descriptor_digest(json.get("config"), "config")?);
            refs.blobs.extend(digests(json.get("layers"), "layers")?);
        }
        DOCKER_MANIFEST_LIST | OCI_INDEX => {
            refs.manifests = digests(json.get("manifests"), "manifests")?;
        }
        other => {
            return Err(invalid(&format!(
                "media type {other:?} is not supported; push Docker schema 2 or OCI manifests"
            )))
        }
    }
    Ok((media_type.to_owned(), refs))
}

fn descriptor_digest(d: Option<&Value>, what: &str) -> Result<Digest> {
    let digest = d
        .and_then(|d| d.get("digest"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            RegistryError::ManifestInvalid(format!("{what}: descriptor without digest"))
        })?;
    Digest::parse(digest)
}
