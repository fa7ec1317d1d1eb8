//! Repository content: branches, history, one commit, directory listings and
//! files, read through `slipway_git::browse` with read access to the
//! repository (private repositories stay 404 to outsiders).
//!
//! Query parameters are parsed here so that bad ones answer in the API's
//! error shape; refs and paths are validated by `slipway_git::browse` types
//! before git runs. Raw file downloads are served as opaque bytes with a
//! sandboxing Content-Security-Policy: a repository's HTML never runs under
//! Slipway's origin.

use crate::error::{ApiError, ApiResult};
use crate::extract::MaybeCaller;
use crate::routes::repos::authorize;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use slipway_domain::{Access, RepoName, Username};
use slipway_git::browse::{
    Blob, Branches, BrowseError, CommitDetail, CommitPage, CommitQuery, Rev, Tree, TreePath,
};

/// Sent with raw files: nothing in them may run, load or be framed.
pub const RAW_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; sandbox; frame-ancestors 'none'";

/// Commits per page when `limit` is not given.
const DEFAULT_COMMITS: usize = 30;

impl From<BrowseError> for ApiError {
    fn from(e: BrowseError) -> Self {
        match e {
            BrowseError::Invalid(m) => ApiError::invalid(m),
            BrowseError::NotFound(m) => ApiError::not_found(m),
            BrowseError::Git(m) => ApiError::internal(m),
        }
    }
}

/// The query parameters of the browsing routes (each route uses some).
#[derive(Deserialize, Default)]
struct BrowseQuery {
    #[serde(rename = "ref")]
    rev: Option<String>,
    path: Option<String>,
    limit: Option<usize>,
    skip: Option<usize>,
    after: Option<String>,
    raw: Option<String>,
}

impl BrowseQuery {
    fn parse(raw: Option<String>) -> ApiResult<Self> {
        serde_html_form::from_str(raw.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::invalid(format!("invalid query parameters: {e}")))
    }

    /// `ref`, validated; empty means the default branch.
    fn rev(&self) -> ApiResult<Option<Rev>> {
        match self.rev.as_deref() {
            None | Some("") => Ok(None),
            Some(r) => Ok(Some(Rev::parse(r)?)),
        }
    }

    fn path(&self) -> ApiResult<TreePath> {
        Ok(TreePath::parse(self.path.as_deref().unwrap_or(""))?)
    }

    fn raw(&self) -> ApiResult<bool> {
        match self.raw.as_deref() {
            None | Some("") | Some("0") | Some("false") => Ok(false),
            Some("1") | Some("true") => Ok(true),
            Some(other) => Err(ApiError::invalid(format!(
                "raw must be 1 or 0, not {other:?}"
            ))),
        }
    }
}

/// Authorises read access and returns the repository's validated names.
async fn readable(
    state: &AppState,
    caller: &MaybeCaller,
    owner: &str,
    name: &str,
) -> ApiResult<(Username, RepoName)> {
    let (repo, _) = authorize(state, caller, owner, name, Access::Read).await?;
    Ok((Username::parse(&repo.owner)?, RepoName::parse(&repo.name)?))
}

/// `GET /repos/{owner}/{name}/branches`: branches, the default one first.
pub async fn branches(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Branches>> {
    let (owner, name) = readable(&state, &caller, &owner, &name).await?;
    Ok(axum::Json(state.git().branches(&owner, &name).await?))
}

/// `GET /repos/{owner}/{name}/commits?ref=&path=&limit=&skip=&after=`: one
/// page of history, newest first.
pub async fn commits(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<axum::Json<CommitPage>> {
    let q = BrowseQuery::parse(query)?;
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(a) => Some(Rev::parse(a)?),
    };
    let query = CommitQuery {
        rev: q.rev()?,
        path: q.path()?,
        limit: q.limit.unwrap_or(DEFAULT_COMMITS),
        skip: q.skip.unwrap_or(0),
        after,
    };
    let (owner, name) = readable(&state, &caller, &owner, &name).await?;
    Ok(axum::Json(
        state.git().commits(&owner, &name, &query).await?,
    ))
}

/// `GET /repos/{owner}/{name}/commits/{sha}`: one commit and its changed files.
pub async fn commit(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name, sha)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<CommitDetail>> {
    let (owner, name) = readable(&state, &caller, &owner, &name).await?;
    let rev = Rev::parse(&sha)?;
    Ok(axum::Json(state.git().commit(&owner, &name, &rev).await?))
}

/// `GET /repos/{owner}/{name}/tree?ref=&path=`: a directory's entries.
pub async fn tree(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<axum::Json<Tree>> {
    let q = BrowseQuery::parse(query)?;
    let (rev, path) = (q.rev()?, q.path()?);
    let (owner, name) = readable(&state, &caller, &owner, &name).await?;
    Ok(axum::Json(
        state.git().tree(&owner, &name, rev.as_ref(), &path).await?,
    ))
}

/// `GET /repos/{owner}/{name}/blob?ref=&path=[&raw=1]`: a file as JSON (text
/// inline when small and not binary), or its bytes with `raw=1`.
pub async fn blob(
    State(state): State<AppState>,
    caller: MaybeCaller,
    Path((owner, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let q = BrowseQuery::parse(query)?;
    let (rev, path, raw) = (q.rev()?, q.path()?, q.raw()?);
    let (owner, name) = readable(&state, &caller, &owner, &name).await?;
    if !raw {
        let blob: Blob = state.git().blob(&owner, &name, rev.as_ref(), &path).await?;
        return Ok(axum::Json(blob).into_response());
    }
    let file = state
        .git()
        .raw_blob(&owner, &name, rev.as_ref(), &path)
        .await?;
    Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, file.size)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::CONTENT_SECURITY_POLICY, RAW_CONTENT_SECURITY_POLICY)
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", download_name(&file.name)),
        )
        .header(header::CACHE_CONTROL, "private, no-cache")
        .body(Body::from_stream(file.body))
        .map_err(ApiError::internal)
}

/// A file name safe inside a quoted `Content-Disposition` value.
fn download_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        "download".into()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_names_are_plain() {
        assert_eq!(download_name("index.html"), "index.html");
        assert_eq!(download_name("a\"b;c\r\n.txt"), "a_b_c__.txt");
        assert_eq!(download_name(".."), "download");
        assert_eq!(download_name("ünï.txt"), "_n_.txt");
    }

    #[test]
    fn queries_are_checked() {
        let q = BrowseQuery::parse(Some("ref=main&path=src%2Flib&limit=5&raw=1".into())).unwrap();
        assert_eq!(q.rev().unwrap().unwrap().as_str(), "main");
        assert_eq!(q.path().unwrap().as_str(), "src/lib");
        assert_eq!(q.limit, Some(5));
        assert!(q.raw().unwrap());
        assert!(BrowseQuery::parse(Some("limit=lots".into())).is_err());
        let bad = BrowseQuery::parse(Some("ref=--upload-pack%3Dx&path=..%2Fx".into())).unwrap();
        assert_eq!(bad.rev().unwrap_err().status, 422);
        assert_eq!(bad.path().unwrap_err().status, 422);
        assert!(BrowseQuery::parse(None).unwrap().rev().unwrap().is_none());
    }
}
