-- Horizontal autoscaling: at most one policy per app. The autoscaler keeps
-- the app's replicas between min and max, aiming at one target per replica:
-- CPU % (of the replica's CPU limit, or one core) or requests/s.

CREATE TABLE autoscale_policies (
    app_id              INTEGER PRIMARY KEY REFERENCES apps(id) ON DELETE CASCADE,
    min_replicas        INTEGER NOT NULL CHECK (min_replicas >= 1),
    max_replicas        INTEGER NOT NULL CHECK (max_replicas >= min_replicas),
    -- Exactly one target is set.
    cpu_percent         REAL,
    rps_per_replica     REAL,
    -- Seconds of recommendations a scale-down waits for (the highest wins).
    scale_down_window_s INTEGER NOT NULL CHECK (scale_down_window_s >= 0),
    -- Seconds of recommendations a scale-up waits for (the lowest wins).
    scale_up_window_s   INTEGER NOT NULL CHECK (scale_up_window_s >= 0),
    created_at          TEXT    NOT NULL,
    updated_at          TEXT    NOT NULL,
    CHECK ((cpu_percent IS NULL) <> (rps_per_replica IS NULL))
);
