use std::path::PathBuf;

/// Errors that stop a collection run. Problems with single rows never do: those rows go to
/// quarantine with a reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path}: declared encoding {declared} does not fit this file: {problem}; the content looks like {detected}. \
         Pass --encoding {detected_label} (or fix the source definition), or --force-encoding to load it anyway"
    )]
    EncodingMismatch {
        path: PathBuf,
        declared: String,
        detected: String,
        detected_label: String,
        problem: String,
    },

    #[error("{path}: unknown encoding {label:?}; use e.g. utf-8, gbk, gb18030, utf-16le")]
    UnknownEncoding { path: PathBuf, label: String },

    #[error(
        "{path}: cannot tell the file format from the name; pass --format csv|tsv|xlsx|xls|json|ndjson"
    )]
    UnknownFormat { path: PathBuf },

    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },

    #[error("{path}: the file has no header row (it is empty or only has preamble lines)")]
    NoHeader { path: PathBuf },

    #[error("{path}: sheet {sheet:?} not found; the workbook has: {available}")]
    SheetNotFound {
        path: PathBuf,
        sheet: String,
        available: String,
    },

    #[error(
        "{path}: columns {columns:?} are not in {table}; its columns are {existing:?}. \
         Collect with --mode overwrite to replace the table, or map the columns in a source definition"
    )]
    UnknownColumns {
        path: PathBuf,
        table: String,
        columns: Vec<String>,
        existing: Vec<String>,
    },

    #[error(
        "column {column:?}: declared type {declared} conflicts with {table}, where it is {existing}"
    )]
    TypeConflict {
        table: String,
        column: String,
        declared: String,
        existing: String,
    },

    #[error(
        "column {column:?} is declared but the input has no such column; input columns are {available:?}"
    )]
    UnknownDeclaredColumn {
        column: String,
        available: Vec<String>,
    },

    #[error("source definition {path}: {message}")]
    Source { path: PathBuf, message: String },

    #[error("invalid option: {0}")]
    Invalid(String),

    #[error("database {name}: {message}")]
    Database { name: String, message: String },

    #[error("message stream {name}: {message}")]
    Stream { name: String, message: String },

    #[error("{table}: the source's columns no longer match the table: {message}")]
    SchemaDrift { table: String, message: String },

    #[error(transparent)]
    Lake(#[from] reservoir_lake::Error),

    #[error(transparent)]
    Catalog(#[from] reservoir_catalog::Error),

    #[error(transparent)]
    Quality(#[from] reservoir_quality::Error),

    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    #[error("collection task failed: {0}")]
    Task(String),
}

/// Result alias for ingestion.
pub type Result<T, E = Error> = std::result::Result<T, E>;
