-- Open data: every publication of a dataset's open snapshot (the update history the portal
-- shows), and how often the public viewed and downloaded each open dataset.

CREATE TABLE open_publications (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id      BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    source_version  BIGINT,
    version         BIGINT NOT NULL,
    row_count       BIGINT NOT NULL,
    masked          TEXT NOT NULL DEFAULT '',
    published_by    TEXT NOT NULL,
    published_at    TEXT NOT NULL
);
CREATE INDEX open_publications_dataset ON open_publications (dataset_id, published_at);

CREATE TABLE open_counts (
    dataset_id  BIGINT PRIMARY KEY REFERENCES datasets(id) ON DELETE CASCADE,
    views       BIGINT NOT NULL DEFAULT 0,
    downloads   BIGINT NOT NULL DEFAULT 0,
    api_calls   BIGINT NOT NULL DEFAULT 0
);
