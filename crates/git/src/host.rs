//! The repositories folder: creating, locating and deleting bare repositories.

use slipway_domain::{RepoName, Username};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::process::Command;

/// A git hosting failure.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The request body went over the configured push size limit.
    #[error("request body is larger than the limit of {0} bytes")]
    BodyTooLarge(u64),
    /// The git program could not be run or failed.
    #[error("git failed: {0}")]
    Git(String),
    /// Disk I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The server-wide hook git runs after accepting a push. It hands git's
/// `old new ref` lines to the server through the file named by
/// `SLIPWAY_PUSH_LOG` (written aside, then renamed, so the server never reads
/// half of it), waits for the server's answer in `<log>.reply` and prints it:
/// git sends a hook's output to the pusher as `remote:` lines. The wait is
/// bounded: a server that does not answer costs the push 30 s, never the push.
const POST_RECEIVE_HOOK: &str = "#!/bin/sh
# Installed by Slipway: hands the accepted ref updates to the server, then
# prints its answer (pipelines queued, apps deploying) to the pusher.
if [ -z \"$SLIPWAY_PUSH_LOG\" ]; then
    cat > /dev/null
    exit 0
fi
cat > \"$SLIPWAY_PUSH_LOG.part\" && mv \"$SLIPWAY_PUSH_LOG.part\" \"$SLIPWAY_PUSH_LOG\"
n=0
while [ ! -e \"$SLIPWAY_PUSH_LOG.reply\" ] && [ \"$n\" -lt 1500 ]; do
    sleep 0.02
    n=$((n + 1))
done
if [ -e \"$SLIPWAY_PUSH_LOG.reply\" ]; then
    cat \"$SLIPWAY_PUSH_LOG.reply\"
fi
exit 0
";

/// Where repositories live and how git is run on them.
pub struct GitHost {
    pub(crate) repos_dir: PathBuf,
    pub(crate) hooks_dir: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) home_dir: PathBuf,
    pub(crate) git_bin: PathBuf,
    trash_dir: PathBuf,
    counter: AtomicU64,
}

impl GitHost {
    /// Prepares `<data_dir>/repos` and the hook folder; `git_bin` is the git
    /// program to run (`git` finds it on `PATH`).
    pub fn new(data_dir: &Path, git_bin: impl Into<PathBuf>) -> Result<Self, GitError> {
        // git runs hooks from inside the bare repository: every path handed to
        // it (core.hooksPath, the project root) must not depend on our cwd.
        let data_dir = &std::path::absolute(data_dir)?;
        let host = Self {
            repos_dir: data_dir.join("repos"),
            hooks_dir: data_dir.join("git-hooks"),
            tmp_dir: data_dir.join("tmp"),
            home_dir: data_dir.join("git-home"),
            trash_dir: data_dir.join("trash"),
            git_bin: git_bin.into(),
            counter: AtomicU64::new(0),
        };
        for dir in [
            &host.repos_dir,
            &host.hooks_dir,
            &host.tmp_dir,
            &host.home_dir,
            &host.trash_dir,
        ] {
            std::fs::create_dir_all(dir)?;
        }
        for (name, text) in [
            ("post-receive", POST_RECEIVE_HOOK),
            ("pre-receive", crate::journal::PRE_RECEIVE_HOOK),
        ] {
            let hook = host.hooks_dir.join(name);
            std::fs::write(&hook, text)?;
            set_executable(&hook)?;
        }
        Ok(host)
    }

    /// The bare repository folder of `owner/name`. Validated names make this a
    /// path strictly below the repositories folder.
    pub fn repo_path(&self, owner: &Username, name: &RepoName) -> PathBuf {
        self.repos_dir
            .join(owner.as_str())
            .join(format!("{name}.git"))
    }

    /// Creates an empty bare repository whose default branch is `main`.
    pub async fn init(&self, owner: &Username, name: &RepoName) -> Result<(), GitError> {
        let path = self.repo_path(owner, name);
        if path.exists() {
            return Err(GitError::Git(format!(
                "{} already exists on disk",
                path.display()
            )));
        }
        let out = Command::new(&self.git_bin)
            .args(["init", "--bare", "--quiet", "--initial-branch=main"])
            .arg(&path)
            .env("HOME", &self.home_dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .await
            .map_err(|e| GitError::Git(format!("cannot run {}: {e}", self.git_bin.display())))?;
        if !out.status.success() {
            return Err(GitError::Git(
                String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            ));
        }
        Ok(())
    }

    /// Deletes a repository's folder: renamed away first (instant and atomic, so
    /// no request sees half a repository), then removed.
    pub async fn delete(&self, owner: &Username, name: &RepoName) -> Result<(), GitError> {
        let path = self.repo_path(owner, name);
        if !path.exists() {
            return Ok(());
        }
        let doomed = self.unique_path(&self.trash_dir, "repo");
        tokio::fs::rename(&path, &doomed).await?;
        tokio::fs::remove_dir_all(&doomed).await?;
        Ok(())
    }

    /// A fresh path in `dir` that no other request uses.
    pub(crate) fn unique_path(&self, dir: &Path, stem: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{stem}-{}-{n}", std::process::id()))
    }
}

#[cfg(unix)]
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}
