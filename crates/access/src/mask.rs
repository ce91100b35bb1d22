//! Column masks: what a grant shows of a value instead of the value.
//!
//! Masks work on Unicode characters, never bytes: keeping the first four characters of
//! `王小明的住址样例` gives `王小明的****`. A NULL stays NULL under every mask. The text form
//! (`keep:6,4`, `hash`, …) is what the CLI, YAML and the API accept.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a granted column is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mask {
    /// The value as stored.
    None,
    /// A fixed `******`, which hides the length too.
    Redact,
    /// The first `first` and last `last` characters; the rest become `*`. At least a third of
    /// every value stays hidden: on short values fewer characters are kept.
    Keep { first: u32, last: u32 },
    /// A keyed hash (HMAC-SHA-256 with the platform's masking key, 32 hex digits): stable, so
    /// masked keys still join across datasets, and not reversible without the key.
    Hash,
    /// A date or timestamp shown as its year.
    Year,
    /// An address cut after its street, town or township (街道 / 镇 / 乡).
    Street,
    /// Always NULL: the column exists, its values do not.
    Null,
}

/// What every masked value of `Redact` looks like.
pub const REDACTED: &str = "******";

impl Mask {
    /// Whether the column's values come through unchanged.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }

    /// Whether the masked column keeps the stored type (otherwise it becomes text).
    pub fn keeps_type(&self) -> bool {
        matches!(self, Self::None | Self::Null)
    }

    /// The default mask for a field of a PII kind (as the PII scan names them).
    pub fn for_pii(kind: &str) -> Self {
        match kind {
            // Six leading and four trailing digits plus a birth date (often granted too) give the
            // whole number back: a keyed hash, still joinable.
            "resident_id" => Self::Hash,
            "mobile_phone" => Self::Keep { first: 3, last: 4 },
            "email" => Self::Keep { first: 2, last: 0 },
            "person_name" => Self::Keep { first: 1, last: 0 },
            "bank_card" => Self::Keep { first: 0, last: 4 },
            "address" => Self::Street,
            // Legal persons' credit codes are public registrations.
            "credit_code" => Self::None,
            _ => Self::Redact,
        }
    }

    /// Applies a text mask. `Hash`, `Year` and `Null` need more than text (a key, a type) and are
    /// applied by the query layer; here `Hash` falls back to `Redact`.
    pub fn apply_text(&self, value: &str) -> Option<String> {
        match *self {
            Self::None => Some(value.to_string()),
            Self::Redact | Self::Hash => Some(REDACTED.to_string()),
            Self::Keep { first, last } => Some(keep(value, first as usize, last as usize)),
            Self::Year => Some(year_of_text(value).unwrap_or_else(|| "****".to_string())),
            Self::Street => Some(street_of(value)),
            Self::Null => None,
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Redact => f.write_str("redact"),
            Self::Keep { first, last } => write!(f, "keep:{first},{last}"),
            Self::Hash => f.write_str("hash"),
            Self::Year => f.write_str("year"),
            Self::Street => f.write_str("street"),
            Self::Null => f.write_str("null"),
        }
    }
}

impl FromStr for Mask {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let expected = "expected none, redact, keep:FIRST,LAST (e.g. keep:6,4 or keep:6/4), hash, year, \
                        street or null";
        match s {
            "none" | "" => Ok(Self::None),
            "redact" => Ok(Self::Redact),
            "hash" => Ok(Self::Hash),
            "year" => Ok(Self::Year),
            "street" => Ok(Self::Street),
            "null" => Ok(Self::Null),
            _ => {
                let Some(spec) = s.strip_prefix("keep:") else {
                    return Err(Error::invalid("mask", format!("{s:?}: {expected}")));
                };
                // keep:F,L, or keep:F/L where commas separate columns (grant create --columns).
                let (first, last) = spec
                    .split_once(',')
                    .or_else(|| spec.split_once('/'))
                    .unwrap_or((spec, "0"));
                let parse = |n: &str| {
                    n.trim().parse::<u32>().map_err(|_| {
                        Error::invalid("mask", format!("{s:?}: {n:?} is not a count; {expected}"))
                    })
                };
                Ok(Self::Keep {
                    first: parse(first)?,
                    last: parse(last)?,
                })
            }
        }
    }
}

/// The platform's secret for keyed-hash masks. Whoever holds it can test guesses against masked
/// values, so it stays in the home (`keys/masking.key`, mode 0600) and never leaves the server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MaskKey(Vec<u8>);

impl fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaskKey(…)")
    }
}

impl MaskKey {
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }

    /// Reads the key at `path`, creating a random one (readable by the owner only) if missing.
    pub fn load_or_create(path: &std::path::Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if !path.exists() {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options.open(path).map_err(io)?;
            std::io::Write::write_all(&mut f, crate::secret::random_hex(32).as_bytes())
                .map_err(io)?;
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let bytes = hex::decode(text.trim()).map_err(|_| {
            Error::invalid(
                "masking key",
                format!("{} does not hold 64 hex digits", path.display()),
            )
        })?;
        if bytes.len() < 16 {
            return Err(Error::invalid(
                "masking key",
                format!("{} is shorter than 16 bytes", path.display()),
            ));
        }
        Ok(Self(bytes))
    }

    /// The key of one principal's pseudonyms: HMAC(platform key, `principal:<name>`). Each
    /// consumer gets its own pseudonyms — stable across all the datasets it is granted, so its
    /// joins work, but unlike anyone else's, so two consumers' extracts cannot be linked and a
    /// table of chosen values hashed for one principal says nothing about another's.
    pub fn for_principal(&self, name: &str) -> MaskKey {
        self.derive(&format!("principal:{name}"))
    }

    /// A key derived from this one for a purpose (`open` for open-data snapshots).
    pub fn derive(&self, context: &str) -> MaskKey {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        MaskKey(ring::hmac::sign(&key, context.as_bytes()).as_ref().to_vec())
    }

    /// HMAC-SHA-256 of `text`, all 32 bytes as hex.
    pub fn mac_hex(&self, text: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        hex::encode(ring::hmac::sign(&key, text.as_bytes()).as_ref())
    }

    /// HMAC-SHA-256 of `value`, the first 16 bytes as 32 hex digits.
    pub fn hash(&self, value: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&key, value.as_bytes());
        hex::encode(&tag.as_ref()[..16])
    }
}

/// Keeps the first `first` and last `last` characters and stars the rest, hiding at least a
/// third of the characters (rounded up, at least one), so a short value is never shown whole:
/// `138****1234` and `110101********1234` as usual, `王*` for a two-character name.
pub fn keep(value: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let budget = n - n.div_ceil(3).max(1).min(n);
    let first = first.min(budget);
    let last = last.min(budget - first);
    let mut out = String::with_capacity(value.len());
    out.extend(&chars[..first]);
    out.extend(std::iter::repeat_n('*', n - first - last));
    out.extend(&chars[n - last..]);
    out
}

/// The year of a date written as text (`1990-05-01`, `1990年5月`, `19900501`).
pub fn year_of_text(value: &str) -> Option<String> {
    let digits: String = value.trim().chars().take(4).collect();
    (digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

/// An address cut after its street, town or township (街道 / 镇 / 乡); failing those, after its
/// district or county (区 / 县); failing that, redacted. A marker counts only inside the
/// administrative head of the address: no digit, bracket or punctuation before it, and for 区
/// not the end of a word like 小区, 社区, 园区, 校区 or 景区.
pub fn street_of(value: &str) -> String {
    let head_ok = |prefix: &str| {
        !prefix.is_empty()
            && prefix.chars().count() <= 24
            && !prefix.chars().any(|c| {
                c.is_ascii_digit()
                    || ('０'..='９').contains(&c)
                    || "()（）[]【】,，;；:：、 #号栋楼室".contains(c)
            })
    };
    for marker in ["街道", "镇", "乡"] {
        if let Some(i) = value.find(marker)
            && head_ok(&value[..i])
        {
            return format!("{}{REDACTED}", &value[..i + marker.len()]);
        }
    }
    for marker in ["区", "县"] {
        for (i, _) in value.match_indices(marker) {
            let prefix = &value[..i];
            let word_end = prefix
                .chars()
                .last()
                .is_some_and(|c| "小社园校景街".contains(c));
            if !word_end && head_ok(prefix) {
                return format!("{}{REDACTED}", &value[..i + marker.len()]);
            }
        }
    }
    REDACTED.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_counts_characters_not_bytes() {
        assert_eq!(keep("王小明的住址样例", 4, 0), "王小明的****");
        assert_eq!(keep("110101199003071234", 6, 4), "110101********1234");
        assert_eq!(keep("13800001234", 3, 4), "138****1234");
        assert_eq!(keep("王小明", 1, 0), "王**");
    }

    #[test]
    fn keep_never_shows_a_short_value_whole() {
        assert_eq!(keep("王明", 1, 0), "王*");
        assert_eq!(keep("12", 3, 4), "1*");
        assert_eq!(keep("1", 3, 4), "*");
        assert_eq!(keep("", 3, 4), "");
        assert_eq!(keep("123456", 3, 4), "123**6");
    }

    #[test]
    fn street_keeps_the_street() {
        assert_eq!(
            street_of("上海市松江区方松街道文诚路100号"),
            "上海市松江区方松街道******"
        );
        assert_eq!(street_of("某县城关镇人民路1号"), "某县城关镇******");
        assert_eq!(street_of("松江区某路1号"), "松江区******");
        assert_eq!(street_of("人民路1号"), REDACTED);
        // Words that end in 区 and markers after the house number are no district or street.
        assert_eq!(street_of("人民路88号阳光小区3栋1201室"), REDACTED);
        assert_eq!(street_of("阳光小区3栋1201室"), REDACTED);
        assert_eq!(street_of("丽水新村12号楼302室(近方松街道)"), REDACTED);
        assert_eq!(street_of("上海市松江区阳光小区3栋"), "上海市松江区******");
    }

    #[test]
    fn masks_parse_and_print() {
        for text in [
            "none", "redact", "keep:6,4", "hash", "year", "street", "null",
        ] {
            let mask: Mask = text.parse().unwrap();
            assert_eq!(mask.to_string(), text);
        }
        assert_eq!(
            "keep:1".parse::<Mask>().unwrap(),
            Mask::Keep { first: 1, last: 0 }
        );
        assert_eq!(
            "keep:6/4".parse::<Mask>().unwrap(),
            Mask::Keep { first: 6, last: 4 }
        );
        let err = "keep:a,1".parse::<Mask>().unwrap_err().to_string();
        assert!(err.contains("\"a\" is not a count"), "{err}");
        let err = "blur".parse::<Mask>().unwrap_err().to_string();
        assert!(err.contains("expected none, redact"), "{err}");
    }

    #[test]
    fn keyed_hashes_are_stable_and_keyed() {
        let a = MaskKey::from_bytes(b"0123456789abcdef");
        let b = MaskKey::from_bytes(b"fedcba9876543210");
        assert_eq!(a.hash("110101199003071234"), a.hash("110101199003071234"));
        assert_ne!(a.hash("110101199003071234"), b.hash("110101199003071234"));
        assert_eq!(a.hash("x").len(), 32);
        assert_eq!(format!("{a:?}"), "MaskKey(…)");
        // Per principal: stable for one, different between two.
        let x = a.for_principal("analyst");
        assert_eq!(x.hash("1"), a.for_principal("analyst").hash("1"));
        assert_ne!(x.hash("1"), a.for_principal("other").hash("1"));
        assert_ne!(x.hash("1"), a.hash("1"));
    }

    #[test]
    fn years_of_text_dates() {
        assert_eq!(year_of_text("1990-05-01").as_deref(), Some("1990"));
        assert_eq!(year_of_text("1990年5月").as_deref(), Some("1990"));
        assert_eq!(year_of_text("五月"), None);
    }
}
