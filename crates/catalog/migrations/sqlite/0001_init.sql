-- Reservoir catalog, initial schema (SQLite).
-- Timestamps are RFC 3339 UTC text with microseconds ("2026-12-03T18:25:22.123456Z"),
-- so they sort as text and read the same on SQLite and PostgreSQL.

CREATE TABLE units (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    parent_id   TEXT REFERENCES units(id),
    description TEXT NOT NULL DEFAULT '',
    contact     TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE systems (
    unit_id     TEXT NOT NULL REFERENCES units(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (unit_id, id)
);

CREATE TABLE datasets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    layer            TEXT NOT NULL,
    unit_id          TEXT NOT NULL REFERENCES units(id),
    name             TEXT NOT NULL,
    title            TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    system_id        TEXT,
    location         TEXT NOT NULL,
    update_frequency TEXT NOT NULL DEFAULT 'irregular',
    sensitivity      INTEGER NOT NULL DEFAULT 2,
    open_tier        TEXT NOT NULL DEFAULT 'closed',
    row_count        BIGINT NOT NULL DEFAULT 0,
    table_version    BIGINT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    UNIQUE (layer, unit_id, name)
);
CREATE INDEX datasets_unit ON datasets (unit_id);

CREATE TABLE dataset_fields (
    dataset_id  BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    data_type   TEXT NOT NULL,
    nullable    INTEGER NOT NULL DEFAULT 1,
    title       TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    flags       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (dataset_id, name)
);

CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id         TEXT NOT NULL UNIQUE,
    dataset_id       BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    source           TEXT NOT NULL,
    mode             TEXT NOT NULL,
    status           TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    finished_at      TEXT,
    rows_read        BIGINT NOT NULL DEFAULT 0,
    rows_loaded      BIGINT NOT NULL DEFAULT 0,
    rows_quarantined BIGINT NOT NULL DEFAULT 0,
    rows_padded      BIGINT NOT NULL DEFAULT 0,
    rows_flagged     BIGINT NOT NULL DEFAULT 0,
    lines_skipped    BIGINT NOT NULL DEFAULT 0,
    bytes_read       BIGINT NOT NULL DEFAULT 0,
    table_version    BIGINT,
    error            TEXT,
    details          TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX runs_dataset ON runs (dataset_id, started_at);

CREATE TABLE column_profiles (
    run_id         BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    dataset_id     BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    position       INTEGER NOT NULL,
    column_name    TEXT NOT NULL,
    data_type      TEXT NOT NULL,
    row_count      BIGINT NOT NULL,
    null_count     BIGINT NOT NULL,
    distinct_count BIGINT NOT NULL,
    min_value      TEXT,
    max_value      TEXT,
    top_values     TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, column_name)
);
CREATE INDEX column_profiles_dataset ON column_profiles (dataset_id, run_id);
