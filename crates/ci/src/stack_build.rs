//! The image step of an app deployed from a Compose file: parse and check
//! the file at the pushed commit, build every service with `build:` (each
//! from its own context directory, in the step's live log), check the
//! `image:`s against the image policy, unpack the directories the stack
//! bind-mounts, then release the whole stack through the deployer.

use crate::executor::Context;
use crate::image::{build_image_logged, check_base_images, record_event, BUILD_EVENT};
use crate::image::{image_tag, BUILD_FAILED_EVENT};
use crate::logs::StepLog;
use slipway_domain::stack::{MountSource, StackSpec};
use slipway_domain::AppRecord;
use slipway_runtime::images::BuildOptions;
use slipway_runtime::labels;
use std::collections::HashMap;
use std::path::PathBuf;

/// The Compose file of the commit, if the app deploys as a stack: the path
/// set on the app (which must exist), else the first of Compose's own
/// default names found.
pub(crate) async fn find_compose(
    ctx: &Context,
    app: &AppRecord,
) -> Result<Option<(String, String)>, String> {
    let files = GitFiles::new(ctx);
    if let Some(path) = &app.spec.compose {
        let text = files.read_async(path).await.ok_or_else(|| {
            format!(
                "commit {} has no {path}; add it or change the app's compose path (`slipway app set {} --compose PATH`)",
                short(&ctx.pipeline.sha),
                app.name
            )
        })?;
        return Ok(Some((path.clone(), text_of(path, text)?)));
    }
    for name in slipway_stack::DEFAULT_FILES {
        if let Some(text) = files.read_async(name).await {
            return Ok(Some((name.to_string(), text_of(name, text)?)));
        }
    }
    Ok(None)
}

fn text_of(path: &str, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The local tag of a stack service's image for a commit.
pub fn service_image_tag(app: &str, service: &str, sha: &str) -> String {
    image_tag(&format!("{app}-{service}"), sha)
}

/// Parses the stack, builds its images and records the release; returns
/// the parsed stack with every service's image set.
pub(crate) async fn build_stack(
    ctx: &Context,
    app: &AppRecord,
    compose: (String, String),
    build_resources: slipway_domain::Resources,
    log: &mut StepLog,
) -> Result<StackSpec, String> {
    let (path, text) = compose;
    let files = GitFiles::new(ctx);
    let vars = app.spec.env.clone();
    let file = path.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        slipway_stack::parse(&slipway_stack::ParseInput {
            file_name: &file,
            text: &text,
            vars: &vars,
            files: &files,
        })
    })
    .await
    .map_err(|e| format!("parsing {path}: {e}"))?;
    let mut stack = match parsed {
        Ok(stack) => stack,
        Err(errors) => {
            let what = format!("{path} was refused, nothing was deployed:\n{errors}");
            let first = errors
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            record_event(
                ctx,
                app.id,
                BUILD_FAILED_EVENT,
                &format!(
                    "{path} of commit {} was refused: {first}",
                    short(&ctx.pipeline.sha)
                ),
            )
            .await;
            return Err(what);
        }
    };
    log.system(&format!(
        "deploying {path} as a stack of {} service(s): {}",
        stack.services.len(),
        stack
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for n in &stack.notices {
        log.system(&format!("notice: {n}"));
    }
    log.flush().await;
    let sha = ctx.pipeline.sha.clone();
    for svc in stack.services.iter_mut() {
        let Some(build) = svc.build.clone() else {
            let image = svc.image.clone().unwrap_or_default();
            crate::pull::ensure_image(ctx, &image)
                .await
                .map_err(|e| format!("service {}: {e}", svc.name))?;
            svc.image_id = slipway_runtime::images::image_id(&ctx.rt, &image)
                .await
                .ok();
            continue;
        };
        let tag = service_image_tag(&app.name, &svc.name, &sha);
        let dockerfile_in_repo = join(&build.context, &build.dockerfile);
        check_base_images(ctx, &dockerfile_in_repo)
            .await
            .map_err(|e| format!("service {}: {e}", svc.name))?;
        let context = if build.context == "." || build.context.is_empty() {
            ctx.archive.clone()
        } else {
            GitFiles::new(ctx).archive(&build.context).await?
        };
        log.system(&format!(
            "service {}: building {tag} from {dockerfile_in_repo}",
            svc.name
        ));
        log.flush().await;
        let opts = BuildOptions {
            network: ctx.network.clone(),
            memory_bytes: build_resources.memory_bytes,
            nano_cpus: build_resources.nano_cpus,
            tag: tag.clone(),
            dockerfile: Some(build.dockerfile.clone()),
            build_args: build.args.clone().into_iter().collect(),
            target: build.target.clone(),
            labels: HashMap::from([
                (labels::OWNER.to_string(), "deploy".to_string()),
                (labels::APP.to_string(), app.name.clone()),
            ]),
            ..Default::default()
        };
        if let Err((why, full)) = build_image_logged(ctx, context, &opts, log).await {
            if !ctx.cancel.is_cancelled() {
                record_event(
                    ctx,
                    app.id,
                    BUILD_FAILED_EVENT,
                    &format!(
                        "the image build of service {} at commit {} failed (pipeline #{}): {why}",
                        svc.name,
                        short(&sha),
                        ctx.pipeline.number
                    ),
                )
                .await;
            }
            return Err(format!("service {}: {full}", svc.name));
        }
        svc.image_id = slipway_runtime::images::image_id(&ctx.rt, &tag).await.ok();
        svc.image = Some(tag);
    }
    let dirs: Vec<String> = stack
        .services
        .iter()
        .flat_map(|s| s.mounts.iter())
        .filter_map(|m| match &m.source {
            MountSource::Repo(d) => Some(d.clone()),
            _ => None,
        })
        .collect();
    if !dirs.is_empty() {
        let deployer = ctx.ci.deployer().ok_or("deployments are not available")?;
        let dest = deployer.stack_files_dir(app.id, &sha);
        GitFiles::new(ctx).unpack(&dirs, dest).await?;
    }
    record_event(
        ctx,
        app.id,
        BUILD_EVENT,
        &format!(
            "pipeline #{} built commit {} ({} services)",
            ctx.pipeline.number,
            short(&sha),
            stack.services.len()
        ),
    )
    .await;
    Ok(stack)
}

fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() || dir == "." {
        file.to_string()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

/// Files of the pushed commit, read with the real `git` (the parser's
/// `env_file`s, the services' build contexts, bind-mounted directories).
struct GitFiles {
    git: PathBuf,
    repo: PathBuf,
    sha: String,
}

impl GitFiles {
    fn new(ctx: &Context) -> Self {
        GitFiles {
            git: ctx.ci.git_bin().into(),
            repo: ctx.ci.repo_path(&ctx.repo),
            sha: ctx.pipeline.sha.clone(),
        }
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(&self.git);
        c.arg("--git-dir")
            .arg(&self.repo)
            .env("GIT_CONFIG_NOSYSTEM", "1");
        c
    }

    async fn read_async(&self, path: &str) -> Option<Vec<u8>> {
        let mut c = tokio::process::Command::from(self.command());
        let out = c
            .args(["cat-file", "blob"])
            .arg(format!("{}:{path}", self.sha))
            .output()
            .await
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    /// `git archive` of one directory, as a build context.
    async fn archive(&self, dir: &str) -> Result<bytes::Bytes, String> {
        let mut c = tokio::process::Command::from(self.command());
        let out = c
            .args(["archive", "--format=tar"])
            .arg(format!("{}:{}", self.sha, dir.trim_end_matches('/')))
            .output()
            .await
            .map_err(|e| format!("cannot run git archive: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "build context {dir} is not a directory of commit {}",
                short(&self.sha)
            ));
        }
        Ok(out.stdout.into())
    }

    /// Unpacks directories of the commit under `dest` (read-only mounts).
    async fn unpack(&self, dirs: &[String], dest: PathBuf) -> Result<(), String> {
        if dest.exists() {
            return Ok(());
        }
        let mut c = tokio::process::Command::from(self.command());
        let out = c
            .args(["archive", "--format=tar", &self.sha, "--"])
            .args(dirs)
            .output()
            .await
            .map_err(|e| format!("cannot run git archive: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cannot read {} from commit {}: {}",
                dirs.join(", "),
                short(&self.sha),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let tmp = dest.with_extension("tmp");
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp)?;
            tar::Archive::new(&out.stdout[..]).unpack(&tmp)?;
            std::fs::rename(&tmp, &dest)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("unpacking the stack's files: {e}"))
    }
}

impl slipway_stack::RepoFiles for GitFiles {
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        let out = self
            .command()
            .args(["cat-file", "blob"])
            .arg(format!("{}:{path}", self.sha))
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    }

    fn is_dir(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        let object = if path.is_empty() || path == "." {
            format!("{}^{{tree}}", self.sha)
        } else {
            format!("{}:{path}", self.sha)
        };
        self.command()
            .args(["cat-file", "-t"])
            .arg(object)
            .output()
            .map(|o| o.status.success() && o.stdout.starts_with(b"tree"))
            .unwrap_or(false)
    }
}
