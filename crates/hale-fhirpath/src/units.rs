//! A small UCUM subset: enough to compare and convert common quantities
//! (mass, length, volume, time, calendar durations) and to multiply and divide them.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

const CALENDAR_WORDS: [&str; 16] = [
    "year",
    "years",
    "month",
    "months",
    "week",
    "weeks",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "millisecond",
    "milliseconds",
];

pub(crate) fn is_calendar_word(u: &str) -> bool {
    CALENDAR_WORDS.contains(&u)
}

/// The UCUM unit a calendar word stands for (`days` -> `d`).
pub(crate) fn calendar_to_ucum(u: &str) -> Option<&'static str> {
    Some(match u.trim_end_matches('s') {
        "year" => "a",
        "month" => "mo",
        "week" => "wk",
        "day" => "d",
        "hour" => "h",
        "minute" => "min",
        "second" => "s",
        "millisecond" => "ms",
        _ => return None,
    })
}

/// A unit reduced to base units: a factor and exponents of base dimensions.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Canonical {
    pub factor: Decimal,
    pub dims: BTreeMap<&'static str, i32>,
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or(Decimal::ONE)
}

/// Atoms: (symbol, factor to base, base dimension with exponent)
fn atom(sym: &str) -> Option<(Decimal, &'static [(&'static str, i32)])> {
    const M: &[(&str, i32)] = &[("m", 1)];
    const G: &[(&str, i32)] = &[("g", 1)];
    const S: &[(&str, i32)] = &[("s", 1)];
    const L: &[(&str, i32)] = &[("m", 3)];
    const MOL: &[(&str, i32)] = &[("mol", 1)];
    const K: &[(&str, i32)] = &[("K", 1)];
    const NONE: &[(&str, i32)] = &[];
    Some(match sym {
        "m" => (Decimal::ONE, M),
        "g" => (Decimal::ONE, G),
        "s" => (Decimal::ONE, S),
        "min" => (d("60"), S),
        "h" => (d("3600"), S),
        "d" => (d("86400"), S),
        "wk" => (d("604800"), S),
        "mo" => (d("2629800"), S),
        "a" => (d("31557600"), S),
        "L" | "l" => (d("0.001"), L),
        "mol" => (Decimal::ONE, MOL),
        "K" => (Decimal::ONE, K),
        "[in_i]" => (d("0.0254"), M),
        "[ft_i]" => (d("0.3048"), M),
        "[lb_av]" => (d("453.59237"), G),
        "[oz_av]" => (d("28.349523125"), G),
        "%" => (d("0.01"), NONE),
        "1" => (Decimal::ONE, NONE),
        _ => return None,
    })
}

fn prefix(p: &str) -> Option<Decimal> {
    Some(d(match p {
        "k" => "1000",
        "h" => "100",
        "da" => "10",
        "d" => "0.1",
        "c" => "0.01",
        "m" => "0.001",
        "u" => "0.000001",
        "n" => "0.000000001",
        "p" => "0.000000000001",
        _ => return None,
    }))
}

fn term(t: &str) -> Option<Canonical> {
    // strip annotations: `{beats}/min`
    let t: String = {
        let mut out = String::new();
        let mut depth = 0;
        for c in t.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    if t.is_empty() {
        return Some(Canonical { factor: Decimal::ONE, dims: BTreeMap::new() });
    }
    // exponent: trailing digits with optional sign, unless the whole term is a number
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Some(Canonical { factor: t.parse().ok()?, dims: BTreeMap::new() });
    }
    let split = t.trim_end_matches(|c: char| c.is_ascii_digit());
    let (sym, exp) = if split.len() < t.len() {
        let (s, e) = t.split_at(split.len());
        let (s, neg) = match s.strip_suffix('-') {
            Some(s) => (s, true),
            None => (s.strip_suffix('+').unwrap_or(s), false),
        };
        let e: i32 = e.parse().ok()?;
        (s, if neg { -e } else { e })
    } else {
        (t.as_str(), 1)
    };
    if !(-8..=8).contains(&exp) {
        return None;
    }
    let (factor, dims) = match atom(sym) {
        Some(a) => a,
        None => {
            let mut found = None;
            for plen in [1, 2] {
                if sym.len() > plen
                    && sym.is_char_boundary(plen)
                    && let (Some(p), Some((f, dims))) = (prefix(&sym[..plen]), atom(&sym[plen..]))
                {
                    found = Some((p.checked_mul(f)?, dims));
                    break;
                }
            }
            found?
        }
    };
    let mut c = Canonical { factor: Decimal::ONE, dims: BTreeMap::new() };
    for _ in 0..exp.abs() {
        c.factor = if exp > 0 { c.factor.checked_mul(factor)? } else { c.factor.checked_div(factor)? };
    }
    for (dim, e) in dims {
        *c.dims.entry(dim).or_insert(0) += e * exp;
    }
    Some(c)
}

/// Parses a UCUM unit (or a calendar word) into base units.
pub(crate) fn canonical(unit: &str) -> Option<Canonical> {
    let unit = calendar_to_ucum(unit).unwrap_or(unit);
    if unit.len() > 64 {
        return None;
    }
    let mut result = Canonical { factor: Decimal::ONE, dims: BTreeMap::new() };
    let mut rest = unit;
    let mut divide = false;
    if let Some(r) = rest.strip_prefix('/') {
        rest = r;
        divide = true;
    }
    loop {
        let end = rest.find(['.', '/']).unwrap_or(rest.len());
        let c = term(&rest[..end])?;
        if divide {
            result.factor = result.factor.checked_div(c.factor)?;
        } else {
            result.factor = result.factor.checked_mul(c.factor)?;
        }
        for (dim, e) in c.dims {
            *result.dims.entry(dim).or_insert(0) += if divide { -e } else { e };
        }
        if end == rest.len() {
            break;
        }
        divide = rest.as_bytes()[end] == b'/';
        rest = &rest[end + 1..];
    }
    result.dims.retain(|_, e| *e != 0);
    Some(result)
}

/// The unit text of base dimensions: `m2`, `g/m`, `1`.
pub(crate) fn unit_string(dims: &BTreeMap<&'static str, i32>) -> String {
    let mut num = Vec::new();
    let mut den = Vec::new();
    for (dim, e) in dims {
        let s = |e: i32| {
            if e == 1 { (*dim).to_string() } else { format!("{dim}{e}") }
        };
        if *e > 0 {
            num.push(s(*e));
        } else if *e < 0 {
            den.push(s(-*e));
        }
    }
    let mut out = if num.is_empty() { "1".to_string() } else { num.join(".") };
    if !den.is_empty() {
        out.push('/');
        out.push_str(&den.join("."));
    }
    out
}

/// Converts `value` in `from` to the unit `to`, when they measure the same thing.
pub(crate) fn convert(value: Decimal, from: &str, to: &str) -> Option<Decimal> {
    if from == to {
        return Some(value);
    }
    let a = canonical(from)?;
    let b = canonical(to)?;
    if a.dims != b.dims {
        return None;
    }
    value.checked_mul(a.factor)?.checked_div(b.factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_units() {
        assert_eq!(convert(d("4000"), "mg", "g"), Some(d("4")));
        assert_eq!(convert(d("1"), "wk", "days"), Some(d("7")));
        assert_eq!(convert(d("1"), "[in_i]", "cm"), Some(d("2.54")));
        assert_eq!(convert(d("1"), "cm", "s"), None);
        assert_eq!(unit_string(&canonical("g/m").unwrap().dims), "g/m");
        assert_eq!(unit_string(&canonical("cm2").unwrap().dims), "m2");
        assert_eq!(canonical("mg/dL").unwrap().factor, d("10"));
        assert!(canonical("{beats}/min").is_some());
    }
}
