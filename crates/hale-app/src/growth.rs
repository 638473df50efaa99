//! Growth percentiles of children: the WHO Child Growth Standards (birth to 5 years) and
//! the WHO 2007 Growth Reference (5 to 19 years) as LMS tables by month of age and sex
//! (`growth-who.json`, written by `tools/growth/gen.py` from WHO's published tables):
//! weight-for-age to 5 years, length/height-for-age and BMI-for-age to 19. A value's
//! z-score is `((X/M)^L − 1) / (L·S)` (`ln(X/M)/S` when L is 0), its percentile the normal
//! distribution's; a percentile's curve is `M·(1 + L·S·z)^(1/L)`. Between two months the
//! parameters are interpolated linearly. WHO's adjustment of weight and BMI z-scores
//! beyond ±3 is not applied: such a value is shown below the 1st or above the 99th.

use std::collections::HashMap;
use std::sync::OnceLock;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Measure {
    Weight,
    Height,
    Bmi,
}

impl Measure {
    /// The growth measure a vital sign's chart shows, by its title.
    pub(crate) fn of_chart(title: &str) -> Option<Measure> {
        match title {
            "Body weight" => Some(Measure::Weight),
            "Body height" => Some(Measure::Height),
            "BMI" => Some(Measure::Bmi),
            _ => None,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Measure::Weight => "weight",
            Measure::Height => "height",
            Measure::Bmi => "bmi",
        }
    }
}

/// The percentile lines drawn (WHO's charts draw these five).
pub(crate) const LINES: [f64; 5] = [3.0, 15.0, 50.0, 85.0, 97.0];

type Table = Vec<[f64; 4]>;

fn tables() -> &'static HashMap<String, Table> {
    static T: OnceLock<HashMap<String, Table>> = OnceLock::new();
    T.get_or_init(|| serde_json::from_str(include_str!("growth-who.json")).unwrap_or_default())
}

/// The L, M and S of `measure` for `sex` (`male` or `female`) at `months` of age;
/// `None` outside the table (or for another sex).
pub(crate) fn lms(measure: Measure, sex: &str, months: f64) -> Option<(f64, f64, f64)> {
    let t = tables().get(&format!("{}-{sex}", measure.key()))?;
    let (first, last) = (t.first()?[0], t.last()?[0]);
    if !(first..=last).contains(&months) {
        return None;
    }
    let i = t.iter().position(|r| r[0] >= months)?;
    let b = t[i];
    if b[0] == months || i == 0 {
        return Some((b[1], b[2], b[3]));
    }
    let a = t[i - 1];
    let f = (months - a[0]) / (b[0] - a[0]);
    let mix = |k: usize| a[k] + (b[k] - a[k]) * f;
    Some((mix(1), mix(2), mix(3)))
}

/// The z-score of `value` under `(l, m, s)`.
pub(crate) fn z_score(value: f64, (l, m, s): (f64, f64, f64)) -> f64 {
    if l.abs() < 1e-9 { (value / m).ln() / s } else { ((value / m).powf(l) - 1.0) / (l * s) }
}

/// The value at z-score `z` under `(l, m, s)`.
pub(crate) fn value_at(z: f64, (l, m, s): (f64, f64, f64)) -> f64 {
    if l.abs() < 1e-9 { m * (s * z).exp() } else { m * (1.0 + l * s * z).powf(1.0 / l) }
}

/// The standard normal distribution's cumulative probability at `z` (Abramowitz and
/// Stegun 26.2.17, error below 7.5e-8).
pub(crate) fn normal_cdf(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.231_641_9 * z.abs());
    let poly =
        t * (0.319_381_530 + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
    let tail = (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly;
    if z >= 0.0 { 1.0 - tail } else { tail }
}

/// The z-score of percentile `p` (0 < p < 100), by bisection of [`normal_cdf`].
pub(crate) fn z_of_percentile(p: f64) -> f64 {
    let (mut lo, mut hi) = (-8.0, 8.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if normal_cdf(mid) * 100.0 < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// Months of age on day `day` of a child born on day `birth` (day numbers).
pub(crate) fn months(birth: i64, day: i64) -> f64 {
    (day - birth) as f64 / (365.25 / 12.0)
}

/// A value's percentile in words: "42nd percentile", "below the 1st percentile".
pub(crate) fn percentile_words(measure: Measure, sex: &str, months: f64, value: f64) -> Option<String> {
    let p = normal_cdf(z_score(value, lms(measure, sex, months)?)) * 100.0;
    Some(if p < 1.0 {
        "below the 1st percentile".into()
    } else if p > 99.0 {
        "above the 99th percentile".into()
    } else {
        format!("{} percentile", ordinal(p))
    })
}

/// A percentile as an ordinal: 97.0 is "97th", 1.2 is "1st".
pub(crate) fn ordinal(p: f64) -> String {
    let n = p.round() as i64;
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The percentile lines of [`LINES`] from day `x0` to day `x1` for a child born on day
/// `birth`: (percentile, points every month of age the tables cover).
pub(crate) fn curves(measure: Measure, sex: &str, birth: i64, x0: i64, x1: i64) -> Vec<(f64, Vec<(i64, f64)>)> {
    let step = (x1 - x0).max(1) / 60 + 1;
    LINES
        .iter()
        .map(|&p| {
            let z = z_of_percentile(p);
            let mut days: Vec<i64> = (0..).map(|k| x0 + k * step).take_while(|d| *d < x1).collect();
            days.push(x1);
            let pts: Vec<(i64, f64)> =
                days.into_iter().filter_map(|d| Some((d, value_at(z, lms(measure, sex, months(birth, d))?)))).collect();
            (p, pts)
        })
        .filter(|(_, pts)| pts.len() > 1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_hold_every_month_of_each_measure() {
        for (k, months) in [("weight", 60.0), ("height", 228.0), ("bmi", 228.0)] {
            for sex in ["male", "female"] {
                let t = &tables()[&format!("{k}-{sex}")];
                assert_eq!(t.len() as f64, months + 1.0, "{k}-{sex}");
                assert!(t.iter().enumerate().all(|(i, r)| r[0] == i as f64), "{k}-{sex}");
            }
        }
        assert!(lms(Measure::Weight, "male", 61.0).is_none() && lms(Measure::Weight, "other", 3.0).is_none());
    }

    #[test]
    fn the_median_is_the_50th_percentile_and_who_figures_come_back() {
        // WHO: boys' weight at birth M = 3.3464 kg; girls' length at 12 months M = 74.0 cm
        let boys = lms(Measure::Weight, "male", 0.0).unwrap();
        assert!((boys.1 - 3.3464).abs() < 1e-9);
        assert_eq!(percentile_words(Measure::Weight, "male", 0.0, 3.3464).unwrap(), "50th percentile");
        let girls = lms(Measure::Height, "female", 12.0).unwrap();
        assert!((girls.1 - 74.0).abs() < 0.1, "{girls:?}");
        // WHO's own 97th percentile of boys' birth weight is 4.3 kg (tab_wfa_boys_p_0_5)
        let p97 = value_at(z_of_percentile(97.0), boys);
        assert!((p97 - 4.3).abs() < 0.05, "{p97}");
        assert_eq!(percentile_words(Measure::Weight, "male", 0.0, p97).unwrap(), "97th percentile");
        assert_eq!(percentile_words(Measure::Weight, "male", 0.0, 1.5).unwrap(), "below the 1st percentile");
        assert_eq!(percentile_words(Measure::Weight, "male", 0.0, 6.0).unwrap(), "above the 99th percentile");
    }

    #[test]
    fn z_scores_and_values_are_inverse_and_percentiles_are_the_normals() {
        for lms in [(0.3487, 3.3464, 0.14602), (1.0, 87.8, 0.035), (0.0, 16.0, 0.08), (-0.8, 22.19, 0.129)] {
            for z in [-2.5, -1.0, 0.0, 0.7, 2.0] {
                assert!((z_score(value_at(z, lms), lms) - z).abs() < 1e-9, "{lms:?} {z}");
            }
        }
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((z_of_percentile(97.0) - 1.8808).abs() < 1e-3);
        assert_eq!(
            [3.0, 15.0, 50.0, 85.0, 97.0, 1.0, 2.0, 11.0, 12.0, 13.0, 22.0].map(ordinal).join(" "),
            "3rd 15th 50th 85th 97th 1st 2nd 11th 12th 13th 22nd"
        );
        // interpolated between months
        let (a, b) = (lms(Measure::Bmi, "female", 100.0).unwrap(), lms(Measure::Bmi, "female", 101.0).unwrap());
        let mid = lms(Measure::Bmi, "female", 100.5).unwrap();
        assert!((mid.1 - (a.1 + b.1) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn ordinals_read_as_english() {
        for (v, words) in [(0.0, "50th"), (0.05, "52nd"), (-0.63, "26th")] {
            let lms = lms(Measure::Height, "male", 60.0).unwrap();
            let x = value_at(v, lms);
            assert!(percentile_words(Measure::Height, "male", 60.0, x).unwrap().starts_with(words), "{v}");
        }
    }

    #[test]
    fn curves_cover_the_days_asked_within_the_tables() {
        let birth = 18_000;
        let c = curves(Measure::Weight, "female", birth, birth + 30, birth + 3000);
        assert_eq!(c.len(), 5);
        for (_, pts) in &c {
            assert!(pts.first().unwrap().0 == birth + 30);
            // weight-for-age ends at 60 months
            assert!(pts.last().unwrap().0 <= birth + 1827, "{:?}", pts.last());
        }
        assert!(c[0].1[3].1 < c[2].1[3].1 && c[2].1[3].1 < c[4].1[3].1, "ordered by percentile");
    }
}
