//! One job in one throw-away container.
//!
//! Per run: a tmpfs-backed Docker volume (size-capped, in RAM, owned by uid
//! 1000) is mounted at `/work`; the container has a read-only root, no
//! network, no capabilities, no-new-privileges, Docker's default seccomp, a
//! pids limit, a memory limit and a small `/tmp` tmpfs. The job's files are
//! uploaded as a tar once the container runs (Engine 20.10 cannot upload into a
//! plain tmpfs mount, but can into a volume), the wrapper script compiles and
//! runs with `ulimit -t`/`-f` and `timeout`, and the results are downloaded
//! before container and volume are removed. Nothing is shared between jobs.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use bollard::container::{DownloadFromContainerOptions, UploadToContainerOptions};
use bollard::volume::{CreateVolumeOptions, RemoveVolumeOptions};
use bytes::Bytes;
use futures::StreamExt;
use slipway_runtime::labels::{self, OWNER};
use slipway_runtime::{ContainerSpec, LogOptions, Runtime, Security};
use tokio_util::sync::CancellationToken;

use crate::model::{signal_name, JobResult, PhaseResult};
use crate::runtimes::RuntimeDef;

/// Label carrying the server instance that owns a sandbox (for crash cleanup).
pub const INSTANCE_LABEL: &str = "io.slipway.exec.instance";
/// Label carrying the job id of a sandbox.
pub const JOB_LABEL: &str = "io.slipway.exec.job";
/// Printed by the wrapper when both phases are recorded.
const DONE_MARKER: &str = "SLIPWAY-EXEC-DONE";
/// The wrapper script uploaded with every job.
const WRAPPER: &str = include_str!("wrapper.sh");
/// Largest result tar read back from a sandbox.
const MAX_DOWNLOAD: usize = 64 * 1024 * 1024;

/// Limits of one run, already checked against the server's maxima.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-time limit of the compile step.
    pub compile_timeout_ms: u64,
    /// Wall-time limit of the run.
    pub run_timeout_ms: u64,
    /// Memory limit of the container (tmpfs pages count too).
    pub memory_bytes: i64,
    /// Maximum number of processes and threads.
    pub pids: i64,
    /// Bytes of stdout and of stderr kept per phase.
    pub output_cap: usize,
    /// Size of the `/work` volume.
    pub work_bytes: i64,
    /// Size of `/tmp`.
    pub tmp_bytes: i64,
    /// Largest file a program may write (stdout included), in bytes.
    pub max_file_bytes: u64,
}

/// What a sandboxed run produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Phase results (or a platform error).
    pub result: JobResult,
    /// `output.zip` of the files written to `/work/output`, if any.
    pub output_zip: Option<Vec<u8>>,
    /// The run was cancelled before it finished.
    pub cancelled: bool,
}

/// One job's input to [`run`].
pub struct Input<'a> {
    /// Unique name of this attempt (container and volume name).
    pub name: String,
    /// Job id, for labels.
    pub job_id: &'a str,
    /// Server instance id, for labels.
    pub instance: &'a str,
    /// The language runtime.
    pub def: &'a RuntimeDef,
    /// Files as (name, contents); names already validated.
    pub files: Vec<(String, Vec<u8>)>,
    /// Standard input of the run.
    pub stdin: &'a [u8],
    /// Arguments of the run.
    pub args: &'a [String],
    /// Limits.
    pub limits: Limits,
}

/// Run one job to completion (or timeout/cancel) and clean up after it.
pub async fn run(rt: &Runtime, input: Input<'_>, cancel: &CancellationToken) -> Outcome {
    let name = input.name.clone();
    let result = run_inner(rt, &input, cancel).await;
    if let Err(e) = rt.remove(&name).await {
        tracing::warn!(container = %name, error = %e, "could not remove sandbox container");
    }
    remove_volume(rt, &name).await;
    match result {
        Ok(o) => o,
        Err(e) => Outcome {
            result: JobResult {
                error: Some(e),
                ..Default::default()
            },
            ..Default::default()
        },
    }
}

async fn remove_volume(rt: &Runtime, name: &str) {
    // The container removal may still be settling; retry briefly.
    for _ in 0..20 {
        match rt
            .docker()
            .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return,
            Err(e) => {
                tracing::debug!(volume = %name, error = %e, "volume removal retry");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::warn!(volume = %name, "could not remove sandbox volume");
}

fn sandbox_labels(input: &Input<'_>) -> HashMap<String, String> {
    HashMap::from([
        (OWNER.to_string(), "exec".to_string()),
        (INSTANCE_LABEL.to_string(), input.instance.to_string()),
        (JOB_LABEL.to_string(), input.job_id.to_string()),
    ])
}

/// Seconds (rounded up, at least 1) for `ulimit -t` and `timeout`.
fn secs(ms: u64) -> String {
    ms.div_ceil(1000).max(1).to_string()
}

/// The container of one run.
pub fn container_spec(input: &Input<'_>) -> ContainerSpec {
    let l = &input.limits;
    let wait = "while [ ! -e /work/.slipway/go ]; do sleep 0.01; done; exec sh /work/.slipway/run.sh \"$@\""
        .to_string();
    let mut cmd = vec![
        "sh".to_string(),
        "-c".to_string(),
        wait,
        "slipway".to_string(),
    ];
    cmd.extend(input.args.iter().cloned());
    let mut spec = ContainerSpec::new(&input.def.image)
        .name(&input.name)
        .cmd(cmd)
        .user("1000:1000")
        .working_dir("/work")
        .volume(&input.name, "/work")
        .tmpfs("/tmp", Some(l.tmp_bytes))
        .security(Security::sandbox())
        .memory(l.memory_bytes)
        .pids_limit(l.pids)
        .nano_cpus(1_000_000_000)
        .env("HOME", "/tmp")
        .env("LANG", "C.UTF-8")
        .env("SW_COMPILE", input.def.compile.clone().unwrap_or_default())
        .env("SW_COMPILE_CPU", secs(l.compile_timeout_ms))
        .env("SW_COMPILE_WALL", secs(l.compile_timeout_ms))
        .env("SW_RUN", input.def.run.clone())
        .env("SW_RUN_CPU", secs(l.run_timeout_ms))
        .env("SW_RUN_WALL", secs(l.run_timeout_ms))
        .env(
            "SW_FSIZE_BLOCKS",
            (l.max_file_bytes / 512).max(1).to_string(),
        );
    for (k, v) in &input.def.env {
        spec = spec.env(k, v);
    }
    for (k, v) in sandbox_labels(input) {
        spec = spec.label(k, v);
    }
    spec.hostname = Some("sandbox".into());
    spec.init = true;
    spec
}

async fn run_inner(
    rt: &Runtime,
    input: &Input<'_>,
    cancel: &CancellationToken,
) -> Result<Outcome, String> {
    let l = &input.limits;
    let volume_labels = labels::with_managed(&sandbox_labels(input));
    rt.docker()
        .create_volume(CreateVolumeOptions {
            name: input.name.clone(),
            driver: "local".into(),
            driver_opts: HashMap::from([
                ("type".to_string(), "tmpfs".to_string()),
                ("device".to_string(), "tmpfs".to_string()),
                (
                    "o".to_string(),
                    format!(
                        "size={},uid=1000,gid=1000,mode=0700,nosuid,nodev",
                        l.work_bytes
                    ),
                ),
            ]),
            labels: volume_labels,
        })
        .await
        .map_err(|e| format!("creating the sandbox volume failed: {e}"))?;
    let spec = container_spec(input);
    let id = rt.create(&spec).await.map_err(|e| e.to_string())?;
    rt.start(&id).await.map_err(|e| e.to_string())?;
    let tar = input_tar(input).map_err(|e| format!("packing the job's files failed: {e}"))?;
    rt.docker()
        .upload_to_container(
            &id,
            Some(UploadToContainerOptions {
                path: "/work".to_string(),
                no_overwrite_dir_non_dir: String::new(),
            }),
            Bytes::from(tar),
        )
        .await
        .map_err(|e| format!("uploading the job's files failed: {e}"))?;

    // Wait for the wrapper's end marker, the overall deadline or a cancel.
    let deadline = Duration::from_millis(l.compile_timeout_ms + l.run_timeout_ms + 15_000);
    let mut logs = Box::pin(rt.logs(&id, LogOptions::follow()));
    let finished = async {
        let mut tail: Vec<u8> = Vec::new();
        while let Some(chunk) = logs.next().await {
            let Ok(chunk) = chunk else { return false };
            tail.extend_from_slice(&chunk.data);
            if tail
                .windows(DONE_MARKER.len())
                .any(|w| w == DONE_MARKER.as_bytes())
            {
                return true;
            }
            let keep = tail.len().saturating_sub(DONE_MARKER.len());
            tail.drain(..keep);
        }
        false
    };
    let mut hard_timeout = false;
    tokio::select! {
        done = finished => {
            if !done {
                tracing::debug!(container = %id, "sandbox ended without the end marker");
            }
        }
        _ = tokio::time::sleep(deadline) => hard_timeout = true,
        _ = cancel.cancelled() => {
            return Ok(Outcome { cancelled: true, ..Default::default() });
        }
    }

    let meta = download(rt, &id, "/work/.slipway")
        .await
        .unwrap_or_default();
    let output = download(rt, &id, "/work/output").await.unwrap_or_default();
    // Docker records an OOM kill inside the container when the container exits.
    let _ = rt.kill(&id, None).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), rt.wait(&id)).await;
    let state = rt.inspect(&id).await.map_err(|e| e.to_string())?;

    let mut result = JobResult::default();
    if input.def.compile.is_some() {
        result.compile = phase_result(&meta, "compile", l.output_cap, l.compile_timeout_ms);
    }
    result.run = phase_result(&meta, "run", l.output_cap, l.run_timeout_ms);
    // The OOM flag is per container: give it to the phase that was killed.
    if state.oom_killed {
        let last = result
            .run
            .as_mut()
            .or(result.compile.as_mut())
            .filter(|p| p.exit_code == Some(137));
        if let Some(p) = last {
            p.oom_killed = true;
            p.timed_out = false;
        }
    }
    if hard_timeout {
        // Stuck past every limit: blame the phase that never reported.
        let phase = if input.def.compile.is_some() && result.compile.is_none() {
            &mut result.compile
        } else {
            &mut result.run
        };
        phase.get_or_insert_with(PhaseResult::default).timed_out = true;
    }
    if result.run.is_none() && result.compile.is_none() {
        result.error = Some("the sandbox ended without reporting a result".into());
    }
    let output_zip = zip_output(&output).map_err(|e| format!("zipping the output failed: {e}"))?;
    Ok(Outcome {
        result,
        output_zip,
        cancelled: false,
    })
}

/// A tar entry header owned by the sandbox user.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_size(size);
    h
}

/// The tar uploaded to `/work`: files, the wrapper, stdin, and `go` last.
fn input_tar(input: &Input<'_>) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for dir in [".slipway", ".bin", "output"] {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        b.append_data(&mut h, format!("{dir}/"), std::io::empty())?;
    }
    let file = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        b.append_data(&mut h, path, data)
    };
    for (name, data) in &input.files {
        file(&mut b, name, data)?;
    }
    file(&mut b, ".slipway/run.sh", WRAPPER.as_bytes())?;
    file(&mut b, ".slipway/stdin", input.stdin)?;
    file(&mut b, ".slipway/go", b"")?;
    b.into_inner()
}

/// Regular files of a downloaded tar, keyed by their path below the top directory.
type Files = Vec<(String, Vec<u8>)>;

/// Read a directory of the container as a list of files (None when it does not exist).
async fn download(rt: &Runtime, id: &str, path: &str) -> Option<Files> {
    let mut stream = rt.docker().download_from_container(
        id,
        Some(DownloadFromContainerOptions {
            path: path.to_string(),
        }),
    );
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                if tar.len() + bytes.len() > MAX_DOWNLOAD {
                    tracing::warn!(container = %id, %path, "result archive over the cap; cut");
                    break;
                }
                tar.extend_from_slice(&bytes);
            }
            Err(e) => {
                tracing::debug!(container = %id, %path, error = %e, "download failed");
                return None;
            }
        }
    }
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(&tar[..]);
    let entries = archive.entries().ok()?;
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Ok(p) = entry.path() else { continue };
        // Strip the top directory (`.slipway/`, `output/`).
        let rel: std::path::PathBuf = p.components().skip(1).collect();
        let rel = rel.to_string_lossy().into_owned();
        let mut data = Vec::new();
        if entry.read_to_end(&mut data).is_ok() && !rel.is_empty() {
            files.push((rel, data));
        }
    }
    Some(files)
}

fn find<'a>(files: &'a Files, name: &str) -> Option<&'a [u8]> {
    files
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d.as_slice())
}

/// Text of an output stream, cut at `cap` bytes (on a character boundary).
fn capped(data: &[u8], cap: usize) -> (String, bool) {
    if data.len() <= cap {
        return (String::from_utf8_lossy(data).into_owned(), false);
    }
    let mut text = String::from_utf8_lossy(&data[..cap]).into_owned();
    // A multi-byte character cut in half decodes as U+FFFD; drop it.
    if text.ends_with('\u{FFFD}') {
        text.pop();
    }
    (text, true)
}

fn phase_result(meta: &Files, name: &str, cap: usize, limit_ms: u64) -> Option<PhaseResult> {
    let status = String::from_utf8_lossy(find(meta, &format!("{name}.status"))?).into_owned();
    let mut parts = status.split_whitespace();
    let code: i64 = parts.next()?.parse().ok()?;
    let time_ms: u64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let (stdout, out_cut) = capped(find(meta, &format!("{name}.out")).unwrap_or_default(), cap);
    let (stderr, err_cut) = capped(find(meta, &format!("{name}.err")).unwrap_or_default(), cap);
    let signal = (129..160).contains(&code).then(|| code - 128);
    let timed_out = match signal {
        Some(24) => true,
        // `timeout -s KILL` kills with SIGKILL once the wall time is over.
        Some(9) => time_ms + 100 >= limit_ms,
        _ => false,
    };
    Some(PhaseResult {
        stdout,
        stderr,
        exit_code: Some(code),
        signal: signal.map(signal_name),
        time_ms,
        memory_kb: None,
        truncated: out_cut || err_cut || signal == Some(25),
        oom_killed: false,
        timed_out,
    })
}

/// `output.zip` of the files below `/work/output`, None when there are none.
fn zip_output(files: &Files) -> zip::result::ZipResult<Option<Vec<u8>>> {
    if files.is_empty() {
        return Ok(None);
    }
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(name.as_str(), options)?;
        w.write_all(data)?;
    }
    Ok(Some(w.finish()?.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_cap() {
        assert_eq!(capped(b"hello", 10), ("hello".into(), false));
        let (t, cut) = capped("aé".as_bytes(), 2);
        assert_eq!((t.as_str(), cut), ("a", true));
    }

    #[test]
    fn status_files_become_phase_results() {
        let meta: Files = vec![
            ("run.status".into(), b"137 2000\n".to_vec()),
            ("run.out".into(), b"partial".to_vec()),
        ];
        let p = phase_result(&meta, "run", 1024, 2000).unwrap();
        assert!(p.timed_out);
        assert_eq!(p.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(p.stdout, "partial");
        assert!(phase_result(&meta, "compile", 1024, 2000).is_none());
    }
}
