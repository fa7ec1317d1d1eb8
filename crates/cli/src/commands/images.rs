//! `slipway images bootstrap`: make the local base images CI steps and code
//! execution run on (no registry is ever used).

use crate::{output, GlobalArgs};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use slipway_runtime::images::{self, ProgressEvent};
use slipway_runtime::{Runtime, BUSYBOX_IMAGE, DEBIAN_IMAGE};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum ImagesCommand {
    /// Build slipway/busybox (seconds), and optionally slipway/debian
    /// (debootstrap, ~100 s) and language layers on top of it.
    Bootstrap {
        /// Also bootstrap slipway/debian:bookworm.
        #[arg(long)]
        debian: bool,
        /// Debian packages to layer on slipway/debian, one image each
        /// (slipway/PACKAGE:bookworm), e.g. --lang python3.
        #[arg(long = "lang", value_name = "PACKAGE")]
        langs: Vec<String>,
        /// Rebuild images that already exist.
        #[arg(long)]
        force: bool,
    },
}

fn bar(json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn on_progress(pb: &ProgressBar) -> impl FnMut(ProgressEvent) + '_ {
    move |ev| match ev {
        ProgressEvent::Stage(s) => {
            pb.set_prefix(s);
            pb.set_position(0);
            pb.set_length(0);
        }
        ProgressEvent::Step { current, total } => {
            if let Some(t) = total {
                pb.set_length(t);
            }
            pb.set_position(current);
        }
        ProgressEvent::Log(line) => pb.set_message(line.chars().take(100).collect::<String>()),
        ProgressEvent::Done(_) => {}
    }
}

/// Runs an images command.
pub async fn run(cmd: ImagesCommand, g: &GlobalArgs) -> anyhow::Result<()> {
    let ImagesCommand::Bootstrap {
        debian,
        langs,
        force,
    } = cmd;
    let rt = Runtime::connect().await?;
    let mut made = Vec::new();
    let pb = bar(g.json);

    pb.set_prefix("busybox");
    if force || !images::image_exists(&rt, BUSYBOX_IMAGE).await? {
        let id = images::bootstrap_busybox(&rt, BUSYBOX_IMAGE).await?;
        made.push(json!({"image": BUSYBOX_IMAGE, "id": id, "built": true}));
    } else {
        made.push(json!({"image": BUSYBOX_IMAGE, "built": false}));
    }
    if debian || !langs.is_empty() {
        if force || !images::image_exists(&rt, DEBIAN_IMAGE).await? {
            let id =
                images::bootstrap_debian(&rt, "bookworm", DEBIAN_IMAGE, None, on_progress(&pb))
                    .await
                    .context("bootstrapping slipway/debian")?;
            made.push(json!({"image": DEBIAN_IMAGE, "id": id, "built": true}));
        } else {
            made.push(json!({"image": DEBIAN_IMAGE, "built": false}));
        }
    }
    for lang in &langs {
        let tag = format!("slipway/{lang}:bookworm");
        if !force && images::image_exists(&rt, &tag).await? {
            made.push(json!({"image": tag, "built": false}));
            continue;
        }
        let id = images::build_language_layer(
            &rt,
            DEBIAN_IMAGE,
            &tag,
            &[lang.as_str()],
            on_progress(&pb),
        )
        .await
        .with_context(|| format!("building {tag}"))?;
        made.push(json!({"image": tag, "id": id, "built": true}));
    }
    pb.finish_and_clear();
    if g.json {
        return output::json(&made);
    }
    for m in &made {
        let verb = if m["built"].as_bool().unwrap_or(false) {
            "built"
        } else {
            "already present"
        };
        println!("{}: {verb}", m["image"].as_str().unwrap_or_default());
    }
    Ok(())
}
