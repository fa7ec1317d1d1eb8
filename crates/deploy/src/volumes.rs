//! Named volumes of stack apps: kept across releases, restarts, rollbacks
//! and (unless purged) the app's deletion; listed for `slipway volume ls`,
//! backed up and restored as tar archives (`slipway volume backup|restore`).
//!
//! Backups and restores go through a short-lived helper container of
//! `slipway/busybox` that mounts the volume (no network, read-only root,
//! every capability dropped but the three that let root keep files' owners
//! and modes: `CHOWN`, `DAC_OVERRIDE`, `FOWNER`); the archive itself goes
//! through the engine's archive API. A restore first stops the services
//! that mount the volume (the reconcile loop holds them at 0 replicas),
//! sets the volume's contents aside (inside it), unpacks the archive,
//! removes the old contents (or, when unpacking fails, puts them back),
//! then lets the loop start the services again.

use crate::run::RUN_LABEL;
use crate::stack::{SERVICE_LABEL, TASK_LABEL, VOLUME_LABEL};
use crate::{DeployError, Deployer, APP_ID_LABEL, INSTANCE_LABEL};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Serialize;
use slipway_domain::{AppRecord, StackSpec};
use slipway_runtime::{labels, ContainerSpec, LabelFilter, NetworkMode, Runtime, Security};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the helper container mounts the volume.
const HELPER_MOUNT: &str = "/volume";
/// Longest wait for the services of a volume being restored to stop
/// (they drain first).
const STOP_WAIT: Duration = Duration::from_secs(120);
/// Capabilities the helper keeps: root may then create files of any owner
/// and mode, and remove any file, in the volume.
const HELPER_CAPS: [&str; 3] = ["CHOWN", "DAC_OVERRIDE", "FOWNER"];
/// Where a restore sets the volume's previous contents aside (inside the
/// volume: moving is instant), until the archive is unpacked.
const ASIDE_PREFIX: &str = ".slipway-restore-";

/// Moves everything in the volume (hidden files included) but `aside`
/// into `aside`.
fn set_aside_script(aside: &str) -> String {
    format!(
        "cd {HELPER_MOUNT} && mkdir {aside} && for f in * .[!.]* ..?*; do \
         if [ \"$f\" != {aside} ] && {{ [ -e \"$f\" ] || [ -L \"$f\" ]; }}; then mv -- \"$f\" {aside}/ || exit 1; fi; done"
    )
}

/// Removes what an unpacking left and moves the contents of `aside` back.
fn put_back_script(aside: &str) -> String {
    format!(
        "cd {HELPER_MOUNT} && for f in * .[!.]* ..?*; do \
         if [ \"$f\" != {aside} ] && {{ [ -e \"$f\" ] || [ -L \"$f\" ]; }}; then rm -rf -- \"$f\" || exit 1; fi; done && \
         for f in {aside}/* {aside}/.[!.]* {aside}/..?*; do \
         if [ -e \"$f\" ] || [ -L \"$f\" ]; then mv -- \"$f\" . || exit 1; fi; done && rmdir {aside}"
    )
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeRestore {
    /// The volume (its name in the Compose file).
    pub volume: String,
    /// Size of the archive unpacked, in bytes.
    pub bytes: u64,
    /// Files, directories and links it held.
    pub entries: u64,
    /// The services that were stopped for it; the reconcile loop starts
    /// them again.
    pub services: Vec<String>,
}

/// A helper container, removed (in the background) when dropped.
struct Helper {
    rt: Runtime,
    id: String,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let rt = self.rt.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = rt.remove(&id).await;
            });
        }
    }
}

/// Services held at 0 replicas (and a volume marked busy) while a restore
/// runs; dropping it lets the reconcile loop start them again.
struct Hold {
    deployer: Deployer,
    app_id: i64,
    volume: String,
    services: Vec<String>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        {
            let mut apps = self.deployer.inner.apps.lock().unwrap();
            if let Some(a) = apps.get_mut(&self.app_id) {
                for s in &self.services {
                    if let Some(n) = a.held.get_mut(s) {
                        *n -= 1;
                        if *n == 0 {
                            a.held.remove(s);
                        }
                    }
                }
                a.busy_volumes.remove(&self.volume);
            }
        }
        self.deployer.wake(self.app_id);
    }
}

/// Removes the spooled archive when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn state(e: impl std::fmt::Display) -> DeployError {
    DeployError::State(e.to_string())
}

/// A named volume of an app, as shown to users.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeView {
    /// The name in the Compose file.
    pub name: String,
    /// The Docker volume holding it.
    pub docker_name: String,
}

impl Deployer {
    fn volume_filter(&self, app_id: i64) -> LabelFilter {
        LabelFilter::managed()
            .with(labels::OWNER, "deploy")
            .with(INSTANCE_LABEL, self.instance())
            .with(APP_ID_LABEL, app_id.to_string())
    }

    /// The named volumes of an app's stack that exist on this server.
    pub async fn volumes(&self, app: &AppRecord) -> Result<Vec<VolumeView>, DeployError> {
        let rt = self
            .runtime()
            .ok_or_else(|| DeployError::State("the Docker Engine is not connected".into()))?;
        let found = rt
            .list_volumes(&self.volume_filter(app.id))
            .await
            .map_err(|e| DeployError::State(e.to_string()))?;
        let mut out: Vec<VolumeView> = found
            .into_iter()
            .filter_map(|v| {
                Some(VolumeView {
                    name: v.labels.get(VOLUME_LABEL)?.clone(),
                    docker_name: v.name,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stack services a volume restore holds at 0 replicas now.
    pub(crate) fn held_services(&self, app_id: i64) -> std::collections::HashSet<String> {
        self.inner
            .apps
            .lock()
            .unwrap()
            .get(&app_id)
            .map(|a| a.held.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The runtime and the app's current stack, once `volume` is known to
    /// be one of its volumes and to exist here.
    async fn volume_of(
        &self,
        app: &AppRecord,
        volume: &str,
    ) -> Result<(Runtime, StackSpec), DeployError> {
        if self.cluster().is_some() {
            return Err(DeployError::State(
                "volume backup and restore are not available in cluster mode".into(),
            ));
        }
        let rt = self
            .runtime()
            .cloned()
            .ok_or_else(|| state("the Docker Engine is not connected"))?;
        let release = self.current_release(app).await.map_err(state)?;
        let Some(stack) = release.and_then(|r| r.spec.stack) else {
            return Err(DeployError::NotFound(format!(
                "app {} has no volumes: only apps deployed from a Compose file have named volumes",
                app.name
            )));
        };
        if !stack.volumes.iter().any(|v| v == volume) {
            let names = if stack.volumes.is_empty() {
                "none".to_string()
            } else {
                stack.volumes.join(", ")
            };
            return Err(DeployError::NotFound(format!(
                "app {} has no volume {volume:?} (its volumes: {names})",
                app.name
            )));
        }
        let docker_name = self.volume_name(app.id, volume);
        if !self
            .volumes(app)
            .await?
            .iter()
            .any(|v| v.docker_name == docker_name)
        {
            return Err(DeployError::NotFound(format!(
                "volume {volume} of app {} does not exist yet: it is created when the release starts",
                app.name
            )));
        }
        if self
            .inner
            .apps
            .lock()
            .unwrap()
            .get(&app.id)
            .is_some_and(|a| a.busy_volumes.contains(volume))
        {
            return Err(DeployError::State(format!(
                "volume {volume} of app {} is being restored; try again when that is done",
                app.name
            )));
        }
        Ok((rt, stack))
    }

    /// A helper container mounting `volume` at `/volume`, running `cmd`.
    async fn create_helper(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        volume: &str,
        read_only: bool,
        cmd: &[&str],
    ) -> Result<Helper, DeployError> {
        slipway_runtime::images::ensure_busybox(rt)
            .await
            .map_err(state)?;
        let spec = ContainerSpec::new(slipway_runtime::BUSYBOX_IMAGE)
            .name(format!(
                "slipway-{}-volume-{volume}-{}-{}",
                app.name,
                self.instance(),
                hex::encode(rand::random::<[u8; 3]>())
            ))
            .cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .network(NetworkMode::None)
            .security(Security {
                read_only_rootfs: true,
                cap_drop_all: true,
                cap_add: HELPER_CAPS.iter().map(|c| c.to_string()).collect(),
                no_new_privileges: true,
                network_disabled: true,
            })
            .pids_limit(64)
            .limits(Some(256 << 20), Some(1_000_000_000))
            .mount(slipway_runtime::Mount::Volume {
                name: self.volume_name(app.id, volume),
                target: HELPER_MOUNT.into(),
                read_only,
            })
            .label(labels::OWNER, "deploy")
            .label(labels::APP, &app.name)
            .label(APP_ID_LABEL, app.id.to_string())
            .label(INSTANCE_LABEL, self.instance())
            // Not a replica: the reconcile loop leaves it alone.
            .label(RUN_LABEL, "volume")
            .label(VOLUME_LABEL, volume);
        let id = rt.create(&spec).await.map_err(state)?;
        Ok(Helper { rt: rt.clone(), id })
    }

    /// Runs `script` in a helper container mounting `volume` read-write
    /// and returns the (exited) container, or why it failed.
    async fn run_helper(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        volume: &str,
        script: &str,
    ) -> Result<Helper, String> {
        let helper = self
            .create_helper(rt, app, volume, false, &["sh", "-c", script])
            .await
            .map_err(|e| e.to_string())?;
        rt.start(&helper.id).await.map_err(|e| e.to_string())?;
        let status = rt.wait(&helper.id).await.map_err(|e| e.to_string())?;
        if !status.success() {
            let tail = self.log_tail(&helper.id).await;
            return Err(format!("exit code {}: {tail}", status.code));
        }
        Ok(helper)
    }

    /// The contents of named volume `volume` of an app's stack as a tar
    /// archive (entries `./…`, owners and modes kept), streamed while it is
    /// read. The services using it keep running: a database's files may
    /// then be caught mid-write (see docs/deploy.md).
    pub async fn backup_volume(
        &self,
        app: &AppRecord,
        volume: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static, DeployError>
    {
        let (rt, _) = self.volume_of(app, volume).await?;
        // Never started: the archive API reads the volume of a created container.
        let helper = self
            .create_helper(&rt, app, volume, true, &["true"])
            .await?;
        let mut tar = Box::pin(rt.download(&helper.id, &format!("{HELPER_MOUNT}/.")));
        // An error before the first byte is still an error answer.
        let first = match tar.next().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => return Err(state(e)),
            None => Bytes::new(),
        };
        let rest = futures::stream::unfold((tar, helper), |(mut tar, helper)| async move {
            let item = tar.next().await?;
            Some((item.map_err(std::io::Error::other), (tar, helper)))
        });
        Ok(futures::stream::once(async move { Ok(first) }).chain(rest))
    }

    /// Replaces the contents of named volume `volume` with the tar archive
    /// `body` (at most `max_bytes`): the archive is stored and checked
    /// first; then the services that mount the volume are stopped (held at
    /// 0 replicas), the volume's contents set aside and the archive
    /// unpacked (owners and modes kept; the old contents are removed, or put
    /// back when unpacking fails), and the services start again. Refused (409) while a
    /// task or `slipway run` command that mounts it runs.
    pub async fn restore_volume<S, E>(
        &self,
        app: &AppRecord,
        volume: &str,
        body: S,
        max_bytes: u64,
        actor: &str,
    ) -> Result<VolumeRestore, DeployError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let (rt, stack) = self.volume_of(app, volume).await?;
        let (spool, bytes) = self.spool(app, body, max_bytes).await?;
        let path = spool.0.clone();
        let entries = tokio::task::spawn_blocking(move || check_tar(&path))
            .await
            .map_err(state)?
            .map_err(DeployError::Invalid)?;
        let mounting: BTreeSet<String> = stack
            .services_mounting(volume)
            .iter()
            .map(|s| s.name.clone())
            .collect();
        let services: Vec<String> = stack
            .services_mounting(volume)
            .into_iter()
            .filter(|s| !s.is_task(&stack))
            .map(|s| s.name.clone())
            .collect();
        let busy = |found: &[slipway_runtime::ContainerInfo]| {
            found.iter().find_map(|c| {
                let service = c.labels.get(SERVICE_LABEL)?;
                let what = if c.labels.get(RUN_LABEL).is_some_and(|v| v != "volume") {
                    "a `slipway run` command"
                } else if c.labels.contains_key(TASK_LABEL) {
                    "the task"
                } else {
                    return None;
                };
                (c.state == "running" && mounting.contains(service)).then(|| {
                    DeployError::State(format!(
                        "{what} of service {service} is running and uses volume {volume}; restore it once that has ended"
                    ))
                })
            })
        };
        let found = rt
            .list_containers(&self.app_filter(app.id))
            .await
            .map_err(state)?;
        if let Some(e) = busy(&found) {
            return Err(e);
        }
        let hold = {
            let mut apps = self.inner.apps.lock().unwrap();
            let a = apps.entry(app.id).or_default();
            if !a.busy_volumes.insert(volume.to_string()) {
                return Err(DeployError::State(format!(
                    "volume {volume} of app {} is being restored; try again when that is done",
                    app.name
                )));
            }
            for s in &services {
                *a.held.entry(s.clone()).or_default() += 1;
            }
            Hold {
                deployer: self.clone(),
                app_id: app.id,
                volume: volume.to_string(),
                services: services.clone(),
            }
        };
        let list = if services.is_empty() {
            "no service runs it".to_string()
        } else {
            format!("stopping {}", services.join(", "))
        };
        self.event(
            app.id,
            "volume",
            &format!("restoring volume {volume} by {actor}: {list}"),
        )
        .await;
        self.wake(app.id);
        self.wait_stopped(&rt, app, &services).await?;
        // A task or command may have started meanwhile.
        let found = rt
            .list_containers(&self.app_filter(app.id))
            .await
            .map_err(state)?;
        if let Some(e) = busy(&found) {
            return Err(e);
        }
        // The previous contents go aside (inside the volume), the archive
        // is unpacked, then they are removed; should unpacking fail, they
        // are put back.
        let aside = format!("{ASIDE_PREFIX}{}", hex::encode(rand::random::<[u8; 6]>()));
        let helper = self
            .run_helper(&rt, app, volume, &set_aside_script(&aside))
            .await
            .map_err(|why| {
                DeployError::State(format!(
                    "setting volume {volume}'s files aside failed: {why}"
                ))
            })?;
        let file = tokio::fs::File::open(&spool.0).await.map_err(state)?;
        if let Err(e) = rt
            .upload_stream(&helper.id, HELPER_MOUNT, file_chunks(file))
            .await
        {
            let back = match self
                .run_helper(&rt, app, volume, &put_back_script(&aside))
                .await
            {
                Ok(_) => "its previous contents were put back".to_string(),
                Err(why) => format!(
                    "putting its previous contents back failed too ({why}): they are in {aside} inside the volume"
                ),
            };
            return Err(DeployError::State(format!(
                "the archive could not be unpacked into volume {volume}: {e}; {back}"
            )));
        }
        drop(helper);
        drop(spool);
        if let Err(why) = self
            .run_helper(&rt, app, volume, &format!("rm -rf {HELPER_MOUNT}/{aside}"))
            .await
        {
            tracing::warn!(app = %app.name, volume, %why, "a restored volume's previous contents were not removed");
        }
        let again = if services.is_empty() {
            String::new()
        } else {
            format!("; starting {} again", services.join(", "))
        };
        self.event(
            app.id,
            "volume",
            &format!("volume {volume} restored ({bytes} bytes, {entries} entries){again}"),
        )
        .await;
        drop(hold);
        Ok(VolumeRestore {
            volume: volume.to_string(),
            bytes,
            entries,
            services,
        })
    }

    /// Stores a restore's archive under the data directory, refusing more
    /// than `max_bytes` (and an empty body).
    async fn spool<S, E>(
        &self,
        app: &AppRecord,
        body: S,
        max_bytes: u64,
    ) -> Result<(Spool, u64), DeployError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let dir = self.inner.options.data_dir.join("volume-restores");
        tokio::fs::create_dir_all(&dir).await.map_err(state)?;
        let spool = Spool(dir.join(format!(
            "{}-{}.tar",
            app.id,
            hex::encode(rand::random::<[u8; 8]>())
        )));
        let mut file = tokio::fs::File::create(&spool.0).await.map_err(state)?;
        let mut body = std::pin::pin!(body);
        let mut bytes: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk
                .map_err(|e| DeployError::Invalid(format!("reading the archive failed: {e}")))?;
            bytes += chunk.len() as u64;
            if bytes > max_bytes {
                return Err(DeployError::TooLarge(format!(
                    "the archive is larger than {max_bytes} bytes, the most a restore takes (server setting volume_restore_max_bytes)"
                )));
            }
            file.write_all(&chunk).await.map_err(state)?;
        }
        file.flush().await.map_err(state)?;
        file.sync_all().await.map_err(state)?;
        if bytes == 0 {
            return Err(DeployError::Invalid(
                "no archive: send a tar archive of the volume's contents (e.g. one `slipway volume backup` made)".into(),
            ));
        }
        Ok((spool, bytes))
    }

    /// Waits until no replica of `services` runs (the loop drains and
    /// stops them).
    async fn wait_stopped(
        &self,
        rt: &Runtime,
        app: &AppRecord,
        services: &[String],
    ) -> Result<(), DeployError> {
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            let known = self
                .snapshot(app.id)
                .iter()
                .any(|r| services.contains(&r.service));
            let running = rt
                .list_containers(&self.app_filter(app.id))
                .await
                .map_err(state)?
                .iter()
                .any(|c| {
                    c.state == "running"
                        && !c.labels.contains_key(RUN_LABEL)
                        && !c.labels.contains_key(TASK_LABEL)
                        && c.labels
                            .get(SERVICE_LABEL)
                            .is_some_and(|s| services.contains(s))
                });
            if !known && !running {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DeployError::State(format!(
                    "{} did not stop within {} s; nothing was restored",
                    services.join(", "),
                    STOP_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes a deleted app's volumes once its containers are gone (they
    /// drain first), giving up after two minutes.
    pub(crate) fn purge_volumes_later(&self, app_id: i64) {
        let Some(rt) = self.runtime().cloned() else {
            return;
        };
        let filter = self.volume_filter(app_id);
        let containers = self.app_filter(app_id);
        tokio::spawn(async move {
            for _ in 0..120 {
                let busy = rt
                    .list_containers(&containers)
                    .await
                    .map(|c| !c.is_empty())
                    .unwrap_or(true);
                if !busy {
                    let mut left = false;
                    for v in rt.list_volumes(&filter).await.unwrap_or_default() {
                        left |= rt.remove_volume(&v.name).await.is_err();
                    }
                    if !left {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::warn!(app_id, "could not remove a deleted app's volumes");
        });
    }
}

/// Reads a file as a stream of chunks (errors end it: the engine then
/// sees a cut archive and refuses it).
fn file_chunks(file: tokio::fs::File) -> impl Stream<Item = Bytes> + Send + 'static {
    futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Bytes::from(buf), Some(file)))
            }
        }
    })
}

/// Checks that `path` is a tar archive whose entries stay inside the
/// directory it is unpacked in; returns its number of entries.
fn check_tar(path: &Path) -> Result<u64, String> {
    let bad = |e: std::io::Error| format!("the body is not a valid tar archive: {e}");
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = 0;
    for entry in archive.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = entry.path().map_err(bad)?;
        let escapes = name.is_absolute()
            || name
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
        let reserved = name.components().find_map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().starts_with(ASIDE_PREFIX)),
            _ => None,
        });
        if reserved == Some(true) {
            return Err(format!(
                "the archive's entry {:?} uses a name Slipway keeps for restores ({ASIDE_PREFIX}…)",
                name.display()
            ));
        }
        if escapes {
            return Err(format!(
                "the archive's entry {:?} leaves the volume: entries must be relative paths without `..`",
                name.display()
            ));
        }
        entries += 1;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::check_tar;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // `append_data` refuses `..`; write the name raw to test the check.
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn check(bytes: &[u8]) -> Result<u64, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        std::fs::write(&path, bytes).unwrap();
        check_tar(&path)
    }

    #[test]
    fn archives_are_checked_before_anything_stops() {
        assert_eq!(
            check(&archive(&[("./votes", b"1\n"), ("./d/x", b"")])),
            Ok(2)
        );
        assert_eq!(
            check(&[0u8; 1024]),
            Ok(0),
            "an empty archive empties the volume"
        );
        let err = check(&archive(&[("../etc/passwd", b"x")])).unwrap_err();
        assert!(err.contains("leaves the volume"), "{err}");
        let err = check(&archive(&[("/etc/passwd", b"x")])).unwrap_err();
        assert!(err.contains("leaves the volume"), "{err}");
        let err = check(&archive(&[("./.slipway-restore-1/x", b"")])).unwrap_err();
        assert!(err.contains("keeps for restores"), "{err}");
        let err = check("not a tar archive ".repeat(100).as_bytes()).unwrap_err();
        assert!(err.contains("not a valid tar archive"), "{err}");
    }
}
