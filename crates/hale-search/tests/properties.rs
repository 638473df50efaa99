//! Properties of the search value parsers (dates, numbers, escapes, string folding),
//! checked by `proptest` over generated values: none panics on any text, valid values
//! parse to the ranges their precision implies, and escaping round-trips.
//! `PROPTEST_CASES=100000 cargo test -p hale-search --test properties` for a longer run.

use hale_search::values::{DateRange, NumberRange, normalize, split_unescaped, unescape};
use proptest::prelude::*;

/// The R4 search escape of one value of a list (`\` `,` `|` `$`).
fn escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '|' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

proptest! {
    #[test]
    fn no_text_makes_a_parser_panic(s in "\\PC{0,40}") {
        let _ = DateRange::parse(&s);
        let _ = NumberRange::parse(&s);
        let _ = split_unescaped(&s, ',');
        let _ = unescape(&s);
        let _ = normalize(&s);
    }

    #[test]
    fn date_like_text_never_panics(s in "[0-9]{1,5}(-[0-9]{1,2}(-[0-9]{1,2}(T[0-9]{1,2}(:[0-9]{1,2}(:[0-9]{1,2}(\\.[0-9]{0,9})?)?)?(Z|[+-][0-9]{1,2}:[0-9]{1,2})?)?)?)?") {
        if let Some(r) = DateRange::parse(&s) {
            prop_assert!(r.lo <= r.hi, "{s}: {r:?}");
        }
    }

    /// A day lies within its month, which lies within its year; each is a whole number
    /// of days.
    #[test]
    fn dates_nest_by_precision(y in 1900i32..2100, m in 1u32..=12, d in 1u32..=28) {
        let year = DateRange::parse(&format!("{y:04}")).unwrap();
        let month = DateRange::parse(&format!("{y:04}-{m:02}")).unwrap();
        let day = DateRange::parse(&format!("{y:04}-{m:02}-{d:02}")).unwrap();
        prop_assert!(year.lo <= month.lo && month.hi <= year.hi);
        prop_assert!(month.lo <= day.lo && day.hi <= month.hi);
        prop_assert_eq!(day.hi - day.lo + 1, 86_400_000);
        prop_assert_eq!((year.hi - year.lo + 1) % 86_400_000, 0);
    }

    /// A time with a zone is the same instant however it is written.
    #[test]
    fn zones_name_the_same_instant(y in 1970i32..2100, m in 1u32..=12, d in 1u32..=28, h in 0u32..24, min in 0u32..60, off in -12i32..=12) {
        let utc = DateRange::parse(&format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:00Z")).unwrap();
        // the same instant written in another zone
        let t = chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap()
            + chrono::Duration::hours(off as i64);
        let sign = if off < 0 { '-' } else { '+' };
        let other = format!("{}{sign}{:02}:00", t.format("%Y-%m-%dT%H:%M:%S"), off.abs());
        let zoned = DateRange::parse(&other).unwrap();
        prop_assert_eq!(utc.lo, zoned.lo, "{} and {}", utc.lo, other);
    }

    /// A decimal's range is centred on it and as wide as its last digit says.
    #[test]
    fn numbers_keep_their_precision(int in -1_000_000i64..1_000_000, frac in 0u32..1000, decimals in 0usize..4) {
        let text = if decimals == 0 { int.to_string() } else { format!("{int}.{:0width$}", frac % 10u32.pow(decimals as u32), width = decimals) };
        let n = NumberRange::parse(&text).unwrap();
        let half = 0.5 * 10f64.powi(-(decimals as i32));
        prop_assert!((n.value - text.parse::<f64>().unwrap()).abs() < 1e-9);
        prop_assert!(((n.hi - n.lo) - 2.0 * half).abs() < 1e-6, "{text}: {n:?}");
        prop_assert!(n.lo < n.value && n.value < n.hi);
    }

    /// Any list of values, each escaped and joined by commas, splits back into itself.
    #[test]
    fn escapes_round_trip(values in prop::collection::vec("[a-z,|$\\\\ é]{0,8}", 1..5)) {
        let joined = values.iter().map(|v| escape(v)).collect::<Vec<_>>().join(",");
        let back: Vec<String> = split_unescaped(&joined, ',').into_iter().map(unescape).collect();
        prop_assert_eq!(back, values);
    }

    /// Folding is idempotent and leaves no capitals, accents of Latin letters, or
    /// doubled, leading or trailing spaces.
    #[test]
    fn folding_is_idempotent(s in "[A-Za-zÀ-ÿ  \t-]{0,24}") {
        let n = normalize(&s);
        prop_assert_eq!(normalize(&n), n.clone());
        prop_assert!(!n.chars().any(|c| c.is_uppercase()), "{n}");
        prop_assert!(!n.starts_with(' ') && !n.ends_with(' ') && !n.contains("  "), "{n:?}");
    }
}
