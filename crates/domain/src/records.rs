//! Plain records as the store keeps them and the API returns them.

use crate::{Access, Scope};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An account. The password hash never leaves the store crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable numeric id.
    pub id: i64,
    /// Login and namespace name.
    pub username: String,
    /// Site administrators manage users and see every repository.
    pub is_admin: bool,
    /// When the account was made.
    pub created_at: DateTime<Utc>,
}

/// A personal access token as listed: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Id used to revoke it.
    pub id: i64,
    /// The owner's label, e.g. "laptop" or "ci".
    pub name: String,
    /// The first characters of the token, to recognise it in a list.
    pub prefix: String,
    /// What it may be used for.
    pub scopes: Vec<Scope>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was last presented, if ever.
    pub last_used_at: Option<DateTime<Utc>>,
    /// After this it stops working, if set.
    pub expires_at: Option<DateTime<Utc>>,
    /// A login token: each use pushes `expires_at` forward (sliding expiry).
    #[serde(default)]
    pub renews_on_use: bool,
}

/// A hosted git repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repo {
    /// Stable numeric id.
    pub id: i64,
    /// Owner's user id.
    pub owner_id: i64,
    /// Owner's user name (the namespace).
    pub owner: String,
    /// Name within the owner's namespace.
    pub name: String,
    /// Free text shown in lists.
    pub description: String,
    /// Private repositories are visible to their owner, collaborators and admins only.
    pub private: bool,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

impl Repo {
    /// `owner/name`, the form users type.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

/// A user given access to a repository they do not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collaborator {
    /// The collaborator's user name.
    pub username: String,
    /// Their level on this repository.
    pub access: Access,
}

/// One ref update accepted by a push; the pipeline queue consumes these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushEvent {
    /// Monotonic id: consumers remember the last one they handled.
    pub id: i64,
    /// Repository id.
    pub repo_id: i64,
    /// `owner/name` of the repository.
    pub repo: String,
    /// Full ref name, e.g. `refs/heads/main`.
    pub ref_name: String,
    /// Previous commit (40 zeros when the ref was created).
    pub old_sha: String,
    /// New commit (40 zeros when the ref was deleted).
    pub new_sha: String,
    /// Who pushed.
    pub pusher: String,
    /// When the push was accepted.
    pub created_at: DateTime<Utc>,
}

/// Whether `sha` is git's null object name (all zeros): the old side of a
/// created ref, the new side of a deleted one.
pub fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// One ref update as git reported it for an accepted push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefUpdate {
    /// Full ref name, e.g. `refs/heads/main`.
    pub ref_name: String,
    /// Previous commit (40 zeros when the ref was created).
    pub old_sha: String,
    /// New commit (40 zeros when the ref was deleted).
    pub new_sha: String,
}

impl RefUpdate {
    /// Parses one `old new ref` line as git's post-receive hook gets it.
    pub fn parse_hook_line(line: &str) -> Option<Self> {
        let mut parts = line.split_whitespace();
        let (old, new, name) = (parts.next()?, parts.next()?, parts.next()?);
        let is_sha =
            |s: &str| (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        (is_sha(old) && is_sha(new) && parts.next().is_none()).then(|| RefUpdate {
            ref_name: name.to_owned(),
            old_sha: old.to_owned(),
            new_sha: new.to_owned(),
        })
    }
}
