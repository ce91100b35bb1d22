-- Personal data found in a dataset's fields: what a scan suggested (the kind, the share of
-- sampled values that looked like it) and what a steward decided (confirmed or rejected). Kept
-- apart from dataset_fields, which a new schema rewrites; a decision survives rescans.

CREATE TABLE field_pii (
    dataset_id  BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    field       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    share       DOUBLE PRECISION NOT NULL,
    sampled     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (dataset_id, field)
);
