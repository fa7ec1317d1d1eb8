//! Continuous deployment, Heroku/Dokku style: `slipway app create|list|show|
//! set|delete|secret`, and the everyday verbs `deploy`, `scale`, `ps`, `logs`,
//! `open`, `releases`, `rollback` and `config`. All are clients of `/apps`.

mod logs;
mod parse;
mod watch;

use super::read_password;
use super::repo::split;
use crate::client::Client;
use crate::{output, GlobalArgs};
use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::io::{BufRead, IsTerminal};
use std::time::Duration;

/// `slipway app …`: the app itself and its secrets.
#[derive(clap::Subcommand)]
pub enum AppCommand {
    /// Create an app that deploys a repository's branch on every push.
    Create(CreateArgs),
    /// List the apps you can see.
    List,
    /// Show one app: status, replicas, release, URL, settings.
    Show {
        /// App name.
        app: String,
    },
    /// Change an app's settings (only the options given change).
    Set(SetArgs),
    /// Delete an app: stops its replicas and removes its routes.
    Delete {
        /// App name.
        app: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Also remove the named volumes of its stack (their data is lost;
        /// they are kept otherwise).
        #[arg(long)]
        purge_volumes: bool,
    },
    /// App secrets (environment variables whose values are never shown).
    #[command(subcommand)]
    Secret(AppSecretCommand),
}

/// Options of `slipway app create`.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// App name: lowercase letters, digits and dashes (it becomes a host name).
    #[arg(allow_hyphen_values = true)]
    name: String,
    /// Repository to deploy, OWNER/REPO.
    #[arg(long)]
    repo: String,
    #[command(flatten)]
    settings: Settings,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
}

/// Options of `slipway app set`.
#[derive(clap::Args)]
pub struct SetArgs {
    /// App name.
    app: String,
    #[command(flatten)]
    settings: Settings,
    /// Extra replicas a rolling update may start.
    #[arg(long)]
    max_surge: Option<u32>,
    /// Replicas a rolling update may take away.
    #[arg(long)]
    max_unavailable: Option<u32>,
}

/// Settings shared by `create` and `set`; only those given are sent.
#[derive(clap::Args)]
struct Settings {
    /// Branch whose pushes deploy (default: main).
    #[arg(long)]
    branch: Option<String>,
    /// Port the app listens on in its container (default: 8080).
    #[arg(long)]
    port: Option<u16>,
    /// Replicas to run (default: 1).
    #[arg(long)]
    replicas: Option<u32>,
    /// Dockerfile path in the repository (default: Dockerfile).
    #[arg(long)]
    dockerfile: Option<String>,
    /// Compose file path in the repository: the app deploys as a stack of
    /// services (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml when one exists; "" goes back to that default).
    #[arg(long, value_name = "PATH")]
    compose: Option<String>,
    /// Path the health check requests, e.g. /healthz (default: /).
    #[arg(long)]
    health_path: Option<String>,
    /// Host name the proxy routes to the app (repeatable; replaces the list).
    #[arg(long = "domain", value_name = "HOST")]
    domains: Vec<String>,
    /// Sticky sessions: the proxy sends each client back to the replica that
    /// served it first (a cookie), while that replica is healthy.
    #[arg(long, value_name = "true|false")]
    sticky: Option<bool>,
    /// Memory limit per replica, e.g. 256M or 1G.
    #[arg(long)]
    memory: Option<String>,
    /// CPU limit per replica in cores, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
}

impl Settings {
    /// The JSON fields for the options given (checked client-side first).
    fn to_body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut b = Map::new();
        if let Some(v) = &self.branch {
            b.insert("branch".into(), json!(v));
        }
        if let Some(v) = self.port {
            b.insert("port".into(), json!(v));
        }
        if let Some(v) = self.replicas {
            b.insert("replicas".into(), json!(v));
        }
        if let Some(v) = &self.dockerfile {
            b.insert("dockerfile".into(), json!(v));
        }
        if let Some(v) = self.sticky {
            b.insert("sticky".into(), json!(v));
        }
        if let Some(v) = &self.compose {
            b.insert(
                "compose".into(),
                if v.is_empty() { Value::Null } else { json!(v) },
            );
        }
        if let Some(v) = &self.health_path {
            if !v.starts_with('/') {
                bail!("--health-path must start with /, got {v:?}");
            }
            b.insert("health".into(), json!({ "path": v }));
        }
        if !self.domains.is_empty() {
            b.insert("domains".into(), json!(self.domains));
        }
        if let Some(v) = &self.memory {
            b.insert("memory_mb".into(), json!(parse::memory_mb(v)?));
        }
        if let Some(v) = &self.cpus {
            b.insert("cpus".into(), json!(parse::cpus(v)?));
        }
        Ok(b)
    }
}

/// `slipway app secret …`.
#[derive(clap::Subcommand)]
pub enum AppSecretCommand {
    /// Set a secret; the value comes from stdin or a hidden prompt.
    Set {
        /// App name.
        app: String,
        /// Secret name, e.g. DATABASE_URL.
        name: String,
        /// Read the value from stdin (one line); also what happens when stdin is not a terminal.
        #[arg(long = "stdin", alias = "value-stdin")]
        value_stdin: bool,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List secret names (values are never shown).
    List {
        /// App name.
        app: String,
    },
    /// Remove a secret.
    Remove {
        /// App name.
        app: String,
        /// Secret name.
        name: String,
    },
}

/// `slipway volume …`.
#[derive(clap::Subcommand)]
pub enum VolumeCommand {
    /// List an app's named volumes.
    Ls {
        /// App name.
        app: String,
    },
    /// Write a tar archive of a volume's contents to stdout (or --output):
    /// `slipway volume backup shop db-data > db-data.tar`. The services
    /// using it keep running: for a database, prefer its own dump tool or
    /// scale it to 0 first.
    Backup {
        /// App name.
        app: String,
        /// Volume name (as in the Compose file; see `slipway volume ls`).
        volume: String,
        /// Write the archive to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
    },
    /// Replace a volume's contents with a tar archive read from stdin (or
    /// --input): `slipway volume restore shop db-data < db-data.tar`. The
    /// services that mount it are stopped first and start again after.
    /// Admin access to the app.
    Restore {
        /// App name.
        app: String,
        /// Volume name.
        volume: String,
        /// Read the archive from this file instead of stdin.
        #[arg(short, long, value_name = "FILE")]
        input: Option<std::path::PathBuf>,
    },
}

/// The everyday top-level verbs (`slipway scale web=3`…), flattened into the
/// main command list.
#[derive(clap::Subcommand)]
pub enum DeployCommand {
    /// Build and deploy the head of an app's branch now.
    Deploy {
        /// App name.
        app: String,
        /// Branch, tag or commit to deploy (default: the app's branch).
        #[arg(long = "ref", value_name = "REF")]
        git_ref: Option<String>,
        /// Follow the pipeline's logs until it ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Set an app's replica count: `slipway scale web=3` (or `web 3`); for
    /// a service of a stack: `slipway scale shop web=3`.
    Scale {
        /// APP=N, or APP followed by N or SERVICE=N.
        target: String,
        /// N, or SERVICE=N for a stack's service.
        count: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// List an app's replicas.
    Ps {
        /// App name.
        app: String,
    },
    /// Run a one-off command in a new container of an app's current release
    /// (a stack's SERVICE: its image, environment, secrets, network and
    /// volumes), streaming its output; exits with the command's exit code.
    /// `slipway run shop web -- python manage.py migrate`.
    Run {
        /// App name.
        app: String,
        /// The stack service to run it in (stacks only).
        service: Option<String>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Named volumes of an app's stack (kept across releases and, unless
    /// `app delete --purge-volumes`, its deletion).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Print an app's logs, also of replicas gone since, searched by
    /// replica, release, time and text (`-f` follows new lines; Ctrl-C stops).
    Logs(logs::LogsArgs),
    /// Print an app's URL; also open it in `$BROWSER`, or with xdg-open when
    /// there is a display (never with --json).
    Open {
        /// App name.
        app: String,
    },
    /// List an app's releases, newest first.
    Releases {
        /// App name.
        app: String,
    },
    /// What happened to an app: deploys, rollouts, crashes, scaling, newest last.
    Events {
        /// App name.
        app: String,
        /// Show only the last N events (at most 200 are kept for listing).
        #[arg(short = 'n', long, default_value_t = 50)]
        tail: usize,
    },
    /// Run an earlier release again (default: the one before the active one).
    Rollback {
        /// App name.
        app: String,
        /// Release number to roll back to, e.g. 3 or v3.
        release: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// An app's configuration (environment variables): list, set, unset.
    Config(ConfigArgs),
}

/// `--wait` and its timeout, for commands that change running replicas.
#[derive(clap::Args)]
pub struct WaitArgs {
    /// Wait until every replica is ready, with a progress spinner.
    #[arg(long)]
    wait: bool,
    /// Seconds `--wait` waits before giving up.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    timeout: u64,
}

/// `slipway config APP` (or `slipway config list APP`), or `slipway config set|unset …`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ConfigArgs {
    /// App whose variables to list.
    #[arg(required = true)]
    app: Option<String>,
    #[command(subcommand)]
    action: Option<ConfigAction>,
}

/// Changes to an app's configuration (each makes a release once deployed).
#[derive(clap::Subcommand)]
pub enum ConfigAction {
    /// List variables: `slipway config list web` (same as `slipway config web`).
    List {
        /// App name.
        app: String,
    },
    /// Set variables: `slipway config set web KEY=VALUE…`.
    Set {
        /// App name.
        app: String,
        /// KEY=VALUE pairs.
        #[arg(required = true, value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Remove variables: `slipway config unset web KEY…`.
    Unset {
        /// App name.
        app: String,
        /// Variable names.
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

/// Runs a `slipway app …` command.
pub async fn run(cmd: AppCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    match cmd {
        AppCommand::Create(args) => create(&client, args, g.json).await,
        AppCommand::List => list(&client, g.json).await,
        AppCommand::Show { app } => show(&client, parse::app_name(&app)?, g.json).await,
        AppCommand::Set(args) => set(&client, args, g.json).await,
        AppCommand::Delete {
            app,
            yes,
            purge_volumes,
        } => delete(&client, parse::app_name(&app)?, yes, purge_volumes, g.json).await,
        AppCommand::Secret(cmd) => secret(&client, cmd, g.json).await,
    }
}

/// Runs one of the top-level deploy verbs.
pub async fn run_verb(cmd: DeployCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    match cmd {
        DeployCommand::Deploy {
            app,
            git_ref,
            follow,
        } => deploy(&client, parse::app_name(&app)?, git_ref, follow, g.json).await,
        DeployCommand::Scale {
            target,
            count,
            wait,
        } => {
            let t = parse::scale_target(&target, count.as_deref())?;
            match &t.service {
                Some(service) => {
                    scale_service(&client, &t.app, service, t.replicas, &wait, g.json).await
                }
                None => scale(&client, &t.app, t.replicas, &wait, g.json).await,
            }
        }
        DeployCommand::Ps { app } => ps(&client, parse::app_name(&app)?, g.json).await,
        DeployCommand::Run {
            app,
            service,
            command,
        } => run_one_off(&client, parse::app_name(&app)?, service, command, g.json).await,
        DeployCommand::Volume(VolumeCommand::Ls { app }) => {
            volumes(&client, parse::app_name(&app)?, g.json).await
        }
        DeployCommand::Volume(VolumeCommand::Backup {
            app,
            volume,
            output,
        }) => {
            let volume = parse::segment("volume name", &volume)?;
            volume_backup(&client, parse::app_name(&app)?, volume, output, g.json).await
        }
        DeployCommand::Volume(VolumeCommand::Restore { app, volume, input }) => {
            let volume = parse::segment("volume name", &volume)?;
            volume_restore(&client, parse::app_name(&app)?, volume, input, g.json).await
        }
        DeployCommand::Logs(args) => {
            let path = logs::path(&args)?;
            watch::stream_logs(&client, &path, g.json).await
        }
        DeployCommand::Open { app } => open(&client, parse::app_name(&app)?, g.json).await,
        DeployCommand::Releases { app } => releases(&client, parse::app_name(&app)?, g.json).await,
        DeployCommand::Events { app, tail } => {
            events(&client, parse::app_name(&app)?, tail, g.json).await
        }
        DeployCommand::Rollback { app, release, wait } => {
            let app = parse::app_name(&app)?;
            let release = release.as_deref().map(parse::release).transpose()?;
            rollback(&client, app, release, &wait, g.json).await
        }
        DeployCommand::Config(args) => config(&client, args, g.json).await,
    }
}

/// Text of a JSON scalar, `-` for null.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `v3`, or `-` before the first release.
fn vnum(v: &Value) -> String {
    v.as_i64().map_or_else(|| "-".into(), |n| format!("v{n}"))
}

/// An RFC 3339 timestamp as `YYYY-MM-DD HH:MM`.
fn when(v: &Value) -> String {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(|| s(v), |t| output::when(&t.with_timezone(&chrono::Utc)))
}

/// How long ago an RFC 3339 timestamp was: `42s`, `5m`, `3h`, `2d`.
fn age(v: &Value) -> String {
    let Some(t) = v
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return "-".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

async fn create(client: &Client, args: CreateArgs, json: bool) -> anyhow::Result<()> {
    let name = parse::app_name(&args.name)?;
    split(&args.repo)?;
    client.require_token()?;
    let mut body = args.settings.to_body()?;
    body.insert("name".into(), json!(name));
    body.insert("repo".into(), json!(args.repo));
    if !args.env.is_empty() {
        body.insert("env".into(), json!(parse::env_pairs("--env", &args.env)?));
    }
    let app: Value = client.call(Method::POST, "/apps", Some(&body)).await?;
    if json {
        return output::json(&app);
    }
    println!(
        "Created app {name} from {} (branch {}).",
        s(&app["repo"]),
        s(&app["branch"])
    );
    println!("  URL: {}", s(&app["url"]));
    println!(
        "Push a Dockerfile (or a compose.yaml) to {} of {} to deploy it, or run `slipway deploy {name}`.",
        s(&app["branch"]),
        s(&app["repo"])
    );
    Ok(())
}

async fn list(client: &Client, json: bool) -> anyhow::Result<()> {
    let apps: Vec<Value> = client.get("/apps").await?;
    if json {
        return output::json(&apps);
    }
    let rows = apps
        .iter()
        .map(|a| {
            vec![
                s(&a["name"]),
                s(&a["repo"]),
                s(&a["branch"]),
                s(&a["status"]),
                format!("{}/{}", s(&a["ready"]), s(&a["replicas"])),
                vnum(&a["release"]),
                s(&a["url"]),
            ]
        })
        .collect();
    output::table(
        &["APP", "REPO", "BRANCH", "STATUS", "READY", "RELEASE", "URL"],
        rows,
        "No apps yet: create one with `slipway app create NAME --repo OWNER/REPO`.",
    );
    Ok(())
}

async fn show(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let a: Value = client.get(&format!("/apps/{app}")).await?;
    if json {
        return output::json(&a);
    }
    let list = |v: &Value| {
        let items: Vec<String> = v
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(s)
            .collect();
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    let env_keys: Vec<String> = a["env"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let limit = |v: &Value, unit: &str| {
        if v.is_null() {
            "none".to_owned()
        } else {
            format!("{}{unit}", s(v))
        }
    };
    println!("{app}: {}", s(&a["status"]));
    println!("  url:        {}", s(&a["url"]));
    println!(
        "  repo:       {} (branch {})",
        s(&a["repo"]),
        s(&a["branch"])
    );
    println!("  release:    {}", vnum(&a["release"]));
    println!(
        "  replicas:   {}/{} ready",
        s(&a["ready"]),
        s(&a["replicas"])
    );
    if let Some(services) = a["services"].as_array() {
        let list: Vec<String> = services
            .iter()
            .map(|x| {
                if x["task"] == true {
                    format!("{} (task)", s(&x["name"]))
                } else {
                    format!(
                        "{} {}/{} {}",
                        s(&x["name"]),
                        s(&x["ready"]),
                        s(&x["replicas"]),
                        s(&x["state"])
                    )
                }
            })
            .collect();
        println!("  services:   {}", list.join(", "));
    }
    println!("  port:       {}", s(&a["port"]));
    println!("  dockerfile: {}", s(&a["dockerfile"]));
    if let Some(c) = a["compose"].as_str() {
        println!("  compose:    {c}");
    }
    println!("  health:     GET {}", s(&a["health"]["path"]));
    println!("  domains:    {}", list(&a["domains"]));
    println!(
        "  limits:     memory {}, cpus {}",
        limit(&a["memory_mb"], " MiB"),
        limit(&a["cpus"], "")
    );
    println!(
        "  config:     {}",
        if env_keys.is_empty() {
            "-".to_owned()
        } else {
            env_keys.join(", ")
        }
    );
    println!("  secrets:    {}", list(&a["secrets"]));
    println!("  owner:      {}", s(&a["owner"]));
    println!("  created:    {}", when(&a["created_at"]));
    Ok(())
}

async fn set(client: &Client, args: SetArgs, json: bool) -> anyhow::Result<()> {
    let app = parse::app_name(&args.app)?;
    let mut body = args.settings.to_body()?;
    if let Some(v) = args.max_surge {
        body.insert("max_surge".into(), json!(v));
    }
    if let Some(v) = args.max_unavailable {
        body.insert("max_unavailable".into(), json!(v));
    }
    if body.is_empty() {
        bail!("nothing to change: give at least one option (see `slipway app set --help`)");
    }
    client.require_token()?;
    let a: Value = client
        .call(Method::PATCH, &format!("/apps/{app}"), Some(&body))
        .await?;
    if json {
        return output::json(&a);
    }
    let mut changed: Vec<&str> = body.keys().map(String::as_str).collect();
    changed.sort_unstable();
    println!("Updated {app}: {}.", changed.join(", "));
    Ok(())
}

async fn delete(
    client: &Client,
    app: &str,
    yes: bool,
    purge_volumes: bool,
    json: bool,
) -> anyhow::Result<()> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "deleting app {app} stops its replicas and removes its routes: repeat with --yes to confirm"
            );
        }
        eprint!(
            "Delete app {app}? Its replicas stop and its routes go away. Type {app} to confirm: "
        );
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if line.trim() != app {
            bail!("app {app} not deleted: the confirmation did not match");
        }
    }
    client.require_token()?;
    client
        .call::<(), Value>(
            Method::DELETE,
            &format!(
                "/apps/{app}{}",
                if purge_volumes {
                    "?purge_volumes=true"
                } else {
                    ""
                }
            ),
            None,
        )
        .await?;
    if json {
        return output::json(&json!({ "deleted": app, "purged_volumes": purge_volumes }));
    }
    println!("Deleted app {app}.");
    Ok(())
}

async fn secret(client: &Client, cmd: AppSecretCommand, json: bool) -> anyhow::Result<()> {
    client.require_token()?;
    match cmd {
        AppSecretCommand::Set {
            app,
            name,
            value_stdin,
            wait,
        } => {
            let app = parse::app_name(&app)?;
            let name = parse::segment("secret name", &name)?;
            let value = read_password(value_stdin, &format!("Value of {name}: "))?;
            if value.is_empty() {
                bail!("no value for {name}: give it on stdin or at the prompt");
            }
            client
                .call::<_, Value>(
                    Method::PUT,
                    &format!("/apps/{app}/secrets/{name}"),
                    Some(&json!({ "value": value })),
                )
                .await?;
            if !json {
                println!("Secret {name} set on {app}.");
            }
            if wait.wait {
                let view: Value = client.get(&format!("/apps/{app}")).await?;
                if let Some(n) = view["release"].as_i64() {
                    wait_live(client, app, n, &wait, json).await?;
                }
            }
            if json {
                return output::json(&json!({"app": app, "secret": name}));
            }
        }
        AppSecretCommand::List { app } => {
            let app = parse::app_name(&app)?;
            let secrets: Vec<Value> = client.get(&format!("/apps/{app}/secrets")).await?;
            if json {
                return output::json(&secrets);
            }
            let rows = secrets
                .iter()
                .map(|x| vec![s(&x["name"]), when(&x["updated_at"])])
                .collect();
            output::table(
                &["SECRET", "UPDATED"],
                rows,
                &format!("No secrets: add one with `slipway app secret set {app} NAME`."),
            );
        }
        AppSecretCommand::Remove { app, name } => {
            let app = parse::app_name(&app)?;
            let name = parse::segment("secret name", &name)?;
            client
                .call::<(), Value>(Method::DELETE, &format!("/apps/{app}/secrets/{name}"), None)
                .await?;
            if json {
                return output::json(&json!({"app": app, "removed": name}));
            }
            println!("Secret {name} removed from {app}.");
        }
    }
    Ok(())
}

async fn deploy(
    client: &Client,
    app: &str,
    git_ref: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    client.require_token()?;
    let view: Value = client.get(&format!("/apps/{app}")).await?;
    let repo = view["repo"].as_str().unwrap_or_default().to_owned();
    let body = match &git_ref {
        Some(r) => json!({ "ref": r }),
        None => json!({}),
    };
    let p: Value = client
        .call(Method::POST, &format!("/apps/{app}/deploy"), Some(&body))
        .await?;
    let number = p["number"].as_i64();
    if json && !follow {
        return output::json(&p);
    }
    if json {
        println!("{p}");
    } else {
        println!(
            "Deploying {app}: pipeline {repo} #{} ({} @ {}).",
            s(&p["number"]),
            p["branch"]
                .as_str()
                .map_or_else(|| s(&p["ref_name"]), str::to_owned),
            p["sha"]
                .as_str()
                .unwrap_or("-")
                .chars()
                .take(7)
                .collect::<String>()
        );
    }
    let Some(number) = number.filter(|_| follow) else {
        if !json {
            println!(
                "Follow it with `slipway pipeline logs {repo} {} -f`.",
                s(&p["number"])
            );
        }
        return Ok(());
    };
    super::pipeline::print_logs(client, &repo, number, None, true, json).await?;
    let (owner, name) = split(&repo)?;
    let path = format!("/repos/{owner}/{name}/pipelines/{number}");
    let done = watch::wait_pipeline(client, &path, json).await?;
    if done["status"] != "success" {
        bail!(
            "the deploy pipeline #{number} ended {}{} (see `slipway pipeline show {repo} {number}`)",
            s(&done["status"]),
            done["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    let a: Value = client.get(&format!("/apps/{app}")).await?;
    if json {
        println!("{a}");
    } else {
        println!(
            "{app} {} at {}: {}/{} replicas ready, release {}.",
            s(&a["status"]),
            s(&a["url"]),
            s(&a["ready"]),
            s(&a["replicas"]),
            vnum(&a["release"])
        );
    }
    Ok(())
}

async fn scale(
    client: &Client,
    app: &str,
    replicas: u32,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<()> {
    client.require_token()?;
    let mut a: Value = client
        .call(
            Method::PUT,
            &format!("/apps/{app}/scale"),
            Some(&json!({ "replicas": replicas })),
        )
        .await?;
    if !json {
        match a["replicas"].as_u64() {
            Some(got) if got != u64::from(replicas) => println!(
                "Scaling {app} to {got} replica(s), not {replicas}: autoscaling keeps it in its range (see `slipway autoscale {app}`)."
            ),
            _ => println!("Scaling {app} to {replicas} replica(s)."),
        }
    }
    if wait.wait {
        if a["release"].is_null() {
            bail!("{app} has no release yet: deploy it first (`slipway deploy {app}`)");
        }
        let timeout = Duration::from_secs(wait.timeout);
        a = watch::wait_ready(client, app, None, timeout, json).await?;
        if !json {
            println!(
                "{app}: {}/{} replicas ready.",
                s(&a["ready"]),
                s(&a["replicas"])
            );
        }
    }
    if json {
        return output::json(&a);
    }
    Ok(())
}

async fn scale_service(
    client: &Client,
    app: &str,
    service: &str,
    replicas: u32,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<()> {
    client.require_token()?;
    let mut a: Value = client
        .call(
            Method::PUT,
            &format!("/apps/{app}/scale"),
            Some(&json!({ "service": service, "replicas": replicas })),
        )
        .await?;
    if !json {
        println!("Scaling {service} of {app} to {replicas} replica(s).");
    }
    if wait.wait {
        let deadline = std::time::Instant::now() + Duration::from_secs(wait.timeout);
        loop {
            let svc = a["services"]
                .as_array()
                .and_then(|l| l.iter().find(|s| s["name"] == service))
                .cloned()
                .unwrap_or(Value::Null);
            if svc["state"] == "running" || (svc["state"] == "stopped" && replicas == 0) {
                if !json {
                    println!(
                        "{service} of {app}: {}/{} replicas ready.",
                        s(&svc["ready"]),
                        s(&svc["replicas"])
                    );
                }
                break;
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "{service} of {app} is not ready after {} s: {}/{} replicas ready (see `slipway ps {app}` and `slipway events {app}`)",
                    wait.timeout,
                    s(&svc["ready"]),
                    s(&svc["replicas"])
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            a = client.get(&format!("/apps/{app}")).await?;
        }
    }
    if json {
        return output::json(&a);
    }
    Ok(())
}

async fn ps(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let replicas: Vec<Value> = client.get(&format!("/apps/{app}/replicas")).await?;
    if json {
        return output::json(&replicas);
    }
    // Cluster mode: replicas run on agents' nodes.
    let clustered = replicas.iter().any(|r| r["node"].is_string());
    // Stacks: each replica belongs to a service.
    let stack = replicas.iter().any(|r| r["service"].is_string());
    let rows = replicas
        .iter()
        .map(|r| {
            let state = match r["error"].as_str() {
                Some(e) if !e.is_empty() => format!("{} ({e})", s(&r["state"])),
                _ => s(&r["state"]),
            };
            let mut row = vec![
                s(&r["id"]),
                vnum(&r["release"]),
                state,
                match s(&r["address"]) {
                    a if a.is_empty() => "-".to_string(),
                    a => a,
                },
                s(&r["restarts"]),
                age(&r["started_at"]),
                limits(&r["limits"]),
            ];
            if clustered {
                row.insert(1, s(&r["node"]));
            }
            if stack {
                row.insert(0, s(&r["service"]));
            }
            row
        })
        .collect();
    let mut header = vec![
        "ID", "RELEASE", "STATE", "ADDRESS", "RESTARTS", "AGE", "LIMITS",
    ];
    if clustered {
        header.insert(1, "NODE");
    }
    if stack {
        header.insert(0, "SERVICE");
    }
    output::table(
        &header,
        rows,
        &format!(
            "No replicas of {app} running: deploy it (`slipway deploy {app}`) or scale it up."
        ),
    );
    Ok(())
}

async fn run_one_off(
    client: &Client,
    app: &str,
    service: Option<String>,
    command: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use futures::StreamExt;
    use std::io::Write;
    client.require_token()?;
    let res = client
        .post_raw(
            &format!("/apps/{app}/run"),
            &json!({"service": service, "command": command}),
        )
        .await?;
    let mut body = res.bytes_stream();
    let mut buf: Vec<u8> = Vec::new();
    let mut code: Option<i64> = None;
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.context("reading the command's output")?);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if json {
                println!("{v}");
            }
            if let Some(e) = v["error"].as_str() {
                bail!("{e}");
            }
            if let Some(c) = v["exit_code"].as_i64() {
                code = Some(c);
            } else if !json {
                let data = v["data"].as_str().unwrap_or_default();
                if v["stream"] == "stderr" {
                    let _ = std::io::stderr().write_all(data.as_bytes());
                } else {
                    let _ = std::io::stdout().write_all(data.as_bytes());
                }
            }
        }
    }
    let _ = std::io::stdout().flush();
    match code {
        Some(0) => Ok(()),
        Some(c) => std::process::exit(i32::try_from(c).unwrap_or(1).clamp(1, 255)),
        None => bail!("the server ended the stream before the command's exit code"),
    }
}

async fn volumes(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let list: Value = client.get(&format!("/apps/{app}/volumes")).await?;
    if json {
        return output::json(&list);
    }
    let rows = list
        .as_array()
        .map(|l| {
            l.iter()
                .map(|v| vec![s(&v["name"]), s(&v["docker_name"])])
                .collect()
        })
        .unwrap_or_default();
    output::table(
        &["VOLUME", "DOCKER VOLUME"],
        rows,
        &format!(
            "App {app} has no named volumes (they come from the `volumes:` of its Compose file)."
        ),
    );
    Ok(())
}

async fn volume_backup(
    client: &Client,
    app: &str,
    volume: &str,
    output: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    if output.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "the archive is binary: redirect it (`slipway volume backup {app} {volume} > {volume}.tar`) or give --output FILE"
        );
    }
    if json && output.is_none() {
        bail!("--json prints a summary on stdout: give --output FILE for the archive");
    }
    client.require_token()?;
    let res = client
        .get_raw(&format!("/apps/{app}/volumes/{volume}/backup"))
        .await?;
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin> = match &output {
        Some(path) => Box::new(
            tokio::fs::File::create(path)
                .await
                .with_context(|| format!("creating {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let mut body = res.bytes_stream();
    let mut bytes: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the backup was cut off: reading the archive failed")?;
        bytes += chunk.len() as u64;
        out.write_all(&chunk).await.context("writing the archive")?;
    }
    out.flush().await.context("writing the archive")?;
    drop(out);
    if json {
        return output::json(&json!({"app": app, "volume": volume, "bytes": bytes}));
    }
    eprintln!("Backed up volume {volume} of {app}: {bytes} bytes.");
    Ok(())
}

async fn volume_restore(
    client: &Client,
    app: &str,
    volume: &str,
    input: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::AsyncReadExt;
    if input.is_none() && std::io::stdin().is_terminal() {
        bail!(
            "give the archive on stdin (`slipway volume restore {app} {volume} < {volume}.tar`) or with --input FILE"
        );
    }
    client.require_token()?;
    let reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = match &input {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let chunks = futures::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        let mut buf = vec![0u8; 256 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), Some(reader)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let r: Value = client
        .put_stream(
            &format!("/apps/{app}/volumes/{volume}/restore"),
            reqwest::Body::wrap_stream(chunks),
            "application/x-tar",
        )
        .await?;
    if json {
        return output::json(&r);
    }
    let services: Vec<String> = r["services"]
        .as_array()
        .map(|l| l.iter().map(s).collect())
        .unwrap_or_default();
    println!(
        "Restored volume {volume} of {app}: {} bytes, {} entries.",
        s(&r["bytes"]),
        s(&r["entries"])
    );
    if !services.is_empty() {
        println!("{} start again (`slipway ps {app}`).", services.join(", "));
    }
    Ok(())
}

/// `512 MiB, 1 CPU` from a `limits` object (`-` when absent).
pub(crate) fn limits(v: &Value) -> String {
    match serde_json::from_value::<slipway_domain::Resources>(v.clone()) {
        Ok(r) if r != slipway_domain::Resources::default() => r.describe(),
        _ => "-".into(),
    }
}

async fn open(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let a: Value = client.get(&format!("/apps/{app}")).await?;
    let Some(url) = a["url"].as_str() else {
        bail!("{app} has no URL yet");
    };
    if json {
        return output::json(&json!({"app": app, "url": url}));
    }
    println!("{url}");
    if let Some(cmd) = watch::browser_command(url) {
        watch::open_browser(&cmd);
    }
    Ok(())
}

async fn releases(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let list: Vec<Value> = client.get(&format!("/apps/{app}/releases")).await?;
    if json {
        return output::json(&list);
    }
    let rows = list
        .iter()
        .map(|r| {
            let mut description = s(&r["description"]);
            if let Some(e) = r["error"].as_str().filter(|e| !e.is_empty()) {
                description = format!("{description} ({e})");
            }
            vec![
                vnum(&r["number"]),
                s(&r["status"]),
                s(&r["image"]),
                r["sha"].as_str().unwrap_or("-").chars().take(7).collect(),
                s(&r["created_by"]),
                when(&r["created_at"]),
                description,
            ]
        })
        .collect();
    output::table(
        &[
            "NUMBER",
            "STATUS",
            "IMAGE",
            "COMMIT",
            "BY",
            "WHEN",
            "DESCRIPTION",
        ],
        rows,
        &format!("No releases of {app} yet: push to its branch or run `slipway deploy {app}`."),
    );
    Ok(())
}

async fn events(client: &Client, app: &str, tail: usize, json: bool) -> anyhow::Result<()> {
    let list: Vec<Value> = client.get(&format!("/apps/{app}/events")).await?;
    let list = &list[list.len().saturating_sub(tail)..];
    if json {
        return output::json(&list);
    }
    let rows = list
        .iter()
        .map(|e| vec![when(&e["at"]), s(&e["kind"]), s(&e["message"])])
        .collect();
    output::table(
        &["WHEN", "KIND", "EVENT"],
        rows,
        &format!(
            "Nothing has happened to {app} yet: push to its branch or run `slipway deploy {app}`."
        ),
    );
    Ok(())
}

async fn rollback(
    client: &Client,
    app: &str,
    release: Option<i64>,
    wait: &WaitArgs,
    json: bool,
) -> anyhow::Result<()> {
    client.require_token()?;
    let body = match release {
        Some(n) => json!({ "release": n }),
        None => json!({}),
    };
    let r: Value = client
        .call(Method::POST, &format!("/apps/{app}/rollback"), Some(&body))
        .await?;
    let number = watch::release_number(&r)?;
    if !json {
        println!(
            "Rolling back {app}: release v{number} ({}).",
            s(&r["description"])
        );
    }
    if wait.wait {
        let timeout = Duration::from_secs(wait.timeout);
        let a = watch::wait_ready(client, app, Some(number), timeout, json).await?;
        if !json {
            println!(
                "{app} runs v{number}: {}/{} replicas ready.",
                s(&a["ready"]),
                s(&a["replicas"])
            );
        }
    }
    if json {
        return output::json(&r);
    }
    Ok(())
}

async fn config(client: &Client, args: ConfigArgs, json: bool) -> anyhow::Result<()> {
    let (app, body, what, wait) = match args.action {
        None => return list_config(client, &args.app.unwrap_or_default(), json).await,
        Some(ConfigAction::List { app }) => return list_config(client, &app, json).await,
        Some(ConfigAction::Set { app, pairs, wait }) => {
            let env = parse::env_pairs("config set", &pairs)?;
            let what = format!("Set {}", env.keys().cloned().collect::<Vec<_>>().join(", "));
            (app, json!({ "set": env }), what, wait)
        }
        Some(ConfigAction::Unset { app, keys, wait }) => {
            for k in &keys {
                parse::env_key(k)?;
            }
            let what = format!("Unset {}", keys.join(", "));
            (app, json!({ "unset": keys }), what, wait)
        }
    };
    let app = parse::app_name(&app)?;
    client.require_token()?;
    let answer: Value = client
        .call(Method::PATCH, &format!("/apps/{app}/config"), Some(&body))
        .await?;
    if !json {
        match answer["number"].as_i64() {
            Some(n) => println!("{what} on {app}: release v{n}."),
            None => println!("{what} on {app} (applies from its first deploy)."),
        }
    }
    if let (true, Some(n)) = (wait.wait, answer["number"].as_i64()) {
        wait_live(client, app, n, &wait, json).await?;
    }
    if json {
        return output::json(&answer);
    }
    Ok(())
}

/// `--wait` of a change that made release `n`: until it serves on every replica.
async fn wait_live(
    client: &Client,
    app: &str,
    n: i64,
    wait: &WaitArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let view = watch::wait_ready(
        client,
        app,
        Some(n),
        Duration::from_secs(wait.timeout),
        quiet,
    )
    .await?;
    if !quiet {
        println!(
            "v{n} is live on {} replica(s).",
            view["ready"].as_i64().unwrap_or(0)
        );
    }
    Ok(())
}

/// `slipway config [list] APP`: the app's variables as a table.
async fn list_config(client: &Client, app: &str, json: bool) -> anyhow::Result<()> {
    let app = parse::app_name(app)?;
    let c: Value = client.get(&format!("/apps/{app}/config")).await?;
    if json {
        return output::json(&c);
    }
    let rows = c["env"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| vec![k.clone(), s(v)]).collect())
        .unwrap_or_default();
    output::table(
        &["KEY", "VALUE"],
        rows,
        &format!("No config vars: set one with `slipway config set {app} KEY=VALUE`."),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn command_definitions_are_consistent() {
        crate::Cli::command().debug_assert();
    }

    #[test]
    fn config_lists_or_changes() {
        let parse = |args: &[&str]| crate::Cli::try_parse_from(args).map(|_| ());
        assert!(parse(&["slipway", "config", "web"]).is_ok());
        assert!(parse(&["slipway", "config", "list", "web"]).is_ok());
        assert!(parse(&["slipway", "config", "set", "web", "A=1"]).is_ok());
        assert!(parse(&["slipway", "config", "unset", "web", "A"]).is_ok());
        assert!(parse(&["slipway", "config"]).is_err());
        assert!(parse(&["slipway", "app", "create", "-x", "--repo", "a/b"]).is_ok());
        assert!(parse(&["slipway", "scale", "web=3", "--wait"]).is_ok());
    }
}
