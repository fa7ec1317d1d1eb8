//! The service: validation, bounded queue, per-user limits, workers.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use slipway_runtime::labels::OWNER;
use slipway_runtime::{LabelFilter, Runtime};
use slipway_store::{ExecJobRecord, NewExecJob, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::fair_queue::{FairQueue, UserQueue};
use crate::metrics::{lang, JobLabels, Metrics};
use crate::model::{JobRequest, JobResult, JobState};
use crate::pool::{Pool, PoolConfig};
use crate::runtimes::{self, RuntimeDef};
use crate::sandbox::{self, Limits, Shape, INSTANCE_LABEL};

/// Limits and sizes of the service (from the server configuration).
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// Jobs run at the same time.
    pub workers: usize,
    /// Jobs of one user running at the same time (at least 1, at most
    /// `workers`); [`ExecConfig::default_running_cap`] unless configured.
    /// Free workers beyond it stay free for other users' jobs.
    pub max_running_per_user: usize,
    /// Pending jobs (all users) before submissions get 429.
    pub max_pending: i64,
    /// Pending jobs of one user before their submissions get 429.
    pub max_pending_per_user: i64,
    /// Submissions one user may make per minute.
    pub submissions_per_minute: usize,
    /// Claims of one job before a crash-interrupted job is given up.
    pub max_attempts: i64,
    /// Files per job.
    pub max_files: usize,
    /// Total bytes of files, stdin and arguments per job.
    pub max_total_bytes: usize,
    /// Default and maximum compile wall time.
    pub compile_timeout_ms: (u64, u64),
    /// Default and maximum run wall time.
    pub run_timeout_ms: (u64, u64),
    /// Default and maximum memory limit.
    pub memory_bytes: (i64, i64),
    /// Processes and threads per sandbox.
    pub pids: i64,
    /// CPUs per sandbox, in billionths of a CPU (Docker's `NanoCpus`).
    pub nano_cpus: i64,
    /// Bytes of stdout/stderr kept per phase.
    pub output_cap: usize,
    /// The warm pool of sandboxes.
    pub pool: PoolConfig,
}

impl Default for ExecConfig {
    fn default() -> Self {
        ExecConfig {
            workers: 4,
            max_running_per_user: Self::default_running_cap(4),
            max_pending: 256,
            max_pending_per_user: 64,
            submissions_per_minute: 600,
            max_attempts: 3,
            max_files: 32,
            max_total_bytes: 512 * 1024,
            compile_timeout_ms: (10_000, 120_000),
            run_timeout_ms: (3_000, 60_000),
            memory_bytes: (256 << 20, 1 << 30),
            pids: 64,
            nano_cpus: 1_000_000_000,
            output_cap: 64 * 1024,
            pool: PoolConfig::default(),
        }
    }
}

impl ExecConfig {
    /// The per-user running cap when none is configured: half the workers,
    /// rounded up, at least 1. One user's backlog then leaves the other half
    /// free, so another user's job starts at once instead of after one of
    /// theirs ends.
    pub fn default_running_cap(workers: usize) -> usize {
        workers.div_ceil(2).max(1)
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request is invalid (unknown language, bad file name, limits…).
    #[error("{0}")]
    Invalid(String),
    /// Too many jobs are waiting (globally or for this user); retry later.
    #[error("{message}")]
    Busy {
        /// Why.
        message: String,
        /// Suggested wait before retrying.
        retry_after_secs: u64,
    },
    /// The language's image is not built on this server (Slipway never
    /// pulls): the message says which command builds it.
    #[error("{0}")]
    NotInstalled(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a user is told when `def`'s image is missing: which command builds it.
pub fn missing_image_message(def: &RuntimeDef) -> String {
    if def.is_busybox() {
        return format!(
            "the {} image `{}` is not on this server yet: it is made at start-up; \
             if this persists, run `slipway images bootstrap` on the server's machine",
            def.language, def.image
        );
    }
    format!(
        "the {} {} image `{}` is not built on this server: build it on the server's machine \
         with `slipway exec images build {}` (Debian packages through debootstrap, a few minutes)",
        def.language, def.version, def.image, def.language
    )
}

/// Cheap counters for the monitoring issue to export later.
#[derive(Debug, Default)]
pub struct Counters {
    /// Jobs accepted.
    pub submitted: AtomicU64,
    /// Submissions refused with 429.
    pub rejected: AtomicU64,
    /// Jobs completed by a worker.
    pub completed: AtomicU64,
}

/// Handle to the running service; cheap to clone.
#[derive(Clone)]
pub struct ExecService {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    rt: Runtime,
    config: ExecConfig,
    /// Persisted id of this server's sandboxes (cleanup after a crash).
    instance: String,
    /// Unique per process: claims of a previous process never match.
    process: String,
    wake: Notify,
    /// Picks whose job runs next; held while a worker claims.
    fair: tokio::sync::Mutex<FairQueue>,
    /// Woken when the job with this id is finished (for [`ExecService::wait`]).
    finished: Mutex<HashMap<String, Arc<Notify>>>,
    running: Mutex<HashMap<String, CancellationToken>>,
    recent: Mutex<HashMap<i64, VecDeque<Instant>>>,
    counters: Counters,
    metrics: Arc<Metrics>,
    pool: Arc<Pool>,
    /// Language images seen present; checked once each, then trusted (a
    /// sandbox that finds one gone still fails with the same message).
    images_seen: Mutex<std::collections::HashSet<String>>,
}

/// `bytes` random bytes as hex (ids, instance and sandbox names).
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), &mut buf[..]);
    hex::encode(buf)
}

impl ExecService {
    /// Recover after a previous process (remove its sandboxes, requeue its
    /// running jobs), then start the workers in the background once the
    /// busybox image exists.
    pub async fn start(store: Store, rt: Runtime, config: ExecConfig) -> Result<Self, String> {
        let instance = match store
            .setting("exec.instance")
            .await
            .map_err(|e| e.to_string())?
        {
            Some(id) => id,
            None => {
                let id = random_hex(8);
                store
                    .set_setting("exec.instance", &id)
                    .await
                    .map_err(|e| e.to_string())?;
                id
            }
        };
        let leftovers = LabelFilter::managed()
            .with(OWNER, "exec")
            .with(INSTANCE_LABEL, &instance);
        if let Err(e) = rt.cleanup(&leftovers).await {
            tracing::warn!(error = %e, "could not remove leftover sandboxes");
        }
        let exhausted = serde_json::to_string(&JobResult {
            error: Some("the server stopped during every attempt of this job".into()),
            ..Default::default()
        })
        .unwrap_or_default();
        let (requeued, failed) = store
            .requeue_exec_jobs(config.max_attempts, &exhausted)
            .await
            .map_err(|e| e.to_string())?;
        if requeued + failed > 0 {
            tracing::info!(requeued, failed, "recovered interrupted exec jobs");
        }
        let metrics = Arc::new(Metrics::default());
        let (pending, _) = store
            .count_pending_exec_jobs(0)
            .await
            .map_err(|e| e.to_string())?;
        metrics.queue_length.set(pending);
        let pool = Pool::new(
            rt.clone(),
            instance.clone(),
            config.pool.clone(),
            metrics.clone(),
        );
        let running_cap = config.max_running_per_user.min(config.workers.max(1));
        let service = ExecService {
            inner: Arc::new(Inner {
                store,
                rt,
                config,
                instance,
                process: random_hex(4),
                wake: Notify::new(),
                fair: tokio::sync::Mutex::new(FairQueue::new(running_cap)),
                finished: Mutex::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                recent: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                metrics,
                pool,
                images_seen: Mutex::new(Default::default()),
            }),
        };
        tracing::info!(instance = %service.inner.instance, "code execution service started");
        let starter = service.clone();
        tokio::spawn(async move {
            if let Err(e) = slipway_runtime::images::ensure_busybox(&starter.inner.rt).await {
                tracing::error!(error = %e, "cannot bootstrap the busybox image");
            }
            for n in 0..starter.inner.config.workers.max(1) {
                let worker = starter.clone();
                tokio::spawn(async move { worker.work(n).await });
            }
        });
        Ok(service)
    }

    /// The configuration in force.
    pub fn config(&self) -> &ExecConfig {
        &self.inner.config
    }

    /// Counters since start.
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// Add the service's metrics (queue, jobs, latencies, warm pool) to `registry`.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }

    /// The Docker connection (for image checks).
    pub fn runtime(&self) -> &Runtime {
        &self.inner.rt
    }

    /// Removes the warm pool's idle sandboxes at a clean shutdown (queued
    /// jobs stay in the store and run after the next start).
    pub async fn shutdown(&self) -> usize {
        self.inner.pool.drain().await
    }

    /// Validate, apply the queue bounds and persist a job for `owner_id`;
    /// only then is it acknowledged.
    pub async fn submit(
        &self,
        owner_id: i64,
        req: JobRequest,
    ) -> Result<ExecJobRecord, SubmitError> {
        let def = validate(&self.inner.config, &req)?;
        self.check_image(def).await?;
        let c = &self.inner.config;
        let (all, mine) = self.inner.store.count_pending_exec_jobs(owner_id).await?;
        let busy = |message: String| {
            self.inner.counters.rejected.fetch_add(1, Ordering::Relaxed);
            self.inner.metrics.rejected.inc();
            SubmitError::Busy {
                message,
                retry_after_secs: 1,
            }
        };
        if all >= c.max_pending {
            return Err(busy(format!(
                "the execution queue is full ({all} jobs waiting); retry shortly"
            )));
        }
        if mine >= c.max_pending_per_user {
            return Err(busy(format!(
                "you have {mine} jobs waiting (limit {}); wait for some to finish",
                c.max_pending_per_user
            )));
        }
        self.rate_check(owner_id).map_err(busy)?;
        let request =
            serde_json::to_string(&req).map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let rec = self
            .inner
            .store
            .insert_exec_job(NewExecJob {
                id: &random_hex(16),
                owner_id,
                language: &def.language,
                version: &def.version,
                request: &request,
            })
            .await?;
        self.inner
            .counters
            .submitted
            .fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.queue_length.inc();
        self.inner.wake.notify_one();
        Ok(rec)
    }

    /// Sliding one-minute window of submissions per user.
    fn rate_check(&self, owner_id: i64) -> Result<(), String> {
        let limit = self.inner.config.submissions_per_minute;
        let mut recent = self.inner.recent.lock().unwrap_or_else(|e| e.into_inner());
        let q = recent.entry(owner_id).or_default();
        let now = Instant::now();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            q.pop_front();
        }
        if q.len() >= limit {
            return Err(format!(
                "rate limit: at most {limit} submissions per minute; retry shortly"
            ));
        }
        q.push_back(now);
        Ok(())
    }

    /// Cancel `owner_id`'s job; returns the state it had, None if it is not theirs.
    pub async fn cancel(&self, id: &str, owner_id: i64) -> Result<Option<JobState>, StoreError> {
        let before = self.inner.store.cancel_exec_job(id, owner_id).await?;
        if before.as_deref() == Some(JobState::Pending.as_str()) {
            self.queue_left();
            self.inner
                .metrics
                .jobs
                .get_or_create(&JobLabels {
                    language: "unknown".into(),
                    outcome: JobState::Cancelled.as_str().into(),
                })
                .inc();
        }
        if let Some(token) = self
            .inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
        {
            token.cancel();
        }
        Ok(before.as_deref().and_then(JobState::parse))
    }

    /// Wait until job `id` is finished or `timeout` passes; returns its last record.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<ExecJobRecord, StoreError> {
        let until = Instant::now() + timeout;
        let notify = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone();
        let result = self.wait_on(id, until, &notify).await;
        let mut finished = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Two references: the map's and ours; drop the entry when no other waiter holds it.
        if Arc::strong_count(&notify) <= 2 {
            finished.remove(id);
        }
        result
    }

    async fn wait_on(
        &self,
        id: &str,
        until: Instant,
        notify: &Notify,
    ) -> Result<ExecJobRecord, StoreError> {
        loop {
            let woken = notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let rec = self
                .inner
                .store
                .exec_job(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("job {id}")))?;
            let done = JobState::parse(&rec.state).is_none_or(JobState::is_terminal);
            if done || Instant::now() >= until {
                return Ok(rec);
            }
            // Woken by the worker that finishes it; polling covers cancels and other processes.
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }

    async fn work(self, n: usize) {
        let worker = format!("{}-{}/{n}", self.inner.instance, self.inner.process);
        loop {
            match self.claim_next(&worker).await {
                Ok(Some(job)) => {
                    let waited = (job.started_at.unwrap_or_else(chrono::Utc::now) - job.created_at)
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0;
                    self.inner
                        .metrics
                        .queue_wait
                        .get_or_create(&lang(&job.language))
                        .observe(waited);
                    self.process(job, &worker).await
                }
                Ok(None) => {
                    tokio::select! {
                        _ = self.inner.wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming an exec job failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Claims for `worker` the job the fair queue picks (see
    /// [`crate::fair_queue`]); None when nothing waits or every user with
    /// waiting jobs is at the running cap. Workers claim one at a time, so
    /// the running counts the choice rests on are never stale.
    async fn claim_next(&self, worker: &str) -> Result<Option<ExecJobRecord>, StoreError> {
        let mut fair = self.inner.fair.lock().await;
        let m = &self.inner.metrics;
        loop {
            let users: Vec<UserQueue> = self
                .inner
                .store
                .exec_queue_by_owner()
                .await?
                .into_iter()
                .map(|row| UserQueue {
                    owner_id: row.owner_id,
                    pending: row.pending,
                    running: row.running,
                    oldest: row.oldest,
                })
                .collect();
            let waiting: i64 = users.iter().map(|u| u.pending).sum();
            m.queue_length.set(waiting);
            m.queue_users.set(users.len() as i64);
            m.users_at_cap.set(fair.capped(&users) as i64);
            let Some(owner) = fair.pick(&users) else {
                return Ok(None);
            };
            if let Some(job) = self.inner.store.claim_exec_job_of(worker, owner).await? {
                m.queue_length.set(waiting - 1);
                return Ok(Some(job));
            }
            // Their waiting job was cancelled in between: choose again.
        }
    }

    /// One job fewer waiting (never below zero).
    fn queue_left(&self) {
        if self.inner.metrics.queue_length.dec() <= 0 {
            self.inner.metrics.queue_length.set(0);
        }
    }

    async fn process(&self, job: ExecJobRecord, worker: &str) {
        let claimed = Instant::now();
        let token = CancellationToken::new();
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), token.clone());
        let outcome = self.execute(&job, &token).await;
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.id);
        let language = lang(&job.language);
        let count = |state: JobState| {
            self.inner
                .metrics
                .jobs
                .get_or_create(&JobLabels {
                    language: job.language.clone(),
                    outcome: state.as_str().into(),
                })
                .inc();
        };
        if outcome.cancelled {
            count(JobState::Cancelled);
            return;
        }
        let state = outcome.result.state();
        let result = serde_json::to_string(&outcome.result).unwrap_or_default();
        match self
            .inner
            .store
            .complete_exec_job(
                &job.id,
                worker,
                state.as_str(),
                &result,
                outcome.output_zip.as_deref(),
            )
            .await
        {
            Ok(true) => {
                self.inner
                    .counters
                    .completed
                    .fetch_add(1, Ordering::Relaxed);
                count(state);
                self.inner
                    .metrics
                    .run_latency
                    .get_or_create(&language)
                    .observe(claimed.elapsed().as_secs_f64());
            }
            Ok(false) => tracing::debug!(job = %job.id, "completion ignored: job no longer ours"),
            Err(e) => tracing::error!(job = %job.id, error = %e, "storing an exec result failed"),
        }
        let waiters = self
            .inner
            .finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job.id)
            .cloned();
        if let Some(n) = waiters {
            n.notify_waiters();
        }
    }

    /// Refuses a submission whose language image is not in the engine, with
    /// the command that builds it, instead of a job that can only fail.
    async fn check_image(&self, def: &RuntimeDef) -> Result<(), SubmitError> {
        if self.inner.images_seen.lock().unwrap().contains(&def.image) {
            return Ok(());
        }
        match crate::images::present(&self.inner.rt, def).await {
            Ok(true) => {
                self.inner
                    .images_seen
                    .lock()
                    .unwrap()
                    .insert(def.image.clone());
                Ok(())
            }
            Ok(false) => Err(SubmitError::NotInstalled(missing_image_message(def))),
            // The engine did not answer: the job is queued and reports the problem itself.
            Err(_) => Ok(()),
        }
    }

    async fn execute(&self, job: &ExecJobRecord, token: &CancellationToken) -> sandbox::Outcome {
        let failed = |msg: String| sandbox::Outcome {
            result: JobResult {
                error: Some(msg),
                ..Default::default()
            },
            ..Default::default()
        };
        let req: JobRequest = match serde_json::from_str(&job.request) {
            Ok(r) => r,
            Err(e) => return failed(format!("stored request is unreadable: {e}")),
        };
        let def = match validate(&self.inner.config, &req) {
            Ok(d) => d,
            Err(e) => return failed(e.to_string()),
        };
        let c = &self.inner.config;
        let limits = Limits {
            compile_timeout_ms: clamp(req.compile_timeout, c.compile_timeout_ms),
            run_timeout_ms: clamp(req.run_timeout, c.run_timeout_ms),
            memory_bytes: req
                .memory_limit
                .unwrap_or(c.memory_bytes.0)
                .clamp(8 << 20, c.memory_bytes.1),
            pids: c.pids,
            nano_cpus: c.nano_cpus,
            output_cap: c.output_cap,
            work_bytes: 64 << 20,
            tmp_bytes: 256 << 20,
            max_file_bytes: 16 << 20,
        };
        let files = req
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                (
                    file_name(def, i, f.name.as_deref()),
                    f.content.clone().into_bytes(),
                )
            })
            .collect();
        let input = sandbox::Input {
            def,
            files,
            stdin: req.stdin.as_deref().unwrap_or("").as_bytes(),
            args: &req.args,
            limits,
        };
        self.sandboxed(job, &input, token).await
    }

    /// Run `input` in a warm sandbox when one fits (default memory limit),
    /// else in one started for it; the container is destroyed afterwards, off
    /// the job's path.
    async fn sandboxed(
        &self,
        job: &ExecJobRecord,
        input: &sandbox::Input<'_>,
        token: &CancellationToken,
    ) -> sandbox::Outcome {
        let rt = &self.inner.rt;
        let shape = Shape::of(input.def, &input.limits);
        let job_name = format!("slipway-exec-job-{}-{}", job.id, job.attempts);
        let poolable = self.inner.config.pool.size > 0
            && input.limits.memory_bytes == self.inner.config.memory_bytes.0;
        let warm = if poolable {
            self.inner.pool.take(shape)
        } else {
            None
        };
        let mut attempts = 0;
        let mut warm = warm;
        loop {
            attempts += 1;
            let sandbox = match warm.take() {
                Some(w) => {
                    // Name it after the job (for operators), without waiting.
                    let (rt, id, to) = (rt.clone(), w.id.clone(), job_name.clone());
                    tokio::spawn(async move {
                        let rename = bollard::container::RenameContainerOptions { name: to };
                        if let Err(e) = rt.docker().rename_container(&id, rename).await {
                            tracing::debug!(container = %id, error = %e, "sandbox rename failed");
                        }
                    });
                    w
                }
                None => {
                    let labels = sandbox::sandbox_labels(&self.inner.instance, &shape);
                    let self_destruct = self.inner.config.pool.self_destruct();
                    match sandbox::prepare(rt, &job_name, shape, labels, self_destruct).await {
                        Ok(w) => w,
                        Err(e) => return sandbox::Outcome::failed(e),
                    }
                }
            };
            let id = sandbox.id.clone();
            let result = sandbox.run(input, token).await;
            let rt2 = rt.clone();
            tokio::spawn(async move { sandbox::destroy(&rt2, &id).await });
            match result {
                Ok(outcome) => return outcome,
                Err(sandbox::Stale(e)) if attempts < 2 => {
                    tracing::warn!(job = %job.id, error = %e, "warm sandbox was stale; starting another");
                }
                Err(sandbox::Stale(e)) => return sandbox::Outcome::failed(e),
            }
        }
    }
}

fn clamp(asked: Option<u64>, (default, max): (u64, u64)) -> u64 {
    asked.unwrap_or(default).clamp(100, max)
}

/// The name a submitted file gets in the sandbox. The first file is the entry
/// point, so it always takes the runtime's source file name (`main.py`,
/// `main.c`, …) that the compile and run commands use; the others keep their
/// own names (or `fileN` when they have none).
fn file_name(def: &RuntimeDef, i: usize, given: Option<&str>) -> String {
    match given.filter(|n| !n.is_empty()) {
        _ if i == 0 => def.source_file.clone(),
        Some(n) => n.to_owned(),
        None => format!("file{i}"),
    }
}

/// Check a request against the runtimes and the server's bounds.
pub fn validate(c: &ExecConfig, req: &JobRequest) -> Result<&'static RuntimeDef, SubmitError> {
    let invalid = |m: String| Err(SubmitError::Invalid(m));
    let Some(def) = runtimes::find(&req.language, req.version.as_deref()) else {
        return invalid(format!(
            "unknown language `{}`{}; GET /api/v1/exec/runtimes lists them",
            req.language,
            req.version
                .as_deref()
                .map(|v| format!(" version {v}"))
                .unwrap_or_default()
        ));
    };
    if req.files.is_empty() || req.files.len() > c.max_files {
        return invalid(format!("send between 1 and {} files", c.max_files));
    }
    let mut total = req.stdin.as_deref().map_or(0, str::len);
    let mut names = std::collections::HashSet::new();
    for (i, f) in req.files.iter().enumerate() {
        total += f.content.len();
        // A given name must be acceptable even for the entry point, which is
        // then stored under the runtime's source file name.
        for name in [
            f.name.clone().filter(|n| !n.is_empty()),
            Some(file_name(def, i, None)),
        ]
        .into_iter()
        .flatten()
        {
            if name.len() > 100
                || name.contains('/')
                || name.contains('\\')
                || name.contains('\0')
                || name == "."
                || name == ".."
                || name.contains("..")
                || name.starts_with(".slipway")
                || name == ".bin"
                || name == "output"
            {
                return invalid(format!(
                    "file name `{name}` is not allowed: use a plain name without `/` or `..`"
                ));
            }
        }
        let name = file_name(def, i, f.name.as_deref());
        if !names.insert(name.clone()) {
            return invalid(format!("file name `{name}` is used twice"));
        }
    }
    if req.args.len() > 64 {
        return invalid("at most 64 arguments".into());
    }
    if req.args.iter().any(|a| a.contains('\0')) {
        return invalid("arguments cannot contain NUL characters".into());
    }
    total += req.args.iter().map(String::len).sum::<usize>();
    if total > c.max_total_bytes {
        return invalid(format!(
            "files, stdin and arguments total {total} bytes; the limit is {}",
            c.max_total_bytes
        ));
    }
    for (what, v, max) in [
        (
            "compile_timeout",
            req.compile_timeout,
            c.compile_timeout_ms.1,
        ),
        ("run_timeout", req.run_timeout, c.run_timeout_ms.1),
    ] {
        if v.is_some_and(|v| v == 0 || v > max) {
            return invalid(format!("{what} must be between 1 and {max} ms"));
        }
    }
    if req
        .memory_limit
        .is_some_and(|m| m < 8 << 20 || m > c.memory_bytes.1)
    {
        return invalid(format!(
            "memory_limit must be between {} and {} bytes",
            8 << 20,
            c.memory_bytes.1
        ));
    }
    Ok(def)
}

/// The JSON clients see for a job.
pub fn job_view(rec: &ExecJobRecord) -> Value {
    let result: JobResult = rec
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok())
        .unwrap_or_default();
    json!({
        "id": rec.id,
        "state": rec.state,
        "language": rec.language,
        "version": rec.version,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "attempts": rec.attempts,
        "compile": result.compile,
        "run": result.run,
        "error": result.error,
        "has_output": rec.has_output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobFile;

    fn req(name: Option<&str>) -> JobRequest {
        JobRequest {
            language: "busybox-sh".into(),
            version: None,
            files: vec![JobFile {
                name: name.map(Into::into),
                content: "echo hi".into(),
            }],
            stdin: None,
            args: vec![],
            compile_timeout: None,
            run_timeout: None,
            memory_limit: None,
        }
    }

    #[test]
    fn names_and_limits_are_validated() {
        let c = ExecConfig::default();
        assert!(validate(&c, &req(None)).is_ok());
        assert!(validate(&c, &req(Some("main.sh"))).is_ok());
        for bad in ["../x", "a/b", "..", ".slipway", "output"] {
            assert!(validate(&c, &req(Some(bad))).is_err(), "{bad}");
        }
        let mut r = req(None);
        r.run_timeout = Some(10_000_000);
        assert!(validate(&c, &r).is_err());
        r = req(None);
        r.language = "cobol".into();
        assert!(validate(&c, &r).is_err());
    }
}
