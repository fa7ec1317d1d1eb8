//! Manifests, tags and the list of repositories.

use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::names::{validate_name, validate_tag, Digest, RESERVED_COMPONENTS};
use crate::Registry;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// A stored manifest as served.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its content digest.
    pub digest: Digest,
    /// Its media type (the response's `Content-Type`).
    pub media_type: String,
    /// The exact bytes pushed.
    pub body: Vec<u8>,
}

/// A reference in a manifest URL: a tag or a digest.
pub(crate) enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            validate_tag(s)?;
            Ok(Reference::Tag(s.to_owned()))
        }
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Registry {
    pub(crate) fn tag_path(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo_dir(repo).join("tags").join(tag)
    }

    pub(crate) fn pushed_path(&self, repo: &str, tag: &str) -> PathBuf {
        self.repo_dir(repo).join("pushed").join(tag)
    }

    pub(crate) fn manifest_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo).join("manifests").join(d.hex())
    }

    /// Stores a manifest under `reference` (a tag or its own digest) after
    /// checking everything it references is in `repo`. Returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Digest> {
        validate_name(repo)?;
        let reference = Reference::parse(reference)?;
        let max = self.limits().max_manifest_bytes;
        if body.len() > max {
            return Err(RegistryError::TooLarge(format!(
                "manifest is over {max} bytes"
            )));
        }
        let (media_type, refs) = manifest::parse(body, content_type)?;
        let digest = Digest::of(body);
        if let Reference::Digest(d) = &reference {
            if *d != digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "the manifest is {digest}, not {d}"
                )));
            }
        }
        let _guard = self.inner.lock.read().await;
        for blob in &refs.blobs {
            if self.blob_size(repo, blob).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(format!(
                    "{blob} is not in {repo}; push it first"
                )));
            }
        }
        for child in &refs.manifests {
            if !tokio::fs::try_exists(self.manifest_link(repo, child)).await? {
                return Err(RegistryError::ManifestBlobUnknown(format!(
                    "manifest {child} is not in {repo}; push it first"
                )));
            }
        }
        self.put_blob_bytes(body).await?;
        self.write_atomic(&self.manifest_link(repo, &digest), media_type.as_bytes())
            .await?;
        if let Reference::Tag(tag) = reference {
            self.write_atomic(&self.tag_path(repo, &tag), digest.to_string().as_bytes())
                .await?;
            self.write_atomic(
                &self.pushed_path(repo, &tag),
                now_nanos().to_string().as_bytes(),
            )
            .await?;
        }
        Ok(digest)
    }

    /// Tags `digest` (already a manifest of `repo`) as `tag`.
    pub async fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        validate_name(repo)?;
        validate_tag(tag)?;
        let link = self.manifest_link(repo, digest);
        if !tokio::fs::try_exists(&link).await? {
            return Err(RegistryError::ManifestUnknown(format!(
                "{digest} in {repo}"
            )));
        }
        self.write_atomic(&self.tag_path(repo, tag), digest.to_string().as_bytes())
            .await?;
        self.write_atomic(
            &self.pushed_path(repo, tag),
            now_nanos().to_string().as_bytes(),
        )
        .await
    }

    /// The digest `tag` points at in `repo`, if any.
    pub async fn resolve_tag(&self, repo: &str, tag: &str) -> Result<Option<Digest>> {
        validate_name(repo)?;
        validate_tag(tag)?;
        match tokio::fs::read_to_string(self.tag_path(repo, tag)).await {
            Ok(s) => Ok(Some(Digest::parse(s.trim())?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The manifest `reference` (tag or digest) of `repo`.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<StoredManifest> {
        validate_name(repo)?;
        let unknown = || RegistryError::ManifestUnknown(format!("{repo}:{reference}"));
        let digest = match Reference::parse(reference)? {
            Reference::Digest(d) => d,
            Reference::Tag(t) => self.resolve_tag(repo, &t).await?.ok_or_else(unknown)?,
        };
        let media_type = tokio::fs::read_to_string(self.manifest_link(repo, &digest))
            .await
            .map_err(|_| unknown())?;
        let body = self
            .read_blob(&digest, self.limits().max_manifest_bytes)
            .await
            .map_err(|_| unknown())?;
        Ok(StoredManifest {
            digest,
            media_type,
            body,
        })
    }

    /// Deletes a tag, or a manifest by digest together with the tags
    /// pointing at it. The blobs go at the next [`Registry::gc`].
    pub async fn delete_manifest(&self, repo: &str, reference: &str) -> Result<()> {
        validate_name(repo)?;
        let unknown = || RegistryError::ManifestUnknown(format!("{repo}:{reference}"));
        match Reference::parse(reference)? {
            Reference::Tag(tag) => {
                tokio::fs::remove_file(self.tag_path(repo, &tag))
                    .await
                    .map_err(|_| unknown())?;
                let _ = tokio::fs::remove_file(self.pushed_path(repo, &tag)).await;
            }
            Reference::Digest(d) => {
                tokio::fs::remove_file(self.manifest_link(repo, &d))
                    .await
                    .map_err(|_| unknown())?;
                for (tag, _) in self.tags_with_times(repo).await? {
                    if self.resolve_tag(repo, &tag).await? == Some(d.clone()) {
                        let _ = tokio::fs::remove_file(self.tag_path(repo, &tag)).await;
                        let _ = tokio::fs::remove_file(self.pushed_path(repo, &tag)).await;
                    }
                }
            }
        }
        Ok(())
    }

    /// The tags of `repo`, sorted; `NAME_UNKNOWN` for a repository that
    /// holds nothing.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        validate_name(repo)?;
        if !tokio::fs::try_exists(self.repo_dir(repo).join("manifests")).await? {
            return Err(RegistryError::NameUnknown(format!("no repository {repo}")));
        }
        let mut tags: Vec<String> = self
            .tags_with_times(repo)
            .await?
            .into_iter()
            .map(|(t, _)| t)
            .collect();
        tags.sort();
        Ok(tags)
    }

    /// Tags with the time they were last pushed (ns since the epoch).
    pub(crate) async fn tags_with_times(&self, repo: &str) -> Result<Vec<(String, u128)>> {
        let dir = self.repo_dir(repo).join("tags");
        let mut out = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let Ok(tag) = entry.file_name().into_string() else {
                continue;
            };
            if validate_tag(&tag).is_err() {
                continue;
            }
            let pushed = tokio::fs::read_to_string(self.pushed_path(repo, &tag))
                .await
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            out.push((tag, pushed));
        }
        Ok(out)
    }

    /// Every repository holding manifests, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let root = self.root().join("repositories");
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk_repositories(&root, "", &mut out);
            out
        })
        .await
        .map_err(std::io::Error::other)?;
        let mut found = found;
        found.sort();
        Ok(found)
    }
}

/// Collects repository names below `dir` (a directory with a `manifests`
/// subdirectory is a repository; reserved names are never descended into).
fn walk_repositories(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if RESERVED_COMPONENTS.contains(&name.as_str()) || !entry.path().is_dir() {
            continue;
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        if validate_name(&full).is_err() {
            continue;
        }
        if entry.path().join("manifests").is_dir() {
            out.push(full.clone());
        }
        walk_repositories(&entry.path(), &full, out);
    }
}
