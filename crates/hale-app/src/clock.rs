//! The installation's time zone (`time_zone` in the configuration): every date and time
//! a page shows is the wall-clock time there, "today" is that zone's today, and a time
//! typed in a form is read as that zone's wall-clock time.
//!
//! What is stored does not change meaning: a FHIR `instant` or `dateTime` with a time
//! carries its offset, so a page converts it to the zone for display. A time a person
//! types is stored with the zone's offset at that moment (`2026-12-07T09:00:00-05:00`;
//! `Z` where the offset is zero), so the record keeps both the instant and the wall
//! clock the person read; a time Hale stamps itself (now) stays a UTC instant, as the
//! store stamps `lastUpdated`. A FHIR `date` (a birth date, an onset typed as a day) has
//! no time and no zone: it is shown as written.
//!
//! Daylight saving time, for a typed time: an hour skipped when the clocks go forward
//! did not happen, so a time in it is refused with the time the clock showed instead;
//! an hour repeated when the clocks go back is read as its first occurrence (still in
//! daylight time, the earlier instant).
//!
//! The time zone database is the IANA one compiled into the binary (`jiff`'s bundled
//! copy), so a machine without tzdata behaves as one with it.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone, TimeZoneDatabase};
use serde_json::Value;

/// An installation's time zone: an IANA zone such as `America/New_York`, or `UTC`.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
    /// The IANA name as the database spells it.
    name: String,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Default for Zone {
    fn default() -> Self {
        Zone::utc()
    }
}

/// A name that is no zone of the IANA time zone database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a time zone of the IANA database (such as America/New_York, Europe/Paris or UTC)")]
pub struct UnknownZone(pub String);

/// Why a typed local time could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LocalTimeError {
    /// Not `YYYY-MM-DDTHH:MM[:SS]`, or no such day or time.
    Malformed,
    /// A wall-clock time skipped when the clocks went forward; `instead` is the time
    /// the clock showed an hour later (`HH:MM`).
    Skipped { typed: String, instead: String, zone: String, before: String, after: String },
}

impl LocalTimeError {
    /// The message for the person who typed it.
    pub(crate) fn message(&self) -> String {
        match self {
            LocalTimeError::Malformed => "Write the time as YYYY-MM-DDTHH:MM.".to_string(),
            LocalTimeError::Skipped { typed, instead, zone, before, after } => format!(
                "There was no {typed} in {zone}: the clocks went forward that night (from UTC{before} to UTC{after}). \
                 Enter the time the clock showed, e.g. {instead}."
            ),
        }
    }
}

/// A typed local time read in the zone: the FHIR dateTime to store and its instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub fhir: String,
    pub millis: i64,
}

impl Zone {
    /// Coordinated Universal Time (the default).
    pub fn utc() -> Zone {
        Zone { tz: TimeZone::UTC, name: "UTC".to_string() }
    }

    /// The zone of an IANA name (any case: `america/new_york` is `America/New_York`),
    /// from the database compiled into Hale.
    pub fn named(name: &str) -> Result<Zone, UnknownZone> {
        let unknown = || UnknownZone(name.to_string());
        let wanted = name.trim();
        if wanted.is_empty() {
            return Err(unknown());
        }
        let tz = TimeZoneDatabase::bundled().get(wanted).map_err(|_| unknown())?;
        if tz.is_unknown() {
            return Err(unknown());
        }
        let name = tz.iana_name().unwrap_or(wanted).to_string();
        Ok(Zone { tz, name })
    }

    /// The IANA name (`America/New_York`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone's abbreviation at `t` (`EST`, `EDT`; a numeric one such as `-03` where
    /// the database has no letters).
    fn abbreviation(&self, t: Timestamp) -> String {
        self.tz.to_offset_info(t).abbreviation().to_string()
    }

    /// A line for the foot of a page: which zone its dates and times are in.
    pub(crate) fn note(&self) -> String {
        if self.name == "UTC" {
            return "Dates and times are in UTC.".to_string();
        }
        let now = Timestamp::now();
        format!(
            "Dates and times are in {} ({}, UTC{} now).",
            self.name,
            self.abbreviation(now),
            offset_text(self.tz.to_offset(now))
        )
    }

    /// Today's date here as (year, month, day).
    pub(crate) fn today(&self) -> (i64, u32, u32) {
        let d = self.tz.to_datetime(Timestamp::now()).date();
        (i64::from(d.year()), d.month().unsigned_abs().into(), d.day().unsigned_abs().into())
    }

    /// Today's date here as `YYYY-MM-DD` (the `today` decision support is given).
    pub(crate) fn today_text(&self) -> String {
        let (y, m, d) = self.today();
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// Now here as a `datetime-local` value (`YYYY-MM-DDTHH:MM`), for a form.
    pub(crate) fn now_input(&self) -> String {
        self.tz.to_datetime(Timestamp::now()).strftime("%Y-%m-%dT%H:%M").to_string()
    }

    /// The day of a FHIR date or dateTime as seen here (`YYYY-MM-DD`, or less when that
    /// is all there is): a dateTime with a time is converted to the zone first.
    pub(crate) fn day(&self, v: &Value) -> String {
        v.as_str().map(|s| self.day_of(s)).unwrap_or_default()
    }

    /// [`Zone::day`] of a string.
    pub(crate) fn day_of(&self, s: &str) -> String {
        match instant(s) {
            Some(t) => self.tz.to_datetime(t).date().to_string(),
            None => s.chars().take(10).collect(),
        }
    }

    /// A FHIR date or dateTime as seen here: `YYYY-MM-DD HH:MM` when it has a time of
    /// day, else as [`Zone::day`].
    pub(crate) fn when(&self, v: &Value) -> String {
        let Some(s) = v.as_str() else { return String::new() };
        match instant(s) {
            Some(t) => self.tz.to_datetime(t).strftime("%Y-%m-%d %H:%M").to_string(),
            None => s.chars().take(10).collect(),
        }
    }

    /// As [`Zone::when`], with the zone's abbreviation after a time of day
    /// (`2026-01-15 09:00 EST`).
    pub(crate) fn when_zoned(&self, v: &Value) -> String {
        match v.as_str().and_then(instant) {
            Some(t) => self.at(t),
            None => self.when(v),
        }
    }

    /// A Unix time in milliseconds as `YYYY-MM-DD HH:MM` and the zone's abbreviation.
    pub(crate) fn at_millis(&self, ms: i64) -> String {
        match Timestamp::from_millisecond(ms) {
            Ok(t) => self.at(t),
            Err(_) => String::new(),
        }
    }

    /// The day here of a Unix time in milliseconds.
    pub(crate) fn day_of_millis(&self, ms: i64) -> String {
        match Timestamp::from_millisecond(ms) {
            Ok(t) => self.tz.to_datetime(t).date().to_string(),
            Err(_) => String::new(),
        }
    }

    fn at(&self, t: Timestamp) -> String {
        format!("{} {}", self.tz.to_datetime(t).strftime("%Y-%m-%d %H:%M"), self.abbreviation(t))
    }

    /// The day number (days since 1970-01-01) of a FHIR date or dateTime's day here,
    /// where a chart puts it.
    pub(crate) fn day_number(&self, s: &str) -> Option<i64> {
        match instant(s) {
            Some(_) => crate::svg::day_number(&self.day_of(s)),
            None => crate::svg::day_number(s),
        }
    }

    /// A time typed in a form (`YYYY-MM-DDTHH:MM[:SS]`, a `datetime-local` value) read as
    /// the wall-clock time here: the FHIR dateTime with the zone's offset then, and its
    /// instant. A time the clocks skipped is refused; a repeated one is its first
    /// occurrence.
    pub(crate) fn read_local(&self, typed: &str) -> Result<LocalTime, LocalTimeError> {
        let dt = local_datetime(typed).ok_or(LocalTimeError::Malformed)?;
        let offset = match self.tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset,
            // the first of the two: the clocks had not gone back yet
            AmbiguousOffset::Fold { before, .. } => before,
            AmbiguousOffset::Gap { before, after } => {
                // read with the offset before the change, the time falls after it: the
                // clock then showed that time an hour (the gap) later
                let instead = before
                    .to_timestamp(dt)
                    .map(|t| self.tz.to_datetime(t).strftime("%H:%M").to_string())
                    .unwrap_or_default();
                return Err(LocalTimeError::Skipped {
                    typed: dt.strftime("%Y-%m-%d %H:%M").to_string(),
                    instead,
                    zone: self.name.clone(),
                    before: offset_text(before),
                    after: offset_text(after),
                });
            }
        };
        let t = offset.to_timestamp(dt).map_err(|_| LocalTimeError::Malformed)?;
        let fhir = if offset.seconds() % 60 == 0 {
            format!("{}{}", dt.strftime("%Y-%m-%dT%H:%M:%S"), fhir_offset(offset))
        } else {
            // an offset in seconds (local mean time, before standard time) has no FHIR
            // form: the instant in UTC
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        };
        Ok(LocalTime { fhir, millis: t.as_millisecond() })
    }
}

/// The instant of a FHIR dateTime or instant that has a time of day (and so, in valid
/// FHIR, an offset); `None` for a date or a partial date.
pub(crate) fn instant(s: &str) -> Option<Timestamp> {
    if s.len() <= 10 || !s.contains('T') {
        return None;
    }
    s.parse::<Timestamp>().ok()
}

/// `YYYY-MM-DDTHH:MM[:SS]` as a civil date and time, checked (no 30 February, no 25:00).
fn local_datetime(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let shape = (b.len() == 16 || (b.len() == 19 && b[16] == b':' && digits(17..19)))
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16);
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<i16>().ok());
    let small = |r: std::ops::Range<usize>| n(r).and_then(|v| i8::try_from(v).ok());
    let second = if b.len() == 19 { small(17..19)? } else { 0 };
    DateTime::new(n(0..4)?, small(5..7)?, small(8..10)?, small(11..13)?, small(14..16)?, second, 0).ok()
}

/// An offset as FHIR writes it: `Z`, or `+HH:MM` / `-HH:MM`.
fn fhir_offset(o: Offset) -> String {
    if o.seconds() == 0 { "Z".to_string() } else { offset_text(o) }
}

/// An offset as `+HH:MM` / `-HH:MM`.
fn offset_text(o: Offset) -> String {
    let s = o.seconds();
    let sign = if s < 0 { '-' } else { '+' };
    let a = s.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ny() -> Zone {
        Zone::named("America/New_York").unwrap()
    }

    #[test]
    fn zones_are_iana_names_and_nothing_else() {
        assert_eq!(Zone::named("UTC").unwrap(), Zone::utc());
        assert_eq!(Zone::named("america/new_york").unwrap().name(), "America/New_York");
        assert_eq!(Zone::named("Europe/Paris").unwrap().name(), "Europe/Paris");
        for bad in ["", "  ", "America/New_Yrok", "Mars/Olympus", "Etc/Unknown", "EST5EDT,M3.2.0,M11.1.0", "+05:00"] {
            let e = Zone::named(bad).unwrap_err();
            assert!(e.to_string().contains("is not a time zone of the IANA database"), "{bad}: {e}");
        }
        assert_eq!(Zone::default(), Zone::utc());
    }

    #[test]
    fn stored_instants_show_as_wall_clock_time_winter_and_summer() {
        let z = ny();
        // winter: UTC-5, EST
        assert_eq!(z.when(&json!("2026-01-15T14:00:00Z")), "2026-01-15 09:00");
        assert_eq!(z.when_zoned(&json!("2026-01-15T14:00:00Z")), "2026-01-15 09:00 EST");
        // summer: UTC-4, EDT; another offset in the value itself is taken into account
        assert_eq!(z.when_zoned(&json!("2026-07-15T14:00:00Z")), "2026-07-15 10:00 EDT");
        assert_eq!(z.when_zoned(&json!("2026-07-15T16:00:00.123+02:00")), "2026-07-15 10:00 EDT");
        // the day follows the zone: 02:00 UTC is the evening before in New York
        assert_eq!(z.day(&json!("2026-01-16T02:00:00Z")), "2026-01-15");
        assert_eq!(Zone::utc().day(&json!("2026-01-16T02:00:00Z")), "2026-01-16");
        assert_eq!(z.day_number("2026-01-02T03:00:00Z"), Some(20_454), "2026-01-01 in New York");
        assert_eq!(Zone::utc().day_number("2026-01-02T03:00:00Z"), Some(20_455));
        // a date has no zone: as written
        assert_eq!(z.day(&json!("1980-02-03")), "1980-02-03");
        assert_eq!(z.when_zoned(&json!("2024-10")), "2024-10");
        assert_eq!(z.day_number("2026-01-01"), Some(20_454));
        assert_eq!(z.day(&Value::Null), "");
        // milliseconds (grants, sign-ins)
        assert_eq!(z.at_millis(1_768_485_600_000), "2026-01-15 09:00 EST");
        assert_eq!(Zone::utc().at_millis(1_768_485_600_000), "2026-01-15 14:00 UTC");
        assert_eq!(z.day_of_millis(1_768_532_400_000), "2026-01-15", "03:00 UTC on the 16th");
    }

    #[test]
    fn typed_times_are_read_as_wall_clock_time_with_the_offset_of_the_day() {
        let z = ny();
        let winter = z.read_local("2026-12-07T09:00").unwrap();
        assert_eq!(winter.fhir, "2026-12-07T09:00:00-05:00");
        assert_eq!(winter.millis, "2026-12-07T14:00:00Z".parse::<Timestamp>().unwrap().as_millisecond());
        let summer = z.read_local("2026-07-15T09:00:30").unwrap();
        assert_eq!(summer.fhir, "2026-07-15T09:00:30-04:00");
        assert_eq!(summer.millis, "2026-07-15T13:00:30Z".parse::<Timestamp>().unwrap().as_millisecond());
        // in UTC, as before: Z
        assert_eq!(Zone::utc().read_local("2026-12-07T09:00").unwrap().fhir, "2026-12-07T09:00:00Z");
        // a half-hour zone
        let kolkata = Zone::named("Asia/Kolkata").unwrap();
        assert_eq!(kolkata.read_local("2026-12-07T09:00").unwrap().fhir, "2026-12-07T09:00:00+05:30");
        // and shown back as typed
        assert_eq!(z.when(&json!(winter.fhir)), "2026-12-07 09:00");
        assert_eq!(z.when(&json!(summer.fhir)), "2026-07-15 09:00");
        for bad in ["2026-02-30T10:00", "2026-12-07T25:00", "2026-12-07 09:00", "2026-12-07T9:00", "yesterday", ""] {
            assert_eq!(z.read_local(bad), Err(LocalTimeError::Malformed), "{bad}");
        }
    }

    #[test]
    fn the_skipped_hour_is_refused_and_the_repeated_hour_is_its_first_occurrence() {
        let z = ny();
        // 2026-03-08: 02:00 EST became 03:00 EDT; 02:30 did not happen
        let e = z.read_local("2026-03-08T02:30").unwrap_err();
        assert_eq!(
            e.message(),
            "There was no 2026-03-08 02:30 in America/New_York: the clocks went forward that night \
             (from UTC-05:00 to UTC-04:00). Enter the time the clock showed, e.g. 03:30."
        );
        // either side of the gap is fine
        assert_eq!(z.read_local("2026-03-08T01:59").unwrap().fhir, "2026-03-08T01:59:00-05:00");
        assert_eq!(z.read_local("2026-03-08T03:00").unwrap().fhir, "2026-03-08T03:00:00-04:00");
        // 2026-11-01: 02:00 EDT became 01:00 EST; 01:30 happened twice: the first (EDT)
        let fold = z.read_local("2026-11-01T01:30").unwrap();
        assert_eq!(fold.fhir, "2026-11-01T01:30:00-04:00");
        assert_eq!(fold.millis, "2026-11-01T05:30:00Z".parse::<Timestamp>().unwrap().as_millisecond());
        assert_eq!(z.read_local("2026-11-01T02:00").unwrap().fhir, "2026-11-01T02:00:00-05:00");
        // and both occurrences read back as 01:30, told apart by the abbreviation
        assert_eq!(z.when_zoned(&json!("2026-11-01T05:30:00Z")), "2026-11-01 01:30 EDT");
        assert_eq!(z.when_zoned(&json!("2026-11-01T06:30:00Z")), "2026-11-01 01:30 EST");
        // the southern hemisphere the other way round: Sydney went forward on 2026-10-04
        let syd = Zone::named("Australia/Sydney").unwrap();
        assert!(matches!(syd.read_local("2026-10-04T02:30"), Err(LocalTimeError::Skipped { .. })));
        assert_eq!(syd.read_local("2026-04-05T02:30").unwrap().fhir, "2026-04-05T02:30:00+11:00");
    }

    #[test]
    fn today_and_the_note_name_the_zone() {
        let z = ny();
        let t = z.today_text();
        assert_eq!(t.len(), 10);
        let (y, m, d) = z.today();
        assert_eq!(t, format!("{y:04}-{m:02}-{d:02}"));
        // today in New York is today in UTC or the day before
        let utc = crate::svg::day_number(&Zone::utc().today_text()).unwrap();
        let here = crate::svg::day_number(&t).unwrap();
        assert!(utc - here == 0 || utc - here == 1, "{t}");
        assert!(z.note().starts_with("Dates and times are in America/New_York (E"), "{}", z.note());
        assert_eq!(Zone::utc().note(), "Dates and times are in UTC.");
        let input = z.now_input();
        assert_eq!(z.read_local(&input).map(|l| l.fhir.len()), Ok(25), "{input}");
    }
}
