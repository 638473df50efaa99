//! Charts over time as SVG drawn on the server: readable without script, printable,
//! scaled to the width of the page. Each point carries a `<title>` (its date and value)
//! and the chart an accessible label that names the range of the data.

use maud::{Markup, PreEscaped, html};

/// One line of a chart.
pub(crate) struct Series {
    pub label: String,
    /// The CSS class of the line and its points (`s1`, `s2`).
    pub class: &'static str,
    /// (day number since 1970-01-01, value), in any order.
    pub points: Vec<(i64, f64)>,
}

/// A series with its points in time order and its SVG polyline.
type Line<'a> = (&'a Series, Vec<(i64, f64)>, String);

/// A chart.
pub(crate) struct Chart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub series: Vec<Series>,
    /// A shaded band (a reference or normal range).
    pub band: Option<(Option<f64>, Option<f64>)>,
    /// Height in SVG units (the width is 720).
    pub height: f64,
    /// A fixed vertical scale (a rate: 0 to 100); `None`: from the data.
    pub scale: Option<(f64, f64)>,
    /// Reference lines drawn thin behind the data (a child's growth percentiles): each
    /// a label and its points, over the data's days.
    pub guides: Vec<(String, Vec<(i64, f64)>)>,
}

const W: f64 = 720.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Day number (since 1970-01-01) of a FHIR date or dateTime's day.
pub(crate) fn day_number(s: &str) -> Option<i64> {
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: i64 = s.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let d: i64 = s.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    // Howard Hinnant's days_from_civil
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The year of a day number.
fn year_of(day: i64) -> i64 {
    // the year whose 1 January is the last not after `day`
    let mut y = 1970 + day.div_euclid(366);
    while day_number(&format!("{:04}-01-01", y + 1)).is_some_and(|d| d <= day) {
        y += 1;
    }
    y
}

/// "Nice" tick values covering lo..hi (about five).
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-9);
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-6 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

fn fmt(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{:.1}", v) }
}

/// The date of a day number as `YYYY-MM-DD`.
pub(crate) fn date_of(day: i64) -> String {
    let y = year_of(day);
    let jan1 = day_number(&format!("{y:04}-01-01")).unwrap_or(day);
    let mut m = 1;
    while m < 12 && day_number(&format!("{y:04}-{:02}-01", m + 1)).is_some_and(|d| d <= day) {
        m += 1;
    }
    let first = day_number(&format!("{y:04}-{m:02}-01")).unwrap_or(jan1);
    format!("{y:04}-{m:02}-{:02}", day - first + 1)
}

/// The chart as SVG, or a line saying there is nothing to draw.
pub(crate) fn chart(c: &Chart) -> Markup {
    let all: Vec<(i64, f64)> = c.series.iter().flat_map(|s| s.points.iter().copied()).collect();
    if all.is_empty() {
        return html! { p.empty { "No " (c.title.to_lowercase()) " recorded." } };
    }
    let (mut x0, mut x1) = (all.iter().map(|p| p.0).min().unwrap_or(0), all.iter().map(|p| p.0).max().unwrap_or(0));
    if x1 - x0 < 30 {
        x0 -= 15;
        x1 += 15;
    }
    let mut lo = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut hi = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    if let Some((bl, bh)) = c.band {
        lo = lo.min(bl.unwrap_or(lo));
        hi = hi.max(bh.unwrap_or(hi));
    }
    for (_, pts) in &c.guides {
        for p in pts.iter().filter(|p| (x0..=x1).contains(&p.0)) {
            lo = lo.min(p.1);
            hi = hi.max(p.1);
        }
    }
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(0.5);
    let (lo, hi) = c.scale.unwrap_or((lo - pad, hi + pad));
    let h = c.height;
    let x = |d: i64| LEFT + (d - x0) as f64 / (x1 - x0) as f64 * (W - LEFT - RIGHT);
    let y = |v: f64| TOP + (hi - v) / (hi - lo) * (h - TOP - BOTTOM);
    // a reading may be several points (a blood pressure is two)
    let readings = c.series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let label = {
        let min = all.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let max = all.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        format!(
            "{}: {} {} from {} to {}, between {} and {} {}",
            c.title,
            readings,
            if readings == 1 { "reading" } else { "readings" },
            date_of(x0.max(all.iter().map(|p| p.0).min().unwrap_or(x0))),
            date_of(all.iter().map(|p| p.0).max().unwrap_or(x1)),
            min,
            max,
            c.unit
        )
    };
    // years along the bottom (every year, or every few when there are many)
    let (y0, y1) = (year_of(x0), year_of(x1));
    let every = ((y1 - y0) / 8 + 1).max(1);
    let years: Vec<(f64, i64)> = (y0 + 1..=y1)
        .filter(|yr| (yr - y0) % every == 0)
        .filter_map(|yr| day_number(&format!("{yr:04}-01-01")).map(|d| (x(d), yr)))
        .collect();
    let lines: Vec<Line> = c
        .series
        .iter()
        .map(|s| {
            let mut pts = s.points.clone();
            pts.sort_by_key(|p| p.0);
            let path = pts.iter().map(|(d, v)| format!("{:.1},{:.1}", x(*d), y(*v))).collect::<Vec<_>>().join(" ");
            (s, pts, path)
        })
        .collect();
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (h) } role="img" aria-label=(label) preserveAspectRatio="xMidYMid meet" {
            @if let Some((bl, bh)) = c.band {
                @let top = y(bh.unwrap_or(hi));
                @let bottom = y(bl.unwrap_or(lo));
                rect.band x=(LEFT) y=(format!("{top:.1}")) width=(W - LEFT - RIGHT) height=(format!("{:.1}", (bottom - top).max(0.0))) {}
            }
            @for t in ticks(lo, hi) {
                line.grid x1=(LEFT) x2=(W - RIGHT) y1=(format!("{:.1}", y(t))) y2=(format!("{:.1}", y(t))) {}
                text.tick x=(LEFT - 6.0) y=(format!("{:.1}", y(t) + 4.0)) text-anchor="end" { (fmt(t)) }
            }
            @for (px, yr) in &years {
                line.grid x1=(format!("{px:.1}")) x2=(format!("{px:.1}")) y1=(TOP) y2=(h - BOTTOM) {}
                // a year at the right edge ends there rather than running past it
                text.tick x=(format!("{px:.1}")) y=(h - 6.0) text-anchor=(if *px > W - RIGHT - 16.0 { "end" } else { "middle" }) { (yr) }
            }
            @for (label, pts) in &c.guides {
                @let pts: Vec<&(i64, f64)> = pts.iter().filter(|p| (x0..=x1).contains(&p.0)).collect();
                @if let Some(last) = pts.last() {
                    polyline.guide points=(pts.iter().map(|(d, v)| format!("{:.1},{:.1}", x(*d), y(*v))).collect::<Vec<_>>().join(" ")) {
                        title { (label) }
                    }
                    text.guide-label x=(format!("{:.1}", x(last.0) - 2.0)) y=(format!("{:.1}", y(last.1) - 3.0)) text-anchor="end" { (label.split(' ').next().unwrap_or("")) }
                }
            }
            @for (s, pts, path) in &lines {
                polyline class={ "line " (s.class) } points=(path) {}
                @for (d, v) in pts {
                    circle class={ "pt " (s.class) } cx=(format!("{:.1}", x(*d))) cy=(format!("{:.1}", y(*v))) r="3" {
                        title { (s.label) " " (date_of(*d)) ": " (v) " " (c.unit) }
                    }
                }
            }
        }
        @if c.series.len() > 1 {
            p.legend {
                @for s in &c.series { span class={ "key " (s.class) } { (PreEscaped("&#9644;")) } " " (s.label) " " }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2026-01-01T10:00:00Z"), Some(20_454));
        assert_eq!(day_number("2024-02-29"), Some(19_782));
        assert_eq!(day_number("2024"), day_number("2024-01-01"));
        assert_eq!(day_number("2024-13-01"), None);
        assert_eq!(day_number("x"), None);
        for d in [0, 59, 365, 19_782, 20_454, -1, -400] {
            assert_eq!(day_number(&date_of(d)), Some(d), "{d}");
        }
        assert_eq!(date_of(19_782), "2024-02-29");
    }

    #[test]
    fn a_fixed_scale_is_kept() {
        let series = vec![Series { label: "Rate".into(), class: "s1", points: vec![(20_000, 0.0), (20_090, 0.0)] }];
        let c = Chart {
            title: "Rate",
            unit: "%",
            series,
            band: None,
            height: 150.0,
            scale: Some((0.0, 100.0)),
            guides: vec![],
        };
        let svg = chart(&c).into_string();
        assert!(svg.contains(">100<") && svg.contains(">0<") && !svg.contains(">-0.4<"), "{svg}");
    }

    #[test]
    fn a_year_at_the_right_edge_ends_there() {
        // the last reading on 2025-01-01: that year's label is at the right edge
        let (first, last) = (day_number("2023-07-02").unwrap(), day_number("2025-01-01").unwrap());
        let series = vec![Series { label: "Weight".into(), class: "s1", points: vec![(first, 7.3), (last, 20.0)] }];
        let c = Chart { title: "Weight", unit: "kg", series, band: None, height: 150.0, scale: None, guides: vec![] };
        let svg = chart(&c).into_string();
        assert!(svg.contains(r#"text-anchor="end">2025<"#) && svg.contains(r#"text-anchor="middle">2024<"#), "{svg}");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(61.0, 139.0), vec![80.0, 100.0, 120.0]);
        assert!(ticks(4.1, 4.3).len() >= 3);
    }

    #[test]
    fn a_chart_draws_every_point_with_its_date_and_value() {
        let c = Chart {
            title: "Weight",
            unit: "kg",
            series: vec![Series {
                label: "Weight".into(),
                class: "s1",
                points: vec![(20_000, 80.5), (19_000, 82.0), (20_400, 79.0)],
            }],
            band: None,
            height: 200.0,
            scale: None,
            guides: vec![("97th percentile".into(), vec![(19_000, 95.0), (20_400, 96.0)])],
        };
        let svg = chart(&c).into_string();
        assert_eq!(svg.matches("<circle").count(), 3);
        // a guide is a thin line of its own, with its label, and widens the scale to it
        assert!(svg.contains(r#"<polyline class="guide""#) && svg.contains("<title>97th percentile</title>"), "{svg}");
        assert!(svg.contains(">90<") || svg.contains(">95<"), "{svg}");
        assert!(svg.contains("Weight 2024-10-31: 79 kg") || svg.contains(": 79 kg"), "{svg}");
        assert!(svg.contains("aria-label=\"Weight: 3 readings from"), "{svg}");
        let empty = Chart {
            title: "Weight",
            unit: "kg",
            series: vec![],
            band: None,
            height: 200.0,
            scale: None,
            guides: vec![],
        };
        assert!(chart(&empty).into_string().contains("No weight recorded."));
    }
}
