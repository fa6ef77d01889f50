//! Fixed reporting periods: calendar months or quarters.
//!
//! Periods are the only way to slice aggregates. Because they never overlap,
//! nobody can ask for two overlapping subsets and subtract one from the other
//! (a differencing attack).

use crate::date::Date;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How long a reporting period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Granularity {
    /// A calendar month.
    Month,
    /// A calendar quarter (January-March is Q1).
    Quarter,
}

impl Granularity {
    /// The proto enum number.
    pub fn code(self) -> i32 {
        match self {
            Granularity::Month => 1,
            Granularity::Quarter => 2,
        }
    }

    /// From the proto enum number; `None` for unspecified or unknown.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            1 => Some(Granularity::Month),
            2 => Some(Granularity::Quarter),
            _ => None,
        }
    }

    fn periods_per_year(self) -> u32 {
        match self {
            Granularity::Month => 12,
            Granularity::Quarter => 4,
        }
    }
}

impl std::str::FromStr for Granularity {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, PeriodError> {
        match s.to_ascii_lowercase().as_str() {
            "month" | "monthly" => Ok(Granularity::Month),
            "quarter" | "quarterly" => Ok(Granularity::Quarter),
            _ => Err(PeriodError::Granularity),
        }
    }
}

/// Why a period was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// The granularity is missing or unknown.
    #[error("granularity must be month or quarter")]
    Granularity,
    /// The month or quarter number is out of range.
    #[error("index must be 1-12 for a month or 1-4 for a quarter")]
    Index,
    /// The year is outside [`Period::MIN_YEAR`]..=[`Period::MAX_YEAR`].
    #[error("year must be between {} and {}", Period::MIN_YEAR, Period::MAX_YEAR)]
    Year,
    /// The text is not exactly `YYYY-MM` or `YYYY-Qn`.
    #[error("must be written YYYY-MM (a month, e.g. 2024-04) or YYYY-Qn (a quarter, e.g. 2024-Q2)")]
    Format,
}

/// One calendar month or quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    granularity: Granularity,
    year: i32,
    index: u32,
}

impl Period {
    /// The earliest year a period may fall in. Local Area Coordination began
    /// in the UK in the 2010s (in Western Australia in 1988), so a figure for
    /// an earlier year is a typo or a default, never a report; 0001-Q1 would
    /// also make every range that starts there span thousands of periods.
    pub const MIN_YEAR: i32 = 2000;
    /// The latest year a period may fall in: far enough ahead for any real
    /// clock, near enough that a stray 9999 is refused.
    pub const MAX_YEAR: i32 = 2100;

    /// A period from its parts: the year is in
    /// [`Period::MIN_YEAR`]..=[`Period::MAX_YEAR`], and the index is 1-12
    /// for months, 1-4 for quarters.
    pub fn new(granularity: Granularity, year: i32, index: u32) -> Result<Period, PeriodError> {
        if !(Period::MIN_YEAR..=Period::MAX_YEAR).contains(&year) {
            return Err(PeriodError::Year);
        }
        if index == 0 || index > granularity.periods_per_year() {
            return Err(PeriodError::Index);
        }
        Ok(Period {
            granularity,
            year,
            index,
        })
    }

    /// The period of this granularity that contains `date`.
    ///
    /// Callers pass validated dates (record validation refuses dates before
    /// [`Period::MIN_YEAR`] and after today), so the result is in range.
    pub fn containing(granularity: Granularity, date: Date) -> Period {
        let month = u32::from(date.month());
        let index = match granularity {
            Granularity::Month => month,
            Granularity::Quarter => (month - 1) / 3 + 1,
        };
        Period {
            granularity,
            year: date.year(),
            index,
        }
    }

    /// Month or quarter.
    pub fn granularity(self) -> Granularity {
        self.granularity
    }

    /// The calendar year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// Month (1-12) or quarter (1-4) number.
    pub fn index(self) -> u32 {
        self.index
    }

    fn first_month(self) -> u8 {
        match self.granularity {
            Granularity::Month => self.index as u8,
            Granularity::Quarter => ((self.index - 1) * 3 + 1) as u8,
        }
    }

    fn last_month(self) -> u8 {
        match self.granularity {
            Granularity::Month => self.index as u8,
            Granularity::Quarter => (self.index * 3) as u8,
        }
    }

    /// First day of the period.
    pub fn start(self) -> Date {
        Date::from_days_since_epoch(ymd_days(self.year, self.first_month(), 1))
    }

    /// Last day of the period (inclusive).
    pub fn end(self) -> Date {
        let m = self.last_month();
        Date::from_days_since_epoch(ymd_days(
            self.year,
            m,
            crate::date::days_in_month(self.year, m),
        ))
    }

    /// Whether `date` falls within the period.
    pub fn contains(self, date: Date) -> bool {
        self.start() <= date && date <= self.end()
    }

    /// The following period of the same granularity.
    pub fn next(self) -> Period {
        if self.index == self.granularity.periods_per_year() {
            Period {
                year: self.year + 1,
                index: 1,
                ..self
            }
        } else {
            Period {
                index: self.index + 1,
                ..self
            }
        }
    }

    /// A sortable ordinal; consecutive periods differ by one.
    pub fn ordinal(self) -> i64 {
        i64::from(self.year) * i64::from(self.granularity.periods_per_year())
            + i64::from(self.index)
            - 1
    }

    /// Every period from `from` to `to` inclusive; empty if they differ in
    /// granularity or `to` is before `from`.
    pub fn range(from: Period, to: Period) -> Vec<Period> {
        if from.granularity != to.granularity || to < from {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut p = from;
        while p <= to {
            out.push(p);
            p = p.next();
        }
        out
    }

    /// Parses `YYYY-MM` (month) or `YYYY-Qn` (quarter), exactly as
    /// [`Display`](fmt::Display) writes them: four year digits, two month
    /// digits, or an upper-case `Q` and one quarter digit. Any other spelling
    /// (`2024-Q+1`, `2024-Q01`, `2024-q1`, `2024-4`) is refused, so each
    /// period has one text and text → period → text gives the same text.
    pub fn parse(s: &str) -> Result<Period, PeriodError> {
        let b = s.as_bytes();
        if b.len() < 6 || b[4] != b'-' || !b[..4].iter().all(u8::is_ascii_digit) {
            return Err(PeriodError::Format);
        }
        let year = digits(&b[..4]) as i32;
        match &b[5..] {
            [b'Q', q] if q.is_ascii_digit() => {
                Period::new(Granularity::Quarter, year, u32::from(q - b'0'))
            }
            [m1, m2] if m1.is_ascii_digit() && m2.is_ascii_digit() => {
                Period::new(Granularity::Month, year, digits(&[*m1, *m2]))
            }
            _ => Err(PeriodError::Format),
        }
    }
}

/// The value of ASCII decimal digits (the caller has checked that they are digits).
fn digits(b: &[u8]) -> u32 {
    b.iter()
        .fold(0, |acc, d| acc * 10 + u32::from(d.wrapping_sub(b'0')))
}

fn ymd_days(year: i32, month: u8, day: u8) -> i64 {
    Date::new(year, month, day)
        .map(Date::days_since_epoch)
        .unwrap_or_default()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.granularity {
            Granularity::Month => write!(f, "{:04}-{:02}", self.year, self.index),
            Granularity::Quarter => write!(f, "{:04}-Q{}", self.year, self.index),
        }
    }
}

impl std::str::FromStr for Period {
    type Err = PeriodError;
    fn from_str(s: &str) -> Result<Self, PeriodError> {
        Period::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    #[test]
    fn quarters_and_months_have_the_right_bounds() {
        let q = Period::parse("2024-Q1").unwrap();
        assert_eq!(q.start(), d("2024-01-01"));
        assert_eq!(q.end(), d("2024-03-31"));
        let m = Period::parse("2024-02").unwrap();
        assert_eq!(m.end(), d("2024-02-29"));
        assert_eq!(
            Period::containing(Granularity::Quarter, d("2025-11-23")).to_string(),
            "2025-Q4"
        );
        assert!(q.contains(d("2024-03-31")) && !q.contains(d("2024-04-01")));
    }

    #[test]
    fn periods_step_across_years_and_refuse_bad_text() {
        let q4 = Period::parse("2024-Q4").unwrap();
        assert_eq!(q4.next().to_string(), "2025-Q1");
        assert_eq!(q4.next().ordinal(), q4.ordinal() + 1);
        assert_eq!(Period::range(q4, q4.next().next()).len(), 3);
        assert_eq!(Period::parse("2024-Q5"), Err(PeriodError::Index));
        assert_eq!(Period::parse("2024-13"), Err(PeriodError::Index));
        assert_eq!(Period::parse("2024/01"), Err(PeriodError::Format));
        assert_eq!(Period::parse("24-01"), Err(PeriodError::Format));
    }

    #[test]
    fn refuses_every_other_spelling() {
        for bad in [
            "2024-Q+1",
            "2024-Q01",
            "2024-q1",
            "2024-Q",
            "2024-Q1 ",
            " 2024-Q1",
            "2024-4",
            "2024-004",
            "+024-01",
            "2024-+1",
            "2024-1a",
            "2024-Q١",
            "2024-01-01",
            "2024",
            "",
        ] {
            assert_eq!(Period::parse(bad), Err(PeriodError::Format), "{bad:?}");
        }
        assert_eq!(Period::parse("2024-Q0"), Err(PeriodError::Index));
        assert_eq!(Period::parse("2024-00"), Err(PeriodError::Index));
    }

    #[test]
    fn years_must_be_plausible() {
        for bad in ["0001-Q1", "0000-01", "1999-12", "2101-Q1", "9999-12"] {
            assert_eq!(Period::parse(bad), Err(PeriodError::Year), "{bad}");
        }
        for ok in ["2000-01", "2000-Q1", "2100-12", "2100-Q4"] {
            assert_eq!(Period::parse(ok).unwrap().to_string(), ok);
        }
        assert_eq!(
            Period::new(Granularity::Quarter, 1, 1),
            Err(PeriodError::Year)
        );
        assert!(PeriodError::Year.to_string().contains("2000 and 2100"));
    }

    proptest::proptest! {
        /// Whatever text parses, writing the period back gives the same text.
        #[test]
        fn text_round_trips(s in "(20[0-9]{2}|[0-9+ ]{4})-(Q|q)?[+0 -]{0,2}[0-9]{1,2}") {
            if let Ok(p) = Period::parse(&s) {
                proptest::prop_assert_eq!(p.to_string(), s);
            }
        }

        /// Every period in range writes text that parses back to it.
        #[test]
        fn periods_round_trip(
            year in Period::MIN_YEAR..=Period::MAX_YEAR,
            month in 1u32..=12,
            quarter in 1u32..=4,
        ) {
            for p in [
                Period::new(Granularity::Month, year, month).unwrap(),
                Period::new(Granularity::Quarter, year, quarter).unwrap(),
            ] {
                proptest::prop_assert_eq!(Period::parse(&p.to_string()), Ok(p));
            }
        }
    }
}
