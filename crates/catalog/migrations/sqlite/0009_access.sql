-- Who may see what: accounts, login sessions, API tokens, data requests and the grants that
-- approving them provisions, the hash-chained audit log, and usage metering.
-- Secrets (passwords, session ids, token secrets) are stored only as hashes.

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL DEFAULT '',
    role           TEXT NOT NULL,
    unit_id        TEXT REFERENCES units(id),
    password_hash  TEXT NOT NULL,
    must_change    INTEGER NOT NULL DEFAULT 0,
    disabled       INTEGER NOT NULL DEFAULT 0,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   TEXT,
    last_login_at  TEXT,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE sessions (
    id_hash     TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf        TEXT NOT NULL,
    client      TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE access_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    requester     TEXT NOT NULL REFERENCES users(id),
    dataset_id    BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    columns       TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    period_start  TEXT NOT NULL,
    period_end    TEXT NOT NULL,
    volume        BIGINT,
    status        TEXT NOT NULL,
    decided_by    TEXT,
    decided_at    TEXT,
    reason        TEXT NOT NULL DEFAULT '',
    grant_id      BIGINT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX access_requests_dataset ON access_requests (dataset_id, status);
CREATE INDEX access_requests_requester ON access_requests (requester);

CREATE TABLE grants (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          TEXT NOT NULL REFERENCES users(id),
    dataset_id       BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    columns          TEXT NOT NULL,
    row_filter       TEXT,
    purpose          TEXT NOT NULL,
    request_id       BIGINT,
    starts_at        TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    hours            TEXT,
    rate_per_minute  INTEGER,
    row_quota        BIGINT,
    rows_served      BIGINT NOT NULL DEFAULT 0,
    created_by       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    revoked_at       TEXT,
    revoked_by       TEXT
);
CREATE INDEX grants_user ON grants (user_id);
CREATE INDEX grants_dataset ON grants (dataset_id);

CREATE TABLE api_tokens (
    id            TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    grant_id      BIGINT REFERENCES grants(id),
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    revoked_at    TEXT,
    last_used_at  TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

-- Append-only, hash-chained: hash = SHA-256(prev_hash, seq, and every other column).
-- seq is assigned by the writer as the last seq + 1, so a gap shows a deleted entry.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    columns    TEXT NOT NULL DEFAULT '',
    row_count  BIGINT,
    grant_id   BIGINT,
    purpose    TEXT NOT NULL DEFAULT '',
    client     TEXT NOT NULL DEFAULT '',
    outcome    TEXT NOT NULL,
    detail     TEXT NOT NULL DEFAULT '',
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_actor ON audit_log (actor, at);

-- Rows and bytes served per principal, dataset and day (UTC).
CREATE TABLE usage_daily (
    day         TEXT NOT NULL,
    principal   TEXT NOT NULL,
    dataset_id  BIGINT NOT NULL,
    requests    BIGINT NOT NULL DEFAULT 0,
    rows_served BIGINT NOT NULL DEFAULT 0,
    bytes_served BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, principal, dataset_id)
);
