-- Webhooks called when a repository's pipeline ends (signed with HMAC-SHA256).

CREATE TABLE repo_webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id    INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    url        TEXT    NOT NULL,
    -- The signing secret, sealed like repository secrets; never returned.
    secret     TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX repo_webhooks_repo ON repo_webhooks(repo_id);
