//! `slipway repo create|list|show|delete`.

use crate::client::Client;
use crate::{output, GlobalArgs};
use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum RepoCommand {
    /// Create an empty repository.
    Create {
        /// NAME or OWNER/NAME.
        name: String,
        /// Visible only to you, collaborators and admins.
        #[arg(long)]
        private: bool,
        /// One-line description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List repositories you can see.
    List {
        /// Only this owner's repositories.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Show one repository and its clone URL.
    Show {
        /// OWNER/NAME.
        repo: String,
    },
    /// Change a repository's description, visibility or default branch.
    Set {
        /// OWNER/NAME.
        repo: String,
        /// The branch clones check out (it must exist).
        #[arg(long)]
        default_branch: Option<String>,
        /// One-line description.
        #[arg(long)]
        description: Option<String>,
        /// Make it private (`--private true`) or public (`--private false`).
        #[arg(long)]
        private: Option<bool>,
    },
    /// Delete a repository and all its history.
    Delete {
        /// OWNER/NAME.
        repo: String,
        /// Confirm: deletion cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// Splits `OWNER/NAME`, with a readable error for anything else.
pub(crate) fn split(full: &str) -> anyhow::Result<(&str, &str)> {
    full.split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("{full:?} is not OWNER/NAME"))
}

/// The lines `repo show` and `repo set` print below the name.
fn print_details(client: &Client, r: &Value) {
    println!(
        "  visibility: {}",
        if r["private"].as_bool().unwrap_or(false) {
            "private"
        } else {
            "public"
        }
    );
    println!("  access:     {}", r["permission"].as_str().unwrap_or("-"));
    println!(
        "  branch:     {}",
        r["default_branch"].as_str().unwrap_or("-")
    );
    println!(
        "  clone:      {}{}",
        client.base(),
        r["clone_path"].as_str().unwrap_or_default()
    );
}

/// Runs a repo command.
pub async fn run(cmd: RepoCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let client = Client::from_args(g)?;
    match cmd {
        RepoCommand::Create {
            name,
            private,
            description,
        } => {
            client.require_token()?;
            let (owner, name) = match name.split_once('/') {
                Some((o, n)) => (Some(o.to_owned()), n.to_owned()),
                None => (None, name),
            };
            let repo: Value = client
                .call(
                    Method::POST,
                    "/repos",
                    Some(&json!({"name": name, "owner": owner, "private": private, "description": description})),
                )
                .await?;
            if g.json {
                return output::json(&repo);
            }
            println!(
                "Created {}.",
                repo["full_name"].as_str().unwrap_or_default()
            );
            println!(
                "Push to it with:\n  git remote add slipway {}{}\n  git push slipway main",
                client.base(),
                repo["clone_path"].as_str().unwrap_or_default()
            );
        }
        RepoCommand::List { owner } => {
            let path = match owner {
                Some(o) => format!("/repos?owner={o}"),
                None => "/repos".into(),
            };
            let repos: Vec<Value> = client.get(&path).await?;
            if g.json {
                return output::json(&repos);
            }
            let rows = repos
                .iter()
                .map(|r| {
                    vec![
                        r["full_name"].as_str().unwrap_or_default().to_owned(),
                        if r["private"].as_bool().unwrap_or(false) {
                            "private"
                        } else {
                            "public"
                        }
                        .to_owned(),
                        r["permission"].as_str().unwrap_or("-").to_owned(),
                        r["description"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["REPOSITORY", "VISIBILITY", "ACCESS", "DESCRIPTION"],
                rows,
                "No repositories yet: create one with `slipway repo create NAME`.",
            );
        }
        RepoCommand::Show { repo } => {
            let (owner, name) = split(&repo)?;
            let r: Value = client.get(&format!("/repos/{owner}/{name}")).await?;
            if g.json {
                return output::json(&r);
            }
            println!("{}", r["full_name"].as_str().unwrap_or_default());
            print_details(&client, &r);
        }
        RepoCommand::Set {
            repo,
            default_branch,
            description,
            private,
        } => {
            let (owner, name) = split(&repo)?;
            if default_branch.is_none() && description.is_none() && private.is_none() {
                bail!("nothing to change: give --default-branch, --description or --private");
            }
            client.require_token()?;
            let r: Value = client
                .call(
                    Method::PATCH,
                    &format!("/repos/{owner}/{name}"),
                    Some(&json!({"default_branch": default_branch, "description": description, "private": private})),
                )
                .await?;
            if g.json {
                return output::json(&r);
            }
            println!("Updated {}.", r["full_name"].as_str().unwrap_or_default());
            print_details(&client, &r);
        }
        RepoCommand::Delete { repo, yes } => {
            let (owner, name) = split(&repo)?;
            if !yes {
                bail!("deleting {repo} destroys its history: repeat with --yes to confirm");
            }
            client.require_token()?;
            client
                .call::<(), Value>(Method::DELETE, &format!("/repos/{owner}/{name}"), None)
                .await?;
            if g.json {
                return output::json(&json!({"deleted": repo}));
            }
            println!("Deleted {repo}.");
        }
    }
    Ok(())
}
