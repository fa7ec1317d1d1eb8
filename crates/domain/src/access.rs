//! Who may do what: repository access levels and token scopes.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A user's access to one repository. Ordered: each level includes the ones below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Clone, fetch and read through the API.
    Read,
    /// Everything of `Read`, plus push.
    Write,
    /// Everything of `Write`, plus settings, collaborators and deletion.
    Admin,
}

impl Access {
    /// The lowercase word used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Access {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Access::Read),
            "write" => Ok(Access::Write),
            "admin" => Ok(Access::Admin),
            other => Err(format!(
                "unknown access level {other:?}: use read, write or admin"
            )),
        }
    }
}

/// What a personal access token may be used for, so a token handed to a CI
/// script can be limited to reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read repositories (clone, fetch, GET requests).
    Read,
    /// Create, change and push.
    Write,
    /// Site administration (users), for administrators only.
    Admin,
}

impl Scope {
    /// Every scope, in display order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The lowercase word used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            other => Err(format!("unknown scope {other:?}: use read, write or admin")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The access `user` has to `repo`: owners and site admins have `Admin`,
/// collaborators their granted level, anyone (even anonymous) `Read` on a public
/// repository, and nobody anything else.
pub fn effective_access(
    user: Option<&crate::User>,
    repo: &crate::Repo,
    collaborator: Option<Access>,
) -> Option<Access> {
    if let Some(u) = user {
        if u.is_admin || u.id == repo.owner_id {
            return Some(Access::Admin);
        }
    }
    let public = (!repo.private).then_some(Access::Read);
    collaborator.max(public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Repo, User};

    fn user(id: i64, admin: bool) -> User {
        User {
            id,
            username: format!("u{id}"),
            is_admin: admin,
            created_at: chrono::Utc::now(),
        }
    }
    fn repo(owner: i64, private: bool) -> Repo {
        Repo {
            id: 1,
            owner_id: owner,
            owner: format!("u{owner}"),
            name: "r".into(),
            description: String::new(),
            private,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn access_rules() {
        let owner = user(1, false);
        let other = user(2, false);
        let admin = user(3, true);
        let private = repo(1, true);
        let public = repo(1, false);
        assert_eq!(
            effective_access(Some(&owner), &private, None),
            Some(Access::Admin)
        );
        assert_eq!(
            effective_access(Some(&admin), &private, None),
            Some(Access::Admin)
        );
        assert_eq!(effective_access(Some(&other), &private, None), None);
        assert_eq!(effective_access(None, &private, None), None);
        assert_eq!(effective_access(None, &public, None), Some(Access::Read));
        assert_eq!(
            effective_access(Some(&other), &private, Some(Access::Write)),
            Some(Access::Write)
        );
        assert_eq!(
            effective_access(Some(&other), &public, Some(Access::Read)),
            Some(Access::Read)
        );
    }
}
