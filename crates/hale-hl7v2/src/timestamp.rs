//! HL7 v2 timestamps (DTM: `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) as FHIR dates
//! and dateTimes. A time of day without its zone is kept to the day: FHIR requires the
//! zone with a time, and the sender's is not known.

/// A DTM as a FHIR `date` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) or `dateTime` (a time with
/// its offset as written; a time without one is kept to the day). `Err` names what is
/// wrong.
pub fn timestamp(dtm: &str) -> Result<String, String> {
    let s = dtm.trim();
    let (body, zone) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (digits, fraction) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{dtm}' is not a timestamp (YYYYMMDDHHMMSS)"));
    }
    if !matches!(digits.len(), 4 | 6 | 8 | 10 | 12 | 14) {
        return Err(format!(
            "'{dtm}' has {} digits before any fraction: a timestamp has 4 to 14, in pairs after the year",
            digits.len()
        ));
    }
    if let Some(f) = fraction
        && (digits.len() != 14 || f.is_empty() || f.len() > 4 || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("'{dtm}': fractions of a second (1 to 4 digits) follow the seconds"));
    }
    let n = |r: std::ops::Range<usize>| digits.get(r).and_then(|x| x.parse::<u32>().ok());
    let (y, mo, d, h, mi, se) = (n(0..4), n(4..6), n(6..8), n(8..10), n(10..12), n(12..14));
    if mo.is_some_and(|m| !(1..=12).contains(&m)) || d.is_some_and(|d| !(1..=31).contains(&d)) {
        return Err(format!("'{dtm}' is not a date"));
    }
    if h.is_some_and(|h| h > 23) || mi.is_some_and(|m| m > 59) || se.is_some_and(|s| s > 59) {
        return Err(format!("'{dtm}' is not a time of day"));
    }
    let zone = match zone {
        None => None,
        Some(z) if z.len() == 5 && z[1..].bytes().all(|b| b.is_ascii_digit()) => {
            let (zh, zm) = (z[1..3].parse::<u32>().unwrap_or(99), z[3..5].parse::<u32>().unwrap_or(99));
            if zh > 14 || zm > 59 {
                return Err(format!("'{dtm}' has an impossible time zone offset"));
            }
            Some(format!("{}{:02}:{:02}", &z[..1], zh, zm))
        }
        Some(_) => return Err(format!("'{dtm}': a time zone offset is +HHMM or -HHMM")),
    };
    let year = y.unwrap_or(0);
    let mut out = format!("{year:04}");
    if let Some(m) = mo {
        out.push_str(&format!("-{m:02}"));
    }
    if let Some(d) = d {
        out.push_str(&format!("-{d:02}"));
    }
    let Some(h) = h else {
        // a date: FHIR dates carry no zone
        return Ok(out);
    };
    let Some(zone) = zone else {
        // FHIR gives a time of day only with its zone; HL7 leaves an absent one to the
        // sender's, which Hale does not know yet: the day is kept, the time dropped
        return Ok(out);
    };
    out.push_str(&format!("T{h:02}:{:02}:{:02}", mi.unwrap_or(0), se.unwrap_or(0)));
    if let Some(f) = fraction {
        out.push('.');
        out.push_str(f);
    }
    out.push_str(&zone);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_precision_and_zone() {
        assert_eq!(timestamp("2024").unwrap(), "2024");
        assert_eq!(timestamp("202407").unwrap(), "2024-07");
        assert_eq!(timestamp("20240711").unwrap(), "2024-07-11");
        // a time without its zone: FHIR cannot hold it, the day is kept
        assert_eq!(timestamp("2024071116").unwrap(), "2024-07-11");
        assert_eq!(timestamp("20240711160217.7").unwrap(), "2024-07-11");
        assert_eq!(timestamp("2024071116+0000").unwrap(), "2024-07-11T16:00:00+00:00");
        assert_eq!(timestamp("20240711160217.7+0200").unwrap(), "2024-07-11T16:02:17.7+02:00");
        assert_eq!(timestamp("20240711160217.7491-0700").unwrap(), "2024-07-11T16:02:17.7491-07:00");
        assert_eq!(timestamp("20150602100012.43+0100").unwrap(), "2015-06-02T10:00:12.43+01:00");
        assert_eq!(timestamp("202407111602-0500").unwrap(), "2024-07-11T16:02:00-05:00");
        for bad in [
            "",
            "2024071",
            "20241311",
            "20240711250000",
            "20240711160217.12345",
            "2024071116.5",
            "20240711-07",
            "abcd",
            "20240711+2500",
        ] {
            assert!(timestamp(bad).is_err(), "{bad}");
        }
    }
}
