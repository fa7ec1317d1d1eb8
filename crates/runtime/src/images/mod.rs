//! Images without any registry.
//!
//! Slipway never pulls from public registries (only cluster agents pull
//! release images from Slipway's own, [`pull_image`]). Base images are made locally and imported through
//! the Engine API (`POST /images/create?fromSrc=-`):
//! - [`bootstrap_busybox`] packs the host's static `/bin/busybox` with its
//!   applet links and a small `/etc` into `slipway/busybox:latest` in seconds;
//! - [`bootstrap_debian`] runs `debootstrap --variant=minbase` and imports the
//!   result as `slipway/debian:bookworm`;
//! - [`build_image`] / [`build_language_layer`] build Dockerfiles on top
//!   (`FROM slipway/busybox:latest`, `FROM slipway/debian:bookworm`).

use std::collections::HashMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bollard::image::{CreateImageOptions, ListImagesOptions, RemoveImageOptions};
use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Result, RuntimeError};
use crate::labels::{self, LabelFilter};
use crate::Runtime;

mod build;
mod busybox;
mod debian;

pub use build::{
    build_image, build_image_with, build_language_layer, context_from_dir, dockerfile_context,
    language_layer_dockerfile, BuildOptions,
};
pub use busybox::{bootstrap_busybox, busybox_rootfs_tar, ensure_busybox};
pub use debian::bootstrap_debian;

/// Default tag of the busybox base image.
pub const BUSYBOX_IMAGE: &str = "slipway/busybox:latest";
/// Default tag of the Debian base image.
pub const DEBIAN_IMAGE: &str = "slipway/debian:bookworm";
/// Where `busybox-static` installs the binary that [`bootstrap_busybox`] copies.
pub const HOST_BUSYBOX: &str = "/bin/busybox";
/// Debian mirror used by [`bootstrap_debian`] when none is given.
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// PATH set in bootstrapped images.
pub(crate) const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Progress of a long image operation, for the CLI to draw (e.g. with indicatif).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A new stage begins (`debootstrap: download`, `archive`, `import`, `build`, …).
    Stage(String),
    /// Countable progress within the current stage (`total` when known).
    Step {
        /// Units done so far (files archived, bytes imported…).
        current: u64,
        /// Total units, if known.
        total: Option<u64>,
    },
    /// A line of tool output (debootstrap, docker build).
    Log(String),
    /// The operation finished; carries the image id.
    Done(String),
}

/// An image present in the local engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Image id (`sha256:…`).
    pub id: String,
    /// Tags pointing at it (`repo:tag`).
    pub tags: Vec<String>,
    /// Size in bytes.
    pub size: i64,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Image labels.
    pub labels: HashMap<String, String>,
}

/// Whether `reference` (tag or id) exists locally, so callers can bootstrap on demand.
pub async fn image_exists(rt: &Runtime, reference: &str) -> Result<bool> {
    match rt.docker().inspect_image(reference).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(source) => Err(RuntimeError::Docker {
            action: format!("inspecting image `{reference}`"),
            source,
        }),
    }
}

/// Id (`sha256:…`) of a local image.
pub async fn image_id(rt: &Runtime, reference: &str) -> Result<String> {
    rt.docker()
        .inspect_image(reference)
        .await
        .map(|i| i.id.unwrap_or_default())
        .map_err(|e| {
            RuntimeError::from_docker(
                e,
                format!("inspecting image `{reference}`"),
                "image",
                reference,
            )
        })
}

/// Local images, optionally restricted to a reference pattern (`slipway/*`,
/// `slipway/busybox`) and/or labels.
pub async fn list_images(
    rt: &Runtime,
    reference: Option<&str>,
    label: Option<&LabelFilter>,
) -> Result<Vec<ImageInfo>> {
    let mut filters = HashMap::new();
    if let Some(r) = reference {
        filters.insert("reference".to_string(), vec![r.to_string()]);
    }
    if let Some(l) = label {
        filters.insert("label".to_string(), l.to_docker());
    }
    let found = rt
        .docker()
        .list_images(Some(ListImagesOptions {
            all: false,
            filters,
            digests: false,
        }))
        .await
        .map_err(|source| RuntimeError::Docker {
            action: "listing images".into(),
            source,
        })?;
    Ok(found
        .into_iter()
        .map(|i| ImageInfo {
            id: i.id,
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            size: i.size,
            created: i.created,
            labels: i.labels,
        })
        .collect())
}

/// Remove a local image by tag or id. A missing image is not an error;
/// `force` also removes it when containers or other tags still use it.
pub async fn remove_image(rt: &Runtime, reference: &str, force: bool) -> Result<()> {
    match rt
        .docker()
        .remove_image(
            reference,
            Some(RemoveImageOptions {
                force,
                noprune: false,
            }),
            None,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(RuntimeError::from_docker(
            e,
            format!("removing image `{reference}`"),
            "image",
            reference,
        )),
    }
}

/// Split `repo[:tag]` into repository and tag (default `latest`); a colon
/// inside a registry host (`host:5000/x`) is not a tag separator.
pub fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => (&reference[..i], &reference[i + 1..]),
        _ => (reference, "latest"),
    }
}

/// Credentials for a registry pull (HTTP Basic towards the registry).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    /// The user name (a cluster node's id for Slipway's registry).
    pub username: String,
    /// The password or token (never printed: `Debug` hides it).
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Pulls `reference` (`host:port/repo:tag`) into the local engine.
///
/// This is the one exception to "Slipway never pulls": cluster agents
/// fetch release images from Slipway's own registry. The engine treats
/// registries on 127.0.0.0/8 as insecure (plain HTTP); any other registry
/// needs TLS or an `insecure-registries` entry in the engine's daemon.json.
pub async fn pull_image(rt: &Runtime, reference: &str, auth: Option<&RegistryAuth>) -> Result<()> {
    let (repo, tag) = split_reference(reference);
    let credentials = auth.map(|a| bollard::auth::DockerCredentials {
        username: Some(a.username.clone()),
        password: Some(a.password.clone()),
        serveraddress: repo.split_once('/').map(|(host, _)| host.to_string()),
        ..Default::default()
    });
    let mut stream = rt.long_docker().create_image(
        Some(CreateImageOptions {
            from_image: repo,
            tag,
            ..Default::default()
        }),
        None,
        credentials,
    );
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status {
                    tracing::debug!(%reference, %status, "pull");
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(RuntimeError::Pull {
                    image: reference.to_string(),
                    message: error,
                })
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(RuntimeError::Pull {
                    image: reference.to_string(),
                    message,
                })
            }
            Err(source) => {
                return Err(RuntimeError::Docker {
                    action: format!("pulling image `{reference}`"),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// Import a root filesystem tarball as image `tag` and return its id.
///
/// `changes` are Dockerfile instructions applied to the config (`ENV …`,
/// `CMD […]`, `LABEL …`); `LABEL io.slipway.managed=true` is always added.
/// If the tag pointed at another image before, that image is removed when
/// nothing else uses it, so repeated bootstraps leave no dangling layers.
pub async fn import_rootfs(
    rt: &Runtime,
    rootfs_tar: Bytes,
    tag: &str,
    changes: &[String],
) -> Result<String> {
    let previous = if image_exists(rt, tag).await? {
        Some(image_id(rt, tag).await?)
    } else {
        None
    };
    let (repo, tag_part) = split_reference(tag);
    let mut all_changes: Vec<&str> = changes.iter().map(String::as_str).collect();
    let managed = format!("LABEL {}=true", labels::MANAGED);
    all_changes.push(&managed);
    let mut stream = rt.long_docker().create_image(
        Some(CreateImageOptions {
            from_src: "-",
            repo,
            tag: tag_part,
            changes: all_changes,
            ..Default::default()
        }),
        Some(rootfs_tar),
        None,
    );
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(status) = info.status {
                    tracing::debug!(%tag, %status, "import");
                }
            }
            Err(bollard::errors::Error::DockerStreamError { error }) => {
                return Err(RuntimeError::Import {
                    tag: tag.to_string(),
                    message: error,
                })
            }
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(RuntimeError::Import {
                    tag: tag.to_string(),
                    message,
                })
            }
            Err(source) => {
                return Err(RuntimeError::Docker {
                    action: format!("importing image `{tag}`"),
                    source,
                })
            }
        }
    }
    let id = image_id(rt, tag).await?;
    if let Some(old) = previous.filter(|old| *old != id) {
        // Best effort: the old image may still be used by a container.
        if let Err(e) = remove_image(rt, &old, false).await {
            tracing::debug!(%old, error = %e, "kept previous image");
        }
    }
    Ok(id)
}

/// Current time for tar headers.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Append a directory entry.
pub(crate) fn tar_dir<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    uid: u64,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(now_secs());
    h.set_size(0);
    b.append_data(&mut h, format!("{path}/"), std::io::empty())
}

/// Append a regular file entry.
pub(crate) fn tar_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(now_secs());
    h.set_size(data.len() as u64);
    b.append_data(&mut h, path, data)
}

/// Append a symlink entry.
pub(crate) fn tar_symlink<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    target: &str,
) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(now_secs());
    h.set_size(0);
    b.append_link(&mut h, path, target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(
            split_reference("slipway/busybox:latest"),
            ("slipway/busybox", "latest")
        );
        assert_eq!(
            split_reference("slipway/debian"),
            ("slipway/debian", "latest")
        );
        assert_eq!(split_reference("host:5000/x"), ("host:5000/x", "latest"));
        assert_eq!(split_reference("host:5000/x:v1"), ("host:5000/x", "v1"));
    }
}
