-- People from outside the government units (companies, researchers, citizens) who registered on
-- the open-data portal to apply for a conditionally open dataset: a consumer account without a
-- unit, and who it says it is, for the steward who decides.

CREATE TABLE applicants (
    user_id       TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    organization  TEXT NOT NULL,
    credit_code   TEXT,
    contact       TEXT NOT NULL,
    client        TEXT NOT NULL,
    registered_at TEXT NOT NULL
);
