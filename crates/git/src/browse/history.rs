//! Branches, pages of history and single commits.

use super::parse::{changed_files, records};
use super::{
    Branch, Branches, BrowseError, Commit, CommitDetail, CommitPage, CommitQuery, DiffStats, Rev,
    MAX_BRANCHES, MAX_CHANGED_FILES, MAX_COMMITS, MAX_SKIP,
};
use crate::GitHost;
use slipway_domain::{RepoName, Username};
use std::path::Path;

/// `git log` format of a [`Commit`]: nine NUL-terminated fields.
const COMMIT_FORMAT: &str = "%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%s%x00";
const COMMIT_FIELDS: usize = 9;
/// Longest subject kept (git joins a first paragraph into one line).
const MAX_SUBJECT_CHARS: usize = 1000;
/// Largest commit message returned.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// How far into history an `after` cursor is looked for.
const MAX_CURSOR_SCAN: usize = 100_000;
/// Bound on the output of listing commands.
const MAX_LIST_OUTPUT: usize = 8 * 1024 * 1024;

fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        s
    } else {
        s.chars().take(max).collect::<String>() + "…"
    }
}

impl Commit {
    fn from_fields(f: Vec<String>) -> Commit {
        let mut f = f.into_iter();
        let mut next = || f.next().unwrap_or_default();
        Commit {
            sha: next(),
            parents: next().split_whitespace().map(str::to_owned).collect(),
            author: next(),
            email: next(),
            time: next(),
            committer: next(),
            committer_email: next(),
            commit_time: next(),
            subject: clip(next(), MAX_SUBJECT_CHARS),
        }
    }
}

impl GitHost {
    /// The branches of `owner/name`, default first (empty for an empty repository).
    pub async fn branches(
        &self,
        owner: &Username,
        name: &RepoName,
    ) -> Result<Branches, BrowseError> {
        let repo = self.existing_repo(owner, name)?;
        let default_branch = self.head_branch(&repo).await?;
        let (mut branches, truncated) = self.branch_list(&repo, MAX_BRANCHES).await?;
        for b in &mut branches {
            b.default = Some(&b.name) == default_branch.as_ref();
        }
        branches.sort_by_key(|b| !b.default);
        Ok(Branches {
            default_branch,
            branches,
            truncated,
        })
    }

    /// Up to `max` branches, most recently committed to first.
    pub(super) async fn branch_list(
        &self,
        repo: &Path,
        max: usize,
    ) -> Result<(Vec<Branch>, bool), BrowseError> {
        let count = format!("--count={}", max + 1);
        let args = [
            "for-each-ref",
            &count,
            "--sort=-committerdate",
            "--format=%(refname:lstrip=2)%00%(objectname)%00%(committerdate:iso-strict)%00%(authorname)%00%(contents:subject)%00",
            "refs/heads/",
        ];
        let run = self.run_ok(repo, &args, MAX_LIST_OUTPUT).await?;
        let mut branches: Vec<Branch> = records(&run.stdout, 5)
            .into_iter()
            .map(|f| {
                let mut f = f.into_iter();
                let mut next = || f.next().unwrap_or_default();
                Branch {
                    name: next(),
                    sha: next(),
                    time: next(),
                    author: next(),
                    summary: clip(next(), MAX_SUBJECT_CHARS),
                    default: false,
                }
            })
            .collect();
        let truncated = branches.len() > max || run.truncated;
        branches.truncate(max);
        Ok((branches, truncated))
    }

    /// One page of history, newest first.
    pub async fn commits(
        &self,
        owner: &Username,
        name: &RepoName,
        q: &CommitQuery,
    ) -> Result<CommitPage, BrowseError> {
        let repo = self.existing_repo(owner, name)?;
        let limit = q.limit.clamp(1, MAX_COMMITS);
        if q.skip > MAX_SKIP {
            return Err(BrowseError::Invalid(format!(
                "skip must be at most {MAX_SKIP}"
            )));
        }
        let Some(start) = self.resolve(&repo, q.rev.as_ref()).await? else {
            return Ok(CommitPage {
                rev: None,
                commit: None,
                commits: Vec::new(),
                has_more: false,
            });
        };
        let mut skip = q.skip;
        if let Some(after) = &q.after {
            skip += self.position(&repo, &start.sha, &q.path, after).await? + 1;
        }
        let format = format!("--format=tformat:{COMMIT_FORMAT}");
        let max = format!("--max-count={}", limit + 1);
        let skip = format!("--skip={skip}");
        let mut args = vec![
            "log",
            "--no-color",
            &format,
            &max,
            &skip,
            "--end-of-options",
            &start.sha,
            "--",
        ];
        if !q.path.is_root() {
            args.push(q.path.as_str());
        }
        let run = self.run_ok(&repo, &args, MAX_LIST_OUTPUT).await?;
        let mut commits: Vec<Commit> = records(&run.stdout, COMMIT_FIELDS)
            .into_iter()
            .map(Commit::from_fields)
            .collect();
        let has_more = commits.len() > limit || run.truncated;
        commits.truncate(limit);
        Ok(CommitPage {
            rev: Some(start.name),
            commit: Some(start.sha),
            commits,
            has_more,
        })
    }

    /// Where commit `after` is in the history of `tip` (touching `path`).
    async fn position(
        &self,
        repo: &Path,
        tip: &str,
        path: &super::TreePath,
        after: &Rev,
    ) -> Result<usize, BrowseError> {
        if !after.is_hex() {
            return Err(BrowseError::Invalid(format!(
                "after must be a commit's hex name, not {:?}",
                after.as_str()
            )));
        }
        let max = format!("--max-count={MAX_CURSOR_SCAN}");
        let mut args = vec!["rev-list", &max, "--end-of-options", tip, "--"];
        if !path.is_root() {
            args.push(path.as_str());
        }
        let run = self.run_ok(repo, &args, MAX_CURSOR_SCAN * 41).await?;
        let wanted = after.as_str().to_ascii_lowercase();
        String::from_utf8_lossy(&run.stdout)
            .lines()
            .position(|sha| sha.starts_with(&wanted))
            .ok_or_else(|| {
                BrowseError::NotFound(format!(
                    "commit {wanted} is not in this history (after must come from a previous page)"
                ))
            })
    }

    /// One commit with its message and changed files.
    pub async fn commit(
        &self,
        owner: &Username,
        name: &RepoName,
        rev: &Rev,
    ) -> Result<CommitDetail, BrowseError> {
        let repo = self.existing_repo(owner, name)?;
        let start = self
            .resolve(&repo, Some(rev))
            .await?
            .ok_or_else(|| BrowseError::NotFound(format!("no commit {rev}")))?;
        let format = format!("--format=tformat:{COMMIT_FORMAT}%B");
        let args = [
            "log",
            "-1",
            "--no-color",
            &format,
            "--end-of-options",
            &start.sha,
        ];
        let run = self.run_ok(&repo, &args, MAX_MESSAGE_BYTES).await?;
        let mut parts = run.stdout.splitn(COMMIT_FIELDS + 1, |b| *b == 0);
        let fields: Vec<String> = parts
            .by_ref()
            .take(COMMIT_FIELDS)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        if fields.len() < COMMIT_FIELDS {
            return Err(BrowseError::Git(format!(
                "unexpected git log output for {}",
                start.sha
            )));
        }
        let message = parts
            .next()
            .map(|m| String::from_utf8_lossy(m).trim_end().to_owned())
            .unwrap_or_default();
        let commit = Commit::from_fields(fields);

        let mut args = vec![
            "diff-tree",
            "-r",
            "-z",
            "--no-commit-id",
            "--raw",
            "--numstat",
            "-M",
        ];
        match commit.parents.first() {
            Some(parent) => args.push(parent),
            None => args.push("--root"),
        }
        args.push(&start.sha);
        let run = self.run_ok(&repo, &args, MAX_LIST_OUTPUT).await?;
        let mut files = changed_files(&run.stdout);
        let stats = DiffStats {
            files: files.len(),
            additions: files.iter().filter_map(|f| f.additions).sum(),
            deletions: files.iter().filter_map(|f| f.deletions).sum(),
        };
        let files_truncated = files.len() > MAX_CHANGED_FILES || run.truncated;
        files.truncate(MAX_CHANGED_FILES);
        Ok(CommitDetail {
            commit,
            message,
            files,
            stats,
            files_truncated,
        })
    }
}
