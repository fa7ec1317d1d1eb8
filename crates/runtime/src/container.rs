//! Container lifecycle: create, start, wait, logs, kill, stop, remove, inspect.

use std::collections::HashMap;

use bollard::container::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    LogOutput, LogsOptions, RemoveContainerOptions, StartContainerOptions, StopContainerOptions,
    WaitContainerOptions,
};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};

use crate::error::{Result, RuntimeError};
use crate::labels::LabelFilter;
use crate::spec::ContainerSpec;
use crate::Runtime;

/// How a container ended: what CI reports and what decides a step's success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// Exit code of the main process (137 = killed by SIGKILL, e.g. OOM or `kill`).
    pub code: i64,
    /// The kernel's OOM killer fired inside the container (memory limit hit).
    pub oom_killed: bool,
}

impl ExitStatus {
    /// Exit code 0 and no OOM kill.
    pub fn success(&self) -> bool {
        self.code == 0 && !self.oom_killed
    }
}

/// Which output stream a log chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// A piece of container output, as the engine delivered it (not necessarily a whole line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Stdout or stderr.
    pub stream: LogStream,
    /// Raw bytes.
    pub data: Bytes,
}

/// What to read from [`Runtime::logs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and deliver new output until the container stops.
    pub follow: bool,
    /// Include stdout.
    pub stdout: bool,
    /// Include stderr.
    pub stderr: bool,
    /// Only the last N lines (None = everything).
    pub tail: Option<u64>,
    /// Prefix each message with the engine's RFC 3339 (nanosecond) timestamp
    /// and a space, so stored logs carry when a line was printed.
    pub timestamps: bool,
    /// Only output since this Unix time in seconds (resuming a log follower).
    pub since: Option<i64>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            follow: false,
            stdout: true,
            stderr: true,
            tail: None,
            timestamps: false,
            since: None,
        }
    }
}

impl LogOptions {
    /// Both streams, following until the container exits (live CI logs).
    pub fn follow() -> Self {
        LogOptions {
            follow: true,
            ..Default::default()
        }
    }
}

/// All output of a finished container, split by stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectedLogs {
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl CollectedLogs {
    /// Stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Result of [`Runtime::run`]: exit status and output of a one-shot container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    /// Id of the (already removed) container.
    pub id: String,
    /// How it ended.
    pub status: ExitStatus,
    /// What it printed.
    pub logs: CollectedLogs,
}

/// A host binding of a published container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// Container side, e.g. `8080/tcp`.
    pub container_port: String,
    /// Host address (always 127.0.0.1 for Slipway containers).
    pub host_ip: String,
    /// Host port actually assigned.
    pub host_port: u16,
}

/// The current state of a container, as far as Slipway cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Full container id.
    pub id: String,
    /// Name without the leading slash.
    pub name: String,
    /// Engine status: `created`, `running`, `exited`, `dead`, …
    pub status: String,
    /// Whether the main process is running.
    pub running: bool,
    /// Exit code once it has stopped.
    pub exit_code: Option<i64>,
    /// Whether the OOM killer fired.
    pub oom_killed: bool,
    /// Engine error (e.g. the command could not be executed).
    pub error: Option<String>,
    /// Labels of the container.
    pub labels: HashMap<String, String>,
    /// Published ports with their assigned host ports (only while running).
    pub ports: Vec<PublishedPort>,
    /// Host process id of the main process while it runs (to read its
    /// network namespace's sockets, see [`Runtime::listening`]).
    pub pid: Option<u32>,
    /// `starting`, `healthy` or `unhealthy` when the container has a health
    /// check.
    pub health: Option<String>,
}

/// Longest [`Runtime::remove`] waits for a removal that was already in progress.
const REMOVAL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A container found by [`Runtime::list_containers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Full container id.
    pub id: String,
    /// Names without the leading slash.
    pub names: Vec<String>,
    /// Image reference it was created from.
    pub image: String,
    /// Engine state: `created`, `running`, `exited`, …
    pub state: String,
    /// Labels of the container.
    pub labels: HashMap<String, String>,
}

impl Runtime {
    /// Create (but do not start) a container from `spec`; returns its id.
    ///
    /// A missing image is reported as [`RuntimeError::ImageMissing`]: Slipway
    /// never pulls, images must be bootstrapped or built locally.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let config = spec.to_config()?;
        let options = spec.name.as_ref().map(|name| CreateContainerOptions {
            name: name.clone(),
            platform: None,
        });
        let shown = spec.name.clone().unwrap_or_else(|| spec.image.clone());
        match self.docker.create_container(options, config).await {
            Ok(resp) => {
                for w in &resp.warnings {
                    tracing::debug!(container = %shown, warning = %w, "engine warning on create");
                }
                Ok(resp.id)
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                message,
            }) if message.contains("image") || message.contains("No such image") => {
                Err(RuntimeError::ImageMissing {
                    image: spec.image.clone(),
                })
            }
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!("creating container `{shown}`"),
                "network or volume of container",
                &shown,
            )),
        }
    }

    /// Creates a container from `spec`, puts `secret_files` (names of
    /// `secrets`) under `/run/secrets/<name>` and starts it; on a failure
    /// after the create, the container is removed. How a stack service's
    /// secrets reach it as files, on one node and on agents alike.
    pub async fn create_with_secret_files(
        &self,
        spec: &ContainerSpec,
        secret_files: &[String],
        secrets: &HashMap<String, String>,
    ) -> std::result::Result<String, String> {
        let id = self.create(spec).await.map_err(|e| e.to_string())?;
        let started = async {
            if !secret_files.is_empty() {
                let tar = secrets_archive(secret_files, secrets)?;
                self.upload(&id, "/", tar.into())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            self.start(&id).await.map_err(|e| e.to_string())
        };
        if let Err(e) = started.await {
            let _ = self.remove(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Unpacks the tar archive `tar` into directory `path` of a (created,
    /// not yet started) container: files a container must find at start,
    /// such as a stack service's secrets under `/run/secrets`.
    pub async fn upload(&self, id: &str, path: &str, tar: Bytes) -> Result<()> {
        self.upload_stream(id, path, futures::stream::iter([tar]))
            .await
    }

    /// Unpacks the tar archive streamed by `tar` into directory `path` of
    /// a container (created, running or stopped; volumes mounted in it
    /// included): the engine's archive API, without a size or time limit of
    /// its own (the caller bounds what it sends).
    pub async fn upload_stream(
        &self,
        id: &str,
        path: &str,
        tar: impl Stream<Item = Bytes> + Send + 'static,
    ) -> Result<()> {
        self.long_docker()
            .upload_to_container_streaming(
                id,
                Some(bollard::container::UploadToContainerOptions {
                    path: path.to_string(),
                    ..Default::default()
                }),
                tar,
            )
            .await
            .map_err(|e| {
                RuntimeError::from_docker(e, format!("copying files into `{id}`"), "container", id)
            })
    }

    /// A tar archive of `path` in a container (created, running or
    /// stopped; volumes mounted in it included), streamed by the engine's
    /// archive API. `/dir/.` gives the directory's contents as `./…`.
    pub fn download(
        &self,
        id: &str,
        path: &str,
    ) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
        let owned_id = id.to_string();
        self.long_docker()
            .download_from_container(
                id,
                Some(bollard::container::DownloadFromContainerOptions {
                    path: path.to_string(),
                }),
            )
            .map_err(move |e| {
                RuntimeError::from_docker(
                    e,
                    format!("copying files out of `{owned_id}`"),
                    "container",
                    &owned_id,
                )
            })
    }

    /// Start a created container.
    pub async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<StartContainerOptions<String>>)
            .await
            .map_err(|e| {
                RuntimeError::from_docker(e, format!("starting container `{id}`"), "container", id)
            })
    }

    /// Wait until a started container stops and report its exit code and
    /// whether it was OOM-killed. Call after [`Runtime::start`] (a created,
    /// never-started container counts as stopped).
    pub async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let mut waits = self.long_docker().wait_container(
            id,
            Some(WaitContainerOptions {
                condition: "not-running",
            }),
        );
        while let Some(item) = waits.next().await {
            match item {
                Ok(_) => {}
                // bollard reports non-zero exit codes as errors; the code is read from inspect below.
                Err(bollard::errors::Error::DockerContainerWaitError { .. }) => {}
                Err(e) => {
                    return Err(RuntimeError::from_docker(
                        e,
                        format!("waiting for container `{id}`"),
                        "container",
                        id,
                    ))
                }
            }
        }
        let state = self.inspect(id).await?;
        Ok(ExitStatus {
            code: state.exit_code.unwrap_or(-1),
            oom_killed: state.oom_killed,
        })
    }

    /// Stream a container's output as stdout/stderr chunks; with
    /// `opts.follow` the stream ends when the container stops.
    pub fn logs(
        &self,
        id: &str,
        opts: LogOptions,
    ) -> impl Stream<Item = Result<LogChunk>> + Send + 'static {
        let owned_id = id.to_string();
        self.long_docker()
            .logs(
                id,
                Some(LogsOptions::<String> {
                    follow: opts.follow,
                    stdout: opts.stdout,
                    stderr: opts.stderr,
                    tail: opts
                        .tail
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "all".to_string()),
                    timestamps: opts.timestamps,
                    since: opts.since.unwrap_or(0),
                    ..Default::default()
                }),
            )
            .map_err(move |e| {
                RuntimeError::from_docker(
                    e,
                    format!("reading logs of container `{owned_id}`"),
                    "container",
                    &owned_id,
                )
            })
            .try_filter_map(|out| async move {
                Ok(match out {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        Some(LogChunk {
                            stream: LogStream::Stdout,
                            data: message,
                        })
                    }
                    LogOutput::StdErr { message } => Some(LogChunk {
                        stream: LogStream::Stderr,
                        data: message,
                    }),
                    LogOutput::StdIn { .. } => None,
                })
            })
    }

    /// Read all output written so far (does not follow).
    pub async fn collect_logs(&self, id: &str) -> Result<CollectedLogs> {
        let mut out = CollectedLogs::default();
        let mut logs = Box::pin(self.logs(id, LogOptions::default()));
        while let Some(chunk) = logs.next().await {
            let chunk = chunk?;
            match chunk.stream {
                LogStream::Stdout => out.stdout.extend_from_slice(&chunk.data),
                LogStream::Stderr => out.stderr.extend_from_slice(&chunk.data),
            }
        }
        Ok(out)
    }

    /// Send a signal (default `SIGKILL`). Killing a container that is not
    /// running is not an error: the goal, a stopped container, holds.
    pub async fn kill(&self, id: &str, signal: Option<&str>) -> Result<()> {
        let signal = signal.unwrap_or("SIGKILL");
        match self
            .docker
            .kill_container(id, Some(KillContainerOptions { signal }))
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("not running") => Ok(()),
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!("sending {signal} to container `{id}`"),
                "container",
                id,
            )),
        }
    }

    /// Stop gracefully: SIGTERM (or the image's stop signal), then SIGKILL
    /// after `timeout_secs`. Used to drain app replicas.
    pub async fn stop(&self, id: &str, timeout_secs: i64) -> Result<()> {
        // The engine answers only once the container has stopped: use the long client.
        match self
            .long_docker()
            .stop_container(id, Some(StopContainerOptions { t: timeout_secs }))
            .await
        {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!("stopping container `{id}`"),
                "container",
                id,
            )),
        }
    }

    /// Force-remove a container (killing it if needed) with its anonymous
    /// volumes. Removing a container that is already gone succeeds, so
    /// cleanup paths can call it unconditionally.
    pub async fn remove(&self, id: &str) -> Result<()> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    link: false,
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => {
                self.wait_removed(id).await;
                Ok(())
            }
            Err(e) => Err(RuntimeError::from_docker(
                e,
                format!("removing container `{id}`"),
                "container",
                id,
            )),
        }
    }

    /// Waits (bounded by [`REMOVAL_WAIT`]) until a removal already in progress
    /// elsewhere (an auto-removing container, another task's remove) is done:
    /// until then the container still holds its volumes and networks, and a
    /// process that exits now would leave it behind.
    async fn wait_removed(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + REMOVAL_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.inspect(id).await {
                Err(e) if e.is_not_found() => return,
                _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        tracing::warn!(container = %id, "its removal is still in progress");
    }

    /// Current state of a container (status, exit code, OOM flag, ports, labels).
    pub async fn inspect(&self, id: &str) -> Result<ContainerState> {
        let resp = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| {
                RuntimeError::from_docker(
                    e,
                    format!("inspecting container `{id}`"),
                    "container",
                    id,
                )
            })?;
        let state = resp.state.unwrap_or_default();
        let mut ports = Vec::new();
        if let Some(map) = resp.network_settings.and_then(|n| n.ports) {
            for (container_port, bindings) in map {
                for b in bindings.unwrap_or_default() {
                    if let Some(host_port) = b.host_port.and_then(|p| p.parse::<u16>().ok()) {
                        ports.push(PublishedPort {
                            container_port: container_port.clone(),
                            host_ip: b.host_ip.unwrap_or_default(),
                            host_port,
                        });
                    }
                }
            }
        }
        ports.sort_by(|a, b| a.container_port.cmp(&b.container_port));
        Ok(ContainerState {
            id: resp.id.unwrap_or_default(),
            name: resp
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            status: state
                .status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "unknown".to_string()),
            running: state.running.unwrap_or(false),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            labels: resp.config.and_then(|c| c.labels).unwrap_or_default(),
            ports,
            pid: state
                .pid
                .and_then(|p| u32::try_from(p).ok())
                .filter(|p| *p > 0),
            health: state
                .health
                .and_then(|h| h.status)
                .map(|s| s.to_string())
                .filter(|s| !s.is_empty() && s != "none"),
        })
    }

    /// The host port (on 127.0.0.1) assigned to TCP `container_port` of a
    /// running container — how callers learn an auto-assigned (0) port.
    pub async fn host_port(&self, id: &str, container_port: u16) -> Result<u16> {
        let key = format!("{container_port}/tcp");
        self.inspect(id)
            .await?
            .ports
            .into_iter()
            .find(|p| p.container_port == key)
            .map(|p| p.host_port)
            .ok_or_else(|| RuntimeError::PortNotPublished {
                container: id.to_string(),
                port: key,
            })
    }

    /// All containers (running or not) whose labels match `filter`.
    pub async fn list_containers(&self, filter: &LabelFilter) -> Result<Vec<ContainerInfo>> {
        let found = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: filter.to_filters(),
                ..Default::default()
            }))
            .await
            .map_err(|source| RuntimeError::Docker {
                action: "listing containers".into(),
                source,
            })?;
        Ok(found
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                names: c
                    .names
                    .unwrap_or_default()
                    .into_iter()
                    .map(|n| n.trim_start_matches('/').to_string())
                    .collect(),
                image: c.image.unwrap_or_default(),
                state: c.state.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
            })
            .collect())
    }

    /// Create, start and wait for a one-shot container, collect its output,
    /// then remove it (also when waiting fails).
    pub async fn run(&self, spec: &ContainerSpec) -> Result<RunOutput> {
        let id = self.create(spec).await?;
        let result = async {
            self.start(&id).await?;
            let status = self.wait(&id).await?;
            let logs = self.collect_logs(&id).await?;
            Ok::<_, RuntimeError>((status, logs))
        }
        .await;
        let removed = self.remove(&id).await;
        let (status, logs) = result?;
        removed?;
        Ok(RunOutput { id, status, logs })
    }
}

/// A tar holding `run/secrets/<name>` for each of `names`, readable by
/// any user (the service's user is unknown, as with Swarm's secrets).
pub fn secrets_archive(
    names: &[String],
    secrets: &HashMap<String, String>,
) -> std::result::Result<Vec<u8>, String> {
    let mut b = tar::Builder::new(Vec::new());
    for name in names {
        let value = secrets.get(name).ok_or_else(|| {
            format!("secret {name} is not set: `slipway app secret set APP {name}` sets it")
        })?;
        let mut header = tar::Header::new_gnu();
        header.set_size(value.len() as u64);
        header.set_mode(0o444);
        header.set_cksum();
        b.append_data(&mut header, format!("run/secrets/{name}"), value.as_bytes())
            .map_err(|e| e.to_string())?;
    }
    b.into_inner().map_err(|e| e.to_string())
}
