//! Surrogate fidelity over time: a summary of a series of held-out R² measurements.

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// One fidelity measurement: the surrogate's R² against the model at a time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FidelityPoint {
    /// When it was measured, milliseconds since the Unix epoch.
    pub time: UnixMillis,
    /// The surrogate's held-out R² against the model: 1 is a perfect mimic, 0 no better
    /// than always predicting the mean, below 0 worse than that. NaN marks a measurement
    /// that produced no number; it is counted, never averaged.
    pub r2: f64,
}

/// A summary of a fidelity series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FidelitySummary {
    /// Points with a number for R² (NaN points are counted in `invalid` only).
    pub points: u64,
    /// Points whose R² is NaN, left out of every other figure.
    pub invalid: u64,
    /// The latest point (greatest time; of equal times, the one given last).
    pub last: Option<FidelityPoint>,
    /// The lowest R² (of equal values, the latest).
    pub min: Option<FidelityPoint>,
    /// Mean R² of the valid points, each point weighing the same however far apart in
    /// time; `None` without a valid point.
    pub mean: Option<f64>,
    /// Least-squares slope of R² against time, in R² per day (86,400,000 ms). Negative:
    /// the surrogate is getting worse. `None` until the points span a day: a slope per
    /// day read off minutes of measurements would say nothing.
    pub trend_per_day: Option<f64>,
}

const DAY_MS: f64 = 86_400_000.0;

/// Summarises a fidelity series; the points need not be in time order.
pub fn summarise_fidelity(series: &[FidelityPoint]) -> FidelitySummary {
    let valid: Vec<FidelityPoint> = series.iter().copied().filter(|p| !p.r2.is_nan()).collect();
    let invalid = (series.len() - valid.len()) as u64;
    let last = valid
        .iter()
        .copied()
        .reduce(|a, b| if b.time >= a.time { b } else { a });
    let min = valid.iter().copied().reduce(|a, b| {
        if b.r2 < a.r2 || (b.r2 == a.r2 && b.time >= a.time) {
            b
        } else {
            a
        }
    });
    let mean = crate::stats::mean(valid.iter().map(|p| p.r2));
    let trend_per_day = (|| {
        let t0 = valid.first()?.time;
        let (lo, hi) = valid.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| {
            (lo.min(p.time), hi.max(p.time))
        });
        if ((hi - lo) as f64) < DAY_MS {
            return None;
        }
        // Days relative to the first point keep the sums small and exact enough.
        let days = || valid.iter().map(move |p| (p.time - t0) as f64 / DAY_MS);
        let mt = crate::stats::mean(days())?;
        let my = mean?;
        let (mut sty, mut stt) = (0.0, 0.0);
        for (t, p) in days().zip(&valid) {
            sty += (t - mt) * (p.r2 - my);
            stt += (t - mt) * (t - mt);
        }
        (stt > 0.0).then(|| sty / stt)
    })();
    FidelitySummary {
        points: valid.len() as u64,
        invalid,
        last,
        min,
        mean,
        trend_per_day,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_by_hand() {
        // Days 0, 1, 2 (given out of order) with R² 0.9, 0.8, 0.85, plus one NaN.
        // last = day 2 (0.85); min = day 1 (0.8); mean = 0.85;
        // slope: t̄ = 1, Σ(t−1)(y−0.85) = (−1)(0.05) + 0 + (1)(0) = −0.05, Σ(t−1)² = 2
        //        → −0.025 per day.
        let d = 86_400_000;
        let s = summarise_fidelity(&[
            FidelityPoint {
                time: 1000 + d,
                r2: 0.8,
            },
            FidelityPoint {
                time: 1000,
                r2: 0.9,
            },
            FidelityPoint {
                time: 1000 + 2 * d,
                r2: 0.85,
            },
            FidelityPoint {
                time: 5,
                r2: f64::NAN,
            },
        ]);
        assert_eq!((s.points, s.invalid), (3, 1));
        assert_eq!(s.last.unwrap().r2, 0.85);
        assert_eq!(s.min.unwrap().time, 1000 + d);
        assert!((s.mean.unwrap() - 0.85).abs() < 1e-15);
        assert!((s.trend_per_day.unwrap() + 0.025).abs() < 1e-12);
    }

    #[test]
    fn short_series() {
        let s = summarise_fidelity(&[]);
        assert_eq!(s.last, None);
        assert_eq!(s.trend_per_day, None);
        let s = summarise_fidelity(&[FidelityPoint { time: 3, r2: 0.7 }]);
        assert_eq!(s.last.unwrap().r2, 0.7);
        assert_eq!(s.trend_per_day, None);
        // Minutes apart: no slope per day.
        let s = summarise_fidelity(&[
            FidelityPoint { time: 0, r2: 0.7 },
            FidelityPoint {
                time: 600_000,
                r2: 0.9,
            },
        ]);
        assert_eq!(s.trend_per_day, None);
        assert_eq!(s.points, 2);
    }
}
