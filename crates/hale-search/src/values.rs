//! The values search compares, in the forms the index stores.
//!
//! - strings: lower-cased with accents removed ([`normalize`]);
//! - dates: a closed range of Unix milliseconds `[lo, hi]`, from the implicit range of a
//!   partial value (`2020` is the whole year) ([`DateRange`]);
//! - numbers: the value and the implicit range of its precision (`100` is
//!   `[99.5, 100.5)`) ([`NumberRange`]);
//! - prefixes `eq ne gt lt ge le sa eb ap` ([`Prefix`]).

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower case, accents removed, whitespace collapsed: what string search compares.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut last_space = true;
    for c in s.nfd().filter(|c| !is_combining_mark(*c)) {
        if c.is_whitespace() {
            if !last_space {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.extend(c.to_lowercase());
            last_space = false;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Search prefixes (<https://hl7.org/fhir/R4/search.html#prefix>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading prefix off a value (`ge2020` -> (Ge, "2020")).
    pub fn split(value: &str) -> (Prefix, &str) {
        let p = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (p, &value[2..])
    }
}

/// A closed range of instants in Unix milliseconds; `i64::MIN`/`i64::MAX` stand for
/// open ends (a Period without start or end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub lo: i64,
    pub hi: i64,
}

fn day_start(d: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&d.and_time(NaiveTime::MIN)).timestamp_millis()
}

impl DateRange {
    /// The implicit range of an R4 `date`, `dateTime` or `instant` value. A value
    /// without a time zone is taken as UTC.
    pub fn parse(s: &str) -> Option<DateRange> {
        let s = s.trim();
        // every R4 date, dateTime and instant is ASCII; the slicing below relies on it
        if !s.is_ascii() {
            return None;
        }
        let b = s.as_bytes();
        match b.len() {
            4 if b.iter().all(u8::is_ascii_digit) => {
                let y: i32 = s.parse().ok()?;
                let lo = day_start(NaiveDate::from_ymd_opt(y, 1, 1)?);
                let hi = day_start(NaiveDate::from_ymd_opt(y + 1, 1, 1)?) - 1;
                Some(DateRange { lo, hi })
            }
            7 if b[4] == b'-' => {
                let y: i32 = s[..4].parse().ok()?;
                let m: u32 = s[5..7].parse().ok()?;
                let lo = day_start(NaiveDate::from_ymd_opt(y, m, 1)?);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                let hi = day_start(NaiveDate::from_ymd_opt(ny, nm, 1)?) - 1;
                Some(DateRange { lo, hi })
            }
            10 => {
                let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
                let lo = day_start(d);
                Some(DateRange { lo, hi: lo + 86_400_000 - 1 })
            }
            _ => {
                // a time, with or without zone and fraction
                let (dt, precision_ms) = parse_date_time(s)?;
                Some(DateRange { lo: dt, hi: dt + precision_ms - 1 })
            }
        }
    }

    /// A Period: from the start of `start` to the end of `end`; absent ends are open.
    pub fn period(start: Option<&str>, end: Option<&str>) -> Option<DateRange> {
        let lo = match start {
            Some(s) => DateRange::parse(s)?.lo,
            None => i64::MIN,
        };
        let hi = match end {
            Some(e) => DateRange::parse(e)?.hi,
            None => i64::MAX,
        };
        (lo != i64::MIN || hi != i64::MAX).then_some(DateRange { lo, hi })
    }

    /// Does a target value (`self`) match the search value `search` under `prefix`?
    /// (<https://hl7.org/fhir/R4/search.html#date>)
    pub fn matches(&self, prefix: Prefix, search: &DateRange) -> bool {
        let t = self;
        let eq = t.lo >= search.lo && t.hi <= search.hi;
        match prefix {
            Prefix::Eq => eq,
            Prefix::Ne => !eq,
            Prefix::Gt => t.hi > search.hi,
            Prefix::Lt => t.lo < search.lo,
            Prefix::Ge => t.hi > search.hi || eq,
            Prefix::Le => t.lo < search.lo || eq,
            Prefix::Sa => t.lo > search.hi,
            Prefix::Eb => t.hi < search.lo,
            Prefix::Ap => {
                let (lo, hi) = search.approximate();
                t.hi >= lo && t.lo <= hi
            }
        }
    }

    /// The range `ap` accepts: widened by 10% of the distance from now, at least a day.
    pub fn approximate(&self) -> (i64, i64) {
        let now = Utc::now().timestamp_millis();
        let gap = ((now - self.lo).abs() / 10).max(86_400_000);
        (self.lo.saturating_sub(gap), self.hi.saturating_add(gap))
    }
}

/// Parses `YYYY-MM-DDThh:mm[:ss[.fff]][Z|±hh:mm]`; returns the instant and the width of
/// its precision in milliseconds.
fn parse_date_time(s: &str) -> Option<(i64, i64)> {
    let (body, offset_secs) = split_zone(s)?;
    let (date, time) = body.split_once('T')?;
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let (t, precision) = match time.len() {
        5 => (NaiveTime::parse_from_str(time, "%H:%M").ok()?, 60_000),
        8 => (NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?, 1_000),
        n if n > 9 && time.as_bytes()[8] == b'.' => {
            let frac = &time[9..];
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = frac.len().min(3) as u32;
            (NaiveTime::parse_from_str(time, "%H:%M:%S%.f").ok()?, 10i64.pow(3 - digits))
        }
        _ => return None,
    };
    let local = NaiveDateTime::new(d, t);
    let utc = Utc.from_utc_datetime(&local).timestamp_millis() - offset_secs * 1000;
    Some((utc, precision))
}

fn split_zone(s: &str) -> Option<(&str, i64)> {
    if let Some(b) = s.strip_suffix('Z') {
        return Some((b, 0));
    }
    if s.len() > 6 {
        let (b, z) = s.split_at(s.len() - 6);
        let zb = z.as_bytes();
        if (zb[0] == b'+' || zb[0] == b'-') && zb[3] == b':' && b.contains('T') {
            let h: i64 = z[1..3].parse().ok()?;
            let m: i64 = z[4..6].parse().ok()?;
            let sign = if zb[0] == b'-' { -1 } else { 1 };
            return Some((b, sign * (h * 3600 + m * 60)));
        }
    }
    Some((s, 0))
}

/// A decimal with the range its precision implies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRange {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl NumberRange {
    /// `100` -> value 100, range [99.5, 100.5); `1.50` -> [1.495, 1.505); `1e2` ->
    /// [50, 150) (the exponent gives one significant figure).
    pub fn parse(s: &str) -> Option<NumberRange> {
        let s = s.trim();
        let value: f64 = s.parse().ok()?;
        if !value.is_finite() || s.starts_with('+') || s.contains(char::is_whitespace) {
            return None;
        }
        let half = if let Some((mantissa, exp)) = s.split_once(['e', 'E']) {
            let exp: i32 = exp.parse().ok()?;
            let decimals = mantissa.split_once('.').map(|(_, f)| f.len() as i32).unwrap_or(0);
            0.5 * 10f64.powi(exp - decimals)
        } else {
            let decimals = s.split_once('.').map(|(_, f)| f.len() as i32).unwrap_or(0);
            0.5 * 10f64.powi(-decimals)
        };
        Some(NumberRange { value, lo: value - half, hi: value + half })
    }

    /// Does a target number match this search value under `prefix`?
    /// (<https://hl7.org/fhir/R4/search.html#number>)
    pub fn matches(&self, prefix: Prefix, target: f64) -> bool {
        match prefix {
            Prefix::Eq => target >= self.lo && target < self.hi,
            Prefix::Ne => !(target >= self.lo && target < self.hi),
            Prefix::Gt | Prefix::Sa => target > self.value,
            Prefix::Lt | Prefix::Eb => target < self.value,
            Prefix::Ge => target >= self.value,
            Prefix::Le => target <= self.value,
            Prefix::Ap => {
                let gap = (self.value * 0.1).abs();
                target >= self.value - gap && target <= self.value + gap
            }
        }
    }
}

/// Splits on an unescaped separator, keeping escapes of other characters; then
/// [`unescape`] removes them. (`\,` `\$` `\|` `\\` are the escapes of R4 search.)
pub fn split_unescaped(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// Removes search escapes: `\,` -> `,`, `\|` -> `|`, `\$` -> `$`, `\\` -> `\`.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n) => out.push(n),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_lose_case_and_accents() {
        assert_eq!(normalize("Chalmers"), "chalmers");
        assert_eq!(normalize("Müller-Lüdenscheidt  Ñoño"), "muller-ludenscheidt nono");
        assert_eq!(normalize("  ÉLISE "), "elise");
    }

    #[test]
    fn partial_dates_are_ranges() {
        let y = DateRange::parse("2020").unwrap();
        assert_eq!(y.lo, DateRange::parse("2020-01-01").unwrap().lo);
        assert_eq!(y.hi + 1, DateRange::parse("2021-01-01").unwrap().lo);
        let m = DateRange::parse("2020-02").unwrap();
        assert_eq!(m.hi + 1, DateRange::parse("2020-03-01").unwrap().lo);
        let d = DateRange::parse("2020-03-01T10:00:00+02:00").unwrap();
        assert_eq!(d.lo, DateRange::parse("2020-03-01T08:00:00Z").unwrap().lo);
        assert_eq!(d.hi - d.lo, 999);
        let f = DateRange::parse("2020-03-01T08:00:00.5Z").unwrap();
        assert_eq!(f.hi - f.lo, 99);
        assert!(DateRange::parse("2020-13").is_none());
        assert!(DateRange::parse("20200101").is_none());
        assert!(DateRange::parse("2020-01-01T25:00:00Z").is_none());
    }

    #[test]
    fn dates_with_multi_byte_characters_are_refused_not_sliced() {
        for s in [
            "2020-01-01T\u{e9}12345",
            "2020-01-01T10:00:00\u{e9}00:00",
            "2020-\u{e9}",
            "\u{6f22}\u{5b57}-01-01",
            "2020-01-01T10:00:00+0\u{e9}",
        ] {
            assert!(DateRange::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn date_prefixes_follow_the_spec() {
        let day = DateRange::parse("2020-03-15").unwrap();
        let year = DateRange::parse("2020").unwrap();
        // a day within 2020 equals "2020" and not the other way round
        assert!(day.matches(Prefix::Eq, &year));
        assert!(!year.matches(Prefix::Eq, &day));
        assert!(day.matches(Prefix::Ge, &year) && day.matches(Prefix::Le, &year));
        assert!(!day.matches(Prefix::Gt, &year) && !day.matches(Prefix::Lt, &year));
        // a year overlaps a day inside it on both sides
        assert!(year.matches(Prefix::Gt, &day) && year.matches(Prefix::Lt, &day));
        let later = DateRange::parse("2021-06").unwrap();
        assert!(later.matches(Prefix::Sa, &year) && !later.matches(Prefix::Eb, &year));
        assert!(later.matches(Prefix::Ne, &year));
        let open = DateRange::period(Some("2019-01-01"), None).unwrap();
        assert!(open.matches(Prefix::Gt, &year) && !open.matches(Prefix::Eq, &year));
        assert!(day.matches(Prefix::Ap, &DateRange::parse("2020-03-16").unwrap()));
    }

    #[test]
    fn numbers_carry_their_precision() {
        let n = NumberRange::parse("100").unwrap();
        assert!(n.matches(Prefix::Eq, 99.5) && n.matches(Prefix::Eq, 100.4) && !n.matches(Prefix::Eq, 100.5));
        let d = NumberRange::parse("1.50").unwrap();
        assert!(d.matches(Prefix::Eq, 1.504) && !d.matches(Prefix::Eq, 1.51));
        let e = NumberRange::parse("1e2").unwrap();
        assert!(e.matches(Prefix::Eq, 140.0) && !e.matches(Prefix::Eq, 151.0));
        assert!(n.matches(Prefix::Gt, 100.1) && !n.matches(Prefix::Gt, 100.0));
        assert!(n.matches(Prefix::Ap, 109.0) && !n.matches(Prefix::Ap, 111.0));
        assert!(NumberRange::parse("abc").is_none() && NumberRange::parse("+1").is_none());
    }

    #[test]
    fn escaping() {
        assert_eq!(split_unescaped(r"a,b\,c,d", ','), vec!["a", r"b\,c", "d"]);
        assert_eq!(unescape(r"b\,c\|d\\e\$f"), r"b,c|d\e$f");
        assert_eq!(split_unescaped(r"http://s|a\|b", '|'), vec!["http://s", r"a\|b"]);
    }

    #[test]
    fn prefixes_split() {
        assert_eq!(Prefix::split("ge2020"), (Prefix::Ge, "2020"));
        assert_eq!(Prefix::split("2020"), (Prefix::Eq, "2020"));
        assert_eq!(Prefix::split("ap5"), (Prefix::Ap, "5"));
    }
}
