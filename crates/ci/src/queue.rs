//! From push events to queued pipelines.
//!
//! The push path calls [`Ci::on_push`] right after the events are recorded;
//! a cursor in the settings table remembers the last event handled, so
//! events recorded just before a crash are queued at the next start. The
//! unique event id on pipelines makes handling an event twice harmless.

use crate::config::{self, ImageBuild, Pipeline, MAX_FILE_BYTES, PIPELINE_FILE};
use crate::Ci;
use slipway_domain::{AppRecord, PipelineRecord, PushEvent, Repo, Status};
use slipway_store::{NewPipeline, NewStep, StoreError};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

const CURSOR_KEY: &str = "ci.event_cursor";
const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// What reading the pipeline file at a commit gave.
#[derive(Debug)]
pub enum FileAt {
    /// The commit has no `.slipway.yml`.
    Missing,
    /// Its contents (possibly over the size limit, truncated to limit + 1).
    Text(String),
}

/// Reads `.slipway.yml` at `sha` from a bare repository, at most
/// [`MAX_FILE_BYTES`] + 1 bytes of it.
pub async fn read_pipeline_file(git_bin: &Path, repo: &Path, sha: &str) -> Result<FileAt, String> {
    let mut child = tokio::process::Command::new(git_bin)
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "blob", &format!("{sha}:{PIPELINE_FILE}")])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading {PIPELINE_FILE}: {e}"))?;
    }
    if out.len() > MAX_FILE_BYTES {
        let _ = child.kill().await;
        return Ok(FileAt::Text(String::from_utf8_lossy(&out).into_owned()));
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() {
        return Ok(FileAt::Missing);
    }
    match String::from_utf8(out) {
        Ok(s) => Ok(FileAt::Text(s)),
        Err(_) => Ok(FileAt::Text("\u{fffd} (not UTF-8)".into())),
    }
}

/// The pipeline rows for a valid file: steps whose `when:` does not match are skipped up front.
pub fn new_steps(p: &Pipeline, branch: &str, event: &str) -> Vec<NewStep> {
    let all_steps: Vec<String> = p.steps.iter().map(|s| s.name.clone()).collect();
    let images = p.images.iter().map(|b| NewStep {
        name: b.step_name(),
        image: format!("docker build {}", b.dockerfile),
        depends_on: all_steps.clone(),
        status: Status::Pending,
        error: None,
    });
    p.steps
        .iter()
        .map(|s| {
            let runs = s.when.matches(branch, event);
            NewStep {
                name: s.name.clone(),
                image: s.image.clone(),
                depends_on: s.depends_on.clone(),
                status: if runs {
                    Status::Pending
                } else {
                    Status::Skipped
                },
                error: (!runs).then(|| "skipped: `when:` does not match".to_string()),
            }
        })
        .chain(images)
        .collect()
}

/// The image builds for `apps` (those deployed from `branch` on pushes).
pub fn image_builds(apps: &[AppRecord], branch: &str, event: &str) -> Vec<ImageBuild> {
    apps.iter()
        .filter(|a| event == "manual" || (event == "push" && a.spec.branch == branch))
        .map(|a| ImageBuild {
            app_id: a.id,
            app: a.name.clone(),
            dockerfile: a.spec.dockerfile.clone(),
        })
        .collect()
}

impl Ci {
    /// Queues a pipeline for each pushed branch or tag whose commit has a
    /// `.slipway.yml`. Never fails the push: problems are logged.
    pub async fn on_push(&self, repo: &Repo, events: &[PushEvent]) {
        let mut last = 0;
        for ev in events {
            last = last.max(ev.id);
            if let Err(e) = self.handle_event(repo, ev).await {
                tracing::error!(repo = %repo.full_name(), event = ev.id, error = %e, "could not queue a pipeline");
            }
        }
        self.advance_cursor(last).await;
        self.wake();
    }

    async fn handle_event(
        &self,
        repo: &Repo,
        ev: &PushEvent,
    ) -> Result<Option<PipelineRecord>, String> {
        let (event, branch) = if let Some(b) = ev.ref_name.strip_prefix("refs/heads/") {
            ("push", b)
        } else if let Some(t) = ev.ref_name.strip_prefix("refs/tags/") {
            ("tag", t)
        } else {
            return Ok(None);
        };
        if ev.new_sha == ZERO_SHA || ev.new_sha.bytes().all(|b| b == b'0') {
            return Ok(None);
        }
        let path = self.repo_path(repo);
        let apps = self
            .store()
            .apps_for_repo(repo.id)
            .await
            .map_err(|e| e.to_string())?;
        let builds = image_builds(&apps, branch, event);
        let text = match read_pipeline_file(self.git_bin(), &path, &ev.new_sha).await? {
            FileAt::Missing if builds.is_empty() => return Ok(None),
            FileAt::Missing => None,
            FileAt::Text(t) => Some(t),
        };
        let new = self.new_pipeline(
            repo.id,
            &ev.ref_name,
            &ev.new_sha,
            event,
            branch,
            text.as_deref(),
            builds,
        );
        let new = NewPipeline {
            event_id: Some(ev.id),
            actor: ev.pusher.clone(),
            ..new
        };
        match self.store().create_pipeline(&new).await {
            Ok(p) => {
                tracing::info!(repo = %repo.full_name(), number = p.number, status = %p.status, "pipeline queued");
                Ok(Some(p))
            }
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A pipeline row for `text` read at `sha`: pending with steps when valid,
    /// `error` with the validation message otherwise. Without a file, only
    /// the image builds run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_pipeline(
        &self,
        repo_id: i64,
        ref_name: &str,
        sha: &str,
        event: &str,
        branch: &str,
        text: Option<&str>,
        images: Vec<ImageBuild>,
    ) -> NewPipeline {
        let base = NewPipeline {
            repo_id,
            event_id: None,
            event: event.to_string(),
            ref_name: ref_name.to_string(),
            sha: sha.to_string(),
            actor: String::new(),
            status: Status::Pending,
            error: None,
            config: None,
            retry_of: None,
            steps: Vec::new(),
        };
        let parsed = match text {
            Some(text) => config::parse(text),
            None => Ok(Pipeline {
                steps: Vec::new(),
                services: Vec::new(),
                cache: Vec::new(),
                images: Vec::new(),
            }),
        };
        match parsed.map(|p| Pipeline { images, ..p }) {
            Ok(p) => NewPipeline {
                config: serde_json::to_string(&p).ok(),
                steps: new_steps(&p, branch, event),
                ..base
            },
            Err(e) => NewPipeline {
                status: Status::Error,
                error: Some(e.to_string()),
                ..base
            },
        }
    }

    /// Queues push events recorded but not handled (a crash between the two).
    pub(crate) async fn catch_up(&self) {
        let cursor = match self.store().setting(CURSOR_KEY).await {
            Ok(Some(v)) => v.parse::<i64>().unwrap_or(0),
            // First start with CI: pushes from before it existed are history, not work.
            Ok(None) => {
                match self.store().last_push_event_id().await {
                    Ok(last) => self.advance_cursor(last).await,
                    Err(e) => tracing::error!(error = %e, "cannot read push events"),
                }
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the CI event cursor");
                return;
            }
        };
        let mut after = cursor;
        loop {
            let events = match self.store().push_events_since(after, 500).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read push events");
                    return;
                }
            };
            let Some(last) = events.last().map(|e| e.id) else {
                break;
            };
            for ev in &events {
                let Ok(Some(repo)) = self.store().repo_by_id(ev.repo_id).await else {
                    continue;
                };
                if let Err(e) = self.handle_event(&repo, ev).await {
                    tracing::error!(event = ev.id, error = %e, "could not queue a pipeline");
                }
            }
            after = last;
            self.advance_cursor(last).await;
        }
    }

    async fn advance_cursor(&self, to: i64) {
        let _guard = self.inner.cursor_lock.lock().await;
        let current = self
            .store()
            .setting(CURSOR_KEY)
            .await
            .ok()
            .flatten()
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0);
        if to > current {
            if let Err(e) = self.store().set_setting(CURSOR_KEY, &to.to_string()).await {
                tracing::error!(error = %e, "cannot save the CI event cursor");
            }
        }
    }
}
