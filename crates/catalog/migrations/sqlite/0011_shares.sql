-- The masked snapshot each grant shares through Delta Sharing: which version of the source it
-- was made from, under which columns, masks and row filter (a fingerprint), and its own version.

CREATE TABLE share_snapshots (
    grant_id        BIGINT PRIMARY KEY REFERENCES grants(id) ON DELETE CASCADE,
    source_version  BIGINT NOT NULL,
    fingerprint     TEXT NOT NULL,
    table_version   BIGINT NOT NULL,
    row_count       BIGINT NOT NULL,
    made_at         TEXT NOT NULL
);
