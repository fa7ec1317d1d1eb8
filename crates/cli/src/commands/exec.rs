//! `slipway exec run|jobs|runtimes|images build`: run code in the server's sandboxes.

use crate::client::Client;
use crate::{output, GlobalArgs};
use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum ExecCommand {
    /// Run files in a sandbox and print their output; exits non-zero when the program fails.
    Run {
        /// Source files; the first is the entry point.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Language (default: guessed from the first file's extension).
        #[arg(long = "lang")]
        language: Option<String>,
        /// Standard input of the program.
        #[arg(long)]
        stdin: Option<String>,
        /// Arguments of the program (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List your recent jobs.
    Jobs,
    /// List the languages the server runs.
    Runtimes,
    /// Build the language images locally (needs Docker on this machine).
    #[command(subcommand)]
    Images(ImagesCommand),
}

#[derive(clap::Subcommand)]
pub enum ImagesCommand {
    /// Build the images of LANG… (all languages when none is given).
    Build {
        /// Languages to build.
        languages: Vec<String>,
        /// Rebuild even when the image exists.
        #[arg(long)]
        rebuild: bool,
    },
}

fn guess_language(path: &std::path::Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "py" => "python",
        "js" | "mjs" => "javascript",
        "c" => "c",
        "cc" | "cpp" | "cxx" => "c++",
        "go" => "go",
        "rb" => "ruby",
        "sh" | "bash" => "bash",
        _ => return None,
    })
}

/// Runs an exec command.
pub async fn run(cmd: ExecCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    if let ExecCommand::Images(ImagesCommand::Build { languages, rebuild }) = cmd {
        return build_images(languages, rebuild, g).await;
    }
    let client = Client::from_args(g)?;
    client.require_token()?;
    match cmd {
        ExecCommand::Run {
            files,
            language,
            stdin,
            args,
        } => {
            let language = match language {
                Some(l) => l,
                None => guess_language(&files[0])
                    .map(str::to_owned)
                    .with_context(|| {
                        format!(
                            "cannot tell the language of {}: pass --lang",
                            files[0].display()
                        )
                    })?,
            };
            let mut sent = Vec::new();
            for f in &files {
                let content = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let name = f.file_name().map(|n| n.to_string_lossy().into_owned());
                sent.push(json!({"name": name, "content": content}));
            }
            let body = json!({"language": language, "files": sent, "stdin": stdin, "args": args});
            let job: Value = client.call(Method::POST, "/exec/run", Some(&body)).await?;
            let state = job["state"].as_str().unwrap_or("unknown").to_owned();
            if g.json {
                output::json(&job)?;
            } else {
                for phase in ["compile", "run"] {
                    let p = &job[phase];
                    print!("{}", p["stdout"].as_str().unwrap_or_default());
                    eprint!("{}", p["stderr"].as_str().unwrap_or_default());
                }
                if let Some(e) = job["error"].as_str() {
                    eprintln!("error: {e}");
                }
                let last = if job["run"].is_null() {
                    &job["compile"]
                } else {
                    &job["run"]
                };
                if last.is_null() {
                    // Nothing ran (a platform error, printed above): no exit code to show.
                    bail!("the job {}", state.replace('_', " "));
                }
                let mut status = format!("{state}: exit code {}", last["exit_code"]);
                if let Some(s) = last["signal"].as_str() {
                    status.push_str(&format!(", signal {s}"));
                }
                for flag in ["oom_killed", "disk_full", "timed_out", "truncated"] {
                    if last[flag] == true {
                        status.push_str(&format!(", {flag}"));
                    }
                }
                eprintln!("[{status}, {} ms]", last["time_ms"]);
            }
            if state != "succeeded" {
                bail!("the program {}", state.replace('_', " "));
            }
        }
        ExecCommand::Jobs => {
            let jobs: Vec<Value> = client.get("/exec/jobs").await?;
            if g.json {
                return output::json(&jobs);
            }
            let rows = jobs
                .iter()
                .map(|j| {
                    let s = |k: &str| j[k].as_str().unwrap_or("-").to_owned();
                    vec![
                        s("id"),
                        s("language"),
                        s("state"),
                        j["run"]["exit_code"].to_string(),
                        s("created_at"),
                    ]
                })
                .collect();
            output::table(
                &["ID", "LANGUAGE", "STATE", "EXIT", "CREATED"],
                rows,
                "No jobs yet. Run one with `slipway exec run FILE`.",
            );
        }
        ExecCommand::Runtimes => {
            let list: Vec<Value> = client.get("/exec/runtimes").await?;
            if g.json {
                return output::json(&list);
            }
            let rows = list
                .iter()
                .map(|r| {
                    let aliases: Vec<&str> = r["aliases"]
                        .as_array()
                        .map(|a| a.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    vec![
                        r["language"].as_str().unwrap_or("").to_owned(),
                        r["version"].as_str().unwrap_or("").to_owned(),
                        aliases.join(", "),
                        if r["installed"] == true { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect();
            output::table(
                &["LANGUAGE", "VERSION", "ALIASES", "INSTALLED"],
                rows,
                "No runtimes.",
            );
        }
        ExecCommand::Images(_) => unreachable!("handled above"),
    }
    Ok(())
}

async fn build_images(languages: Vec<String>, rebuild: bool, g: &GlobalArgs) -> anyhow::Result<()> {
    let rt = slipway_runtime::Runtime::connect().await?;
    let defs: Vec<&slipway_exec::RuntimeDef> = if languages.is_empty() {
        slipway_exec::runtimes::all().iter().collect()
    } else {
        languages
            .iter()
            .map(|l| slipway_exec::images::lookup(l))
            .collect::<Result<_, _>>()?
    };
    let mut built = Vec::new();
    for def in defs {
        let started = std::time::Instant::now();
        if !g.json {
            eprintln!("==> {} {} ({})", def.language, def.version, def.image);
        }
        slipway_exec::images::ensure(&rt, def, rebuild, |ev| {
            if let slipway_runtime::ProgressEvent::Stage(s) = ev {
                if !g.json {
                    eprintln!("    {s}");
                }
            }
        })
        .await
        .with_context(|| format!("building the {} image", def.language))?;
        built.push(json!({"language": def.language, "image": def.image,
                          "seconds": started.elapsed().as_secs()}));
    }
    if g.json {
        output::json(&built)?;
    } else {
        eprintln!("{} image(s) ready", built.len());
    }
    Ok(())
}
