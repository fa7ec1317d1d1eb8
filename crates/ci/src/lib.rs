//! Slipway's continuous integration.
//!
//! A push to a repository with a `.slipway.yml` queues a pipeline ([`config`]
//! parses and validates the file, [`queue`] turns push events into queued
//! pipelines); the worker ([`worker`]) claims queued pipelines from the store
//! and the executor ([`executor`]) runs their steps as containers through
//! `slipway-runtime`, with logs masked ([`mask`]) and stored line by line so
//! they can be followed live.

#![warn(missing_docs)]

pub mod config;
pub mod executor;
mod image;
pub mod image_policy;
mod logs;
pub mod mask;
mod pull;
pub mod queue;
mod stack_build;
pub use slipway_auth::secrets;
pub mod webhooks;
pub mod worker;

use slipway_domain::{PipelineRecord, Repo, Status};
use slipway_runtime::Runtime;
use slipway_store::{NewPipeline, Store, StoreError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{Mutex, Notify, OnceCell};
use tokio_util::sync::CancellationToken;

/// How the CI service is set up by the server.
#[derive(Debug, Clone)]
pub struct CiOptions {
    /// The server's data directory (repositories live in `<data>/repos`).
    pub data_dir: PathBuf,
    /// The git program.
    pub git_bin: PathBuf,
    /// Pipelines run at the same time.
    pub concurrency: usize,
    /// Default and maximum memory/CPU of steps, services and image builds.
    pub limits: slipway_domain::LimitPolicy,
    /// Which images steps, services and Dockerfiles may use.
    pub images: image_policy::ImagePolicy,
    /// What webhook URLs may reach besides public addresses.
    pub egress: slipway_egress::EgressPolicy,
}

/// Limits of CI containers when the server sets none: 2 GiB and 2 CPUs by
/// default, at most 8 GiB and 4 CPUs, 4096 processes (generous for parallel
/// builds; a fork bomb cannot take the host down).
pub const DEFAULT_STEP_LIMITS: slipway_domain::LimitPolicy = slipway_domain::LimitPolicy {
    default_memory_bytes: 2 << 30,
    max_memory_bytes: 8 << 30,
    default_nano_cpus: 2_000_000_000,
    max_nano_cpus: 4_000_000_000,
    pids: 4096,
};

/// The CI service: queueing, running, cancelling and retrying pipelines.
/// Cheap to clone; every clone shares one worker.
#[derive(Clone)]
pub struct Ci {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    options: CiOptions,
    wake: Notify,
    runtime: OnceCell<Runtime>,
    instance: OnceCell<String>,
    running: std::sync::Mutex<HashMap<i64, CancellationToken>>,
    cursor_lock: Mutex<()>,
    secret_box: std::sync::OnceLock<secrets::SecretBox>,
    deployer: std::sync::OnceLock<slipway_deploy::Deployer>,
    registry_hosts: std::sync::OnceLock<Vec<String>>,
}

/// Why a cancel or retry was refused.
#[derive(Debug, thiserror::Error)]
pub enum CiError {
    /// The pipeline is not in a state that allows it.
    #[error("{0}")]
    State(String),
    /// The request is invalid (bad URL, too many webhooks…).
    #[error("{0}")]
    Invalid(String),
    /// The secret key file could not be used.
    #[error("{0}")]
    Secret(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Ci {
    /// A CI service on `store`; nothing runs until [`Ci::start`].
    pub fn new(store: Store, options: CiOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                options,
                wake: Notify::new(),
                runtime: OnceCell::new(),
                instance: OnceCell::new(),
                running: std::sync::Mutex::new(HashMap::new()),
                cursor_lock: Mutex::new(()),
                secret_box: std::sync::OnceLock::new(),
                deployer: std::sync::OnceLock::new(),
                registry_hosts: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Connects the deployer that receives the app images pipelines build.
    pub fn set_deployer(&self, deployer: slipway_deploy::Deployer) {
        let _ = self.inner.deployer.set(deployer);
    }

    pub(crate) fn deployer(&self) -> Option<&slipway_deploy::Deployer> {
        self.inner.deployer.get()
    }

    /// Names the server's registry answers to (`host:port` of its public URL
    /// and of its listening address), known once the server is bound: images
    /// under them come from the registry ([`image_policy`]).
    pub fn set_registry_hosts(&self, hosts: Vec<String>) {
        let _ = self.inner.registry_hosts.set(hosts);
    }

    pub(crate) fn registry_hosts(&self) -> &[String] {
        self.inner.registry_hosts.get().map_or(&[], Vec::as_slice)
    }

    /// The options the server set.
    pub fn options(&self) -> &CiOptions {
        &self.inner.options
    }

    pub(crate) fn git_bin(&self) -> &Path {
        &self.inner.options.git_bin
    }

    /// The bare repository of `repo` (same layout as the git host's).
    pub(crate) fn repo_path(&self, repo: &Repo) -> PathBuf {
        self.inner
            .options
            .data_dir
            .join("repos")
            .join(&repo.owner)
            .join(format!("{}.git", repo.name))
    }

    /// The Docker connection, made on first use so a server without Docker
    /// still serves git and the API.
    pub(crate) async fn runtime(&self) -> Result<Runtime, String> {
        self.inner
            .runtime
            .get_or_try_init(Runtime::connect)
            .await
            .cloned()
            .map_err(|e| e.to_string())
    }

    /// This data directory's CI instance id, labelling its containers so
    /// several servers can share one Docker Engine.
    pub async fn instance(&self) -> Result<String, StoreError> {
        self.inner
            .instance
            .get_or_try_init(|| async {
                if let Some(v) = self.store().setting("ci.instance").await? {
                    return Ok(v);
                }
                let v = hex::encode(rand::random::<[u8; 6]>());
                self.store().set_setting("ci.instance", &v).await?;
                Ok(v)
            })
            .await
            .cloned()
    }

    /// Removes the cache volumes of a deleted repository, so that deleting
    /// a repository frees the disk its pipelines' caches used. Returns how
    /// many volumes went.
    pub async fn remove_caches(&self, repo: &Repo) -> Result<usize, String> {
        let rt = self.runtime().await?;
        let instance = self.instance().await.map_err(|e| e.to_string())?;
        let prefix = format!("slipway-ci-cache-{instance}-{}-", repo.id);
        let filter = slipway_runtime::LabelFilter::managed()
            .with(slipway_runtime::labels::OWNER, "ci-cache")
            .with(executor::REPO_LABEL, repo.full_name());
        let volumes = rt.list_volumes(&filter).await.map_err(|e| e.to_string())?;
        let mut removed = 0;
        for v in volumes.iter().filter(|v| v.name.starts_with(&prefix)) {
            match rt.remove_volume(&v.name).await {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!(volume = %v.name, error = %e, "cache volume not removed"),
            }
        }
        Ok(removed)
    }

    pub(crate) fn secret_box(&self) -> Result<&secrets::SecretBox, String> {
        if let Some(b) = self.inner.secret_box.get() {
            return Ok(b);
        }
        let b = secrets::SecretBox::load_or_create(
            &self.inner.options.data_dir.join("ci-secrets.key"),
        )?;
        Ok(self.inner.secret_box.get_or_init(|| b))
    }

    /// Stores a repository secret, encrypted at rest.
    pub async fn set_secret(&self, repo_id: i64, name: &str, value: &str) -> Result<(), CiError> {
        let sealed = self
            .secret_box()
            .and_then(|b| b.seal(repo_id, name, value))
            .map_err(CiError::Secret)?;
        Ok(self.store().set_secret(repo_id, name, &sealed).await?)
    }

    /// Decrypted secrets of a repository, for injection into steps only.
    pub(crate) async fn secret_values(
        &self,
        repo_id: i64,
    ) -> Result<HashMap<String, String>, String> {
        let sealed = self
            .store()
            .secret_values(repo_id)
            .await
            .map_err(|e| e.to_string())?;
        let b = self.secret_box()?;
        sealed
            .into_iter()
            .map(|(name, v)| b.open(repo_id, &name, &v).map(|plain| (name, plain)))
            .collect()
    }

    /// Wakes the worker (a pipeline was queued).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops a pipeline: a queued one is cancelled at once, a running one has
    /// its containers killed.
    pub async fn cancel(&self, pipeline: &PipelineRecord) -> Result<(), CiError> {
        match pipeline.status {
            Status::Pending => {
                self.store()
                    .finish_pipeline(
                        pipeline.id,
                        Status::Cancelled,
                        Some("cancelled before it started"),
                        Status::Cancelled,
                    )
                    .await?;
                Ok(())
            }
            Status::Running => {
                self.store().request_cancel(pipeline.id).await?;
                if let Some(t) = self.inner.running.lock().unwrap().get(&pipeline.id) {
                    t.cancel();
                }
                Ok(())
            }
            s => Err(CiError::State(format!(
                "pipeline #{} has already ended ({s})",
                pipeline.number
            ))),
        }
    }

    /// Queues a new pipeline with the same commit and configuration as an ended one.
    pub async fn retry(
        &self,
        pipeline: &PipelineRecord,
        repo: &Repo,
        actor: &str,
    ) -> Result<PipelineRecord, CiError> {
        if !pipeline.status.is_finished() {
            return Err(CiError::State(format!(
                "pipeline #{} is still {}; cancel it first",
                pipeline.number, pipeline.status
            )));
        }
        let branch = pipeline
            .ref_name
            .strip_prefix("refs/heads/")
            .or_else(|| pipeline.ref_name.strip_prefix("refs/tags/"))
            .unwrap_or(&pipeline.ref_name)
            .to_string();
        // The same app images as the original (its stored configuration has them).
        let images = match self.store().pipeline_config(pipeline.id).await? {
            Some(c) => serde_json::from_str::<config::Pipeline>(&c)
                .map(|p| p.images)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        // Re-read the file at the commit: the stored config exists only for valid files.
        let text =
            match queue::read_pipeline_file(self.git_bin(), &self.repo_path(repo), &pipeline.sha)
                .await
                .map_err(CiError::State)?
            {
                queue::FileAt::Missing if images.is_empty() => {
                    return Err(CiError::State(format!(
                        "commit {} has no {}",
                        pipeline.sha,
                        config::PIPELINE_FILE
                    )))
                }
                queue::FileAt::Missing => None,
                queue::FileAt::Text(t) => Some(t),
            };
        let new = self
            .new_pipeline(
                repo.id,
                &pipeline.ref_name,
                &pipeline.sha,
                &pipeline.event,
                &branch,
                text.as_deref(),
                images,
                actor,
            )
            .await;
        let created = self
            .store()
            .create_pipeline(&NewPipeline {
                retry_of: Some(pipeline.id),
                actor: actor.to_string(),
                ..new
            })
            .await?;
        self.wake();
        Ok(created)
    }

    /// Queues a manual pipeline that runs the steps of `branch`'s head and
    /// then builds and deploys `app` from it.
    pub async fn deploy(
        &self,
        repo: &Repo,
        app: &slipway_domain::AppRecord,
        branch: &str,
        actor: &str,
    ) -> Result<PipelineRecord, CiError> {
        let ref_name = format!("refs/heads/{branch}");
        let out = tokio::process::Command::new(self.git_bin())
            .arg("--git-dir")
            .arg(self.repo_path(repo))
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{ref_name}^{{commit}}"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .await
            .map_err(|e| CiError::State(format!("cannot run git: {e}")))?;
        if !out.status.success() {
            return Err(CiError::Invalid(format!(
                "{} has no branch {branch:?}; push it first",
                repo.full_name()
            )));
        }
        let sha = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let text = match queue::read_pipeline_file(self.git_bin(), &self.repo_path(repo), &sha)
            .await
            .map_err(CiError::State)?
        {
            queue::FileAt::Missing => None,
            queue::FileAt::Text(t) => Some(t),
        };
        let images = queue::image_builds(std::slice::from_ref(app), branch, "manual");
        let new = self
            .new_pipeline(
                repo.id,
                &ref_name,
                &sha,
                "manual",
                branch,
                text.as_deref(),
                images,
                actor,
            )
            .await;
        let created = self
            .store()
            .create_pipeline(&NewPipeline {
                actor: actor.to_string(),
                ..new
            })
            .await?;
        self.wake();
        Ok(created)
    }
}
