//! One job in one throw-away container, prepared ahead of the job.
//!
//! [`prepare`] does the expensive part: it creates and starts a container with
//! a read-only root, no network, no capabilities, no-new-privileges, Docker's
//! default seccomp, a pids limit, a memory limit, a CPU limit, a size-capped
//! tmpfs `/work` (owned by uid 1000) and `/tmp`, a tmpfs of its own for the
//! wrapper's files and the phases' results (`/work/.slipway`: a program that
//! fills `/work` cannot take the room its results need), no Docker log (the
//! output comes back over the attach stream only), and attaches to its
//! standard streams. The
//! container's entry process just waits (blocked in `tar -x` on stdin, no CPU)
//! for a job. [`Warm::run`] hands the job over: the files, the wrapper script
//! and the job's settings go in as one tar on stdin; the wrapper compiles and
//! runs with `ulimit -t`/`-f` and `timeout`, then writes a marker and a tar of
//! the results to stdout and exits, and the container removes itself (auto
//! remove). A container serves at most one job, so nothing is shared between
//! jobs; one that is never used kills itself after `self_destruct`.
//!
//! No Docker archive call (`docker cp`, ~100 ms each on Engine 20.10) is on a
//! job's path: only the already open attach stream.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::pin::Pin;
use std::time::{Duration, Instant};

use bollard::container::{AttachContainerOptions, CreateContainerOptions, LogOutput};
use futures::{Stream, StreamExt};
use slipway_runtime::labels::OWNER;
use slipway_runtime::{ContainerSpec, Runtime, Security};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::model::{signal_name, JobResult, PhaseResult};
use crate::runtimes::RuntimeDef;

/// Label carrying the server instance that owns a sandbox (for crash cleanup).
pub const INSTANCE_LABEL: &str = "io.slipway.exec.instance";
/// Label carrying the language a sandbox was prepared for (warm pool and cold alike).
pub const POOL_LABEL: &str = "io.slipway.exec.pool";
/// Printed by the wrapper before the result tar.
const RESULT_MARKER: &[u8] = b"SLIPWAY-EXEC-RESULT\n";
/// The wrapper script sent with every job.
const WRAPPER: &str = include_str!("wrapper.sh");
/// The wrapper's own tmpfs: its script, the job's settings, and the phases'
/// output and status files.
const RESULT_MOUNT: &str = "/work/.slipway";
/// Largest result stream read back from a sandbox.
const MAX_RESULT: usize = 64 * 1024 * 1024;

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
    /// CPUs of the container, in billionths of a CPU.
    pub nano_cpus: i64,
    /// Bytes of stdout and of stderr kept per phase.
    pub output_cap: usize,
    /// Size of the `/work` tmpfs.
    pub work_bytes: i64,
    /// Size of `/tmp`.
    pub tmp_bytes: i64,
    /// Largest file a program may write (stdout included), in bytes.
    pub max_file_bytes: u64,
}

impl Limits {
    /// Size of the results tmpfs (`/work/.slipway`): the wrapper, the job's
    /// settings and stdin, and each phase's stdout and stderr at their
    /// largest (`max_file_bytes` each), plus room for the status lines.
    pub fn result_bytes(&self) -> i64 {
        4 * self.max_file_bytes as i64 + (4 << 20)
    }
}

/// What a sandbox container is before it gets a job: the runtime and the
/// limits fixed at creation. A warm container only serves jobs of its shape.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The language runtime (image, environment).
    pub def: &'static RuntimeDef,
    /// Memory limit of the container.
    pub memory_bytes: i64,
    /// Maximum number of processes and threads.
    pub pids: i64,
    /// CPUs of the container, in billionths of a CPU.
    pub nano_cpus: i64,
    /// Size of the `/work` tmpfs.
    pub work_bytes: i64,
    /// Size of `/tmp`.
    pub tmp_bytes: i64,
    /// Size of the results tmpfs `/work/.slipway`.
    pub result_bytes: i64,
}

impl Shape {
    /// The shape a job with `limits` needs.
    pub fn of(def: &'static RuntimeDef, limits: &Limits) -> Self {
        Shape {
            def,
            memory_bytes: limits.memory_bytes,
            pids: limits.pids,
            nano_cpus: limits.nano_cpus,
            work_bytes: limits.work_bytes,
            tmp_bytes: limits.tmp_bytes,
            result_bytes: limits.result_bytes(),
        }
    }

    fn key(&self) -> (&str, &str, [i64; 6]) {
        (
            &self.def.language,
            &self.def.version,
            [
                self.memory_bytes,
                self.pids,
                self.nano_cpus,
                self.work_bytes,
                self.tmp_bytes,
                self.result_bytes,
            ],
        )
    }
}

impl PartialEq for Shape {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Shape {}

impl std::hash::Hash for Shape {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
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

impl Outcome {
    /// An outcome that only carries a platform error.
    pub fn failed(message: impl Into<String>) -> Self {
        Outcome {
            result: JobResult {
                error: Some(message.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// One job's input to [`Warm::run`].
pub struct Input<'a> {
    /// The language runtime.
    pub def: &'static RuntimeDef,
    /// Files as (name, contents); names already validated.
    pub files: Vec<(String, Vec<u8>)>,
    /// Standard input of the run.
    pub stdin: &'a [u8],
    /// Arguments of the run (no NUL bytes; validated).
    pub args: &'a [String],
    /// Limits.
    pub limits: Limits,
}

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A started sandbox waiting for its one job.
pub struct Warm {
    /// Container name (as created; a hand-over may rename it).
    pub name: String,
    /// Container id.
    pub id: String,
    /// What it was created for.
    pub shape: Shape,
    /// When it was started.
    pub born: Instant,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    output: Output,
}

/// The handed-over container was no longer usable (died while idle); the job
/// was not started and can go to another container.
#[derive(Debug)]
pub struct Stale(pub String);

/// Labels of every sandbox of `instance`.
pub fn sandbox_labels(instance: &str, shape: &Shape) -> HashMap<String, String> {
    HashMap::from([
        (OWNER.to_string(), "exec".to_string()),
        (INSTANCE_LABEL.to_string(), instance.to_string()),
        (POOL_LABEL.to_string(), shape.def.language.clone()),
    ])
}

/// Seconds (rounded up, at least 1) for `ulimit -t` and `timeout`.
fn secs(ms: u64) -> String {
    ms.div_ceil(1000).max(1).to_string()
}

/// The container of a sandbox (before the attach settings and `/work`, which
/// [`prepare`] adds to the engine request).
pub fn container_spec(name: &str, shape: &Shape, self_destruct: Duration) -> ContainerSpec {
    // Waits for the job's tar on stdin (or kills itself once it is too old to be used).
    let entry = format!(
        "timeout -s KILL {} tar -xf - && exec sh /work/.slipway/run.sh",
        self_destruct.as_secs().max(1)
    );
    let mut spec = ContainerSpec::new(&shape.def.image)
        .name(name)
        .cmd(["sh", "-c", entry.as_str()])
        .user("1000:1000")
        .working_dir("/work")
        .tmpfs("/tmp", Some(shape.tmp_bytes))
        .security(Security::sandbox())
        .memory(shape.memory_bytes)
        .pids_limit(shape.pids)
        .nano_cpus(shape.nano_cpus)
        .env("HOME", "/tmp")
        .env("LANG", "C.UTF-8");
    for (k, v) in &shape.def.env {
        spec = spec.env(k, v);
    }
    spec.hostname = Some("sandbox".into());
    spec.init = true;
    spec
}

/// Create, attach and start a sandbox of `shape` named `name`.
pub async fn prepare(
    rt: &Runtime,
    name: &str,
    shape: Shape,
    labels: HashMap<String, String>,
    self_destruct: Duration,
) -> Result<Warm, String> {
    let mut spec = container_spec(name, &shape, self_destruct);
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    let mut config = spec.to_config().map_err(|e| e.to_string())?;
    config.open_stdin = Some(true);
    config.stdin_once = Some(true);
    config.attach_stdin = Some(true);
    config.attach_stdout = Some(true);
    config.attach_stderr = Some(true);
    config.tty = Some(false);
    let host = config.host_config.get_or_insert_with(Default::default);
    host.auto_remove = Some(true);
    // The job's output comes back over the attach stream; Docker's log file
    // would copy it line by line as well (a 16 MiB flood of short lines held
    // the job ~25 s instead of under one).
    host.log_config = Some(bollard::models::HostConfigLogConfig {
        typ: Some("none".into()),
        config: None,
    });
    let tmpfs = host.tmpfs.get_or_insert_with(HashMap::new);
    tmpfs.insert(
        "/work".to_string(),
        format!(
            "rw,exec,nosuid,nodev,size={},uid=1000,gid=1000,mode=0700",
            shape.work_bytes
        ),
    );
    // Mounted over `/work/.slipway` (Docker mounts the parent first).
    tmpfs.insert(
        RESULT_MOUNT.to_string(),
        format!(
            "rw,noexec,nosuid,nodev,size={},uid=1000,gid=1000,mode=0700",
            shape.result_bytes
        ),
    );
    let docker = rt.docker();
    let id = match docker
        .create_container(
            Some(CreateContainerOptions {
                name: name.to_string(),
                platform: None,
            }),
            config,
        )
        .await
    {
        Ok(created) => created.id,
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        }) if message.contains("image") => {
            return Err(crate::service::missing_image_message(shape.def))
        }
        Err(e) => return Err(format!("creating the sandbox failed: {e}")),
    };
    let ready = async {
        let attached = docker
            .attach_container(
                &id,
                Some(AttachContainerOptions::<String> {
                    stdin: Some(true),
                    stdout: Some(true),
                    stderr: Some(true),
                    stream: Some(true),
                    logs: Some(false),
                    detach_keys: None,
                }),
            )
            .await
            .map_err(|e| format!("attaching to the sandbox failed: {e}"))?;
        rt.start(&id).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(attached)
    }
    .await;
    match ready {
        Ok(attached) => Ok(Warm {
            name: name.to_string(),
            id,
            shape,
            born: Instant::now(),
            input: attached.input,
            output: attached.output,
        }),
        Err(e) => {
            destroy(rt, &id).await;
            Err(e)
        }
    }
}

/// Remove a sandbox by id (killing it if it still runs); gone already is fine.
pub async fn destroy(rt: &Runtime, id: &str) {
    if let Err(e) = rt.remove(id).await {
        tracing::warn!(container = %id, error = %e, "could not remove sandbox container");
    }
}

impl Warm {
    /// Hand the job over and collect its result. The container is spent
    /// afterwards (it exits and removes itself; call [`destroy`] anyway).
    pub async fn run(
        mut self,
        input: &Input<'_>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, Stale> {
        let tar = match input_tar(input) {
            Ok(t) => t,
            Err(e) => return Ok(Outcome::failed(format!("packing the job failed: {e}"))),
        };
        let handover = async {
            self.input.write_all(&tar).await?;
            self.input.flush().await?;
            self.input.shutdown().await
        };
        if let Err(e) = handover.await {
            return Err(Stale(format!("the sandbox did not take the job: {e}")));
        }
        let l = &input.limits;
        let deadline = Duration::from_millis(l.compile_timeout_ms + l.run_timeout_ms + 15_000);
        let mut stdout: Vec<u8> = Vec::new();
        let mut cut = false;
        let collect = async {
            while let Some(item) = self.output.next().await {
                match item {
                    Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                        if stdout.len() + message.len() > MAX_RESULT {
                            cut = true;
                            break;
                        }
                        stdout.extend_from_slice(&message);
                    }
                    Ok(LogOutput::StdErr { message }) => {
                        tracing::debug!(container = %self.name, stderr = %String::from_utf8_lossy(&message), "sandbox stderr");
                    }
                    Ok(LogOutput::StdIn { .. }) => {}
                    Err(e) => {
                        tracing::debug!(container = %self.name, error = %e, "sandbox stream failed");
                        break;
                    }
                }
            }
        };
        let mut hard_timeout = false;
        tokio::select! {
            _ = collect => {}
            _ = tokio::time::sleep(deadline) => hard_timeout = true,
            _ = cancel.cancelled() => {
                return Ok(Outcome { cancelled: true, ..Default::default() });
            }
        }
        if cut {
            tracing::warn!(container = %self.name, "result stream over the cap; cut");
        }
        Ok(outcome(input, &stdout, hard_timeout))
    }
}

/// Turn the sandbox's stdout (marker + result tar) into an outcome.
fn outcome(input: &Input<'_>, stdout: &[u8], hard_timeout: bool) -> Outcome {
    let l = &input.limits;
    let (meta, output) = match stdout
        .windows(RESULT_MARKER.len())
        .position(|w| w == RESULT_MARKER)
    {
        Some(at) => split_results(&stdout[at + RESULT_MARKER.len()..]),
        None => (Vec::new(), Vec::new()),
    };
    let mut result = JobResult::default();
    if input.def.compile.is_some() {
        result.compile = phase_result(&meta, "compile", l.output_cap, l.compile_timeout_ms);
    }
    result.run = phase_result(&meta, "run", l.output_cap, l.run_timeout_ms);
    if hard_timeout {
        // Stuck past every limit: blame the phase that never reported.
        let phase = if input.def.compile.is_some() && result.compile.is_none() {
            &mut result.compile
        } else {
            &mut result.run
        };
        phase.get_or_insert_with(PhaseResult::default).timed_out = true;
    }
    result.error = limit_error(&result, l);
    let compiled = result
        .compile
        .as_ref()
        .is_none_or(|c| c.exit_code == Some(0) && !c.timed_out);
    if result.error.is_none() && result.run.is_none() && compiled {
        result.error = Some(
            "the sandbox stopped before reporting a result (files in /work and /tmp count \
             against the memory limit)"
                .into(),
        );
    }
    match zip_output(&output) {
        Ok(output_zip) => Outcome {
            result,
            output_zip,
            cancelled: false,
        },
        Err(e) => Outcome::failed(format!("zipping the output failed: {e}")),
    }
}

/// Spelled-out reason when a phase hit a limit of the sandbox itself rather
/// than failing on its own: the disk (`/work`, `/tmp`) or the memory.
fn limit_error(result: &JobResult, l: &Limits) -> Option<String> {
    let phases = [&result.compile, &result.run];
    let phases = phases.iter().filter_map(|p| p.as_ref());
    let mib = |bytes: i64| bytes >> 20;
    if phases.clone().any(|p| p.disk_full) {
        return Some(format!(
            "sandbox disk full: the program filled its writable space \
             (/work holds {} MiB, /tmp {} MiB)",
            mib(l.work_bytes),
            mib(l.tmp_bytes)
        ));
    }
    if phases.clone().any(|p| p.oom_killed) {
        return Some(format!(
            "out of memory: the program went over the sandbox's memory limit of {} MiB \
             (files in /work and /tmp count too)",
            mib(l.memory_bytes)
        ));
    }
    None
}

/// Quote `s` for a POSIX shell (single quotes).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The job's settings, sourced by the wrapper: commands, limits, arguments.
fn job_env(input: &Input<'_>) -> String {
    let l = &input.limits;
    let mut env = String::new();
    for (k, v) in [
        ("SW_COMPILE", input.def.compile.clone().unwrap_or_default()),
        ("SW_COMPILE_CPU", secs(l.compile_timeout_ms)),
        ("SW_COMPILE_WALL", secs(l.compile_timeout_ms)),
        ("SW_RUN", input.def.run.clone()),
        ("SW_RUN_CPU", secs(l.run_timeout_ms)),
        ("SW_RUN_WALL", secs(l.run_timeout_ms)),
        (
            "SW_FSIZE_BLOCKS",
            (l.max_file_bytes / 512).max(1).to_string(),
        ),
    ] {
        env.push_str(&format!("{k}={}\n", quote(&v)));
    }
    env.push_str("set --");
    for a in input.args {
        env.push(' ');
        env.push_str(&quote(a));
    }
    env.push('\n');
    env
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

/// The tar sent on stdin: directories, files, the wrapper, the job's
/// settings and stdin, padded to whole 10 KiB records for any `tar`.
fn input_tar(input: &Input<'_>) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for dir in [".slipway", ".slipway/result", ".bin", "output"] {
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
    file(&mut b, ".slipway/job.env", job_env(input).as_bytes())?;
    file(&mut b, ".slipway/stdin", input.stdin)?;
    let mut tar = b.into_inner()?;
    tar.resize(tar.len().div_ceil(10240) * 10240, 0);
    Ok(tar)
}

/// Regular files of a result tar, keyed by their path below the top directory.
type Files = Vec<(String, Vec<u8>)>;

/// Split the wrapper's result tar into phase files (`.slipway/result/…`) and
/// output files (`output/…`); a cut tar yields what was complete.
fn split_results(tar: &[u8]) -> (Files, Files) {
    let (mut meta, mut output) = (Vec::new(), Vec::new());
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return (meta, output);
    };
    for entry in entries {
        let Ok(mut entry) = entry else { break };
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Ok(path) = entry.path() else { continue };
        let path = path.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        let mut data = Vec::new();
        if entry.read_to_end(&mut data).is_err() {
            break;
        }
        if let Some(rel) = path.strip_prefix(".slipway/result/") {
            meta.push((rel.to_owned(), data));
        } else if let Some(rel) = path.strip_prefix("output/") {
            if !rel.is_empty() {
                output.push((rel.to_owned(), data));
            }
        }
    }
    (meta, output)
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
    // Peak of the sandbox's memory cgroup when the phase ended ("-" when unreadable).
    let memory_kb: Option<u64> = parts.next().and_then(|m| m.parse().ok());
    // OOM kills inside the sandbox during the phase.
    let oom_killed = parts
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0)
        > 0;
    // The writable directories left without a free byte (`-` when none).
    let disk_full = parts.next().is_some_and(|full| full != "-");
    let (stdout, out_cut) = capped(find(meta, &format!("{name}.out")).unwrap_or_default(), cap);
    let (stderr, err_cut) = capped(find(meta, &format!("{name}.err")).unwrap_or_default(), cap);
    let signal = (129..160).contains(&code).then(|| code - 128);
    let timed_out = match signal {
        _ if oom_killed && code == 137 => false,
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
        memory_kb,
        truncated: out_cut || err_cut || signal == Some(25),
        oom_killed,
        timed_out,
        disk_full,
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
    fn arguments_are_quoted_for_the_shell() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn output_is_cut_at_the_cap() {
        assert_eq!(capped(b"hello", 10), ("hello".into(), false));
        let (t, cut) = capped("aé".as_bytes(), 2);
        assert_eq!((t.as_str(), cut), ("a", true));
    }

    #[test]
    fn status_files_become_phase_results() {
        let meta: Files = vec![
            ("run.status".into(), b"137 2000 51200 0\n".to_vec()),
            ("run.out".into(), b"partial".to_vec()),
        ];
        let p = phase_result(&meta, "run", 1024, 2000).unwrap();
        assert!(p.timed_out);
        assert_eq!(p.signal.as_deref(), Some("SIGKILL"));
        assert_eq!(p.stdout, "partial");
        assert_eq!(p.memory_kb, Some(51200));
        assert!(!p.oom_killed);
        let oom: Files = vec![("run.status".into(), b"137 300 - 1\n".to_vec())];
        let p = phase_result(&oom, "run", 1024, 2000).unwrap();
        assert!(p.oom_killed && !p.timed_out && p.memory_kb.is_none());
        assert!(phase_result(&meta, "compile", 1024, 2000).is_none());
    }

    fn limits() -> Limits {
        Limits {
            compile_timeout_ms: 10_000,
            run_timeout_ms: 3_000,
            memory_bytes: 256 << 20,
            pids: 64,
            nano_cpus: 1_000_000_000,
            output_cap: 1024,
            work_bytes: 64 << 20,
            tmp_bytes: 256 << 20,
            max_file_bytes: 16 << 20,
        }
    }

    #[test]
    fn a_full_disk_keeps_the_output_and_is_spelled_out() {
        let meta: Files = vec![
            ("run.status".into(), b"0 390 67868 0 /work\n".to_vec()),
            ("run.out".into(), b"before\nafter\n".to_vec()),
        ];
        let run = phase_result(&meta, "run", 1024, 3000).unwrap();
        assert!(run.disk_full && !run.oom_killed);
        assert_eq!(
            (run.stdout.as_str(), run.exit_code),
            ("before\nafter\n", Some(0))
        );
        let result = JobResult {
            run: Some(run),
            ..Default::default()
        };
        let error = limit_error(&result, &limits()).unwrap();
        assert!(error.starts_with("sandbox disk full: "), "{error}");
        assert!(error.contains("64 MiB"), "{error}");
        assert_eq!(
            JobResult {
                error: Some(error),
                ..result
            }
            .state(),
            crate::JobState::Failed
        );
        // The status line of a wrapper without the disk field, and a free disk.
        for line in [&b"0 10 100 0\n"[..], b"0 10 100 0 -\n"] {
            let meta: Files = vec![("run.status".into(), line.to_vec())];
            assert!(!phase_result(&meta, "run", 1024, 3000).unwrap().disk_full);
        }
    }

    #[test]
    fn running_out_of_memory_is_spelled_out() {
        let meta: Files = vec![("run.status".into(), b"137 300 32768 1 -\n".to_vec())];
        let result = JobResult {
            run: phase_result(&meta, "run", 1024, 3000),
            ..Default::default()
        };
        let error = limit_error(&result, &limits()).unwrap();
        assert!(error.starts_with("out of memory: "), "{error}");
        assert!(error.contains("256 MiB"), "{error}");
        let fine = JobResult {
            run: Some(PhaseResult::default()),
            ..Default::default()
        };
        assert_eq!(limit_error(&fine, &limits()), None);
    }

    #[test]
    fn results_have_room_for_every_phase_at_the_file_size_limit() {
        assert!(limits().result_bytes() >= 4 * (16 << 20));
    }
}
