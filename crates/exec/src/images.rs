//! Building the images the runtimes run in: busybox is bootstrapped from the
//! host binary, language images are Debian plus apt packages plus a `slipway`
//! user (uid 1000) for the sandbox.

use slipway_runtime::images::{self, ProgressEvent};
use slipway_runtime::{Result, Runtime, RuntimeError, DEBIAN_IMAGE};

use crate::runtimes::RuntimeDef;

/// The Dockerfile of a language image: apt packages plus the sandbox user.
pub fn dockerfile(def: &RuntimeDef) -> Result<String> {
    let packages: Vec<&str> = def.packages.iter().map(String::as_str).collect();
    let mut text = images::language_layer_dockerfile(DEBIAN_IMAGE, &packages)?;
    text.push_str(
        "RUN echo 'slipway:x:1000:1000:slipway:/home/slipway:/bin/sh' >> /etc/passwd \
         && echo 'slipway:x:1000:' >> /etc/group && mkdir -p /home/slipway /work \
         && chown 1000:1000 /home/slipway /work\n",
    );
    Ok(text)
}

/// Whether the image of `def` is present locally.
pub async fn present(rt: &Runtime, def: &RuntimeDef) -> Result<bool> {
    images::image_exists(rt, &def.image).await
}

/// Make sure the image of `def` exists: busybox is bootstrapped in seconds;
/// a language image is built (bootstrapping `slipway/debian` first, ~100 s,
/// when missing) unless present and `rebuild` is false.
pub async fn ensure(
    rt: &Runtime,
    def: &RuntimeDef,
    rebuild: bool,
    mut progress: impl FnMut(ProgressEvent),
) -> Result<()> {
    if def.is_busybox() {
        return images::ensure_busybox(rt).await;
    }
    if !rebuild && present(rt, def).await? {
        return Ok(());
    }
    if !images::image_exists(rt, DEBIAN_IMAGE).await? {
        images::bootstrap_debian(rt, "bookworm", DEBIAN_IMAGE, None, &mut progress).await?;
    }
    progress(ProgressEvent::Stage(format!("build {}", def.image)));
    let mut opts = images::BuildOptions::new(&def.image);
    opts.labels
        .insert("io.slipway.image".into(), format!("exec-{}", def.language));
    let context = images::dockerfile_context(&dockerfile(def)?)?;
    let id = images::build_image_with(rt, context, &opts, |line| {
        progress(ProgressEvent::Log(line.to_string()))
    })
    .await?;
    progress(ProgressEvent::Done(id));
    Ok(())
}

/// Checks that a language is known before building it (for the CLI).
pub fn lookup(name: &str) -> Result<&'static RuntimeDef> {
    crate::runtimes::find(name, None).ok_or_else(|| {
        RuntimeError::InvalidSpec(format!(
            "unknown language `{name}`; `slipway exec runtimes` lists them"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_dockerfile_adds_the_sandbox_user() {
        let text = dockerfile(crate::runtimes::find("python", None).unwrap()).unwrap();
        assert!(text.contains("python3"));
        assert!(text.contains("slipway:x:1000:1000"));
    }
}
