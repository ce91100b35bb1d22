//! The catalog as DCAT (W3C Data Catalog Vocabulary, version 3, with the DCAT-AP vocabularies
//! for frequency and access rights), in JSON-LD. Every dataset is a `dcat:Dataset` with its
//! title and description in Chinese, its publishing unit as a `foaf:Organization`, keywords,
//! theme, update frequency, access rights from its open tier, dates, contact point and one
//! distribution per format.

use serde_json::{Value, json};

use crate::model::{Dataset, OpenTier, Unit, UpdateFrequency};

/// The EU frequency vocabulary that DCAT-AP uses for `dct:accrualPeriodicity`.
fn frequency_uri(f: UpdateFrequency) -> &'static str {
    match f {
        UpdateFrequency::Realtime => {
            "http://publications.europa.eu/resource/authority/frequency/UPDATE_CONT"
        }
        UpdateFrequency::Hourly => {
            "http://publications.europa.eu/resource/authority/frequency/HOURLY"
        }
        UpdateFrequency::Daily => {
            "http://publications.europa.eu/resource/authority/frequency/DAILY"
        }
        UpdateFrequency::Weekly => {
            "http://publications.europa.eu/resource/authority/frequency/WEEKLY"
        }
        UpdateFrequency::Monthly => {
            "http://publications.europa.eu/resource/authority/frequency/MONTHLY"
        }
        UpdateFrequency::Quarterly => {
            "http://publications.europa.eu/resource/authority/frequency/QUARTERLY"
        }
        UpdateFrequency::Yearly => {
            "http://publications.europa.eu/resource/authority/frequency/ANNUAL"
        }
        UpdateFrequency::Irregular => {
            "http://publications.europa.eu/resource/authority/frequency/IRREG"
        }
    }
}

/// The EU access-right vocabulary: 无条件开放 is public, 有条件开放 restricted, 非开放 non-public.
fn access_rights_uri(t: OpenTier) -> &'static str {
    match t {
        OpenTier::Open => "http://publications.europa.eu/resource/authority/access-right/PUBLIC",
        OpenTier::Conditional => {
            "http://publications.europa.eu/resource/authority/access-right/RESTRICTED"
        }
        OpenTier::Closed => {
            "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC"
        }
    }
}

/// An IANA media type for a format name, where one is known.
fn media_type(format: &str) -> Option<&'static str> {
    Some(match format {
        "csv" => "text/csv",
        "json" => "application/json",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xls" => "application/vnd.ms-excel",
        "xml" => "application/xml",
        "parquet" => "application/vnd.apache.parquet",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// A timestamp as an `xsd:dateTime`/`xsd:date` literal, when it is one.
fn date_literal(text: &str) -> Option<Value> {
    let t = text.trim();
    if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
        return Some(json!({"@value": ts.to_rfc3339(), "@type": "xsd:dateTime"}));
    }
    if let Ok(ts) = chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S") {
        return Some(
            json!({"@value": ts.format("%Y-%m-%dT%H:%M:%S").to_string(), "@type": "xsd:dateTime"}),
        );
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some(json!({"@value": d.to_string(), "@type": "xsd:date"}));
    }
    None
}

fn object(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn zh(text: &str) -> Value {
    json!({"@value": text, "@language": "zh"})
}

/// The DCAT catalog of `datasets` (with their units), rooted at `base_url`
/// (e.g. `https://data.example.gov.cn`).
pub fn catalog_jsonld(title: &str, base_url: &str, units: &[Unit], datasets: &[Dataset]) -> Value {
    let base = base_url.trim_end_matches('/');
    let org = |unit_id: &str| format!("{base}/units/{unit_id}");
    let items: Vec<Value> = datasets
        .iter()
        .map(|d| {
            let id = format!(
                "{base}/datasets/{}/{}/{}",
                d.layer, d.unit_id, d.name
            );
            let mut obj = object(json!({
                "@id": id,
                "@type": "dcat:Dataset",
                "dct:identifier": if d.meta.identifier.is_empty() { d.qualified_name() } else { d.meta.identifier.clone() },
                "dct:title": zh(&d.title),
                "dct:publisher": {"@id": org(&d.unit_id)},
                "dct:accrualPeriodicity": {"@id": frequency_uri(d.update_frequency)},
                "dct:accessRights": {"@id": access_rights_uri(d.open_tier)},
                "dcat:landingPage": {"@id": format!("{base}/#/dataset/{}/{}/{}", d.layer, d.unit_id, d.name)},
            }));
            // DCAT-AP requires a description; the title stands in when the unit gave none.
            obj.insert(
                "dct:description".into(),
                zh(if d.description.is_empty() { &d.title } else { &d.description }),
            );
            if !d.meta.tags.is_empty() {
                obj.insert(
                    "dcat:keyword".into(),
                    Value::Array(d.meta.tags.iter().map(|t| zh(t)).collect()),
                );
            }
            if !d.meta.topic.is_empty() {
                obj.insert(
                    "dcat:theme".into(),
                    json!({"@type": "skos:Concept", "skos:prefLabel": zh(&d.meta.topic)}),
                );
            }
            if let Some(issued) = d.meta.published_at.as_deref().and_then(date_literal) {
                obj.insert("dct:issued".into(), issued);
            }
            let modified = d
                .meta
                .source_updated_at
                .as_deref()
                .and_then(date_literal)
                .or_else(|| date_literal(&d.updated_at));
            if let Some(m) = modified {
                obj.insert("dct:modified".into(), m);
            }
            if !d.meta.contact.is_empty() {
                obj.insert(
                    "dcat:contactPoint".into(),
                    json!({"@type": "vcard:Kind", "vcard:fn": d.meta.contact}),
                );
            }
            let distributions: Vec<Value> = d
                .meta
                .formats
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let mut dist = json!({
                        "@id": format!("{id}#distribution-{}", i + 1),
                        "@type": "dcat:Distribution",
                        "dct:format": f,
                        "dcat:accessURL": {"@id": format!("{base}/datasets/{}/{}/{}", d.layer, d.unit_id, d.name)},
                    });
                    if let Some(mt) = media_type(f) {
                        dist["dcat:mediaType"] =
                            json!({"@id": format!("http://www.iana.org/assignments/media-types/{mt}")});
                    }
                    dist
                })
                .collect();
            if !distributions.is_empty() {
                obj.insert("dcat:distribution".into(), Value::Array(distributions));
            }
            Value::Object(obj)
        })
        .collect();
    let publishers: Vec<Value> = units
        .iter()
        .filter(|u| datasets.iter().any(|d| d.unit_id == u.id))
        .map(|u| {
            json!({
                "@id": org(&u.id),
                "@type": "foaf:Organization",
                "foaf:name": zh(&u.name),
            })
        })
        .collect();
    let catalog = json!({
        "@id": format!("{base}/catalog"),
        "@type": "dcat:Catalog",
        "dct:title": zh(title),
        "dct:description": zh(title),
        "dct:publisher": publishers.first().map(|p| json!({"@id": p["@id"]})).unwrap_or(Value::Null),
        "dcat:dataset": datasets.iter().map(|d| json!({"@id": format!("{base}/datasets/{}/{}/{}", d.layer, d.unit_id, d.name)})).collect::<Vec<_>>(),
    });
    let mut graph = vec![catalog];
    graph.extend(items);
    graph.extend(publishers);
    json!({
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "skos": "http://www.w3.org/2004/02/skos/core#",
            "vcard": "http://www.w3.org/2006/vcard/ns#",
            "xsd": "http://www.w3.org/2001/XMLSchema#"
        },
        "@graph": graph
    })
}
