-- Alerts: rules per app evaluated continuously, the alerts they raised
-- (firing, then resolved), signed webhooks per app and their deliveries.

CREATE TABLE alert_rules (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id       INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- replica_down, error_rate, p99 or cpu.
    kind         TEXT    NOT NULL CHECK (kind IN ('replica_down','error_rate','p99','cpu')),
    -- Fires when the measured value is above it (unit by kind).
    threshold    REAL    NOT NULL,
    -- Seconds the condition must hold before the alert fires (0: at once).
    for_s        INTEGER NOT NULL,
    -- Seconds of samples the value is computed over.
    window_s     INTEGER NOT NULL,
    -- Fewer requests than this in the window: no verdict (error_rate, p99).
    min_requests INTEGER NOT NULL,
    enabled      INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL
);
CREATE INDEX alert_rules_app ON alert_rules(app_id);

-- One row per alert: opened when it fires, closed when it resolves. The
-- rule's description is copied so history survives the rule's deletion.
CREATE TABLE alert_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    rule_id     INTEGER REFERENCES alert_rules(id) ON DELETE SET NULL,
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    kind        TEXT    NOT NULL,
    summary     TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('firing','resolved')),
    -- Value when it fired, then the value that resolved it.
    value       REAL    NOT NULL,
    threshold   REAL    NOT NULL,
    started_at  TEXT    NOT NULL,
    resolved_at TEXT
);
CREATE INDEX alert_events_app ON alert_events(app_id, id);
-- A rule has at most one open alert: a restart or a race cannot fire it twice.
CREATE UNIQUE INDEX alert_events_one_open ON alert_events(rule_id) WHERE state = 'firing';

CREATE TABLE alert_webhooks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    url         TEXT    NOT NULL,
    -- The signing secret, sealed like app secrets; never returned.
    secret      TEXT    NOT NULL,
    active      INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT    NOT NULL
);
CREATE INDEX alert_webhooks_app ON alert_webhooks(app_id);

-- Each notification to each webhook, with the exact body sent (re-sent as is
-- on retries, including after a restart).
CREATE TABLE alert_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      INTEGER NOT NULL REFERENCES alert_webhooks(id) ON DELETE CASCADE,
    app_id          INTEGER NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    -- NULL for a test ping.
    event_id        INTEGER REFERENCES alert_events(id) ON DELETE SET NULL,
    -- firing, resolved or ping.
    state           TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('pending','delivered','failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    response_status INTEGER,
    error           TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX alert_deliveries_app ON alert_deliveries(app_id, id);
CREATE INDEX alert_deliveries_pending ON alert_deliveries(status) WHERE status = 'pending';
