//! Copying an image out of the local Docker Engine into the registry: the
//! `docker save` tar is streamed to a temp file, its config and layer tars
//! become blobs, and a Docker schema 2 manifest is written and tagged.

use crate::error::{RegistryError, Result};
use crate::manifest::{DOCKER_CONFIG, DOCKER_LAYER_TAR, DOCKER_MANIFEST};
use crate::names::{validate_name, validate_tag, Digest};
use crate::Registry;
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use slipway_runtime::Runtime;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// Bound on `manifest.json` inside a saved image.
const MAX_SAVE_MANIFEST: u64 = 4 << 20;

/// One file of the saved image, already hashed into a temp file.
struct Extracted {
    tmp: PathBuf,
    digest: Digest,
    size: u64,
}

/// What the blocking tar pass found.
#[derive(Default)]
struct Saved {
    files: HashMap<String, Extracted>,
    links: HashMap<String, String>,
    manifest: Option<Vec<u8>>,
}

/// `manifest.json` of `docker save`.
#[derive(serde::Deserialize)]
struct SaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Exports `local_ref` from the local Docker Engine and stores it as
/// `repo:tag`; returns the manifest digest (`sha256:...`). This is how CI
/// hands a freshly built image to the registry without a network hop.
///
/// Layers are stored as the uncompressed tars Docker saves (media type
/// `application/vnd.docker.image.rootfs.diff.tar`), which Docker Engine
/// 20.10 pulls; their digests equal the image's diff ids.
pub async fn import_from_docker(
    registry: &Registry,
    rt: &Runtime,
    local_ref: &str,
    repo: &str,
    tag: &str,
) -> Result<String> {
    validate_name(repo)?;
    validate_tag(tag)?;
    let (archive, mut file) = registry.temp_file().await?;
    let result = async {
        let mut export = rt.docker().export_image(local_ref);
        while let Some(chunk) = export.next().await {
            let chunk =
                chunk.map_err(|e| RegistryError::Docker(format!("exporting {local_ref}: {e}")))?;
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        drop(file);
        let uploads = registry.root().join("uploads");
        let path = archive.clone();
        let saved = tokio::task::spawn_blocking(move || extract(&path, &uploads))
            .await
            .map_err(std::io::Error::other)??;
        let stored = store(registry, repo, tag, &saved).await;
        for f in saved.files.values() {
            let _ = tokio::fs::remove_file(&f.tmp).await;
        }
        stored
    }
    .await;
    let _ = tokio::fs::remove_file(&archive).await;
    result
}

/// Stores the extracted files as blobs and writes the manifest and tag.
async fn store(registry: &Registry, repo: &str, tag: &str, saved: &Saved) -> Result<String> {
    let bad = |why: String| RegistryError::Docker(format!("unexpected docker save output: {why}"));
    let manifest = saved
        .manifest
        .as_ref()
        .ok_or_else(|| bad("no manifest.json".into()))?;
    let entries: Vec<SaveEntry> =
        serde_json::from_slice(manifest).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let entry = entries
        .first()
        .ok_or_else(|| bad("manifest.json lists no image".into()))?;
    let find = |name: &str| -> Result<&Extracted> {
        let mut name = normalize(name);
        for _ in 0..8 {
            if let Some(f) = saved.files.get(&name) {
                return Ok(f);
            }
            match saved.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Err(bad(format!("{name} is missing from the archive")))
    };
    let config = find(&entry.config)?;
    let mut layers = Vec::new();
    for layer in &entry.layers {
        layers.push(find(layer)?);
    }
    for f in std::iter::once(config).chain(layers.iter().copied()) {
        if tokio::fs::try_exists(&f.tmp).await? {
            // Moved into the store; a layer listed twice is linked only.
            registry.commit_blob(&f.tmp, &f.digest).await?;
        }
        registry.link_blob(repo, &f.digest).await?;
    }
    let descriptor = |media: &str, f: &Extracted| serde_json::json!({ "mediaType": media, "size": f.size, "digest": f.digest.to_string() });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": layers.iter().map(|l| descriptor(DOCKER_LAYER_TAR, l)).collect::<Vec<_>>(),
    });
    let body = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
    let digest = registry
        .put_manifest(repo, tag, &body, Some(DOCKER_MANIFEST))
        .await?;
    Ok(digest.to_string())
}

/// Normalises a path inside the archive (`a/../b/./c` → `b/c`).
fn normalize(path: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.join("/")
}

/// Whether an archive member can be part of the image (config or layer).
fn wanted(path: &str) -> bool {
    (!path.contains('/') && path.ends_with(".json") && path != "manifest.json")
        || path.ends_with("/layer.tar")
        || path.starts_with("blobs/sha256/")
}

/// Reads the saved archive once: hashes configs and layers into temp files
/// in `uploads`, remembers symlinks, keeps `manifest.json`.
fn extract(archive: &Path, uploads: &Path) -> std::io::Result<Saved> {
    let mut saved = Saved::default();
    let mut tar = tar::Archive::new(std::io::BufReader::new(std::fs::File::open(archive)?));
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = normalize(&entry.path()?.to_string_lossy());
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Some(target) = entry.link_name()? {
                let target = target.to_string_lossy().into_owned();
                let resolved = if kind.is_symlink() {
                    let parent = Path::new(&path).parent().unwrap_or(Path::new(""));
                    normalize(&parent.join(&target).to_string_lossy())
                } else {
                    normalize(&target)
                };
                saved.links.insert(path, resolved);
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        if path == "manifest.json" {
            if entry.size() > MAX_SAVE_MANIFEST {
                return Err(std::io::Error::other("manifest.json is too large"));
            }
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut buf)?;
            saved.manifest = Some(buf);
            continue;
        }
        if !wanted(&path) {
            continue;
        }
        let tmp = uploads.join(format!("tmp-{}", hex::encode(rand::random::<[u8; 16]>())));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = std::io::Read::read(&mut entry, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n])?;
            size += n as u64;
        }
        std::io::Write::flush(&mut out)?;
        saved.files.insert(
            path,
            Extracted {
                tmp,
                digest: Digest::from_hasher(hasher),
                size,
            },
        );
    }
    Ok(saved)
}
