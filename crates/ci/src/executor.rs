//! Running one claimed pipeline: workspace, services, steps in DAG order.
//!
//! Every container, network and volume carries the labels of [`Labels`], so a
//! pipeline's leftovers can always be removed by label — after it ends, and
//! after a crash when the server starts again.

use crate::config::{Pipeline, Step};
use crate::logs::StepLog;
use crate::Ci;
use futures::StreamExt;
use slipway_domain::{PipelineRecord, Repo, Status, StepRecord};
use slipway_runtime::{labels, ContainerSpec, LabelFilter, LogOptions, NetworkMode, Runtime};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Label carrying the server instance, so servers sharing one engine never
/// touch each other's containers.
pub const INSTANCE_LABEL: &str = "io.slipway.ci-instance";
/// Label carrying the repository (`owner/name`) a CI object works for.
pub const REPO_LABEL: &str = "io.slipway.repo";

/// Where the checked-out commit appears in every step.
pub const WORKSPACE: &str = "/workspace";

/// Everything a step needs to know about its pipeline.
pub(crate) struct Context {
    pub rt: Runtime,
    pub ci: Ci,
    pub pipeline: PipelineRecord,
    pub repo: Repo,
    pub prefix: String,
    pub labels: HashMap<String, String>,
    pub network: Option<String>,
    pub volume: String,
    /// Workspace directories backed by the repository's cache volumes: `(path, volume)`.
    pub cache: Vec<(String, String)>,
    pub secrets: HashMap<String, String>,
    pub cancel: CancellationToken,
    /// The commit as a tar, copied into the workspace by the first step created.
    pub archive: bytes::Bytes,
    /// Set once the workspace holds the commit (or why it could not).
    pub checked_out: tokio::sync::OnceCell<Result<(), String>>,
}

/// The label filter selecting every object of one pipeline of one instance.
pub fn pipeline_filter(instance: &str, pipeline_id: i64) -> LabelFilter {
    LabelFilter::managed()
        .with(labels::OWNER, "ci")
        .with(INSTANCE_LABEL, instance)
        .with(labels::PIPELINE, pipeline_id.to_string())
}

/// The volume that keeps `path` of `repo`'s workspace between pipelines. The
/// name is derived from the server instance, the repository id and a digest
/// of the path, so it is stable across restarts and never shared between two
/// servers using one Docker Engine.
pub fn cache_volume(instance: &str, repo: &Repo, path: &str) -> String {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(path.as_bytes()));
    format!("slipway-ci-cache-{instance}-{}-{}", repo.id, &digest[..16])
}

/// Labels of cache volumes: managed and owned by CI, but without a pipeline
/// label, so the clean-up after each pipeline leaves them in place.
fn cache_labels(repo: &Repo) -> HashMap<String, String> {
    HashMap::from([
        (labels::OWNER.to_string(), "ci-cache".to_string()),
        (REPO_LABEL.to_string(), repo.full_name()),
    ])
}

/// Runs a claimed pipeline to its end; `Err` carries a pipeline-level error.
pub(crate) async fn execute(
    ci: &Ci,
    rt: Runtime,
    pipeline: &PipelineRecord,
    repo: Repo,
    repo_path: PathBuf,
    cancel: CancellationToken,
) -> Result<Status, String> {
    let config = ci
        .store()
        .pipeline_config(pipeline.id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the pipeline has no stored configuration")?;
    let config: Pipeline =
        serde_json::from_str(&config).map_err(|e| format!("stored configuration: {e}"))?;
    let records = ci
        .store()
        .pipeline_steps(pipeline.id)
        .await
        .map_err(|e| e.to_string())?;
    let secrets = ci.secret_values(pipeline.repo_id).await?;
    let instance = ci.instance().await.map_err(|e| e.to_string())?;
    let prefix = format!("slipway-ci-{instance}-{}", pipeline.id);
    let labels = HashMap::from([
        (labels::OWNER.to_string(), "ci".to_string()),
        (INSTANCE_LABEL.to_string(), instance.clone()),
        (labels::PIPELINE.to_string(), pipeline.id.to_string()),
        (REPO_LABEL.to_string(), repo.full_name()),
    ]);
    let volume = format!("{prefix}-workspace");
    rt.create_volume(&volume, &labels)
        .await
        .map_err(|e| e.to_string())?;
    let mut ctx = Context {
        rt,
        ci: ci.clone(),
        pipeline: pipeline.clone(),
        repo,
        prefix,
        labels,
        network: None,
        volume,
        cache: Vec::new(),
        secrets,
        cancel,
        archive: bytes::Bytes::new(),
        checked_out: tokio::sync::OnceCell::new(),
    };
    for path in &config.cache {
        let volume = cache_volume(&instance, &ctx.repo, path);
        ctx.rt
            .create_volume(&volume, &cache_labels(&ctx.repo))
            .await
            .map_err(|e| e.to_string())?;
        ctx.cache.push((path.clone(), volume));
    }
    ctx.archive = archive(ci, &repo_path, &pipeline.sha).await?;
    // Every pipeline on a network of its own: its steps and services reach
    // each other by name, and nothing of other tenants (their replicas,
    // their pipelines) is reachable from it.
    let name = format!("{}-net", ctx.prefix);
    ctx.rt
        .create_network(&name, &ctx.labels, false)
        .await
        .map_err(|e| e.to_string())?;
    ctx.network = Some(name);
    start_services(&ctx, &config).await?;
    let ctx = Arc::new(ctx);
    let status = run_dag(ctx.clone(), &config, records.clone()).await;
    if status != Status::Success {
        return Ok(status);
    }
    for build in &config.images {
        let Some(record) = records.iter().find(|r| r.name == build.step_name()) else {
            continue;
        };
        if crate::image::run(&ctx, build, record).await != Status::Success {
            return Ok(if ctx.cancel.is_cancelled() {
                Status::Cancelled
            } else {
                Status::Failure
            });
        }
    }
    Ok(Status::Success)
}

/// The commit as a tar archive (`git archive`), for the workspace.
async fn archive(ci: &Ci, repo_path: &PathBuf, sha: &str) -> Result<bytes::Bytes, String> {
    let out = tokio::process::Command::new(ci.git_bin())
        .arg("--git-dir")
        .arg(repo_path)
        .args(["archive", "--format=tar", sha])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .await
        .map_err(|e| format!("cannot run git archive: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git archive {sha} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout.into())
}

/// Copies the commit into the workspace volume through `container` (created,
/// not started, with the volume mounted). Only the first caller uploads;
/// steps created at the same time wait for it, so no step starts on an empty
/// workspace and no extra helper container is needed.
async fn checkout(ctx: &Context, container: &str) -> Result<(), String> {
    ctx.checked_out
        .get_or_init(|| async {
            ctx.rt
                .docker()
                .upload_to_container(
                    container,
                    Some(bollard::container::UploadToContainerOptions {
                        path: WORKSPACE.to_string(),
                        no_overwrite_dir_non_dir: String::new(),
                    }),
                    ctx.archive.clone(),
                )
                .await
                .map_err(|e| format!("copying the commit into the workspace failed: {e}"))
        })
        .await
        .clone()
}

async fn start_services(ctx: &Context, config: &Pipeline) -> Result<(), String> {
    for s in &config.services {
        crate::pull::ensure_image(ctx, &s.image)
            .await
            .map_err(|e| format!("service {:?}: {e}", s.name))?;
        let mut spec = ContainerSpec::new(&s.image)
            .name(format!("{}-svc-{}", ctx.prefix, s.name))
            .network(NetworkMode::Named {
                name: ctx.network.clone().unwrap_or_default(),
                aliases: vec![s.name.clone()],
            });
        spec.init = true;
        spec = spec
            .limits(s.resources.memory_bytes, s.resources.nano_cpus)
            .pids_limit(ctx.ci.options().limits.pids);
        if !s.commands.is_empty() {
            spec = spec.shell(s.commands.join("\n"));
        }
        for (k, v) in &s.environment {
            spec = spec.env(k, v);
        }
        spec.labels = ctx.labels.clone();
        let id = ctx
            .rt
            .create(&spec)
            .await
            .map_err(|e| format!("service {:?}: {e}", s.name))?;
        ctx.rt
            .start(&id)
            .await
            .map_err(|e| format!("service {:?}: {e}", s.name))?;
    }
    Ok(())
}

/// Schedules steps as their dependencies succeed; independent steps run in
/// parallel. Returns the pipeline's status.
async fn run_dag(ctx: Arc<Context>, config: &Pipeline, records: Vec<StepRecord>) -> Status {
    let by_name: HashMap<&str, &StepRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut state: HashMap<String, Status> =
        records.iter().map(|r| (r.name.clone(), r.status)).collect();
    // Steps skipped because a dependency did not succeed (unlike `when:` skips,
    // they block their own dependents too).
    let mut blocked: HashSet<String> = HashSet::new();
    let mut running = JoinSet::new();
    loop {
        let mut progressed = false;
        for step in &config.steps {
            // After a cancel nothing new starts; unfinished steps end as cancelled.
            if state.get(&step.name) != Some(&Status::Pending) || ctx.cancel.is_cancelled() {
                continue;
            }
            let Some(record) = by_name.get(step.name.as_str()) else {
                continue;
            };
            let mut ready = true;
            let mut failed_dep = None;
            for d in &step.depends_on {
                match state.get(d).copied() {
                    Some(Status::Success) => {}
                    Some(Status::Skipped) if !blocked.contains(d) => {}
                    Some(Status::Pending) | Some(Status::Running) => ready = false,
                    _ => failed_dep = Some(d.clone()),
                }
            }
            if let Some(d) = failed_dep {
                let msg = format!("skipped: step {d:?} did not succeed");
                let _ = ctx
                    .ci
                    .store()
                    .finish_step(record.id, Status::Skipped, None, Some(&msg))
                    .await;
                state.insert(step.name.clone(), Status::Skipped);
                blocked.insert(step.name.clone());
                progressed = true;
                continue;
            }
            if !ready {
                continue;
            }
            state.insert(step.name.clone(), Status::Running);
            let (ctx, step, record) = (ctx.clone(), step.clone(), (*record).clone());
            running.spawn(async move {
                let status = run_step(&ctx, &step, &record).await;
                (step.name, status)
            });
            progressed = true;
        }
        if progressed {
            continue;
        }
        match running.join_next().await {
            Some(Ok((name, status))) => {
                state.insert(name, status);
            }
            Some(Err(e)) => tracing::error!(error = %e, "a step task panicked"),
            None => break,
        }
    }
    if ctx.cancel.is_cancelled() {
        return Status::Cancelled;
    }
    let bad = state
        .values()
        .any(|s| matches!(s, Status::Failure | Status::Error | Status::Cancelled))
        || !blocked.is_empty();
    if bad {
        Status::Failure
    } else {
        Status::Success
    }
}

/// Runs one step's container to its end and records the outcome.
async fn run_step(ctx: &Context, step: &Step, record: &StepRecord) -> Status {
    let store = ctx.ci.store();
    let mut log = StepLog::new(store.clone(), record.id, step_secrets(ctx, step));
    let (status, code, error) = match step_container(ctx, step, record, &mut log).await {
        Ok(outcome) => outcome,
        Err(msg) => (Status::Error, None, Some(msg)),
    };
    if let Some(e) = &error {
        log.system(e);
    }
    log.close().await;
    if let Err(e) = store
        .finish_step(record.id, status, code, error.as_deref())
        .await
    {
        tracing::error!(step = record.id, error = %e, "could not record the end of a step");
    }
    status
}

pub(crate) fn step_secrets(ctx: &Context, step: &Step) -> Vec<String> {
    // Every secret of the repository is masked, not only the step's own: a
    // step may read another's value from the shared workspace.
    let _ = step;
    ctx.secrets.values().cloned().collect()
}

type Outcome = (Status, Option<i64>, Option<String>);

async fn step_container(
    ctx: &Context,
    step: &Step,
    record: &StepRecord,
    log: &mut StepLog,
) -> Result<Outcome, String> {
    let p = &ctx.pipeline;
    crate::pull::ensure_image(ctx, &step.image).await?;
    let mut spec = ContainerSpec::new(&step.image)
        .name(format!("{}-{}", ctx.prefix, step.name))
        .shell(step.script())
        .working_dir(WORKSPACE)
        .volume(ctx.volume.clone(), WORKSPACE)
        .pids_limit(ctx.ci.options().limits.pids)
        .env("CI", "true")
        .env("SLIPWAY", "true")
        .env("CI_REPO", ctx.repo.full_name())
        .env("CI_PIPELINE_NUMBER", p.number.to_string())
        .env("CI_COMMIT_SHA", &p.sha)
        .env("CI_COMMIT_REF", &p.ref_name)
        .env("CI_COMMIT_BRANCH", p.branch().unwrap_or_default())
        .env("CI_STEP_NAME", &step.name)
        .env("CI_WORKSPACE", WORKSPACE);
    spec.init = true;
    spec = spec.limits(step.resources.memory_bytes, step.resources.nano_cpus);
    for (path, volume) in &ctx.cache {
        spec = spec.volume(volume.clone(), format!("{WORKSPACE}/{path}"));
    }
    if let Some(net) = &ctx.network {
        spec = spec.network(NetworkMode::Named {
            name: net.clone(),
            aliases: vec![step.name.clone()],
        });
    }
    for (k, v) in &step.environment {
        spec = spec.env(k, v);
    }
    for name in &step.secrets {
        let value = ctx.secrets.get(name).ok_or_else(|| {
            format!(
                "secret {name:?} is not defined for {}; add it with `PUT /api/v1/repos/{}/secrets/{name}`",
                ctx.repo.full_name(),
                ctx.repo.full_name()
            )
        })?;
        spec = spec.env(name, value);
    }
    spec.labels = ctx.labels.clone();
    spec.labels
        .insert("io.slipway.step".into(), step.name.clone());
    let rt = &ctx.rt;
    let id = rt.create(&spec).await.map_err(|e| e.to_string())?;
    let result = async {
        checkout(ctx, &id).await?;
        ctx.ci
            .store()
            .start_step(record.id)
            .await
            .map_err(|e| e.to_string())?;
        rt.start(&id).await.map_err(|e| e.to_string())?;
        let mut output = Box::pin(rt.logs(
            &id,
            LogOptions {
                follow: true,
                ..Default::default()
            },
        ));
        let mut timed_out = false;
        let mut cancelled = false;
        let deadline = tokio::time::sleep(step.timeout);
        tokio::pin!(deadline);
        let mut stream_open = true;
        let mut killed = false;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        // Read output until the container ends; kill it on timeout or cancel.
        loop {
            tokio::select! {
                chunk = output.next(), if stream_open => match chunk {
                    Some(Ok(c)) => log.push(c.stream, &c.data).await,
                    Some(Err(e)) => { tracing::warn!(error = %e, "log stream failed"); stream_open = false; }
                    None => stream_open = false,
                },
                _ = tick.tick() => log.flush().await,
                _ = &mut deadline, if !killed => {
                    timed_out = true;
                    killed = true;
                    let _ = rt.kill(&id, None).await;
                }
                _ = ctx.cancel.cancelled(), if !killed => {
                    cancelled = true;
                    killed = true;
                    let _ = rt.kill(&id, None).await;
                }
            }
            if !stream_open {
                break;
            }
        }
        // The output stream can end early (engine hiccup): still honour the deadline and cancel.
        if !killed {
            tokio::select! {
                _ = rt.wait(&id) => {}
                _ = &mut deadline => { timed_out = true; let _ = rt.kill(&id, None).await; }
                _ = ctx.cancel.cancelled() => { cancelled = true; let _ = rt.kill(&id, None).await; }
            }
        }
        let exit = rt.wait(&id).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(if cancelled {
            (Status::Cancelled, Some(exit.code), Some("cancelled".into()))
        } else if timed_out {
            (
                Status::Failure,
                Some(exit.code),
                Some(format!(
                    "timed out after {}s and was killed",
                    step.timeout.as_secs()
                )),
            )
        } else if exit.code == 0 {
            (Status::Success, Some(0), None)
        } else if exit.oom_killed {
            (
                Status::Failure,
                Some(exit.code),
                Some(format!(
                    "out of memory: killed at its limit of {}; ask for more with `resources: {{memory: …}}`",
                    step.resources
                        .memory_bytes
                        .map(slipway_domain::limits::format_bytes)
                        .unwrap_or_else(|| "the host's memory".into())
                )),
            )
        } else {
            (
                Status::Failure,
                Some(exit.code),
                Some(format!("exited with code {}", exit.code)),
            )
        })
    }
    .await;
    // Removal runs in the background so dependents start sooner; the
    // pipeline's final cleanup by label catches anything it misses.
    let rt = rt.clone();
    tokio::spawn(async move {
        let _ = rt.remove(&id).await;
    });
    result
}

/// How long cleanup waits before giving up on a slow engine.
pub(crate) const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);
