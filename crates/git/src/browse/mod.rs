//! Reading a repository's content for the API and the dashboard: branches,
//! history, one commit's changes, directory listings and file contents.
//!
//! Everything runs the real `git` against the bare repository with a clean
//! environment. Refs and paths come in as [`Rev`] and [`TreePath`], which
//! only hold text that cannot turn into an option or a revision expression;
//! object names handed to later commands are the hex names git printed.
//! Every answer is bounded: commits per page, branches, tree entries, changed
//! files, and the size of a file shown inline.

mod files;
mod history;
mod input;
mod parse;
mod runner;
#[cfg(test)]
mod tests;

pub use files::RawBlob;
pub use input::{Rev, TreePath, MAX_PATH_LEN, MAX_REF_LEN};

use crate::GitHost;
use serde::Serialize;
use slipway_domain::{RepoName, Username};
use std::path::{Path, PathBuf};

/// Most commits one page of history holds.
pub const MAX_COMMITS: usize = 200;
/// Most branches listed.
pub const MAX_BRANCHES: usize = 1000;
/// Most entries of one directory listed.
pub const MAX_TREE_ENTRIES: usize = 5000;
/// Most changed files listed for one commit.
pub const MAX_CHANGED_FILES: usize = 1000;
/// Largest file whose content is sent inline (larger ones: raw download only).
pub const MAX_INLINE_BLOB: u64 = 1024 * 1024;
/// Largest `skip` accepted when paging through history.
pub const MAX_SKIP: usize = 1_000_000;

/// Why a browsing request failed.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    /// The request named an invalid ref or path, or asked for the wrong kind
    /// of object (a directory as a file).
    #[error("{0}")]
    Invalid(String),
    /// No such ref, commit or path.
    #[error("{0}")]
    NotFound(String),
    /// git could not be run or failed.
    #[error("git failed: {0}")]
    Git(String),
}

/// The branches of a repository, for a branch selector.
#[derive(Debug, Serialize)]
pub struct Branches {
    /// The branch `HEAD` points to, if any.
    pub default_branch: Option<String>,
    /// The default branch first, then the most recently committed to.
    pub branches: Vec<Branch>,
    /// True when there were more than [`MAX_BRANCHES`].
    pub truncated: bool,
}

/// One branch and its newest commit.
#[derive(Debug, Serialize)]
pub struct Branch {
    /// Name without `refs/heads/`.
    pub name: String,
    /// The commit it points to.
    pub sha: String,
    /// True for the repository's default branch.
    pub default: bool,
    /// Subject of that commit.
    pub summary: String,
    /// Its author's name.
    pub author: String,
    /// Its commit time (ISO 8601 with the committer's offset).
    pub time: String,
}

/// One commit in a history listing.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    /// Full object name.
    pub sha: String,
    /// Parent object names (two or more for merges).
    pub parents: Vec<String>,
    /// Author name.
    pub author: String,
    /// Author email.
    pub email: String,
    /// Author time (ISO 8601 with the author's offset).
    pub time: String,
    /// Committer name.
    pub committer: String,
    /// Committer email.
    pub committer_email: String,
    /// Commit time (ISO 8601).
    pub commit_time: String,
    /// First line (paragraph) of the message.
    pub subject: String,
}

/// One page of history.
#[derive(Debug, Serialize)]
pub struct CommitPage {
    /// The ref the listing started from (the default branch when none was
    /// given); `None` for an empty repository.
    #[serde(rename = "ref")]
    pub rev: Option<String>,
    /// The commit that ref resolved to.
    pub commit: Option<String>,
    /// Newest first.
    pub commits: Vec<Commit>,
    /// True when older commits follow (ask again with `after` or `skip`).
    pub has_more: bool,
}

/// What one page of history to list.
#[derive(Debug, Clone)]
pub struct CommitQuery {
    /// Start here (default: the default branch).
    pub rev: Option<Rev>,
    /// Only commits touching this path (root: all).
    pub path: TreePath,
    /// At most this many (1..=[`MAX_COMMITS`]).
    pub limit: usize,
    /// Leave out this many first.
    pub skip: usize,
    /// Start after this commit of the listing (cursor paging).
    pub after: Option<Rev>,
}

/// One commit with its message and the files it changed against its first parent.
#[derive(Debug, Serialize)]
pub struct CommitDetail {
    /// The commit's header fields.
    #[serde(flatten)]
    pub commit: Commit,
    /// The full message.
    pub message: String,
    /// Files changed against the first parent (everything for a root commit).
    pub files: Vec<ChangedFile>,
    /// Totals over all changed files.
    pub stats: DiffStats,
    /// True when more than [`MAX_CHANGED_FILES`] files changed.
    pub files_truncated: bool,
}

/// One changed file of a commit.
#[derive(Debug, Serialize)]
pub struct ChangedFile {
    /// Path after the change.
    pub path: String,
    /// Path before a rename or copy.
    pub old_path: Option<String>,
    /// `added`, `modified`, `deleted`, `renamed`, `copied` or `type_changed`.
    pub status: String,
    /// Lines added (`None` for binary files).
    pub additions: Option<u64>,
    /// Lines deleted (`None` for binary files).
    pub deletions: Option<u64>,
    /// True when git sees a binary file.
    pub binary: bool,
}

/// Totals of a commit's changes.
#[derive(Debug, Default, Serialize)]
pub struct DiffStats {
    /// Files changed.
    pub files: usize,
    /// Lines added.
    pub additions: u64,
    /// Lines deleted.
    pub deletions: u64,
}

/// A directory listing at some ref.
#[derive(Debug, Serialize)]
pub struct Tree {
    /// The ref listed (the default branch when none was given); `None` for an
    /// empty repository.
    #[serde(rename = "ref")]
    pub rev: Option<String>,
    /// The commit it resolved to.
    pub commit: Option<String>,
    /// The directory (`""` for the root).
    pub path: String,
    /// Directories first, then files, each by name.
    pub entries: Vec<TreeEntry>,
    /// True when the directory has more than [`MAX_TREE_ENTRIES`] entries.
    pub truncated: bool,
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular (or executable) file.
    File,
    /// A symbolic link (its content is the target).
    Symlink,
    /// A submodule (a commit of another repository).
    Submodule,
}

/// One entry of a directory.
#[derive(Debug, Serialize)]
pub struct TreeEntry {
    /// File name.
    pub name: String,
    /// Path from the repository root.
    pub path: String,
    /// Directory, file, symlink or submodule.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes (files and symlinks).
    pub size: Option<u64>,
    /// git file mode, e.g. `100644`.
    pub mode: String,
    /// Object name.
    pub sha: String,
}

/// A file at some ref, with its text when it is small and not binary.
#[derive(Debug, Serialize)]
pub struct Blob {
    /// The ref read (the default branch when none was given).
    #[serde(rename = "ref")]
    pub rev: String,
    /// The commit it resolved to.
    pub commit: String,
    /// Path from the repository root.
    pub path: String,
    /// File name.
    pub name: String,
    /// Object name.
    pub sha: String,
    /// Size in bytes.
    pub size: u64,
    /// True when the content is not UTF-8 text (then `content` is absent).
    pub binary: bool,
    /// True when the file is larger than [`MAX_INLINE_BLOB`] (then `content`
    /// is absent; download it raw).
    pub truncated: bool,
    /// The text, for small text files.
    pub content: Option<String>,
}

/// Where a request starts: the ref's name and the commit it resolves to.
struct Start {
    name: String,
    sha: String,
}

impl GitHost {
    /// The repository folder, which must exist.
    fn existing_repo(&self, owner: &Username, name: &RepoName) -> Result<PathBuf, BrowseError> {
        let path = self.repo_path(owner, name);
        if !path.is_dir() {
            return Err(BrowseError::Git(format!(
                "{} is missing on disk",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The commit `spec` names, or `None` when it names nothing.
    async fn rev_parse(&self, repo: &Path, spec: &str) -> Result<Option<String>, BrowseError> {
        let args = ["rev-parse", "--verify", "--quiet", "--end-of-options", spec];
        let run = self.run_read(repo, &args, None, 200).await?;
        let sha = String::from_utf8_lossy(&run.stdout).trim().to_owned();
        Ok((run.success && !sha.is_empty()).then_some(sha))
    }

    /// The branch `HEAD` points to.
    pub(crate) async fn head_branch(&self, repo: &Path) -> Result<Option<String>, BrowseError> {
        let run = self
            .run_read(repo, &["symbolic-ref", "--quiet", "HEAD"], None, 1024)
            .await?;
        let text = String::from_utf8_lossy(&run.stdout).trim().to_owned();
        Ok(text.strip_prefix("refs/heads/").map(str::to_owned))
    }

    /// Resolves `rev` to a commit (404 when it names none); without one, the
    /// default branch, else the newest branch, else `None` (empty repository).
    async fn resolve(&self, repo: &Path, rev: Option<&Rev>) -> Result<Option<Start>, BrowseError> {
        if let Some(rev) = rev {
            let sha = self
                .rev_parse(repo, &format!("{rev}^{{commit}}"))
                .await?
                .ok_or_else(|| {
                    BrowseError::NotFound(format!(
                        "no branch, tag or commit named {:?} in this repository",
                        rev.as_str()
                    ))
                })?;
            return Ok(Some(Start {
                name: rev.to_string(),
                sha,
            }));
        }
        if let Some(branch) = self.head_branch(repo).await? {
            let spec = format!("refs/heads/{branch}^{{commit}}");
            if let Some(sha) = self.rev_parse(repo, &spec).await? {
                return Ok(Some(Start { name: branch, sha }));
            }
        }
        let (mut newest, _) = self.branch_list(repo, 1).await?;
        Ok(newest.pop().map(|b| Start {
            name: b.name,
            sha: b.sha,
        }))
    }

    /// Finds `path` at commit `sha`: its object name, type and size.
    async fn lookup(
        &self,
        repo: &Path,
        start: &Start,
        path: &TreePath,
    ) -> Result<(String, String, u64), BrowseError> {
        let line = format!("{}:{}\n", start.sha, path);
        let run = self
            .run_read(
                repo,
                &["cat-file", "--batch-check"],
                Some(line.as_bytes()),
                4 * 1024 + 512,
            )
            .await?;
        let text = String::from_utf8_lossy(&run.stdout);
        let mut parts = text.trim_end().rsplitn(3, ' ');
        let (size, kind, oid) = (parts.next(), parts.next(), parts.next());
        match (oid, kind, size.and_then(|s| s.parse::<u64>().ok())) {
            (Some(oid), Some(kind), Some(size)) if run.success => {
                Ok((oid.to_owned(), kind.to_owned(), size))
            }
            _ => Err(BrowseError::NotFound(format!(
                "no file or directory {:?} at {}",
                path.as_str(),
                start.name
            ))),
        }
    }
}
