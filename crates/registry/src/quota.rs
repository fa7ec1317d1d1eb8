//! Storage quotas per owner (the first component of a repository name:
//! `alice/web` belongs to `alice`).
//!
//! An owner's usage is the size of every distinct blob and manifest linked
//! into any of their repositories (a layer shared by two of their
//! repositories counts once; one shared with another owner counts for
//! both, since either may keep it alive), plus the bytes of their upload
//! sessions in progress, plus what their requests are writing right now.
//! Uploads (monolithic, chunked) are refused with 413 before writing when
//! the owner is already at the quota, and stopped as soon as the bytes
//! written would pass it; mounting a blob the owner does not hold yet
//! counts it too. Usage is read from disk at the start of each request, so
//! under concurrent pushes of one owner it may be over-counted briefly
//! (their in-flight bytes are seen twice), never under-counted by more than
//! what finished between two reads.

use crate::error::{RegistryError, Result};
use crate::names::RESERVED_COMPONENTS;
use crate::Registry;
use std::collections::HashSet;
use std::path::Path;

/// The owner of a repository: its first name component.
pub(crate) fn owner_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// Bytes one request is writing for an owner; counted in the owner's
/// usage until dropped.
pub(crate) struct Reservation {
    registry: Registry,
    owner: String,
    bytes: u64,
    /// Usage on disk when the request started (without this request).
    base: u64,
    limit: u64,
}

impl Reservation {
    /// Counts `n` more bytes; fails once the owner's usage would pass the quota.
    pub(crate) fn add(&mut self, n: u64) -> Result<()> {
        let total = {
            let mut inflight = self.registry.inflight();
            let v = inflight.entry(self.owner.clone()).or_default();
            *v += n;
            *v
        };
        self.bytes += n;
        if self.base + total > self.limit {
            return Err(exceeded(&self.owner, self.base + total - n, self.limit));
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut inflight = self.registry.inflight();
        if let Some(v) = inflight.get_mut(&self.owner) {
            *v = v.saturating_sub(self.bytes);
            if *v == 0 {
                inflight.remove(&self.owner);
            }
        }
    }
}

fn exceeded(owner: &str, used: u64, limit: u64) -> RegistryError {
    RegistryError::QuotaExceeded(format!(
        "registry storage quota exceeded: the images of {owner} use {used} of their {limit} bytes and this upload does not fit; delete unused images or ask an administrator for a larger quota (registry_quota_bytes)"
    ))
}

impl Registry {
    pub(crate) fn inflight(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u64>> {
        self.inner
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The quota of `owner` in bytes; `None` when unlimited.
    pub fn quota_of(&self, owner: &str) -> Option<u64> {
        let limits = self.limits();
        let q = limits
            .owner_quotas
            .get(owner)
            .copied()
            .unwrap_or(limits.quota_bytes);
        (q > 0).then_some(q)
    }

    /// Bytes stored for `owner` (see the module's accounting), without the
    /// upload session `except` and without requests in flight.
    pub async fn usage(&self, owner: &str, except: Option<&str>) -> Result<u64> {
        let repos = self.root().join("repositories").join(owner);
        let blobs = self.root().join("blobs/sha256");
        let uploads = self.uploads_dir();
        let owner = owner.to_owned();
        let except = except.map(str::to_owned);
        let used = tokio::task::spawn_blocking(move || {
            let mut digests = HashSet::new();
            if crate::names::validate_name(&owner).is_ok() {
                collect_links(&repos, &mut digests);
            }
            let mut total: u64 = digests
                .iter()
                .filter(|hex| hex.len() == 64)
                .filter_map(|hex| std::fs::metadata(blobs.join(&hex[..2]).join(hex)).ok())
                .map(|m| m.len())
                .sum();
            for entry in std::fs::read_dir(&uploads).into_iter().flatten().flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if except.as_deref() == Some(id.as_str()) {
                    continue;
                }
                let dir = entry.path();
                let belongs = std::fs::read_to_string(dir.join("repo"))
                    .is_ok_and(|repo| owner_of(&repo) == owner);
                if belongs {
                    total += std::fs::metadata(dir.join("data")).map_or(0, |m| m.len());
                }
            }
            total
        })
        .await
        .map_err(std::io::Error::other)?;
        Ok(used)
    }

    /// Starts counting a write into `repo`: `None` when its owner has no
    /// quota; refused when the owner is already at (or, with `adding`
    /// bytes, past) the quota. `credit` bytes are written free: the size of
    /// a blob the owner already holds and is sending again.
    pub(crate) async fn reserve(
        &self,
        repo: &str,
        except: Option<&str>,
        adding: u64,
        credit: u64,
    ) -> Result<Option<Reservation>> {
        let owner = owner_of(repo);
        let Some(limit) = self.quota_of(owner) else {
            return Ok(None);
        };
        let base = self.usage(owner, except).await?.saturating_sub(credit);
        let inflight = self.inflight().get(owner).copied().unwrap_or(0);
        if base + inflight + adding > limit || base + inflight >= limit {
            return Err(exceeded(owner, base + inflight, limit));
        }
        Ok(Some(Reservation {
            registry: self.clone(),
            owner: owner.to_owned(),
            bytes: 0,
            base,
            limit,
        }))
    }

    /// The size of blob `d` when `owner` already holds it in one of their
    /// repositories (sending it again adds nothing to their usage).
    pub(crate) async fn held_size(&self, owner: &str, d: &crate::Digest) -> Option<u64> {
        if !self.owner_holds(owner, d.hex()).await {
            return None;
        }
        tokio::fs::metadata(self.blob_path(d))
            .await
            .ok()
            .map(|m| m.len())
    }

    /// Whether `owner` already holds blob `hex` in one of their repositories.
    pub(crate) async fn owner_holds(&self, owner: &str, hex: &str) -> bool {
        let repos = self.root().join("repositories").join(owner);
        let hex = hex.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut digests = HashSet::new();
            collect_links(&repos, &mut digests);
            digests.contains(&hex)
        })
        .await
        .unwrap_or(false)
    }
}

/// The digests (hex) linked into the repositories at or below `dir`.
fn collect_links(dir: &Path, out: &mut HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if name == "blobs" || name == "manifests" {
            for link in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(hex) = link.file_name().into_string() {
                    out.insert(hex);
                }
            }
        } else if !RESERVED_COMPONENTS.contains(&name.as_str()) {
            collect_links(&entry.path(), out);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Digest, Limits, Registry, RegistryError};
    use bytes::Bytes;

    fn body(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        let chunks: Vec<Result<Bytes, std::io::Error>> = data
            .chunks(1000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(chunks)
    }

    fn over_quota<T: std::fmt::Debug>(r: crate::Result<T>) -> bool {
        matches!(r, Err(RegistryError::QuotaExceeded(_)))
    }

    #[tokio::test]
    async fn uploads_stop_at_the_owner_quota() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            quota_bytes: 10_000,
            owner_quotas: [("big".to_owned(), 0)].into(),
            ..Limits::default()
        };
        let r = Registry::open_with(dir.path().to_owned(), limits).unwrap();
        let a = vec![1u8; 6_000];
        let b = vec![2u8; 6_000];
        let (da, db) = (Digest::of(&a), Digest::of(&b));
        r.put_blob_stream("alice/one", &da, body(&a)).await.unwrap();
        // The same blob in another repository of hers counts once.
        r.put_blob_stream("alice/two", &da, body(&a)).await.unwrap();
        assert_eq!(r.usage("alice", None).await.unwrap(), 6_000);
        // Monolithic: stopped while writing; nothing kept.
        assert!(over_quota(
            r.put_blob_stream("alice/one", &db, body(&b)).await
        ));
        assert_eq!(r.usage("alice", None).await.unwrap(), 6_000);
        // Chunked: the session's bytes count as they arrive.
        let id = r.start_upload("alice/one").await.unwrap();
        r.append_upload("alice/one", &id, Some(0), body(&b[..3_000]))
            .await
            .unwrap();
        assert_eq!(r.usage("alice", None).await.unwrap(), 9_000);
        assert!(over_quota(
            r.finish_upload("alice/one", &id, &db, body(&b[3_000..]))
                .await
        ));
        assert_eq!(
            r.usage("alice", None).await.unwrap(),
            6_000,
            "session dropped"
        );
        // Another owner has their own quota; an override lifts it.
        r.put_blob_stream("bob/x", &db, body(&b)).await.unwrap();
        for i in 0..3u8 {
            let big = vec![i; 9_000];
            r.put_blob_stream("big/x", &Digest::of(&big), body(&big))
                .await
                .unwrap();
        }
        // Mounting a blob she does not hold yet counts too.
        assert!(over_quota(r.mount_blob("alice/one", "bob/x", &db).await));
        // At the quota, a new session is refused before any byte is sent.
        let c = vec![3u8; 4_000];
        r.put_blob_stream("alice/one", &Digest::of(&c), body(&c))
            .await
            .unwrap();
        assert_eq!(r.usage("alice", None).await.unwrap(), 10_000);
        assert!(over_quota(r.start_upload("alice/one").await));
        let e = r.start_upload("alice/two").await.unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (413, "DENIED"));
        assert!(e.to_string().contains("quota"), "{e}");
    }
}
