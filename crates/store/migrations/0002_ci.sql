-- Continuous integration: pipelines (also the persistent queue), steps, step
-- logs and repository secrets.

CREATE TABLE pipelines (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    repo_id     INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    number      INTEGER NOT NULL,
    event_id    INTEGER,
    event       TEXT    NOT NULL DEFAULT 'push',
    ref_name    TEXT    NOT NULL,
    sha         TEXT    NOT NULL,
    -- pending = queued; a worker claims it by switching it to running.
    status      TEXT    NOT NULL CHECK (status IN ('pending','running','success','failure','cancelled','error','skipped')),
    error       TEXT,
    retry_of    INTEGER,
    actor       TEXT    NOT NULL,
    -- The validated pipeline (JSON) as read at the pushed commit.
    config      TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (repo_id, number)
);
-- One pipeline per push event: a replayed event never queues twice.
CREATE UNIQUE INDEX pipelines_event ON pipelines(event_id) WHERE event_id IS NOT NULL;
CREATE INDEX pipelines_queue ON pipelines(status, id);
CREATE INDEX pipelines_sha ON pipelines(repo_id, sha);

CREATE TABLE pipeline_steps (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline_id INTEGER NOT NULL REFERENCES pipelines(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    image       TEXT    NOT NULL,
    depends_on  TEXT    NOT NULL DEFAULT '[]',
    status      TEXT    NOT NULL CHECK (status IN ('pending','running','success','failure','cancelled','error','skipped')),
    exit_code   INTEGER,
    error       TEXT,
    log_lines   INTEGER NOT NULL DEFAULT 0,
    log_bytes   INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT,
    finished_at TEXT,
    UNIQUE (pipeline_id, name)
);

-- Append-only, already masked; bounded per step by the executor.
CREATE TABLE step_logs (
    step_id INTEGER NOT NULL REFERENCES pipeline_steps(id) ON DELETE CASCADE,
    number  INTEGER NOT NULL,
    stream  TEXT    NOT NULL,
    text    TEXT    NOT NULL,
    at      TEXT    NOT NULL,
    PRIMARY KEY (step_id, number)
) WITHOUT ROWID;

-- Values are write-only through the API: only names are ever listed.
CREATE TABLE repo_secrets (
    repo_id    INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    PRIMARY KEY (repo_id, name)
);
