-- Data-element standards (数据元) and the business glossary (业务术语). A data element says
-- what a field must be: its type, its length, its format, the code table its values come
-- from. A dataset's field can be bound to one, and an `element` rule checks the values.

CREATE TABLE data_elements (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    english_name TEXT NOT NULL DEFAULT '',
    data_type    TEXT NOT NULL,
    max_length   INTEGER,
    format       TEXT NOT NULL DEFAULT '',
    code_table   TEXT REFERENCES code_tables(id),
    description  TEXT NOT NULL DEFAULT '',
    standard     TEXT NOT NULL DEFAULT '',
    updated_at   TEXT NOT NULL
);

CREATE TABLE field_elements (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    field      TEXT NOT NULL,
    element_id TEXT NOT NULL REFERENCES data_elements(id) ON DELETE CASCADE,
    PRIMARY KEY (dataset_id, field)
);

CREATE TABLE glossary (
    term        TEXT PRIMARY KEY,
    definition  TEXT NOT NULL,
    synonyms    TEXT NOT NULL DEFAULT '[]',
    elements    TEXT NOT NULL DEFAULT '[]',
    updated_at  TEXT NOT NULL
);
