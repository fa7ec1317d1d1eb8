//! From push events to queued pipelines.
//!
//! The push path calls [`Ci::on_push`] right after the events are recorded;
//! a cursor in the settings table remembers the last event handled, so
//! events recorded just before a crash are queued at the next start. The
//! unique event id on pipelines makes handling an event twice harmless.

use crate::config::{self, ImageBuild, Pipeline, MAX_FILE_BYTES, PIPELINE_FILE};
use crate::image_policy::ImageSource;
use crate::Ci;
use slipway_domain::Resources;
use slipway_domain::{is_null_sha, AppRecord, PipelineRecord, PushEvent, Repo, Status};
use slipway_store::{NewPipeline, NewStep, StoreError};
use std::path::Path;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

const CURSOR_KEY: &str = "ci.event_cursor";

/// What reading the pipeline file at a commit gave.
#[derive(Debug)]
pub enum FileAt {
    /// The commit has no `.slipway.yml`.
    Missing,
    /// Its contents (possibly over the size limit, truncated to limit + 1).
    Text(String),
}

/// Reads `.slipway.yml` at `sha` from a bare repository, at most
/// [`MAX_FILE_BYTES`] + 1 bytes of it (one commit of [`read_pipeline_files`]).
pub async fn read_pipeline_file(git_bin: &Path, repo: &Path, sha: &str) -> Result<FileAt, String> {
    let mut files = read_pipeline_files(git_bin, repo, &[sha.to_owned()]).await?;
    Ok(files.remove(sha).unwrap_or(FileAt::Missing))
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
        limits: b.resources,
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
                limits: s.resources,
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
            resources: Default::default(),
        })
        .collect()
}

/// Most pipelines one push queues. A mirror push may move thousands of
/// branches and tags at once; past this many the remaining refs are recorded
/// (their events exist) but queue nothing, and the pusher is told so.
pub const MAX_PIPELINES_PER_PUSH: usize = 20;

/// What one push queued, for the pusher's `remote:` lines.
#[derive(Debug, Default)]
pub struct PushOutcome {
    /// Each queued pipeline (possibly `error`, with the file's validation message).
    pub pipelines: Vec<QueuedPipeline>,
    /// Refs that would have queued a pipeline past [`MAX_PIPELINES_PER_PUSH`].
    pub not_queued: usize,
}

/// A pipeline a push queued and the apps it will build and deploy.
#[derive(Debug)]
pub struct QueuedPipeline {
    /// The pipeline row as queued.
    pub pipeline: PipelineRecord,
    /// Apps whose image this pipeline builds and then deploys.
    pub apps: Vec<AppRecord>,
}

/// Reads `.slipway.yml` at each of `shas` with one `git cat-file --batch`
/// (a push of many refs would otherwise start one git per ref), keeping at
/// most [`MAX_FILE_BYTES`] + 1 bytes of each.
pub async fn read_pipeline_files(
    git_bin: &Path,
    repo: &Path,
    shas: &[String],
) -> Result<std::collections::HashMap<String, FileAt>, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut found = std::collections::HashMap::new();
    if shas.is_empty() {
        return Ok(found);
    }
    let mut child = tokio::process::Command::new(git_bin)
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch"])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("git's stdin is not piped")?;
    let input: String = shas
        .iter()
        .map(|sha| format!("{sha}:{PIPELINE_FILE}\n"))
        .collect();
    // Written from its own task: git answers while it reads, and both pipes are bounded.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(input.as_bytes()).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = BufReader::new(child.stdout.take().ok_or("git's stdout is not piped")?);
    for sha in shas {
        let mut header = String::new();
        if out
            .read_line(&mut header)
            .await
            .map_err(|e| e.to_string())?
            == 0
        {
            return Err("git cat-file ended early".into());
        }
        let fields: Vec<&str> = header.split_whitespace().collect();
        let (kind, size) = match fields.as_slice() {
            [_, kind, size] => (*kind, size.parse::<u64>().map_err(|e| e.to_string())?),
            _ => {
                // `<name> missing` (or ambiguous): no file at that commit.
                found.insert(sha.clone(), FileAt::Missing);
                continue;
            }
        };
        let mut kept = Vec::new();
        (&mut out)
            .take(size.min(MAX_FILE_BYTES as u64 + 1))
            .read_to_end(&mut kept)
            .await
            .map_err(|e| e.to_string())?;
        let rest = size - kept.len() as u64;
        tokio::io::copy(&mut (&mut out).take(rest + 1), &mut tokio::io::sink())
            .await
            .map_err(|e| e.to_string())?;
        let file = if kind != "blob" {
            FileAt::Missing
        } else {
            match String::from_utf8(kept) {
                Ok(text) => FileAt::Text(text),
                Err(e) => FileAt::Text(if e.as_bytes().len() > MAX_FILE_BYTES {
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                } else {
                    "\u{fffd} (not UTF-8)".into()
                }),
            }
        };
        found.insert(sha.clone(), file);
    }
    let _ = writer.await;
    let _ = child.wait().await;
    Ok(found)
}

/// The kind of a pushed ref (`push` for branches, `tag`) and its short name,
/// or `None` for refs that never run pipelines (deletions, notes, …).
fn pipeline_ref(ev: &PushEvent) -> Option<(&'static str, &str)> {
    if is_null_sha(&ev.new_sha) {
        return None;
    }
    if let Some(b) = ev.ref_name.strip_prefix("refs/heads/") {
        Some(("push", b))
    } else {
        ev.ref_name.strip_prefix("refs/tags/").map(|t| ("tag", t))
    }
}

impl Ci {
    /// Queues a pipeline for each pushed branch or tag whose commit has a
    /// `.slipway.yml` (or that an app deploys), and says what it queued.
    /// Never fails the push: problems are logged.
    pub async fn on_push(&self, repo: &Repo, events: &[PushEvent]) -> PushOutcome {
        let outcome = match self.handle_events(repo, events).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(repo = %repo.full_name(), error = %e, "could not queue pipelines");
                PushOutcome::default()
            }
        };
        if let Some(last) = events.iter().map(|e| e.id).max() {
            self.advance_cursor(last).await;
        }
        self.wake();
        outcome
    }

    /// Queues the pipelines of `events`, all of `repo`: the repository's
    /// apps are read once and the pipeline files with one git process.
    async fn handle_events(
        &self,
        repo: &Repo,
        events: &[PushEvent],
    ) -> Result<PushOutcome, String> {
        let mut outcome = PushOutcome::default();
        let candidates: Vec<(&PushEvent, &str, &str)> = events
            .iter()
            .filter_map(|ev| pipeline_ref(ev).map(|(event, name)| (ev, event, name)))
            .collect();
        if candidates.is_empty() {
            return Ok(outcome);
        }
        let apps = self
            .store()
            .apps_for_repo(repo.id)
            .await
            .map_err(|e| e.to_string())?;
        let mut shas: Vec<String> = candidates
            .iter()
            .map(|(ev, ..)| ev.new_sha.clone())
            .collect();
        shas.sort();
        shas.dedup();
        let files = read_pipeline_files(self.git_bin(), &self.repo_path(repo), &shas).await?;
        for (ev, event, branch) in candidates {
            let builds = image_builds(&apps, branch, event);
            let text = match files.get(&ev.new_sha) {
                Some(FileAt::Text(t)) => Some(t.as_str()),
                _ if builds.is_empty() => continue,
                _ => None,
            };
            if outcome.pipelines.len() >= MAX_PIPELINES_PER_PUSH {
                outcome.not_queued += 1;
                continue;
            }
            let deployed: Vec<AppRecord> = apps
                .iter()
                .filter(|a| builds.iter().any(|b| b.app_id == a.id))
                .cloned()
                .collect();
            let new = NewPipeline {
                event_id: Some(ev.id),
                actor: ev.pusher.clone(),
                ..self
                    .new_pipeline(
                        repo.id,
                        &ev.ref_name,
                        &ev.new_sha,
                        event,
                        branch,
                        text,
                        builds,
                        &ev.pusher,
                    )
                    .await
            };
            match self.store().create_pipeline(&new).await {
                Ok(p) => {
                    tracing::info!(repo = %repo.full_name(), number = p.number, status = %p.status, "pipeline queued");
                    outcome.pipelines.push(QueuedPipeline {
                        pipeline: p,
                        apps: deployed,
                    });
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(repo = %repo.full_name(), event = ev.id, error = %e, "could not queue a pipeline")
                }
            }
        }
        Ok(outcome)
    }

    /// A pipeline row for `text` read at `sha`: pending with steps when valid,
    /// `error` with the validation message otherwise. Without a file, only
    /// the image builds run.
    ///
    /// Limits and images are checked here, against the server's settings and
    /// what `actor` (the pusher) may read: a refusal is the pipeline's error.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn new_pipeline(
        &self,
        repo_id: i64,
        ref_name: &str,
        sha: &str,
        event: &str,
        branch: &str,
        text: Option<&str>,
        images: Vec<ImageBuild>,
        actor: &str,
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
        let limits = self.options().limits;
        let images = images
            .into_iter()
            .map(|b| ImageBuild {
                resources: Resources {
                    memory_bytes: Some(limits.default_memory_bytes),
                    nano_cpus: Some(limits.default_nano_cpus),
                },
                ..b
            })
            .collect();
        let vetted = match parsed.map(|p| Pipeline { images, ..p }) {
            Ok(mut p) => match p.apply_limits(&limits) {
                Ok(()) => self.vet_images(&p, actor).await.map(|()| p),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match vetted {
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

    /// Refuses images of steps and services that `actor` may not use
    /// ([`crate::image_policy`]).
    async fn vet_images(&self, p: &Pipeline, actor: &str) -> Result<(), config::ConfigError> {
        let named = p
            .steps
            .iter()
            .map(|s| ("step", &s.name, &s.image))
            .chain(p.services.iter().map(|s| ("service", &s.name, &s.image)));
        for (kind, name, image) in named {
            self.may_use_image(image, actor)
                .await
                .map_err(|e| config::ConfigError::new(format!("{kind} {name:?}: {e}")))?;
        }
        Ok(())
    }

    /// Whether `actor` may run `image`, and where it comes from.
    pub(crate) async fn may_use_image(
        &self,
        image: &str,
        actor: &str,
    ) -> Result<ImageSource, String> {
        let source = self.options().images.check(image, self.registry_hosts())?;
        if let ImageSource::Registry { owner } = &source {
            let admin = match self.store().user_by_name(actor).await {
                Ok(Some(u)) => u.is_admin,
                _ => false,
            };
            if owner != actor && !admin {
                return Err(format!(
                    "image {image:?} is in {owner}'s part of the registry, which {actor} cannot read"
                ));
            }
        }
        Ok(source)
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
            for batch in events.chunk_by(|a, b| a.repo_id == b.repo_id) {
                let Ok(Some(repo)) = self.store().repo_by_id(batch[0].repo_id).await else {
                    continue;
                };
                if let Err(e) = self.handle_events(&repo, batch).await {
                    tracing::error!(repo = %repo.full_name(), error = %e, "could not queue pipelines");
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
