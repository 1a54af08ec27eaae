//! Writing numbers the way a reader of a language expects (decimal comma in German).
//!
//! Done here rather than by Fluent, whose number formatting ignores the locale's
//! separators, so that the same input gives the same bytes on every machine.

/// Decimal and grouping separators of a language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NumberStyle {
    decimal: char,
    group: char,
}

impl NumberStyle {
    /// The style of a primary language subtag; English style for languages not listed.
    pub(crate) fn for_language(language: &str) -> Self {
        match language {
            "de" | "es" | "it" | "nl" | "pt" | "da" | "id" | "tr" => Self {
                decimal: ',',
                group: '.',
            },
            "fr" | "pl" | "cs" | "sv" | "nb" | "fi" | "ru" | "uk" => Self {
                decimal: ',',
                group: '\u{a0}',
            },
            _ => Self {
                decimal: '.',
                group: ',',
            },
        }
    }

    /// `x` with at most `max_decimals` decimals (trailing zeros dropped down to
    /// `min_decimals`) and grouped thousands. Not-a-number is written `NaN`.
    pub(crate) fn format(self, x: f64, min_decimals: usize, max_decimals: usize) -> String {
        if x.is_nan() {
            return "NaN".to_owned();
        }
        if x.is_infinite() {
            return if x > 0.0 { "∞" } else { "-∞" }.to_owned();
        }
        let fixed = fixed_decimals(x.abs(), max_decimals);
        let (int, frac) = fixed.split_once('.').unwrap_or((fixed.as_str(), ""));
        let mut frac = frac.to_owned();
        while frac.len() > min_decimals && frac.ends_with('0') {
            frac.pop();
        }
        let mut out = String::with_capacity(fixed.len() + 4);
        let negative =
            x < 0.0 && (int.bytes().any(|b| b != b'0') || frac.bytes().any(|b| b != b'0'));
        if negative {
            out.push('-');
        }
        let digits = int.len();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (digits - i) % 3 == 0 {
                out.push(self.group);
            }
            out.push(c);
        }
        if !frac.is_empty() {
            out.push(self.decimal);
            out.push_str(&frac);
        }
        out
    }

    /// `x` with a sign always (`+0.210`, `-0.910`), `decimals` decimals kept.
    pub(crate) fn signed(self, x: f64, decimals: usize) -> String {
        let body = self.format(x, decimals, decimals);
        if body.starts_with('-') || x.is_nan() || body.bytes().all(|b| !(b'1'..=b'9').contains(&b))
        {
            body
        } else {
            format!("+{body}")
        }
    }
}

/// Rounds `to` to a number a person can read ("about 1,800 DM"), towards the direction
/// of the change from `from` so that the rounded step still goes at least as far.
/// `step` is the rounding unit.
pub(crate) fn round_towards(from: f64, to: f64, step: f64) -> f64 {
    if !(step.is_finite() && step > 0.0) {
        return to;
    }
    let scaled = to / step;
    let rounded = if to < from {
        scaled.floor()
    } else {
        scaled.ceil()
    };
    rounded * step
}

/// Two significant digits: the step for rounding money and plain numbers.
pub(crate) fn two_significant(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 1.0;
    }
    let exponent = x.abs().log10().floor() - 1.0;
    10f64.powf(exponent.max(0.0))
}

/// `x` (finite, not negative) with exactly `decimals` decimals. Scaled integer arithmetic
/// is several times faster than `format!("{:.*}")`, whose exact algorithm shows up in
/// the proxy's profile; it is used where the scaled value is exact in an f64, and the
/// standard formatting elsewhere.
fn fixed_decimals(x: f64, decimals: usize) -> String {
    const POWERS: [u64; 10] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
    ];
    let Some(&scale) = POWERS.get(decimals) else {
        return format!("{x:.decimals$}");
    };
    let scaled = (x * scale as f64).round_ties_even();
    if scaled.is_nan() || scaled >= 9.0e15 {
        return format!("{x:.decimals$}");
    }
    let scaled = scaled as u64;
    let (int, frac) = (scaled / scale, scaled % scale);
    if decimals == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:0decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_the_language() {
        let en = NumberStyle::for_language("en");
        let de = NumberStyle::for_language("de");
        assert_eq!(en.format(2500.0, 0, 2), "2,500");
        assert_eq!(de.format(2500.0, 0, 2), "2.500");
        assert_eq!(de.format(1234567.891, 0, 2), "1.234.567,89");
        assert_eq!(en.format(0.8957, 0, 4), "0.8957");
        assert_eq!(en.format(-0.00001, 0, 3), "0");
        assert_eq!(en.signed(0.21, 3), "+0.210");
        assert_eq!(en.signed(0.0, 3), "0.000");
        assert_eq!(de.signed(-0.91, 3), "-0,910");
        assert_eq!(en.format(f64::NAN, 0, 3), "NaN");
    }

    #[test]
    fn fast_fixed_formatting_agrees_with_the_standard_one_away_from_ties() {
        for &x in &[
            0.0,
            0.4,
            0.5001,
            1.0,
            2.675_1,
            12.5,
            1234.5678,
            0.000_123,
            98_765.432_1,
        ] {
            for d in 0..5 {
                assert_eq!(fixed_decimals(x, d), format!("{x:.d$}"), "{x} {d}");
            }
        }
    }

    #[test]
    fn rounds_in_the_direction_of_the_change() {
        assert_eq!(
            round_towards(2500.0, 1823.0, two_significant(1823.0)),
            1800.0
        );
        assert_eq!(round_towards(10.0, 14.2, 1.0), 15.0);
        assert_eq!(round_towards(36.0, 17.6, 1.0), 17.0);
        assert_eq!(two_significant(5.0), 1.0);
    }
}
