//! One module per command group.

pub mod account;
pub mod admin;
pub mod agent;
pub mod alert;
pub mod app;
pub mod autoscale;
pub mod exec;
pub mod images;
pub mod node;
pub mod pipeline;
pub mod repo;
pub mod secret;
pub mod server;
pub mod token;
pub mod webhook;

use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal};

/// Reads a password from stdin (`--stdin`, or whenever stdin is not a terminal) or asks for it on the terminal.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    rpassword::prompt_password(prompt).context("reading the password")
}

/// Adds a signed webhook by POSTing `{url, secret}` to `path`: repository
/// webhooks and alert webhooks are added the same way. The secret is read
/// from stdin (`--stdin`) or generated and shown once.
pub async fn add_signed_webhook(
    client: &crate::client::Client,
    g: &crate::GlobalArgs,
    path: &str,
    url: &str,
    secret_stdin: bool,
    what: &str,
    target: &str,
) -> anyhow::Result<()> {
    use serde_json::{json, Value};
    let (secret, generated) = if secret_stdin {
        (read_secret_line()?, false)
    } else {
        (hex::encode(rand::random::<[u8; 32]>()), true)
    };
    let hook: Value = client
        .call(
            reqwest::Method::POST,
            path,
            Some(&json!({ "url": url, "secret": secret })),
        )
        .await?;
    if g.json {
        let mut out = hook;
        if generated {
            out["secret"] = json!(secret);
        }
        return crate::output::json(&out);
    }
    println!("{what} {} added to {target}: {url}", hook["id"]);
    if generated {
        println!("Signing secret (shown once): {secret}");
    }
    println!("Each delivery carries X-Slipway-Signature-256: sha256=<HMAC-SHA256 of the body>.");
    Ok(())
}

/// One line of stdin as a webhook secret; an empty one is refused.
fn read_secret_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the secret from stdin")?;
    let secret = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !secret.is_empty(),
        "no secret on stdin: pipe one in, or leave out --stdin to get a generated one"
    );
    Ok(secret)
}

/// Asks for a user name on the terminal when none was given.
pub fn read_username(given: Option<String>) -> anyhow::Result<String> {
    if let Some(u) = given {
        return Ok(u);
    }
    if !std::io::stdin().is_terminal() {
        bail!("give the user name with --username");
    }
    eprint!("User name: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_owned())
}
