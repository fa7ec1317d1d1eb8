//! The push journal: ref updates written down before git applies them.
//!
//! A push's events are recorded by the server once git has updated the refs
//! (the post-receive hook hands them over). A server killed in between would
//! leave refs moved with no event, so no pipeline, and a second push would
//! find "Everything up-to-date". So before git touches a ref:
//!
//! 1. the server writes who pushes to which repository (`<log>.who`, synced);
//! 2. the pre-receive hook writes the `old new ref` lines (`<log>.wal`,
//!    synced, renamed into place) or refuses the push if it cannot;
//! 3. once the push is recorded (or git ended without applying it), the
//!    server removes both files.
//!
//! At start-up, [`GitHost::interrupted_pushes`] reads what is left: every
//! journaled update whose ref now holds its new value was applied and must be
//! recorded; the others never happened. Then [`GitHost::clear_journal`]
//! removes the files. Temporary object directories of pushes cut short are
//! removed by [`GitHost::remove_stale_temporaries`].

use crate::host::GitHost;
use slipway_domain::{is_null_sha, RefUpdate, RepoName, Username};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The server-wide hook git runs once a push's objects are in, before any
/// ref moves: it journals the updates (module documentation).
pub(crate) const PRE_RECEIVE_HOOK: &str = "#!/bin/sh
# Installed by Slipway: writes the ref updates down before git applies them,
# so that a server crash cannot lose a push's pipelines.
if [ -z \"$SLIPWAY_PUSH_LOG\" ] || [ ! -e \"$SLIPWAY_PUSH_LOG.who\" ]; then
    cat > /dev/null
    exit 0
fi
if cat > \"$SLIPWAY_PUSH_LOG.wal.part\" \\
    && { sync \"$SLIPWAY_PUSH_LOG.wal.part\" 2> /dev/null || true; } \\
    && mv \"$SLIPWAY_PUSH_LOG.wal.part\" \"$SLIPWAY_PUSH_LOG.wal\"; then
    exit 0
fi
echo \"Slipway: the server could not journal this push (disk full?); nothing was changed, try again\" >&2
exit 1
";

/// A push the server did not finish recording before it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptedPush {
    /// Repository owner.
    pub owner: Username,
    /// Repository name.
    pub name: RepoName,
    /// Who pushed.
    pub pusher: String,
    /// The journaled updates git did apply (the ref holds the new value).
    pub applied: Vec<RefUpdate>,
}

/// Suffix of the file naming the repository and the pusher.
pub(crate) const WHO: &str = ".who";
/// Suffix of the journaled ref updates.
pub(crate) const WAL: &str = ".wal";

/// The contents of `<log>.who`.
pub(crate) fn who_text(owner: &Username, name: &RepoName, pusher: &str) -> String {
    format!("{owner}/{name}\n{pusher}\n")
}

/// Writes `path` and syncs it to disk.
pub(crate) async fn write_synced(path: &Path, text: &str) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(text.as_bytes()).await?;
    file.sync_all().await
}

impl GitHost {
    /// Pushes journaled but not recorded when the server last stopped, with
    /// the updates that took effect (module documentation). Call before
    /// serving any request.
    pub async fn interrupted_pushes(&self) -> Vec<InterruptedPush> {
        let mut found = Vec::new();
        let Ok(mut dir) = tokio::fs::read_dir(&self.tmp_dir).await else {
            return found;
        };
        let mut refs_cache: HashMap<PathBuf, HashMap<String, String>> = HashMap::new();
        while let Ok(Some(entry)) = dir.next_entry().await {
            let path = entry.path();
            let Some(stem) = path
                .to_str()
                .and_then(|p| p.strip_suffix(WHO))
                .map(PathBuf::from)
            else {
                continue;
            };
            let Ok(who) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            // No journal: git stopped before the pre-receive hook finished,
            // so no ref moved.
            let Ok(wal) = tokio::fs::read_to_string(crate::cgi::beside(&stem, WAL)).await else {
                continue;
            };
            let mut lines = who.lines();
            let (Some(repo), Some(pusher)) = (lines.next(), lines.next()) else {
                continue;
            };
            let Some((owner, name)) = repo.split_once('/') else {
                continue;
            };
            let (Ok(owner), Ok(name)) = (Username::parse(owner), RepoName::parse(name)) else {
                continue;
            };
            let repo_path = self.repo_path(&owner, &name);
            if !repo_path.exists() {
                continue;
            }
            if !refs_cache.contains_key(&repo_path) {
                let refs = self.current_refs(&repo_path).await;
                refs_cache.insert(repo_path.clone(), refs);
            }
            let refs = &refs_cache[&repo_path];
            let applied: Vec<RefUpdate> = wal
                .lines()
                .filter_map(RefUpdate::parse_hook_line)
                .filter(|u| match refs.get(&u.ref_name) {
                    Some(sha) => *sha == u.new_sha,
                    None => is_null_sha(&u.new_sha),
                })
                .collect();
            if !applied.is_empty() {
                tracing::warn!(repo = %repo, pusher, refs = applied.len(), "recovering a push the server had not recorded");
                found.push(InterruptedPush {
                    owner,
                    name,
                    pusher: pusher.to_string(),
                    applied,
                });
            }
        }
        found
    }

    /// Removes every push's hand-over and journal files (after
    /// [`GitHost::interrupted_pushes`] has been recorded).
    pub async fn clear_journal(&self) {
        let Ok(mut dir) = tokio::fs::read_dir(&self.tmp_dir).await else {
            return;
        };
        while let Ok(Some(entry)) = dir.next_entry().await {
            if entry.file_name().to_string_lossy().starts_with("push-") {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }

    /// `ref name → sha` of a bare repository.
    async fn current_refs(&self, repo: &Path) -> HashMap<String, String> {
        let out = tokio::process::Command::new(&self.git_bin)
            .arg("--git-dir")
            .arg(repo)
            .args(["for-each-ref", "--format=%(objectname) %(refname)"])
            .env("HOME", &self.home_dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .await;
        let Ok(out) = out else {
            return HashMap::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(sha, name)| (name.to_string(), sha.to_string()))
            .collect()
    }

    /// Removes the temporary object directories and packs that pushes cut
    /// short left in repositories (`objects/tmp_objdir-incoming-*`,
    /// `objects/incoming-*`, `objects/pack/tmp_*`), unless a running process
    /// still works in them. Returns how many were removed.
    pub async fn remove_stale_temporaries(&self) -> usize {
        let repos_dir = self.repos_dir.clone();
        tokio::task::spawn_blocking(move || {
            let busy = crate::busy::paths_in_use();
            let mut removed = 0;
            for owner in read_dir(&repos_dir) {
                for repo in read_dir(&owner) {
                    let objects = repo.join("objects");
                    let candidates = read_dir(&objects).into_iter().filter(|p| {
                        file_name(p).starts_with("tmp_objdir-incoming-")
                            || file_name(p).starts_with("incoming-")
                    });
                    let packs = read_dir(&objects.join("pack"))
                        .into_iter()
                        .filter(|p| file_name(p).starts_with("tmp_"));
                    for path in candidates.chain(packs) {
                        if busy.iter().any(|b| b.starts_with(&path)) {
                            continue;
                        }
                        let gone = if path.is_dir() {
                            std::fs::remove_dir_all(&path)
                        } else {
                            std::fs::remove_file(&path)
                        };
                        if gone.is_ok() {
                            removed += 1;
                        }
                    }
                }
            }
            if removed > 0 {
                tracing::info!(removed, "removed temporary objects of interrupted pushes");
            }
            removed
        })
        .await
        .unwrap_or(0)
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
