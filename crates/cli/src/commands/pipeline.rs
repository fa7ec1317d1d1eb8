//! `slipway pipeline list|show|logs|cancel|retry`.

use crate::client::Client;
use crate::{output, GlobalArgs};
use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;
use std::io::Write;

#[derive(clap::Subcommand)]
pub enum PipelineCommand {
    /// List a repository's pipelines, newest first.
    List {
        /// OWNER/NAME.
        repo: String,
        /// How many to show.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show one pipeline and its steps.
    Show {
        /// OWNER/NAME.
        repo: String,
        /// Pipeline number.
        number: i64,
    },
    /// Print a step's log (every step's when STEP is left out).
    Logs {
        /// OWNER/NAME.
        repo: String,
        /// Pipeline number.
        number: i64,
        /// Step name.
        step: Option<String>,
        /// Follow live until the step ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a queued or running pipeline.
    Cancel {
        /// OWNER/NAME.
        repo: String,
        /// Pipeline number.
        number: i64,
    },
    /// Run an ended pipeline again (same commit).
    Retry {
        /// OWNER/NAME.
        repo: String,
        /// Pipeline number.
        number: i64,
    },
}

fn split(full: &str) -> anyhow::Result<(&str, &str)> {
    full.split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("{full:?} is not OWNER/NAME"))
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn secs(v: &Value) -> String {
    v.as_i64()
        .map(|ms| format!("{:.1}s", ms as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn short(sha: &Value) -> String {
    sha.as_str().unwrap_or("").chars().take(10).collect()
}

/// Runs a pipeline command.
pub async fn run(cmd: PipelineCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    match cmd {
        PipelineCommand::List { repo, limit } => {
            let (o, n) = split(&repo)?;
            let list: Vec<Value> = client
                .get(&format!("/repos/{o}/{n}/pipelines?limit={limit}"))
                .await?;
            if g.json {
                return output::json(&list);
            }
            let rows = list
                .iter()
                .map(|p| {
                    vec![
                        format!("#{}", p["number"]),
                        s(&p["status"]),
                        p["branch"]
                            .as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| s(&p["ref_name"])),
                        short(&p["sha"]),
                        s(&p["actor"]),
                        s(&p["created_at"]).chars().take(19).collect(),
                        secs(&p["duration_ms"]),
                    ]
                })
                .collect();
            output::table(
                &["#", "STATUS", "BRANCH", "COMMIT", "BY", "CREATED", "TIME"],
                rows,
                "No pipelines yet: push a commit with a .slipway.yml.",
            );
        }
        PipelineCommand::Show { repo, number } => {
            let (o, n) = split(&repo)?;
            let p: Value = client
                .get(&format!("/repos/{o}/{n}/pipelines/{number}"))
                .await?;
            if g.json {
                return output::json(&p);
            }
            println!("{repo} pipeline #{number}: {}", s(&p["status"]));
            println!("  ref:    {} @ {}", s(&p["ref_name"]), short(&p["sha"]));
            println!("  by:     {}", s(&p["actor"]));
            println!("  time:   {}", secs(&p["duration_ms"]));
            if let Some(e) = p["error"].as_str() {
                println!("  error:  {e}");
            }
            let rows = p["steps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|st| {
                    vec![
                        s(&st["name"]),
                        s(&st["status"]),
                        s(&st["exit_code"]),
                        secs(&st["duration_ms"]),
                        super::app::limits(&st["limits"]),
                        st["error"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["STEP", "STATUS", "EXIT", "TIME", "LIMITS", "NOTE"],
                rows,
                "No steps.",
            );
        }
        PipelineCommand::Logs {
            repo,
            number,
            step,
            follow,
        } => print_logs(&client, &repo, number, step, follow, g.json).await?,
        PipelineCommand::Cancel { repo, number } => {
            let (o, n) = split(&repo)?;
            client.require_token()?;
            let p: Value = client
                .call::<(), Value>(
                    Method::POST,
                    &format!("/repos/{o}/{n}/pipelines/{number}/cancel"),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&p);
            }
            println!("Cancelling {repo} pipeline #{number}.");
        }
        PipelineCommand::Retry { repo, number } => {
            let (o, n) = split(&repo)?;
            client.require_token()?;
            let p: Value = client
                .call::<(), Value>(
                    Method::POST,
                    &format!("/repos/{o}/{n}/pipelines/{number}/retry"),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&p);
            }
            println!(
                "Queued {repo} pipeline #{} (retry of #{number}).",
                p["number"]
            );
        }
    }
    Ok(())
}

/// Prints a pipeline's logs: one step's, or every step's in order; with
/// `follow`, each step is followed live until it ends. Shared with
/// `slipway deploy --follow`, which watches the pipeline a deploy started.
pub(crate) async fn print_logs(
    client: &Client,
    repo: &str,
    number: i64,
    step: Option<String>,
    follow: bool,
    json: bool,
) -> anyhow::Result<()> {
    let (o, n) = split(repo)?;
    let steps: Vec<String> = match step {
        Some(st) => vec![st],
        None => {
            let p: Value = client
                .get(&format!("/repos/{o}/{n}/pipelines/{number}"))
                .await?;
            p["steps"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|st| st["name"].as_str().map(str::to_owned))
                .collect()
        }
    };
    let many = steps.len() > 1;
    for st in steps {
        let path = format!("/repos/{o}/{n}/pipelines/{number}/steps/{st}/logs");
        if many && !json {
            println!("── {st} ──");
        }
        if follow {
            follow_step(client, &path, &st, json).await?;
        } else {
            let text = client.get_raw(&path).await?.text().await?;
            if json {
                output::json(&serde_json::json!({"step": st, "log": text}))?;
            } else {
                print!("{text}");
            }
        }
    }
    Ok(())
}

/// Prints a step's lines as the server streams them (SSE) until it ends.
async fn follow_step(client: &Client, path: &str, step: &str, json: bool) -> anyhow::Result<()> {
    let res = client.get_raw(&format!("{path}?follow=1")).await?;
    let mut body = res.bytes_stream();
    let mut buf = Vec::new();
    let mut event = String::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.context("reading the log stream")?);
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if let Some(e) = line.strip_prefix("event:") {
                event = e.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                let v: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
                let mut out = stdout.lock();
                if json {
                    let mut v = v;
                    v["event"] = Value::String(event.clone());
                    v["step"] = Value::String(step.to_owned());
                    writeln!(out, "{v}")?;
                } else if event == "log" {
                    writeln!(out, "{}", v["text"].as_str().unwrap_or_default())?;
                } else if event == "end" {
                    eprintln!("[{step} ended: {}]", s(&v["status"]));
                }
                out.flush()?;
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
    Ok(())
}
