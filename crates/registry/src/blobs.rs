//! Blobs: atomic content-addressed writes, per-repository links, upload
//! sessions (monolithic, chunked, cross-repository mounts) and their expiry.

use crate::error::{RegistryError, Result};
use crate::names::{validate_name, Digest};
use crate::quota::{owner_of, Reservation};
use crate::Registry;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

/// Buffer for streaming bodies to disk.
const WRITE_BUFFER: usize = 256 * 1024;

/// Upload ids are 32 lowercase hex digits; anything else is refused before
/// a path is built from it.
pub(crate) fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Removes upload sessions and temp files not touched within `ttl`.
pub(crate) fn expire_uploads_sync(dir: &Path, ttl: Duration) -> std::io::Result<usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let data = if path.is_dir() {
            path.join("data")
        } else {
            path.clone()
        };
        let touched = std::fs::metadata(&data)
            .or_else(|_| entry.metadata())
            .and_then(|m| m.modified())
            .ok();
        let stale = touched
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|age| age > ttl)
            .unwrap_or(true);
        if stale {
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed += 1;
        }
    }
    Ok(removed)
}

/// Hashes a file on disk without loading it whole.
pub(crate) fn hash_file_sync(path: &Path) -> std::io::Result<(Digest, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((Digest::from_hasher(hasher), size))
}

/// Appends `body` to `file`, hashing into `hasher` when given; fails once
/// the total (starting at `already`) passes `limit`, or once the bytes
/// written pass the owner's quota (`quota`).
async fn write_stream<S, E>(
    file: tokio::fs::File,
    mut body: S,
    mut hasher: Option<&mut Sha256>,
    already: u64,
    limit: u64,
    mut quota: Option<Reservation>,
) -> Result<u64>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut total = already;
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::BlobUploadInvalid(format!("request body failed: {e}")))?;
        total += chunk.len() as u64;
        if total > limit {
            return Err(RegistryError::TooLarge(format!(
                "blob is larger than the registry's limit of {limit} bytes"
            )));
        }
        if let Some(q) = quota.as_mut() {
            q.add(chunk.len() as u64)?;
        }
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&chunk);
        }
        out.write_all(&chunk).await?;
    }
    out.flush().await?;
    out.into_inner().sync_data().await?;
    Ok(total)
}

impl Registry {
    /// A new temp file on the registry's file system (renames stay atomic).
    pub(crate) async fn temp_file(&self) -> Result<(PathBuf, tokio::fs::File)> {
        let dir = self.uploads_dir();
        tokio::fs::create_dir_all(&dir).await?;
        let path = dir.join(format!("tmp-{}", random_id()));
        let file = tokio::fs::File::create(&path).await?;
        Ok((path, file))
    }

    /// Writes `bytes` to `path` through a temp file and a rename.
    pub(crate) async fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let (tmp, mut file) = self.temp_file().await?;
        let result = async {
            file.write_all(bytes).await?;
            file.sync_data().await?;
            drop(file);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, path).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        Ok(result?)
    }

    /// Moves a verified temp file into the blob store (or drops it when the
    /// blob is already there, refreshing that blob's age).
    pub(crate) async fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<()> {
        let path = self.blob_path(d);
        if tokio::fs::metadata(&path).await.is_ok() {
            let _ = tokio::fs::remove_file(tmp).await;
            touch(&path).await;
            return Ok(());
        }
        tokio::fs::create_dir_all(path.parent().expect("blob path has a parent")).await?;
        tokio::fs::rename(tmp, &path).await?;
        Ok(())
    }

    /// Stores small content (manifests, configs) directly.
    pub(crate) async fn put_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::of(bytes);
        let path = self.blob_path(&d);
        if tokio::fs::metadata(&path).await.is_ok() {
            touch(&path).await;
        } else {
            self.write_atomic(&path, bytes).await?;
        }
        Ok(d)
    }

    fn blob_link(&self, repo: &str, d: &Digest) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(d.hex())
    }

    /// Makes `d` readable through `repo`.
    pub(crate) async fn link_blob(&self, repo: &str, d: &Digest) -> Result<()> {
        let link = self.blob_link(repo, d);
        tokio::fs::create_dir_all(link.parent().expect("link has a parent")).await?;
        tokio::fs::write(&link, b"").await?;
        Ok(())
    }

    /// The size of blob `d` if it is stored and linked into `repo`.
    pub async fn blob_size(&self, repo: &str, d: &Digest) -> Result<Option<u64>> {
        validate_name(repo)?;
        if tokio::fs::metadata(self.blob_link(repo, d)).await.is_err() {
            return Ok(None);
        }
        match tokio::fs::metadata(self.blob_path(d)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens blob `d` of `repo` for streaming; `BLOB_UNKNOWN` when absent.
    pub async fn open_blob(&self, repo: &str, d: &Digest) -> Result<(tokio::fs::File, u64)> {
        let unknown = || RegistryError::BlobUnknown(format!("{d} is not in {repo}"));
        self.blob_size(repo, d).await?.ok_or_else(unknown)?;
        let file = tokio::fs::File::open(self.blob_path(d))
            .await
            .map_err(|_| unknown())?;
        let size = file.metadata().await?.len();
        Ok((file, size))
    }

    /// Reads a whole (small) blob, bounded by `max` bytes.
    pub(crate) async fn read_blob(&self, d: &Digest, max: usize) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|_| RegistryError::BlobUnknown(d.to_string()))?;
        if meta.len() > max as u64 {
            return Err(RegistryError::TooLarge(format!("{d} is over {max} bytes")));
        }
        Ok(tokio::fs::read(&path).await?)
    }

    /// Stores a whole blob streamed in one request, verifying its digest;
    /// on a mismatch nothing is kept.
    pub async fn put_blob_stream<S, E>(&self, repo: &str, expected: &Digest, body: S) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        validate_name(repo)?;
        let held = match self.quota_of(owner_of(repo)) {
            Some(_) => self.held_size(owner_of(repo), expected).await.unwrap_or(0),
            None => 0,
        };
        let quota = self.reserve(repo, None, 0, held).await?;
        let (tmp, file) = self.temp_file().await?;
        let mut hasher = Sha256::new();
        let written = write_stream(
            file,
            body,
            Some(&mut hasher),
            0,
            self.limits().max_blob_bytes,
            quota,
        )
        .await;
        let result = match written {
            Ok(size) if Digest::from_hasher(hasher) == *expected => Ok(size),
            Ok(_) => Err(RegistryError::DigestInvalid(format!(
                "the uploaded content does not match {expected}"
            ))),
            Err(e) => Err(e),
        };
        match result {
            Ok(size) => {
                self.commit_blob(&tmp, expected).await?;
                self.link_blob(repo, expected).await?;
                Ok(size)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// Starts an upload session for `repo`; returns its id.
    pub async fn start_upload(&self, repo: &str) -> Result<String> {
        validate_name(repo)?;
        // An owner at the quota is told before sending anything.
        drop(self.reserve(repo, None, 0, 0).await?);
        let uploads = self.uploads_dir();
        let ttl = self.limits().upload_ttl;
        // Opportunistic expiry: sessions abandoned by clients do not pile up.
        let _ = tokio::task::spawn_blocking(move || expire_uploads_sync(&uploads, ttl)).await;
        let id = random_id();
        let dir = self.upload_dir(&id);
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(dir.join("repo"), repo).await?;
        tokio::fs::write(dir.join("data"), b"").await?;
        Ok(id)
    }

    /// The data file of session `id` after checking it belongs to `repo`.
    async fn session(&self, repo: &str, id: &str) -> Result<PathBuf> {
        let unknown = || RegistryError::BlobUploadUnknown(format!("no upload {id} in {repo}"));
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        let dir = self.upload_dir(id);
        match tokio::fs::read_to_string(dir.join("repo")).await {
            Ok(owner) if owner == repo => Ok(dir.join("data")),
            _ => Err(unknown()),
        }
    }

    /// Bytes received so far by session `id`.
    pub async fn upload_size(&self, repo: &str, id: &str) -> Result<u64> {
        let data = self.session(repo, id).await?;
        Ok(tokio::fs::metadata(&data).await?.len())
    }

    /// Appends a chunk to session `id`; `start` (from `Content-Range`) must
    /// be where the upload stopped. Returns the new size.
    pub async fn append_upload<S, E>(
        &self,
        repo: &str,
        id: &str,
        start: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let data = self.session(repo, id).await?;
        let current = tokio::fs::metadata(&data).await?.len();
        if start.is_some_and(|s| s != current) {
            return Err(RegistryError::RangeInvalid(format!(
                "the upload has {current} bytes; continue from there"
            )));
        }
        // The session's own bytes count: usage without it, plus all of it.
        let mut quota = match self.reserve(repo, Some(id), current, 0).await {
            Ok(q) => q,
            Err(e) => {
                self.cancel_upload(repo, id).await.ok();
                return Err(e);
            }
        };
        if let Some(q) = quota.as_mut() {
            q.add(current)?;
        }
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&data)
            .await?;
        let limit = self.limits().max_blob_bytes;
        match write_stream(file, body, None, current, limit, quota).await {
            Ok(size) => Ok(size),
            Err(e) => {
                self.cancel_upload(repo, id).await.ok();
                Err(e)
            }
        }
    }

    /// Completes session `id` with an optional last chunk, verifying the
    /// whole blob against `digest`; a mismatch stores nothing.
    pub async fn finish_upload<S, E>(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.append_upload(repo, id, None, body).await?;
        let data = self.session(repo, id).await?;
        let path = data.clone();
        let (actual, size) = tokio::task::spawn_blocking(move || hash_file_sync(&path))
            .await
            .map_err(std::io::Error::other)??;
        if actual != *digest {
            self.cancel_upload(repo, id).await.ok();
            return Err(RegistryError::DigestInvalid(format!(
                "the uploaded content is {actual}, not {digest}"
            )));
        }
        self.commit_blob(&data, digest).await?;
        self.link_blob(repo, digest).await?;
        self.cancel_upload(repo, id).await.ok();
        Ok(size)
    }

    /// Drops session `id` and what it received.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        self.session(repo, id).await?;
        tokio::fs::remove_dir_all(self.upload_dir(id)).await?;
        Ok(())
    }

    /// Links blob `d` from repository `from` into `repo` without a transfer;
    /// `false` when `from` does not hold it (the client then uploads). The
    /// caller must have checked that the requester may read `from`.
    pub async fn mount_blob(&self, repo: &str, from: &str, d: &Digest) -> Result<bool> {
        validate_name(repo)?;
        if validate_name(from).is_err() {
            return Ok(false);
        }
        let Some(size) = self.blob_size(from, d).await? else {
            return Ok(false);
        };
        if !self.owner_holds(owner_of(repo), d.hex()).await {
            drop(self.reserve(repo, None, size, 0).await?);
        }
        touch(&self.blob_path(d)).await;
        self.link_blob(repo, d).await?;
        Ok(true)
    }
}

/// Refreshes a file's modification time (the age garbage collection reads).
pub(crate) async fn touch(path: &Path) {
    let path = path.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        std::fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()))
    })
    .await;
}
