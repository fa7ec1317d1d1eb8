//! Directory listings and file contents at a ref.

use super::parse::tree_entry;
use super::{
    Blob, BrowseError, EntryKind, Rev, Start, Tree, TreePath, MAX_INLINE_BLOB, MAX_TREE_ENTRIES,
};
use crate::GitHost;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use slipway_domain::{RepoName, Username};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncReadExt;

/// How much of a file is inspected to tell text from binary (as git does).
const SNIFF_BYTES: u64 = 8000;
/// Bound on `ls-tree` output.
const MAX_TREE_OUTPUT: usize = 8 * 1024 * 1024;

/// A file's bytes, streamed from `git cat-file` (the child is killed if the
/// stream is dropped early).
pub struct RawBlob {
    /// File name (last path component).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The content.
    pub body: BoxStream<'static, Result<Bytes, std::io::Error>>,
}

impl GitHost {
    /// The entries of directory `path` at `rev` (default branch when `None`).
    pub async fn tree(
        &self,
        owner: &Username,
        name: &RepoName,
        rev: Option<&Rev>,
        path: &TreePath,
    ) -> Result<Tree, BrowseError> {
        let repo = self.existing_repo(owner, name)?;
        let Some(start) = self.resolve(&repo, rev).await? else {
            if !path.is_root() {
                return Err(BrowseError::NotFound(
                    "the repository is empty: nothing has been pushed yet".into(),
                ));
            }
            return Ok(Tree {
                rev: None,
                commit: None,
                path: String::new(),
                entries: Vec::new(),
                truncated: false,
            });
        };
        let object = if path.is_root() {
            format!("{}^{{tree}}", start.sha)
        } else {
            let (oid, kind, _) = self.lookup(&repo, &start, path).await?;
            if kind != "tree" {
                return Err(BrowseError::Invalid(format!(
                    "{:?} is a {}, not a directory; read files with /blob",
                    path.as_str(),
                    if kind == "blob" { "file" } else { &kind }
                )));
            }
            oid
        };
        let args = ["ls-tree", "-z", "--long", "--end-of-options", &object];
        let run = self.run_ok(&repo, &args, MAX_TREE_OUTPUT).await?;
        let mut raw: Vec<&[u8]> = run.stdout.split(|b| *b == 0).collect();
        raw.pop(); // empty, or cut short
        let mut entries: Vec<_> = raw
            .into_iter()
            .filter_map(|r| tree_entry(r, path))
            .collect();
        let truncated = entries.len() > MAX_TREE_ENTRIES || run.truncated;
        entries.truncate(MAX_TREE_ENTRIES);
        entries.sort_by(|a, b| {
            (a.kind != EntryKind::Dir, &a.name).cmp(&(b.kind != EntryKind::Dir, &b.name))
        });
        Ok(Tree {
            rev: Some(start.name),
            commit: Some(start.sha),
            path: path.to_string(),
            entries,
            truncated,
        })
    }

    /// File `path` at `rev`: its text when small and not binary, else what it is.
    pub async fn blob(
        &self,
        owner: &Username,
        name: &RepoName,
        rev: Option<&Rev>,
        path: &TreePath,
    ) -> Result<Blob, BrowseError> {
        let (repo, start, oid, size) = self.find_file(owner, name, rev, path).await?;
        let truncated = size > MAX_INLINE_BLOB;
        let want = if truncated { SNIFF_BYTES } else { size };
        let args = ["cat-file", "blob", &oid];
        let run = self.run_read(&repo, &args, None, want as usize).await?;
        if !run.success && !run.truncated {
            return Err(BrowseError::Git(format!("cat-file: {}", run.stderr)));
        }
        let head = &run.stdout[..run.stdout.len().min(SNIFF_BYTES as usize)];
        let mut binary = head.contains(&0);
        let mut content = None;
        if !binary && !truncated {
            match String::from_utf8(run.stdout) {
                Ok(text) => content = Some(text),
                Err(_) => binary = true,
            }
        }
        Ok(Blob {
            rev: start.name,
            commit: start.sha,
            path: path.to_string(),
            name: path.file_name().to_owned(),
            sha: oid,
            size,
            binary,
            truncated,
            content,
        })
    }

    /// File `path` at `rev`, streamed whatever its size or content.
    pub async fn raw_blob(
        &self,
        owner: &Username,
        name: &RepoName,
        rev: Option<&Rev>,
        path: &TreePath,
    ) -> Result<RawBlob, BrowseError> {
        let (repo, _, oid, size) = self.find_file(owner, name, rev, path).await?;
        let mut cmd = self.read_command(&repo);
        cmd.args(["cat-file", "blob", &oid]).stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .map_err(|e| BrowseError::Git(format!("cannot run {}: {e}", self.git_bin.display())))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let body = futures::stream::unfold(Some((stdout, child)), |state| async move {
            let (mut out, child) = state?;
            let mut buf = BytesMut::with_capacity(64 * 1024);
            match out.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(buf.freeze()), Some((out, child)))),
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(RawBlob {
            name: path.file_name().to_owned(),
            size,
            body: Box::pin(body),
        })
    }

    /// The repository, start commit, object name and size of file `path`.
    async fn find_file(
        &self,
        owner: &Username,
        name: &RepoName,
        rev: Option<&Rev>,
        path: &TreePath,
    ) -> Result<(PathBuf, Start, String, u64), BrowseError> {
        if path.is_root() {
            return Err(BrowseError::Invalid(
                "give the path of a file (?path=...)".into(),
            ));
        }
        let repo = self.existing_repo(owner, name)?;
        let start = self.resolve(&repo, rev).await?.ok_or_else(|| {
            BrowseError::NotFound("the repository is empty: nothing has been pushed yet".into())
        })?;
        let (oid, kind, size) = self.lookup(&repo, &start, path).await?;
        match kind.as_str() {
            "blob" => Ok((repo, start, oid, size)),
            "tree" => Err(BrowseError::Invalid(format!(
                "{:?} is a directory; list it with /tree",
                path.as_str()
            ))),
            _ => Err(BrowseError::NotFound(format!(
                "{:?} is not a file",
                path.as_str()
            ))),
        }
    }
}
