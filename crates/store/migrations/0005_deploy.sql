-- Continuous deployment: apps (desired state), their numbered releases,
-- encrypted app secrets and a short event history per app.

CREATE TABLE apps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    owner_id    INTEGER NOT NULL REFERENCES users(id),
    -- AppSpec as JSON (branch, port, replicas, health, env, …).
    spec        TEXT    NOT NULL,
    -- Number of the release that should run; NULL before the first deploy.
    release     INTEGER,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
CREATE INDEX apps_repo ON apps(repo_id);

CREATE TABLE releases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    image       TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    pipeline_id INTEGER,
    spec        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending','deploying','active','failed','superseded')),
    error       TEXT,
    created_at  TEXT    NOT NULL,
    UNIQUE (app_id, number)
);

-- Values sealed by the deploy service; only names are ever listed.
CREATE TABLE app_secrets (
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    value       TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    PRIMARY KEY (app_id, name)
);

-- What happened to an app (rollouts, crashes, scaling), newest last; trimmed per app.
CREATE TABLE app_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    at          TEXT    NOT NULL
);
CREATE INDEX app_events_app ON app_events(app_id, id);
