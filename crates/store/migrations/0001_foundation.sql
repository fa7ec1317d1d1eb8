-- Users, access tokens, repositories, collaborators and push events.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT    NOT NULL
);

CREATE TABLE tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    digest       TEXT    NOT NULL UNIQUE,
    prefix       TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT
);
CREATE INDEX tokens_user ON tokens(user_id);

CREATE TABLE repos (
    id          INTEGER PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL DEFAULT '',
    private     INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    UNIQUE (owner_id, name)
);

CREATE TABLE collaborators (
    repo_id INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    access  TEXT    NOT NULL CHECK (access IN ('read', 'write', 'admin')),
    PRIMARY KEY (repo_id, user_id)
);

-- Push events outlive their repository on purpose: they are an audit trail.
CREATE TABLE push_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id    INTEGER NOT NULL,
    repo       TEXT    NOT NULL,
    ref_name   TEXT    NOT NULL,
    old_sha    TEXT    NOT NULL,
    new_sha    TEXT    NOT NULL,
    pusher     TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);
CREATE INDEX push_events_repo ON push_events(repo_id, id);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
