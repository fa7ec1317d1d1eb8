//! Retention and garbage collection: keep the newest tags of a repository,
//! then mark every blob reachable from any repository's manifests and sweep
//! the rest (sparing anything younger than the grace period).

use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::names::{validate_name, Digest};
use crate::Registry;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What a garbage collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs deleted from disk.
    pub blobs_deleted: usize,
    /// Bytes those blobs held.
    pub bytes_freed: u64,
}

/// Whether `path` was modified within `grace` (unreadable counts as old).
fn is_young(path: &Path, grace: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < grace)
}

/// Digests named by the files of `dir` (manifest or blob links).
fn linked(dir: &Path) -> Vec<(Digest, std::path::PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((Digest::from_hex(&name)?, e.path()))
        })
        .collect()
}

impl Registry {
    /// The references of stored manifest `d` (empty if unreadable).
    async fn references(&self, repo: &str, d: &Digest) -> manifest::References {
        let media = tokio::fs::read_to_string(self.manifest_link(repo, d))
            .await
            .ok();
        match self.read_blob(d, self.limits().max_manifest_bytes).await {
            Ok(body) => manifest::parse(&body, media.as_deref())
                .map(|(_, r)| r)
                .unwrap_or_default(),
            Err(_) => manifest::References::default(),
        }
    }

    /// Keeps the `keep` most recently pushed tags of `repo` and deletes the
    /// others, then unlinks manifests and blobs no remaining tag reaches.
    /// Returns the deleted tags; run [`Registry::gc`] to free the space.
    pub async fn retain(&self, repo: &str, keep: usize) -> Result<Vec<String>> {
        validate_name(repo)?;
        let _guard = self.inner.lock.write().await;
        let mut tags = self.tags_with_times(repo).await?;
        tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let removed: Vec<String> = tags.iter().skip(keep).map(|(t, _)| t.clone()).collect();
        for tag in &removed {
            tokio::fs::remove_file(self.tag_path(repo, tag)).await?;
            let _ = tokio::fs::remove_file(self.pushed_path(repo, tag)).await;
        }
        // What the remaining tags reach, following indexes to their children.
        let mut manifests = HashSet::new();
        let mut blobs = HashSet::new();
        let mut todo = Vec::new();
        for (tag, _) in tags.iter().take(keep) {
            if let Some(d) = self.resolve_tag(repo, tag).await? {
                todo.push(d);
            }
        }
        while let Some(d) = todo.pop() {
            if !manifests.insert(d.clone()) {
                continue;
            }
            let refs = self.references(repo, &d).await;
            blobs.extend(refs.blobs);
            todo.extend(refs.manifests);
        }
        let grace = self.limits().gc_grace;
        let dir = self.repo_dir(repo);
        for (d, path) in linked(&dir.join("manifests")) {
            if !manifests.contains(&d) && !is_young(&path, grace) {
                tokio::fs::remove_file(&path).await?;
            }
        }
        for (d, path) in linked(&dir.join("blobs")) {
            if !blobs.contains(&d) && !is_young(&path, grace) {
                tokio::fs::remove_file(&path).await?;
            }
        }
        Ok(removed)
    }

    /// Mark and sweep: deletes every blob that no repository's manifest
    /// references, except blobs (or repository links) younger than the grace
    /// period, which belong to pushes in progress. Expired upload sessions
    /// are removed too; sessions in progress live apart and are untouched.
    pub async fn gc(&self) -> Result<GcReport> {
        let _guard = self.inner.lock.write().await;
        let grace = self.limits().gc_grace;
        let mut marked = HashSet::new();
        for repo in self.repositories().await? {
            let dir = self.repo_dir(&repo);
            for (d, _) in linked(&dir.join("manifests")) {
                let refs = self.references(&repo, &d).await;
                marked.extend(refs.blobs);
                marked.insert(d);
            }
            for (d, path) in linked(&dir.join("blobs")) {
                if is_young(&path, grace) {
                    marked.insert(d);
                }
            }
        }
        let root = self.root().to_owned();
        let ttl = self.limits().upload_ttl;
        let report = tokio::task::spawn_blocking(move || -> std::io::Result<GcReport> {
            crate::blobs::expire_uploads_sync(&root.join("uploads"), ttl)?;
            let mut report = GcReport::default();
            let Ok(prefixes) = std::fs::read_dir(root.join("blobs/sha256")) else {
                return Ok(report);
            };
            for prefix in prefixes.flatten() {
                for (d, path) in linked(&prefix.path()) {
                    if marked.contains(&d) || is_young(&path, grace) {
                        continue;
                    }
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    std::fs::remove_file(&path)?;
                    report.blobs_deleted += 1;
                    report.bytes_freed += size;
                }
            }
            Ok(report)
        })
        .await
        .map_err(std::io::Error::other)??;
        // Links to swept blobs would only answer 404 later; drop them now.
        for repo in self.repositories().await? {
            let dir = self.repo_dir(&repo);
            for sub in ["manifests", "blobs"] {
                for (d, path) in linked(&dir.join(sub)) {
                    if !tokio::fs::try_exists(self.blob_path(&d)).await? {
                        tokio::fs::remove_file(&path).await?;
                    }
                }
            }
        }
        tracing::info!(
            blobs = report.blobs_deleted,
            bytes = report.bytes_freed,
            "registry garbage collected"
        );
        Ok(report)
    }

    /// Deletes `repo` (its tags, manifests and blob links, not repositories
    /// nested below it); the space is freed by the next [`Registry::gc`].
    pub async fn delete_repository(&self, repo: &str) -> Result<()> {
        validate_name(repo)?;
        let _guard = self.inner.lock.write().await;
        let dir = self.repo_dir(repo);
        if !tokio::fs::try_exists(dir.join("manifests")).await? {
            return Err(RegistryError::NameUnknown(format!("no repository {repo}")));
        }
        for sub in ["tags", "pushed", "manifests", "blobs"] {
            match tokio::fs::remove_dir_all(dir.join(sub)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        // Remove now-empty directories up to (not including) `repositories`.
        let top = self.root().join("repositories");
        let mut current = Some(dir.as_path());
        while let Some(d) = current.filter(|d| *d != top) {
            if tokio::fs::remove_dir(d).await.is_err() {
                break;
            }
            current = d.parent();
        }
        Ok(())
    }
}
