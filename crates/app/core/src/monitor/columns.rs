//! The window's columns, kept compact: a few bytes per row and feature instead of a
//! `Value` (32 bytes and a heap string for a level) per cell.
//!
//! - Numbers are kept as `f32` while every number of the column survives the round trip
//!   exactly (integers, most counts and amounts), else as `f64`: what the statistics
//!   read back is always the number that came in.
//! - Levels (text, booleans, and numbers in a column that has seen text) are interned:
//!   a `u16` code per row while the column has fewer than 65,535 levels, else `u32`.
//!   The table keeps how many rows of the window hold each level, and drops the levels
//!   no row holds once they outnumber the live ones, so a column of unique strings
//!   cannot grow it without bound.

use std::collections::{HashMap, VecDeque};

use sidelight_explain::Value;

use super::value_text;

/// Windows up to this many rows take their columns' room in one allocation.
const UPFRONT_ROWS: usize = 1 << 24;

/// Makes room for one more row. A column takes the window's whole room at once: the
/// system gives pages only as rows are written to them, so an idle window costs
/// nothing, and a filling one never copies itself over and over (which, with the
/// allocator keeping what was freed, cost about half the window again in resident
/// memory). Past [`UPFRONT_ROWS`], or when the room cannot be had at once, it grows in
/// doubling steps, never past the window's size.
pub(super) fn reserve<T>(q: &mut VecDeque<T>, cap: usize) {
    if q.len() < q.capacity() {
        return;
    }
    if q.capacity() == 0 && cap <= UPFRONT_ROWS && q.try_reserve_exact(cap).is_ok() {
        return;
    }
    let more = if q.len() < cap {
        q.len().max(1024).min(cap - q.len())
    } else {
        // Held past its size for a moment (first rows waiting to become the
        // reference): in steps, not row by row.
        (q.len() / 16).max(1024)
    };
    q.reserve_exact(more);
}

/// Keeps the rows whose `keep` is true (rows past its end are kept).
pub(super) fn retain<T>(q: &mut VecDeque<T>, keep: &[bool]) {
    let mut i = 0;
    q.retain(|_| {
        let k = keep.get(i).copied().unwrap_or(true);
        i += 1;
        k
    });
}

/// Level codes, `0` for missing and `code + 1` otherwise.
#[derive(Debug, Clone)]
pub(super) enum Codes {
    Narrow(VecDeque<u16>),
    Wide(VecDeque<u32>),
}

impl Codes {
    fn get(&self, i: usize) -> u32 {
        match self {
            Codes::Narrow(q) => q.get(i).map_or(0, |&c| u32::from(c)),
            Codes::Wide(q) => q.get(i).copied().unwrap_or(0),
        }
    }

    fn push(&mut self, stored: u32, cap: usize) {
        if let Codes::Narrow(q) = self {
            match u16::try_from(stored) {
                Ok(c) => {
                    reserve(q, cap);
                    q.push_back(c);
                    return;
                }
                Err(_) => {
                    let wide: VecDeque<u32> = q.iter().map(|&c| u32::from(c)).collect();
                    *self = Codes::Wide(wide);
                }
            }
        }
        if let Codes::Wide(q) = self {
            reserve(q, cap);
            q.push_back(stored);
        }
    }

    fn set(&mut self, i: usize, stored: u32) {
        match self {
            Codes::Narrow(q) => match (u16::try_from(stored), q.get_mut(i)) {
                (Ok(c), Some(slot)) => *slot = c,
                (Err(_), Some(_)) => {
                    let mut wide: VecDeque<u32> = q.iter().map(|&c| u32::from(c)).collect();
                    if let Some(slot) = wide.get_mut(i) {
                        *slot = stored;
                    }
                    *self = Codes::Wide(wide);
                }
                _ => {}
            },
            Codes::Wide(q) => {
                if let Some(slot) = q.get_mut(i) {
                    *slot = stored;
                }
            }
        }
    }

    fn pop_front(&mut self) -> u32 {
        match self {
            Codes::Narrow(q) => q.pop_front().map_or(0, u32::from),
            Codes::Wide(q) => q.pop_front().unwrap_or(0),
        }
    }

    fn len(&self) -> usize {
        match self {
            Codes::Narrow(q) => q.len(),
            Codes::Wide(q) => q.len(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = u32> + '_> {
        match self {
            Codes::Narrow(q) => Box::new(q.iter().map(|&c| u32::from(c))),
            Codes::Wide(q) => Box::new(q.iter().copied()),
        }
    }

    fn retain(&mut self, keep: &[bool]) {
        match self {
            Codes::Narrow(q) => retain(q, keep),
            Codes::Wide(q) => retain(q, keep),
        }
    }

    fn remap(&mut self, map: &[u32]) {
        let apply = |c: u32| map.get(c as usize).copied().unwrap_or(0);
        match self {
            Codes::Narrow(q) => q.iter_mut().for_each(|c| {
                // Remapping only shrinks codes: a narrow code stays narrow.
                *c = u16::try_from(apply(u32::from(*c))).unwrap_or(0);
            }),
            Codes::Wide(q) => q.iter_mut().for_each(|c| *c = apply(*c)),
        }
    }
}

/// A column's levels and how many rows hold each.
#[derive(Debug, Clone, Default)]
pub(super) struct Levels {
    index: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
    /// Rows holding each level (by code).
    live: Vec<u64>,
    /// Levels some row holds.
    held: usize,
    /// Per level, whether it ever came as text (not as a number).
    text: Vec<bool>,
    /// Rows holding a level that came as text.
    text_rows: u64,
    /// Rows with no level.
    pub(super) missing: u64,
}

impl Levels {
    /// The stored code of `text` (`None`: missing), counted as one more row;
    /// `is_text` when it came as text rather than as a number.
    fn take(&mut self, text: Option<&str>, is_text: bool) -> u32 {
        let Some(text) = text else {
            self.missing += 1;
            return 0;
        };
        let code = match self.index.get(text) {
            Some(&c) => c,
            None => {
                let c = u32::try_from(self.names.len()).unwrap_or(u32::MAX - 1);
                self.index.insert(text.into(), c);
                self.names.push(text.into());
                self.live.push(0);
                self.text.push(false);
                c
            }
        };
        let i = code as usize;
        if let (Some(n), Some(t)) = (self.live.get_mut(i), self.text.get_mut(i)) {
            if is_text && !*t {
                *t = true;
                self.text_rows += *n;
            }
            if *n == 0 {
                self.held += 1;
            }
            *n += 1;
            if *t {
                self.text_rows += 1;
            }
        }
        code + 1
    }

    /// One row fewer holds stored code `stored`.
    fn release(&mut self, stored: u32) {
        match stored.checked_sub(1) {
            None => self.missing = self.missing.saturating_sub(1),
            Some(code) => {
                if let Some(n) = self.live.get_mut(code as usize) {
                    if *n == 1 {
                        self.held = self.held.saturating_sub(1);
                    }
                    *n = n.saturating_sub(1);
                    if self.text.get(code as usize) == Some(&true) {
                        self.text_rows = self.text_rows.saturating_sub(1);
                    }
                }
            }
        }
    }

    /// The level of a stored code.
    pub(super) fn name_of(&self, stored: u32) -> Option<&str> {
        let code = stored.checked_sub(1)?;
        self.names.get(code as usize).map(|n| &**n)
    }

    /// The levels rows hold, with their counts.
    pub(super) fn counts(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.names
            .iter()
            .zip(&self.live)
            .filter(|(_, n)| **n > 0)
            .map(|(l, n)| (&**l, *n))
    }

    /// How many codes are in use (the bound of the codes given out).
    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    /// Drops the levels no row holds when they are most of the table, and gives the
    /// new code of every old stored code.
    fn compact(&mut self) -> Option<Vec<u32>> {
        if self.names.len() < 1024 || self.names.len() < 2 * self.held {
            return None;
        }
        let mut map = vec![0u32; self.names.len() + 1];
        let names = std::mem::take(&mut self.names);
        let live = std::mem::take(&mut self.live);
        let text = std::mem::take(&mut self.text);
        self.index.clear();
        for (old, ((name, n), t)) in names.into_iter().zip(live).zip(text).enumerate() {
            if n == 0 {
                continue;
            }
            let code = u32::try_from(self.names.len()).unwrap_or(u32::MAX - 1);
            self.index.insert(name.clone(), code);
            self.names.push(name);
            self.live.push(n);
            self.text.push(t);
            map[old + 1] = code + 1;
        }
        Some(map)
    }
}

/// What a column holds at a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cell {
    /// A number (NaN: missing).
    Number(f64),
    /// A stored level code (`0`: missing).
    Level(u32),
}

/// One feature's values in the window.
#[derive(Debug, Clone)]
pub(super) enum Column {
    Narrow(VecDeque<f32>),
    Wide(VecDeque<f64>),
    /// `from_numbers`: the column held numbers until text came, and turns back into
    /// numbers once no row holds text any more (one stray string must not change a
    /// numeric feature's drift for good).
    Levels {
        codes: Codes,
        levels: Levels,
        from_numbers: bool,
    },
}

impl Default for Column {
    fn default() -> Self {
        Column::Narrow(VecDeque::new())
    }
}

impl Column {
    pub(super) fn len(&self) -> usize {
        match self {
            Column::Narrow(q) => q.len(),
            Column::Wide(q) => q.len(),
            Column::Levels { codes, .. } => codes.len(),
        }
    }

    pub(super) fn is_numeric(&self) -> bool {
        !matches!(self, Column::Levels { .. })
    }

    pub(super) fn levels(&self) -> Option<&Levels> {
        match self {
            Column::Levels { levels, .. } => Some(levels),
            _ => None,
        }
    }

    pub(super) fn get(&self, i: usize) -> Cell {
        match self {
            Column::Narrow(q) => Cell::Number(q.get(i).map_or(f64::NAN, |&x| f64::from(x))),
            Column::Wide(q) => Cell::Number(q.get(i).copied().unwrap_or(f64::NAN)),
            Column::Levels { codes, .. } => Cell::Level(codes.get(i)),
        }
    }

    /// The number at a row, if the column is numeric.
    pub(super) fn number(&self, i: usize) -> Option<f64> {
        match self.get(i) {
            Cell::Number(x) => Some(x),
            Cell::Level(_) => None,
        }
    }

    /// Appends a value. A number the column cannot hold exactly as `f32` widens it; the
    /// first non-number turns it into levels (its numbers become their text).
    pub(super) fn push(&mut self, value: &Value, cap: usize) {
        match (value, &mut *self) {
            (Value::Number(x), Column::Narrow(q)) if fits_narrow(*x) => {
                reserve(q, cap);
                q.push_back(*x as f32);
            }
            (Value::Number(_), Column::Narrow(q)) => {
                let wide: VecDeque<f64> = q.iter().map(|&x| f64::from(x)).collect();
                *self = Column::Wide(wide);
                self.push(value, cap);
            }
            (Value::Number(x), Column::Wide(q)) => {
                reserve(q, cap);
                q.push_back(*x);
            }
            (Value::Missing, Column::Narrow(q)) => {
                reserve(q, cap);
                q.push_back(f32::NAN);
            }
            (Value::Missing, Column::Wide(q)) => {
                reserve(q, cap);
                q.push_back(f64::NAN);
            }
            (_, Column::Narrow(_) | Column::Wide(_)) => {
                self.turn_into_levels();
                self.push(value, cap);
            }
            (value, Column::Levels { codes, levels, .. }) => {
                let is_text = !matches!(value, Value::Number(_));
                let text = level_text(value);
                let stored = levels.take(text.as_deref(), is_text);
                codes.push(stored, cap);
            }
        }
    }

    /// Turns a numeric column into levels: each number becomes its text.
    fn turn_into_levels(&mut self) {
        let numbers: Vec<f64> = match self {
            Column::Narrow(q) => q.iter().map(|&x| f64::from(x)).collect(),
            Column::Wide(q) => q.iter().copied().collect(),
            Column::Levels { .. } => return,
        };
        let mut levels = Levels::default();
        let mut codes = Codes::Narrow(VecDeque::with_capacity(numbers.len()));
        for x in numbers {
            let value = if x.is_nan() {
                Value::Missing
            } else {
                Value::Number(x)
            };
            let stored = levels.take(level_text(&value).as_deref(), false);
            codes.push(stored, usize::MAX);
        }
        *self = Column::Levels {
            codes,
            levels,
            from_numbers: true,
        };
    }

    /// Removes the oldest row and says what it held.
    pub(super) fn pop_front(&mut self) -> Cell {
        match self {
            Column::Narrow(q) => Cell::Number(q.pop_front().map_or(f64::NAN, f64::from)),
            Column::Wide(q) => Cell::Number(q.pop_front().unwrap_or(f64::NAN)),
            Column::Levels { codes, levels, .. } => {
                let stored = codes.pop_front();
                levels.release(stored);
                Cell::Level(stored)
            }
        }
    }

    /// Keeps the rows whose `keep` is true (rows past its end are kept).
    pub(super) fn retain(&mut self, keep: &[bool]) {
        match self {
            Column::Narrow(q) => retain(q, keep),
            Column::Wide(q) => retain(q, keep),
            Column::Levels { codes, levels, .. } => {
                for (i, k) in keep.iter().enumerate() {
                    if !k {
                        levels.release(codes.get(i));
                    }
                }
                codes.retain(keep);
            }
        }
        self.tidy();
    }

    /// Sets a row's level (a reported attribute), counting the old one out.
    pub(super) fn set_level(&mut self, i: usize, text: Option<&str>) {
        if i >= self.len() {
            return;
        }
        if self.is_numeric() {
            self.turn_into_levels();
        }
        if let Column::Levels { codes, levels, .. } = self {
            levels.release(codes.get(i));
            let stored = levels.take(text, true);
            codes.set(i, stored);
        }
        self.tidy();
    }

    /// Drops unused levels now and then, and turns a column that held numbers before
    /// text came back into numbers once no row holds text (called as rows leave).
    pub(super) fn tidy(&mut self) {
        let Column::Levels {
            codes,
            levels,
            from_numbers,
        } = self
        else {
            return;
        };
        if *from_numbers && levels.text_rows == 0 && levels.held > 0 {
            // Every level held came from a number, written by `value_text`, which
            // reads back exactly.
            let numbers: Vec<f64> = codes
                .iter()
                .map(|c| {
                    levels
                        .name_of(c)
                        .and_then(|t| t.parse::<f64>().ok())
                        .unwrap_or(f64::NAN)
                })
                .collect();
            *self = if numbers.iter().all(|&x| fits_narrow(x)) {
                Column::Narrow(numbers.iter().map(|&x| x as f32).collect())
            } else {
                Column::Wide(numbers.into())
            };
            return;
        }
        if let Some(map) = levels.compact() {
            codes.remap(&map);
        }
    }

    /// The value at a row, as pushed (a level comes back as text).
    pub(super) fn value(&self, i: usize) -> Value {
        match self.get(i) {
            Cell::Number(x) if x.is_nan() => Value::Missing,
            Cell::Number(x) => Value::Number(x),
            Cell::Level(stored) => match self.levels().and_then(|l| l.name_of(stored)) {
                Some(name) => Value::Text(name.to_owned()),
                None => Value::Missing,
            },
        }
    }

    /// The level counts of the first `rows` rows, and how many of them have none.
    pub(super) fn level_counts(&self, rows: usize) -> (Vec<(String, u64)>, u64) {
        let Column::Levels { codes, levels, .. } = self else {
            return (Vec::new(), 0);
        };
        let mut counts = vec![0u64; levels.len() + 1];
        for stored in codes.iter().take(rows) {
            if let Some(n) = counts.get_mut(stored as usize) {
                *n += 1;
            }
        }
        let missing = counts.first().copied().unwrap_or(0);
        let named = counts
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(_, n)| **n > 0)
            .filter_map(|(stored, n)| {
                let stored = u32::try_from(stored).ok()?;
                Some((levels.name_of(stored)?.to_owned(), *n))
            })
            .collect();
        (named, missing)
    }

    /// The numbers of a numeric column, NaN for missing (none for levels).
    pub(super) fn numbers(&self) -> Box<dyn Iterator<Item = f64> + '_> {
        match self {
            Column::Narrow(q) => Box::new(q.iter().map(|&x| f64::from(x))),
            Column::Wide(q) => Box::new(q.iter().copied()),
            Column::Levels { .. } => Box::new(std::iter::empty()),
        }
    }

    /// Puts the column in `numbers` (numeric) or `codes` (levels: from 0, `u32::MAX`
    /// for missing), reusing their room, and says which as association input.
    pub(super) fn values_into<'a>(
        &self,
        numbers: &'a mut Vec<f64>,
        codes: &'a mut Vec<u32>,
    ) -> sidelight_monitor::Values<'a> {
        match self {
            Column::Levels {
                codes: c, levels, ..
            } => {
                codes.clear();
                codes.extend(c.iter().map(|k| k.checked_sub(1).unwrap_or(u32::MAX)));
                sidelight_monitor::Values::Coded(codes, levels.len())
            }
            _ => {
                numbers.clear();
                numbers.extend(self.numbers());
                sidelight_monitor::Values::Numeric(numbers)
            }
        }
    }
}

fn fits_narrow(x: f64) -> bool {
    x.is_nan() || f64::from(x as f32) == x
}

/// A value's level: as the group labels and the review rules write it.
pub(super) fn level_text(value: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Value::Missing => None,
        Value::Text(t) => Some(std::borrow::Cow::Borrowed(t.as_str())),
        other => Some(std::borrow::Cow::Owned(value_text(other))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numbers_come_back_exactly_and_text_turns_the_column_into_levels() {
        let mut c = Column::default();
        c.push(&Value::Number(3.0), 10);
        assert!(matches!(c, Column::Narrow(_)));
        c.push(&Value::Number(0.1), 10);
        assert!(matches!(c, Column::Wide(_)));
        assert_eq!(c.number(1), Some(0.1));
        c.push(&Value::Missing, 10);
        assert!(c.number(2).unwrap().is_nan());
        c.push(&Value::Text("x".into()), 10);
        let levels = c.levels().unwrap();
        let mut counts: Vec<_> = levels.counts().collect();
        counts.sort();
        assert_eq!(counts, vec![("0.1", 1), ("3", 1), ("x", 1)]);
        assert_eq!(levels.missing, 1);
        assert_eq!(c.pop_front(), Cell::Level(1));
        assert_eq!(c.levels().unwrap().counts().count(), 2);
    }

    #[test]
    fn unique_levels_do_not_grow_the_table_without_bound() {
        let mut c = Column::default();
        for i in 0..100_000 {
            c.push(&Value::Text(format!("id-{i}")), 1000);
            if c.len() > 1000 {
                c.pop_front();
                c.tidy();
            }
        }
        let levels = c.levels().unwrap();
        assert!(levels.len() <= 2048, "{} levels kept", levels.len());
        assert_eq!(levels.counts().count(), 1000);
        let (mut numbers, mut codes) = (Vec::new(), Vec::new());
        let sidelight_monitor::Values::Coded(codes, n) = c.values_into(&mut numbers, &mut codes)
        else {
            panic!("levels")
        };
        assert!(codes.iter().all(|&k| (k as usize) < n));
        let Cell::Level(last) = c.get(999) else {
            panic!("levels")
        };
        assert_eq!(c.levels().unwrap().name_of(last), Some("id-99999"));
    }

    #[test]
    fn more_than_a_u16_of_levels_widens_the_codes() {
        let mut c = Column::default();
        for i in 0..70_000 {
            c.push(&Value::Text(i.to_string()), usize::MAX);
        }
        let Cell::Level(stored) = c.get(69_999) else {
            panic!("levels")
        };
        assert_eq!(c.levels().unwrap().name_of(stored), Some("69999"));
        let Cell::Level(first) = c.get(0) else {
            panic!("levels")
        };
        assert_eq!(c.levels().unwrap().name_of(first), Some("0"));
    }
}
