//! Dates, date-times and times with their precision.

use std::cmp::Ordering;
use std::fmt;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};

/// Which of the three temporal system types a value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemporalKind {
    Date,
    DateTime,
    Time,
}

/// How much of a temporal value is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Millisecond,
}

/// A FHIRPath Date, DateTime or Time.
#[derive(Debug, Clone, PartialEq)]
pub struct Temporal {
    pub kind: TemporalKind,
    pub precision: Precision,
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
    /// Offset from UTC in minutes, when given.
    pub tz: Option<i32>,
}

fn num(s: &str, len: usize) -> Option<u32> {
    if s.len() != len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

impl Temporal {
    fn blank(kind: TemporalKind) -> Temporal {
        Temporal {
            kind,
            precision: Precision::Year,
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
            millis: 0,
            tz: None,
        }
    }

    /// The text after `@` in a literal: `2015-02-04T14:34:28.123+09:00`, `2015T`.
    pub fn parse_literal(s: &str) -> Option<Temporal> {
        match s.split_once('T') {
            Some((d, t)) => {
                let mut v = Temporal::parse_date_part(d)?;
                v.kind = TemporalKind::DateTime;
                if !t.is_empty() {
                    v.parse_time_part(t, true)?;
                }
                Some(v)
            }
            None => Temporal::parse_date_part(s),
        }
    }

    /// A FHIR `date`, `dateTime` or `instant` value.
    pub fn parse_fhir_datetime(s: &str) -> Option<Temporal> {
        let mut v = Temporal::parse_literal(s)?;
        if s.ends_with('T') {
            return None;
        }
        v.kind = TemporalKind::DateTime;
        Some(v)
    }

    /// A date as a Date (no time part allowed).
    pub fn parse_date(s: &str) -> Option<Temporal> {
        if s.contains('T') {
            return None;
        }
        Temporal::parse_date_part(s)
    }

    /// `14:34:28.123` (without `T`).
    pub fn parse_time(s: &str) -> Option<Temporal> {
        let mut v = Temporal::blank(TemporalKind::Time);
        v.parse_time_part(s, false)?;
        Some(v)
    }

    fn parse_date_part(d: &str) -> Option<Temporal> {
        let mut v = Temporal::blank(TemporalKind::Date);
        let mut parts = d.split('-');
        v.year = num(parts.next()?, 4)? as i32;
        v.precision = Precision::Year;
        if let Some(m) = parts.next() {
            v.month = num(m, 2)?;
            if !(1..=12).contains(&v.month) {
                return None;
            }
            v.precision = Precision::Month;
        }
        if let Some(dd) = parts.next() {
            v.day = num(dd, 2)?;
            if v.day < 1 || v.day > days_in_month(v.year, v.month) {
                return None;
            }
            v.precision = Precision::Day;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(v)
    }

    fn parse_time_part(&mut self, t: &str, allow_tz: bool) -> Option<()> {
        let (time, tz) = if allow_tz {
            if let Some(x) = t.strip_suffix('Z') {
                (x, Some(0))
            } else if let Some(i) = t.find(['+', '-']) {
                let (a, b) = t.split_at(i);
                let sign = if b.starts_with('-') { -1 } else { 1 };
                let (h, m) = b[1..].split_once(':')?;
                let h = num(h, 2)?;
                let m = num(m, 2)?;
                if h > 14 || m > 59 {
                    return None;
                }
                (a, Some(sign * (h as i32 * 60 + m as i32)))
            } else {
                (t, None)
            }
        } else {
            (t, None)
        };
        self.tz = tz;
        let mut parts = time.split(':');
        self.hour = num(parts.next()?, 2)?;
        if self.hour > 23 {
            return None;
        }
        self.precision = Precision::Hour;
        if let Some(m) = parts.next() {
            self.minute = num(m, 2)?;
            if self.minute > 59 {
                return None;
            }
            self.precision = Precision::Minute;
        }
        if let Some(s) = parts.next() {
            let (sec, frac) = match s.split_once('.') {
                Some((a, b)) => (a, Some(b)),
                None => (s, None),
            };
            self.second = num(sec, 2)?;
            if self.second > 59 {
                return None;
            }
            self.precision = Precision::Second;
            if let Some(f) = frac {
                if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let mut ms = String::from(f);
                ms.truncate(3);
                while ms.len() < 3 {
                    ms.push('0');
                }
                self.millis = ms.parse().ok()?;
                self.precision = Precision::Millisecond;
            }
        }
        if parts.next().is_some() {
            return None;
        }
        Some(())
    }

    fn with_tz(&self, tz: Option<i32>) -> Temporal {
        let Some(off) = self.tz else { return self.clone() };
        let target = tz.unwrap_or(0);
        if off == target || self.precision < Precision::Hour {
            return self.clone();
        }
        let mut v = self.clone();
        let Some(ndt) = self.naive() else { return self.clone() };
        let ndt = ndt - Duration::minutes(i64::from(off - target));
        v.set_from_naive(ndt);
        v.tz = Some(target);
        v
    }

    fn naive(&self) -> Option<NaiveDateTime> {
        let d = NaiveDate::from_ymd_opt(self.year, self.month, self.day)?;
        d.and_hms_milli_opt(self.hour, self.minute, self.second, self.millis)
    }

    fn set_from_naive(&mut self, ndt: NaiveDateTime) {
        self.year = ndt.year();
        self.month = ndt.month();
        self.day = ndt.day();
        self.hour = ndt.hour();
        self.minute = ndt.minute();
        self.second = ndt.second();
        self.millis = ndt.nanosecond() / 1_000_000;
    }

    fn levels(&self) -> (usize, usize) {
        // (first level, number of levels known) over year, month, day, hour, minute, second
        let last = match self.precision {
            Precision::Year => 0,
            Precision::Month => 1,
            Precision::Day => 2,
            Precision::Hour => 3,
            Precision::Minute => 4,
            Precision::Second | Precision::Millisecond => 5,
        };
        let first = if self.kind == TemporalKind::Time { 3 } else { 0 };
        (first, last)
    }

    fn level_value(&self, l: usize) -> i64 {
        match l {
            0 => i64::from(self.year),
            1 => i64::from(self.month),
            2 => i64::from(self.day),
            3 => i64::from(self.hour),
            4 => i64::from(self.minute),
            _ => i64::from(self.second) * 1000 + i64::from(self.millis),
        }
    }

    /// Are the two values of kinds that can be compared?
    pub fn comparable_kind(&self, other: &Temporal) -> bool {
        (self.kind == TemporalKind::Time) == (other.kind == TemporalKind::Time)
    }

    /// Compares two values; `None` when the answer depends on unknown precision.
    /// When only one of the two has a time zone (and both have a time), the other could
    /// be at any offset: the answer is known only if it is the same for all of them.
    pub fn compare(&self, other: &Temporal) -> Option<Ordering> {
        let timed = self.precision >= Precision::Hour && other.precision >= Precision::Hour;
        match (self.tz, other.tz) {
            (None, Some(_)) if timed && self.kind == TemporalKind::DateTime => {
                let east = Temporal { tz: Some(14 * 60), ..self.clone() }.compare_same_tz(other)?;
                let west = Temporal { tz: Some(-12 * 60), ..self.clone() }.compare_same_tz(other)?;
                (east == west).then_some(east)
            }
            (Some(_), None) if timed && other.kind == TemporalKind::DateTime => {
                other.compare(self).map(Ordering::reverse)
            }
            _ => self.compare_same_tz(other),
        }
    }

    fn compare_same_tz(&self, other: &Temporal) -> Option<Ordering> {
        let (a, b) = match (self.tz, other.tz) {
            (Some(_), Some(_)) => (self.with_tz(Some(0)), other.with_tz(Some(0))),
            _ => (self.clone(), other.clone()),
        };
        let (fa, la) = a.levels();
        let (_, lb) = b.levels();
        for l in fa..=la.max(lb) {
            if l > la || l > lb {
                return None;
            }
            let o = a.level_value(l).cmp(&b.level_value(l));
            if o != Ordering::Equal {
                return Some(o);
            }
        }
        Some(Ordering::Equal)
    }

    /// Same precision and same instant (equivalence).
    pub fn same_precision(&self, other: &Temporal) -> bool {
        self.levels().1 == other.levels().1
    }

    /// Adds a calendar or UCUM duration; `None` for units that cannot be added.
    pub fn add(&self, amount: i64, unit: &str) -> Option<Temporal> {
        let mut v = self.clone();
        let unit = unit.trim_end_matches('s');
        match unit {
            "year" | "a" => {
                if v.kind == TemporalKind::Time {
                    return None;
                }
                v.year = i32::try_from(i64::from(v.year) + amount).ok()?;
                v.day = v.day.min(days_in_month(v.year, v.month));
            }
            "month" | "mo" => {
                if v.kind == TemporalKind::Time {
                    return None;
                }
                if v.precision < Precision::Month {
                    // whole years only
                    v.year = i32::try_from(i64::from(v.year) + amount / 12).ok()?;
                } else {
                    let total = i64::from(v.year) * 12 + i64::from(v.month) - 1 + amount;
                    v.year = i32::try_from(total.div_euclid(12)).ok()?;
                    v.month = u32::try_from(total.rem_euclid(12) + 1).ok()?;
                    v.day = v.day.min(days_in_month(v.year, v.month));
                }
            }
            _ => {
                let d = match unit {
                    "week" | "wk" => Duration::try_days(amount.checked_mul(7)?)?,
                    "day" | "d" => Duration::try_days(amount)?,
                    "hour" | "h" => Duration::try_hours(amount)?,
                    "minute" | "min" => Duration::try_minutes(amount)?,
                    "second" | "" => Duration::try_seconds(amount)?,
                    "millisecond" | "m" => Duration::try_milliseconds(amount)?,
                    _ => return None,
                };
                if v.kind == TemporalKind::Time {
                    let base =
                        NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_milli_opt(v.hour, v.minute, v.second, v.millis)?;
                    let r = base.checked_add_signed(d)?;
                    v.hour = r.hour();
                    v.minute = r.minute();
                    v.second = r.second();
                    v.millis = r.nanosecond() / 1_000_000;
                } else {
                    if v.precision < Precision::Day && matches!(unit, "week" | "wk" | "day" | "d") {
                        return Some(v);
                    }
                    let r = v.naive()?.checked_add_signed(d)?;
                    v.set_from_naive(r);
                }
            }
        }
        if v.year < 1 || v.year > 9999 {
            return None;
        }
        Some(v)
    }

    /// The number of digits of precision (`precision()`): 4 for a year, 17 for milliseconds.
    pub fn precision_digits(&self) -> i64 {
        match (self.kind, self.precision) {
            (TemporalKind::Time, Precision::Hour) => 2,
            (TemporalKind::Time, Precision::Minute) => 4,
            (TemporalKind::Time, Precision::Second) => 6,
            (TemporalKind::Time, _) => 9,
            (_, Precision::Year) => 4,
            (_, Precision::Month) => 6,
            (_, Precision::Day) => 8,
            (_, Precision::Hour) => 10,
            (_, Precision::Minute) => 12,
            (_, Precision::Second) => 14,
            (_, Precision::Millisecond) => 17,
        }
    }

    /// lowBoundary/highBoundary to a number of digits of precision.
    pub fn boundary(&self, digits: Option<i64>, high: bool) -> Option<Temporal> {
        let mut v = self.clone();
        let target = match (self.kind, digits) {
            (TemporalKind::Time, None) => Precision::Millisecond,
            (TemporalKind::Time, Some(2)) => Precision::Hour,
            (TemporalKind::Time, Some(4)) => Precision::Minute,
            (TemporalKind::Time, Some(6)) => Precision::Second,
            (TemporalKind::Time, Some(9)) => Precision::Millisecond,
            (TemporalKind::Date, None) => Precision::Day,
            (TemporalKind::DateTime, None) => Precision::Millisecond,
            (_, Some(4)) => Precision::Year,
            (_, Some(6)) => Precision::Month,
            (_, Some(8)) => Precision::Day,
            (TemporalKind::DateTime, Some(10)) => Precision::Hour,
            (TemporalKind::DateTime, Some(12)) => Precision::Minute,
            (TemporalKind::DateTime, Some(14)) => Precision::Second,
            (TemporalKind::DateTime, Some(17)) => Precision::Millisecond,
            _ => return None,
        };
        let p = self.precision;
        if p < Precision::Month {
            v.month = if high { 12 } else { 1 };
        }
        if p < Precision::Day {
            v.day = if high { days_in_month(v.year, v.month) } else { 1 };
        }
        if p < Precision::Hour {
            v.hour = if high { 23 } else { 0 };
        }
        if p < Precision::Minute {
            v.minute = if high { 59 } else { 0 };
        }
        if p < Precision::Second {
            v.second = if high { 59 } else { 0 };
        }
        if p < Precision::Millisecond {
            v.millis = if high { 999 } else { 0 };
        }
        if v.kind == TemporalKind::DateTime && v.tz.is_none() && target > Precision::Day {
            v.tz = Some(if high { -12 * 60 } else { 14 * 60 });
        }
        v.precision = target;
        Some(v)
    }
}

impl fmt::Display for Temporal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.precision;
        if self.kind != TemporalKind::Time {
            write!(f, "{:04}", self.year)?;
            if p >= Precision::Month {
                write!(f, "-{:02}", self.month)?;
            }
            if p >= Precision::Day {
                write!(f, "-{:02}", self.day)?;
            }
            if self.kind == TemporalKind::Date {
                return Ok(());
            }
            if p < Precision::Hour {
                return write!(f, "T");
            }
            write!(f, "T")?;
        }
        write!(f, "{:02}", self.hour)?;
        if p >= Precision::Minute {
            write!(f, ":{:02}", self.minute)?;
        }
        if p >= Precision::Second {
            write!(f, ":{:02}", self.second)?;
        }
        if p >= Precision::Millisecond {
            write!(f, ".{:03}", self.millis)?;
        }
        if self.kind == TemporalKind::DateTime
            && let Some(tz) = self.tz
        {
            if tz == 0 {
                write!(f, "Z")?;
            } else {
                let sign = if tz < 0 { '-' } else { '+' };
                write!(f, "{sign}{:02}:{:02}", tz.abs() / 60, tz.abs() % 60)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_roundtrip() {
        for s in ["2015", "2015-02", "2015-02-04", "2015-02-04T14:34:28.123+09:00", "2015T", "2015-02-04T14Z"] {
            assert_eq!(Temporal::parse_literal(s).unwrap().to_string(), s);
        }
        assert_eq!(Temporal::parse_time("14:34").unwrap().to_string(), "14:34");
        assert!(Temporal::parse_literal("2015-13").is_none());
        assert!(Temporal::parse_literal("2015-02-30").is_none());
    }

    #[test]
    fn compare_with_precision() {
        let a = Temporal::parse_literal("2012-04-15").unwrap();
        let b = Temporal::parse_literal("2012-04-15T10:00:00").unwrap();
        assert_eq!(a.compare(&b), None);
        let c = Temporal::parse_literal("2012-04-16T10:00:00").unwrap();
        assert_eq!(a.compare(&c), Some(Ordering::Less));
        let d = Temporal::parse_literal("2012-04-15T15:00:00Z").unwrap();
        let e = Temporal::parse_literal("2012-04-15T10:00:00-05:00").unwrap();
        assert_eq!(d.compare(&e), Some(Ordering::Equal));
        // one side without a zone: known only when no offset could change the answer
        let local = Temporal::parse_literal("2012-04-15T10:00:00").unwrap();
        assert_eq!(d.compare(&local), None);
        assert_eq!(local.compare(&d), None);
        let earlier = Temporal::parse_literal("2012-04-13T10:00:00").unwrap();
        assert_eq!(d.compare(&earlier), Some(Ordering::Greater));
        assert_eq!(earlier.compare(&d), Some(Ordering::Less));
        // a FHIR dateTime of day precision is a DateTime
        let dt = Temporal::parse_fhir_datetime("2001-05-06").unwrap();
        assert_eq!((dt.kind, dt.precision), (TemporalKind::DateTime, Precision::Day));
    }

    #[test]
    fn adds_durations() {
        let a = Temporal::parse_literal("1973-12-25").unwrap();
        assert_eq!(a.add(1, "month").unwrap().to_string(), "1974-01-25");
        assert_eq!(a.add(7, "days").unwrap().to_string(), "1974-01-01");
        let b = Temporal::parse_literal("2012-03-31").unwrap();
        assert_eq!(b.add(-1, "month").unwrap().to_string(), "2012-02-29");
    }
}
