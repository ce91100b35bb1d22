-- Quality check runs: which table version was checked, how many rows, the scores per dimension
-- and each rule's counts with a few example failures (JSON). Every failing row itself is in
-- the lake's quality layer, tagged with check_run.

CREATE TABLE check_runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    check_run        TEXT NOT NULL UNIQUE,
    dataset_id       BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    table_version    BIGINT NOT NULL,
    rows_checked     BIGINT NOT NULL,
    rows_failed      BIGINT NOT NULL,
    scores           TEXT NOT NULL,
    results          TEXT NOT NULL,
    failures_version BIGINT,
    started_at       TEXT NOT NULL,
    finished_at      TEXT NOT NULL
);
CREATE INDEX check_runs_dataset ON check_runs (dataset_id, finished_at);
