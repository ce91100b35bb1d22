//! Ranked search over the catalog that works on Chinese: text is segmented into words with
//! jieba (search mode, which also emits the shorter words inside long ones, so 户籍人口 is found
//! by 人口), and each dataset's words are stored with a weight that depends on where they occur.
//! A query is segmented the same way and scored with BM25's term saturation and inverse document
//! frequency, so a word that every dataset has (信息, 数据) counts for little.

use std::collections::HashMap;
use std::sync::LazyLock;

use jieba_rs::Jieba;

use crate::model::{Dataset, Field};

static JIEBA: LazyLock<Jieba> = LazyLock::new(Jieba::new);

/// Where a word occurs, and how much that counts.
const TITLE: f64 = 3.0;
const NAME: f64 = 2.0;
const TAG: f64 = 2.0;
const TOPIC: f64 = 1.5;
const FIELD: f64 = 1.0;
const DESCRIPTION: f64 = 1.0;

/// BM25's saturation: the fifth occurrence of a word adds far less than the first.
const K1: f64 = 1.2;

/// Words too common to mean anything on their own.
const STOP_WORDS: &[&str] = &[
    "的", "和", "与", "及", "等", "或", "了", "在", "是", "对", "为", "以", "包括", "包含", "其",
    "the", "of", "and", "a", "an", "in", "on", "for", "to",
];

/// Folds full-width ASCII (ＡＢＣ１２３) to half-width and lowercases, so that the same word typed
/// either way matches.
pub fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The search words of a text: segmented, normalized, without punctuation and stop words.
pub fn terms(text: &str) -> Vec<String> {
    let text = normalize(text);
    JIEBA
        .cut_for_search(&text, true)
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().any(char::is_alphanumeric))
        .filter(|t| !STOP_WORDS.contains(t))
        .map(str::to_string)
        .collect()
}

/// The weighted words of a dataset's directory entry and fields, as stored in `search_terms`.
pub fn dataset_terms(dataset: &Dataset, fields: &[Field]) -> HashMap<String, f64> {
    let mut weights: HashMap<String, f64> = HashMap::new();
    let mut add = |text: &str, weight: f64| {
        for t in terms(text) {
            *weights.entry(t).or_default() += weight;
        }
    };
    add(&dataset.title, TITLE);
    add(&dataset.name.replace(['_', '-'], " "), NAME);
    add(&dataset.meta.identifier, NAME);
    add(&dataset.description, DESCRIPTION);
    add(&dataset.meta.topic, TOPIC);
    add(&dataset.meta.industry, TOPIC);
    for tag in &dataset.meta.tags {
        add(tag, TAG);
    }
    for f in fields {
        add(&f.name.replace(['_', '-'], " "), FIELD);
        add(&f.title, FIELD);
        add(&f.description, FIELD);
    }
    weights
}

/// The distinct words of a query, in the order typed.
pub fn query_terms(query: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in terms(query) {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// BM25 score of one dataset for a query. `postings` are the (term index, weight) pairs the
/// dataset has, `df[i]` how many datasets have term `i`, `n` how many datasets there are. The
/// sum is scaled by the share of query words matched, so a dataset matching every word of a
/// query ranks above one that matches a frequent word often.
pub fn score(postings: &[(usize, f64)], df: &[i64], n: i64) -> f64 {
    if df.is_empty() {
        return 0.0;
    }
    let n = n.max(1) as f64;
    let mut sum = 0.0;
    let mut matched = vec![false; df.len()];
    for &(i, w) in postings {
        let d = df[i] as f64;
        let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
        sum += idf * (w * (K1 + 1.0)) / (w + K1);
        matched[i] = true;
    }
    let coverage = matched.iter().filter(|m| **m).count() as f64 / df.len() as f64;
    sum * coverage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_chinese_and_folds_width() {
        let t = terms("全省户籍人口统计数据");
        assert!(t.contains(&"户籍".to_string()), "{t:?}");
        assert!(t.contains(&"人口".to_string()), "{t:?}");
        assert_eq!(terms("ＡＢＣ１２３"), vec!["abc123"]);
        assert!(terms("，。、；").is_empty());
        assert!(!terms("药店的名称").contains(&"的".to_string()));
    }

    #[test]
    fn query_words_are_distinct() {
        assert_eq!(query_terms("人口 人口"), vec!["人口"]);
    }

    #[test]
    fn rare_words_and_full_matches_rank_higher() {
        // term 0 is in 1 of 100 datasets, term 1 in 90.
        let df = [1, 90];
        let rare = score(&[(0, 1.0)], &df, 100);
        let common = score(&[(1, 1.0)], &df, 100);
        let both = score(&[(0, 1.0), (1, 1.0)], &df, 100);
        assert!(rare > common);
        assert!(both > rare);
        // saturation: ten occurrences are worth less than ten times one
        assert!(score(&[(0, 10.0)], &df, 100) < 10.0 * rare);
    }
}
