//! `slipway alert …`: alert rules per app, their history, the alerts firing
//! now, and the signed webhooks that hear about them. All are clients of
//! `/apps/{app}/alerts`, `/apps/{app}/alert-webhooks` and `/alerts`.

use crate::client::Client;
use crate::{output, GlobalArgs};
use anyhow::bail;
use reqwest::Method;
use serde_json::{json, Map, Value};

/// `slipway alert …`.
#[derive(clap::Subcommand)]
pub enum AlertCommand {
    /// Add a rule, e.g. `slipway alert add web --kind error-rate --above 5 --for 30s`.
    Add(AddArgs),
    /// List an app's rules with the state of their alert.
    List {
        /// App name.
        app: String,
    },
    /// Change a rule (only the options given change).
    Set(SetArgs),
    /// Remove a rule (its firing alert resolves; its history stays).
    Remove {
        /// App name.
        app: String,
        /// Rule id from `slipway alert list`.
        id: i64,
    },
    /// An app's alerts, firing first then newest.
    History {
        /// App name.
        app: String,
        /// How many (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Alerts firing now in every app you can see.
    Firing,
    /// Notifications sent to an app's webhooks, newest first.
    Deliveries {
        /// App name.
        app: String,
        /// How many (1-1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Webhooks told when an app's alerts fire or resolve.
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

/// Options of `slipway alert add`.
#[derive(clap::Args)]
pub struct AddArgs {
    /// App name.
    app: String,
    /// replica-down, error-rate, p99 or cpu.
    #[arg(long)]
    kind: String,
    #[command(flatten)]
    rule: RuleArgs,
}

/// Options of `slipway alert set`.
#[derive(clap::Args)]
pub struct SetArgs {
    /// App name.
    app: String,
    /// Rule id from `slipway alert list`.
    id: i64,
    #[command(flatten)]
    rule: RuleArgs,
    /// Evaluate the rule again.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Stop evaluating the rule (its firing alert resolves).
    #[arg(long)]
    disable: bool,
}

/// Settings shared by `add` and `set`; only those given are sent.
#[derive(clap::Args)]
struct RuleArgs {
    /// Fire above this: % of 5xx (error-rate), ms (p99), % of a core (cpu),
    /// missing replicas tolerated (replica-down, default 0).
    #[arg(long, allow_hyphen_values = true)]
    above: Option<f64>,
    /// How long the condition must hold before it fires, e.g. 30s, 5m (default 0).
    #[arg(long = "for", value_name = "DURATION")]
    for_: Option<String>,
    /// Window the value is computed over, e.g. 1m (default 1m; not for replica-down).
    #[arg(long, value_name = "DURATION")]
    window: Option<String>,
    /// error-rate and p99: fewer requests in the window give no verdict (default 10).
    #[arg(long)]
    min_requests: Option<i64>,
}

impl RuleArgs {
    fn to_body(&self) -> anyhow::Result<Map<String, Value>> {
        let mut b = Map::new();
        if let Some(v) = self.above {
            b.insert("threshold".into(), json!(v));
        }
        if let Some(v) = &self.for_ {
            b.insert("for_s".into(), json!(seconds("--for", v)?));
        }
        if let Some(v) = &self.window {
            b.insert("window_s".into(), json!(seconds("--window", v)?));
        }
        if let Some(v) = self.min_requests {
            b.insert("min_requests".into(), json!(v));
        }
        Ok(b)
    }
}

/// `slipway alert webhook …`.
#[derive(clap::Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook (prints a generated signing secret once, unless
    /// `--stdin` gives one).
    Add {
        /// App name.
        app: String,
        /// http(s) URL that receives the POST.
        url: String,
        /// Read the signing secret from stdin (one line) instead of generating one.
        #[arg(long = "stdin", alias = "secret-stdin")]
        secret_stdin: bool,
    },
    /// List an app's webhooks (secrets are never shown).
    List {
        /// App name.
        app: String,
    },
    /// Remove a webhook.
    Remove {
        /// App name.
        app: String,
        /// Id from `slipway alert webhook list`.
        id: i64,
    },
    /// Deliver to a webhook again.
    Enable {
        /// App name.
        app: String,
        /// Webhook id.
        id: i64,
    },
    /// Stop delivering to a webhook (kept, with its secret).
    Disable {
        /// App name.
        app: String,
        /// Webhook id.
        id: i64,
    },
    /// Send a signed ping now and show how it went.
    Test {
        /// App name.
        app: String,
        /// Webhook id.
        id: i64,
    },
}

/// `30`, `30s`, `5m`, `1h`, `1h30m` → seconds.
pub(crate) fn seconds(flag: &str, text: &str) -> anyhow::Result<i64> {
    let bad =
        || anyhow::anyhow!("{flag} must be a duration such as 30s, 5m or 1h30m, not {text:?}");
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<i64>() {
        return if n >= 0 { Ok(n) } else { Err(bad()) };
    }
    let (mut total, mut digits) = (0i64, String::new());
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        if digits.is_empty() || digits.len() > 9 {
            return Err(bad());
        }
        total += digits.parse::<i64>().map_err(|_| bad())? * unit;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Checks an app name with the server's rule (it goes into URL paths).
fn app_path(app: &str) -> anyhow::Result<String> {
    slipway_domain::AppName::parse(app)?;
    Ok(format!("/apps/{app}"))
}

fn limit(n: u32) -> anyhow::Result<u32> {
    if !(1..=1000).contains(&n) {
        bail!("--limit must be between 1 and 1000, got {n}");
    }
    Ok(n)
}

/// A value with its unit, e.g. `40%`, `350 ms`, `1 replicas`; `-` when none.
fn value(v: &Value, unit: &Value) -> String {
    let Some(n) = v.as_f64() else {
        return "-".into();
    };
    let n = if n.fract() == 0.0 {
        format!("{}", n as i64)
    } else {
        format!("{n:.2}")
    };
    match unit.as_str().unwrap_or("") {
        "%" => format!("{n}%"),
        "" => n,
        u => format!("{n} {u}"),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn when(v: &Value) -> String {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| output::when(&t.with_timezone(&chrono::Utc)))
        .unwrap_or_else(|| "-".into())
}

fn rule_rows(rules: &[Value]) -> Vec<Vec<String>> {
    rules
        .iter()
        .map(|r| {
            vec![
                text(&r["id"]),
                text(&r["kind"]),
                text(&r["summary"]),
                text(&r["state"]),
                value(&r["value"], &r["unit"]),
            ]
        })
        .collect()
}

fn alert_rows(alerts: &[Value], with_app: bool) -> Vec<Vec<String>> {
    alerts
        .iter()
        .map(|a| {
            let mut row = Vec::new();
            if with_app {
                row.push(text(&a["app"]));
            }
            row.extend([
                text(&a["id"]),
                text(&a["state"]),
                text(&a["rule"]),
                value(&a["value"], &a["unit"]),
                when(&a["started_at"]),
                when(&a["resolved_at"]),
            ]);
            row
        })
        .collect()
}

/// Runs an alert command.
pub async fn run(cmd: AlertCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        AlertCommand::Add(args) => {
            let path = app_path(&args.app)?;
            let mut body = args.rule.to_body()?;
            body.insert("kind".into(), json!(args.kind.replace('-', "_")));
            let rule: Value = client
                .call(Method::POST, &format!("{path}/alerts"), Some(&body))
                .await?;
            if g.json {
                return output::json(&rule);
            }
            println!(
                "Alert rule {} added to {}: {}.",
                rule["id"],
                args.app,
                text(&rule["summary"])
            );
        }
        AlertCommand::List { app } => {
            let rules: Vec<Value> = client.get(&format!("{}/alerts", app_path(&app)?)).await?;
            if g.json {
                return output::json(&rules);
            }
            output::table(
                &["ID", "KIND", "RULE", "STATE", "VALUE"],
                rule_rows(&rules),
                &format!("No alert rules: add one with `slipway alert add {app} --kind error-rate --above 5`."),
            );
        }
        AlertCommand::Set(args) => {
            let path = app_path(&args.app)?;
            let mut body = args.rule.to_body()?;
            if args.enable || args.disable {
                body.insert("enabled".into(), json!(args.enable));
            }
            if body.is_empty() {
                bail!("nothing to change: give --above, --for, --window, --min-requests, --enable or --disable");
            }
            let rule: Value = client
                .call(
                    Method::PATCH,
                    &format!("{path}/alerts/{}", args.id),
                    Some(&body),
                )
                .await?;
            if g.json {
                return output::json(&rule);
            }
            println!(
                "Alert rule {} of {}: {} ({}).",
                args.id,
                args.app,
                text(&rule["summary"]),
                if rule["enabled"] == json!(true) {
                    "enabled"
                } else {
                    "disabled"
                }
            );
        }
        AlertCommand::Remove { app, id } => {
            client
                .call::<(), Value>(
                    Method::DELETE,
                    &format!("{}/alerts/{id}", app_path(&app)?),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&json!({"app": app, "removed": id}));
            }
            println!("Alert rule {id} removed from {app}.");
        }
        AlertCommand::History { app, limit: n } => {
            let alerts: Vec<Value> = client
                .get(&format!(
                    "{}/alerts/events?limit={}",
                    app_path(&app)?,
                    limit(n)?
                ))
                .await?;
            if g.json {
                return output::json(&alerts);
            }
            output::table(
                &["ID", "STATE", "RULE", "VALUE", "STARTED", "RESOLVED"],
                alert_rows(&alerts, false),
                &format!("No alerts for {app} yet."),
            );
        }
        AlertCommand::Firing => {
            let alerts: Vec<Value> = client.get("/alerts?state=firing").await?;
            if g.json {
                return output::json(&alerts);
            }
            output::table(
                &["APP", "ID", "STATE", "RULE", "VALUE", "STARTED", "RESOLVED"],
                alert_rows(&alerts, true),
                "No alert is firing.",
            );
        }
        AlertCommand::Deliveries { app, limit: n } => {
            let list: Vec<Value> = client
                .get(&format!(
                    "{}/alert-deliveries?limit={}",
                    app_path(&app)?,
                    limit(n)?
                ))
                .await?;
            if g.json {
                return output::json(&list);
            }
            let rows = list
                .iter()
                .map(|d| {
                    vec![
                        text(&d["id"]),
                        text(&d["webhook_id"]),
                        text(&d["alert_id"]),
                        text(&d["state"]),
                        text(&d["status"]),
                        text(&d["attempts"]),
                        text(&d["response_status"]),
                        text(&d["error"]),
                        when(&d["updated_at"]),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID", "WEBHOOK", "ALERT", "EVENT", "STATUS", "ATTEMPTS", "HTTP", "ERROR",
                    "WHEN",
                ],
                rows,
                &format!("No deliveries for {app} yet."),
            );
        }
        AlertCommand::Webhook(cmd) => webhook(cmd, &client, g).await?,
    }
    Ok(())
}

async fn set_active(
    client: &Client,
    g: &GlobalArgs,
    app: &str,
    id: i64,
    active: bool,
) -> anyhow::Result<()> {
    let hook: Value = client
        .call(
            Method::PATCH,
            &format!("{}/alert-webhooks/{id}", app_path(app)?),
            Some(&json!({ "active": active })),
        )
        .await?;
    if g.json {
        return output::json(&hook);
    }
    let what = if active { "enabled" } else { "disabled" };
    println!("Alert webhook {id} of {app} {what}.");
    Ok(())
}

async fn webhook(cmd: WebhookCommand, client: &Client, g: &GlobalArgs) -> anyhow::Result<()> {
    match cmd {
        WebhookCommand::Add {
            app,
            url,
            secret_stdin,
        } => {
            let path = format!("{}/alert-webhooks", app_path(&app)?);
            let what = "Alert webhook";
            super::add_signed_webhook(client, g, &path, &url, secret_stdin, what, &app).await?;
        }
        WebhookCommand::List { app } => {
            let hooks: Vec<Value> = client
                .get(&format!("{}/alert-webhooks", app_path(&app)?))
                .await?;
            if g.json {
                return output::json(&hooks);
            }
            let rows = hooks
                .iter()
                .map(|h| {
                    vec![
                        text(&h["id"]),
                        text(&h["url"]),
                        if h["active"] == json!(true) {
                            "yes"
                        } else {
                            "no"
                        }
                        .to_owned(),
                        when(&h["created_at"]),
                    ]
                })
                .collect();
            output::table(
                &["ID", "URL", "ACTIVE", "ADDED"],
                rows,
                &format!("No alert webhooks: add one with `slipway alert webhook add {app} URL`."),
            );
        }
        WebhookCommand::Remove { app, id } => {
            client
                .call::<(), Value>(
                    Method::DELETE,
                    &format!("{}/alert-webhooks/{id}", app_path(&app)?),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&json!({"app": app, "removed": id}));
            }
            println!("Alert webhook {id} removed from {app}.");
        }
        WebhookCommand::Enable { app, id } => set_active(client, g, &app, id, true).await?,
        WebhookCommand::Disable { app, id } => set_active(client, g, &app, id, false).await?,
        WebhookCommand::Test { app, id } => {
            let d: Value = client
                .call::<(), Value>(
                    Method::POST,
                    &format!("{}/alert-webhooks/{id}/test", app_path(&app)?),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&d);
            }
            if d["status"] == json!("delivered") {
                println!(
                    "Ping delivered to webhook {id} (HTTP {}).",
                    text(&d["response_status"])
                );
            } else {
                bail!("the ping to webhook {id} failed: {}", text(&d["error"]));
            }
        }
    }
    Ok(())
}
