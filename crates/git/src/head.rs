//! A repository's default branch: the branch `HEAD` names, which clones check
//! out and the dashboard shows first.
//!
//! Repositories are created with `HEAD` → `main`. A repository whose first
//! push brings only `master` (or any other branch) would then clone with
//! "remote HEAD refers to nonexistent ref"; so, as other forges do, `HEAD`
//! follows the first branch pushed to it while it names no existing branch.

use crate::browse::{BrowseError, Rev};
use crate::{GitError, GitHost};
use slipway_domain::{RepoName, Username};

impl GitHost {
    /// The branch `HEAD` points to (whether or not it exists yet).
    pub async fn default_branch(
        &self,
        owner: &Username,
        name: &RepoName,
    ) -> Result<Option<String>, GitError> {
        self.head_branch(&self.repo_path(owner, name))
            .await
            .map_err(browse_to_git)
    }

    /// Points `HEAD` at `branch`, which must exist.
    pub async fn set_default_branch(
        &self,
        owner: &Username,
        name: &RepoName,
        branch: &str,
    ) -> Result<(), SetHeadError> {
        let rev = Rev::parse(branch).map_err(|e| SetHeadError::Invalid(e.to_string()))?;
        if !self.branch_exists(owner, name, rev.as_str()).await? {
            return Err(SetHeadError::NoSuchBranch(branch.to_owned()));
        }
        self.point_head(owner, name, rev.as_str()).await?;
        Ok(())
    }

    /// After a push that created `pushed` branches (full ref names, in push
    /// order): when `HEAD` names no existing branch, points it at `main`,
    /// `master` or else the first of them. Returns the branch chosen, if any.
    pub async fn adopt_pushed_branch(
        &self,
        owner: &Username,
        name: &RepoName,
        pushed: &[&str],
    ) -> Result<Option<String>, GitError> {
        let branches: Vec<&str> = pushed
            .iter()
            .filter_map(|r| r.strip_prefix("refs/heads/"))
            .collect();
        if branches.is_empty() {
            return Ok(None);
        }
        if let Some(current) = self.default_branch(owner, name).await? {
            if self.branch_exists(owner, name, &current).await? {
                return Ok(None);
            }
        }
        let preferred = ["main", "master"]
            .into_iter()
            .find(|p| branches.contains(p))
            .unwrap_or(branches[0]);
        for candidate in std::iter::once(preferred).chain(branches.iter().copied()) {
            // The push may have deleted it again in the same request.
            if self.branch_exists(owner, name, candidate).await? {
                self.point_head(owner, name, candidate).await?;
                return Ok(Some(candidate.to_owned()));
            }
        }
        Ok(None)
    }

    async fn branch_exists(
        &self,
        owner: &Username,
        name: &RepoName,
        branch: &str,
    ) -> Result<bool, GitError> {
        let repo = self.repo_path(owner, name);
        let full = format!("refs/heads/{branch}");
        let run = self
            .run_read(
                &repo,
                &["show-ref", "--verify", "--quiet", "--end-of-options", &full],
                None,
                1024,
            )
            .await
            .map_err(browse_to_git)?;
        Ok(run.success)
    }

    async fn point_head(
        &self,
        owner: &Username,
        name: &RepoName,
        branch: &str,
    ) -> Result<(), GitError> {
        let repo = self.repo_path(owner, name);
        let full = format!("refs/heads/{branch}");
        let run = self
            .run_read(&repo, &["symbolic-ref", "HEAD", &full], None, 1024)
            .await
            .map_err(browse_to_git)?;
        if !run.success {
            return Err(GitError::Git(format!(
                "cannot point HEAD at {full}: {}",
                run.stderr.trim()
            )));
        }
        Ok(())
    }
}

/// Why the default branch could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum SetHeadError {
    /// The name is not a valid branch name.
    #[error("invalid branch name: {0}")]
    Invalid(String),
    /// No branch of that name exists.
    #[error("no branch named {0:?} in this repository")]
    NoSuchBranch(String),
    /// git failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

fn browse_to_git(e: BrowseError) -> GitError {
    GitError::Git(e.to_string())
}
