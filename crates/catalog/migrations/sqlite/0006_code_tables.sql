-- Code tables (代码表): the values a coded field may take, with their labels and, for codes
-- that were retired or reused (GB/T 2260 divisions), the years they were valid. Built-in tables
-- (GB/T 2260, GB/T 2261.1) are loaded by Reservoir; users add their own. A dataset's field can
-- be bound to one.

CREATE TABLE code_tables (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    standard    TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    builtin     INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL
);

CREATE TABLE code_values (
    table_id   TEXT NOT NULL REFERENCES code_tables(id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    code       TEXT NOT NULL,
    label      TEXT NOT NULL,
    valid_from INTEGER,
    valid_to   INTEGER,
    PRIMARY KEY (table_id, position)
);
CREATE INDEX code_values_code ON code_values (table_id, code);

CREATE TABLE field_codes (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    field      TEXT NOT NULL,
    table_id   TEXT NOT NULL REFERENCES code_tables(id) ON DELETE CASCADE,
    PRIMARY KEY (dataset_id, field)
);
