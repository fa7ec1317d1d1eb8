//! `slipway webhook add|list|remove`: repository webhooks, called with a
//! signed JSON body when a pipeline ends. The signing secret is read from
//! stdin or generated and shown once; it is never listed again.

use super::add_signed_webhook;
use super::repo::split;
use crate::client::Client;
use crate::{output, GlobalArgs};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum WebhookCommand {
    /// Add a webhook (prints a generated signing secret once, unless
    /// `--stdin` gives one).
    Add {
        /// OWNER/NAME of the repository.
        repo: String,
        /// http(s) URL that receives the POST.
        url: String,
        /// Read the signing secret from stdin (one line) instead of generating one.
        #[arg(long = "stdin", alias = "secret-stdin")]
        secret_stdin: bool,
    },
    /// List webhooks (secrets are never shown).
    List {
        /// OWNER/NAME of the repository.
        repo: String,
    },
    /// Remove a webhook by id.
    Remove {
        /// OWNER/NAME of the repository.
        repo: String,
        /// Id from `slipway webhook list`.
        id: i64,
    },
}

/// Runs a webhook command.
pub async fn run(cmd: WebhookCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        WebhookCommand::Add {
            repo,
            url,
            secret_stdin,
        } => {
            let (owner, name) = split(&repo)?;
            let path = format!("/repos/{owner}/{name}/hooks");
            add_signed_webhook(&client, g, &path, &url, secret_stdin, "Webhook", &repo).await?;
        }
        WebhookCommand::List { repo } => {
            let (owner, name) = split(&repo)?;
            let hooks: Vec<Value> = client.get(&format!("/repos/{owner}/{name}/hooks")).await?;
            if g.json {
                return output::json(&hooks);
            }
            let rows = hooks
                .iter()
                .map(|h| {
                    vec![
                        h["id"].to_string(),
                        h["url"].as_str().unwrap_or_default().to_owned(),
                        h["created_at"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["ID", "URL", "ADDED"],
                rows,
                "No webhooks: add one with `slipway webhook add OWNER/REPO URL`.",
            );
        }
        WebhookCommand::Remove { repo, id } => {
            let (owner, name) = split(&repo)?;
            client
                .call::<(), Value>(
                    Method::DELETE,
                    &format!("/repos/{owner}/{name}/hooks/{id}"),
                    None,
                )
                .await?;
            if g.json {
                return output::json(&json!({"repo": repo, "removed": id}));
            }
            println!("Webhook {id} removed from {repo}.");
        }
    }
    Ok(())
}
