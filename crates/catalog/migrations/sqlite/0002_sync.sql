-- Live collection: rows removed because the source deleted them, which process owns a running
-- run (so that a crashed run can be told from a live one), schema-drift events, and the files a
-- drop folder has already delivered (by content hash, so each is loaded once), and the signed
-- delivery receipt of every run.

ALTER TABLE runs ADD COLUMN rows_deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';

CREATE TABLE drift_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id  BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    run_id      BIGINT REFERENCES runs(id) ON DELETE SET NULL,
    column_name TEXT NOT NULL,
    change      TEXT NOT NULL,
    old_type    TEXT,
    new_type    TEXT,
    action      TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX drift_events_dataset ON drift_events (dataset_id, at);

CREATE TABLE delivered_files (
    dataset_id   BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    sha256       TEXT NOT NULL,
    path         TEXT NOT NULL,
    size         BIGINT NOT NULL,
    run_id       BIGINT REFERENCES runs(id) ON DELETE SET NULL,
    delivered_at TEXT NOT NULL,
    PRIMARY KEY (dataset_id, sha256)
);

CREATE TABLE receipts (
    run_id     BIGINT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    data_sha256 TEXT NOT NULL,
    body       TEXT NOT NULL,
    issued_at  TEXT NOT NULL
);

-- Alerts about collection: a source whose scheduled run failed (after its retries), or whose
-- dataset is late against its declared update frequency. Open until resolved.
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,
    source      TEXT NOT NULL,
    dataset     TEXT NOT NULL,
    message     TEXT NOT NULL,
    raised_at   TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX alerts_open ON alerts (source, kind, resolved_at);
