//! One module per command group.

pub mod account;
pub mod admin;
pub mod agent;
pub mod alert;
pub mod app;
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

/// Reads a password from stdin (`--password-stdin`) or asks for it on the terminal.
pub fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the password: pass it on stdin with --password-stdin");
    }
    rpassword::prompt_password(prompt).context("reading the password")
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
