//! Dockerfile builds on top of the bootstrapped images.

use std::collections::HashMap;
use std::path::Path;

use bollard::image::BuildImageOptions;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::{image_exists, image_id, tar_file, ProgressEvent};
use crate::error::{Result, RuntimeError};
use crate::labels;
use crate::Runtime;

/// Options of [`build_image`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// Tag of the built image, e.g. `slipway/app-web:abc123`.
    pub tag: String,
    /// Path of the Dockerfile inside the context (default `Dockerfile`).
    pub dockerfile: Option<String>,
    /// `--build-arg` values.
    pub build_args: HashMap<String, String>,
    /// Extra labels; `io.slipway.managed=true` is always added.
    pub labels: HashMap<String, String>,
    /// Network for RUN steps (None = engine default bridge).
    pub network: Option<String>,
    /// Ignore the layer cache.
    pub no_cache: bool,
    /// Memory limit of each `RUN` container in bytes (swap included).
    pub memory_bytes: Option<i64>,
    /// CPU limit of each `RUN` container, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// The stage of a multi-stage Dockerfile to build (`--target`).
    pub target: Option<String>,
}

impl BuildOptions {
    /// Build the `Dockerfile` at the context root as `tag`.
    pub fn new(tag: impl Into<String>) -> Self {
        BuildOptions {
            tag: tag.into(),
            ..Default::default()
        }
    }
}

/// A build context tar holding only `Dockerfile` with `contents`.
pub fn dockerfile_context(contents: &str) -> Result<Bytes> {
    let io = |e| RuntimeError::io("writing the build context tar", e);
    let mut b = tar::Builder::new(Vec::new());
    tar_file(&mut b, "Dockerfile", 0o644, contents.as_bytes()).map_err(io)?;
    Ok(Bytes::from(b.into_inner().map_err(io)?))
}

/// A build context tar of directory `dir` (recursively, symlinks kept as
/// symlinks). `.dockerignore` is not interpreted.
pub async fn context_from_dir(dir: &Path) -> Result<Bytes> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        b.append_dir_all(".", &dir)
            .map_err(|e| RuntimeError::io(format!("packing build context {}", dir.display()), e))?;
        b.into_inner()
            .map(Bytes::from)
            .map_err(|e| RuntimeError::io("finishing the build context tar", e))
    })
    .await
    .map_err(|e| RuntimeError::io("packing the build context", std::io::Error::other(e)))?
}

/// Build an image from a context tar (`docker build`), streaming its log
/// lines. A failed build ends the stream with [`RuntimeError::Build`].
///
/// The context is a whole tar in memory: bollard 0.18's build call takes a
/// single body, not a stream.
pub fn build_image<'a>(
    rt: &'a Runtime,
    context: Bytes,
    opts: &BuildOptions,
) -> impl Stream<Item = Result<String>> + Send + 'a {
    let tag = opts.tag.clone();
    let options = BuildImageOptions::<String> {
        dockerfile: opts
            .dockerfile
            .clone()
            .unwrap_or_else(|| "Dockerfile".into()),
        t: opts.tag.clone(),
        buildargs: opts.build_args.clone(),
        labels: labels::with_managed(&opts.labels),
        networkmode: opts.network.clone().unwrap_or_default(),
        nocache: opts.no_cache,
        rm: true,
        forcerm: true,
        pull: false,
        memory: opts.memory_bytes.map(|m| m as u64),
        memswap: opts.memory_bytes,
        // A CFS quota over the default 100 ms period: 1.5 CPUs = 150 ms per period.
        cpuperiod: opts.nano_cpus.map(|_| 100_000),
        cpuquota: opts.nano_cpus.map(|n| (n / 10_000).max(1_000) as u64),
        target: opts.target.clone().unwrap_or_default(),
        ..Default::default()
    };
    let engine = rt.long_docker().build_image(options, None, Some(context));
    // Engine messages are fragments of text; re-split them into lines.
    futures::stream::unfold(
        (Box::pin(engine), String::new(), false, tag),
        |(mut engine, mut pending, mut done, tag)| async move {
            loop {
                if let Some(i) = pending.find('\n') {
                    let line: String = pending.drain(..=i).collect();
                    let line = line.trim_end().to_string();
                    return Some((Ok(line), (engine, pending, done, tag)));
                }
                if done {
                    if pending.is_empty() {
                        return None;
                    }
                    let line = std::mem::take(&mut pending);
                    return Some((Ok(line), (engine, pending, done, tag)));
                }
                match engine.next().await {
                    None => done = true,
                    Some(Ok(info)) => {
                        if let Some(s) = info.stream {
                            pending.push_str(&s);
                        } else if let Some(s) = info.status {
                            pending.push_str(&s);
                            pending.push('\n');
                        }
                        if let Some(msg) = info.error {
                            done = true;
                            return Some((
                                Err(RuntimeError::Build {
                                    tag: tag.clone(),
                                    message: msg,
                                }),
                                (engine, String::new(), done, tag),
                            ));
                        }
                    }
                    Some(Err(e)) => {
                        let err = match e {
                            bollard::errors::Error::DockerStreamError { error } => {
                                RuntimeError::Build {
                                    tag: tag.clone(),
                                    message: error,
                                }
                            }
                            bollard::errors::Error::DockerResponseServerError {
                                message, ..
                            } => RuntimeError::Build {
                                tag: tag.clone(),
                                message,
                            },
                            source => RuntimeError::Docker {
                                action: format!("building image `{tag}`"),
                                source,
                            },
                        };
                        // Emit what was buffered first would reorder; the error is final.
                        return Some((Err(err), (engine, String::new(), true, tag)));
                    }
                }
            }
        },
    )
}

/// Build with [`build_image`], passing every log line to `on_line`, and
/// return the new image id.
pub async fn build_image_with(
    rt: &Runtime,
    context: Bytes,
    opts: &BuildOptions,
    mut on_line: impl FnMut(&str),
) -> Result<String> {
    let mut lines = Box::pin(build_image(rt, context, opts));
    while let Some(line) = lines.next().await {
        on_line(&line?);
    }
    image_id(rt, &opts.tag).await
}

/// Check a Debian package name (and optional `=version`) before it goes into a shell command.
fn valid_package(p: &str) -> bool {
    !p.is_empty()
        && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | ':' | '=' | '~'))
}

/// The Dockerfile of a language layer: `FROM base`, then apt-get install of `packages`.
pub fn language_layer_dockerfile(base: &str, packages: &[&str]) -> Result<String> {
    if packages.is_empty() {
        return Err(RuntimeError::InvalidSpec(
            "a language layer needs at least one package".into(),
        ));
    }
    if let Some(bad) = packages.iter().find(|p| !valid_package(p)) {
        return Err(RuntimeError::InvalidSpec(format!(
            "`{bad}` is not a valid Debian package name"
        )));
    }
    Ok(format!(
        "FROM {base}\n\
         ENV DEBIAN_FRONTEND=noninteractive\n\
         RUN apt-get update && apt-get install -y --no-install-recommends {} && rm -rf /var/lib/apt/lists/*\n",
        packages.join(" ")
    ))
}

/// Build `tag` as `base` plus Debian `packages` (e.g. python3), with the
/// build's RUN step using the default bridge to reach the Debian mirror.
/// Returns the image id.
pub async fn build_language_layer(
    rt: &Runtime,
    base: &str,
    tag: &str,
    packages: &[&str],
    mut progress: impl FnMut(ProgressEvent),
) -> Result<String> {
    let dockerfile = language_layer_dockerfile(base, packages)?;
    if !image_exists(rt, base).await? {
        return Err(RuntimeError::ImageMissing {
            image: base.to_string(),
        });
    }
    progress(ProgressEvent::Stage(format!("build {tag}")));
    let mut opts = BuildOptions::new(tag);
    opts.labels
        .insert("io.slipway.image".into(), "language-layer".into());
    let id = build_image_with(rt, dockerfile_context(&dockerfile)?, &opts, |line| {
        progress(ProgressEvent::Log(line.to_string()))
    })
    .await?;
    progress(ProgressEvent::Done(id.clone()));
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::DEBIAN_IMAGE;

    #[test]
    fn language_layer_rejects_shell_injection() {
        let ok = language_layer_dockerfile(DEBIAN_IMAGE, &["python3", "ca-certificates"]).unwrap();
        assert!(ok.starts_with("FROM slipway/debian:bookworm\n"));
        assert!(
            ok.contains("apt-get install -y --no-install-recommends python3 ca-certificates &&")
        );
        assert!(language_layer_dockerfile(DEBIAN_IMAGE, &["python3; rm -rf /"]).is_err());
        assert!(language_layer_dockerfile(DEBIAN_IMAGE, &[]).is_err());
    }
}
