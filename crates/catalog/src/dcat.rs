//! The catalog as DCAT-AP 3 (W3C Data Catalog Vocabulary 3 with the EU application profile's
//! controlled vocabularies), one RDF graph serialized as Turtle or JSON-LD.
//!
//! Every dataset is a `dcat:Dataset` with its title and description in Chinese, its publishing
//! unit as a `foaf:Organization` typed from the EU corporate-body-classification vocabulary, its
//! keywords, a theme from the catalog's own topic scheme (and, where the topic maps to one, the EU
//! data theme), update frequency and access rights from the EU vocabularies, dates, contact point,
//! coverage, and its distributions. The caller chooses the distributions: the open-data portal
//! lists its real download links; a directory export lists the formats the units declared.

use std::collections::HashSet;

pub use oxrdf::Triple;
use oxrdf::vocab::{rdf, xsd};
use oxrdf::{BlankNode, Literal, NamedNode, NamedOrBlankNode, Term};

use crate::model::{Dataset, OpenTier, Unit, UpdateFrequency};

const DCAT: &str = "http://www.w3.org/ns/dcat#";
const DCT: &str = "http://purl.org/dc/terms/";
const DCATAP: &str = "http://data.europa.eu/r5r/";
const FOAF: &str = "http://xmlns.com/foaf/0.1/";
const SKOS: &str = "http://www.w3.org/2004/02/skos/core#";
const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
const EU: &str = "http://publications.europa.eu/resource/authority/";

/// The prefixes both serializations declare.
pub const PREFIXES: [(&str, &str); 13] = [
    ("dcat", DCAT),
    ("dct", DCT),
    ("dcatap", DCATAP),
    ("foaf", FOAF),
    ("skos", SKOS),
    ("vcard", VCARD),
    ("xsd", "http://www.w3.org/2001/XMLSchema#"),
    (
        "freq",
        "http://publications.europa.eu/resource/authority/frequency/",
    ),
    (
        "access",
        "http://publications.europa.eu/resource/authority/access-right/",
    ),
    (
        "filetype",
        "http://publications.europa.eu/resource/authority/file-type/",
    ),
    (
        "lang",
        "http://publications.europa.eu/resource/authority/language/",
    ),
    (
        "theme",
        "http://publications.europa.eu/resource/authority/data-theme/",
    ),
    (
        "corporate",
        "http://publications.europa.eu/resource/authority/corporate-body-classification/",
    ),
];

/// The licence of open data when the platform names none: CC BY 4.0, the licence most open-data
/// portals default to (attribution required, any use allowed).
pub const DEFAULT_LICENSE: &str = "https://creativecommons.org/licenses/by/4.0/";

/// One way to get a dataset: a download, an API, or a page to apply from.
#[derive(Debug, Clone)]
pub struct Distribution {
    /// Short format name: csv, json, xlsx, parquet, xml, pdf, api, html.
    pub format: String,
    pub title: String,
    pub description: String,
    pub access_url: String,
    /// A direct link to the file, when there is one.
    pub download_url: Option<String>,
}

/// What the catalog says about itself.
#[derive(Debug, Clone)]
pub struct CatalogInfo<'a> {
    pub title: &'a str,
    pub description: &'a str,
    /// Where the catalog lives, e.g. `https://data.example.gov.cn` (no trailing slash needed).
    pub base_url: &'a str,
    /// The catalog's home page (the portal).
    pub homepage: String,
    /// The licence of the open datasets.
    pub license: &'a str,
    /// The administrative division the data covers (GB/T 2260 code and name), if configured.
    pub spatial: Option<(&'a str, &'a str)>,
    /// Who publishes the catalog: the organization running the platform (e.g. 松江区大数据中心).
    pub publisher: &'a str,
}

/// The EU frequency vocabulary that DCAT-AP uses for `dct:accrualPeriodicity`.
fn frequency(f: UpdateFrequency) -> &'static str {
    match f {
        UpdateFrequency::Realtime => "UPDATE_CONT",
        UpdateFrequency::Hourly => "HOURLY",
        UpdateFrequency::Daily => "DAILY",
        UpdateFrequency::Weekly => "WEEKLY",
        UpdateFrequency::Monthly => "MONTHLY",
        UpdateFrequency::Quarterly => "QUARTERLY",
        UpdateFrequency::Yearly => "ANNUAL",
        UpdateFrequency::Irregular => "IRREG",
    }
}

/// The EU access-right vocabulary: 无条件开放 is public, 有条件开放 restricted, 非开放 non-public.
fn access_rights(t: OpenTier) -> &'static str {
    match t {
        OpenTier::Open => "PUBLIC",
        OpenTier::Conditional => "RESTRICTED",
        OpenTier::Closed => "NON_PUBLIC",
    }
}

/// The EU file-type code and IANA media type of a format name, where one is known.
fn file_type(format: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match format.to_ascii_lowercase().as_str() {
        "csv" => ("CSV", Some("text/csv")),
        "json" => ("JSON", Some("application/json")),
        "xlsx" => (
            "XLSX",
            Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ),
        "xls" => ("XLS", Some("application/vnd.ms-excel")),
        "xml" => ("XML", Some("application/xml")),
        "parquet" => ("PARQUET", Some("application/vnd.apache.parquet")),
        "pdf" => ("PDF", Some("application/pdf")),
        "html" => ("HTML", Some("text/html")),
        "api" => ("REST", None),
        _ => return None,
    })
}

/// The EU data theme a Chinese topic belongs to, by the words it contains. Topics outside these
/// stay in the catalog's own scheme only.
fn eu_theme(topic: &str) -> Option<&'static str> {
    const THEMES: [(&str, &[&str]); 13] = [
        ("HEAL", &["卫生", "健康", "医疗", "医药", "疫苗", "疾病"]),
        ("EDUC", &["教育", "文化", "体育", "旅游", "学校"]),
        ("TRAN", &["交通", "运输", "道路", "公交"]),
        (
            "ECON",
            &["经济", "财政", "金融", "税", "商贸", "企业", "市场", "统计"],
        ),
        ("ENVI", &["环境", "生态", "气象", "水务", "资源"]),
        ("AGRI", &["农业", "农村", "林业", "渔业", "畜牧"]),
        ("ENER", &["能源", "电力", "燃气"]),
        ("TECH", &["科技", "信息", "通信"]),
        ("JUST", &["司法", "公安", "法律", "安全", "应急"]),
        ("REGI", &["城乡", "建设", "规划", "住房", "地理", "区划"]),
        ("GOVE", &["政府", "机构", "政务", "人事"]),
        ("INTR", &["国际", "外事"]),
        (
            "SOCI",
            &[
                "社会", "民政", "人口", "社保", "就业", "劳动", "养老", "社区",
            ],
        ),
    ];
    THEMES
        .iter()
        .find(|(_, words)| words.iter().any(|w| topic.contains(w)))
        .map(|(code, _)| *code)
}

/// A path segment of an IRI: characters IRIs allow stay, others are percent-encoded.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if (c.is_alphanumeric() && !c.is_ascii()) || c.is_ascii_alphanumeric() || "-._~".contains(c)
        {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// A timestamp as an `xsd:dateTime`/`xsd:date` literal, when it is one.
fn date_literal(text: &str) -> Option<Literal> {
    let t = text.trim();
    if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(Literal::new_typed_literal(ts.to_rfc3339(), xsd::DATE_TIME));
    }
    for f in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(ts) = chrono::NaiveDateTime::parse_from_str(t, f) {
            return Some(Literal::new_typed_literal(
                ts.format("%Y-%m-%dT%H:%M:%S").to_string(),
                xsd::DATE_TIME,
            ));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(Literal::new_typed_literal(d.to_string(), xsd::DATE));
    }
    None
}

/// Triples in the order they were added (subjects stay together), without repeats; the types
/// of the vocabulary terms used come last, so that each subject's triples stay in one block.
#[derive(Default)]
struct Graph {
    triples: Vec<Triple>,
    pending: Vec<Triple>,
    vocabulary: Vec<Triple>,
    seen: HashSet<Triple>,
}

fn iri(s: impl Into<String>) -> NamedNode {
    let s = s.into();
    // Every IRI here is built from a base URL the caller checked and encoded segments.
    NamedNode::new(s.clone()).unwrap_or_else(|_| NamedNode::new_unchecked(s))
}

fn term(ns: &str, local: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{ns}{local}"))
}

fn zh(text: &str) -> Literal {
    Literal::new_language_tagged_literal_unchecked(text, "zh")
}

impl Graph {
    fn add(&mut self, s: impl Into<NamedOrBlankNode>, p: NamedNode, o: impl Into<Term>) {
        let t = Triple::new(s, p, o);
        if self.seen.insert(t.clone()) {
            self.triples.push(t);
        }
    }

    fn typed(&mut self, s: &NamedNode, class: NamedNode) {
        self.add(s.clone(), rdf::TYPE.into_owned(), class);
    }

    /// Types a vocabulary term the graph points at (a frequency, a file type, a licence…).
    fn term_type(&mut self, s: &NamedNode, class: NamedNode) {
        let t = Triple::new(s.clone(), rdf::TYPE.into_owned(), class);
        if self.seen.insert(t.clone()) {
            self.vocabulary.push(t);
        }
    }

    /// A triple about something the current subject points at, written after the subject's own.
    fn later(&mut self, s: impl Into<NamedOrBlankNode>, p: NamedNode, o: impl Into<Term>) {
        let t = Triple::new(s, p, o);
        if self.seen.insert(t.clone()) {
            self.pending.push(t);
        }
    }

    /// Writes the triples kept for later.
    fn flush(&mut self) {
        self.triples.append(&mut self.pending);
    }

    fn finish(mut self) -> Vec<Triple> {
        self.flush();
        self.triples.append(&mut self.vocabulary);
        self.triples
    }
}

/// How a dataset is reached: its landing page and its distributions.
#[derive(Debug, Clone)]
pub struct Access {
    pub landing_page: String,
    pub distributions: Vec<Distribution>,
}

/// The catalog of `datasets` (with their units) as RDF triples; `access` says where each
/// dataset's page is and how it can be had.
pub fn catalog_triples(
    info: &CatalogInfo<'_>,
    units: &[Unit],
    datasets: &[Dataset],
    access: impl Fn(&Dataset) -> Access,
) -> Vec<Triple> {
    let base = info.base_url.trim_end_matches('/');
    let mut g = Graph::default();
    let catalog = iri(format!("{base}/catalog"));
    let themes = iri(format!("{base}/themes"));
    let eu_themes = iri(format!("{EU}data-theme"));
    let license = iri(info.license);
    let org = |unit_id: &str| iri(format!("{base}/units/{}", segment(unit_id)));
    let dataset_iri = |d: &Dataset| {
        iri(format!(
            "{base}/datasets/{}/{}/{}",
            segment(&d.layer),
            segment(&d.unit_id),
            segment(&d.name)
        ))
    };
    let spatial = info
        .spatial
        .map(|(code, _)| iri(format!("{base}/divisions/{}", segment(code))));

    // The catalog.
    g.typed(&catalog, term(DCAT, "Catalog"));
    g.add(catalog.clone(), term(DCT, "title"), zh(info.title));
    g.add(
        catalog.clone(),
        term(DCT, "description"),
        zh(info.description),
    );
    g.add(
        catalog.clone(),
        term(FOAF, "homepage"),
        iri(info.homepage.clone()),
    );
    g.add(
        catalog.clone(),
        term(DCT, "language"),
        term(&format!("{EU}language/"), "ZHO"),
    );
    g.add(catalog.clone(), term(DCT, "license"), license.clone());
    g.add(catalog.clone(), term(DCAT, "themeTaxonomy"), themes.clone());
    g.add(
        catalog.clone(),
        term(DCAT, "themeTaxonomy"),
        eu_themes.clone(),
    );
    if let Some(s) = &spatial {
        g.add(catalog.clone(), term(DCT, "spatial"), s.clone());
    }
    // The catalog's publisher is the platform's operator, not any one of the units in it.
    let publisher = iri(format!("{base}/publisher"));
    g.add(catalog.clone(), term(DCT, "publisher"), publisher.clone());
    g.typed(&publisher, term(FOAF, "Organization"));
    g.typed(&publisher, term(FOAF, "Agent"));
    g.add(publisher.clone(), term(FOAF, "name"), zh(info.publisher));
    g.add(
        publisher,
        term(DCT, "type"),
        term(&format!("{EU}corporate-body-classification/"), "AGENCY"),
    );
    let issued = |d: &Dataset| d.meta.published_at.as_deref().and_then(date_literal);
    let modified = |d: &Dataset| {
        d.meta
            .source_updated_at
            .as_deref()
            .and_then(date_literal)
            .or_else(|| date_literal(&d.updated_at))
    };
    if let Some(first) = datasets
        .iter()
        .filter_map(|d| issued(d).or_else(|| date_literal(&d.created_at)))
        .min_by(|a, b| a.value().cmp(b.value()))
    {
        g.add(catalog.clone(), term(DCT, "issued"), first);
    }
    if let Some(last) = datasets
        .iter()
        .filter_map(modified)
        .max_by(|a, b| a.value().cmp(b.value()))
    {
        g.add(catalog.clone(), term(DCT, "modified"), last);
    }

    for d in datasets {
        g.add(catalog.clone(), term(DCAT, "dataset"), dataset_iri(d));
    }

    // Vocabulary terms the graph uses, typed so that range checks hold.
    g.typed(&license, term(DCT, "LicenseDocument"));
    g.add(
        license.clone(),
        term(DCT, "type"),
        iri("http://purl.org/adms/licencetype/Attribution"),
    );
    g.typed(&themes, term(SKOS, "ConceptScheme"));
    g.add(themes.clone(), term(DCT, "title"), zh("数据主题"));
    g.typed(&eu_themes, term(SKOS, "ConceptScheme"));
    g.add(
        eu_themes.clone(),
        term(DCT, "title"),
        Literal::new_language_tagged_literal_unchecked("Data theme", "en"),
    );
    let language = term(&format!("{EU}language/"), "ZHO");
    g.term_type(&language, term(DCT, "LinguisticSystem"));
    if let (Some(s), Some((code, name))) = (&spatial, info.spatial) {
        g.typed(s, term(DCT, "Location"));
        g.add(s.clone(), term(SKOS, "prefLabel"), zh(name));
        g.add(
            s.clone(),
            term(SKOS, "notation"),
            Literal::new_simple_literal(code),
        );
    }

    for d in datasets {
        let id = dataset_iri(d);
        g.typed(&id, term(DCAT, "Dataset"));
        let identifier = if d.meta.identifier.is_empty() {
            d.qualified_name()
        } else {
            d.meta.identifier.clone()
        };
        g.add(
            id.clone(),
            term(DCT, "identifier"),
            Literal::new_simple_literal(identifier),
        );
        g.add(id.clone(), term(DCT, "title"), zh(&d.title));
        // DCAT-AP requires a description; the title stands in when the unit gave none.
        let description = if d.description.is_empty() {
            &d.title
        } else {
            &d.description
        };
        g.add(id.clone(), term(DCT, "description"), zh(description));
        g.add(id.clone(), term(DCT, "publisher"), org(&d.unit_id));
        let freq = term(&format!("{EU}frequency/"), frequency(d.update_frequency));
        g.add(id.clone(), term(DCT, "accrualPeriodicity"), freq.clone());
        g.term_type(&freq, term(DCT, "Frequency"));
        let rights = term(&format!("{EU}access-right/"), access_rights(d.open_tier));
        g.add(id.clone(), term(DCT, "accessRights"), rights.clone());
        g.term_type(&rights, term(DCT, "RightsStatement"));
        let how = access(d);
        let page = iri(how.landing_page);
        g.add(id.clone(), term(DCAT, "landingPage"), page.clone());
        g.term_type(&page, term(FOAF, "Document"));
        // Keywords: the unit's tags, else the topic, so the dataset can be found by a word.
        let mut keywords: Vec<&str> = d.meta.tags.iter().map(String::as_str).collect();
        if keywords.is_empty() && !d.meta.topic.is_empty() {
            keywords.push(&d.meta.topic);
        }
        for k in keywords {
            g.add(id.clone(), term(DCAT, "keyword"), zh(k));
        }
        if !d.meta.topic.is_empty() {
            let concept = iri(format!("{base}/themes/{}", segment(&d.meta.topic)));
            g.add(id.clone(), term(DCAT, "theme"), concept.clone());
            g.later(
                concept.clone(),
                rdf::TYPE.into_owned(),
                term(SKOS, "Concept"),
            );
            g.later(concept.clone(), term(SKOS, "prefLabel"), zh(&d.meta.topic));
            g.later(concept.clone(), term(SKOS, "inScheme"), themes.clone());
            if let Some(code) = eu_theme(&d.meta.topic) {
                let eu = term(&format!("{EU}data-theme/"), code);
                g.add(id.clone(), term(DCAT, "theme"), eu.clone());
                g.term_type(&eu, term(SKOS, "Concept"));
                g.later(eu.clone(), term(SKOS, "inScheme"), eu_themes.clone());
            }
        }
        if let Some(i) = issued(d) {
            g.add(id.clone(), term(DCT, "issued"), i);
        }
        if let Some(m) = modified(d) {
            g.add(id.clone(), term(DCT, "modified"), m);
        }
        if let Some(s) = &spatial {
            g.add(id.clone(), term(DCT, "spatial"), s.clone());
        }
        if !d.meta.contact.is_empty() {
            let contact = BlankNode::default();
            g.add(id.clone(), term(DCAT, "contactPoint"), contact.clone());
            g.later(contact.clone(), rdf::TYPE.into_owned(), term(VCARD, "Kind"));
            g.later(contact, term(VCARD, "fn"), zh(&d.meta.contact));
        }
        for (i, dist) in how.distributions.into_iter().enumerate() {
            let did = iri(format!("{}#distribution-{}", id.as_str(), i + 1));
            g.add(id.clone(), term(DCAT, "distribution"), did.clone());
            g.later(
                did.clone(),
                rdf::TYPE.into_owned(),
                term(DCAT, "Distribution"),
            );
            g.later(did.clone(), term(DCT, "title"), zh(&dist.title));
            g.later(did.clone(), term(DCT, "description"), zh(&dist.description));
            let access = iri(dist.access_url.clone());
            g.later(did.clone(), term(DCAT, "accessURL"), access);
            if let Some(u) = &dist.download_url {
                g.later(did.clone(), term(DCAT, "downloadURL"), iri(u.clone()));
            }
            if let Some((code, media)) = file_type(&dist.format) {
                let ft = term(&format!("{EU}file-type/"), code);
                g.later(did.clone(), term(DCT, "format"), ft.clone());
                g.term_type(&ft, term(DCT, "MediaTypeOrExtent"));
                if let Some(mt) = media {
                    let m = iri(format!("http://www.iana.org/assignments/media-types/{mt}"));
                    g.later(did.clone(), term(DCAT, "mediaType"), m.clone());
                    g.term_type(&m, term(DCT, "MediaType"));
                }
            }
            if d.open_tier == OpenTier::Open {
                g.later(did.clone(), term(DCT, "license"), license.clone());
            }
            let availability = term(DCATAP, "stable");
            g.later(did.clone(), term(DCATAP, "availability"), availability);
            g.later(did.clone(), term(DCT, "accessRights"), rights.clone());
        }
        g.flush();
    }

    // The publishing units.
    let corporate = term(&format!("{EU}corporate-body-classification/"), "AGENCY");
    for u in units
        .iter()
        .filter(|u| datasets.iter().any(|d| d.unit_id == u.id))
    {
        let id = org(&u.id);
        g.typed(&id, term(FOAF, "Organization"));
        g.typed(&id, term(FOAF, "Agent"));
        g.add(id.clone(), term(FOAF, "name"), zh(&u.name));
        g.add(id, term(DCT, "type"), corporate.clone());
    }
    g.term_type(&corporate, term(SKOS, "Concept"));
    g.finish()
}

/// The triples as Turtle, with the DCAT prefixes.
pub fn to_turtle(triples: &[Triple]) -> std::io::Result<String> {
    let mut s = oxttl::TurtleSerializer::new();
    for (p, ns) in PREFIXES {
        s = s
            .with_prefix(p, ns)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let mut w = s.for_writer(Vec::new());
    for t in triples {
        w.serialize_triple(t)?;
    }
    String::from_utf8(w.finish()?).map_err(std::io::Error::other)
}

/// The triples as JSON-LD (a `@graph` of nodes, the prefixes in `@context`).
pub fn to_jsonld(triples: &[Triple]) -> std::io::Result<String> {
    let mut s = oxjsonld::JsonLdSerializer::new();
    for (p, ns) in PREFIXES {
        s = s
            .with_prefix(p, ns)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let mut w = s.for_writer(Vec::new());
    for t in triples {
        w.serialize_quad(t.as_ref().in_graph(oxrdf::GraphNameRef::DefaultGraph))?;
    }
    String::from_utf8(w.finish()?).map_err(std::io::Error::other)
}

/// A dataset's page in the console.
pub fn console_page(base_url: &str, d: &Dataset) -> String {
    format!(
        "{}/#/dataset/{}/{}/{}",
        base_url.trim_end_matches('/'),
        segment(&d.layer),
        segment(&d.unit_id),
        segment(&d.name)
    )
}

/// How a directory export reaches a dataset: its console page, and one distribution per format
/// the unit declared, reached from that page.
pub fn declared_access(base_url: &str, d: &Dataset) -> Access {
    let page = console_page(base_url, d);
    let distributions = d
        .meta
        .formats
        .iter()
        .map(|f| Distribution {
            format: f.clone(),
            title: format!("{}（{}）", d.title, f.to_uppercase()),
            description: format!("{}，{} 格式", d.title, f.to_uppercase()),
            access_url: page.clone(),
            download_url: None,
        })
        .collect();
    Access {
        landing_page: page,
        distributions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_chinese_and_encode_the_rest() {
        assert_eq!(segment("民政 局/a"), "民政%20局%2Fa");
        assert_eq!(segment("ab-c_1.x~"), "ab-c_1.x~");
    }

    #[test]
    fn topics_map_to_eu_themes() {
        assert_eq!(eu_theme("卫生健康"), Some("HEAL"));
        assert_eq!(eu_theme("民政服务"), Some("SOCI"));
        assert_eq!(eu_theme("其他"), None);
    }

    #[test]
    fn dates_become_typed_literals() {
        assert_eq!(
            date_literal("2024-03-01").map(|l| l.datatype().as_str().to_string()),
            Some(xsd::DATE.as_str().to_string())
        );
        assert_eq!(
            date_literal("2024-03-01 10:00:00").map(|l| l.value().to_string()),
            Some("2024-03-01T10:00:00".into())
        );
        assert!(date_literal("三月").is_none());
    }
}
