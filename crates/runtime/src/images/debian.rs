//! `slipway/debian`: a minimal Debian made with debootstrap and imported.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{import_rootfs, ProgressEvent, DEFAULT_DEBIAN_MIRROR, IMAGE_PATH};
use crate::error::{Result, RuntimeError};
use crate::Runtime;

/// Find the debootstrap executable (it lives in /usr/sbin, often not on a user's PATH).
fn find_debootstrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].iter().map(PathBuf::from))
        .map(|d| d.join("debootstrap"))
        .find(|p| p.is_file())
}

/// Map a debootstrap `I:` line to a stage name.
fn debootstrap_stage(line: &str) -> Option<&'static str> {
    let msg = line.strip_prefix("I: ")?;
    if msg.starts_with("Retrieving") || msg.starts_with("Validating") || msg.starts_with("Checking")
    {
        Some("debootstrap: download")
    } else if msg.starts_with("Extracting") {
        Some("debootstrap: extract")
    } else if msg.starts_with("Installing") || msg.starts_with("Unpacking") {
        Some("debootstrap: install")
    } else if msg.starts_with("Configuring") {
        Some("debootstrap: configure")
    } else {
        None
    }
}

/// Run `debootstrap --variant=minbase SUITE` into a temporary directory,
/// archive it and import it as `tag` (normally [`DEBIAN_IMAGE`]); returns the
/// image id. Needs root and `apt-get install debootstrap`; takes minutes.
pub async fn bootstrap_debian(
    rt: &Runtime,
    suite: &str,
    tag: &str,
    mirror: Option<&str>,
    mut progress: impl FnMut(ProgressEvent),
) -> Result<String> {
    let debootstrap = find_debootstrap().ok_or(RuntimeError::DebootstrapMissing)?;
    let work = tempfile::Builder::new()
        .prefix("slipway-debootstrap-")
        .tempdir_in("/var/tmp")
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| RuntimeError::io("creating a directory for debootstrap", e))?;
    let target = work.path().join("rootfs");
    let mirror = mirror.unwrap_or(DEFAULT_DEBIAN_MIRROR);

    progress(ProgressEvent::Stage("debootstrap".into()));
    let mut child = tokio::process::Command::new(&debootstrap)
        .arg("--variant=minbase")
        .arg(suite)
        .arg(&target)
        .arg(mirror)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| RuntimeError::io(format!("starting {}", debootstrap.display()), e))?;
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let mut lines = Box::pin(futures::stream::select(
        tokio_stream_lines(stdout),
        tokio_stream_lines(stderr),
    ));
    let mut tail: Vec<String> = Vec::new();
    let mut stage = "";
    while let Some(line) = lines.next().await {
        if let Some(s) = debootstrap_stage(&line) {
            if s != stage {
                stage = s;
                progress(ProgressEvent::Stage(s.to_string()));
            }
        }
        tail.push(line.clone());
        if tail.len() > 15 {
            tail.remove(0);
        }
        progress(ProgressEvent::Log(line));
    }
    let status = child
        .wait()
        .await
        .map_err(|e| RuntimeError::io("waiting for debootstrap", e))?;
    if !status.success() {
        return Err(RuntimeError::Debootstrap {
            suite: suite.to_string(),
            status: status.to_string(),
            tail: tail.join("\n"),
            log: target
                .join("debootstrap/debootstrap.log")
                .display()
                .to_string(),
        });
    }

    progress(ProgressEvent::Stage("archive".into()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let archive_root = target.clone();
    let archive = tokio::task::spawn_blocking(move || archive_rootfs(&archive_root, &tx));
    while let Some(files) = rx.recv().await {
        progress(ProgressEvent::Step {
            current: files,
            total: None,
        });
    }
    let tar = archive
        .await
        .map_err(|e| RuntimeError::io("archiving the Debian rootfs", std::io::Error::other(e)))??;

    progress(ProgressEvent::Stage("import".into()));
    progress(ProgressEvent::Step {
        current: 0,
        total: Some(tar.len() as u64),
    });
    let size = tar.len() as u64;
    let changes = [
        format!("ENV PATH={IMAGE_PATH}"),
        "ENV LANG=C.UTF-8".to_string(),
        "CMD [\"bash\"]".to_string(),
        format!("LABEL io.slipway.image=debian-{suite}"),
    ];
    let id = import_rootfs(rt, Bytes::from(tar), tag, &changes).await?;
    progress(ProgressEvent::Step {
        current: size,
        total: Some(size),
    });
    progress(ProgressEvent::Done(id.clone()));
    drop(work);
    Ok(id)
}

/// Adapt tokio's line reader into a futures Stream of lines (errors end it).
fn tokio_stream_lines<R>(lines: tokio::io::Lines<R>) -> impl Stream<Item = String> + Send
where
    R: tokio::io::AsyncBufRead + Unpin + Send,
{
    futures::stream::unfold(lines, |mut lines| async move {
        match lines.next_line().await {
            Ok(Some(line)) => Some((line, lines)),
            _ => None,
        }
    })
}

/// Tar a root filesystem directory, preserving owners, modes and symlinks,
/// leaving out the contents of `/proc`, `/sys`, `/dev` and apt caches.
/// Sends the running file count on `files` every 500 entries.
fn archive_rootfs(root: &Path, files: &tokio::sync::mpsc::UnboundedSender<u64>) -> Result<Vec<u8>> {
    const SKIP_CONTENTS: &[&str] = &[
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/cache/apt/archives",
        "var/lib/apt/lists",
    ];
    let io = |e| RuntimeError::io(format!("archiving {}", root.display()), e);
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut count: u64 = 0;
    let mut since_report = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let rel_str = rel.to_string_lossy().into_owned();
        let entries = std::fs::read_dir(&full).map_err(io)?;
        if SKIP_CONTENTS.contains(&rel_str.as_str()) {
            // Keep the directory (added by its parent) but none of its contents.
            continue;
        }
        for entry in entries {
            let entry = entry.map_err(io)?;
            let meta = entry.path().symlink_metadata().map_err(io)?;
            let child_rel = rel.join(entry.file_name());
            let ft = meta.file_type();
            if ft.is_dir() {
                b.append_path_with_name(entry.path(), &child_rel)
                    .map_err(io)?;
                stack.push(child_rel);
            } else if ft.is_file() || ft.is_symlink() {
                b.append_path_with_name(entry.path(), &child_rel)
                    .map_err(io)?;
            } else {
                // Device nodes, fifos, sockets: the engine provides /dev itself.
                continue;
            }
            count += 1;
            since_report += 1;
            if since_report == 500 {
                since_report = 0;
                let _ = files.send(count);
            }
        }
    }
    let _ = files.send(count);
    b.into_inner().map_err(io)
}
