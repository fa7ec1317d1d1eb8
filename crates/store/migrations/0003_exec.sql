-- Code execution jobs: persisted before the API answers 202, claimed by
-- workers with a lease (claimed_by/claimed_at) for at-least-once delivery.
CREATE TABLE exec_jobs (
    id          TEXT    PRIMARY KEY,
    owner_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    language    TEXT    NOT NULL,
    version     TEXT    NOT NULL,
    request     TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN
                    ('pending', 'running', 'succeeded', 'failed', 'timed_out', 'cancelled')),
    result      TEXT,
    output_zip  BLOB,
    attempts    INTEGER NOT NULL DEFAULT 0,
    claimed_by  TEXT,
    claimed_at  TEXT,
    created_at  TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX exec_jobs_owner ON exec_jobs(owner_id, created_at);
CREATE INDEX exec_jobs_state ON exec_jobs(state, created_at);
