-- The data resource directory (资源目录): what a catalog entry says about a dataset beyond its
-- table — the identifier it has in the unit's own catalog, topic, industry, tags, formats,
-- contact, when the unit published and last updated it, and the volume it declares. A dataset
-- in the `catalog` layer is cataloged but not collected: it has no lake table yet.
-- search_terms holds the segmented words of each dataset's text for ranked search, and
-- catalog_imports records every import of a catalog spreadsheet with what it did.

ALTER TABLE datasets ADD COLUMN identifier TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN topic TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN industry TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN tags TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN formats TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN contact TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN published_at TEXT;
ALTER TABLE datasets ADD COLUMN source_updated_at TEXT;
ALTER TABLE datasets ADD COLUMN declared_rows BIGINT;

CREATE TABLE search_terms (
    dataset_id BIGINT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    term       TEXT NOT NULL,
    weight     DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (dataset_id, term)
);
CREATE INDEX search_terms_term ON search_terms (term);

CREATE TABLE catalog_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    parent_unit TEXT,
    rows_read   BIGINT NOT NULL,
    entries     BIGINT NOT NULL,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    repeated    BIGINT NOT NULL,
    rejected    BIGINT NOT NULL,
    report      TEXT NOT NULL,
    imported_at TEXT NOT NULL
);
