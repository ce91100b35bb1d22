//! HTTP JSON APIs: page through an endpoint and load its records through the file pipeline.
//!
//! ```text
//!  GET url?page=1… ──► records at `records` path ──► staged NDJSON (disk, bounded memory)
//!  (auth header from      of each response              ──► the same pipeline as files:
//!   the environment)                                        inference, quarantine, accounting,
//!                                                           one Delta commit
//! ```
//!
//! Pagination by page number, by offset, or by a cursor the response carries; the walk ends on
//! a short or empty page, or when no next cursor comes back. Every record of every page is
//! written to a staging file first, so that the load is one commit of the whole snapshot (a
//! failed page loads nothing) and rows read always equal the records fetched. Failed requests
//! (connection errors, 429 and 5xx) are retried with backoff; other statuses fail the run with
//! the status and the start of the body.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use reservoir_lake::WriteMode;
use serde_json::Value as Json;

use crate::collect::{CollectRequest, ColumnSpec, DatasetInfo, RunReport};
use crate::reader::Format;
use crate::{Collector, Error, Progress, Result};

/// How an API splits its records into pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// One request returns everything.
    None,
    /// `?{param}=start, start+1, …` with `?{size_param}=size`.
    Page {
        param: String,
        size_param: Option<String>,
        size: usize,
        start: usize,
    },
    /// `?{param}=0, limit, 2·limit, …` with `?{limit_param}=limit`.
    Offset {
        param: String,
        limit_param: String,
        limit: usize,
    },
    /// `?{param}=<the value at `next` in the previous response>`, until it is absent or empty.
    Cursor { param: String, next: String },
}

/// An HTTP JSON endpoint to collect.
#[derive(Clone)]
pub struct HttpSource {
    pub url: String,
    /// Request headers, e.g. `Authorization`; values are secrets and never shown.
    pub headers: Vec<(String, String)>,
    /// Dot path to the array of records in each response (`data.list`); the response itself
    /// when empty.
    pub records: String,
    pub pagination: Pagination,
    /// Stop with an error beyond this many pages (a guard against endless cursors).
    pub max_pages: usize,
    pub timeout: Duration,
    /// Attempts per request for connection errors, 429 and 5xx.
    pub attempts: u32,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &crate::db::redact_url(&self.url))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("records", &self.records)
            .field("pagination", &self.pagination)
            .finish()
    }
}

/// What to collect from an API into `raw.<unit>.<dataset>`.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub unit: String,
    pub dataset: String,
    pub source: HttpSource,
    /// overwrite (a snapshot, the default) or append.
    pub mode: WriteMode,
    pub columns: Vec<ColumnSpec>,
    pub info: DatasetInfo,
    pub source_label: String,
    pub infer_rows: usize,
    pub batch_rows: usize,
}

fn http_error(url: &str, message: String) -> Error {
    Error::Stream {
        name: crate::db::redact_url(url),
        message,
    }
}

/// The value at a dot path (`data.list`, `result.0.items`); the value itself for "".
fn at_path<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    if path.is_empty() {
        return Some(v);
    }
    path.split('.').try_fold(v, |v, part| match v {
        Json::Object(m) => m.get(part),
        Json::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

impl Collector {
    /// Pages through an API and loads all its records in one run (one commit).
    pub async fn collect_http(
        &self,
        req: HttpRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<RunReport> {
        let src = &req.source;
        let shown = crate::db::redact_url(&src.url);
        let mut staged = tempfile::Builder::new()
            .prefix("reservoir-http-")
            .suffix(".ndjson")
            .tempfile()
            .map_err(|source| Error::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let (records, pages) = fetch_all(src, staged.as_file_mut()).await?;
        staged.as_file_mut().flush().map_err(|source| Error::Io {
            path: staged.path().to_path_buf(),
            source,
        })?;
        let collect = CollectRequest {
            unit: req.unit.clone(),
            dataset: req.dataset.clone(),
            files: vec![staged.path().to_path_buf()],
            source_names: Some(vec![shown.clone()]),
            mode: req.mode,
            format: Some(Format::Ndjson),
            columns: req.columns.clone(),
            info: req.info.clone(),
            infer_rows: req.infer_rows,
            batch_rows: req.batch_rows,
            source_label: if req.source_label.is_empty() {
                format!("GET {shown}")
            } else {
                req.source_label.clone()
            },
            system_kind: "api".into(),
            ..CollectRequest::default()
        };
        let mut report = self.collect(collect, progress).await?;
        if let Some(f) = report.files.first_mut() {
            f.path = shown;
        }
        report
            .notes
            .push(format!("fetched {records} records in {pages} pages"));
        if report.counts.rows_read != records as i64 {
            return Err(Error::Invalid(format!(
                "fetched {records} records but the load read {} rows",
                report.counts.rows_read
            )));
        }
        Ok(report)
    }
}

/// Walks the pages, writing each record as one NDJSON line. Returns (records, pages).
async fn fetch_all(src: &HttpSource, out: &mut std::fs::File) -> Result<(u64, u64)> {
    let client = reqwest::Client::builder()
        .timeout(src.timeout)
        .user_agent(concat!("reservoir/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| http_error(&src.url, format!("cannot build an HTTP client: {e}")))?;
    let mut records = 0u64;
    let mut pages = 0u64;
    let mut cursor: Option<String> = None;
    let mut seen_cursors = std::collections::HashSet::new();
    loop {
        if pages as usize >= src.max_pages {
            return Err(http_error(
                &src.url,
                format!(
                    "more than {} pages; raise max_pages if the API really is that long",
                    src.max_pages
                ),
            ));
        }
        let mut url = url::Url::parse(&src.url)
            .map_err(|e| http_error(&src.url, format!("not a URL: {e}")))?;
        let page_size = match &src.pagination {
            Pagination::None => None,
            Pagination::Page {
                param,
                size_param,
                size,
                start,
            } => {
                url.query_pairs_mut()
                    .append_pair(param, &(start + pages as usize).to_string());
                if let Some(sp) = size_param {
                    url.query_pairs_mut().append_pair(sp, &size.to_string());
                }
                Some(*size)
            }
            Pagination::Offset {
                param,
                limit_param,
                limit,
            } => {
                url.query_pairs_mut()
                    .append_pair(param, &(records as usize).to_string())
                    .append_pair(limit_param, &limit.to_string());
                Some(*limit)
            }
            Pagination::Cursor { param, .. } => {
                if let Some(c) = &cursor {
                    url.query_pairs_mut().append_pair(param, c);
                }
                None
            }
        };
        let body = get_json(&client, src, url.as_str(), pages + 1).await?;
        pages += 1;
        let list = at_path(&body, &src.records).ok_or_else(|| {
            http_error(
                &src.url,
                format!(
                    "page {pages}: no {:?} in the response (its keys: {})",
                    src.records,
                    keys_of(&body)
                ),
            )
        })?;
        let list = match list {
            Json::Array(a) => a.as_slice(),
            Json::Null => &[],
            other => {
                return Err(http_error(
                    &src.url,
                    format!(
                        "page {pages}: {:?} is not an array of records but {}",
                        src.records,
                        kind(other)
                    ),
                ));
            }
        };
        for r in list {
            serde_json::to_writer(&mut *out, r)
                .and_then(|()| out.write_all(b"\n").map_err(serde_json::Error::io))
                .map_err(|e| http_error(&src.url, format!("cannot stage records: {e}")))?;
        }
        records += list.len() as u64;
        let more = match &src.pagination {
            Pagination::None => false,
            Pagination::Page { .. } | Pagination::Offset { .. } => {
                page_size.is_some_and(|n| list.len() >= n && !list.is_empty())
            }
            Pagination::Cursor { next, .. } => match at_path(&body, next) {
                Some(Json::String(s)) if !s.is_empty() => {
                    if !seen_cursors.insert(s.clone()) {
                        return Err(http_error(
                            &src.url,
                            format!("page {pages}: the API returned cursor {s:?} again"),
                        ));
                    }
                    cursor = Some(s.clone());
                    true
                }
                Some(Json::Number(n)) => {
                    cursor = Some(n.to_string());
                    seen_cursors.insert(n.to_string())
                }
                _ => false,
            },
        };
        if !more {
            return Ok((records, pages));
        }
    }
}

async fn get_json(
    client: &reqwest::Client,
    src: &HttpSource,
    url: &str,
    page: u64,
) -> Result<Json> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut request = client.get(url);
        for (k, v) in &src.headers {
            request = request.header(k, v);
        }
        let retry = |what: String| -> Option<String> { (attempt < src.attempts).then_some(what) };
        let outcome = match request.send().await {
            Ok(resp) if resp.status().is_success() => {
                let bytes = resp.bytes().await.map_err(|e| {
                    http_error(url, format!("page {page}: reading the body failed: {e}"))
                })?;
                return serde_json::from_slice(&bytes).map_err(|e| {
                    http_error(
                        url,
                        format!(
                            "page {page}: the response is not JSON ({e}); it starts with {:?}",
                            String::from_utf8_lossy(&bytes[..bytes.len().min(120)])
                        ),
                    )
                });
            }
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                let message = format!(
                    "page {page}: HTTP {status}: {}",
                    body.chars().take(200).collect::<String>()
                );
                if status.as_u16() == 429 || status.is_server_error() {
                    retry(message.clone()).ok_or(message)
                } else {
                    Err(message)
                }
            }
            Err(e) => {
                let message = format!("page {page}: request failed: {e}");
                retry(message.clone()).ok_or(message)
            }
        };
        match outcome {
            Ok(why) => {
                let wait = Duration::from_millis(250 * 2u64.pow(attempt.min(6)));
                tracing::warn!(url = %crate::db::redact_url(url), attempt, ?wait, "{why}; retrying");
                tokio::time::sleep(wait).await;
            }
            Err(message) => {
                let attempts = if attempt > 1 {
                    format!(" (after {attempt} attempts)")
                } else {
                    String::new()
                };
                return Err(http_error(url, format!("{message}{attempts}")));
            }
        }
    }
}

fn keys_of(v: &Json) -> String {
    match v {
        Json::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
        other => format!("none, it is {}", kind(other)),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_paths() {
        let v = serde_json::json!({"data": {"list": [1, 2]}, "rows": [{"a": 1}]});
        assert_eq!(at_path(&v, "data.list"), Some(&serde_json::json!([1, 2])));
        assert_eq!(at_path(&v, "rows.0.a"), Some(&serde_json::json!(1)));
        assert_eq!(at_path(&v, ""), Some(&v));
        assert_eq!(at_path(&v, "data.nope"), None);
    }
}
