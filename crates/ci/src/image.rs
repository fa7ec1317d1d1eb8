//! The image step of a deploy pipeline: `docker build` of the commit with
//! the app's Dockerfile, then a release through the deployer, followed until
//! the rollout is live or failed — all in the step's live log.

use crate::config::ImageBuild;
use crate::executor::Context;
use crate::logs::StepLog;
use futures::StreamExt;
use slipway_domain::{ReleaseStatus, Status, StepRecord};
use slipway_runtime::images::{build_image, BuildOptions};
use slipway_runtime::{labels, LogStream, RuntimeError};
use std::collections::HashMap;
use std::time::Duration;

/// Longest an image build may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// App event kind of a failed image build (`slipway events APP`): a push
/// that never became a release would otherwise leave no trace on the app.
pub const BUILD_FAILED_EVENT: &str = "build_failed";
/// App event kind of a successful image build, just before its release.
pub const BUILD_EVENT: &str = "build";

/// The local tag of an app's image for a commit.
pub fn image_tag(app: &str, sha: &str) -> String {
    format!("slipway/app-{app}:{}", &sha[..sha.len().min(12)])
}

/// Runs one image step and records its outcome.
pub(crate) async fn run(ctx: &Context, build: &ImageBuild, record: &StepRecord) -> Status {
    let store = ctx.ci.store();
    let mut log = StepLog::new(
        store.clone(),
        record.id,
        ctx.secrets.values().cloned().collect(),
    );
    let _ = store.start_step(record.id).await;
    let (status, error) = match build_and_release(ctx, build, &mut log).await {
        Ok(()) => (Status::Success, None),
        Err(e) if ctx.cancel.is_cancelled() => (Status::Cancelled, Some(e)),
        Err(e) => (Status::Failure, Some(e)),
    };
    if let Some(e) = &error {
        log.system(e);
    }
    log.close().await;
    if let Err(e) = store
        .finish_step(record.id, status, None, error.as_deref())
        .await
    {
        tracing::error!(step = record.id, error = %e, "could not record the end of a step");
    }
    status
}

/// Runs `docker build`, its lines into the step log. On failure: the
/// error's last line (for the app event) and the whole message (for the log).
pub(crate) async fn build_image_logged(
    ctx: &Context,
    context: bytes::Bytes,
    opts: &BuildOptions,
    log: &mut StepLog,
) -> Result<(), (String, String)> {
    let lines = build_image(&ctx.rt, context, opts);
    tokio::pin!(lines);
    let deadline = tokio::time::sleep(BUILD_TIMEOUT);
    tokio::pin!(deadline);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            line = lines.next() => match line {
                Some(Ok(l)) => { let mut l = l.into_bytes(); l.push(b'\n'); log.push(LogStream::Stdout, &l).await }
                Some(Err(e)) => {
                    let engine = match &e {
                        RuntimeError::Build { message, .. } => message.clone(),
                        other => other.to_string(),
                    };
                    return Err((last_line(&engine), format!("the image build failed: {e}")));
                }
                None => return Ok(()),
            },
            _ = tick.tick() => log.flush().await,
            _ = &mut deadline => {
                let why = format!("the image build took longer than {} minutes", BUILD_TIMEOUT.as_secs() / 60);
                return Err((why.clone(), why));
            }
            _ = ctx.cancel.cancelled() => return Err(("cancelled".into(), "cancelled".into())),
        }
    }
}

/// Refuses a Dockerfile whose `FROM` or `COPY --from=` names an image the
/// pusher may not use (another tenant's release, a bare image ID…), and pulls
/// the registry images it names, before anything is built.
pub(crate) async fn check_base_images(ctx: &Context, dockerfile: &str) -> Result<(), String> {
    let out = tokio::process::Command::new(ctx.ci.git_bin())
        .arg("--git-dir")
        .arg(ctx.ci.repo_path(&ctx.repo))
        .args(["cat-file", "blob"])
        .arg(format!("{}:{dockerfile}", ctx.pipeline.sha))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "commit {} has no {dockerfile}; add it or set the app's Dockerfile path",
            &ctx.pipeline.sha[..ctx.pipeline.sha.len().min(12)]
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    for image in crate::image_policy::dockerfile_images(&text) {
        crate::pull::ensure_image(ctx, &image)
            .await
            .map_err(|e| format!("{dockerfile}: {e}"))?;
    }
    Ok(())
}

/// The last non-empty line of `text`, at most 300 characters.
fn last_line(text: &str) -> String {
    let line = text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    line.chars().take(300).collect()
}

/// Records an app event (a failure to record is logged, not fatal).
pub(crate) async fn record_event(ctx: &Context, app_id: i64, kind: &str, message: &str) {
    tracing::info!(app_id, kind, "{message}");
    if let Err(e) = ctx.ci.store().add_app_event(app_id, kind, message).await {
        tracing::warn!(error = %e, "cannot record an app event");
    }
}

async fn build_and_release(
    ctx: &Context,
    build: &ImageBuild,
    log: &mut StepLog,
) -> Result<(), String> {
    let store = ctx.ci.store();
    let app = store
        .app_by_id(build.app_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("app {} was deleted", build.app))?;
    let deployer = ctx
        .ci
        .deployer()
        .ok_or("deployments are not available on this server")?
        .clone();
    let sha = &ctx.pipeline.sha;
    let release = match crate::stack_build::find_compose(ctx, &app).await? {
        Some(compose) => {
            let stack =
                crate::stack_build::build_stack(ctx, &app, compose, build.resources, log).await?;
            deployer
                .release_stack(&app, stack, sha, Some(ctx.pipeline.id), &ctx.pipeline.actor)
                .await
                .map_err(|e| e.to_string())?
        }
        None => build_single(ctx, build, &app, &deployer, log).await?,
    };
    follow_release(ctx, &app, &deployer, release, log).await
}

/// Builds the app's one image from its Dockerfile and releases it.
async fn build_single(
    ctx: &Context,
    build: &ImageBuild,
    app: &slipway_domain::AppRecord,
    deployer: &slipway_deploy::Deployer,
    log: &mut StepLog,
) -> Result<slipway_domain::ReleaseRecord, String> {
    let sha = &ctx.pipeline.sha;
    let tag = image_tag(&app.name, sha);
    check_base_images(ctx, &build.dockerfile).await?;
    log.system(&format!(
        "building {tag} from {} ({})",
        build.dockerfile,
        build.resources.describe()
    ));
    log.flush().await;
    let opts = BuildOptions {
        // RUN instructions on the pipeline's own network, like its steps.
        network: ctx.network.clone(),
        memory_bytes: build.resources.memory_bytes,
        nano_cpus: build.resources.nano_cpus,
        tag: tag.clone(),
        dockerfile: Some(build.dockerfile.clone()),
        labels: HashMap::from([
            (labels::OWNER.to_string(), "deploy".to_string()),
            (labels::APP.to_string(), app.name.clone()),
        ]),
        ..Default::default()
    };
    let built = build_image_logged(ctx, ctx.archive.clone(), &opts, log).await;
    let short = &sha[..sha.len().min(12)];
    let pipeline = ctx.pipeline.number;
    match &built {
        Ok(()) => {
            let what = format!("pipeline #{pipeline} built commit {short} as {tag}");
            record_event(ctx, app.id, BUILD_EVENT, &what).await;
        }
        Err(_) if ctx.cancel.is_cancelled() => {}
        Err((why, _)) => {
            let what = format!(
                "the image build of commit {short} failed (pipeline #{pipeline}): {why}; \
                 `slipway pipeline logs {}/{} {pipeline}` shows the build",
                ctx.repo.owner, ctx.repo.name
            );
            record_event(ctx, app.id, BUILD_FAILED_EVENT, &what).await;
        }
    }
    built.map_err(|(_, full)| full)?;
    match deployer.publish_image(app, &ctx.repo.owner, &tag).await {
        Ok(reference) => log.system(&format!(
            "stored in the registry as {reference} (GET /v2/{reference})"
        )),
        Err(e) => log.system(&format!("warning: {e}; deploying from the local image")),
    }
    log.flush().await;
    deployer
        .release_image(app, &tag, sha, Some(ctx.pipeline.id), &ctx.pipeline.actor)
        .await
        .map_err(|e| e.to_string())
}

/// Follows a new release in the step's log until it is live or failed.
async fn follow_release(
    ctx: &Context,
    app: &slipway_domain::AppRecord,
    deployer: &slipway_deploy::Deployer,
    release: slipway_domain::ReleaseRecord,
    log: &mut StepLog,
) -> Result<(), String> {
    let mut wait =
        Duration::from_millis(app.spec.health.start_timeout_ms) * 2 + Duration::from_secs(60);
    match &release.spec.stack {
        Some(stack) => {
            log.system(&format!(
                "release v{} created; rolling out {} service(s) in dependency order",
                release.number,
                stack.services.len()
            ));
            wait = wait.max(Duration::from_secs(15 * 60));
        }
        None => log.system(&format!(
            "release v{} created; rolling out to {} replica(s)",
            release.number, app.spec.replicas
        )),
    }
    log.flush().await;
    let ended = tokio::select! {
        r = deployer.wait_release(app.id, release.number, wait) => r.map_err(|e| e.to_string())?,
        _ = ctx.cancel.cancelled() => return Err("cancelled while the release rolled out (the rollout goes on)".into()),
    };
    match ended {
        Some(r) if r.status == ReleaseStatus::Active => {
            let url = deployer.url(app).unwrap_or_default();
            log.system(&format!("v{} is live {url}", r.number));
            Ok(())
        }
        Some(r) if r.status == ReleaseStatus::Failed => Err(format!(
            "the rollout of v{} failed: {}",
            r.number,
            r.error.unwrap_or_default()
        )),
        Some(r) if r.status == ReleaseStatus::Superseded => {
            log.system(&format!("v{} was replaced by a newer release", r.number));
            Ok(())
        }
        Some(r) => {
            log.system(&format!(
                "v{} is still {} after {} s; follow it with `slipway ps {}`",
                r.number,
                r.status,
                wait.as_secs(),
                app.name
            ));
            Ok(())
        }
        None => Err("the release disappeared (was the app deleted?)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_line_of_a_build_error_is_kept() {
        assert_eq!(
            last_line("Step 2/2 : RUN exit 3\nThe command '/bin/sh -c exit 3' returned a non-zero code: 3\n\n"),
            "The command '/bin/sh -c exit 3' returned a non-zero code: 3"
        );
        assert_eq!(last_line(""), "no message");
        assert_eq!(last_line(&"x".repeat(1000)).len(), 300);
    }
}
